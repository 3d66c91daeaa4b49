//! The HTTP relay: hyper server on the accepted (replayed) connection,
//! hyper client to the original destination, the decision hook and the
//! inspection phases per request, upgrades handed over to a byte relay.

pub mod body;
pub mod headers;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use podwarden_policy::{Decision, Flow, FlowRecord, RecordKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info};

use crate::inspect::{Block, RequestChain, Verdict};
use crate::metrics::direction_label;
use crate::proxy::Shared;
use crate::records::now_ms;
use body::{lock, Exchange, Phase, TapBody};
use headers::{check_headers, request_info, strip_hop_by_hop, wants_upgrade};
use upstream::{BoxError, ReqBody};

/// Largest request body (by its declared length) read whole for inspection.
const BUFFER_BODY_MAX: u64 = 64 * 1024;

pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Per downstream connection state shared by its requests.
pub struct ConnCtx {
    pub shared: Arc<Shared>,
    /// The connection-level flow (protocol filled, no `http`).
    pub flow: Flow,
    pub dst: SocketAddr,
    h1_upstream: Mutex<Option<http1::SendRequest<ReqBody>>>,
}

impl ConnCtx {
    pub fn new(shared: Arc<Shared>, flow: Flow, dst: SocketAddr) -> Self {
        ConnCtx {
            shared,
            flow,
            dst,
            h1_upstream: Mutex::new(None),
        }
    }
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        if let Some(s) = lock(&self.h1_upstream).take() {
            self.shared.pool.put_idle(self.dst, s);
        }
    }
}

/// Serves one downstream connection as HTTP/1.x or HTTP/2 (prior knowledge).
pub async fn serve<I>(ctx: Arc<ConnCtx>, io: I, h2: bool) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(ctx.clone(), req));
    let io = TokioIo::new(io);
    if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .with_upgrades()
            .await
    }
}

fn full(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The 403 a denied or blocked request gets; the event id ties it to logs,
/// events and `/flows`.
pub fn forbidden(event_id: &str, reason: &str, rule: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": "forbidden",
        "reason": reason,
        "rule": rule,
        "event_id": event_id,
    });
    let mut r = full(
        StatusCode::FORBIDDEN,
        "application/json",
        format!("{body}\n"),
    );
    if let Ok(v) = HeaderValue::from_str(event_id) {
        r.headers_mut().insert("x-podwarden-event-id", v);
    }
    r
}

/// Builds and submits the request's flow record; submitted on drop so it
/// also covers responses whose bodies end early.
struct RequestRecord {
    shared: Arc<Shared>,
    id: String,
    start_ms: u64,
    started: Instant,
    flow: Flow,
    decision: Decision,
    status: Option<u16>,
    exchange: Arc<Exchange>,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let rec = FlowRecord {
            id: std::mem::take(&mut self.id),
            start_ms: self.start_ms,
            duration_ms: self.started.elapsed().as_millis() as u64,
            flow: std::mem::replace(&mut self.flow, placeholder_flow()),
            bytes_sent: self.exchange.sent.load(Ordering::Relaxed),
            bytes_received: self.exchange.received.load(Ordering::Relaxed),
            decision: std::mem::replace(&mut self.decision, Decision::allow_learning()),
            kind: RecordKind::Request,
            status: self.status,
        };
        self.shared.flows.record(rec);
    }
}

fn placeholder_flow() -> Flow {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    Flow::connection(
        podwarden_policy::Direction::Outbound,
        unspecified,
        unspecified,
    )
}

async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    Ok(handle_inner(ctx, req).await)
}

