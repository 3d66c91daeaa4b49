//! The pipeline: accept → original destination → detect → decide → relay →
//! record. One task per connection; no lock on the hot path.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use podwarden_policy::{AppProtocol, Decision, Direction, Flow, FlowRecord, RecordKind};
use prometheus::Registry;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::detect::{detect, head_end, Detected, Progress};
use crate::hook::DecisionHook;
use crate::http::{self, headers::check_raw_head, upstream::UpstreamPool, ConnCtx};
use crate::inspect::{Inspectors, StreamChain};
use crate::io::{ByteCounts, Counted, Rewind};
use crate::metrics::{direction_label, ProxyMetrics};
use crate::orig_dst::{is_loop, normalize, KernelOriginalDst, OriginalDst};
use crate::records::{now_ms, FlowLog};
use crate::tcp;

/// Most bytes detection reads before giving up and relaying as opaque.
const MAX_DETECT: usize = 64 * 1024;

/// Everything connections share. Built once; swappable parts (hook,
/// inspectors) swap internally.
pub struct Shared {
    pub config: Config,
    pub hook: DecisionHook,
    pub inspectors: Inspectors,
    pub flows: Arc<FlowLog>,
    pub metrics: ProxyMetrics,
    pub registry: Registry,
    pub orig_dst: Arc<dyn OriginalDst>,
    pub pool: UpstreamPool,
    pub listener_ports: OnceLock<Vec<u16>>,
    pub ready: AtomicBool,
    /// Names the DNS listener saw resolved, for `Flow::peer_names`.
    pub names: crate::dns::NameCache,
    /// Which process in the pod owns the app side (off until installed).
    pub process: crate::process::Attribution,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

pub struct ProxyBuilder {
    config: Config,
    orig_dst: Arc<dyn OriginalDst>,
    hook: DecisionHook,
    inspectors: Inspectors,
}

impl ProxyBuilder {
    /// Where connections really go (default: the kernel's SO_ORIGINAL_DST).
    pub fn original_dst(mut self, o: Arc<dyn OriginalDst>) -> Self {
        self.orig_dst = o;
        self
    }
    pub fn hook(mut self, hook: DecisionHook) -> Self {
        self.hook = hook;
        self
    }
    pub fn inspectors(mut self, i: Inspectors) -> Self {
        self.inspectors = i;
        self
    }
    pub fn build(self) -> Result<Proxy, ProxyError> {
        let registry = Registry::new();
        let c = &self.config;
        let shared = Shared {
            flows: Arc::new(FlowLog::new(c.flow_ring_size, &registry)?),
            metrics: ProxyMetrics::new(&registry)?,
            pool: UpstreamPool::new(
                c.pool_max_idle_per_dst,
                c.pool_idle_timeout(),
                c.connect_timeout(),
                &registry,
            )?,
            registry,
            config: self.config,
            hook: self.hook,
            inspectors: self.inspectors,
            orig_dst: self.orig_dst,
            listener_ports: OnceLock::new(),
            ready: AtomicBool::new(false),
            names: crate::dns::NameCache::default(),
            process: Default::default(),
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }
}

pub struct Proxy {
    shared: Arc<Shared>,
}

/// Listeners bound and accepting; dropping this does not stop them, call
/// [`Running::shutdown`].
pub struct Running {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Proxy {
    pub fn builder(config: Config) -> ProxyBuilder {
        ProxyBuilder {
            config,
            orig_dst: Arc::new(KernelOriginalDst),
            hook: DecisionHook::default(),
            inspectors: Inspectors::default(),
        }
    }
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
    /// The swappable decision hook (see [`DecisionHook::swap`]).
    pub fn hook(&self) -> &DecisionHook {
        &self.shared.hook
    }
    pub fn inspectors(&self) -> &Inspectors {
        &self.shared.inspectors
    }
    pub fn flows(&self) -> &Arc<FlowLog> {
        &self.shared.flows
    }
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Binds both listeners and starts accepting on the current runtime.
    /// `/ready` turns true once this returns.
    pub async fn start(&self) -> Result<Running, ProxyError> {
        let c = &self.shared.config;
        let out = bind(SocketAddr::new(c.listen_ip, c.outbound_port))?;
        let inb = bind(SocketAddr::new(c.listen_ip, c.inbound_port))?;
        let (out_addr, in_addr) = (local(&out)?, local(&inb)?);
        let _ = self
            .shared
            .listener_ports
            .set(vec![out_addr.port(), in_addr.port()]);
        let pruner = {
            let shared = self.shared.clone();
            let every = (shared.config.pool_idle_timeout() / 2).max(Duration::from_secs(1));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    shared.pool.prune();
                }
            })
        };
        let tasks = vec![
            tokio::spawn(accept_loop(self.shared.clone(), out, Direction::Outbound)),
            tokio::spawn(accept_loop(self.shared.clone(), inb, Direction::Inbound)),
            pruner,
        ];
        self.shared.ready.store(true, Ordering::Release);
        info!(outbound = %out_addr, inbound = %in_addr, "listeners bound");
        Ok(Running {
            outbound: out_addr,
            inbound: in_addr,
            tasks,
        })
    }
}

