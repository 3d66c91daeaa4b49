//! Merging baselines learned by several replicas of one workload: union the
//! rules (same id = same shape, since ids are derived from content), sum the
//! counts, take the earliest first-seen and latest last-seen, union replicas.

use std::collections::{BTreeMap, BTreeSet};

use podwarden_policy::model::{
    AllowedNames, DnsSettings, DocumentKind, HttpMatch, LearnedName, PolicyDocument, ProcessRule,
    Rule,
};

use crate::error::LearnerError;
use crate::evidence::merge_evidence;

/// Merges baselines of one workload. Errors on an empty input, on documents
/// that are not baselines, and on mixed workloads.
pub fn merge_baselines(docs: &[PolicyDocument]) -> Result<PolicyDocument, LearnerError> {
    let first = docs
        .first()
        .ok_or_else(|| LearnerError::Merge("no baselines given".into()))?;
    for d in docs {
        if d.kind != DocumentKind::Baseline {
            return Err(LearnerError::Merge(format!(
                "{}: kind {:?} is not a Baseline",
                d.metadata.workload, d.kind
            )));
        }
        if d.metadata.workload != first.metadata.workload {
            return Err(LearnerError::Merge(format!(
                "workloads differ: {} and {}",
                first.metadata.workload, d.metadata.workload
            )));
        }
    }
    let mut rules: BTreeMap<String, Rule> = BTreeMap::new();
    let mut processes: BTreeMap<String, ProcessRule> = BTreeMap::new();
    for d in docs {
        for r in &d.spec.rules {
            match rules.get_mut(&r.id) {
                Some(mine) => union_rule(mine, r)?,
                None => {
                    rules.insert(r.id.clone(), r.clone());
                }
            }
        }
        for p in &d.spec.processes {
            match processes.get_mut(&p.exe) {
                Some(mine) => {
                    mine.evidence = match (&mine.evidence, &p.evidence) {
                        (Some(a), Some(b)) => Some(merge_evidence(a, b)),
                        (a, b) => a.clone().or_else(|| b.clone()),
                    }
                }
                None => {
                    processes.insert(p.exe.clone(), p.clone());
                }
            }
        }
    }
    let mut out = first.clone();
    out.spec.rules = rules.into_values().collect();
    out.spec.processes = processes.into_values().collect();
    out.spec.dns = merge_dns(docs, &first.spec.dns);
    Ok(out)
}

/// Learned names of all replicas; `allowedNames: listed` only when every
/// replica recorded names (one that did not may have resolved anything).
fn merge_dns(docs: &[PolicyDocument], first: &DnsSettings) -> DnsSettings {
    let mut out = first.clone();
    if docs
        .iter()
        .any(|d| d.spec.dns.allowed_names != AllowedNames::Listed)
    {
        out.allowed_names = AllowedNames::Any;
        out.allow_names.clear();
        out.learned_names.clear();
        return out;
    }
    let mut names: BTreeMap<String, LearnedName> = BTreeMap::new();
    for d in docs {
        for n in &d.spec.dns.allow_names {
            names.entry(n.clone()).or_insert_with(|| LearnedName {
                name: n.clone(),
                note: String::new(),
                evidence: None,
            });
        }
        for l in &d.spec.dns.learned_names {
            match names.get_mut(&l.name) {
                Some(mine) => {
                    mine.evidence = match (&mine.evidence, &l.evidence) {
                        (Some(a), Some(b)) => Some(merge_evidence(a, b)),
                        (a, b) => a.clone().or_else(|| b.clone()),
                    };
                    if mine.note.is_empty() {
                        mine.note = l.note.clone();
                    }
                }
                None => {
                    names.insert(l.name.clone(), l.clone());
                }
            }
        }
    }
    out.allow_names = names.keys().cloned().collect();
    out.learned_names = names.into_values().collect();
    out
}

