//! Version history and rollback of a `WorkloadPolicy` (pure).
//!
//! A rollback never rewrites history: version N's policy becomes the next
//! version, recording who asked and when, so every sidecar's reported
//! version says whether it runs the rollback and the audit trail keeps the
//! versions that were rolled back.

use serde::Serialize;

use super::approve::{bump, ApproveError};
use crate::crd::WorkloadPolicy;

/// One version of a workload's policy, as people review it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    pub version: u64,
    pub approved_by: String,
    pub approved_at: String,
    pub mode: podwarden_policy::Mode,
    pub rules: u32,
    pub change: String,
    /// The version in force (`spec.version`).
    pub current: bool,
    /// Its full policy is still kept, so it can be rolled back to.
    pub restorable: bool,
}

/// Every version the CR knows, oldest first, the current one last.
pub fn history(cr: &WorkloadPolicy) -> Vec<VersionSummary> {
    let s = &cr.spec;
    let mut out: Vec<VersionSummary> = s
        .history
        .iter()
        .map(|v| VersionSummary {
            version: v.version,
            approved_by: v.approved_by.clone(),
            approved_at: v.approved_at.clone(),
            mode: v.mode,
            rules: v.rule_count,
            change: v.change.clone(),
            current: false,
            restorable: v.policy.is_some(),
        })
        .collect();
    out.push(VersionSummary {
        version: s.version,
        approved_by: s.approved_by.clone(),
        approved_at: s.approved_at.clone(),
        mode: s.policy.mode,
        rules: u32::try_from(s.policy.rules.len()).unwrap_or(u32::MAX),
        change: s.change.clone(),
        current: true,
        restorable: true,
    });
    out.sort_by_key(|v| v.version);
    out
}

/// The next version of `current` with version `to`'s policy (mode and
/// feature modes included).
pub fn rollback(
    current: &WorkloadPolicy,
    to: u64,
    who: &str,
    now: &str,
) -> Result<WorkloadPolicy, ApproveError> {
    if who.trim().is_empty() {
        return Err(ApproveError::NoReviewer);
    }
    let cur = current.spec.version;
    if to == cur {
        return Err(ApproveError::RollbackToCurrent(cur));
    }
    let Some(old) = current.spec.history.iter().find(|v| v.version == to) else {
        let mut kept: Vec<u64> = current.spec.history.iter().map(|v| v.version).collect();
        kept.sort_unstable();
        return Err(ApproveError::UnknownVersion {
            version: to,
            kept: kept
                .iter()
                .map(|v| format!("v{v}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let Some(policy) = old.policy.clone() else {
        return Err(ApproveError::SummaryOnly(to));
    };
    if policy == current.spec.policy {
        return Err(ApproveError::SameAsCurrent {
            version: to,
            current: cur,
        });
    }
    let mut change = format!("rollback to v{to}");
    if policy.mode != current.spec.policy.mode {
        change.push_str(&format!(
            " (mode {} -> {})",
            current.spec.policy.mode.as_str(),
            policy.mode.as_str()
        ));
    }
    let mut next = current.clone();
    next.spec = bump(&current.spec, policy, who, now, change);
    next.status = None;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::approve::{set_feature_mode, HISTORY_FULL};
    use podwarden_policy::model::Feature;
    use podwarden_policy::Mode;
    use serde_json::json;

    fn v1() -> WorkloadPolicy {
        serde_json::from_value(json!({
            "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
            "metadata": {"name": "deployment-checkout", "namespace": "shop", "resourceVersion": "7"},
            "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 1,
                     "approvedBy": "alice", "approvedAt": "2026-11-20T10:00:00Z",
                     "change": "approved 1 baseline entries",
                     "policy": {"mode": "learn", "rules": [
                         {"id": "a", "direction": "outbound", "peer": {"fqdn": "a.example"}, "ports": ["443"]}]}},
            "status": {"observedVersion": 1}
        }))
        .unwrap()
    }

    #[test]
    fn rollback_is_a_new_version_with_the_old_policy() {
        let v2 = set_feature_mode(&v1(), Feature::Network, Mode::Protect, "bob", "t2").unwrap();
        let v3 = rollback(&v2, 1, "carol", "t3").unwrap();
        assert_eq!(v3.spec.version, 3);
        assert_eq!(v3.spec.policy, v1().spec.policy);
        assert_eq!(v3.spec.policy.mode, Mode::Learn);
        assert_eq!(v3.spec.approved_by, "carol");
        assert_eq!(v3.spec.approved_at, "t3");
        assert_eq!(v3.spec.change, "rollback to v1 (mode protect -> learn)");
        // History keeps both earlier versions, newest first.
        let kept: Vec<_> = v3.spec.history.iter().map(|v| v.version).collect();
        assert_eq!(kept, [2, 1]);
        assert_eq!(v3.spec.history[0].approved_by, "bob");
        // resourceVersion kept (optimistic concurrency), status cleared.
        assert_eq!(v3.metadata.resource_version.as_deref(), Some("7"));
        assert!(v3.status.is_none());

        let h = history(&v3);
        let rows: Vec<_> = h
            .iter()
            .map(|v| (v.version, v.current, v.restorable, v.mode))
            .collect();
        assert_eq!(
            rows,
            [
                (1, false, true, Mode::Learn),
                (2, false, true, Mode::Protect),
                (3, true, true, Mode::Learn)
            ]
        );
    }

    #[test]
    fn rollback_refuses_what_it_cannot_or_need_not_do() {
        let v2 = set_feature_mode(&v1(), Feature::Waf, Mode::Protect, "bob", "t2").unwrap();
        assert_eq!(
            rollback(&v2, 2, "carol", "t").unwrap_err(),
            ApproveError::RollbackToCurrent(2)
        );
        assert_eq!(
            rollback(&v2, 9, "carol", "t").unwrap_err(),
            ApproveError::UnknownVersion {
                version: 9,
                kept: "v1".into()
            }
        );
        assert_eq!(
            rollback(&v2, 1, " ", "t").unwrap_err(),
            ApproveError::NoReviewer
        );
        // Rolled back once, the same rollback again would change nothing.
        let v3 = rollback(&v2, 1, "carol", "t3").unwrap();
        assert_eq!(
            rollback(&v3, 1, "carol", "t4").unwrap_err(),
            ApproveError::SameAsCurrent {
                version: 1,
                current: 3
            }
        );
        // Old versions keep only their summary: listed, not restorable.
        let mut p = v3;
        for (i, m) in [Mode::Monitor, Mode::Protect]
            .into_iter()
            .cycle()
            .take(HISTORY_FULL + 1)
            .enumerate()
        {
            p = set_feature_mode(&p, Feature::Dlp, m, "dan", &format!("t{}", i + 5)).unwrap();
        }
        let h = history(&p);
        assert!(!h[0].restorable && h[0].version == 1, "{h:?}");
        assert!(h.last().unwrap().current);
        assert_eq!(
            rollback(&p, 1, "carol", "t").unwrap_err(),
            ApproveError::SummaryOnly(1)
        );
    }
}
