//! `GET /rules/usage` served for real on loopback: hits and last hit per
//! rule of the policy in force, as the decision hook counted them.

use std::sync::Arc;

use podwarden_policy::{Direction, Flow, Mode};

use super::control::{AdminControl, RuleUsageReport};
use super::tests::{call, sha256_hex, TOKEN};
use crate::config::Config;
use crate::policy_reload::{PolicyReloader, ReloadMetrics};
use crate::Proxy;

fn policy(version: u64) -> String {
    serde_json::json!({
        "apiVersion": "podwarden.io/v1alpha1",
        "kind": "WorkloadPolicy",
        "metadata": {"workload": "shop/checkout", "version": version},
        "spec": {
            "mode": "protect",
            "rules": [
                {"id": "out-db", "direction": "outbound",
                 "peer": {"cidr": "198.51.100.0/24"}, "ports": ["5432"]},
                {"id": "out-cache", "direction": "outbound",
                 "peer": {"cidr": "198.51.100.0/24"}, "ports": ["6379"]}
            ]
        }
    })
    .to_string()
}

fn to(port: u16) -> Flow {
    Flow::connection(
        Direction::Outbound,
        format!("198.51.100.7:{port}").parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    )
}

#[test]
fn rule_usage_counts_what_the_hook_decided() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let proxy = Proxy::builder(config).build().unwrap();
    let control = Arc::new(AdminControl::new(
        Some(&sha256_hex(TOKEN)),
        Mode::Learn,
        Some(dir.path().join("policy.json")),
        None,
    ));
    // As in the binary: the reloader's metrics live in the proxy's registry.
    control.set_reloader(Arc::new(PolicyReloader::new(
        dir.path().join("unused.yaml"),
        proxy.hook().clone(),
        ReloadMetrics::new(proxy.registry()).unwrap(),
        None,
        "shop/checkout",
        "checkout-1",
    )));
    let server = super::spawn_with(proxy.shared().clone(), control).unwrap();

    // Before any policy: no rules.
    let (st, body) = call(server.addr, "GET", "/rules/usage", Some(TOKEN), "");
    assert_eq!(st, 200, "{body}");
    let r: RuleUsageReport = serde_json::from_str(&body).unwrap();
    assert_eq!((r.policy_version, r.rules.len()), (0, 0));

    let (st, body) = call(server.addr, "PUT", "/policy", Some(TOKEN), &policy(7));
    assert_eq!(st, 200, "{body}");
    for port in [5432, 5432, 5432, 9999] {
        let _ = proxy.hook().decide(&to(port));
    }
    let (st, body) = call(server.addr, "GET", "/rules/usage", Some(TOKEN), "");
    assert_eq!(st, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["policyVersion"], 7);
    let r: RuleUsageReport = serde_json::from_value(json).unwrap();
    let got: Vec<(&str, u64, bool)> = r
        .rules
        .iter()
        .map(|u| (u.rule.as_str(), u.hits, u.last_hit.is_some()))
        .collect();
    assert_eq!(got, [("out-cache", 0, false), ("out-db", 3, true)]);

    // Like /status, it needs the token.
    assert_eq!(call(server.addr, "GET", "/rules/usage", None, "").0, 401);
    assert_eq!(
        call(server.addr, "GET", "/rules/usage", Some("wrong"), "").0,
        401
    );
}
