//! The three requests both WAF benchmarks time (`policies/waf/benches/crs.rs`
//! and this crate's `benches/ratio.rs`): a benign browser GET (8 headers,
//! 3 args), a 4 KiB JSON POST and an SQLi GET.

use podwarden_waf::Request;

/// `(case name, request)`, in the order the benchmarks report them. Only
/// `sqli_get` should be blocked at paranoia 1.
pub fn cases() -> [(&'static str, Request); 3] {
    let body = json_body();
    let len = body.len().to_string();
    [
        (
            "benign_get",
            req(
                "GET",
                "/catalog/search?q=blue+shoes&page=2&sort=price",
                &[],
                Vec::new(),
            ),
        ),
        (
            "json_post_4k",
            req(
                "POST",
                "/api/orders",
                &[
                    ("Content-Type", "application/json"),
                    ("Content-Length", len.as_str()),
                ],
                body,
            ),
        ),
        (
            "sqli_get",
            req("GET", "/catalog/item?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--&page=1&sort=asc", &[], Vec::new()),
        ),
    ]
}

fn req(method: &str, uri: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = [
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Cookie", "session=3f9a1c2e7b; theme=dark"),
        ("Referer", "https://shop.example.com/catalog"),
        ("Connection", "keep-alive"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
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
