//! Approval and mode changes: the next version of a `WorkloadPolicy` (pure).

use kube::api::ObjectMeta;
use podwarden_learner::diff::{fingerprint, BaselineDiff, Rejections};
use podwarden_policy::model::{
    DocumentKind, Feature, Metadata, PolicyDocument, PolicySpec, API_VERSION,
};
use podwarden_policy::Mode;

use crate::crd::{
    PolicyVersion, RejectedEntry, WorkloadBaseline, WorkloadPolicy, WorkloadPolicySpec,
};

/// Versions kept in `spec.history`, and how many of them keep the full policy.
pub const HISTORY_LEN: usize = 50;
pub const HISTORY_FULL: usize = 5;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApproveError {
    #[error("baseline {0} has no namespace")]
    NoNamespace(String),
    #[error("baseline is for {baseline} but the policy is for {policy}")]
    WorkloadMismatch { baseline: String, policy: String },
    #[error("nothing to approve: the baseline adds nothing to policy version {0}")]
    NothingNew(u64),
    #[error("unknown entries selected: {0}")]
    UnknownSelection(String),
    #[error("{0} is not a proposal in the diff (see `podwarden baseline diff`)")]
    NotAProposal(String),
    #[error("say which entries: at least one id is needed")]
    NothingSelected,
    #[error("say who decides: the name is empty")]
    NoReviewer,
    #[error("version {0} is the current version; nothing to roll back")]
    RollbackToCurrent(u64),
    #[error("no version {version} in the policy's history (kept: {kept})")]
    UnknownVersion { version: u64, kept: String },
    #[error("version {0} is older than the versions kept in full (only its summary remains); approve its entries again instead")]
    SummaryOnly(u64),
    #[error("version {current} already has version {version}'s policy; nothing to roll back")]
    SameAsCurrent { version: u64, current: u64 },
}

/// What the reviewer rejected before, as the learner's diff takes it.
pub fn rejections(baseline: &WorkloadBaseline) -> Rejections {
    Rejections(
        baseline
            .spec
            .rejected
            .iter()
            .map(|r| (r.id.clone(), r.fingerprint.clone()))
            .collect(),
    )
}

/// The baseline against the current policy, as a reviewer sees it: what it
/// adds, widens and drops, without the entries rejected before.
pub fn review_diff(
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
) -> Result<BaselineDiff, ApproveError> {
    let (base_doc, cur_doc) = documents(baseline, current)?;
    Ok(podwarden_learner::diff(
        &base_doc,
        cur_doc.as_ref(),
        &rejections(baseline),
    ))
}

