//! podwarden-waf and libmodsecurity in the same run, full CRS v4 at paranoia
//! 1, engine On: a benign browser GET (8 headers, 3 args), a 4 KiB JSON POST
//! and an SQLi GET (`bench_requests`, shared with policies/waf/benches/crs.rs). Prints each
//! median and the ratio libmodsecurity / podwarden, with the load average.
//! Skips, saying why, without CRS or libmodsecurity.

use criterion::Criterion;
use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf_modsec_ref::{bench_requests, ftw, ModSec, Prepared};
use std::path::PathBuf;
use std::time::Duration;

const GROUP: &str = "waf_vs_modsec";
const CASES: [&str; 3] = ["benign_get", "json_post_4k", "sqli_get"];

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Where criterion writes its estimates: $CRITERION_HOME, else the target
/// directory this bench binary was built in (target/<profile>/deps/<exe>).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(h));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.ancestors().nth(3)?.join("criterion"))
}

fn median_ns(engine: &str, case: &str) -> Option<f64> {
    let p = criterion_dir()?
        .join(GROUP)
        .join(format!("{engine}_{case}"))
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v.get("median")?.get("point_estimate")?.as_f64()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

fn main() {
    let Some(dir) = ftw::crs_dir() else {
        println!("skipped: CRS v4.28.0 not found beside the repository");
        return;
    };
    let opts = CrsOptions::default();
    let theirs = match ModSec::load_crs(&dir, &opts) {
        Ok(m) => m,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let ours = load_crs(&dir, &opts).expect("CRS loads");
    let (names, requests): (Vec<_>, Vec<_>) = bench_requests::cases().into_iter().unzip();
    assert_eq!(names, CASES);
    // Both engines must decide alike before their speed is compared.
    for (case, r) in CASES.iter().zip(&requests) {
        let o = ours.evaluate(r, None).interruption.is_some();
        let t = theirs.evaluate(r, None).interruption.is_some();
        assert_eq!(
            o, t,
            "{case}: podwarden blocks={o}, libmodsecurity blocks={t}"
        );
        assert_eq!(o, *case == "sqli_get", "{case}: unexpected decision");
    }
    let before = loadavg();
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    {
        let mut g = c.benchmark_group(GROUP);
        for (case, r) in CASES.iter().zip(&requests) {
            let p = Prepared::new(r, None);
            g.bench_function(format!("podwarden_{case}"), |b| {
                b.iter(|| ours.evaluate(r, None))
            });
            g.bench_function(format!("modsec_{case}"), |b| {
                b.iter(|| theirs.evaluate_prepared(&p))
            });
        }
        g.finish();
    }
    c.final_summary();
    println!("\nload average before: {before}; after: {}", loadavg());
    println!(
        "| request | podwarden-waf median | libmodsecurity median | libmodsecurity / podwarden |"
    );
    println!("|---|---|---|---|");
    for case in CASES {
        match (median_ns("podwarden", case), median_ns("modsec", case)) {
            (Some(o), Some(t)) => {
                println!("| {case} | {} | {} | {:.1}× |", fmt_ns(o), fmt_ns(t), t / o)
            }
            _ => println!("| {case} | (not measured in this run) | | |"),
        }
    }
}
