//! The operator's custom resources, group `podwarden.io`, version `v1alpha1`.
//!
//! * `WorkloadBaseline` — what the sidecars of one workload learned, merged.
//!   Written by the controller only.
//! * `WorkloadPolicy` — the approved allowlist of one workload with its
//!   version history. Written by people (through `podwarden baseline
//!   approve` / `mode set`); RBAC on this kind is who may approve.

pub mod owner;
pub mod structural;

use kube::CustomResource;
use podwarden_policy::PolicySpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use owner::{WorkloadKind, WorkloadRef};

pub const GROUP: &str = "podwarden.io";
pub const VERSION: &str = "v1alpha1";

/// Which workload (in the CR's own namespace) a CR is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTarget {
    pub kind: WorkloadKind,
    pub name: String,
}

impl WorkloadTarget {
    pub fn of(w: &WorkloadRef) -> Self {
        WorkloadTarget {
            kind: w.kind,
            name: w.name.clone(),
        }
    }
    pub fn in_namespace(&self, namespace: &str) -> WorkloadRef {
        WorkloadRef {
            namespace: namespace.into(),
            kind: self.kind,
            name: self.name.clone(),
        }
    }
}

/// A learned baseline: a proposal, never enforced as such.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "podwarden.io",
    version = "v1alpha1",
    kind = "WorkloadBaseline",
    plural = "workloadbaselines",
    shortname = "pwbaseline",
    namespaced,
    status = "WorkloadBaselineStatus",
    printcolumn = r#"{"name":"Kind","type":"string","jsonPath":".spec.workload.kind"}"#,
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workload.name"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.replicaCount"}"#,
    printcolumn = r#"{"name":"Updated","type":"date","jsonPath":".status.lastUpdated"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadBaselineSpec {
    pub workload: WorkloadTarget,
    /// The merged proposal; rules carry their evidence.
    pub policy: PolicySpec,
    /// Proposals reviewers rejected (`podwarden baseline reject --cluster`):
    /// not proposed again while their shape is unchanged. Written by people,
    /// never by the controller (its server-side apply leaves this field alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<RejectedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedEntry {
    /// Diff entry id (rule id, or `process:<exe>`).
    pub id: String,
    /// Shape of the rule as rejected; a changed rule under the same id is proposed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub rejected_by: String,
    /// RFC 3339.
    pub rejected_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadBaselineStatus {
    /// RFC 3339 time the proposal last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<String>,
    #[serde(default)]
    pub rule_count: u32,
    #[serde(default)]
    pub replica_count: u32,
    /// Pods whose sidecar contributed, with when we last heard from each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaReport {
    pub pod: String,
    /// RFC 3339.
    pub last_report: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The approved policy of a workload. `spec.policy.mode` is the workload's
/// mode; changing it (`podwarden mode set`) is a new version like any other.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "podwarden.io",
    version = "v1alpha1",
    kind = "WorkloadPolicy",
    plural = "workloadpolicies",
    shortname = "pwpolicy",
    namespaced,
    status = "WorkloadPolicyStatus",
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workload.name"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.policy.mode"}"#,
    printcolumn = r#"{"name":"Version","type":"integer","jsonPath":".spec.version"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.ruleCount"}"#,
    printcolumn = r#"{"name":"In-Sync","type":"string","jsonPath":".status.inSync"}"#,
    printcolumn = r#"{"name":"Violations-1h","type":"integer","jsonPath":".status.violationsLastHour"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPolicySpec {
    pub workload: WorkloadTarget,
    /// Bumped by every approval or mode change; sidecars report the version they run.
    pub version: u64,
    pub policy: PolicySpec,
    pub approved_by: String,
    /// RFC 3339.
    pub approved_at: String,
    /// What this version changed (`approved 3 baseline entries`, `mode monitor -> protect`).
    #[serde(default)]
    pub change: String,
    /// Earlier versions, newest first, bounded (see `controller::approve`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<PolicyVersion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVersion {
    pub version: u64,
    pub approved_by: String,
    pub approved_at: String,
    pub mode: podwarden_policy::Mode,
    pub rule_count: u32,
    /// What that version changed, for the audit trail.
    #[serde(default)]
    pub change: String,
    /// The full policy of recent versions, for rollback; older entries keep only the summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadPolicyStatus {
    /// Version of the spec the controller last distributed.
    #[serde(default)]
    pub observed_version: u64,
    #[serde(default)]
    pub rule_count: u32,
    /// `synced/total` pods running `spec.version`.
    #[serde(default)]
    pub in_sync: String,
    #[serde(default)]
    pub violations_last_hour: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    /// Version and mode in effect on each pod of the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodPolicyState>,
    /// Use of each rule of `spec.policy`, summed over the workload's pods
    /// (see `controller::status::rule_usage`); what `podwarden policy unused --cluster`
    /// reads to prune rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_usage: Vec<RuleUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleUsage {
    pub rule: String,
    /// Decisions the rule made, summed over the pods running now (each
    /// sidecar counts from its own start).
    pub hits: u64,
    /// RFC 3339 time of the rule's last decision on any pod; kept across
    /// pod restarts. Absent: no decision seen since the policy was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodPolicyState {
    pub pod: String,
    /// Version the sidecar reports running; 0 = none yet.
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<podwarden_policy::Mode>,
    #[serde(default)]
    pub violations_last_hour: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Both CRDs, made structural (see [`structural`]), as JSON.