/// The baseline's rejected list after rejecting `ids` (each must be a
/// proposal of the current diff; its shape is recorded so a changed rule
/// under the same id is proposed again).
pub fn reject(
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
    ids: &[String],
    by: &str,
    reason: Option<&str>,
    now: &str,
) -> Result<Vec<RejectedEntry>, ApproveError> {
    if ids.is_empty() {
        return Err(ApproveError::NothingSelected);
    }
    if by.trim().is_empty() {
        return Err(ApproveError::NoReviewer);
    }
    let d = review_diff(baseline, current)?;
    let mut out = baseline.spec.rejected.clone();
    for id in ids {
        let e = d
            .proposals()
            .find(|e| &e.id == id)
            .ok_or_else(|| ApproveError::NotAProposal(id.clone()))?;
        out.retain(|r| &r.id != id);
        out.push(RejectedEntry {
            id: id.clone(),
            fingerprint: e.rule.as_ref().map(fingerprint),
            rejected_by: by.to_string(),
            rejected_at: now.to_string(),
            reason: reason.map(String::from),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

fn documents(
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
) -> Result<(PolicyDocument, Option<PolicyDocument>), ApproveError> {
    let ns = baseline.metadata.namespace.clone().ok_or_else(|| {
        ApproveError::NoNamespace(baseline.metadata.name.clone().unwrap_or_default())
    })?;
    let workload = format!("{ns}/{}", baseline.spec.workload.name);
    let base_doc = document(&workload, DocumentKind::Baseline, 0, &baseline.spec.policy);
    let cur_doc = current.map(|c| {
        document(
            &workload,
            DocumentKind::WorkloadPolicy,
            c.spec.version,
            &c.spec.policy,
        )
    });
    Ok((base_doc, cur_doc))
}

/// The policy after approving `baseline` (all its new entries, or only the
/// ids in `select`) on top of `current`. Rules the policy already has are
/// kept; the mode is unchanged (a first approval starts in `learn`):
/// moving to monitor and protect is `set_mode`'s job, a separate decision.
pub fn approve(
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
    select: Option<&[String]>,
    approver: &str,
    now: &str,
) -> Result<WorkloadPolicy, ApproveError> {
    if approver.trim().is_empty() {
        return Err(ApproveError::NoReviewer);
    }
    if let Some(cur) = current {
        if cur.spec.workload != baseline.spec.workload {
            return Err(ApproveError::WorkloadMismatch {
                baseline: format!(
                    "{:?}/{}",
                    baseline.spec.workload.kind, baseline.spec.workload.name
                ),
                policy: format!("{:?}/{}", cur.spec.workload.kind, cur.spec.workload.name),
            });
        }
    }
    let (base_doc, cur_doc) = documents(baseline, current)?;
    let workload = base_doc.metadata.workload.clone();
    let d = podwarden_learner::diff(&base_doc, cur_doc.as_ref(), &rejections(baseline));
    let chosen: Vec<_> = match select {
        // Drops only when selected: "not seen" may just mean "not yet".
        None => d.proposals().cloned().collect(),
        Some(ids) => {
            let unknown: Vec<&str> = ids
                .iter()
                .filter(|id| !d.entries.iter().any(|e| &e.id == *id))
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                return Err(ApproveError::UnknownSelection(unknown.join(", ")));
            }
            d.entries
                .iter()
                .filter(|e| ids.contains(&e.id))
                .cloned()
                .collect()
        }
    };
    let version = current.map_or(0, |c| c.spec.version);
    if chosen.is_empty() && current.is_some() {
        return Err(ApproveError::NothingNew(version));
    }
    let promoted =
        podwarden_learner::promote::promote(cur_doc.as_ref(), Some(&base_doc), &workload, &chosen);
    let mut policy = promoted.spec;
    if current.is_none() {
        policy.mode = Mode::Learn;
    }
    let change = format!("approved {} baseline entries", chosen.len());
    Ok(next_version(
        baseline_target_meta(baseline, current),
        baseline,
        current,
        policy,
        approver,
        now,
        change,
    ))
}

/// The policy with the workload mode changed to `mode`: a new version, so
/// every sidecar's reported version tells whether it has the change.
pub fn set_mode(
    current: &WorkloadPolicy,
    mode: Mode,
    who: &str,
    now: &str,
) -> Option<WorkloadPolicy> {
    set_feature_mode(current, Feature::Network, mode, who, now)
}

/// The new version after an approval also sets the mode (`approve --mode`).
pub fn with_mode(mut next: WorkloadPolicy, mode: Mode) -> WorkloadPolicy {
    if next.spec.policy.mode != mode {
        next.spec.change = format!("{}, mode {}", next.spec.change, mode.as_str());
        next.spec.policy.mode = mode;
    }
    next
}

/// Like [`set_mode`] for one feature: `Network` is the workload mode
/// (`spec.policy.mode`), `Waf` and `Dlp` their overrides in
/// `spec.policy.features`. `None` when nothing would change.
pub fn set_feature_mode(
    current: &WorkloadPolicy,
    feature: Feature,
    mode: Mode,
    who: &str,
    now: &str,
) -> Option<WorkloadPolicy> {
    let mut policy = current.spec.policy.clone();
    let before = policy.mode_of(feature);
    let (slot, label) = match feature {
        Feature::Network => {
            if policy.mode == mode {
                return None;
            }
            policy.mode = mode;
            (None, "mode")
        }
        Feature::Waf => (Some(&mut policy.features.waf), "waf mode"),
        Feature::Dlp => (Some(&mut policy.features.dlp), "dlp mode"),
    };
    if let Some(slot) = slot {
        if *slot == Some(mode) {
            return None;
        }
        *slot = Some(mode);
    }
    let change = format!("{label} {} -> {}", before.as_str(), mode.as_str());
    let mut next = current.clone();
    next.spec = bump(&current.spec, policy, who, now, change);
    next.status = None;
    Some(next)
}

fn baseline_target_meta(
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
) -> ObjectMeta {
    match current {
        // Keep name, resourceVersion (optimistic concurrency on replace), labels.
        Some(c) => c.metadata.clone(),
        None => ObjectMeta {
            name: baseline.metadata.name.clone(),
            namespace: baseline.metadata.namespace.clone(),
            ..Default::default()
        },
    }
}

fn next_version(
    metadata: ObjectMeta,
    baseline: &WorkloadBaseline,
    current: Option<&WorkloadPolicy>,
    policy: PolicySpec,
    approver: &str,
    now: &str,
    change: String,
) -> WorkloadPolicy {
    let spec = match current {
        Some(c) => bump(&c.spec, policy, approver, now, change),
        None => WorkloadPolicySpec {
            workload: baseline.spec.workload.clone(),
            version: 1,
            policy,
            approved_by: approver.to_string(),
            approved_at: now.to_string(),
            change,
            history: Vec::new(),
        },
    };
    WorkloadPolicy {
        metadata,
        spec,
        status: None,
    }
}

pub(super) fn bump(
    cur: &WorkloadPolicySpec,
    policy: PolicySpec,
    who: &str,
    now: &str,
    change: String,
) -> WorkloadPolicySpec {
    let mut history = Vec::with_capacity(cur.history.len() + 1);
    history.push(PolicyVersion {
        version: cur.version,
        approved_by: cur.approved_by.clone(),
        approved_at: cur.approved_at.clone(),
        mode: cur.policy.mode,
        rule_count: u32::try_from(cur.policy.rules.len()).unwrap_or(u32::MAX),
        change: cur.change.clone(),
        policy: Some(cur.policy.clone()),
    });
    history.extend(cur.history.iter().cloned());
    history.truncate(HISTORY_LEN);
    for old in history.iter_mut().skip(HISTORY_FULL) {
        old.policy = None;
    }
    WorkloadPolicySpec {
        workload: cur.workload.clone(),
        version: cur.version + 1,
        policy,
        approved_by: who.to_string(),
        approved_at: now.to_string(),
        change,
        history,
    }
}

fn document(workload: &str, kind: DocumentKind, version: u64, spec: &PolicySpec) -> PolicyDocument {
    PolicyDocument {
        api_version: API_VERSION.to_string(),
        kind,
        metadata: Metadata {
            workload: workload.to_string(),
            version,
            ..Default::default()
        },
        spec: spec.clone(),
    }
}

/// The document a sidecar receives on `PUT /policy`.
pub fn policy_document(cr: &WorkloadPolicy) -> PolicyDocument {
    let ns = cr.metadata.namespace.clone().unwrap_or_default();
    let mut d = document(
        &format!("{ns}/{}", cr.spec.workload.name),
        DocumentKind::WorkloadPolicy,
        cr.spec.version,
        &cr.spec.policy,
    );
    d.metadata.approved_by = Some(cr.spec.approved_by.clone());
    d.metadata.approved_at = Some(cr.spec.approved_at.clone());
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn baseline(rules: &[(&str, &str)]) -> WorkloadBaseline {
        let rules: Vec<_> = rules
            .iter()
            .map(|(id, fqdn)| json!({"id": id, "direction": "outbound", "peer": {"fqdn": fqdn}, "ports": ["443"]}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadBaseline",
            "metadata": {"name": "deployment-checkout", "namespace": "shop"},
            "spec": {"workload": {"kind": "Deployment", "name": "checkout"},
                     "policy": {"mode": "learn", "rules": rules}}
        }))
        .unwrap()
    }

    const NOW: &str = "2026-11-23T12:00:00Z";

    #[test]
    fn approve_all_takes_proposals_never_drops() {
        let v1 = approve(
            &baseline(&[("a", "a.example"), ("b", "b.example")]),
            None,
            None,
            "alice",
            NOW,
        )
        .unwrap();
        // The baseline no longer shows b (not seen yet) but adds c.
        let b2 = baseline(&[("a", "a.example"), ("c", "c.example")]);
        let v2 = approve(&b2, Some(&v1), None, "alice", NOW).unwrap();
        let ids: Vec<_> = v2.spec.policy.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // Selected explicitly, a drop applies.
        let v3 = approve(&b2, Some(&v2), Some(&["b".to_string()]), "alice", NOW).unwrap();
        let ids: Vec<_> = v3.spec.policy.rules.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(
            approve(&b2, Some(&v1), None, " ", NOW).unwrap_err(),
            ApproveError::NoReviewer
        );
    }

    #[test]
    fn rejected_entries_leave_the_diff_and_approve_all_until_they_change() {
        let mut b = baseline(&[("a", "a.example"), ("b", "b.example")]);
        b.spec.rejected = reject(&b, None, &["b".into()], "bob", Some("not ours"), NOW).unwrap();
        assert_eq!(b.spec.rejected.len(), 1);
        assert_eq!(b.spec.rejected[0].rejected_by, "bob");
        assert!(b.spec.rejected[0].fingerprint.is_some());
        let d = review_diff(&b, None).unwrap();
        let ids: Vec<_> = d.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!((ids, d.rejected), (vec!["a"], 1));
        let v1 = approve(&b, None, None, "alice", NOW).unwrap();
        assert_eq!(v1.spec.policy.rules.len(), 1);
        // Same id, new shape: proposed again.
        b.spec.policy.rules[1].ports = vec![podwarden_policy::model::PortSpec::single(8443)];
        let d = review_diff(&b, Some(&v1)).unwrap();
        assert!(d.entries.iter().any(|e| e.id == "b"), "{d:?}");
        // Unknown ids and empty selections are refused.
        assert_eq!(
            reject(&b, Some(&v1), &["zz".into()], "bob", None, NOW).unwrap_err(),
            ApproveError::NotAProposal("zz".into())
        );
        assert_eq!(
            reject(&b, Some(&v1), &[], "bob", None, NOW).unwrap_err(),
            ApproveError::NothingSelected
        );
    }

    #[test]
    fn feature_modes_are_versions_and_no_ops_are_none() {
        let v1 = approve(&baseline(&[("a", "a.example")]), None, None, "alice", NOW).unwrap();
        let v2 = set_feature_mode(&v1, Feature::Waf, Mode::Protect, "carol", NOW).unwrap();
        assert_eq!(v2.spec.version, 2);
        assert_eq!(v2.spec.policy.features.waf, Some(Mode::Protect));
        assert_eq!(v2.spec.policy.mode, Mode::Learn);
        assert_eq!(v2.spec.change, "waf mode learn -> protect");
        assert_eq!(v2.spec.approved_by, "carol");
        assert_eq!(v2.spec.history[0].version, 1);
        assert!(set_feature_mode(&v2, Feature::Waf, Mode::Protect, "carol", NOW).is_none());
        assert!(set_feature_mode(&v2, Feature::Network, Mode::Learn, "carol", NOW).is_none());
        let v3 = set_feature_mode(&v2, Feature::Dlp, Mode::Monitor, "dan", NOW).unwrap();
        assert_eq!(v3.spec.policy.features.dlp, Some(Mode::Monitor));
        assert_eq!(v3.spec.policy.features.waf, Some(Mode::Protect));
        let v4 = with_mode(v3.clone(), Mode::Protect);
        assert_eq!(v4.spec.policy.mode, Mode::Protect);
        assert!(v4.spec.change.ends_with(", mode protect"));
    }
}
