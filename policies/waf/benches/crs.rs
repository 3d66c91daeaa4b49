//! Full CRS v4 at paranoia 1: a benign browser GET (8 headers, 3 args), a
//! 4 KiB JSON POST, and an SQLi GET. Skips (with a message) without CRS.

use criterion::{criterion_group, criterion_main, Criterion};
use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf_modsec_ref::bench_requests;
use std::path::PathBuf;

fn bench(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rs = load_crs(&dir, &CrsOptions::default()).expect("CRS loads");
    let [(_, get), (_, post), (_, sqli)] = bench_requests::cases();
    assert!(
        rs.evaluate(&sqli, None).interruption.is_some(),
        "the SQLi request must be blocked"
    );
    assert!(
        rs.evaluate(&get, None).interruption.is_none(),
        "the benign GET must pass"
    );
    assert!(
        rs.evaluate(&post, None).interruption.is_none(),
        "the JSON POST must pass"
    );
    let mut g = c.benchmark_group("crs_pl1");
    g.bench_function("benign_get", |b| b.iter(|| rs.evaluate(&get, None)));
    g.bench_function("json_post_4k", |b| b.iter(|| rs.evaluate(&post, None)));
    g.bench_function("sqli_get", |b| b.iter(|| rs.evaluate(&sqli, None)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
