//! Approval is promotion: selected diff entries applied to the current
//! policy (or an empty one) give the next policy document.
//!
//! DNS names: approving the learned names adds them to `spec.dns.allowNames`
//! and approving [`ChangeKind::NamesListed`] sets `allowedNames: listed`
//! (names of FQDN rules count as listed, so they are not repeated). The
//! names' evidence stays in the baseline: a policy carries no
//! `learnedNames`, so sidecars of the previous release still load it.

use podwarden_policy::model::{
    AllowedNames, DocumentKind, Metadata, PolicyDocument, PolicySpec, ProcessRule, API_VERSION,
};

use crate::diff::{ChangeKind, DiffEntry};
use crate::merge::union_rule;

/// Applies `chosen` to `current`. Approving a rule also approves the
/// executables it names (otherwise the process baseline would still deny
/// the flow the reviewer just allowed). Versioning is the caller's job.
pub fn promote(
    current: Option<&PolicyDocument>,
    baseline: Option<&PolicyDocument>,
    workload: &str,
    chosen: &[DiffEntry],
) -> PolicyDocument {
    let mut doc = current.cloned().unwrap_or_else(|| PolicyDocument {
        api_version: API_VERSION.to_string(),
        kind: DocumentKind::WorkloadPolicy,
        metadata: Metadata {
            workload: workload.to_string(),
            ..Default::default()
        },
        spec: PolicySpec::default(),
    });
    doc.kind = DocumentKind::WorkloadPolicy;
    let evidence_of = |exe: &str| {
        baseline
            .and_then(|b| b.spec.processes.iter().find(|p| p.exe == exe))
            .and_then(|p| p.evidence.clone())
    };
    let add_process = |doc: &mut PolicyDocument, exe: &str, note: String| {
        if !doc.spec.processes.iter().any(|p| p.exe == exe) {
            doc.spec.processes.push(ProcessRule {
                exe: exe.to_string(),
                note,
                evidence: evidence_of(exe),
            });
        }
    };
    for e in chosen {
        match (e.change, &e.rule, &e.process) {
            (ChangeKind::Added | ChangeKind::Widened, Some(r), _) => {
                for exe in &r.processes {
                    add_process(&mut doc, exe, format!("approved with rule {}", r.id));
                }
                match doc.spec.rules.iter_mut().find(|p| p.id == r.id) {
                    // Same id, same shape by construction; a hand-edited
                    // policy may differ, then the baseline rule is added
                    // under a distinct id rather than altering the old one.
                    Some(p) => {
                        if union_rule(p, r).is_err() {
                            let mut r2 = r.clone();
                            r2.id = format!("{}-learned", r.id);
                            doc.spec.rules.push(r2);
                        }
                    }
                    None => doc.spec.rules.push(r.clone()),
                }
            }
            (ChangeKind::Dropped, Some(r), _) => doc.spec.rules.retain(|p| p.id != r.id),
            (ChangeKind::ProcessAdded, _, Some(p)) => add_process(&mut doc, &p.exe, p.note.clone()),
            (ChangeKind::ProcessDropped, _, Some(p)) => {
                doc.spec.processes.retain(|x| x.exe != p.exe)
            }
            (ChangeKind::NameAdded, _, _) => {
                if let Some(n) = &e.name {
                    if !doc.spec.dns.allow_names.contains(&n.name) {
                        doc.spec.dns.allow_names.push(n.name.clone());
                    }
                }
            }
            (ChangeKind::NameDropped, _, _) => {
                if let Some(n) = &e.name {
                    doc.spec.dns.allow_names.retain(|x| x != &n.name);
                }
            }
            (ChangeKind::NamesListed, _, _) => {
                doc.spec.dns.allowed_names = AllowedNames::Listed;
            }
            _ => {}
        }
    }
    doc.spec.dns.allow_names.sort();
    doc.spec.dns.learned_names.clear();
    doc.spec.rules.sort_by(|a, b| a.id.cmp(&b.id));
    doc.spec.processes.sort_by(|a, b| a.exe.cmp(&b.exe));
    doc
}
