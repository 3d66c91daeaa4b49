//! Mutating admission webhook, as pure logic: an AdmissionReview of a Pod,
//! the labels of its namespace and the operator's configuration go in; an
//! AdmissionResponse (with a JSON Patch when the pod is injected) comes out.
//! The HTTP server that feeds it lives in [`crate::webhook`].

mod config;
mod containers;
mod decision;
mod patch;

pub use config::{InjectConfig, ResourceSettings};
pub use containers::{
    init_container, sidecar_container, INIT_CONTAINER_NAME, PROXY_BIN, PROXY_BIN_PROCATTR,
    SIDECAR_NAME,
};
pub use decision::{plan, Injection, Plan, Skip, WorkloadModes};
pub use patch::{mutate, pod_patch};

/// Annotation / label keys understood by the injector.
pub mod keys {
    /// Namespace label (`enabled` / `disabled`), pod annotation or label (`true` / `false`).
    pub const INJECT: &str = "podwarden.io/inject";
    /// Workload mode: `learn`, `monitor` or `protect` (pod annotation or namespace label).
    pub const MODE: &str = "podwarden.io/mode";
    pub const WAF_MODE: &str = "podwarden.io/waf-mode";
    pub const DLP_MODE: &str = "podwarden.io/dlp-mode";
    /// `"true"` / `"false"`: process attribution in the sidecar (default:
    /// the operator's `processAttribution`). Off drops every capability.
    pub const PROCESS_ATTRIBUTION: &str = "podwarden.io/process-attribution";
    /// Label set on injected pods, so the controller lists them cheaply.
    pub const INJECTED: &str = "podwarden.io/injected";
    /// Set on injected pods; its presence makes injection idempotent.
    pub const STATUS: &str = "podwarden.io/status";
    /// Lets `kubectl logs/exec` default to the app, not the sidecar.
    pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
}
