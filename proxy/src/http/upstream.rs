//! Upstream HTTP connections to original destinations, with reuse.
//!
//! Why not hyper-util's legacy `Client`: it routes and pools by the request
//! URI's authority and rewrites HTTP/2 `:authority` from it, while a
//! transparent proxy must dial the *original destination* and forward the
//! request target untouched. A small pool keyed by (original dst, protocol)
//! on top of hyper's `client::conn` does exactly that.
//!
//! HTTP/1: one connection serves one request at a time. A downstream
//! connection keeps its upstream connection for its whole life (its requests
//! are sequential anyway) and gives it back to the shared idle pool when it
//! ends, so clients that reconnect per request still reuse upstream
//! connections. HTTP/2: one multiplexed connection per destination.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::debug;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ReqBody = BoxBody<Bytes, BoxError>;

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("connect to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("request to {0}: {1}")]
    Request(SocketAddr, hyper::Error),
}

impl UpstreamError {
    /// The request body failed (e.g. an inspector blocked it), not upstream.
    pub fn is_body_error(&self) -> bool {
        matches!(self, UpstreamError::Request(_, e) if e.is_user())
    }
}

struct Idle {
    sender: http1::SendRequest<ReqBody>,
    since: Instant,
}

pub struct UpstreamPool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    h2: Mutex<HashMap<SocketAddr, http2::SendRequest<ReqBody>>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    connects: Connects,
}

/// The children of `podwarden_upstream_http_connections_total`, resolved
/// once (one of them is bumped on every request).
struct Connects {
    h1_reused: IntCounter,
    h1_pooled: IntCounter,
    h1_new: IntCounter,
    h2_shared: IntCounter,
    h2_new: IntCounter,
}

impl Connects {
    fn new(v: &IntCounterVec) -> Self {
        let c = |p: &str, o: &str| v.with_label_values(&[p, o]);
        Connects {
            h1_reused: c("http1", "reused"),
            h1_pooled: c("http1", "pooled"),
            h1_new: c("http1", "new"),
            h2_shared: c("http2", "shared"),
            h2_new: c("http2", "new"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl UpstreamPool {
    pub fn new(
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
        registry: &Registry,
    ) -> Result<Self, prometheus::Error> {
        let connects = IntCounterVec::new(
            Opts::new(
                "podwarden_upstream_http_connections_total",
                "Upstream HTTP connections: new dials vs reuse of an idle or shared one.",
            ),
            &["protocol", "outcome"],
        )?;
        registry.register(Box::new(connects.clone()))?;
        Ok(UpstreamPool {
            idle: Mutex::new(HashMap::new()),
            h2: Mutex::new(HashMap::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
            connects: Connects::new(&connects),
        })
    }

    async fn dial(&self, dst: SocketAddr) -> Result<TokioIo<TcpStream>, UpstreamError> {
        let s = tokio::time::timeout(self.connect_timeout, TcpStream::connect(dst))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(dst))?
            .map_err(|e| UpstreamError::Connect(dst, e))?;
        let _ = s.set_nodelay(true);
        Ok(TokioIo::new(s))
    }

    fn take_idle(&self, dst: SocketAddr) -> Option<http1::SendRequest<ReqBody>> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(&dst)?;
        while let Some(i) = list.pop() {
            if i.since.elapsed() < self.idle_timeout && !i.sender.is_closed() && i.sender.is_ready()
            {
                return Some(i.sender);
            }
        }
        None
    }

    /// Drops idle connections past the idle timeout or closed by the server
    /// (run periodically so idle upstream sockets do not linger).
    pub fn prune(&self) {
        let mut idle = lock(&self.idle);
        idle.retain(|_, list| {
            list.retain(|i| i.since.elapsed() < self.idle_timeout && !i.sender.is_closed());
            !list.is_empty()
        });
        drop(idle);
        lock(&self.h2).retain(|_, s| !s.is_closed());
    }

    /// Gives an HTTP/1 connection back for reuse by other downstream conns.
    pub fn put_idle(&self, dst: SocketAddr, sender: http1::SendRequest<ReqBody>) {
        if self.max_idle == 0 || sender.is_closed() || !sender.is_ready() {
            return;
        }
        let mut idle = lock(&self.idle);
        let list = idle.entry(dst).or_default();
        list.retain(|i| i.since.elapsed() < self.idle_timeout && !i.sender.is_closed());
        if list.len() < self.max_idle {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// An HTTP/1 connection to `dst`: the caller's own, an idle one, or new.
    pub async fn h1_sender(
        &self,
        dst: SocketAddr,
        own: Option<http1::SendRequest<ReqBody>>,
    ) -> Result<http1::SendRequest<ReqBody>, UpstreamError> {
        if let Some(mut s) = own {
            // The previous response may still be finishing; wait for it.
            if s.ready().await.is_ok() {
                self.connects.h1_reused.inc();
                return Ok(s);
            }
        }
        if let Some(s) = self.take_idle(dst) {
            self.connects.h1_pooled.inc();
            return Ok(s);
        }
        let io = self.dial(dst).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Handshake(dst, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(%dst, error = %e, "upstream http1 connection ended");
            }
        });
        self.connects.h1_new.inc();
        Ok(sender)
    }

    pub async fn send_h1(
        &self,
        dst: SocketAddr,
        sender: &mut http1::SendRequest<ReqBody>,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Request(dst, e))
    }

    async fn h2_sender(
        &self,
        dst: SocketAddr,
    ) -> Result<http2::SendRequest<ReqBody>, UpstreamError> {
        if let Some(s) = lock(&self.h2).get(&dst) {
            if !s.is_closed() {
                self.connects.h2_shared.inc();
                return Ok(s.clone());
            }
        }
        let io = self.dial(dst).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Handshake(dst, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(%dst, error = %e, "upstream http2 connection ended");
            }
        });
        self.connects.h2_new.inc();
        lock(&self.h2).insert(dst, sender.clone());
        Ok(sender)
    }

    pub async fn send_h2(
        &self,
        dst: SocketAddr,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut s = self.h2_sender(dst).await?;
        if s.ready().await.is_err() {
            lock(&self.h2).remove(&dst);
            s = self.h2_sender(dst).await?;
        }
        s.send_request(req)
            .await
            .map_err(|e| UpstreamError::Request(dst, e))
    }
}
