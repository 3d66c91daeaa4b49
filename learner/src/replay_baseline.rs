//! Replay on an aggregated baseline: each learned entry (a rule with its
//! evidence) becomes representative flow records weighted by the entry's
//! count and first/last seen, so a candidate policy is judged on what the
//! operator aggregated from every replica (`podwarden policy replay
//! --cluster`) with the same decision code and grouping as recorded flows.
//!
//! A baseline keeps shapes, not flows: an FQDN entry has no address (the
//! record names the peer and uses the unspecified address, so a candidate
//! CIDR rule cannot match it), a subnet entry stands for its first host, a
//! port range for its first port, and a path template for a path with `0`
//! in each parameter. An entry with several ports, protocols, processes or
//! paths becomes one record per combination, its count split among them
//! (at least 1 each).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use podwarden_policy::model::Peer;
use podwarden_policy::{
    AppProtocol, CompiledPolicy, Decide, Decision, Direction, Flow, FlowRecord, HttpRequestInfo,
    PolicySpec, ProcessInfo, RecordKind, Rule,
};

use crate::evidence::parse_rfc3339;
use crate::replay::{Replay, ReplayReport};

/// Records made from one entry at most; the rest of its combinations are
/// not replayed (a learned entry is far below this).
pub const MAX_RECORDS_PER_ENTRY: usize = 1024;

/// A representative record standing for `count` flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedRecord {
    pub record: FlowRecord,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
}

/// Replays every entry of `baseline` against `policy`; denied groups are
/// explained.
pub fn replay_baseline(policy: &CompiledPolicy, baseline: &PolicySpec) -> ReplayReport {
    let mut r = Replay::new();
    for rule in &baseline.rules {
        for w in entry_records(rule) {
            let d: Decision = policy.decide(&w.record.flow);
            r.observe_many(&w.record, &d, w.count, w.first_ms, w.last_ms);
        }
    }
    r.finish(Some(policy))
}

fn ms_of(rfc3339: &str) -> u64 {
    parse_rfc3339(rfc3339)
        .map(|ns| u64::try_from(ns / 1_000_000).unwrap_or(0))
        .unwrap_or(0)
}

/// The records standing for one baseline entry.
pub fn entry_records(rule: &Rule) -> Vec<WeightedRecord> {
    let (count, first_ms, last_ms) = match &rule.evidence {
        Some(e) => (e.count.max(1), ms_of(&e.first_seen), ms_of(&e.last_seen)),
        None => (1, 0, 0),
    };
    let (peer_ip, names) = match &rule.peer {
        Peer::Any => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), Vec::new()),
        Peer::Cidr(net) => {
            let host = if net.prefix_len() == net.max_prefix_len() {
                net.addr()
            } else {
                net.hosts().next().unwrap_or(net.network())
            };
            (host, Vec::new())
        }
        Peer::Fqdn(f) => {
            let name = match f.strip_prefix("*.") {
                Some(suffix) => format!("any.{suffix}"),
                None => f.clone(),
            };
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), vec![name])
        }
    };
    let ports: Vec<u16> = if rule.ports.is_empty() {
        vec![0]
    } else {
        rule.ports.iter().map(|p| p.first).collect()
    };
    let protocols: Vec<AppProtocol> = match (&rule.protocols[..], &rule.http) {
        ([], Some(_)) => vec![AppProtocol::Http],
        ([], None) => vec![AppProtocol::Opaque],
        (ps, _) => ps.to_vec(),
    };
    let processes: Vec<Option<&str>> = if rule.processes.is_empty() {
        vec![None]
    } else {
        rule.processes.iter().map(|p| Some(p.as_str())).collect()
    };
    let requests: Vec<Option<(&str, String)>> = match &rule.http {
        None => vec![None],
        Some(h) => {
            let methods: Vec<&str> = if h.methods.is_empty() {
                vec!["GET"]
            } else {
                h.methods.iter().map(String::as_str).collect()
            };
            let paths: Vec<String> = if h.paths.is_empty() {
                vec!["/".to_string()]
            } else {
                h.paths.iter().map(|p| example_path(p)).collect()
            };
            methods
                .iter()
                .flat_map(|m| paths.iter().map(move |p| Some((*m, p.clone()))))
                .collect()
        }
    };

    let mut shapes = Vec::new();
    'all: for &port in &ports {
        for &protocol in &protocols {
            for &exe in &processes {
                for req in &requests {
                    if shapes.len() == MAX_RECORDS_PER_ENTRY {
                        break 'all;
                    }
                    shapes.push((port, protocol, exe, req.clone()));
                }
            }
        }
    }
    let n = shapes.len() as u64;
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (port, protocol, exe, req))| {
            let (peer, local) = match rule.direction {
                Direction::Outbound => (
                    SocketAddr::new(peer_ip, port),
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                ),
                Direction::Inbound => (
                    SocketAddr::new(peer_ip, 0),
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                ),
            };
            let mut flow = Flow::connection(rule.direction, peer, local);
            flow.protocol = protocol;
            flow.peer_names = names.clone();
            flow.process = exe.map(|e| ProcessInfo {
                pid: 0,
                exe: e.to_string(),
                cmdline: Vec::new(),
                uid: 0,
            });
            let kind = if req.is_some() {
                RecordKind::Request
            } else {
                RecordKind::Connection
            };
            flow.http = req.map(|(method, path)| HttpRequestInfo {
                method: method.to_string(),
                host: names.first().cloned(),
                path,
                target: None,
            });
            // Split the entry's count; the first `count % n` get one more.
            let share = (count / n + u64::from((i as u64) < count % n)).max(1);
            WeightedRecord {
                record: FlowRecord {
                    id: format!("baseline:{}", rule.id),
                    start_ms: first_ms,
                    duration_ms: 0,
                    flow,
                    bytes_sent: 0,
                    bytes_received: 0,
                    decision: Decision::allow_learning(),
                    kind,
                    status: None,
                },
                count: share,
                first_ms,
                last_ms: last_ms.max(first_ms),
            }
        })
        .collect()
}

