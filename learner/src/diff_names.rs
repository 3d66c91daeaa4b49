//! The DNS part of a baseline diff: names the pod resolved that the policy
//! does not list, `allowNames` entries no learned name needs, and the switch
//! from `allowedNames: any` to `listed`. A baseline that recorded no names
//! (learned before names were recorded: `allowedNames` left at `any`)
//! proposes none of these, so approving it never locks a pod out.

use podwarden_policy::model::{AllowedNames, LearnedName, Peer, PolicyDocument};
use podwarden_policy::Direction;

use crate::diff::{fqdn_covers, name_entry_id, ChangeKind, DiffEntry, Rejections, NAMES_LISTED_ID};

#[derive(Debug, Default)]
pub(crate) struct NameDiff {
    pub entries: Vec<DiffEntry>,
    pub unchanged: usize,
    pub rejected: usize,
    /// The baseline recorded names (`allowedNames: listed`).
    pub recorded: bool,
}

fn entry(change: ChangeKind, id: String, name: Option<LearnedName>) -> DiffEntry {
    DiffEntry {
        change,
        id,
        rule: None,
        process: None,
        name,
        extends: None,
        widens: Vec::new(),
        risks: Vec::new(),
    }
}

/// Outbound FQDN rule patterns: names the listing counts as listed.
fn rule_names(doc: &PolicyDocument) -> impl Iterator<Item = &str> {
    doc.spec.rules.iter().filter_map(|r| match &r.peer {
        Peer::Fqdn(f) if r.direction == Direction::Outbound => Some(f.as_str()),
        _ => None,
    })
}

pub(crate) fn name_entries(
    baseline: &PolicyDocument,
    policy: Option<&PolicyDocument>,
    rejected: &Rejections,
) -> NameDiff {
    let b = &baseline.spec.dns;
    let mut d = NameDiff::default();
    if b.allowed_names != AllowedNames::Listed {
        return d;
    }
    d.recorded = true;
    let listed_by_policy: Vec<&str> = policy
        .map(|p| {
            p.spec
                .dns
                .allow_names
                .iter()
                .map(String::as_str)
                .chain(rule_names(p))
                .collect()
        })
        .unwrap_or_default();
    for n in &b.allow_names {
        if listed_by_policy.iter().any(|p| fqdn_covers(p, n)) {
            d.unchanged += 1;
            continue;
        }
        let id = name_entry_id(n);
        if rejected.hides(&id, "") {
            d.rejected += 1;
            continue;
        }
        let learned = b
            .learned_names
            .iter()
            .find(|l| &l.name == n)
            .cloned()
            .unwrap_or_else(|| LearnedName {
                name: n.clone(),
                note: String::new(),
                evidence: None,
            });
        d.entries
            .push(entry(ChangeKind::NameAdded, id, Some(learned)));
    }
    let policy_any = policy.is_none_or(|p| p.spec.dns.allowed_names == AllowedNames::Any);
    if policy_any {
        if rejected.hides(NAMES_LISTED_ID, "") {
            d.rejected += 1;
        } else {
            d.entries
                .push(entry(ChangeKind::NamesListed, NAMES_LISTED_ID.into(), None));
        }
    }
    if let Some(p) = policy {
        let needed: Vec<&str> = b
            .allow_names
            .iter()
            .map(String::as_str)
            .chain(rule_names(baseline))
            .collect();
        for a in &p.spec.dns.allow_names {
            if !needed.iter().any(|n| fqdn_covers(a, n)) {
                let name = LearnedName {
                    name: a.clone(),
                    note: String::new(),
                    evidence: None,
                };
                d.entries
                    .push(entry(ChangeKind::NameDropped, name_entry_id(a), Some(name)));
            }
        }
    }
    d
}
