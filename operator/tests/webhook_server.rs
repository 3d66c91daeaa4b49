//! The webhook server over real TLS on loopback, with an operator-generated
//! certificate: what the API server does, minus the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use podwarden_operator::inject::InjectConfig;
use podwarden_operator::tls;
use podwarden_operator::webhook::{review, serve_webhook, CertStore, NamespaceLabels};
use serde_json::{json, Value};
use tokio_rustls::rustls;

struct Labels(BTreeMap<String, BTreeMap<String, String>>);
impl NamespaceLabels for Labels {
    async fn labels(&self, ns: &str) -> Result<BTreeMap<String, String>, String> {
        self.0
            .get(ns)
            .cloned()
            .ok_or_else(|| format!("namespaces \"{ns}\" not found"))
    }
}

fn labels() -> Labels {
    Labels(BTreeMap::from([(
        "shop".to_string(),
        BTreeMap::from([("podwarden.io/inject".to_string(), "enabled".to_string())]),
    )]))
}

fn review_body(ns: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/webhook/deployment-basic/review.json"),
    )
    .unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["request"]["namespace"] = json!(ns);
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn review_bytes_in_review_bytes_out_and_errors_deny() {
    let cfg = InjectConfig::default();
    let out: Value =
        serde_json::from_slice(&review(&review_body("shop"), &labels(), &cfg).await).unwrap();
    assert_eq!(out["kind"], "AdmissionReview");
    assert_eq!(out["response"]["allowed"], true);
    assert_eq!(out["response"]["patchType"], "JSONPatch");
    assert!(
        out["response"]["patch"].is_string(),
        "patch must be base64 text: {out}"
    );
    assert_eq!(
        out["response"]["uid"], "aae4950e-be62-5d8a-90d3-e2ecd6ba3ae5",
        "uid echoed: {out}"
    );

    // Namespace lookup failure: fail closed, with the reason.
    let out: Value =
        serde_json::from_slice(&review(&review_body("ghost"), &labels(), &cfg).await).unwrap();
    assert_eq!(out["response"]["allowed"], false);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("ghost"),
        "{out}"
    );

    // Garbage: an invalid response, not a panic.
    let out: Value = serde_json::from_slice(&review(b"{not json", &labels(), &cfg).await).unwrap();
    assert_eq!(out["response"]["allowed"], false);
}

#[tokio::test]
async fn serves_admission_over_tls_with_the_generated_certificate() {
    let now = time::OffsetDateTime::now_utc();
    let m = tls::generate("podwarden", "podwarden-system", now, 90, None).unwrap();
    let certs = CertStore::new();
    certs.set(tls::certified_key(&m.cert_pem, &m.key_pem).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_webhook(
        listener,
        certs,
        Arc::new(labels()),
        Arc::new(InjectConfig::default()),
    ));

    // A client that trusts only the caBundle, as the API server does.
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut m.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("podwarden.podwarden-system.svc").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("/inject")
        .header("host", "podwarden.podwarden-system.svc")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(review_body("shop"))))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let out: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(out["response"]["allowed"], true);
    // base64 of the JSON Patch, as the admission API documents.
    use base64::Engine;
    let b64 = out["response"]["patch"]
        .as_str()
        .expect("patch must be a base64 string");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    assert!(patch.0.len() >= 4, "{patch:?}");

    // A client that does not trust this CA is refused at the handshake.
    let other = tls::generate("podwarden", "podwarden-system", now, 90, None).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut other.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("podwarden.podwarden-system.svc").unwrap();
    assert!(tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .is_err());
}
