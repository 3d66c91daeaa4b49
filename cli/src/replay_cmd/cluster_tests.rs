//! `policy replay --cluster` and `policy unused --cluster` against the
//! mocked API server, with a baseline CR as the controller writes it.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::cluster;
use super::fake::{mock_client, FakeApi};
use crate::cluster::Target;
use podwarden_policy::{load_policy_str, CompiledPolicy};

const NS: &str = "/apis/podwarden.io/v1alpha1/namespaces/shop";

/// Entries as the controller's aggregation writes them (ids, shapes,
/// evidence merged over replicas).
fn entries() -> Vec<Value> {
    vec![
        json!({"id": "out-tls-api.payments.example-443", "direction": "outbound",
               "peer": {"fqdn": "api.payments.example"}, "ports": ["443"], "protocols": ["tls"],
               "processes": ["/app/server"],
               "evidence": {"count": 120, "firstSeen": "2026-11-20T10:00:00.000Z", "lastSeen": "2026-11-23T10:00:00.000Z",
                            "example": "checkout-1 -> api.payments.example:443", "replicas": ["checkout-1", "checkout-2"]}}),
        json!({"id": "out-opaque-198.51.100.7-5432", "direction": "outbound",
               "peer": {"cidr": "198.51.100.7/32"}, "ports": ["5432"], "protocols": ["opaque"],
               "evidence": {"count": 42, "firstSeen": "2026-11-21T00:00:00.000Z", "lastSeen": "2026-11-22T08:30:00.000Z",
                            "example": "checkout-2 -> 198.51.100.7:5432", "replicas": ["checkout-2"]}}),
        json!({"id": "in-http-192.0.2.0-24-8080", "direction": "inbound",
               "peer": {"cidr": "192.0.2.0/24"}, "ports": ["8080"], "protocols": ["http"],
               "http": {"methods": ["GET"], "paths": ["/users/{id}", "/healthz"]},
               "evidence": {"count": 9, "firstSeen": "2026-11-22T00:00:00.000Z", "lastSeen": "2026-11-23T00:00:00.000Z",
                            "example": "192.0.2.44 -> checkout-1:8080 GET /users/7", "replicas": ["checkout-1"]}}),
    ]
}

fn baseline_cr() -> Value {
    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadBaseline",
           "metadata": {"name": "deployment-checkout", "namespace": "shop"},
           "spec": {"workload": {"kind": "Deployment", "name": "checkout"},
                    "policy": {"mode": "learn", "rules": entries()}},
           "status": {"ruleCount": 3, "replicaCount": 2, "lastUpdated": "2026-11-23T10:00:05Z",
                      "replicas": [{"pod": "checkout-1", "lastReport": "2026-11-23T10:00:05Z"},
                                   {"pod": "checkout-2", "lastReport": "2026-11-23T10:00:05Z"}]}})
}

/// The candidate: the learned entries as rules, without `drop`.
fn candidate(drop: Option<&str>) -> CompiledPolicy {
    let rules: Vec<Value> = entries()
        .into_iter()
        .filter(|r| Some(r["id"].as_str().unwrap()) != drop)
        .collect();
    let doc = json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
                     "metadata": {"workload": "shop/checkout", "version": 2},
                     "spec": {"mode": "protect", "rules": rules}});
    let doc = load_policy_str(&doc.to_string(), "candidate.json").unwrap();
    CompiledPolicy::compile(&doc).unwrap()
}

fn calls(api: &Mutex<FakeApi>) -> Vec<String> {
    std::mem::take(&mut api.lock().unwrap().log)
}

#[tokio::test]
async fn replay_judges_the_candidate_on_the_aggregated_baseline() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(baseline_cr());
    let t = Target::parse("shop/checkout").unwrap();

    // The baseline approved as is: nothing would be denied.
    let mut out = Vec::new();
    let code = cluster::replay(client.clone(), &t, &candidate(None), false, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("171 records: 171 allowed, 0 would be denied"),
        "{text}"
    );
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadbaselines"),
            format!("GET {NS}/workloadbaselines/deployment-checkout")
        ]
    );

    // Without the database rule: exactly its 42 aggregated flows, one group,
    // with the entry's first/last seen and why.
    let mut out = Vec::new();
    let t = Target::parse("shop/Deployment/checkout").unwrap();
    let code = cluster::replay(
        client.clone(),
        &t,
        &candidate(Some("out-opaque-198.51.100.7-5432")),
        true,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(code, 1);
    let rep: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(rep["deniedRecords"], 42);
    let denied = rep["denied"].as_array().unwrap();
    assert_eq!(denied.len(), 1, "{rep:#}");
    assert_eq!(denied[0]["peer"]["addr"], "198.51.100.7", "{:#}", denied[0]);
    assert_eq!(denied[0]["port"], 5432);
    assert_eq!(denied[0]["count"], 42);
    assert_eq!(denied[0]["firstSeen"], "2026-11-21T00:00:00Z");
    assert_eq!(denied[0]["lastSeen"], "2026-11-22T08:30:00Z");
    assert_eq!(
        denied[0]["example"]["id"],
        "baseline:out-opaque-198.51.100.7-5432"
    );
    assert_eq!(rep["allowedRecords"], 129);
    // Kind given: no listing, straight to the CR.
    assert_eq!(
        calls(&api),
        [format!("GET {NS}/workloadbaselines/deployment-checkout")]
    );

    // No baseline for that workload: an error (exit 2 in main).
    let t = Target::parse("shop/other").unwrap();
    let err = cluster::replay(client, &t, &candidate(None), false, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("other"), "{err:#}");
}

#[tokio::test]
async fn unused_reads_rule_usage_from_the_policy_status() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(json!({
        "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
        "metadata": {"name": "deployment-checkout", "namespace": "shop"},
        "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 3,
                 "approvedBy": "alice", "approvedAt": "2026-10-01T00:00:00Z",
                 "policy": {"mode": "protect", "rules": entries()}},
        "status": {"observedVersion": 3, "ruleCount": 3, "inSync": "2/2",
                   "ruleUsage": [
                       {"rule": "out-tls-api.payments.example-443", "hits": 5120, "lastHit": "2026-11-23T09:59:00Z"},
                       {"rule": "out-opaque-198.51.100.7-5432", "hits": 0, "lastHit": "2026-10-02T00:00:00Z"},
                       {"rule": "in-http-192.0.2.0-24-8080", "hits": 0}
                   ]}
    }));
    let t = Target::parse("shop/checkout").unwrap();
    // 30 days before 2026-11-23T10:00:00Z.
    let since_ms = (1_795_428_000 - 30 * 86_400) * 1000;
    let mut out = Vec::new();
    let code = cluster::unused(client.clone(), &t, since_ms, "30d", false, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("2 of 3 rules"), "{text}");
    assert!(
        text.contains("unused: out-opaque-198.51.100.7-5432 (last hit 2026-10-02T00:00:00Z)"),
        "{text}"
    );
    assert!(
        text.contains("unused: in-http-192.0.2.0-24-8080 (no hit recorded)"),
        "{text}"
    );
    assert!(!text.contains("unused: out-tls"), "{text}");

    // A longer window covers the database's last hit.
    let since_ms = (1_795_428_000 - 60 * 86_400) * 1000;
    let mut out = Vec::new();
    let code = cluster::unused(client, &t, since_ms, "60d", true, &mut out)
        .await
        .unwrap();
    assert_eq!(code, 1);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["unused"], json!(["in-http-192.0.2.0-24-8080"]));
    assert_eq!(v["used"]["out-tls-api.payments.example-443"]["hits"], 5120);
    assert_eq!(v["version"], 3);
}
