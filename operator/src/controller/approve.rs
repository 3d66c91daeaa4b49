//! Approval and mode changes: the next version of a `WorkloadPolicy` (pure).

use kube::api::ObjectMeta;
use podwarden_policy::model::{DocumentKind, Metadata, PolicyDocument, PolicySpec, API_VERSION};
use podwarden_policy::Mode;

use crate::crd::{PolicyVersion, WorkloadBaseline, WorkloadPolicy, WorkloadPolicySpec};

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
    let ns = baseline.metadata.namespace.clone().ok_or_else(|| {
        ApproveError::NoNamespace(baseline.metadata.name.clone().unwrap_or_default())
    })?;
    let workload = format!("{ns}/{}", baseline.spec.workload.name);
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
    let base_doc = document(&workload, DocumentKind::Baseline, 0, &baseline.spec.policy);
    let cur_doc = current.map(|c| {
        document(
            &workload,
            DocumentKind::WorkloadPolicy,
            c.spec.version,
            &c.spec.policy,
        )
    });
    let d = podwarden_learner::diff(
        &base_doc,
        cur_doc.as_ref(),
        &podwarden_learner::Rejections::default(),
    );
    let chosen: Vec<_> = match select {
        None => d.entries.clone(),
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
    if current.spec.policy.mode == mode {
        return None;
    }
    let mut policy = current.spec.policy.clone();
    let change = format!("mode {} -> {}", policy.mode.as_str(), mode.as_str());
    policy.mode = mode;
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

fn bump(
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
