//! Scanning throughput on typical bodies (JSON API payloads, access logs,
//! prose; generated, secret-free) with all built-in sensors on: 1 KiB,
//! 64 KiB and 1 MiB, plain and gzip (throughput counted in decoded bytes),
//! whole-buffer and streamed in 16 KiB reads.

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use podwarden_dlp::{corpus, Compression, Config, Scanner, StreamOptions};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bench(c: &mut Criterion) {
    let mut cfg = Config::default();
    cfg.enabled_sensors.push("stripe_test_key".into());
    let scanner = Scanner::new(&cfg).unwrap();
    let mut g = c.benchmark_group("scan");
    for (name, size) in [("1KiB", 1 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let body = corpus::typical_body(1, size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("plain", name), &body, |b, body| {
            b.iter(|| scanner.scan(body));
        });
        g.bench_with_input(
            BenchmarkId::new("plain-stream-16KiB", name),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut s = scanner.stream();
                    let mut n = 0;
                    for chunk in body.chunks(16 << 10) {
                        n += s.push(chunk).len();
                    }
                    n + s.finish().len()
                });
            },
        );
        let gz = gzip(&body);
        g.bench_with_input(BenchmarkId::new("gzip", name), &gz, |b, gz| {
            b.iter(|| {
                let mut s = scanner.stream_with(StreamOptions {
                    chunked: false,
                    content_encoding: Some(Compression::Gzip),
                });
                let mut n = 0;
                for chunk in gz.chunks(16 << 10) {
                    n += s.push(chunk).len();
                }
                n + s.finish().len()
            });
        });
    }
    // The labelled corpus as one stream: dense with secrets and encodings.
    let dense: Vec<u8> = corpus::generate(3, 200, 100)
        .into_iter()
        .flat_map(|s| s.data)
        .collect();
    g.throughput(Throughput::Bytes(dense.len() as u64));
    g.bench_with_input(
        BenchmarkId::new("dense-secrets", dense.len()),
        &dense,
        |b, d| b.iter(|| scanner.scan(d)),
    );
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
