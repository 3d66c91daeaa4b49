//! Learner throughput: flow records aggregated per second on one core.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use podwarden_learner::{Learner, LearnerConfig};
use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, HttpRequestInfo, ProcessInfo, RecordKind,
};

/// A realistic mix: TLS to named APIs behind many IPs, HTTP with id paths,
/// redis and DNS by address, inbound HTTP from a few client subnets.
fn records(n: usize) -> Vec<FlowRecord> {
    let procs = ["/usr/local/bin/checkout", "/usr/bin/python3", "/bin/sh"];
    (0..n)
        .map(|i| {
            let kind = i % 10;
            let eph = 32768 + (i % 28000) as u16;
            let (dir, peer, local, proto, names, http) = match kind {
                0..=3 => (
                    Direction::Outbound,
                    format!("192.0.2.{}:443", i % 200),
                    format!("10.0.0.5:{eph}"),
                    AppProtocol::Tls,
                    vec![format!("api{}.example.com", i % 40)],
                    None,
                ),
                4..=6 => (
                    Direction::Outbound,
                    format!("198.51.100.{}:80", i % 50),
                    format!("10.0.0.5:{eph}"),
                    AppProtocol::Http,
                    vec!["users.example.com".to_string()],
                    Some(("GET", format!("/users/{}/orders/{}", i * 7, i % 13))),
                ),
                7 => (
                    Direction::Outbound,
                    "10.0.3.4:6379".to_string(),
                    format!("10.0.0.5:{eph}"),
                    AppProtocol::Opaque,
                    vec![],
                    None,
                ),
                8 => (
                    Direction::Outbound,
                    "10.96.0.10:53".to_string(),
                    format!("10.0.0.5:{eph}"),
                    AppProtocol::Dns,
                    vec![],
                    None,
                ),
                _ => (
                    Direction::Inbound,
                    format!("10.1.{}.{}:{eph}", i % 4, i % 30),
                    "10.0.0.5:8080".to_string(),
                    AppProtocol::Http,
                    vec![],
                    Some(("POST", format!("/api/items/{}", i))),
                ),
            };
            let mut flow = Flow::connection(dir, peer.parse().unwrap(), local.parse().unwrap());
            flow.protocol = proto;
            flow.peer_names = names;
            flow.process = Some(ProcessInfo {
                pid: 100 + (i % 3) as u32,
                exe: procs[i % 3].to_string(),
                cmdline: vec![],
                uid: 1000,
            });
            flow.http = http.map(|(m, p)| HttpRequestInfo {
                method: m.into(),
                host: Some("users.example.com".into()),
                path: p,
                target: None,
            });
            FlowRecord {
                id: format!("f-{i}"),
                start_ms: 1_700_000_000_000 + i as u64,
                duration_ms: 1,
                flow,
                bytes_sent: 100,
                bytes_received: 200,
                decision: Decision::allow_learning(),
                kind: RecordKind::Connection,
                status: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let recs = records(100_000);
    let mut g = c.benchmark_group("learner");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.sample_size(10);
    g.bench_function("ingest_100k_mixed", |b| {
        b.iter_batched(
            || Learner::new(LearnerConfig::new("shop/checkout")).unwrap(),
            |mut l| {
                l.ingest_all(&recs);
                black_box(l.len())
            },
            BatchSize::LargeInput,
        )
    });
    // Steady state: the learner already knows every shape (the common case
    // in a long learning window).
    let mut warm = Learner::new(LearnerConfig::new("shop/checkout")).unwrap();
    warm.ingest_all(&recs);
    g.bench_function("ingest_100k_known_shapes", |b| {
        b.iter(|| {
            warm.ingest_all(&recs);
            black_box(warm.len())
        })
    });
    g.finish();
    let mut l = Learner::new(LearnerConfig::new("shop/checkout")).unwrap();
    l.ingest_all(&recs);
    c.bench_function("baseline_emit", |b| {
        b.iter(|| black_box(l.baseline().spec.rules.len()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
