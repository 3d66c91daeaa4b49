//! Learning coverage: has a workload's baseline converged, or should it keep
//! learning? Computed from the flow history alone (pure; times are inputs).
//!
//! Signals, per distinct flow shape (the learner's rule shape, plus method
//! and path template for HTTP requests; inbound clients by /24 or /64 as
//! learning collapses them):
//! * new shapes per hour over the window, and the time since the last one;
//! * shapes seen only once, or only in one replica (when several recorded);
//! * shapes recurring on a schedule (hourly, daily), and whether the window
//!   is long enough for schedules of that length to have shown up at all.
//!
//! The advice is "ready to approve" or "keep learning because …".

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use podwarden_policy::model::Peer;
use podwarden_policy::{Direction, FlowRecord};
use serde::Serialize;

use crate::evidence::rfc3339_ms;
use crate::generalize::{best_name, network_of, path_template};
use crate::learn::{rule_id, PeerKey, RuleKey};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// Times kept per shape for schedule detection; further ones are counted.
const MAX_TIMES: usize = 4096;
/// Hourly buckets reported at most (90 days).
const MAX_BUCKETS: usize = 24 * 90;

/// Thresholds of the advice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageConfig {
    /// Shorter windows cannot have seen daily jobs.
    pub min_window_ms: u64,
    /// A baseline is converging when no new shape appeared for this long.
    pub quiet_ms: u64,
    /// Occurrences closer than this are one run of a job.
    pub burst_gap_ms: u64,
}

