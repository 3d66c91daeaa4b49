//! Per-workload health, from what each sidecar reported (pure).

use std::collections::HashMap;

use super::sidecar::SidecarUsage;
use crate::crd::{PodPolicyState, RuleUsage, WorkloadPolicy, WorkloadPolicyStatus};

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
        rule_usage: Vec::new(),
    }
}

/// `status.ruleUsage`: every rule of `policy` (document order) with its hits
/// summed over the pods' reports and its last hit the latest of theirs and
/// of `previous` (the status written before). Sidecars count from their own
/// start, so a restarted pod forgets its hits; keeping the last-hit time
/// across passes keeps a rule used last week from looking unused after a
/// rollout. Rules no longer in the policy are dropped.
pub fn rule_usage(
    policy: &WorkloadPolicy,
    reports: &[SidecarUsage],
    previous: &[RuleUsage],
) -> Vec<RuleUsage> {
    let mut seen: HashMap<&str, (u64, Option<i64>)> = HashMap::new();
    for r in reports {
        for u in &r.rules {
            let e = seen.entry(u.rule.as_str()).or_default();
            e.0 = e.0.saturating_add(u.hits);
            e.1 = e.1.max(u.last_hit.filter(|t| *t > 0));
        }
    }
    let before: HashMap<&str, i64> = previous
        .iter()
        .filter_map(|p| Some((p.rule.as_str(), parse_rfc3339(p.last_hit.as_deref()?)?)))
        .collect();
    policy
        .spec
        .policy
        .rules
        .iter()
        .map(|rule| {
            let (hits, last) = seen.get(rule.id.as_str()).copied().unwrap_or_default();
            let last = last.max(before.get(rule.id.as_str()).copied());
            RuleUsage {
                rule: rule.id.clone(),
                hits,
                last_hit: last.and_then(format_rfc3339),
            }
        })
        .collect()
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

fn format_rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::sidecar::SidecarRuleUsage;

    fn policy(rules: &[&str]) -> WorkloadPolicy {
        let rules: Vec<serde_json::Value> = rules
            .iter()
            .enumerate()
            .map(|(i, id)| {
                serde_json::json!({"id": id, "direction": "outbound",
                    "peer": {"cidr": format!("192.0.2.{}/32", i + 1)}, "ports": ["443"]})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
            "metadata": {"name": "deployment-checkout", "namespace": "shop"},
            "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 2,
                     "policy": {"mode": "protect", "rules": rules},
                     "approvedBy": "alice", "approvedAt": "2026-11-01T00:00:00Z"}
        }))
        .unwrap()
    }

    fn report(rules: &[(&str, u64, Option<i64>)]) -> SidecarUsage {
        SidecarUsage {
            policy_version: 2,
            rules: rules
                .iter()
                .map(|(r, h, t)| SidecarRuleUsage {
                    rule: r.to_string(),
                    hits: *h,
                    last_hit: *t,
                })
                .collect(),
        }
    }

    // 2026-11-23T10:00:00Z and one hour later.
    const T0: i64 = 1_795_428_000;
    const T1: i64 = T0 + 3600;

    #[test]
    fn sums_hits_takes_the_latest_hit_and_lists_every_rule() {
        let p = policy(&["web", "db", "idle"]);
        let got = rule_usage(
            &p,
            &[
                report(&[
                    ("web", 3, Some(T0)),
                    ("db", 1, Some(T1)),
                    ("gone", 9, Some(T1)),
                ]),
                report(&[("web", 4, Some(T1)), ("db", 0, None)]),
            ],
            &[],
        );
        assert_eq!(
            got,
            vec![
                RuleUsage {
                    rule: "web".into(),
                    hits: 7,
                    last_hit: Some("2026-11-23T11:00:00Z".into())
                },
                RuleUsage {
                    rule: "db".into(),
                    hits: 1,
                    last_hit: Some("2026-11-23T11:00:00Z".into())
                },
                RuleUsage {
                    rule: "idle".into(),
                    hits: 0,
                    last_hit: None
                },
            ]
        );
    }

    #[test]
    fn the_last_hit_survives_pods_that_restarted() {
        let p = policy(&["web", "db"]);
        let previous = vec![
            RuleUsage {
                rule: "db".into(),
                hits: 40,
                last_hit: Some("2026-11-23T10:00:00Z".into()),
            },
            RuleUsage {
                rule: "web".into(),
                hits: 5,
                last_hit: Some("not a time".into()),
            },
        ];
        // The pods restarted: counters from zero, db not hit since.
        let got = rule_usage(
            &p,
            &[report(&[("web", 1, Some(T1)), ("db", 0, None)])],
            &previous,
        );
        assert_eq!(got[0].last_hit.as_deref(), Some("2026-11-23T11:00:00Z"));
        assert_eq!(
            (got[1].hits, got[1].last_hit.as_deref()),
            (0, Some("2026-11-23T10:00:00Z"))
        );
        // No pod answered: hits 0, last hits kept.
        let got = rule_usage(&p, &[], &previous);
        assert_eq!(got[1].last_hit.as_deref(), Some("2026-11-23T10:00:00Z"));
        assert_eq!(got[0].last_hit, None, "an unreadable time is dropped");
    }
}
