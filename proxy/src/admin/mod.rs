//! Admin server on its own thread and single-threaded runtime, so scrapes
//! and `/flows` dumps never queue behind (or in front of) traffic.
//!
//! `/healthz` (process alive), `/ready` (listeners bound), `/flows`
//! (JSON array of flow records, oldest first; `?since=<id>` or
//! `?since=<unix ms>`), `/metrics` (Prometheus text format) are open (the
//! kubelet probes them). `GET /baseline`, `GET /status`, `GET /rules/usage`
//! and `PUT /policy` need the bearer token (see [`control`] and [`auth`]).

pub mod auth;
pub mod control;
pub mod violations;
pub mod wait_ready;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, TextEncoder};
use tracing::{debug, info};

use crate::proxy::Shared;
use control::{AdminControl, Reply, MAX_POLICY_BYTES};

pub struct AdminServer {
    pub addr: SocketAddr,
    pub thread: JoinHandle<()>,
}

/// Binds the admin address now (so a bad address fails start-up) and serves
/// it on a dedicated thread, without the authenticated routes.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<AdminServer> {
    spawn_with(shared, Arc::new(AdminControl::disabled()))
}

/// [`spawn`] with the control plane (`/baseline`, `/status`, `PUT /policy`).
pub fn spawn_with(shared: Arc<Shared>, control: Arc<AdminControl>) -> std::io::Result<AdminServer> {
    let std_listener = bind(shared.config.admin_addr)?;
    let addr = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("podwarden-admin".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "admin listener");
                        return;
                    }
                };
                info!(%addr, "admin server listening");
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(e) => {
                            debug!(error = %e, "admin accept");
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    let control = control.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let shared = shared.clone();
                            let control = control.clone();
                            async move { Ok::<_, Infallible>(handle(&shared, &control, req).await) }
                        });
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = conn.await {
                            debug!(error = %e, "admin connection");
                        }
                    });
                }
            })
        })?;
    Ok(AdminServer { addr, thread })
}

/// `[::]` is bound dual-stack (kubelet and operator may use either family),
/// falling back to `0.0.0.0` where the host has no IPv6.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let one = |addr: SocketAddr| -> std::io::Result<std::net::TcpListener> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if addr.is_ipv6() {
            s.set_only_v6(false)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(128)?;
        s.set_nonblocking(true)?;
        Ok(s.into())
    };
    match one(addr) {
        Err(e) if addr.ip() == std::net::IpAddr::from([0u16; 8]) => {
            tracing::warn!(error = %e, "admin: dual-stack bind failed; IPv4 only");
            one(SocketAddr::from(([0, 0, 0, 0], addr.port())))
        }
        r => r,
    }
}

/// Authenticated routes first, then the open ones.
pub async fn handle(
    shared: &Shared,
    control: &Arc<AdminControl>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let authed = matches!(
        (req.method(), path),
        (&Method::GET, "/baseline")
            | (&Method::GET, "/status")
            | (&Method::GET, "/rules/usage")
            | (&Method::PUT, "/policy")
    );
    if !authed {
        if path == "/policy" {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "PUT /policy only\n",
            );
        }
        return route(shared, &req);
    }
    if let Err(e) = auth::check(control.token(), req.headers()) {
        debug!(?e, path, "admin request refused");
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            match e {
                auth::AuthError::NotConfigured => "unauthorized: no admin token configured\n",
                _ => "unauthorized\n",
            },
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let reply = match path {
        "/baseline" => {
            let c = control.clone();
            blocking(move || c.baseline()).await
        }
        "/status" => Reply::json_status(&control.status()),
        "/rules/usage" => control.rule_usage(&shared.registry),
        _ => match Limited::new(req.into_body(), MAX_POLICY_BYTES)
            .collect()
            .await
        {
            Err(e) => Reply::text(
                400,
                format!(
                    "PUT /policy: cannot read the body (at most {MAX_POLICY_BYTES} bytes): {e}"
                ),
            ),
            Ok(body) => {
                let body = body.to_bytes();
                let c = control.clone();
                blocking(move || c.put_policy(&body)).await
            }
        },
    };
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let ct = if reply.json {
        "application/json"
    } else {
        "text/plain"
    };
    text(status, ct, reply.body)
}

/// Compiling a policy or building a baseline document is CPU work: off the
/// admin runtime's only thread, so `/ready` probes keep answering.
async fn blocking(f: impl FnOnce() -> Reply + Send + 'static) -> Reply {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Reply::text(500, format!("admin task failed: {e}")))
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

pub fn route(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    route_parts(shared, req.method(), req.uri().path(), req.uri().query())
}

/// Routing without I/O, so it is testable without sockets.
pub fn route_parts(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n",
        );
    }
    match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/ready" => {
            if shared.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "text/plain", "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n")
            }
        }
        "/flows" => {
            let records = shared.flows.snapshot(query_param(query, "since"));
            let refs: Vec<&podwarden_policy::FlowRecord> =
                records.iter().map(|r| r.as_ref()).collect();
            match serde_json::to_vec(&refs) {
                Ok(v) => text(StatusCode::OK, "application/json", v),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                ),
            }
        }
        "/flowlog" => crate::flowlog::admin_response(&shared.config, query),
        "/coverage" => crate::flowlog::coverage_response(&shared.config, query),
        "/metrics" => {
            let mut out = Vec::new();
            let enc = TextEncoder::new();
            match enc.encode(&shared.registry.gather(), &mut out) {
                Ok(()) => text(StatusCode::OK, "text/plain; version=0.0.4", out),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    format!("{e}\n"),
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod coverage_tests;
#[cfg(test)]
mod usage_tests;