pub fn crds() -> Result<Vec<serde_json::Value>, serde_json::Error> {
    use kube::CustomResourceExt;
    let mut out = Vec::new();
    for crd in [WorkloadBaseline::crd(), WorkloadPolicy::crd()] {
        let mut v = serde_json::to_value(&crd)?;
        structural::make_structural(&mut v);
        out.push(v);
    }
    Ok(out)
}

/// Both CRDs as one multi-document YAML, as `podwarden-operator crds`
/// prints it and `charts/podwarden/crds/` holds it.
pub fn crds_yaml() -> Result<String, CrdError> {
    let mut out = String::from("# Generated by `podwarden-operator crds`; do not edit.\n");
    for crd in crds()? {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("serialising CRD: {0}")]
    Json(#[from] serde_json::Error),
    #[error("serialising CRD: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_are_structural_namespaced_with_status_and_columns() {
        let crds = crds().unwrap();
        assert_eq!(crds.len(), 2);
        for crd in &crds {
            assert_eq!(crd["spec"]["group"], GROUP);
            assert_eq!(crd["spec"]["scope"], "Namespaced");
            let v = &crd["spec"]["versions"][0];
            assert_eq!(v["name"], VERSION);
            assert!(v["subresources"]["status"].is_object());
            let cols: Vec<&str> = v["additionalPrinterColumns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert!(cols.contains(&"Age"), "{cols:?}");
            let violations = structural::structural_violations(&v["schema"]["openAPIV3Schema"]);
            assert!(
                violations.is_empty(),
                "{}: {violations:?}",
                crd["metadata"]["name"]
            );
        }
        let cols: Vec<&str> = crds[1]["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            cols,
            [
                "Workload",
                "Mode",
                "Version",
                "Rules",
                "In-Sync",
                "Violations-1h",
                "Age"
            ]
        );
    }

    #[test]
    fn chart_crds_match_the_generated_ones() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../charts/podwarden/crds/podwarden.io.yaml");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == crds_yaml().unwrap(),
            "{} drifted from the code; run: cargo run -p podwarden-operator -- crds > charts/podwarden/crds/podwarden.io.yaml",
            path.display()
        );
    }

    #[test]
    fn a_policy_cr_round_trips_through_the_typed_api() {
        let y = r#"
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { name: deployment-checkout, namespace: shop }
spec:
  workload: { kind: Deployment, name: checkout }
  version: 3
  approvedBy: alice@example.com
  approvedAt: "2026-11-20T10:00:00Z"
  policy:
    mode: protect
    rules:
      - id: out-payments
        direction: outbound
        peer: { fqdn: api.payments.example }
        ports: ["443", 8443]
"#;
        let p: WorkloadPolicy = serde_yaml_ng::from_str(y).unwrap();
        assert_eq!(p.spec.policy.rules[0].ports.len(), 2);
        let back: WorkloadPolicy =
            serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(back.spec, p.spec);
    }
}
