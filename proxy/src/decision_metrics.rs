//! Decision metrics: every verdict of the policy in force, by mode, verdict,
//! direction and rule, plus per-rule hit counts and last-hit time (what
//! `podwarden policy unused` and dashboards read to prune baselines).
//!
//! The `rule` label is bounded by the policy: a rule id, or `default` when no
//! rule matched (default deny in protect, would-block in monitor). Counter
//! handles are resolved once per policy load ([`DecisionMetrics::counters_for`])
//! so a decision costs an index and an atomic add, never a label lookup.
//! Series of rules that a reload removed are deleted at that reload.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use podwarden_policy::{CompiledPolicy, Decision, Direction, Mode};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::metrics::{direction_label, verdict_label};

const HITS: &str = "podwarden_rule_hits_total";
const LAST_HIT: &str = "podwarden_rule_last_hit_timestamp_seconds";

/// One rule's use by this sidecar since it started (what `GET /rules/usage`
/// answers and the operator sums into the policy's `status.ruleUsage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleUsage {
    pub rule: String,
    pub hits: u64,
    /// Unix seconds of the last hit; absent when the rule never decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_hit: Option<i64>,
}

/// Per-rule usage read back from the gathered metrics, by rule id. The
/// metrics are the one record of rule hits: they hold a series for every
/// rule of the policy in force (zero until hit) and none for removed rules,
/// so reading them needs no second counter on the hot path.
pub fn rule_usage(families: &[MetricFamily]) -> Vec<RuleUsage> {
    let mut by_rule: std::collections::BTreeMap<String, RuleUsage> = Default::default();
    let rule_of = |m: &prometheus::proto::Metric| {
        m.get_label()
            .iter()
            .find(|l| l.name() == "rule")
            .map(|l| l.value().to_string())
    };
    for f in families {
        let hits = match f.name() {
            HITS => true,
            LAST_HIT => false,
            _ => continue,
        };
        for m in f.get_metric() {
            let Some(rule) = rule_of(m) else { continue };
            let u = by_rule.entry(rule.clone()).or_insert(RuleUsage {
                rule,
                hits: 0,
                last_hit: None,
            });
            if hits {
                // Counters are integers kept as f64 by the exposition model.
                u.hits = m.get_counter().get_value().max(0.0) as u64;
            } else {
                let t = m.get_gauge().get_value() as i64;
                u.last_hit = (t > 0).then_some(t);
            }
        }
    }
    by_rule.into_values().collect()
}

/// `rule` label when no rule decided.
pub const DEFAULT_RULE: &str = "default";

const MODES: [Mode; 3] = [Mode::Learn, Mode::Monitor, Mode::Protect];
const DIRECTIONS: [Direction; 2] = [Direction::Inbound, Direction::Outbound];

#[derive(Clone)]
pub struct DecisionMetrics {
    decisions: IntCounterVec,
    rule_hits: IntCounterVec,
    rule_last_hit: IntGaugeVec,
    /// Rule ids with series, so a reload can delete the ones it removed.
    live_rules: Arc<Mutex<HashSet<String>>>,
}

struct RuleHandles {
    decisions: IntCounter,
    hits: IntCounter,
    last_hit: IntGauge,
}

/// Pre-resolved handles for one compiled policy; index = rule position.
pub struct PolicyCounters {
    rules: Vec<RuleHandles>,
    /// No rule matched, by direction (inbound, outbound).
    default: [IntCounter; 2],
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix seconds from the kernel's coarse clock: a last-hit time needs
/// seconds, and this read costs a few ns where a precise one costs tens.
#[cfg(target_os = "linux")]
fn coarse_unix_seconds() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only fills it.
    if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) } == 0 {
        // time_t is i32 on some 32-bit targets.
        #[allow(clippy::useless_conversion)]
        i64::from(ts.tv_sec)
    } else {
        unix_seconds()
    }
}

#[cfg(not(target_os = "linux"))]
fn coarse_unix_seconds() -> i64 {
    unix_seconds()
}

impl PolicyCounters {
    /// Counts one decision of this policy; `rule` is the deciding rule's
    /// position ([`CompiledPolicy::decide_indexed`]).
    #[inline]
    pub fn observe(&self, direction: Direction, rule: Option<usize>) {
        match rule.and_then(|i| self.rules.get(i)) {
            Some(h) => {
                h.decisions.inc();
                h.hits.inc();
                let now = coarse_unix_seconds();
                // Skip the store (and the cache-line write) within a second.
                if h.last_hit.get() != now {
                    h.last_hit.set(now);
                }
            }
            None => self.default[dir_index(direction)].inc(),
        }
    }
}

