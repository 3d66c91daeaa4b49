//! Aggregation of per-replica baselines into the workload's baseline (pure).

use podwarden_policy::model::{DocumentKind, PolicyDocument};

use crate::crd::{
    ReplicaReport, WorkloadBaselineSpec, WorkloadBaselineStatus, WorkloadRef, WorkloadTarget,
};

/// What one pod's sidecar answered to `GET /baseline`.
#[derive(Debug, Clone)]
pub struct ReplicaBaseline {
    pub pod: String,
    pub result: Result<PolicyDocument, String>,
}

/// Merges the replicas' baselines (with the learner's merge, so evidence
/// counts add up and replicas are listed) into the baseline CR's spec and
/// status. Replicas that failed are reported in the status, not merged.
/// Returns `None` when no replica answered: the existing CR is left as is
/// rather than overwritten with an empty proposal.
pub fn aggregate(
    workload: &WorkloadRef,
    replicas: &[ReplicaBaseline],
    now: &str,
) -> Result<Option<(WorkloadBaselineSpec, WorkloadBaselineStatus)>, String> {
    let name = format!("{}/{}", workload.namespace, workload.name);
    let docs: Vec<PolicyDocument> = replicas
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .map(|d| {
            // Sidecars name their workload as they see it; what counts is
            // which pod we fetched it from.
            let mut d = d.clone();
            d.metadata.workload = name.clone();
            d
        })
        .collect();
    if docs.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = docs.iter().find(|d| d.kind != DocumentKind::Baseline) {
        return Err(format!(
            "a sidecar of {name} answered a {:?} where a Baseline was expected",
            bad.kind
        ));
    }
    let merged = podwarden_learner::merge::merge_baselines(&docs).map_err(|e| e.to_string())?;
    let mut reports: Vec<ReplicaReport> = replicas
        .iter()
        .map(|r| ReplicaReport {
            pod: r.pod.clone(),
            last_report: now.to_string(),
            error: r.result.as_ref().err().cloned(),
        })
        .collect();
    reports.sort_by(|a, b| a.pod.cmp(&b.pod));
    let status = WorkloadBaselineStatus {
        last_updated: Some(now.to_string()),
        rule_count: u32::try_from(merged.spec.rules.len()).unwrap_or(u32::MAX),
        replica_count: u32::try_from(docs.len()).unwrap_or(u32::MAX),
        replicas: reports,
    };
    let spec = WorkloadBaselineSpec {
        workload: WorkloadTarget::of(workload),
        policy: merged.spec,
        rejected: Vec::new(),
    };
    Ok(Some((spec, status)))
}
