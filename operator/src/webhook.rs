//! The admission webhook's HTTPS server and the operator's plain-HTTP
//! health/metrics server. Injection decisions are [`crate::inject::mutate`].

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::net::TcpListener;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::inject::{mutate, InjectConfig};
use crate::metrics::METRICS;

/// Admission requests are a pod spec; anything much larger is not one.
const MAX_BODY: usize = 4 << 20;

/// The serving certificate, swappable at runtime (rotation).
#[derive(Debug)]
pub struct CertStore(RwLock<Option<Arc<CertifiedKey>>>);

impl CertStore {
    pub fn new() -> Arc<Self> {
        Arc::new(CertStore(RwLock::new(None)))
    }
    pub fn set(&self, key: CertifiedKey) {
        if let Ok(mut g) = self.0.write() {
            *g = Some(Arc::new(key));
        }
    }
    pub fn is_loaded(&self) -> bool {
        self.0.read().map(|g| g.is_some()).unwrap_or(false)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().and_then(|g| g.clone())
    }
}

/// Where namespace labels come from (the API server in production).
pub trait NamespaceLabels: Send + Sync {
    fn labels(
        &self,
        namespace: &str,
    ) -> impl std::future::Future<Output = Result<BTreeMap<String, String>, String>> + Send;
}

pub struct ApiNamespaces(pub kube::Api<Namespace>);

impl NamespaceLabels for ApiNamespaces {
    async fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>, String> {
        let ns = self.0.get(namespace).await.map_err(|e| e.to_string())?;
        Ok(ns.metadata.labels.unwrap_or_default())
    }
}

/// One AdmissionReview body in, one out. Errors become denials (fail closed).
pub async fn review(body: &[u8], namespaces: &impl NamespaceLabels, cfg: &InjectConfig) -> Vec<u8> {
    let resp = match serde_json::from_slice::<AdmissionReview<Pod>>(body) {
        Err(e) => {
            METRICS.admission.with_label_values(&["error"]).inc();
            AdmissionResponse::invalid(format!("podwarden: not an AdmissionReview of a Pod: {e}"))
        }
        Ok(review) => match TryInto::<AdmissionRequest<Pod>>::try_into(review) {
            Err(_) => {
                METRICS.admission.with_label_values(&["error"]).inc();
                AdmissionResponse::invalid("podwarden: AdmissionReview without a request")
            }
            Ok(req) => {
                let ns = req.namespace.clone().unwrap_or_default();
                match namespaces.labels(&ns).await {
                    Ok(labels) => {
                        let r = mutate(&req, &labels, cfg);
                        let result = if !r.allowed {
                            "denied"
                        } else if r.patch.is_some() {
                            "injected"
                        } else {
                            "skipped"
                        };
                        METRICS.admission.with_label_values(&[result]).inc();
                        r
                    }
                    Err(e) => {
                        METRICS.admission.with_label_values(&["error"]).inc();
                        AdmissionResponse::from(&req)
                            .deny(format!("podwarden: cannot read namespace {ns}: {e}"))
                    }
                }
            }
        },
    };
    encode_review(resp)
}

/// Serialises the review with `response.patch` base64-encoded, as the
/// admission API documents for `[]byte` in JSON. kube-core 5 writes the
/// bytes as a JSON array of numbers (kube-rs issue #1781); we do not rely
/// on the API server tolerating that.
fn encode_review(resp: AdmissionResponse) -> Vec<u8> {
    use base64::Engine;
    let Ok(mut v) = serde_json::to_value(resp.into_review()) else {
        return Vec::new();
    };
    if let Some(patch) = v.pointer_mut("/response/patch") {
        if let Ok(bytes) = serde_json::from_value::<Vec<u8>>(patch.clone()) {
            *patch =
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle_webhook<N: NamespaceLabels>(
    req: Request<Incoming>,
    ns: Arc<N>,
    cfg: Arc<InjectConfig>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != hyper::Method::POST || req.uri().path() != "/inject" {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(text(StatusCode::PAYLOAD_TOO_LARGE, format!("{e}\n"))),
    };
    let out = review(&body, ns.as_ref(), &cfg).await;
    let mut r = text(StatusCode::OK, out);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Serves `POST /inject` over TLS until the task is dropped.
pub async fn serve_webhook<N: NamespaceLabels + 'static>(
    listener: TcpListener,
    certs: Arc<CertStore>,
    ns: Arc<N>,
    cfg: Arc<InjectConfig>,
) {
    let builder = match tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "rustls refused its default protocol versions");
            return;
        }
    };
    let mut tls = builder.with_no_client_auth().with_cert_resolver(certs);
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let (acceptor, ns, cfg) = (acceptor.clone(), ns.clone(), cfg.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let svc =
                hyper::service::service_fn(move |r| handle_webhook(r, ns.clone(), cfg.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}

/// `/healthz` (process alive), `/readyz` (certificate loaded) and `/metrics`.
pub async fn serve_health(listener: TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |r: Request<Incoming>| {
                let ready = ready.load(Ordering::Relaxed);
                async move {
                    Ok::<_, Infallible>(match r.uri().path() {
                        "/healthz" => text(StatusCode::OK, "ok\n"),
                        "/readyz" if ready => text(StatusCode::OK, "ready\n"),
                        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "no certificate yet\n"),
                        "/metrics" => text(StatusCode::OK, crate::metrics::render()),
                        _ => text(StatusCode::NOT_FOUND, "not found\n"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
