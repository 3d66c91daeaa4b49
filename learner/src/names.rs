//! Learned DNS names: which names the pod resolved, so an approved baseline
//! can say `spec.dns.allowedNames: listed` and a pod in protect cannot
//! resolve (and so exfiltrate through) any other name.
//!
//! What is learned from a DNS record's question ([`DnsQueryInfo`]):
//! * names the pod's resolver answered (NOERROR, or SERVFAIL: a real name
//!   whose server failed for a while must not be locked out);
//! * not names answered NXDOMAIN: mostly the stub resolver's search-path
//!   tries (`api.example.shop.svc.cluster.local`), and a name that does not
//!   exist needs no allowance (protect answers an unlisted name NXDOMAIN:
//!   the same answer);
//! * not queries refused (by the listener or the resolver), not masked
//!   (tunnelling-shaped) names, not names an `allowNames` entry could not
//!   hold.
//!
//! Generalisation (when the document is emitted): at least
//! `nameWildcardMin` distinct names directly under one zone become
//! `*.zone`, but never when the zone is a public suffix (`*.com`,
//! `*.co.uk`, `*.s3.amazonaws.com`): the list is the `psl` crate's copy of
//! the Public Suffix List, compiled in.

use std::collections::BTreeMap;

use podwarden_policy::dns::listing::{pattern_matches, service_stripped};
use podwarden_policy::model::{validate_fqdn_pattern, LearnedName};
use podwarden_policy::DnsQueryInfo;

use crate::evidence::EvidenceAgg;

/// Whether a question teaches a name the pod may resolve.
pub fn learnable(q: &DnsQueryInfo) -> bool {
    let answered = matches!(q.rcode.as_deref(), Some("NOERROR" | "SERVFAIL"));
    answered && !q.name.contains('*') && validate_fqdn_pattern(&q.name).is_ok()
}

/// The zone directly above `name` (`b.example` for `a.b.example`).
fn parent(name: &str) -> Option<&str> {
    name.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
}

/// Whether `*.zone` may be proposed: the zone is not a public suffix (it
/// has a registrable part: `example.com`, `shop.svc.cluster.local`).
pub fn may_wildcard(zone: &str) -> bool {
    zone.contains('.') && psl::domain_str(zone).is_some()
}

