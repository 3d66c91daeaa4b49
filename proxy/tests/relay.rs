//! In-process data-path tests on loopback: the proxy's original destination
//! is a local test server (FixedOriginalDst), clients are real sockets.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podwarden_policy::{Action, AppProtocol, Direction, RecordKind};
use podwarden_proxy::inspect::{
    Block, HttpInspector, InspectorSet, RequestInspection, StreamDir, StreamInspection,
    StreamInspector, Verdict,
};
use podwarden_proxy::tls::build_client_hello;
use podwarden_proxy::DecisionHook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Server that reads until EOF, then answers with what it got and closes.
async fn half_close_server() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            a.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                let reply = format!(
                    "got {} bytes: {}",
                    got.len(),
                    String::from_utf8_lossy(&got[..got.len().min(20)])
                );
                s.write_all(reply.as_bytes()).await.unwrap();
                s.shutdown().await.unwrap();
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn opaque_relay_with_half_close() {
    let (server, _) = half_close_server().await;
    let h = Harness::start(server).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    let req = b"*1\r\n$4\r\nPING\r\n";
    c.write_all(req).await.unwrap();
    c.shutdown().await.unwrap(); // half-close: the server must still answer
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "got 14 bytes: *1\r\n$4\r\nPING\r\n");
    let recs = h.records_until(|r| !r.is_empty()).await;
    let r = &recs[0];
    assert_eq!(r.flow.protocol, AppProtocol::Opaque);
    assert_eq!(r.kind, RecordKind::Connection);
    assert_eq!((r.bytes_sent, r.bytes_received), (14, out.len() as u64));
    assert_eq!(r.flow.peer, server);
    assert_eq!(r.flow.direction, Direction::Outbound);
}

#[tokio::test]
async fn server_first_protocol_works_after_detection_timeout() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"220 smtp.example ESMTP\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        s.write_all(&buf[..n]).await.unwrap();
    });
    let h = Harness::start(addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    let mut banner = [0u8; 24];
    c.read_exact(&mut banner).await.unwrap();
    assert_eq!(&banner, b"220 smtp.example ESMTP\r\n");
    c.write_all(b"EHLO x\r\n").await.unwrap();
    let mut echo = [0u8; 8];
    c.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"EHLO x\r\n");
}

#[tokio::test]
async fn tls_client_hello_sni_recorded_and_passed_through() {
    let (server, _) = half_close_server().await;
    let h = Harness::start(server).await;
    let hello = build_client_hello(Some("api.example.com"), &["h2", "http/1.1"]);
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(&hello).await.unwrap();
    c.shutdown().await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    assert!(String::from_utf8_lossy(&out).starts_with(&format!("got {} bytes", hello.len())));
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(recs[0].flow.protocol, AppProtocol::Tls);
    assert_eq!(recs[0].flow.sni.as_deref(), Some("api.example.com"));
    assert_eq!(recs[0].flow.alpn, vec!["h2", "http/1.1"]);
}

#[tokio::test]
async fn denied_tcp_never_reaches_the_server() {
    let (server, accepted) = half_close_server().await;
    let hook = DecisionHook::new(Box::new(DenyWhen(|_f: &podwarden_policy::Flow| true)));
    let h = Harness::with(server, hook, InspectorSet::default()).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
    let mut buf = [0u8; 16];
    let r = c.read(&mut buf).await;
    // RST (SO_LINGER 0): a reset error, never data.
    assert!(
        matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
            || matches!(r, Ok(0)),
        "{r:?}"
    );
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(recs[0].decision.action, Action::Deny);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "denied connection reached the server"
    );
}

#[tokio::test]
async fn http1_keep_alive_and_upstream_reuse() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    for i in 0..3 {
        let req = format!("GET /p{i}?q=1 HTTP/1.1\r\nHost: api.example:8080\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_response(&mut c).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            body,
            format!("GET /p{i} host=api.example:8080 te=- len=0 conn=1 hop=false")
        );
    }
    // A second client connection after the first closes reuses the idle upstream.
    drop(c);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c2 = TcpStream::connect(h.addr()).await.unwrap();
    c2.write_all(b"GET /again HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .await
        .unwrap();
    let (_, body) = read_response(&mut c2).await;
    assert!(body.ends_with("conn=1 hop=false"), "{body}");
    assert_eq!(srv.connections.load(Ordering::SeqCst), 1);

    let recs = h
        .records_until(|r| r.iter().filter(|r| r.kind == RecordKind::Request).count() == 4)
        .await;
    let req = recs.iter().find(|r| r.kind == RecordKind::Request).unwrap();
    let info = req.flow.http.as_ref().unwrap();
    assert_eq!(
        (
            info.method.as_str(),
            info.host.as_deref(),
            info.path.as_str()
        ),
        ("GET", Some("api.example"), "/p0")
    );
    assert_eq!(req.status, Some(200));
    assert_eq!(req.flow.protocol, AppProtocol::Http);
}