/// Folds `other` into `mine` (same id). The peer and direction must agree:
/// a differing shape under one id means the inputs were not produced by the
/// same learner version, and silently picking one would lose an allow.
pub fn union_rule(mine: &mut Rule, other: &Rule) -> Result<(), LearnerError> {
    if mine.direction != other.direction || mine.peer != other.peer {
        return Err(LearnerError::Merge(format!(
            "rule {} has different peers in the inputs ({:?} vs {:?})",
            mine.id, mine.peer, other.peer
        )));
    }
    union_vec(&mut mine.ports, &other.ports);
    union_vec(&mut mine.protocols, &other.protocols);
    union_vec(&mut mine.processes, &other.processes);
    mine.http = match (mine.http.take(), &other.http) {
        (Some(a), Some(b)) => Some(HttpMatch {
            hosts: sorted_union(&a.hosts, &b.hosts),
            methods: sorted_union(&a.methods, &b.methods),
            paths: sorted_union(&a.paths, &b.paths),
        }),
        // One side has no HTTP narrowing: it allowed any request, so the
        // union does too (never narrower than an input).
        _ => None,
    };
    mine.evidence = match (&mine.evidence, &other.evidence) {
        (Some(a), Some(b)) => Some(merge_evidence(a, b)),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    if mine.note.is_empty() {
        mine.note = other.note.clone();
    }
    Ok(())
}

fn union_vec<T: Ord + Clone>(a: &mut Vec<T>, b: &[T]) {
    let set: BTreeSet<T> = a.iter().chain(b.iter()).cloned().collect();
    *a = set.into_iter().collect();
}

fn sorted_union(a: &[String], b: &[String]) -> Vec<String> {
    a.iter()
        .chain(b.iter())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::{Learner, LearnerConfig};
    use crate::testutil::{out, RecExt};
    use podwarden_policy::AppProtocol;

    fn learned(replica: &str, f: impl Fn(&mut Learner)) -> PolicyDocument {
        let mut c = LearnerConfig::new("shop/checkout");
        c.replica = Some(replica.into());
        let mut l = Learner::new(c).unwrap();
        f(&mut l);
        l.baseline()
    }

    #[test]
    fn merges_replicas() {
        let a = learned("pod-a", |l| {
            l.ingest(
                &out("192.0.2.1:443", 1, AppProtocol::Tls)
                    .named(&["api.example"])
                    .by("/app")
                    .at(2000),
            );
            l.ingest(
                &out("192.0.2.1:443", 2, AppProtocol::Tls)
                    .named(&["api.example"])
                    .by("/app")
                    .at(3000),
            );
        });
        let b = learned("pod-b", |l| {
            l.ingest(
                &out("192.0.2.2:443", 1, AppProtocol::Tls)
                    .named(&["api.example"])
                    .by("/sidecar")
                    .at(1000),
            );
            l.ingest(
                &out("192.0.2.9:6379", 1, AppProtocol::Opaque)
                    .by("/app")
                    .at(9000),
            );
        });
        let m = merge_baselines(&[a, b]).unwrap();
        assert_eq!(m.spec.rules.len(), 2);
        let r = m
            .spec
            .rules
            .iter()
            .find(|r| r.id == "out-tls-api.example-443")
            .unwrap();
        let ev = r.evidence.as_ref().unwrap();
        assert_eq!(ev.count, 3);
        assert_eq!(ev.first_seen, crate::evidence::rfc3339_ms(1000));
        assert_eq!(ev.last_seen, crate::evidence::rfc3339_ms(3000));
        assert_eq!(ev.replicas, vec!["pod-a", "pod-b"]);
        assert_eq!(r.processes, vec!["/app", "/sidecar"]);
        assert_eq!(m.spec.processes.len(), 2);
        let app = m.spec.processes.iter().find(|p| p.exe == "/app").unwrap();
        assert_eq!(app.evidence.as_ref().unwrap().count, 3);
    }

    #[test]
    fn names_of_replicas_are_united_and_one_without_names_keeps_any() {
        use crate::testutil::dns;
        let a = learned("p1", |l| l.ingest(&dns("meta.example.org", "NOERROR")));
        let b = learned("p2", |l| {
            l.ingest(&dns("meta.example.org", "NOERROR"));
            l.ingest(&dns("other.example.org", "NOERROR"));
        });
        let m = merge_baselines(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(m.spec.dns.allowed_names, AllowedNames::Listed);
        assert_eq!(
            m.spec.dns.allow_names,
            vec!["meta.example.org", "other.example.org"]
        );
        let meta = &m.spec.dns.learned_names[0];
        let ev = meta.evidence.as_ref().unwrap();
        assert_eq!((ev.count, ev.replicas.len()), (2, 2));
        let mut old = b;
        old.spec.dns = Default::default();
        let m = merge_baselines(&[a, old]).unwrap();
        assert_eq!(m.spec.dns, Default::default());
    }

    #[test]
    fn refuses_mixed_inputs() {
        assert!(merge_baselines(&[]).is_err());
        let a = learned("a", |_| {});
        let mut b = a.clone();
        b.metadata.workload = "other/ns".into();
        assert!(merge_baselines(&[a.clone(), b]).is_err());
        let mut c = a.clone();
        c.kind = DocumentKind::WorkloadPolicy;
        assert!(merge_baselines(&[a, c]).is_err());
    }

    #[test]
    fn http_union_never_narrows() {
        let a = learned("a", |l| {
            l.ingest(&out("192.0.2.1:80", 1, AppProtocol::Http).req("GET", None, "/x"));
        });
        let b = learned("b", |l| {
            l.ingest(&out("192.0.2.1:80", 1, AppProtocol::Http).req("GET", None, "/y/1"));
        });
        let m = merge_baselines(&[a, b]).unwrap();
        assert_eq!(m.spec.rules.len(), 1);
        assert_eq!(
            m.spec.rules[0].http.as_ref().unwrap().paths,
            vec!["/x", "/y/{id}"]
        );
    }
}
