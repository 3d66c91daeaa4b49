//! Property tests: from any finite set of observations, learning never
//! proposes `any`, never a port or protocol that was not observed, never a
//! network wider than configured, and every observation stays covered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use podwarden_learner::generalize::path_template;
use podwarden_learner::learn::{WIDEST_V4_PREFIX, WIDEST_V6_PREFIX};
use podwarden_learner::promote::promote;
use podwarden_learner::{diff, merge_baselines, Learner, LearnerConfig, Rejections};
use podwarden_policy::model::{Peer, PolicyDocument};
use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, HttpRequestInfo, ProcessInfo, RecordKind,
};
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // few distinct values so that subnets and names repeat
        (0u8..4, 0u8..6).prop_map(|(a, b)| IpAddr::V4(Ipv4Addr::new(10, 1, a, b))),
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        (0u16..3, 0u16..5)
            .prop_map(|(a, b)| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, a, 0, 0, 0, b))),
    ]
}

fn proto() -> impl Strategy<Value = AppProtocol> {
    prop_oneof![
        Just(AppProtocol::Http),
        Just(AppProtocol::Http2),
        Just(AppProtocol::Tls),
        Just(AppProtocol::Dns),
        Just(AppProtocol::Opaque),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api.example".to_string()),
        Just("API.Example.".to_string()),
        Just("a.b.example".to_string()),
        Just("*.example".to_string()),
        Just("bad..name".to_string()),
        "[a-z]{1,6}\\.[a-z]{2,4}",
        ".{0,8}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof!["(/[a-z0-9*{}]{0,10}){0,4}", "/users/[0-9]{1,6}", ".{0,20}",]
}

prop_compose! {
    fn record()(
        inbound in any::<bool>(),
        peer_ip in ip(),
        peer_port in any::<u16>(),
        local_port in any::<u16>(),
        protocol in proto(),
        names in prop::collection::vec(name(), 0..3),
        http in prop::option::of(("[A-Za-z]{1,7}", path())),
        exe in prop::option::of(prop_oneof![Just("/app"), Just("/bin/sh")]),
        at in 0u64..4_000_000_000_000,
    ) -> FlowRecord {
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), local_port);
        let dir = if inbound { Direction::Inbound } else { Direction::Outbound };
        let mut flow = Flow::connection(dir, SocketAddr::new(peer_ip, peer_port), local);
        flow.protocol = protocol;
        flow.peer_names = names;
        flow.http = http.map(|(m, p)| HttpRequestInfo { method: m, host: Some("h.example".into()), path: p, target: None });
        flow.process = exe.map(|e| ProcessInfo { pid: 1, exe: e.to_string(), cmdline: vec![], uid: 0 });
        FlowRecord {
            id: "p".into(), start_ms: at, duration_ms: 0, flow, bytes_sent: 0, bytes_received: 0,
            decision: Decision::allow_learning(), kind: RecordKind::Connection, status: None,
        }
    }
}

fn learn(recs: &[FlowRecord], replica: &str) -> PolicyDocument {
    let mut c = LearnerConfig::new("ns/app");
    c.replica = Some(replica.into());
    let mut l = Learner::new(c).unwrap();
    l.ingest_all(recs);
    l.baseline()
}