#[tokio::test]
async fn absolute_form_target_is_recorded() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"GET http://other.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let recs = h
        .records_until(|r| r.iter().any(|r| r.kind == RecordKind::Request))
        .await;
    let info = recs.iter().find_map(|r| r.flow.http.clone()).unwrap();
    assert_eq!(info.target.as_deref(), Some("other.example"));
}

#[tokio::test]
async fn chunked_upload_is_streamed() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for chunk in ["hello ", "chunked ", "world"] {
        c.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.write_all(b"0\r\n\r\n").await.unwrap();
    let (head, body) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "POST /up host=a te=chunked len=19 conn=1 hop=false");
    let recs = h
        .records_until(|r| r.iter().any(|r| r.kind == RecordKind::Request))
        .await;
    assert_eq!(
        recs.iter()
            .find(|r| r.kind == RecordKind::Request)
            .unwrap()
            .bytes_sent,
        19
    );
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let io = TokioIo::new(TcpStream::connect(h.addr()).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    for path in ["/a", "/b"] {
        let req = Request::post(format!("http://h2.example{path}"))
            .body(Full::new(Bytes::from_static(b"abc")))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("POST {path} host=h2.example te=- len=3 conn=1 hop=false")
        );
    }
    let recs = h
        .records_until(|r| r.iter().filter(|r| r.kind == RecordKind::Request).count() == 2)
        .await;
    let req = recs.iter().find(|r| r.kind == RecordKind::Request).unwrap();
    assert_eq!(req.flow.protocol, AppProtocol::Http2);
    assert_eq!(
        req.flow.http.as_ref().unwrap().host.as_deref(),
        Some("h2.example")
    );
}

#[tokio::test]
async fn websocket_upgrade_echo() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"\x81\x05hello"[..], b"second frame"] {
        c.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, c.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
}

async fn expect_400(raw: &[u8]) {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(raw).await.unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(
        head.starts_with("HTTP/1.1 400"),
        "{head} for {:?}",
        String::from_utf8_lossy(raw)
    );
    assert_eq!(
        srv.requests.load(Ordering::SeqCst),
        0,
        "ambiguous request was forwarded"
    );
    drop(h);
}

