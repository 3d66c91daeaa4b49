//! Replay throughput: flow records per second through the compiled policy
//! (the proxy's decision code) and the grouping, on one core, with a
//! 10,000-rule policy. Target: at least 1 M records/s.
//!
//! Run: `taskset -c 1 cargo bench -p podwarden-learner --bench replay`.
//! Each case is measured twice: `replay/*` in wall time (criterion's
//! default) and `replay_cpu/*` in the benchmark thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`), which a busy shared machine inflates far
//! less; both report records/s. See `RESULTS.md` for figures.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use podwarden_learner::replay::Replay;
use podwarden_policy::{
    load_policy_str, AppProtocol, CompiledPolicy, Decide, Decision, Direction, Flow, FlowRecord,
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

/// CPU time of the calling thread: criterion runs the routine on the
/// thread that measures, so this counts only the benchmark's own work, not
/// the time other processes hold the core.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds either way; reuse wall time's formatting.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

struct Setup {
    policy: CompiledPolicy,
    records: Vec<FlowRecord>,
    decisions: Vec<Decision>,
}

fn setup() -> Setup {
    let policy = policy();
    let records: Vec<FlowRecord> = (0..RECORDS).map(record).collect();
    let decisions: Vec<Decision> = records.iter().map(|r| policy.decide(&r.flow)).collect();
    // Sanity: the mix really has both verdicts.
    let mut r = Replay::new();
    for rec in &records {
        r.replay(&policy, rec);
    }
    let rep = r.finish(None);
    assert!(rep.denied_records > 0 && rep.allowed_records > rep.denied_records);
    Setup {
        policy,
        records,
        decisions,
    }
}

/// The three cases: decide and group (what `podwarden policy replay` does
/// per record), decide only, and group only (decisions made beforehand).
fn cases<M: Measurement>(c: &mut Criterion<M>, group: &str, s: &Setup) {
    let (p, recs, decisions) = (&s.policy, &s.records, &s.decisions);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(20);
    g.bench_function("10k_rules_100k_records", |b| {
        b.iter(|| {
            let mut r = Replay::new();
            for rec in recs {
                r.replay(p, black_box(rec));
            }
            black_box(r.records())
        })
    });
    g.bench_function("decide_only_10k_rules", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for rec in recs {
                n += u64::from(p.decide(black_box(&rec.flow)).rule.is_some());
            }
            black_box(n)
        })
    });
    g.bench_function("group_only_100k_records", |b| {
        b.iter(|| {
            let mut r = Replay::new();
            for (rec, d) in recs.iter().zip(decisions) {
                r.observe(black_box(rec), d);
            }
            black_box(r.records())
        })
    });
    g.finish();
}

fn wall(c: &mut Criterion) {
    cases(c, "replay", &setup());
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    cases(c, "replay_cpu", &setup());
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(wall_time, cpu_time);
