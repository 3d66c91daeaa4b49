//! Full CRS v4 at paranoia 1: a benign browser GET (8 headers, 3 args), a
//! 4 KiB JSON POST, and an SQLi GET. Skips (with a message) without CRS.

use criterion::{criterion_group, criterion_main, Criterion};
use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf::Request;
use std::path::PathBuf;

fn req(method: &str, uri: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("Host".into(), b"shop.example.com".to_vec()),
        (
            "User-Agent".into(),
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".to_vec(),
        ),
        (
            "Accept".into(),
            b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".to_vec(),
        ),
        ("Accept-Language".into(), b"en-US,en;q=0.5".to_vec()),
        ("Accept-Encoding".into(), b"gzip, deflate, br".to_vec()),
        ("Cookie".into(), b"session=3f9a1c2e7b; theme=dark".to_vec()),
        (
            "Referer".into(),
            b"https://shop.example.com/catalog".to_vec(),
        ),
        ("Connection".into(), b"keep-alive".to_vec()),
    ];
    for (k, v) in extra {
        headers.push((k.to_string(), v.as_bytes().to_vec()));
    }
    Request {
        method: method.into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers,
        body,
        remote_addr: "192.0.2.10".into(),
        remote_port: 40000,
        server_port: 80,
    }
}

fn json_body() -> Vec<u8> {
    let mut items = Vec::new();
    let mut i = 0;
    while serde_json::to_vec(&items).map(|v| v.len()).unwrap_or(0) < 4000 {
        items.push(serde_json::json!({"sku": format!("SKU-{i:05}"), "qty": i % 7 + 1, "note": "gift wrap please", "price": 19.99}));
        i += 1;
    }
    serde_json::to_vec(&serde_json::json!({"order": items, "customer": "Jane Doe"}))
        .unwrap_or_default()
}

fn bench(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rs = load_crs(&dir, &CrsOptions::default()).expect("CRS loads");
    let get = req(
        "GET",
        "/catalog/search?q=blue+shoes&page=2&sort=price",
        &[],
        Vec::new(),
    );
    let body = json_body();
    let len = body.len().to_string();
    let post = req(
        "POST",
        "/api/orders",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", len.as_str()),
        ],
        body,
    );
    let sqli = req("GET", "/catalog/item?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--&page=1&sort=asc", &[], Vec::new());
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
