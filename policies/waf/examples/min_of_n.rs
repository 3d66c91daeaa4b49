//! Min-of-N timing of the three benchmark requests (full CRS v4.28 at PL1):
//! on a shared, loaded machine the fastest of many consecutive evaluations
//! estimates the uncontended CPU cost better than criterion's median, which
//! also counts the time spent waiting for a CPU.
//!
//! Usage: cargo run --release --example min_of_n -- [N] [CASE]
//! (N evaluations per case, default 300; CASE one of benign_get, json_post_4k,
//! sqli_get to time only that one — handy under `perf record`.)

use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf_modsec_ref::{bench_requests, ftw};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let only = args.get(2).cloned();
    let Some(dir) = ftw::crs_dir() else {
        println!("skipped: CRS v4.28.0 not found beside the repository");
        return;
    };
    let rs = match load_crs(&dir, &CrsOptions::default()) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());
    for (name, req) in bench_requests::cases() {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut times: Vec<Duration> = (0..n.max(1))
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(rs.evaluate(std::hint::black_box(&req), None));
                t.elapsed()
            })
            .collect();
        times.sort();
        // Always in µs: `{:?}` switches to ms past 1 ms and rounds the
        // JSON POST to 1.0 ms, hiding changes of up to 10 %.
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{name:>14}: min {:>8.1} µs  p10 {:>8.1} µs  median {:>8.1} µs  (n={})",
            us(times[0]),
            us(times[times.len() / 10]),
            us(times[times.len() / 2]),
            times.len()
        );
    }
}