async fn handle_inner(ctx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let shared = ctx.shared.clone();
    let dir = ctx.flow.direction;
    let start_ms = now_ms();
    let mut flow = ctx.flow.clone();
    flow.http = Some(request_info(&req));
    let exchange = Arc::new(Exchange::default());
    let mut rec = RequestRecord {
        shared: shared.clone(),
        id: shared.flows.next_id(start_ms),
        start_ms,
        started: Instant::now(),
        flow,
        decision: Decision::allow_learning(),
        status: None,
        exchange: exchange.clone(),
    };

    if let Err(e) = check_headers(req.headers()) {
        shared.metrics.error(dir, "ambiguous_request");
        debug!(error = %e, "rejecting ambiguous request");
        rec.status = Some(400);
        let mut r = full(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("bad request: {e}\n"),
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }

    rec.decision = shared.hook.decide(&rec.flow);
    shared.metrics.request(dir, &rec.decision);
    if !rec.decision.is_allowed() {
        info!(event_id = %rec.id, direction = direction_label(dir), peer = %rec.flow.peer,
              http = ?rec.flow.http, rule = rec.decision.rule_label(), "http request denied");
        rec.status = Some(403);
        drain(req.into_body()).await;
        return forbidden(&rec.id, "denied by policy", rec.decision.rule_label());
    }

    let mut chain = RequestChain::begin_with_id(&shared.inspectors.load(), &rec.flow, &rec.id);
    let upgrade = wants_upgrade(&req);
    let down_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if let Some(c) = chain.as_mut() {
        if let Verdict::Block(b) = c.request_head(&parts) {
            drain(body).await;
            return blocked(&shared, &mut rec, "request_head", &b);
        }
        if body.is_end_stream() {
            if let Verdict::Block(b) = c.request_body(&[], true) {
                return blocked(&shared, &mut rec, "request_body", &b);
            }
        }
    }
    strip_hop_by_hop(&mut parts.headers, upgrade);
    // Small bodies are read whole and inspected before anything is sent
    // upstream, so a blocked request never reaches the server. Larger or
    // unbounded bodies stream, and a block aborts the upstream request.
    let small = body
        .size_hint()
        .upper()
        .is_some_and(|u| u <= BUFFER_BODY_MAX);
    let (buffered, body) = match chain.as_mut() {
        Some(c) if small && !body.is_end_stream() => {
            let bytes = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    debug!(error = %e, "client request body failed");
                    rec.status = Some(400);
                    return full(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        "bad request body\n".into(),
                    );
                }
            };
            exchange
                .sent
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            if let Verdict::Block(b) = c.request_body(&bytes, true) {
                return blocked(&shared, &mut rec, "request_body", &b);
            }
            (Some(bytes), None)
        }
        _ => (None, Some(body)),
    };
    let chain = chain.map(|c| Arc::new(Mutex::new(c)));
    let up_body: ReqBody = match (buffered, body) {
        (Some(bytes), _) => Full::new(bytes).map_err(|never| match never {}).boxed(),
        (None, None) => http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed(),
        // Nothing to count or inspect: no wrapper (and no allocation for it).
        (None, Some(body)) if chain.is_none() && body.is_end_stream() => {
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed()
        }
        (None, Some(body)) => {
            let empty = body.is_end_stream();
            let tap = TapBody::new(body, Phase::Request, chain.clone(), exchange.clone(), None);
            if empty {
                tap.already_ended().boxed()
            } else {
                tap.boxed()
            }
        }
    };
    let up_req = Request::from_parts(parts, up_body);

    let dst = ctx.dst;
    let result = if up_req.version() == Version::HTTP_2 {
        shared.pool.send_h2(dst, up_req).await
    } else {
        let own = lock(&ctx.h1_upstream).take();
        match shared.pool.h1_sender(dst, own).await {
            Ok(mut s) => {
                let r = shared.pool.send_h1(dst, &mut s, up_req).await;
                if !upgrade {
                    *lock(&ctx.h1_upstream) = Some(s);
                }
                r
            }
            Err(e) => Err(e),
        }
    };
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(b) = lock(&exchange.blocked).take() {
                return blocked(&shared, &mut rec, "request_body", &b);
            }
            shared.metrics.error(dir, "upstream");
            debug!(%dst, error = %e, "upstream request failed");
            rec.status = Some(502);
            return full(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                "bad gateway\n".into(),
            );
        }
    };
    rec.status = Some(resp.status().as_u16());

    let switching = upgrade
        && (resp.status() == StatusCode::SWITCHING_PROTOCOLS
            || (rec
                .flow
                .http
                .as_ref()
                .is_some_and(|h| h.method == Method::CONNECT.as_str())
                && resp.status().is_success()));
    let up_upgrade = switching.then(|| hyper::upgrade::on(&mut resp));
    let (mut rparts, rbody) = resp.into_parts();
    if let Some(c) = &chain {
        let v = lock(c).response_head(&rparts);
        if let Verdict::Block(b) = v {
            return blocked(&shared, &mut rec, "response_head", &b);
        }
        if rbody.is_end_stream() {
            if let Verdict::Block(b) = lock(c).response_body(&[], true) {
                return blocked(&shared, &mut rec, "response_body", &b);
            }
        }
    }
    strip_hop_by_hop(&mut rparts.headers, switching);
    if let (Some(down), Some(up)) = (down_upgrade, up_upgrade) {
        spawn_tunnel(shared.clone(), dir, down, up);
    }
    let empty = rbody.is_end_stream();
    let mut tap = TapBody::new(rbody, Phase::Response, chain, exchange, Some(Box::new(rec)));
    if empty {
        tap = tap.already_ended();
    }
    Response::from_parts(rparts, tap.boxed())
}

/// Reads and discards a refused request's body (bounded in size and time) so
/// that the HTTP/1 connection can carry the client's next request; hyper
/// closes connections whose request body was left unread.
async fn drain(mut body: Incoming) {
    const MAX_DRAIN: usize = 64 * 1024;
    let mut seen = 0;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while seen <= MAX_DRAIN {
            match body.frame().await {
                Some(Ok(f)) => seen += f.data_ref().map_or(0, |d| d.len()),
                _ => break,
            }
        }
    })
    .await;
}

fn blocked(
    shared: &Shared,
    rec: &mut RequestRecord,
    phase: &'static str,
    b: &Block,
) -> Response<ProxyBody> {
    let dir = rec.flow.direction;
    shared
        .metrics
        .inspector_blocks
        .with_label_values(&[direction_label(dir), phase])
        .inc();
    info!(event_id = %rec.id, phase, rule = %b.rule, reason = %b.reason, "http request blocked by inspector");
    rec.status = Some(403);
    forbidden(&rec.id, &b.reason, &b.rule)
}

/// After a 101 (or 2xx to CONNECT) both sides are raw byte streams.
fn spawn_tunnel(
    shared: Arc<Shared>,
    dir: podwarden_policy::Direction,
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
) {
    tokio::spawn(async move {
        let (down, up) = match tokio::try_join!(down, up) {
            Ok(p) => p,
            Err(e) => {
                debug!(error = %e, "upgrade failed");
                shared.metrics.error(dir, "upgrade");
                return;
            }
        };
        let mut down = TokioIo::new(down);
        let mut up = TokioIo::new(up);
        if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
            debug!(error = %e, "upgraded tunnel ended with error");
        }
    });
}
