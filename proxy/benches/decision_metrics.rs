//! What decision metrics add to a decision: the compiled policy alone versus
//! the hook's `SharedPolicy` (decision + pre-resolved per-rule counters), for
//! a flow a rule allows and one that falls to the default.
//!
//! cargo bench -p podwarden-proxy --bench decision_metrics -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use podwarden_policy::{load_policy_str, CompiledPolicy, Decide, Direction, Flow};
use podwarden_proxy::decision_metrics::DecisionMetrics;
use podwarden_proxy::policy_reload::SharedPolicy;
use prometheus::Registry;

const RULES: usize = 1000;

fn policy() -> CompiledPolicy {
    let mut y = String::from(
        "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: { workload: a/b }\nspec:\n  mode: protect\n  rules:\n",
    );
    for i in 0..RULES {
        y.push_str(&format!(
            "    - {{ id: r{i}, direction: outbound, peer: {{ cidr: 10.{}.{}.0/24 }}, ports: [\"443\"] }}\n",
            i / 256,
            i % 256
        ));
    }
    CompiledPolicy::compile(&load_policy_str(&y, "bench").unwrap()).unwrap()
}

fn flow(peer: &str) -> Flow {
    Flow::connection(
        Direction::Outbound,
        peer.parse().unwrap(),
        "192.0.2.10:40000".parse().unwrap(),
    )
}

fn bench(c: &mut Criterion) {
    let p = Arc::new(policy());
    let metrics = DecisionMetrics::new(&Registry::new()).unwrap();
    let counted = SharedPolicy(p.clone(), Some(Arc::new(metrics.counters_for(&p))));
    let (hit, miss) = (flow("10.1.44.9:443"), flow("203.0.113.9:443"));
    assert!(p.decide(&hit).rule.is_some() && p.decide(&miss).rule.is_none());
    let mut g = c.benchmark_group("decision");
    g.bench_function("policy/rule", |b| b.iter(|| p.decide(black_box(&hit))));
    g.bench_function("policy+metrics/rule", |b| {
        b.iter(|| counted.decide(black_box(&hit)))
    });
    g.bench_function("policy/default", |b| b.iter(|| p.decide(black_box(&miss))));
    g.bench_function("policy+metrics/default", |b| {
        b.iter(|| counted.decide(black_box(&miss)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
