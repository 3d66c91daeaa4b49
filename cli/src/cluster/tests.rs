//! Cluster mode against a mocked API server: the exact API calls each verb
//! makes, what it writes into the CRs, and what it prints.

use serde_json::{json, Value};

use super::baseline::{self, Approval};
use super::export::{export, ExportFormat};
use super::fake::{mock_client, GROUP};
use super::status::{set_mode, status};
use super::Target;
use podwarden_policy::model::Feature;
use podwarden_policy::{Mode, PolicyDocument};

const NS: &str = "/apis/podwarden.io/v1alpha1/namespaces/shop";

fn rule(id: &str, fqdn: &str, port: u16) -> Value {
    json!({"id": id, "direction": "outbound", "peer": {"fqdn": fqdn}, "ports": [port.to_string()],
           "protocols": ["tls"],
           "evidence": {"count": 10, "firstSeen": "2026-11-20T10:00:00Z", "lastSeen": "2026-11-23T10:00:00Z",
                        "example": format!("checkout-1 -> {fqdn}:{port}"), "replicas": ["checkout-1"]}})
}

fn baseline_cr(kind: &str, name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadBaseline",
           "metadata": {"name": format!("{}-{name}", kind.to_lowercase()), "namespace": "shop"},
           "spec": {"workload": {"kind": kind, "name": name}, "policy": {"mode": "learn", "rules": rules}},
           "status": {"ruleCount": 2, "replicaCount": 2}})
}

fn policy_cr(version: u64, mode: &str, status: Value) -> Value {
    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
           "metadata": {"name": "deployment-checkout", "namespace": "shop"},
           "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": version,
                    "approvedBy": "alice", "approvedAt": "2026-11-23T12:00:00Z", "change": "approved 1 baseline entries",
                    "policy": {"mode": mode, "rules": [rule("out-payments", "api.payments.example", 443)]}},
           "status": status})
}

fn target(s: &str) -> Target {
    Target::parse(s).unwrap()
}