fn local(l: &TcpListener) -> Result<SocketAddr, ProxyError> {
    l.local_addr().map_err(|source| ProxyError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}

/// Binds `addr`; `::` is made dual-stack, and falls back to `0.0.0.0` on
/// hosts without IPv6.
fn bind(addr: SocketAddr) -> Result<TcpListener, ProxyError> {
    match bind_one(addr) {
        Ok(l) => Ok(l),
        Err(e) if addr.ip() == IpAddr::from([0u16; 8]) => {
            warn!(error = %e, "dual-stack bind failed; falling back to IPv4 only");
            let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port());
            bind_one(v4).map_err(|source| ProxyError::Bind { addr: v4, source })
        }
        Err(source) => Err(ProxyError::Bind { addr, source }),
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, dir: Direction) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(handle_conn(shared.clone(), stream, normalize(peer), dir));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                shared.metrics.error(dir, "accept");
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Reads the client's first bytes until detection decides, the timeout
/// passes (server-first protocols: opaque), or the client stops sending.
pub async fn read_detect<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    timeout: Duration,
) -> io::Result<Detected> {
    let deadline = tokio::time::Instant::now() + timeout;
    let detected = loop {
        if let Progress::Done(d) = detect(buf) {
            break d;
        }
        if buf.len() >= MAX_DETECT {
            break Detected::Opaque;
        }
        match tokio::time::timeout_at(deadline, s.read_buf(buf)).await {
            Err(_) | Ok(Ok(0)) => break Detected::Opaque,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    };
    if detected == Detected::Http1 {
        // Read the rest of the first head so it can be checked raw.
        while head_end(buf).is_none() && buf.len() < MAX_DETECT {
            match tokio::time::timeout_at(deadline, s.read_buf(buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Err(e)) => return Err(e),
                _ => break,
            }
        }
    }
    Ok(detected)
}

struct ActiveGuard<'a>(&'a prometheus::IntGauge);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn handle_conn(shared: Arc<Shared>, stream: TcpStream, client: SocketAddr, dir: Direction) {
    let m = &shared.metrics;
    let d = direction_label(dir);
    m.active(dir).inc();
    let _active = ActiveGuard(m.active(dir));
    let started = Instant::now();
    let start_ms = now_ms();
    let _ = stream.set_nodelay(true);

    let accepted_local = match stream.local_addr() {
        Ok(a) => normalize(a),
        Err(e) => {
            m.error(dir, "local_addr");
            debug!(error = %e, "no local address");
            return;
        }
    };
    let dst = match shared.orig_dst.original_dst(&stream) {
        Ok(a) => normalize(a),
        Err(e) => {
            m.error(dir, "original_dst");
            debug!(error = %e, "no original destination");
            tcp::reset(&stream);
            return;
        }
    };
    let ports = shared
        .listener_ports
        .get()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if is_loop(dst, accepted_local, ports) {
        m.error(dir, "loop");
        debug!(%dst, "refusing connection to the proxy's own listener");
        tcp::reset(&stream);
        return;
    }
    let mut flow = match dir {
        Direction::Outbound => Flow::connection(dir, dst, client),
        Direction::Inbound => Flow::connection(dir, client, dst),
    };
    if dir == Direction::Outbound {
        flow.peer_names = shared.names.names_for(dst.ip());
    }
    flow.process = shared.process.attribute(dir, client, dst);

    let mut stream = stream;
    let mut buf = BytesMut::with_capacity(4096);
    let detected = match read_detect(&mut stream, &mut buf, shared.config.detect_timeout()).await {
        Ok(d) => d,
        Err(e) => {
            m.error(dir, "detect");
            debug!(error = %e, "client failed during detection");
            return;
        }
    };
    flow.protocol = match &detected {
        Detected::Http1 => AppProtocol::Http,
        Detected::Http2 => AppProtocol::Http2,
        Detected::Tls(_) => AppProtocol::Tls,
        Detected::Opaque => AppProtocol::Opaque,
    };
    if let Detected::Tls(hello) = &detected {
        flow.sni = hello.sni.clone();
        flow.alpn = hello.alpn.clone();
    }

