//! Replay throughput: flow records per second through the compiled policy
//! (the proxy's decision code) and the grouping, on one core, with a
//! 10,000-rule policy. Target: at least 1 M records/s.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use podwarden_learner::replay::Replay;
use podwarden_policy::{
    load_policy_str, AppProtocol, CompiledPolicy, Decision, Direction, Flow, FlowRecord,
    HttpRequestInfo, ProcessInfo, RecordKind,
};

const RULES: usize = 10_000;
const RECORDS: usize = 100_000;

/// 10k rules: host CIDRs on one port each, FQDN rules, and HTTP rules with
/// path templates; every tenth a process restriction.
fn policy() -> CompiledPolicy {
    let mut y = String::from(
        "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: { workload: bench/replay, version: 1 }\nspec:\n  mode: protect\n  rules:\n",
    );
    for i in 0..RULES {
        let (a, b) = ((i / 250) as u8, (i % 250) as u8);
        match i % 4 {
            0 | 1 => writeln!(
                y,
                "    - {{ id: r{i}, direction: outbound, peer: {{ cidr: 10.{a}.{b}.1/32 }}, ports: [{}] }}",
                1000 + i % 50
            ),
            2 => writeln!(
                y,
                "    - {{ id: r{i}, direction: outbound, peer: {{ fqdn: svc{i}.example }}, ports: [443], protocols: [tls]{} }}",
                if i % 10 == 2 { ", processes: [/app/bin]" } else { "" }
            ),
            _ => writeln!(
                y,
                "    - {{ id: r{i}, direction: inbound, peer: {{ cidr: 10.{a}.{b}.0/24 }}, ports: [8080], http: {{ methods: [GET], paths: [\"/api/v{i}/items/{{id}}\"] }} }}"
            ),
        }
        .unwrap();
    }
    let doc = load_policy_str(&y, "bench.yaml").unwrap();
    CompiledPolicy::compile(&doc).unwrap()
}

fn record(i: usize) -> FlowRecord {
    let r = (i * 7919) % RULES;
    let (a, b) = ((r / 250) as u8, (r % 250) as u8);
    // One in ten does not match its rule (wrong port / path / name).
    let miss = i % 10 == 9;
    let local: SocketAddr = "10.200.0.2:40000".parse().unwrap();
    let mut flow = match r % 4 {
        0 | 1 => Flow::connection(
            Direction::Outbound,
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, a, b, 1)),
                (1000 + r % 50 + usize::from(miss)) as u16,
            ),
            local,
        ),
        2 => {
            let mut f = Flow::connection(
                Direction::Outbound,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 16, a, b)), 443),
                local,
            );
            f.protocol = AppProtocol::Tls;
            f.peer_names = vec![if miss {
                format!("other{r}.example")
            } else {
                format!("svc{r}.example")
            }];
            f
        }
        _ => {
            let mut f = Flow::connection(
                Direction::Inbound,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, a, b, 77)), 50000),
                "10.200.0.2:8080".parse().unwrap(),
            );
            f.protocol = AppProtocol::Http;
            f.http = Some(HttpRequestInfo {
                method: "GET".into(),
                host: None,
                path: if miss {
                    format!("/api/v{r}/admin")
                } else {
                    format!("/api/v{r}/items/{}", i % 1000)
                },
                target: None,
            });
            f
        }
    };
    flow.process = Some(ProcessInfo {
        pid: 7,
        exe: "/app/bin".into(),
        cmdline: Vec::new(),
        uid: 1000,
    });
    FlowRecord {
        id: format!("f{i}"),
        start_ms: 1_700_000_000_000 + i as u64,
        duration_ms: 1,
        flow,
        bytes_sent: 1,
        bytes_received: 1,
        decision: Decision::allow_learning(),
        kind: if r % 4 == 3 {
            RecordKind::Request
        } else {
            RecordKind::Connection
        },
        status: None,
    }
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let recs: Vec<FlowRecord> = (0..RECORDS).map(record).collect();
    // Sanity: the mix really has both verdicts.
    let mut r = Replay::new();
    for rec in &recs {
        r.replay(&p, rec);
    }
    let rep = r.finish(None);
    assert!(rep.denied_records > 0 && rep.allowed_records > rep.denied_records);

    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(20);
    g.bench_function("10k_rules_100k_records", |b| {
        b.iter(|| {
            let mut r = Replay::new();
            for rec in &recs {
                r.replay(&p, black_box(rec));
            }
            black_box(r.records())
        })
    });
    g.bench_function("decide_only_10k_rules", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for rec in &recs {
                n += u64::from(
                    podwarden_policy::Decide::decide(&p, &rec.flow)
                        .rule
                        .is_some(),
                );
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