fn check_bounded(doc: &PolicyDocument, recs: &[FlowRecord]) -> Result<(), TestCaseError> {
    // Learnable: a service port, and HTTP only from its requests (an HTTP
    // connection record carries no host or path).
    let seen: Vec<&FlowRecord> = recs
        .iter()
        .filter(|r| r.flow.service_port() != 0)
        .filter(|r| {
            !matches!(r.flow.protocol, AppProtocol::Http | AppProtocol::Http2)
                || r.flow.http.is_some()
        })
        .collect();
    for r in &doc.spec.rules {
        prop_assert!(r.peer != Peer::Any, "learned any: {}", r.id);
        prop_assert_eq!(r.ports.len(), 1);
        let p = r.ports[0];
        prop_assert_eq!(p.first, p.last, "range learned: {}", p);
        prop_assert!(seen
            .iter()
            .any(|s| s.flow.direction == r.direction && s.flow.service_port() == p.first));
        prop_assert_eq!(r.protocols.len(), 1);
        prop_assert!(seen.iter().any(|s| s.flow.protocol == r.protocols[0]));
        match &r.peer {
            Peer::Any => unreachable!(),
            Peer::Fqdn(f) => {
                prop_assert!(!f.contains('*'), "wildcard learned: {}", f);
                prop_assert!(seen.iter().any(|s| s
                    .flow
                    .peer_names
                    .iter()
                    .any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(f))));
            }
            Peer::Cidr(net) => {
                let widest = match net {
                    IpNet::V4(_) => WIDEST_V4_PREFIX,
                    IpNet::V6(_) => WIDEST_V6_PREFIX,
                };
                prop_assert!(net.prefix_len() >= widest, "too wide: {}", net);
                let inside = seen
                    .iter()
                    .filter(|s| net.contains(&s.flow.peer.ip()))
                    .count();
                prop_assert!(inside >= 1, "network {} covers no observation", net);
                if net.prefix_len() < net.max_prefix_len() {
                    prop_assert_eq!(
                        r.direction,
                        Direction::Inbound,
                        "only inbound clients collapse"
                    );
                    let distinct: std::collections::BTreeSet<IpAddr> = seen
                        .iter()
                        .map(|s| s.flow.peer.ip())
                        .filter(|i| net.contains(i))
                        .collect();
                    prop_assert!(distinct.len() >= 2, "{} from one host", net);
                }
            }
        }
        if let Some(h) = &r.http {
            prop_assert!(!h.methods.is_empty() && !h.paths.is_empty());
            for p in &h.paths {
                prop_assert!(!p.contains('*'), "prefix learned: {}", p);
            }
        }
    }
    // completeness: every learnable observation has a rule for it
    for s in &seen {
        let f = &s.flow;
        let covered = doc.spec.rules.iter().any(|r| {
            r.direction == f.direction
                && r.ports[0].first == f.service_port()
                && r.protocols[0] == f.protocol
                && match &r.peer {
                    Peer::Cidr(n) => n.contains(&f.peer.ip()),
                    Peer::Fqdn(n) => f
                        .peer_names
                        .iter()
                        .any(|x| x.trim_end_matches('.').eq_ignore_ascii_case(n)),
                    Peer::Any => false,
                }
        });
        prop_assert!(covered, "observation not covered: {:?}", f);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn learning_never_widens(recs in prop::collection::vec(record(), 0..40)) {
        let doc = learn(&recs, "r1");
        check_bounded(&doc, &recs)?;
        // what is emitted is a valid document (ids, names, ports re-parse)
        let y = serde_yaml_ng::to_string(&doc).unwrap();
        let back: PolicyDocument = serde_yaml_ng::from_str(&y).map_err(|e| TestCaseError::fail(format!("{e}\n{y}")))?;
        prop_assert_eq!(back, doc);
    }

    #[test]
    fn merging_never_widens(a in prop::collection::vec(record(), 0..20), b in prop::collection::vec(record(), 0..20)) {
        let m = merge_baselines(&[learn(&a, "r1"), learn(&b, "r2")]).unwrap();
        for r in &m.spec.rules {
            prop_assert!(r.peer != Peer::Any);
            prop_assert!(r.ports.iter().all(|p| p.first == p.last));
        }
        let total: u64 = m.spec.rules.iter().filter(|r| r.http.is_none()).filter_map(|r| r.evidence.as_ref()).map(|e| e.count).sum();
        let ra = learn(&a, "r1");
        let rb = learn(&b, "r2");
        let parts: u64 = ra.spec.rules.iter().chain(rb.spec.rules.iter()).filter(|r| r.http.is_none()).filter_map(|r| r.evidence.as_ref()).map(|e| e.count).sum();
        prop_assert_eq!(total, parts);
    }

    #[test]
    fn approving_everything_leaves_nothing_to_review(recs in prop::collection::vec(record(), 0..30)) {
        let b = learn(&recs, "r1");
        let d = diff(&b, None, &Rejections::default());
        let chosen: Vec<_> = d.proposals().cloned().collect();
        let policy = promote(None, Some(&b), "ns/app", &chosen);
        let again = diff(&b, Some(&policy), &Rejections::default());
        prop_assert!(again.is_empty(), "left after approving all: {:?}", again.entries.iter().map(|e| &e.id).collect::<Vec<_>>());
        prop_assert_eq!(again.unchanged, b.spec.rules.len());
    }

    #[test]
    fn path_templates_keep_segment_count(p in ".{0,60}") {
        let t = path_template(&p);
        let base = p.split(['?', '#']).next().unwrap_or("");
        let n_in = if base.is_empty() { 2 } else if base.starts_with('/') { base.split('/').count() } else { base.split('/').count() + 1 };
        prop_assert!(t.starts_with('/'));
        prop_assert_eq!(t.split('/').count(), n_in, "{} -> {}", p, t);
        prop_assert!(!t.contains('*'));
    }
}
