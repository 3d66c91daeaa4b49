use super::*;
use crate::learn::LearnerConfig;
use crate::testutil::{inb, out, RecExt};

fn sample() -> (Learner, PolicyDocument) {
    let mut l = Learner::new(LearnerConfig::new("shop/checkout")).unwrap();
    l.ingest(
        &out("192.0.2.10:443", 1, AppProtocol::Tls)
            .named(&["api.payments.example"])
            .by("/app")
            .sni("api.payments.example"),
    );
    l.ingest(
        &out("192.0.2.11:443", 2, AppProtocol::Tls)
            .named(&["api.payments.example"])
            .by("/app"),
    );
    l.ingest(
        &out("192.0.2.20:80", 3, AppProtocol::Http)
            .named(&["users.example"])
            .by("/app")
            .req("GET", Some("users.example"), "/users/7"),
    );
    l.ingest(&out("10.96.0.10:53", 4, AppProtocol::Dns).by("/app"));
    l.ingest(&out("10.0.3.4:6379", 5, AppProtocol::Opaque).by("/app"));
    l.ingest(
        &inb("10.0.9.9:5555", 8080, AppProtocol::Http)
            .by("/app")
            .req("POST", None, "/orders"),
    );
    let doc = l.baseline();
    (l, doc)
}

#[test]
fn networkpolicy_skips_names_unless_asked() {
    let (l, doc) = sample();
    let y = networkpolicy(&doc, &ExportOptions::default()).unwrap();
    assert!(y.contains("kind: NetworkPolicy"), "{y}");
    assert!(
        y.contains("NOT EXPORTED: peer api.payments.example is a DNS name"),
        "{y}"
    );
    assert!(y.contains("cidr: 10.0.3.4/32"), "{y}");
    assert!(y.contains("cidr: 10.0.9.9/32"), "{y}");
    assert!(y.contains("protocol: UDP"), "dns goes on udp too: {y}");
    assert!(!y.contains("192.0.2.10"), "{y}");
    // the YAML body parses and has the expected shape
    let body: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
    assert_eq!(body["metadata"]["namespace"], "shop");
    assert_eq!(body["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    let opts = ExportOptions {
        fqdn_addresses: Some(fqdn_addresses(&l)),
    };
    let y = networkpolicy(&doc, &opts).unwrap();
    assert!(
        y.contains("cidr: 192.0.2.10/32") && y.contains("cidr: 192.0.2.11/32"),
        "{y}"
    );
    assert!(y.contains("go stale"), "{y}");
}

#[test]
fn cilium_has_fqdns_and_l7() {
    let (_, doc) = sample();
    let y = cilium(&doc).unwrap();
    let v: serde_json::Value = serde_yaml_ng::from_str(&y).unwrap();
    assert_eq!(v["kind"], "CiliumNetworkPolicy");
    let egress = v["spec"]["egress"].as_array().unwrap();
    assert!(egress
        .iter()
        .any(|e| e["toFQDNs"][0]["matchName"] == "api.payments.example"));
    let http = egress
        .iter()
        .find(|e| e["toFQDNs"][0]["matchName"] == "users.example")
        .unwrap();
    let rule = &http["toPorts"][0]["rules"]["http"][0];
    assert_eq!(rule["method"], "GET");
    assert_eq!(rule["path"], "/users/[^/]+");
    assert_eq!(rule["host"], "^users\\.example$");
    assert!(egress
        .iter()
        .any(|e| e["toPorts"][0]["rules"]["dns"].is_array()));
    assert!(y.contains("processes [/app] not expressible"), "{y}");
    assert_eq!(cilium::path_regex("/static/*"), "/static/.*");
}

#[test]
fn graphs_name_every_node_and_edge() {
    let (_, doc) = sample();
    let d = dot(&doc);
    assert!(d.starts_with("digraph \"shop/checkout\""));
    assert!(
        d.contains("\"p:/app\" -> \"s:api.payments.example\" [label=\"443 tls\\n(2 flows)\"]"),
        "{d}"
    );
    assert!(d.contains("\"c:10.0.9.9\" -> \"p:/app\""), "{d}");
    let s = svg(&doc);
    assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    for name in [
        "api.payments.example",
        "users.example",
        "10.0.9.9",
        "/app",
        "GET /users/{id}",
    ] {
        assert!(s.contains(name), "{name} missing");
    }
    // every path element is closed: a crude well-formedness check
    assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
}
