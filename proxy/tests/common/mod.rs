//! Loopback fixtures: a proxy whose original destination is a local test
//! server, and small servers that count what reaches them.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podwarden_policy::{Decide, Decision, Flow, FlowRecord, Mode};
use podwarden_proxy::config::Config;
use podwarden_proxy::inspect::{InspectorSet, Inspectors};
use podwarden_proxy::orig_dst::FixedOriginalDst;
use podwarden_proxy::{DecisionHook, Proxy, Running};
use tokio::net::{TcpListener, TcpStream};

/// Bound of every wait for something the test started (a response, a
/// record): generous, since only a hung test ever reaches it.
pub const WAIT: Duration = Duration::from_secs(60);

pub struct Harness {
    pub proxy: Proxy,
    pub running: Running,
}

impl Harness {
    pub async fn start(upstream: SocketAddr) -> Harness {
        Harness::with(upstream, DecisionHook::default(), InspectorSet::default()).await
    }

    pub async fn with(upstream: SocketAddr, hook: DecisionHook, set: InspectorSet) -> Harness {
        let config = Config {
            listen_ip: "127.0.0.1".parse().unwrap(),
            outbound_port: 0,
            inbound_port: 0,
            admin_addr: "127.0.0.1:0".parse().unwrap(),
            detect_timeout_ms: 100,
            dns_port: 0,
            ..Config::default()
        };
        let proxy = Proxy::builder(config)
            .original_dst(Arc::new(FixedOriginalDst(upstream)))
            .hook(hook)
            .inspectors(Inspectors::new(set))
            .build()
            .unwrap();
        let running = proxy.start().await.unwrap();
        Harness { proxy, running }
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.outbound
    }

    /// Flow records, polling until in-flight ones land (the deadline only
    /// bounds a hung test: a loaded CI machine can stall for seconds).
    pub async fn records_until(&self, pred: impl Fn(&[FlowRecord]) -> bool) -> Vec<FlowRecord> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            let recs: Vec<FlowRecord> = self
                .proxy
                .flows()
                .snapshot(None)
                .iter()
                .map(|r| (**r).clone())
                .collect();
            if pred(&recs) {
                return recs;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let recs: Vec<FlowRecord> = self
            .proxy
            .flows()
            .snapshot(None)
            .iter()
            .map(|r| (**r).clone())
            .collect();
        panic!("records never matched: {recs:#?}");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.running.shutdown();
    }
}

/// A deny-when hook built from a closure.
pub struct DenyWhen<F>(pub F);
impl<F: Fn(&Flow) -> bool + Send + Sync> Decide for DenyWhen<F> {
    fn decide(&self, flow: &Flow) -> Decision {
        if (self.0)(flow) {
            Decision::new(Mode::Protect, None)
        } else {
            Decision::new(Mode::Protect, Some("test-allow".into()))
        }
    }
}

/// An HTTP/1 + h2c test server (hyper auto) that answers
/// `<method> <path> host=<host> te=<transfer-encoding> len=<body bytes> conn=<n>`
/// and counts TCP connections and requests.
pub struct HttpServer {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

pub async fn http_server() -> HttpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(req, n, &r).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    HttpServer {
        addr,
        connections,
        requests,
    }
}

async fn answer(
    mut req: Request<Incoming>,
    conn: usize,
    count: &AtomicUsize,
) -> Response<Full<Bytes>> {
    count.fetch_add(1, Ordering::SeqCst);
    if req.headers().get("upgrade").is_some() {
        // WebSocket-style upgrade: 101, then echo raw bytes.
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()))
            .unwrap();
    }
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let te = req
        .headers()
        .get("transfer-encoding")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let hop = req.headers().get("x-hop").is_some();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = format!(
        "{method} {path} host={host} te={te} len={} conn={conn} hop={hop}",
        body.len()
    );
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    if path == "/secret-response" {
        *resp.body_mut() = Full::new(Bytes::from("here is the SECRET value"));
    }
    resp
}

/// Reads one HTTP/1 response (head + content-length body) from a raw stream.
pub async fn read_response(s: &mut TcpStream) -> (String, String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).await.unwrap();
                assert!(n > 0, "eof in body");
                buf.extend_from_slice(&tmp[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return (head, body);
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut tmp))
            .await
            .expect("response timeout")
            .unwrap();
        assert!(
            n > 0,
            "eof before response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    }
}