impl DecisionMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "podwarden_decisions_total",
                "Policy decisions (connections and HTTP requests), by mode, verdict (allow, deny, would_deny), direction and deciding rule (\"default\" when none matched).",
            ),
            &["mode", "verdict", "direction", "rule"],
        )?;
        let rule_hits = IntCounterVec::new(
            Opts::new(
                "podwarden_rule_hits_total",
                "Decisions each rule of the policy in force made.",
            ),
            &["rule"],
        )?;
        let rule_last_hit = IntGaugeVec::new(
            Opts::new(
                "podwarden_rule_last_hit_timestamp_seconds",
                "Unix time of each rule's last decision.",
            ),
            &["rule"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(rule_hits.clone()))?;
        registry.register(Box::new(rule_last_hit.clone()))?;
        Ok(DecisionMetrics {
            decisions,
            rule_hits,
            rule_last_hit,
            live_rules: Arc::default(),
        })
    }

    /// Resolves the handles for `policy` and deletes the series of rules
    /// that are no longer in it. Call once per load, off the hot path.
    pub fn counters_for(&self, policy: &CompiledPolicy) -> PolicyCounters {
        let mode = policy.mode();
        let m = mode.as_str();
        let mut ids = HashSet::with_capacity(policy.rule_count());
        let rules = policy
            .rule_ids()
            .enumerate()
            .map(|(i, id)| {
                ids.insert(id.to_string());
                let dir = policy.rule_direction(i).unwrap_or(Direction::Outbound);
                RuleHandles {
                    decisions: self.decisions.with_label_values(&[
                        m,
                        "allow",
                        direction_label(dir),
                        id,
                    ]),
                    hits: self.rule_hits.with_label_values(&[id]),
                    last_hit: self.rule_last_hit.with_label_values(&[id]),
                }
            })
            .collect();
        let no_rule = verdict_label(&Decision::new(mode, None));
        let default = DIRECTIONS.map(|d| {
            self.decisions
                .with_label_values(&[m, no_rule, direction_label(d), DEFAULT_RULE])
        });
        let mut live = match self.live_rules.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        for gone in live.difference(&ids) {
            self.forget(gone);
        }
        *live = ids;
        PolicyCounters { rules, default }
    }

    fn forget(&self, id: &str) {
        // A removed rule's series may exist under any mode and direction it
        // ever had; deleting a series that does not exist is not an error here.
        for mode in MODES {
            for dir in DIRECTIONS {
                let _ = self.decisions.remove_label_values(&[
                    mode.as_str(),
                    "allow",
                    direction_label(dir),
                    id,
                ]);
            }
        }
        let _ = self.rule_hits.remove_label_values(&[id]);
        let _ = self.rule_last_hit.remove_label_values(&[id]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::{load_policy_str, Flow};
    use prometheus::Encoder;

    fn policy(mode: &str, rules: &[&str]) -> CompiledPolicy {
        let mut y = format!(
            "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  mode: {mode}\n  rules:\n"
        );
        for (i, id) in rules.iter().enumerate() {
            y.push_str(&format!(
                "    - {{ id: {id}, direction: outbound, peer: {{ cidr: 192.0.2.{}/32 }}, ports: [\"80\"] }}\n",
                i + 1
            ));
        }
        CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
    }

    fn flow(last: u8) -> Flow {
        Flow::connection(
            Direction::Outbound,
            format!("192.0.2.{last}:80").parse().unwrap(),
            "198.51.100.2:40000".parse().unwrap(),
        )
    }

    fn text(r: &Registry) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counts_by_rule_and_default_and_forgets_removed_rules() {
        let reg = Registry::new();
        let m = DecisionMetrics::new(&reg).unwrap();
        let p = policy("protect", &["web", "db"]);
        let c = m.counters_for(&p);
        for last in [1, 1, 2, 9] {
            let (_, idx) = p.decide_indexed(&flow(last));
            c.observe(Direction::Outbound, idx);
        }
        let t = text(&reg);
        assert!(t.contains(
            r#"podwarden_decisions_total{direction="outbound",mode="protect",rule="web",verdict="allow"} 2"#
        ), "{t}");
        assert!(t.contains(
            r#"podwarden_decisions_total{direction="outbound",mode="protect",rule="default",verdict="deny"} 1"#
        ), "{t}");
        assert!(
            t.contains(r#"podwarden_rule_hits_total{rule="db"} 1"#),
            "{t}"
        );
        let last_hit: i64 = t
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"podwarden_rule_last_hit_timestamp_seconds{rule="web"} "#)
            })
            .unwrap()
            .parse()
            .unwrap();
        assert!((unix_seconds() - last_hit).abs() < 60, "{t}");

        // Reload in monitor without "db": its series go, "web" keeps counting.
        let p2 = policy("monitor", &["web"]);
        let c2 = m.counters_for(&p2);
        let (_, idx) = p2.decide_indexed(&flow(2));
        c2.observe(Direction::Outbound, idx);
        let t = text(&reg);
        assert!(!t.contains(r#"rule="db""#), "{t}");
        assert!(
            t.contains(r#"podwarden_rule_hits_total{rule="web"} 2"#),
            "{t}"
        );
        assert!(t.contains(
            r#"podwarden_decisions_total{direction="outbound",mode="monitor",rule="default",verdict="would_deny"} 1"#
        ), "{t}");
    }

    #[test]
    fn usage_reads_hits_and_last_hit_per_live_rule() {
        let reg = Registry::new();
        let m = DecisionMetrics::new(&reg).unwrap();
        let p = policy("protect", &["web", "db", "idle"]);
        let c = m.counters_for(&p);
        for last in [1, 1, 2, 9] {
            let (_, idx) = p.decide_indexed(&flow(last));
            c.observe(Direction::Outbound, idx);
        }
        let u = rule_usage(&reg.gather());
        let ids: Vec<&str> = u.iter().map(|r| r.rule.as_str()).collect();
        assert_eq!(ids, ["db", "idle", "web"], "every live rule, by id");
        assert_eq!((u[0].hits, u[1].hits, u[2].hits), (1, 0, 2));
        assert_eq!(u[1].last_hit, None, "never hit");
        let t = u[2].last_hit.unwrap();
        assert!((unix_seconds() - t).abs() < 60);
        // The default verdict is not a rule.
        assert!(!ids.contains(&DEFAULT_RULE));

        // A removed rule disappears from usage at the reload.
        let _ = m.counters_for(&policy("protect", &["web"]));
        let u = rule_usage(&reg.gather());
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].rule.as_str(), u[0].hits), ("web", 2));
        let json = serde_json::to_value(&u[0]).unwrap();
        assert_eq!(json["hits"], 2);
        assert!(json["lastHit"].is_i64(), "{json}");
    }
}
