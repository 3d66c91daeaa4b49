//! HTTP webhook: each batch is POSTed as a JSON array, retried with
//! exponential backoff on connection errors, timeouts, 429 and 5xx.
//! Plain `http://` only (the proxy carries no client TLS config): point it at
//! an in-cluster collector.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use podwarden_policy::events::SecurityEvent;
use serde::Deserialize;
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://host[:port]/path`
    pub url: String,
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("webhook url {0:?}: expected http://host[:port]/path")]
    BadUrl(String),
}

pub(crate) struct WebhookSender {
    config: WebhookConfig,
    authority: String,
    path: String,
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()) && !authority.ends_with(']'))
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((authority, path.to_string()))
}

enum Outcome {
    Delivered,
    Retry(String),
    Fatal(String),
}

impl WebhookSender {
    pub(crate) fn new(config: WebhookConfig) -> Result<WebhookSender, WebhookError> {
        let (authority, path) =
            split_url(&config.url).ok_or_else(|| WebhookError::BadUrl(config.url.clone()))?;
        Ok(WebhookSender {
            config,
            authority,
            path,
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
        let (mut sender, conn) =
            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
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

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://c.example/ingest"),
            Some(("c.example:80".into(), "/ingest".into()))
        );
        assert_eq!(
            split_url("http://127.0.0.1:9000"),
            Some(("127.0.0.1:9000".into(), "/".into()))
        );
        assert_eq!(split_url("https://c.example/"), None);
        assert_eq!(split_url("http://u:p@c.example/"), None);
        assert_eq!(split_url("http:///x"), None);
    }
}
