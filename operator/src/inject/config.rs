use podwarden_policy::Mode;
use serde::{Deserialize, Serialize};

/// What the injector needs to know about the cluster and the proxy.
/// Loaded by the operator binary from a YAML file rendered by the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectConfig {
    /// Image of `podwarden-proxy` (used for both the init container and the sidecar).
    pub proxy_image: String,
    pub image_pull_policy: String,
    /// The operator's own namespace: never injected, so the webhook cannot block itself.
    pub operator_namespace: String,
    /// Namespaces never injected besides the operator's (control plane).
    pub excluded_namespaces: Vec<String>,
    /// Use native sidecars (init container with `restartPolicy: Always`, k8s >= 1.29).
    pub native_sidecar: bool,
    /// Mode when neither the pod nor its namespace says.
    pub default_mode: Mode,
    pub proxy_uid: i64,
    pub admin_port: u16,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    /// Passed to `init --exclude-outbound-cidrs` (e.g. the API server, metadata services).
    pub exclude_outbound_cidrs: Vec<String>,
    /// Passed to `init --exclude-inbound-ports`.
    pub exclude_inbound_ports: Vec<String>,
    pub resources: ResourceSettings,
    /// Seconds the legacy (non-native) sidecar's postStart hook waits for readiness.
    pub hold_timeout_seconds: u32,
    /// Process attribution (which executable owns each connection) unless a
    /// pod's `podwarden.io/process-attribution` annotation says otherwise.
    /// On, the sidecar gets CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (see
    /// `containers::sidecar_security`).
    pub process_attribution: bool,
    /// SHA-256 (hex) of the bearer token the operator presents to sidecars'
    /// admin API. Set by the operator at start from its token file, never
    /// from the chart's config, so the pod spec only ever holds the hash.
    #[serde(skip)]
    pub admin_token_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResourceSettings {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: Option<String>,
    pub memory_limit: String,
}

impl Default for ResourceSettings {
    fn default() -> Self {
        ResourceSettings {
            cpu_request: "50m".into(),
            memory_request: "64Mi".into(),
            // No CPU limit by default: CFS throttling of a proxy shows up as
            // tail latency of every request of the app.
            cpu_limit: None,
            memory_limit: "256Mi".into(),
        }
    }
}

impl Default for InjectConfig {
    fn default() -> Self {
        InjectConfig {
            proxy_image: "ghcr.io/podwarden/podwarden-proxy:0.1.0".into(),
            image_pull_policy: "IfNotPresent".into(),
            operator_namespace: "podwarden-system".into(),
            excluded_namespaces: vec![
                "kube-system".into(),
                "kube-public".into(),
                "kube-node-lease".into(),
            ],
            native_sidecar: true,
            default_mode: Mode::Learn,
            proxy_uid: 1337,
            admin_port: 15000,
            outbound_port: 15001,
            inbound_port: 15006,
            dns_port: 15053,
            exclude_outbound_cidrs: Vec::new(),
            exclude_inbound_ports: Vec::new(),
            resources: ResourceSettings::default(),
            hold_timeout_seconds: 60,
            process_attribution: true,
            admin_token_sha256: None,
        }
    }
}

impl InjectConfig {
    /// Native sidecars are GA-enabled by default from Kubernetes 1.29
    /// (beta, feature gate `SidecarContainers` on); older clusters get the
    /// legacy layout.
    pub fn native_sidecar_supported(major: u32, minor: u32) -> bool {
        major > 1 || (major == 1 && minor >= 29)
    }
}