    let id = shared.flows.next_id(start_ms);
    let record = |flow: Flow, decision: Decision, sent: u64, received: u64| {
        m.bytes(dir, sent, received);
        shared.flows.record(FlowRecord {
            id: id.clone(),
            start_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            flow,
            bytes_sent: sent,
            bytes_received: received,
            decision,
            kind: RecordKind::Connection,
            status: None,
        });
    };

    if detected == Detected::Http1 {
        if let Some(end) = head_end(&buf) {
            if let Err(e) = check_raw_head(&buf[..end]) {
                m.error(dir, "ambiguous_request");
                debug!(error = %e, "rejecting ambiguous first request");
                let msg = format!(
                    "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: {}\r\n\r\nbad request: {e}\n",
                    format!("bad request: {e}\n").len()
                );
                let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, msg.as_bytes()).await;
                record(flow, Decision::allow_learning(), 0, msg.len() as u64);
                return;
            }
        }
    }

    let decision = shared.hook.decide(&flow);
    m.connection(dir, flow.protocol, &decision);
    if !decision.is_allowed() {
        info!(event_id = %id, direction = d, peer = %flow.peer, protocol = flow.protocol.as_str(),
              sni = ?flow.sni, rule = decision.rule_label(), "connection denied");
        tcp::reset(&stream);
        drop(stream);
        record(flow, decision, 0, 0);
        return;
    }

    let counts = Arc::new(ByteCounts::default());
    let client_io = Rewind::new(buf.freeze(), stream);
    match detected {
        Detected::Http1 | Detected::Http2 => {
            let h2 = detected == Detected::Http2;
            let ctx = Arc::new(ConnCtx::new(shared.clone(), flow.clone(), dst));
            if let Err(e) = http::serve(ctx, Counted::new(client_io, counts.clone()), h2).await {
                m.error(dir, "http");
                debug!(error = %e, "http connection ended with error");
            }
        }
        Detected::Tls(_) | Detected::Opaque => {
            let connect =
                tokio::time::timeout(shared.config.connect_timeout(), TcpStream::connect(dst))
                    .await;
            let upstream = match connect {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    m.error(dir, "connect");
                    debug!(%dst, error = %e, "upstream connect failed");
                    tcp::reset(client_io.get_ref());
                    record(flow, decision, 0, 0);
                    return;
                }
                Err(_) => {
                    m.error(dir, "connect");
                    debug!(%dst, "upstream connect timed out");
                    tcp::reset(client_io.get_ref());
                    record(flow, decision, 0, 0);
                    return;
                }
            };
            let _ = upstream.set_nodelay(true);
            let chain = StreamChain::begin_with_id(&shared.inspectors.load(), &flow, &id);
            match tcp::relay(client_io, upstream, chain, counts.clone()).await {
                Ok(()) => {}
                Err(tcp::RelayError::Blocked { rule, reason }) => {
                    m.inspector_blocks.with_label_values(&[d, "stream"]).inc();
                    info!(event_id = %id, %rule, %reason, "stream blocked by inspector");
                }
                Err(e) => {
                    m.error(dir, "relay");
                    debug!(error = %e, "relay ended with error");
                }
            }
        }
    }
    record(flow, decision, counts.read(), counts.written());
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_to_opaque() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let mut buf = BytesMut::new();
        let t0 = tokio::time::Instant::now();
        let d = read_detect(&mut server, &mut buf, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(d, Detected::Opaque);
        assert!(buf.is_empty());
        assert_eq!(t0.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn split_request_line_is_reassembled() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            client.write_all(b"GE").await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            client
                .write_all(b"T / HTTP/1.1\r\nHost: a\r\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"\r\n").await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let mut buf = BytesMut::new();
        let d = read_detect(&mut server, &mut buf, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(d, Detected::Http1);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn partial_request_line_then_silence_is_opaque_and_kept() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET /slow").await.unwrap();
        let mut buf = BytesMut::new();
        let d = read_detect(&mut server, &mut buf, Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(d, Detected::Opaque);
        assert_eq!(&buf[..], b"GET /slow"); // replayed to the upstream, never lost
    }

    #[tokio::test(start_paused = true)]
    async fn fragmented_client_hello_is_detected() {
        let hello = crate::tls::build_client_hello(Some("slow.example"), &[]);
        let (mut client, mut server) = tokio::io::duplex(4096);
        let h = hello.clone();
        tokio::spawn(async move {
            for b in h.chunks(10) {
                client.write_all(b).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let mut buf = BytesMut::new();
        match read_detect(&mut server, &mut buf, Duration::from_millis(300))
            .await
            .unwrap()
        {
            Detected::Tls(h) => assert_eq!(h.sni.as_deref(), Some("slow.example")),
            d => panic!("{d:?}"),
        }
        assert_eq!(&buf[..], &hello[..]);
    }
}