impl Default for CoverageConfig {
    fn default() -> Self {
        CoverageConfig {
            min_window_ms: DAY,
            quiet_ms: 6 * HOUR,
            burst_gap_ms: 10 * 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ShapeKey {
    rule: RuleKey,
    method: Option<String>,
    path: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ShapeStats {
    first_ms: u64,
    last_ms: u64,
    count: u64,
    replicas: BTreeSet<String>,
    times: Vec<u64>,
}

/// Accumulated history; feed it records, then ask for a [`CoverageReport`].
#[derive(Debug, Default)]
pub struct Coverage {
    shapes: HashMap<ShapeKey, ShapeStats>,
    replicas: BTreeSet<String>,
    first_ms: Option<u64>,
    last_ms: u64,
    records: u64,
    skipped: u64,
}

fn shape_of(rec: &FlowRecord) -> Option<ShapeKey> {
    let f = &rec.flow;
    let port = f.service_port();
    if port == 0 {
        return None;
    }
    let peer = match f.direction {
        Direction::Outbound => match best_name(&f.peer_names) {
            Some(n) => PeerKey::Name(n),
            None => PeerKey::Addr(f.peer.ip()),
        },
        // Learning collapses inbound clients by network; so does coverage,
        // or every new client would look like a new flow.
        Direction::Inbound => PeerKey::Addr(network_of(f.peer.ip(), 24, 64).network()),
    };
    Some(ShapeKey {
        rule: RuleKey {
            direction: f.direction,
            peer,
            port,
            protocol: f.protocol,
        },
        method: f.http.as_ref().map(|h| h.method.to_ascii_uppercase()),
        path: f.http.as_ref().map(|h| path_template(&h.path)),
    })
}

fn label(k: &ShapeKey) -> String {
    let peer = match &k.rule.peer {
        PeerKey::Name(n) => Peer::Fqdn(n.clone()),
        PeerKey::Addr(ip) if k.rule.direction == Direction::Inbound => {
            Peer::Cidr(network_of(*ip, 24, 64))
        }
        PeerKey::Addr(ip) => Peer::Cidr(IpNet::from(*ip)),
    };
    let mut s = rule_id(k.rule.direction, &peer, k.rule.port, k.rule.protocol);
    if let (Some(m), Some(p)) = (&k.method, &k.path) {
        s.push_str(&format!(" {m} {p}"));
    }
    s
}

impl Coverage {
    pub fn new() -> Coverage {
        Coverage::default()
    }

    /// Adds one record; `replica` names the pod that recorded it.
    pub fn observe(&mut self, replica: Option<&str>, rec: &FlowRecord) {
        let Some(key) = shape_of(rec) else {
            self.skipped += 1;
            return;
        };
        self.records += 1;
        let t = rec.start_ms;
        self.first_ms = Some(self.first_ms.map_or(t, |f| f.min(t)));
        self.last_ms = self.last_ms.max(t);
        if let Some(r) = replica {
            if !self.replicas.contains(r) {
                self.replicas.insert(r.to_string());
            }
        }
        let s = self.shapes.entry(key).or_insert_with(|| ShapeStats {
            first_ms: t,
            last_ms: t,
            ..ShapeStats::default()
        });
        s.first_ms = s.first_ms.min(t);
        s.last_ms = s.last_ms.max(t);
        s.count += 1;
        if let Some(r) = replica {
            if !s.replicas.contains(r) {
                s.replicas.insert(r.to_string());
            }
        }
        if s.times.len() < MAX_TIMES {
            s.times.push(t);
        }
    }

    pub fn report(&self, now_ms: u64, cfg: &CoverageConfig) -> CoverageReport {
        let start = self.first_ms.unwrap_or(now_ms);
        let end = self.last_ms.max(start);
        let buckets = (((end - start) / HOUR) as usize + 1).min(MAX_BUCKETS);
        let mut new_per_hour = vec![0u32; if self.records == 0 { 0 } else { buckets }];
        let mut last_new = start;
        let mut seen_once = Vec::new();
        let mut single_replica = Vec::new();
        let mut scheduled = Vec::new();
        for (k, s) in &self.shapes {
            let b = ((s.first_ms - start) / HOUR) as usize;
            if let Some(slot) = new_per_hour.get_mut(b) {
                *slot += 1;
            }
            last_new = last_new.max(s.first_ms);
            if s.count == 1 {
                seen_once.push(label(k));
            }
            if self.replicas.len() > 1 && s.replicas.len() == 1 {
                single_replica.push(format!(
                    "{} (only {})",
                    label(k),
                    s.replicas.iter().next().map(String::as_str).unwrap_or("?")
                ));
            }
            if let Some((every, period, runs)) = schedule(&s.times, cfg.burst_gap_ms) {
                scheduled.push(Scheduled {
                    flow: label(k),
                    every,
                    runs,
                    last_seen: rfc3339_ms(s.last_ms),
                    next_expected: rfc3339_ms(s.last_ms + period),
                });
            }
        }
        seen_once.sort();
        single_replica.sort();
        scheduled.sort_by(|a, b| a.flow.cmp(&b.flow));

        let window_ms = end - start;
        let since_last_new = now_ms.saturating_sub(last_new);
        let recent_new = self
            .shapes
            .values()
            .filter(|s| now_ms.saturating_sub(s.first_ms) < cfg.quiet_ms)
            .count();
        let mut reasons = Vec::new();
        if self.records == 0 {
            reasons.push("no flows have been recorded yet".to_string());
        } else {
            if window_ms < cfg.min_window_ms {
                reasons.push(format!(
                    "the window covers only {} of traffic: jobs that run daily (backups, reports, cron) may not have run yet",
                    hours(window_ms)
                ));
            }
            if recent_new > 0 {
                reasons.push(format!(
                    "the baseline is still growing: {recent_new} new flow(s) in the last {}, the latest {} ago",
                    hours(cfg.quiet_ms),
                    hours(since_last_new)
                ));
            }
        }
        let ready = reasons.is_empty();
        let mut notes = Vec::new();
        if !seen_once.is_empty() {
            notes.push(format!(
                "{} flow(s) seen only once (a one-off, or a schedule longer than the window): review them",
                seen_once.len()
            ));
        }
        if !single_replica.is_empty() {
            notes.push(format!(
                "{} flow(s) seen in only one of {} replicas",
                single_replica.len(),
                self.replicas.len()
            ));
        }
        let advice = if ready {
            "ready to approve".to_string()
        } else {
            format!("keep learning because {}", reasons.join("; "))
        };
        CoverageReport {
            window_start: rfc3339_ms(start),
            window_end: rfc3339_ms(end),
            window_hours: window_ms as f64 / HOUR as f64,
            records: self.records,
            records_skipped: self.skipped,
            distinct_flows: self.shapes.len(),
            replicas: self.replicas.iter().cloned().collect(),
            new_flows_per_hour: new_per_hour,
            last_new_flow: rfc3339_ms(last_new),
            hours_since_last_new_flow: since_last_new as f64 / HOUR as f64,
            seen_once,
            single_replica,
            scheduled,
            ready,
            advice,
            reasons,
            notes,
        }
    }
}

fn hours(ms: u64) -> String {
    if ms < HOUR {
        format!("{}m", ms / 60_000)
    } else {
        let h = ms as f64 / HOUR as f64;
        if h < 48.0 {
            format!("{h:.1}h")
        } else {
            format!("{:.1}d", h / 24.0)
        }
    }
}

/// How often a scheduled flow runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Every {
    Hourly,
    Daily,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Scheduled {
    pub flow: String,
    pub every: Every,
    /// Runs seen (bursts of occurrences).
    pub runs: usize,
    pub last_seen: String,
    pub next_expected: String,
}

/// Run starts (occurrences more than `gap` apart start a new run) whose
/// spacing is within 10% of an hour or a day, at least two runs.
fn schedule(times: &[u64], gap: u64) -> Option<(Every, u64, usize)> {
    let mut t = times.to_vec();
    t.sort_unstable();
    let mut runs: Vec<u64> = Vec::new();
    let mut prev: Option<u64> = None;
    for &x in &t {
        if prev.is_none_or(|p| x - p > gap) {
            runs.push(x);
        }
        prev = Some(x);
    }
    if runs.len() < 2 {
        return None;
    }
    let intervals: Vec<u64> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    for (every, period) in [(Every::Hourly, HOUR), (Every::Daily, DAY)] {
        let tol = period / 10;
        if intervals.iter().all(|&i| i.abs_diff(period) <= tol) {
            return Some((every, period, runs.len()));
        }
    }
    None
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CoverageReport {
    pub window_start: String,
    pub window_end: String,
    pub window_hours: f64,
    pub records: u64,
    /// Records without a service port (not learnable).
    pub records_skipped: u64,
    pub distinct_flows: usize,
    pub replicas: Vec<String>,
    /// New distinct flows first seen in each hour of the window.
    pub new_flows_per_hour: Vec<u32>,
    pub last_new_flow: String,
    pub hours_since_last_new_flow: f64,
    pub seen_once: Vec<String>,
    pub single_replica: Vec<String>,
    pub scheduled: Vec<Scheduled>,
    pub ready: bool,
    pub advice: String,
    /// Why not ready (empty when ready).
    pub reasons: Vec<String>,
    /// Worth a look whatever the advice.
    pub notes: Vec<String>,
}

impl CoverageReport {
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "window {} .. {} ({}), {} records, {} distinct flows{}\n",
            self.window_start,
            self.window_end,
            hours((self.window_hours * HOUR as f64) as u64),
            self.records,
            self.distinct_flows,
            if self.replicas.len() > 1 {
                format!(", {} replicas", self.replicas.len())
            } else {
                String::new()
            }
        );
        let tail: Vec<String> = self
            .new_flows_per_hour
            .iter()
            .rev()
            .take(48)
            .rev()
            .map(|n| n.to_string())
            .collect();
        s.push_str(&format!(
            "new flows per hour (last {} h): {}\n",
            tail.len(),
            tail.join(" ")
        ));
        s.push_str(&format!(
            "last new flow: {} ({} ago)\n",
            self.last_new_flow,
            hours((self.hours_since_last_new_flow * HOUR as f64) as u64)
        ));
        for x in &self.scheduled {
            s.push_str(&format!(
                "scheduled ({:?}, {} runs): {} — next expected {}\n",
                x.every, x.runs, x.flow, x.next_expected
            ));
        }
        for x in &self.seen_once {
            s.push_str(&format!("seen once: {x}\n"));
        }
        for x in &self.single_replica {
            s.push_str(&format!("one replica only: {x}\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s.push_str(&format!("advice: {}\n", self.advice));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{inb, out, RecExt};
    use podwarden_policy::AppProtocol;

    const T0: u64 = 1_700_000_000_000 - (1_700_000_000_000 % DAY);
    const MIN: u64 = 60_000;

    /// Three services called every 10 minutes for `hours` hours.
    fn steady(c: &mut Coverage, replica: &str, hours: u64) {
        for i in 0..hours * 6 {
            let t = T0 + i * 10 * MIN;
            c.observe(
                Some(replica),
                &out("192.0.2.7:443", 40000, AppProtocol::Tls)
                    .named(&["api.example"])
                    .at(t),
            );
            c.observe(
                Some(replica),
                &out("198.51.100.5:5432", 40001, AppProtocol::Opaque).at(t + MIN),
            );
            c.observe(
                Some(replica),
                &inb("192.0.2.77:50000", 8080, AppProtocol::Http)
                    .req("GET", None, &format!("/orders/{i}"))
                    .at(t + 2 * MIN),
            );
        }
    }

    #[test]
    fn converged_history_is_ready() {
        let mut c = Coverage::new();
        steady(&mut c, "web-0", 72);
        let r = c.report(T0 + 72 * HOUR, &CoverageConfig::default());
        assert_eq!(r.distinct_flows, 3, "ids collapse into one path template");
        assert!(r.ready, "{}", r.render_text());
        assert_eq!(r.advice, "ready to approve");
        assert_eq!(r.new_flows_per_hour[0], 3);
        assert!(r.new_flows_per_hour[1..].iter().all(|n| *n == 0));
        assert!(r.hours_since_last_new_flow > 71.0);
        assert!(r.seen_once.is_empty());
    }

    #[test]
    fn still_growing_keeps_learning() {
        let mut c = Coverage::new();
        steady(&mut c, "web-0", 48);
        // A new endpoint every hour, up to the end.
        for h in 0..48 {
            c.observe(
                None,
                &out("192.0.2.7:443", 1, AppProtocol::Http)
                    .req("GET", None, &format!("/v1/feature{h}"))
                    .at(T0 + h * HOUR + 30 * MIN),
            );
        }
        let r = c.report(T0 + 48 * HOUR, &CoverageConfig::default());
        assert!(!r.ready);
        assert!(
            r.advice
                .starts_with("keep learning because the baseline is still growing"),
            "{}",
            r.advice
        );
        assert_eq!(r.new_flows_per_hour.len(), 48);
        assert!(r.new_flows_per_hour.iter().all(|n| *n >= 1));
        assert!(r.hours_since_last_new_flow < 1.0);
        assert_eq!(r.seen_once.len(), 48);
    }

    #[test]
    fn short_window_cannot_have_seen_the_daily_job() {
        let mut c = Coverage::new();
        // Converged for 12 hours, but only 20 hours recorded: a nightly
        // backup that runs at 02:00 tomorrow has not been seen.
        steady(&mut c, "web-0", 20);
        let r = c.report(T0 + 20 * HOUR, &CoverageConfig::default());
        assert!(!r.ready);
        assert!(r.advice.contains("daily"), "{}", r.advice);
        assert!(!r.advice.contains("still growing"), "{}", r.advice);
    }

    #[test]
    fn detects_hourly_and_daily_schedules() {
        let mut c = Coverage::new();
        steady(&mut c, "web-0", 72);
        for d in 0..3 {
            // A backup at 02:00 each day, a few connections per run.
            for k in 0..3 {
                c.observe(
                    None,
                    &out("203.0.113.9:873", 1, AppProtocol::Opaque)
                        .at(T0 + d * DAY + 2 * HOUR + k * MIN),
                );
            }
        }
        for h in 0..70 {
            c.observe(
                None,
                &out("203.0.113.20:9100", 1, AppProtocol::Opaque).at(T0 + h * HOUR + 5 * MIN),
            );
        }
        let r = c.report(T0 + 72 * HOUR, &CoverageConfig::default());
        let find = |p: &str| r.scheduled.iter().find(|s| s.flow.contains(p)).cloned();
        let daily = find("203.0.113.9").expect("daily backup detected");
        assert_eq!((daily.every, daily.runs), (Every::Daily, 3));
        let hourly = find("203.0.113.20").expect("hourly scrape detected");
        assert_eq!(hourly.every, Every::Hourly);
        // The steady 10-minute flows are one continuous run, not a schedule.
        assert_eq!(r.scheduled.len(), 2, "{:?}", r.scheduled);
        assert!(r.ready, "{}", r.render_text());
    }

    #[test]
    fn seen_once_and_single_replica_are_noted() {
        let mut c = Coverage::new();
        steady(&mut c, "web-0", 30);
        steady(&mut c, "web-1", 30);
        c.observe(
            Some("web-1"),
            &out("203.0.113.50:25", 1, AppProtocol::Opaque).at(T0 + HOUR),
        );
        let r = c.report(T0 + 30 * HOUR, &CoverageConfig::default());
        assert_eq!(r.replicas, vec!["web-0", "web-1"]);
        assert_eq!(r.seen_once.len(), 1);
        assert!(r.seen_once[0].contains("203.0.113.50"), "{:?}", r.seen_once);
        assert_eq!(r.single_replica.len(), 1);
        assert!(r.single_replica[0].ends_with("(only web-1)"));
        assert_eq!(r.notes.len(), 2);
        assert!(r.ready, "notes do not block: {}", r.advice);
    }

    #[test]
    fn empty_history_is_not_ready() {
        let r = Coverage::new().report(T0, &CoverageConfig::default());
        assert!(!r.ready);
        assert!(r.advice.contains("no flows"));
        assert!(r.new_flows_per_hour.is_empty());
    }
}
