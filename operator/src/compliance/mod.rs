//! Compliance report: which controls hold per namespace and workload, mapped
//! to PCI DSS v4.0, SOC 2 (2017 TSC), GDPR and HIPAA Security Rule ids.
//! Pure functions over a [`ClusterSnapshot`]; rendering to a text table,
//! JSON and a self-contained HTML page lives in [`render`].

pub mod controls;
pub mod render;
pub mod snapshot;

pub use controls::{evaluate, Control, ControlResult, Outcome, Report, WorkloadReport, CONTROLS};
pub use render::{html, table};
pub use snapshot::snapshot_from_objects;

use podwarden_policy::Mode;
use serde::{Deserialize, Serialize};

/// What the report needs to know about the cluster, gathered by the caller
/// (from the API server, or from files in tests).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSnapshot {
    /// RFC 3339 time of the snapshot; "within N days" is measured from it.
    pub taken_at: String,
    pub namespaces: Vec<NamespaceState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceState {
    pub name: String,
    /// Labelled `podwarden.io/inject=enabled`.
    pub injection_enabled: bool,
    pub workloads: Vec<WorkloadState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadState {
    /// `Kind/name`.
    pub name: String,
    pub pods: u32,
    pub injected_pods: u32,
    /// Effective modes from the approved policy; `None` = no approved policy.
    pub network_mode: Option<Mode>,
    pub waf_mode: Option<Mode>,
    pub dlp_mode: Option<Mode>,
    /// Violation events leave the pod (a sink other than stdout is configured).
    pub events_exported: bool,
    /// RFC 3339 time the policy in effect was approved.
    pub approved_at: Option<String>,
    pub policy_version: Option<u64>,
}
