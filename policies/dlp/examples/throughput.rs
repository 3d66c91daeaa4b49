//! Scan a generated 1 MiB typical body N times; run under `perf stat -e
//! task-clock` to get CPU-time throughput on a loaded machine, where
//! criterion's wall-clock numbers are skewed by other processes.

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let body = podwarden_dlp::corpus::typical_body(1, 1 << 20);
    let scanner =
        podwarden_dlp::Scanner::new(&podwarden_dlp::Config::default()).expect("default config");
    let mut found = 0;
    for _ in 0..n {
        found += scanner.scan(&body).len();
    }
    println!("scanned {} MiB, {found} findings", n);
}
