//! Per-workload health, from what each sidecar reported (pure).

use crate::crd::{PodPolicyState, WorkloadPolicy, WorkloadPolicyStatus};

/// The policy CR's status given every pod's state after distribution.
pub fn policy_status(
    policy: &WorkloadPolicy,
    mut pods: Vec<PodPolicyState>,
) -> WorkloadPolicyStatus {
    pods.sort_by(|a, b| a.pod.cmp(&b.pod));
    let want = policy.spec.version;
    let synced = pods
        .iter()
        .filter(|p| p.version == want && p.error.is_none())
        .count();
    WorkloadPolicyStatus {
        observed_version: want,
        rule_count: u32::try_from(policy.spec.policy.rules.len()).unwrap_or(u32::MAX),
        in_sync: format!("{synced}/{}", pods.len()),
        violations_last_hour: pods.iter().map(|p| p.violations_last_hour).sum(),
        approved_by: Some(policy.spec.approved_by.clone()),
        approved_at: Some(policy.spec.approved_at.clone()),
        pods,
    }
}
