//! Per-connection and per-request pure work on the hot path: protocol
//! detection, ClientHello parsing, raw head checks, hop-by-hop stripping.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use podwarden_proxy::detect::detect;
use podwarden_proxy::http::headers::{check_raw_head, strip_hop_by_hop};
use podwarden_proxy::tls::{build_client_hello, parse_client_hello};

fn benches(c: &mut Criterion) {
    let get = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    let hello = build_client_hello(Some("api.example.com"), &["h2", "http/1.1"]);
    let redis = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
    c.bench_function("detect_http1", |b| b.iter(|| detect(black_box(get))));
    c.bench_function("detect_tls", |b| b.iter(|| detect(black_box(&hello))));
    c.bench_function("detect_opaque_redis", |b| {
        b.iter(|| detect(black_box(redis)))
    });
    c.bench_function("parse_client_hello", |b| {
        b.iter(|| parse_client_hello(black_box(&hello)))
    });
    c.bench_function("check_raw_head", |b| {
        b.iter(|| check_raw_head(black_box(get)))
    });
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "api.example.com".parse().unwrap());
    headers.insert("connection", "keep-alive".parse().unwrap());
    headers.insert("accept", "*/*".parse().unwrap());
    headers.insert("user-agent", "bench".parse().unwrap());
    c.bench_function("strip_hop_by_hop", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            strip_hop_by_hop(&mut h, false);
            h
        })
    });
}

criterion_group!(detect_benches, benches);
criterion_main!(detect_benches);
