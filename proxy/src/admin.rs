//! Admin server on its own thread and single-threaded runtime, so scrapes
//! and `/flows` dumps never queue behind (or in front of) traffic.
//!
//! `/healthz` (process alive), `/ready` (listeners bound), `/flows`
//! (JSON array of flow records, oldest first; `?since=<id>` or
//! `?since=<unix ms>`), `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, TextEncoder};
use tracing::{debug, info};

use crate::proxy::Shared;

pub struct AdminServer {
    pub addr: SocketAddr,
    pub thread: JoinHandle<()>,
}

/// Binds the admin address now (so a bad address fails start-up) and serves
/// it on a dedicated thread.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<AdminServer> {
    let addr = shared.config.admin_addr;
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
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
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(route(&shared, &req)) }
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