/// A concrete path a path pattern admits: `{param}` segments become `0`, a
/// trailing `*` (prefix) becomes `0`.
fn example_path(pattern: &str) -> String {
    let p: Vec<&str> = pattern
        .split('/')
        .map(|seg| {
            if (seg.starts_with('{') && seg.ends_with('}')) || seg == "*" {
                "0"
            } else {
                seg
            }
        })
        .collect();
    let s = p.join("/");
    if s.starts_with('/') {
        s
    } else {
        format!("/{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::load_policy_str;

    const BASELINE: &str = r#"
apiVersion: podwarden.io/v1alpha1
kind: Baseline
metadata: { workload: shop/checkout }
spec:
  mode: learn
  rules:
    - id: out-tls-api.payments.example-443
      direction: outbound
      peer: { fqdn: api.payments.example }
      ports: ["443"]
      protocols: [tls]
      processes: [/app/server]
      evidence: { count: 10, firstSeen: "2026-11-20T10:00:00Z", lastSeen: "2026-11-23T10:00:00Z" }
    - id: out-opaque-198.51.100.7-5432
      direction: outbound
      peer: { cidr: 198.51.100.7/32 }
      ports: ["5432"]
      evidence: { count: 7, firstSeen: "2026-11-21T00:00:00Z", lastSeen: "2026-11-22T00:00:00Z" }
    - id: in-http-192.0.2.0-24-8080
      direction: inbound
      peer: { cidr: 192.0.2.0/24 }
      ports: ["8080"]
      protocols: [http]
      http: { methods: [GET, POST], paths: ["/users/{id}"] }
      evidence: { count: 5, firstSeen: "2026-11-22T00:00:00Z", lastSeen: "2026-11-23T00:00:00Z" }
"#;

    fn spec(yaml: &str) -> PolicySpec {
        load_policy_str(yaml, "b.yaml").unwrap().spec
    }

    #[test]
    fn entries_become_weighted_records_of_their_shape() {
        let b = spec(BASELINE);
        let r = entry_records(&b.rules[2]);
        assert_eq!(r.len(), 2, "GET and POST of one template");
        assert_eq!(r.iter().map(|w| w.count).sum::<u64>(), 5, "count split");
        assert_eq!((r[0].count, r[1].count), (3, 2));
        let f = &r[0].record.flow;
        assert_eq!(f.peer, "192.0.2.1:0".parse().unwrap());
        assert_eq!(f.service_port(), 8080);
        let h = f.http.as_ref().unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("GET", "/users/0"));
        assert_eq!(r[1].record.flow.http.as_ref().unwrap().method, "POST");

        let r = entry_records(&b.rules[0]);
        assert_eq!(r.len(), 1);
        let w = &r[0];
        assert_eq!(w.count, 10);
        assert_eq!(w.first_ms, 1_795_168_800_000, "2026-11-20T10:00:00Z");
        assert_eq!(w.last_ms, 1_795_428_000_000, "2026-11-23T10:00:00Z");
        assert_eq!(w.record.flow.peer_names, ["api.payments.example"]);
        assert_eq!(w.record.flow.process.as_ref().unwrap().exe, "/app/server");
        assert_eq!(example_path("/static/*"), "/static/0");
    }

    #[test]
    fn the_baseline_approved_as_is_allows_everything_and_a_removed_rule_is_denied() {
        let b = spec(BASELINE);
        let full = load_policy_str(
            &BASELINE.replace("kind: Baseline", "kind: WorkloadPolicy"),
            "p",
        )
        .unwrap();
        let p = CompiledPolicy::compile(&full).unwrap();
        let rep = replay_baseline(&p, &b);
        assert!(!rep.any_denied(), "{}", rep.render_text());
        assert_eq!(rep.records, 22);
        assert_eq!(rep.allowed.len(), 4);

        // The candidate drops the database rule: exactly its 7 flows, one
        // group, with the entry's first/last seen and the near miss.
        let mut cand = full.clone();
        cand.spec
            .rules
            .retain(|r| r.id != "out-opaque-198.51.100.7-5432");
        let p = CompiledPolicy::compile(&cand).unwrap();
        let rep = replay_baseline(&p, &b);
        assert_eq!((rep.denied_records, rep.denied.len()), (7, 1));
        let g = &rep.denied[0];
        assert_eq!(g.key.port, 5432);
        assert_eq!(
            (g.first_seen.as_str(), g.last_seen.as_str()),
            ("2026-11-21T00:00:00Z", "2026-11-22T00:00:00Z")
        );
        assert_eq!(g.example.id, "baseline:out-opaque-198.51.100.7-5432");
        assert!(g.explanation.is_some());
    }
}
