//! HTTP(S) webhook: each batch is POSTed as a JSON array, retried with
//! exponential backoff on connection errors, timeouts, 429 and 5xx.
//! `https://` verifies the collector's certificate against the Mozilla roots
//! (webpki-roots, compiled in: sidecar images often carry no CA bundle) or,
//! when `caFile` is set, against the PEM certificates in that file only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use podwarden_policy::events::SecurityEvent;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host[:port]/path` or `https://host[:port]/path`
    pub url: String,
    /// PEM file of the CA(s) that sign the collector's certificate
    /// (`https://` only); default: the Mozilla root set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Sent as `Authorization: Bearer ...` when set.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

fn default_attempts() -> u32 {
    5
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_backoff_ms() -> u64 {
    200
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook url {0:?}: expected http(s)://host[:port]/path")]
    BadUrl(String),
    #[error("webhook caFile {path}: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("webhook caFile is set but the url {0:?} is not https://")]
    CaFileWithoutTls(String),
    #[error("webhook TLS setup: {0}")]
    Tls(String),
}

pub(crate) struct WebhookSender {
    config: WebhookConfig,
    authority: String,
    path: String,
    /// Set for `https://`: the connector and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

/// The parts of a webhook URL.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    tls: bool,
    /// `host:port`, what to connect to and send as Host.
    authority: String,
    /// The host alone, without brackets: the TLS server name.
    host: String,
    path: String,
}

fn split_url(url: &str) -> Option<Target> {
    let (tls, rest, default_port) = match url.strip_prefix("https://") {
        Some(r) => (true, r, 443),
        None => (false, url.strip_prefix("http://")?, 80),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']'));
    let (host, authority) = if has_port {
        let (h, _) = authority.rsplit_once(':')?;
        (h, authority.to_string())
    } else {
        (authority, format!("{authority}:{default_port}"))
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some(Target {
        tls,
        authority,
        host: host.to_string(),
        path: path.to_string(),
    })
}

fn tls_connector(ca_file: Option<&PathBuf>) -> Result<TlsConnector, WebhookError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bad = |reason: String| WebhookError::BadCaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut n = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| bad(e.to_string()))?;
                roots.add(cert).map_err(|e| bad(e.to_string()))?;
                n += 1;
            }
            if n == 0 {
                return Err(bad("no PEM certificate in the file".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

enum Outcome {
    Delivered,
    Retry(String),
    Fatal(String),
}

impl WebhookSender {
    pub(crate) fn new(config: WebhookConfig) -> Result<WebhookSender, WebhookError> {
        let target =
            split_url(&config.url).ok_or_else(|| WebhookError::BadUrl(config.url.clone()))?;
        let tls = if target.tls {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|_| WebhookError::BadUrl(config.url.clone()))?;
            Some((tls_connector(config.ca_file.as_ref())?, name))
        } else if config.ca_file.is_some() {
            return Err(WebhookError::CaFileWithoutTls(config.url.clone()));
        } else {
            None
        };
        Ok(WebhookSender {
            config,
            authority: target.authority,
            path: target.path,
            tls,
        })
    }

    pub(crate) async fn send(&mut self, batch: &[Arc<SecurityEvent>]) -> Result<(), String> {
        let body: Vec<&SecurityEvent> = batch.iter().map(|e| e.as_ref()).collect();
        let body = Bytes::from(serde_json::to_vec(&body).map_err(|e| e.to_string())?);
        let mut last = String::new();
        for attempt in 0..self.config.attempts.max(1) {
            if attempt > 0 {
                let base = Duration::from_millis(self.config.backoff_ms);
                tokio::time::sleep(super::backoff(attempt - 1, base, Duration::from_secs(30)))
                    .await;
            }
            let timeout = Duration::from_millis(self.config.timeout_ms);
            let outcome = match tokio::time::timeout(timeout, self.post(body.clone())).await {
                Ok(o) => o,
                Err(_) => Outcome::Retry("timed out".into()),
            };
            match outcome {
                Outcome::Delivered => return Ok(()),
                Outcome::Fatal(e) => return Err(e),
                Outcome::Retry(e) => last = e,
            }
        }
        Err(format!(
            "gave up after {} attempts: {last}",
            self.config.attempts.max(1)
        ))
    }

    async fn post(&self, body: Bytes) -> Outcome {
        let stream = match TcpStream::connect(&self.authority).await {
            Ok(s) => s,
            Err(e) => return Outcome::Retry(format!("connect {}: {e}", self.authority)),
        };
        match &self.tls {
            None => self.post_over(stream, body).await,
            Some((connector, name)) => match connector.connect(name.clone(), stream).await {
                Ok(tls) => self.post_over(tls, body).await,
                // A certificate the roots do not vouch for will not change
                // on retry, but a collector mid-restart might: retry.
                Err(e) => Outcome::Retry(format!("TLS with {}: {e}", self.authority)),
            },
        }
    }

    async fn post_over<S>(&self, io: S, body: Bytes) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await
        {
            Ok(x) => x,
            Err(e) => return Outcome::Retry(e.to_string()),
        };
        let driver = tokio::spawn(conn);
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "podwarden-events");
        if let Some(t) = &self.config.bearer_token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Outcome::Fatal(e.to_string()),
        };
        let outcome = match sender.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                // Drain so the connection ends cleanly.
                let _ = resp.into_body().collect().await;
                if status.is_success() {
                    Outcome::Delivered
                } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    Outcome::Retry(format!("status {status}"))
                } else {
                    Outcome::Fatal(format!("status {status}"))
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        };
        driver.abort();
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Option<(bool, String, String, String)> {
        split_url(url).map(|t| (t.tls, t.authority, t.host, t.path))
    }

    #[test]
    fn urls() {
        assert_eq!(
            parts("http://c.example/ingest"),
            Some((
                false,
                "c.example:80".into(),
                "c.example".into(),
                "/ingest".into()
            ))
        );
        assert_eq!(
            parts("http://127.0.0.1:9000"),
            Some((
                false,
                "127.0.0.1:9000".into(),
                "127.0.0.1".into(),
                "/".into()
            ))
        );
        assert_eq!(
            parts("https://c.example/"),
            Some((true, "c.example:443".into(), "c.example".into(), "/".into()))
        );
        assert_eq!(
            parts("https://[2001:db8::1]:8443/in"),
            Some((
                true,
                "[2001:db8::1]:8443".into(),
                "2001:db8::1".into(),
                "/in".into()
            ))
        );
        assert_eq!(parts("ftp://c.example/"), None);
        assert_eq!(parts("http://u:p@c.example/"), None);
        assert_eq!(parts("http:///x"), None);
    }

    fn config(url: &str, ca_file: Option<PathBuf>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            ca_file,
            attempts: 1,
            timeout_ms: 1000,
            backoff_ms: 1,
            bearer_token: None,
        }
    }

    #[test]
    fn bad_tls_settings_are_clear_errors() {
        let missing = PathBuf::from("/nonexistent/ca.pem");
        let e = WebhookSender::new(config("https://c.example/", Some(missing)))
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        let dir = std::env::temp_dir().join(format!("pw-webhook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = WebhookSender::new(config("https://c.example/", Some(empty.clone())))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = WebhookSender::new(config("http://c.example/", Some(empty)))
            .err()
            .unwrap();
        assert!(matches!(e, WebhookError::CaFileWithoutTls(_)), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        // The default roots load.
        assert!(WebhookSender::new(config("https://c.example/", None)).is_ok());
    }
}