fn text(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn baseline_diff_reject_and_approve_work_on_the_crs() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(baseline_cr(
        "Deployment",
        "checkout",
        vec![
            rule("out-db", "db.shop.example", 5432),
            rule("out-payments", "api.payments.example", 443),
        ],
    ));
    let t = target("shop/checkout");

    // diff: found by listing the namespace's baselines; nothing approved yet.
    let mut out = Vec::new();
    let code = baseline::diff(client.clone(), &t, false, &mut out)
        .await
        .unwrap();
    assert_eq!(code, 1, "something to review");
    assert_eq!(
        text(out),
        "baseline diff shop/checkout: learned baseline vs no approved policy\n\
         + out-db\n    to db.shop.example port 5432 tls\n\
         \x20   evidence: 10 flows, 2026-11-20T10:00:00Z .. 2026-11-23T10:00:00Z, replicas checkout-1\n\
         \x20   example: checkout-1 -> db.shop.example:5432\n\
         \x20   ! risk: no process attribution\n\
         + out-payments\n    to api.payments.example port 443 tls\n\
         \x20   evidence: 10 flows, 2026-11-20T10:00:00Z .. 2026-11-23T10:00:00Z, replicas checkout-1\n\
         \x20   example: checkout-1 -> api.payments.example:443\n\
         \x20   ! risk: no process attribution\n\
         2 proposed, 0 dropped, 0 unchanged, 0 rejected before (hidden)\n"
    );
    assert_eq!(
        std::mem::take(&mut api.lock().unwrap().log),
        [
            format!("GET {NS}/workloadbaselines"),
            format!("GET {NS}/workloadbaselines/deployment-checkout"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
        ]
    );

    // reject: a merge patch of spec.rejected only, guarded by resourceVersion.
    let mut out = Vec::new();
    baseline::reject(
        client.clone(),
        &t,
        &["out-db".into()],
        "bob",
        Some("legacy"),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        text(out),
        "rejected out-db (not proposed again) in WorkloadBaseline shop/deployment-checkout\n"
    );
    assert_eq!(
        std::mem::take(&mut api.lock().unwrap().log),
        [
            format!("GET {NS}/workloadbaselines"),
            format!("GET {NS}/workloadbaselines/deployment-checkout"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
            format!("PATCH {NS}/workloadbaselines/deployment-checkout"),
        ]
    );
    let b = api
        .lock()
        .unwrap()
        .get("shop", "workloadbaselines", "deployment-checkout");
    let rej = &b["spec"]["rejected"];
    assert_eq!(rej.as_array().unwrap().len(), 1);
    assert_eq!(
        (&rej[0]["id"], &rej[0]["rejectedBy"], &rej[0]["reason"]),
        (&json!("out-db"), &json!("bob"), &json!("legacy"))
    );
    assert_eq!(
        b["spec"]["policy"]["rules"].as_array().unwrap().len(),
        2,
        "the proposal itself is untouched"
    );

    // A rejected id cannot be rejected again (it is not a proposal any more).
    let e = baseline::reject(
        client.clone(),
        &t,
        &["out-db".into()],
        "bob",
        None,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("out-db is not a proposal"), "{e}");

    // approve --all: version 1 of the policy, without the rejected entry.
    let mut out = Vec::new();
    baseline::approve(client.clone(), &t, Approval::All, "alice", None, &mut out)
        .await
        .unwrap();
    assert_eq!(
        text(out),
        "approved by alice: shop/checkout (Deployment) version 1 (1 rules, 0 processes, mode learn): approved 1 baseline entries\n\
         WorkloadPolicy shop/deployment-checkout written; the operator pushes it to the workload's sidecars\n"
    );
    let log = std::mem::take(&mut api.lock().unwrap().log);
    assert_eq!(log.last().unwrap(), &format!("POST {NS}/workloadpolicies"));
    let p = api
        .lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout");
    assert_eq!(p["spec"]["version"], 1);
    assert_eq!(p["spec"]["approvedBy"], "alice");
    assert_eq!(p["spec"]["policy"]["rules"][0]["id"], "out-payments");
    assert_eq!(p["spec"]["policy"]["rules"].as_array().unwrap().len(), 1);

    // Nothing new: refused, nothing written.
    let e = baseline::approve(
        client.clone(),
        &t,
        Approval::All,
        "alice",
        None,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("nothing to approve"), "{e}");
    assert!(api.lock().unwrap().log.iter().all(|l| !l.starts_with("P")));

    // approve --mode monitor without entries: a mode-only version 2 (PUT).
    api.lock().unwrap().log.clear();
    let mut out = Vec::new();
    baseline::approve(
        client.clone(),
        &t,
        Approval::ModeOnly,
        "carol",
        Some(Mode::Monitor),
        &mut out,
    )
    .await
    .unwrap();
    assert!(text(out).starts_with("approved by carol: shop/checkout (Deployment) version 2 (1 rules, 0 processes, mode monitor): mode learn -> monitor\n"));
    assert_eq!(
        api.lock().unwrap().log.last().unwrap(),
        &format!("PUT {NS}/workloadpolicies/deployment-checkout")
    );
}

#[tokio::test]
async fn a_name_shared_by_two_workloads_must_be_qualified() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(baseline_cr(
        "Deployment",
        "checkout",
        vec![rule("a", "a.example", 443)],
    ));
    api.lock().unwrap().insert(baseline_cr(
        "StatefulSet",
        "checkout",
        vec![rule("b", "b.example", 443)],
    ));
    let e = baseline::diff(
        client.clone(),
        &target("shop/checkout"),
        false,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "shop/checkout names several workloads; say which: shop/Deployment/checkout, shop/StatefulSet/checkout"
    );
    let e = baseline::diff(client.clone(), &target("shop/cart"), false, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no WorkloadBaseline for workload shop/cart (see: kubectl get workloadbaselines -n shop)"
    );
    // Qualified: straight to the object, no listing.
    api.lock().unwrap().log.clear();
    let mut out = Vec::new();
    baseline::diff(client, &target("shop/statefulset/checkout"), true, &mut out)
        .await
        .unwrap();
    let d: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(d["entries"][0]["id"], "b");
    assert_eq!(
        api.lock().unwrap().log,
        [
            format!("GET {NS}/workloadbaselines/statefulset-checkout"),
            format!("GET {NS}/workloadpolicies/statefulset-checkout"),
        ]
    );
}

#[tokio::test]
async fn mode_set_writes_a_version_recording_who_and_export_prints_it() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(policy_cr(1, "learn", json!({})));
    let t = target("shop/Deployment/checkout");

    let mut out = Vec::new();
    set_mode(
        client.clone(),
        &t,
        Feature::Waf,
        Mode::Protect,
        "carol",
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        text(out),
        "shop/checkout: waf mode learn -> protect (WorkloadPolicy shop/deployment-checkout version 2, by carol); the operator pushes it to the sidecars without restarts\n"
    );
    assert_eq!(
        std::mem::take(&mut api.lock().unwrap().log),
        [
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
            format!("PUT {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    let p = api
        .lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout");
    assert_eq!(p["spec"]["version"], 2);
    assert_eq!(p["spec"]["approvedBy"], "carol");
    assert_eq!(p["spec"]["policy"]["features"]["waf"], "protect");
    assert_eq!(p["spec"]["policy"]["mode"], "learn");
    assert_eq!(p["spec"]["history"][0]["version"], 1);
    assert_eq!(p["spec"]["history"][0]["approvedBy"], "alice");

    // Same again: no new version, nothing written.
    let mut out = Vec::new();
    set_mode(
        client.clone(),
        &t,
        Feature::Waf,
        Mode::Protect,
        "carol",
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        text(out),
        "shop/checkout: waf mode already protect at version 2; nothing changed\n"
    );
    assert_eq!(
        std::mem::take(&mut api.lock().unwrap().log),
        [format!("GET {NS}/workloadpolicies/deployment-checkout")]
    );

    set_mode(
        client.clone(),
        &t,
        Feature::Network,
        Mode::Protect,
        "dan",
        &mut Vec::new(),
    )
    .await
    .unwrap();
    api.lock().unwrap().log.clear();

    // export: the approved policy as the proxy's policy file…
    let mut out = Vec::new();
    export(
        client.clone(),
        &target("shop/checkout"),
        ExportFormat::Yaml,
        &mut out,
    )
    .await
    .unwrap();
    let doc: PolicyDocument = serde_yaml_ng::from_slice(&out).unwrap();
    assert_eq!(doc.metadata.workload, "shop/checkout");
    assert_eq!(doc.metadata.version, 3);
    assert_eq!(doc.metadata.approved_by.as_deref(), Some("dan"));
    assert_eq!(doc.spec.mode, Mode::Protect);
    assert_eq!(doc.spec.features.waf, Some(Mode::Protect));
    podwarden_policy::CompiledPolicy::compile(&doc).unwrap();
    assert_eq!(
        std::mem::take(&mut api.lock().unwrap().log),
        [
            format!("GET {NS}/workloadpolicies"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    // …and for other enforcers.
    let mut out = Vec::new();
    export(client.clone(), &t, ExportFormat::Networkpolicy, &mut out)
        .await
        .unwrap();
    let np = text(out);
    assert!(
        np.contains("kind: NetworkPolicy") && np.contains("namespace: shop"),
        "{np}"
    );
    let mut out = Vec::new();
    export(client.clone(), &t, ExportFormat::Cilium, &mut out)
        .await
        .unwrap();
    let cnp = text(out);
    assert!(
        cnp.contains("kind: CiliumNetworkPolicy") && cnp.contains("api.payments.example"),
        "{cnp}"
    );

    // No policy for the workload: a clear error.
    let e = set_mode(
        client,
        &target("shop/cart"),
        Feature::Network,
        Mode::Monitor,
        "x",
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("no WorkloadPolicy for workload shop/cart"),
        "{e}"
    );
}

#[tokio::test]
async fn status_shows_mode_version_per_pod_and_violations() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(policy_cr(
        3,
        "protect",
        json!({"observedVersion": 3, "ruleCount": 1, "inSync": "1/2", "violationsLastHour": 7,
               "pods": [
                   {"pod": "checkout-7d9f-a", "version": 3, "mode": "protect", "violationsLastHour": 7},
                   {"pod": "checkout-7d9f-b", "version": 2, "mode": "monitor", "violationsLastHour": 0},
                   {"pod": "checkout-7d9f-c", "version": 0, "error": "10.0.0.9:15000: HTTP 401: bad token"}]}),
    ));
    let mut cart = baseline_cr("Deployment", "cart", vec![rule("a", "a.example", 443)]);
    cart["status"]["ruleCount"] = json!(12);
    api.lock().unwrap().insert(cart);
    api.lock()
        .unwrap()
        .insert(baseline_cr("Deployment", "checkout", vec![]));

    let mut out = Vec::new();
    let code = status(client.clone(), None, None, false, &mut out)
        .await
        .unwrap();
    assert_eq!(code, 1, "a pod is behind: degraded");
    assert_eq!(
        text(out),
        "NAMESPACE    WORKLOAD                     MODE     WAF      DLP      VERSION IN-SYNC VIOLATIONS-1H  NOTE\n\
         shop         Deployment/cart              -        -        -              -       -             0  not approved: baseline has 12 rules (learning)\n\
         shop         Deployment/checkout          protect  protect  protect       v3     1/2             7  DEGRADED\n\
         \x20 pod checkout-7d9f-a                  v3     protect      7 violations  in sync\n\
         \x20 pod checkout-7d9f-b                  v2     monitor      0 violations  behind (wants v3)\n\
         \x20 pod checkout-7d9f-c                  v0     -            0 violations  error: 10.0.0.9:15000: HTTP 401: bad token\n"
    );
    assert_eq!(
        api.lock().unwrap().log,
        [
            format!("GET {GROUP}/workloadpolicies"),
            format!("GET {GROUP}/workloadbaselines"),
        ]
    );

    // One workload, JSON, namespaced lists.
    api.lock().unwrap().log.clear();
    let mut out = Vec::new();
    status(
        client.clone(),
        None,
        Some(&target("shop/checkout")),
        true,
        &mut out,
    )
    .await
    .unwrap();
    let rows: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["policyVersion"], 3);
    assert_eq!(rows[0]["violationsLastHour"], 7);
    assert_eq!(rows[0]["pods"][1]["policyVersion"], 2);
    assert_eq!(rows[0]["degraded"], true);
    assert_eq!(
        api.lock().unwrap().log,
        [
            format!("GET {NS}/workloadpolicies"),
            format!("GET {NS}/workloadbaselines"),
        ]
    );

    // All pods on the approved version: healthy, exit 0.
    let mut p = api
        .lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout");
    p["status"]["pods"] = json!([{"pod": "checkout-7d9f-a", "version": 3, "mode": "protect", "violationsLastHour": 0}]);
    p["status"]["inSync"] = json!("1/1");
    api.lock().unwrap().insert(p);
    let mut out = Vec::new();
    let code = status(client, Some("shop"), None, false, &mut out)
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(text(out).contains("ok, approved by alice"));
}
