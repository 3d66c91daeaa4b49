//! Client of the sidecar's admin API. The contract (served by
//! `podwarden-proxy run` on the admin port, 15000 by default):
//!
//! | request | body | answer |
//! |---|---|---|
//! | `GET /baseline` | — | 200, a `PolicyDocument` (`kind: Baseline`) as JSON: what this pod learned |
//! | `GET /status` | — | 200, [`SidecarStatus`] as JSON |
//! | `GET /rules/usage` | — | 200, [`SidecarUsage`] as JSON: hits and last hit per rule of the policy in force, since the sidecar started (404 from sidecars older than this endpoint) |
//! | `PUT /policy` | a `PolicyDocument` (`kind: WorkloadPolicy`, `metadata.version`) as JSON | 200 + [`SidecarStatus`] once the new policy is compiled and swapped in; 400 + a text reason if it does not compile (the old policy stays) |
//!
//! All of them require `Authorization: Bearer <token>`; the sidecar holds
//! the token's SHA-256 (hex) in `PODWARDEN_ADMIN_TOKEN_SHA256` and answers
//! 401 otherwise. `/ready` and `/healthz` stay unauthenticated (kubelet).
//! The policy's `spec.mode` and `spec.features` replace the modes the pod
//! started with (env `PODWARDEN_MODE`…), so mode changes need no restart.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podwarden_policy::model::PolicyDocument;
use podwarden_policy::Mode;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarStatus {
    /// Version of the policy in effect; 0 = none received yet.
    pub policy_version: u64,
    pub mode: Mode,
    #[serde(default)]
    pub violations_last_hour: u64,
}

/// What `GET /rules/usage` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarUsage {
    #[serde(default)]
    pub policy_version: u64,
    #[serde(default)]
    pub rules: Vec<SidecarRuleUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarRuleUsage {
    pub rule: String,
    #[serde(default)]
    pub hits: u64,
    /// Unix seconds; absent when the rule never decided on this pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hit: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("{addr}: {source}")]
    Transport {
        addr: SocketAddr,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("{addr}: HTTP {status}: {body}")]
    Status {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("{addr}: unreadable answer: {reason}")]
    Body { addr: SocketAddr, reason: String },
    #[error("building request: {0}")]
    Request(String),
}

#[derive(Clone)]
pub struct SidecarClient {
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    token: String,
    timeout: Duration,
}

impl SidecarClient {
    pub fn new(token: impl Into<String>, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        SidecarClient {
            client,
            token: token.into(),
            timeout,
        }
    }

    pub async fn baseline(&self, addr: SocketAddr) -> Result<PolicyDocument, SidecarError> {
        let body = self
            .call(addr, http::Method::GET, "/baseline", None)
            .await?;
        serde_json::from_slice(&body).map_err(|e| SidecarError::Body {
            addr,
            reason: e.to_string(),
        })
    }

    pub async fn status(&self, addr: SocketAddr) -> Result<SidecarStatus, SidecarError> {
        let body = self.call(addr, http::Method::GET, "/status", None).await?;
        serde_json::from_slice(&body).map_err(|e| SidecarError::Body {
            addr,
            reason: e.to_string(),
        })
    }

    pub async fn rule_usage(&self, addr: SocketAddr) -> Result<SidecarUsage, SidecarError> {
        let body = self
            .call(addr, http::Method::GET, "/rules/usage", None)
            .await?;
        serde_json::from_slice(&body).map_err(|e| SidecarError::Body {
            addr,
            reason: e.to_string(),
        })
    }

    pub async fn put_policy(
        &self,
        addr: SocketAddr,
        doc: &PolicyDocument,
    ) -> Result<SidecarStatus, SidecarError> {
        let payload = serde_json::to_vec(doc).map_err(|e| SidecarError::Request(e.to_string()))?;
        let body = self
            .call(addr, http::Method::PUT, "/policy", Some(payload))
            .await?;
        serde_json::from_slice(&body).map_err(|e| SidecarError::Body {
            addr,
            reason: e.to_string(),
        })
    }

    async fn call(
        &self,
        addr: SocketAddr,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, SidecarError> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| SidecarError::Request(e.to_string()))?;
        let timeout = self.timeout;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|source| SidecarError::Transport { addr, source })?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SidecarError::Body {
                    addr,
                    reason: e.to_string(),
                })?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
                return Err(SidecarError::Status {
                    addr,
                    status: status.as_u16(),
                    body: text,
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| SidecarError::Timeout { addr, timeout })?
    }
}
