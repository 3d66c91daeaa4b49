//! The operator's configuration file (rendered by the chart into a ConfigMap).

use serde::{Deserialize, Serialize};

use crate::inject::InjectConfig;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorConfig {
    pub inject: InjectConfig,
    pub webhook: WebhookConfig,
    pub controller: ControllerConfig,
    pub metrics_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub port: u16,
    /// Name of the MutatingWebhookConfiguration whose caBundle we keep.
    pub configuration_name: String,
    pub service_name: String,
    pub tls_secret: String,
    /// cert-manager issues the certificate (mounted at `tls_dir`) and injects the caBundle.
    pub cert_manager: bool,
    pub tls_dir: String,
    pub validity_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ControllerConfig {
    pub sync_interval_seconds: u64,
    pub concurrency: usize,
    pub admin_token_file: String,
    pub leader_election: crate::leader::LeaderElectionConfig,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            inject: InjectConfig::default(),
            webhook: WebhookConfig::default(),
            controller: ControllerConfig::default(),
            metrics_port: 9090,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            port: 8443,
            configuration_name: "podwarden".into(),
            service_name: "podwarden".into(),
            tls_secret: "podwarden-webhook-tls".into(),
            cert_manager: false,
            tls_dir: "/var/run/podwarden/tls".into(),
            validity_days: 90,
        }
    }
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            sync_interval_seconds: 30,
            concurrency: 16,
            admin_token_file: "/var/run/podwarden/admin-token/token".into(),
            leader_election: crate::leader::LeaderElectionConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl OperatorConfig {
    pub fn load(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let cfg: OperatorConfig =
            serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.into(),
                source,
            })?;
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), String> {
        let i = &self.inject;
        let ports = [i.admin_port, i.outbound_port, i.inbound_port, i.dns_port];
        if ports.contains(&0) {
            return Err("inject: proxy ports must be non-zero".into());
        }
        for (n, a) in ports.iter().enumerate() {
            if ports[n + 1..].contains(a) {
                return Err(format!("inject: proxy port {a} is used twice"));
            }
        }
        if i.proxy_image.is_empty() {
            return Err("inject.proxyImage is empty".into());
        }
        if i.proxy_uid <= 0 {
            return Err("inject.proxyUid must be a non-root uid".into());
        }
        if self.controller.sync_interval_seconds == 0 {
            return Err("controller.syncIntervalSeconds must be > 0".into());
        }
        self.controller.leader_election.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_shaped_config_parses_and_bad_values_are_named() {
        let y = r#"
inject:
  proxyImage: "ghcr.io/podwarden/podwarden-proxy:0.1.0"
  operatorNamespace: "podwarden-system"
  nativeSidecar: false
  defaultMode: "monitor"
  excludeOutboundCidrs: ["169.254.169.254/32"]
webhook: { port: 8443, configurationName: podwarden }
controller: { syncIntervalSeconds: 10, leaderElection: { leaseName: ctl, leaseDurationSeconds: 20 } }
metricsPort: 9090
"#;
        let c: OperatorConfig = serde_yaml_ng::from_str(y).unwrap();
        assert!(!c.inject.native_sidecar);
        assert_eq!(c.inject.default_mode, podwarden_policy::Mode::Monitor);
        assert_eq!(c.inject.admin_port, 15000);
        assert_eq!(c.controller.leader_election.lease_name, "ctl");
        assert_eq!(c.controller.leader_election.retry_period_seconds, 2);
        c.validate().unwrap();
        let mut bad = c.clone();
        bad.inject.dns_port = bad.inject.admin_port;
        assert!(bad.validate().unwrap_err().contains("15000"));
        let e =
            serde_yaml_ng::from_str::<OperatorConfig>("inject: { proxyImagee: x }").unwrap_err();
        assert!(e.to_string().contains("proxyImagee"), "{e}");
    }
}