#[tokio::test]
async fn ambiguous_requests_are_rejected_not_forwarded() {
    expect_400(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
    expect_400(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n").await;
    expect_400(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx")
        .await;
    expect_400(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy")
        .await;
    expect_400(b"GET / HTTP/1.1\r\nHost: a\r\nBad\x01Name: x\r\n\r\n").await;
    expect_400(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n").await;
    expect_400(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n").await;
}

#[tokio::test]
async fn ambiguous_second_request_is_not_forwarded_ambiguously() {
    // After a clean first request, hyper itself rejects conflicting lengths.
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    c.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(srv.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn denied_request_gets_403_with_event_id_and_connection_survives() {
    let srv = http_server().await;
    let hook = DecisionHook::new(Box::new(DenyWhen(|f: &podwarden_policy::Flow| {
        f.http.as_ref().is_some_and(|h| h.path == "/forbidden")
    })));
    let h = Harness::with(srv.addr, hook, InspectorSet::default()).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"POST /forbidden HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let (head, body) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let id_line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-podwarden-event-id"))
        .unwrap();
    let id = id_line.split_once(':').unwrap().1.trim().to_owned();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["event_id"], id.as_str());
    // Same connection, next request allowed.
    c.write_all(b"GET /fine HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.starts_with("GET /fine"));
    assert_eq!(
        srv.requests.load(Ordering::SeqCst),
        1,
        "denied request reached the server"
    );
    let recs = h.records_until(|r| r.iter().any(|r| r.id == id)).await;
    let denied = recs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(
        (denied.decision.action, denied.status),
        (Action::Deny, Some(403))
    );
}

#[tokio::test]
async fn hook_swap_applies_to_the_next_request() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut c).await.0.starts_with("HTTP/1.1 200"));
    h.proxy
        .hook()
        .swap(Box::new(DenyWhen(|f: &podwarden_policy::Flow| {
            f.http.is_some()
        })));
    c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut c).await.0.starts_with("HTTP/1.1 403"));
}

struct BodyWord(&'static str);
struct BodyWordState(&'static str);
impl RequestInspection for BodyWordState {
    fn request_body(&mut self, chunk: &[u8], _end: bool) -> Verdict {
        self.check(chunk)
    }
    fn response_body(&mut self, chunk: &[u8], _end: bool) -> Verdict {
        self.check(chunk)
    }
}
impl BodyWordState {
    fn check(&self, chunk: &[u8]) -> Verdict {
        if chunk.windows(self.0.len()).any(|w| w == self.0.as_bytes()) {
            Verdict::Block(Block {
                rule: "test-word".into(),
                reason: format!("contains {}", self.0),
            })
        } else {
            Verdict::Continue
        }
    }
}
impl HttpInspector for BodyWord {
    fn begin(&self, _flow: &podwarden_policy::Flow) -> Option<Box<dyn RequestInspection>> {
        Some(Box::new(BodyWordState(self.0)))
    }
}

#[tokio::test]
async fn inspector_blocks_request_body_with_403() {
    let srv = http_server().await;
    let set = InspectorSet {
        http: vec![Arc::new(BodyWord("SECRET"))],
        stream: vec![],
    };
    let h = Harness::with(srv.addr, DecisionHook::default(), set).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 14\r\n\r\nmy SECRET data")
        .await
        .unwrap();
    let (head, body) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(body.contains("test-word"), "{body}");
    assert_eq!(
        srv.requests.load(Ordering::SeqCst),
        0,
        "small blocked body reached the server"
    );
    // A large streamed body is blocked mid-way: the client still gets a 403.
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    c.write_all(b"5\r\nhello\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.write_all(b"6\r\nSECRET\r\n0\r\n\r\n").await.unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    // clean requests still pass
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nclean")
        .await
        .unwrap();
    assert!(read_response(&mut c).await.0.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn inspector_blocking_response_body_resets_the_stream() {
    let srv = http_server().await;
    let set = InspectorSet {
        http: vec![Arc::new(BodyWord("SECRET"))],
        stream: vec![],
    };
    let h = Harness::with(srv.addr, DecisionHook::default(), set).await;
    let io = TokioIo::new(TcpStream::connect(h.addr()).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://a/secret-response")
        .body(Full::new(Bytes::new()))
        .unwrap();
    // The secret is in the body: the stream is reset, either before the
    // head reaches the client or while the body streams.
    let err = match send.send_request(req).await {
        Ok(resp) => resp.into_body().collect().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(format!("{err:?}").contains("Reset"), "{err:?}");
    // The connection (other streams) survives a stream reset.
    let req = Request::get("http://a/fine")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
}

struct StreamWord;
struct StreamWordState;
impl StreamInspection for StreamWordState {
    fn on_data(&mut self, dir: StreamDir, chunk: &[u8]) -> Verdict {
        if dir == StreamDir::ClientToServer && chunk.windows(6).any(|w| w == b"SECRET") {
            Verdict::Block(Block {
                rule: "stream-word".into(),
                reason: "secret".into(),
            })
        } else {
            Verdict::Continue
        }
    }
}
impl StreamInspector for StreamWord {
    fn begin(&self, _flow: &podwarden_policy::Flow) -> Option<Box<dyn StreamInspection>> {
        Some(Box::new(StreamWordState))
    }
}

#[tokio::test]
async fn stream_inspector_resets_opaque_stream() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got).await;
        let _ = tx.send((got, r.is_err()));
    });
    let set = InspectorSet {
        http: vec![],
        stream: vec![Arc::new(StreamWord)],
    };
    let h = Harness::with(addr, DecisionHook::default(), set).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"\x00hello ").await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await; // past detection
    c.write_all(b"my SECRET").await.unwrap();
    let mut buf = [0u8; 8];
    let r = c.read(&mut buf).await;
    assert!(
        matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    let (got, reset) = rx.await.unwrap();
    assert_eq!(got, b"\x00hello ");
    assert!(reset, "server side should see a reset, not a clean close");
}

#[tokio::test]
async fn bulk_echo_through_zero_copy_relay() {
    // Echo server: exercises full pipes and back-pressure in both directions.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let h = Harness::start(addr).await;
    let c = TcpStream::connect(h.addr()).await.unwrap();
    let (mut r, mut w) = c.into_split();
    const N: usize = 8 * 1024 * 1024;
    let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(b"\x00").await.unwrap(); // binary first byte: opaque at once
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(N + 1);
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), N + 1);
    assert!(got[1..] == expect[..], "payload corrupted");
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(
        (recs[0].bytes_sent, recs[0].bytes_received),
        (N as u64 + 1, N as u64 + 1)
    );
}
