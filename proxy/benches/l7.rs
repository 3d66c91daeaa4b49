//! The WAF and DLP inspectors as the relay drives them (adapter plus
//! engine), next to the bare WAF engine on the same requests, so the
//! adapter's own cost shows. Needs the OWASP CRS at ../shared/crs/v4.28.0
//! for the WAF benches (skipped with a message otherwise).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use podwarden_policy::{AppProtocol, Direction, Flow, HttpRequestInfo, PolicySpec};
use podwarden_proxy::inspect::{InspectorSet, RequestChain, StreamChain, StreamDir, Verdict};
use podwarden_proxy::l7::{L7Builder, L7Metrics, L7Options, Reporter};
use prometheus::Registry;

fn crs() -> Option<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        here.join("../../shared/crs/v4.28.0"),
        PathBuf::from("/work/shared/crs/v4.28.0"),
    ]
    .into_iter()
    .find(|p| p.join("rules").is_dir())
}

fn inspectors(spec: &str, dir: PathBuf) -> InspectorSet {
    let spec: PolicySpec = serde_yaml_ng::from_str(spec).unwrap();
    let reporter = Reporter::with_sink(|_| {}, L7Metrics::new(&Registry::new()).unwrap());
    L7Builder::new(L7Options { waf_rules_dir: dir }, reporter)
        .build(&spec)
        .unwrap()
}

fn flow(dir: Direction, proto: AppProtocol) -> Flow {
    let (peer, local) = match dir {
        Direction::Inbound => ("192.0.2.74:40000", "192.0.2.10:8080"),
        Direction::Outbound => ("198.51.100.10:80", "192.0.2.10:40000"),
    };
    let mut f = Flow::connection(dir, peer.parse().unwrap(), local.parse().unwrap());
    f.protocol = proto;
    f.http = Some(HttpRequestInfo {
        method: "GET".into(),
        host: Some("shop.example".into()),
        path: "/shop/items".into(),
        target: None,
    });
    f
}

fn browser_get(uri: &str) -> http::request::Parts {
    http::Request::builder()
        .uri(uri)
        .header("host", "shop.example")
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
        )
        .header("accept", "text/html,application/xhtml+xml")
        .header("accept-language", "en-US,en;q=0.5")
        .header("accept-encoding", "gzip, deflate")
        .header("connection", "keep-alive")
        .header("referer", "https://shop.example/")
        .header("cookie", "session=abc123")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn json_response() -> http::response::Parts {
    http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

const BENIGN: &str = "/shop/items?page=2&sort=price&q=blue+shoes";
const SQLI: &str = "/shop/items?id=1%27%20OR%20%271%27%3D%271";

fn waf(c: &mut Criterion) {
    let Some(dir) = crs() else {
        println!("skipped: WAF benches need ../shared/crs/v4.28.0");
        return;
    };
    let set = inspectors("mode: monitor\nwaf: {}\n", dir.clone());
    let f = flow(Direction::Inbound, AppProtocol::Http);
    let mut g = c.benchmark_group("waf_pl1");
    for (name, uri) in [("benign_get", BENIGN), ("sqli_get", SQLI)] {
        let head = browser_get(uri);
        let resp = json_response();
        g.bench_function(format!("inspector/{name}"), |b| {
            b.iter(|| {
                let mut chain = RequestChain::begin_with_id(&set, &f, "ev").unwrap();
                let _ = chain.request_head(&head);
                let v = chain.request_body(&[], true);
                let _ = chain.response_head(&resp);
                let _ = chain.response_body(b"{}", true);
                v
            })
        });
        // The bare engine on the same request, for the adapter's share.
        let opts = podwarden_waf::crs::CrsOptions {
            blocking_paranoia: Some(1),
            detection_paranoia: Some(1),
            ..Default::default()
        };
        let rules = podwarden_waf::crs::load_crs(&dir, &opts).unwrap();
        let req = podwarden_waf::Request {
            method: "GET".into(),
            uri: uri.into(),
            protocol: "HTTP/1.1".into(),
            headers: head
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: Vec::new(),
            remote_addr: "192.0.2.74".into(),
            remote_port: 40000,
            server_port: 8080,
        };
        g.bench_function(format!("engine/{name}"), |b| {
            b.iter(|| rules.evaluate(&req, None))
        });
    }
    g.finish();
}

fn dlp(c: &mut Criterion) {
    let set = inspectors("mode: monitor\ndlp: {}\n", PathBuf::from("/nonexistent"));
    let text: Vec<u8> =
        b"GET /api/v1/orders?page=2 HTTP/1.1 user=alice status=shipped total=129.90 "
            .iter()
            .copied()
            .cycle()
            .take(64 << 10)
            .collect();
    let mut g = c.benchmark_group("dlp");
    g.throughput(Throughput::Bytes(text.len() as u64));
    let f = flow(Direction::Outbound, AppProtocol::Opaque);
    g.bench_function("stream_64k_in_16k_segments", |b| {
        b.iter_batched(
            || StreamChain::begin_with_id(&set, &f, "ev").unwrap(),
            |mut chain| {
                for seg in text.chunks(16 << 10) {
                    assert_eq!(
                        chain.on_data(StreamDir::ClientToServer, seg),
                        Verdict::Continue
                    );
                }
                chain.on_end(StreamDir::ClientToServer)
            },
            BatchSize::SmallInput,
        )
    });
    let f = flow(Direction::Outbound, AppProtocol::Http);
    let mut post = browser_get("/api/orders");
    post.method = http::Method::POST;
    let body = &text[..4096];
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("outbound_post_4k", |b| {
        b.iter(|| {
            let mut chain = RequestChain::begin_with_id(&set, &f, "ev").unwrap();
            let _ = chain.request_head(&post);
            chain.request_body(body, true)
        })
    });
    g.finish();
}

criterion_group!(benches, waf, dlp);
criterion_main!(benches);