/// Learned names as `allowNames` entries with their evidence, sorted:
/// names any of `covered` (the baseline's FQDN rule patterns) already lists
/// are left out, then zones with at least `wildcard_min` distinct names
/// directly under them collapse into `*.zone` (`0` = never).
pub fn proposed_names(
    names: &BTreeMap<String, EvidenceAgg>,
    covered: &[String],
    wildcard_min: usize,
) -> Vec<LearnedName> {
    let listed =
        |n: &str| service_stripped(n).any(|base| covered.iter().any(|p| pattern_matches(p, base)));
    let open: BTreeMap<&str, &EvidenceAgg> = names
        .iter()
        .filter(|(n, _)| !listed(n))
        .map(|(n, e)| (n.as_str(), e))
        .collect();
    let mut by_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for n in open.keys() {
        if let Some(z) = parent(n) {
            *by_zone.entry(z).or_default() += 1;
        }
    }
    let mut zones: Vec<&str> = by_zone
        .into_iter()
        .filter(|(z, count)| wildcard_min >= 2 && *count >= wildcard_min && may_wildcard(z))
        .map(|(z, _)| z)
        .collect();
    // A zone inside another wildcarded zone is already covered by it.
    let all = zones.clone();
    zones.retain(|z| !all.iter().any(|o| o != z && z.ends_with(&format!(".{o}"))));
    let mut wild: BTreeMap<&str, (EvidenceAgg, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    for (n, e) in &open {
        let pattern = zones.iter().find(|z| pattern_matches(&format!("*.{z}"), n));
        match pattern {
            Some(z) => {
                let w = wild.entry(*z).or_default();
                w.0.absorb(e);
                w.1 += 1;
            }
            None => out.push(LearnedName {
                name: (*n).to_string(),
                note: format!("resolved {} times", e.count),
                evidence: Some(e.to_evidence()),
            }),
        }
    }
    for (z, (e, members)) in wild {
        out.push(LearnedName {
            name: format!("*.{z}"),
            note: format!("generalised from {members} names under {z}"),
            evidence: Some(e.to_evidence()),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, rcode: &str) -> DnsQueryInfo {
        DnsQueryInfo {
            name: name.into(),
            qtype: "A".into(),
            rcode: Some(rcode.into()),
            reported: false,
        }
    }

    fn seen(names: &[&str]) -> BTreeMap<String, EvidenceAgg> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut e = EvidenceAgg::default();
                e.observe(1_000 + i as u64, || format!("query {n}"));
                (n.to_string(), e)
            })
            .collect()
    }

    fn names_of(v: &[LearnedName]) -> Vec<&str> {
        v.iter().map(|l| l.name.as_str()).collect()
    }

    #[test]
    fn only_answered_plain_names_are_learnable() {
        assert!(learnable(&q("api.example.com", "NOERROR")));
        assert!(learnable(&q("flaky.example.com", "SERVFAIL")));
        assert!(learnable(&q("_http._tcp.api.example.com", "NOERROR")));
        // Search-path tries and names that do not exist.
        assert!(!learnable(&q(
            "api.example.com.shop.svc.cluster.local",
            "NXDOMAIN"
        )));
        assert!(!learnable(&q("api.example.com", "REFUSED")));
        assert!(!learnable(&DnsQueryInfo {
            rcode: None,
            ..q("api.example.com", "NOERROR")
        }));
        // Masked (tunnelling-shaped) and names no allowNames entry can hold.
        assert!(!learnable(&q("***.t.example", "NOERROR")));
        assert!(!learnable(&q("bad name.example", "NOERROR")));
    }

    #[test]
    fn public_suffixes_are_never_wildcarded() {
        for z in [
            "example.com",
            "example.co.uk",
            "svc.cluster.local",
            "cluster.local",
        ] {
            assert!(may_wildcard(z), "{z}");
        }
        for z in ["com", "co.uk", "s3.amazonaws.com", "github.io", "local"] {
            assert!(!may_wildcard(z), "{z}");
        }
    }

    #[test]
    fn many_names_under_a_zone_collapse_few_do_not() {
        let names = seen(&[
            "a.cdn.example.com",
            "b.cdn.example.com",
            "c.cdn.example.com",
            "x.y.cdn.example.com",
            "cdn.example.com",
            "api.other.example",
            "www.other.example",
        ]);
        let out = proposed_names(&names, &[], 3);
        assert_eq!(
            names_of(&out),
            vec![
                "*.cdn.example.com",
                "api.other.example",
                "cdn.example.com",
                "www.other.example"
            ]
        );
        let w = &out[0];
        // The deeper name is covered by the wildcard and counted in it.
        assert_eq!(w.evidence.as_ref().unwrap().count, 4);
        assert!(
            w.note.contains("4 names under cdn.example.com"),
            "{}",
            w.note
        );
        // Off, or a higher threshold: every name stays itself.
        assert_eq!(proposed_names(&names, &[], 0).len(), 7);
        assert_eq!(proposed_names(&names, &[], 4).len(), 7);
    }

    #[test]
    fn never_under_a_public_suffix() {
        let names = seen(&["a.com", "b.com", "c.com", "a.co.uk", "b.co.uk", "c.co.uk"]);
        assert_eq!(proposed_names(&names, &[], 2).len(), 6);
        let buckets = seen(&[
            "one.s3.amazonaws.com",
            "two.s3.amazonaws.com",
            "three.s3.amazonaws.com",
        ]);
        assert_eq!(proposed_names(&buckets, &[], 2).len(), 3);
    }

    #[test]
    fn names_the_fqdn_rules_list_are_not_repeated() {
        let names = seen(&[
            "api.example.com",
            "_https._tcp.api.example.com",
            "img.cdn.example",
            "meta.example.com",
        ]);
        let covered = vec!["api.example.com".to_string(), "*.cdn.example".to_string()];
        let out = proposed_names(&names, &covered, 2);
        assert_eq!(names_of(&out), vec!["meta.example.com"]);
        assert_eq!(out[0].evidence.as_ref().unwrap().count, 1);
    }
}
