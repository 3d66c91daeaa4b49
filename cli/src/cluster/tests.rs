//! Cluster mode against a mocked API server: the exact API calls each verb
//! makes, what it writes into the CRs, and what it prints.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::baseline::{self, Approval};
use super::export::{export, ExportFormat};
use super::fake::{mock_client, FakeApi, GROUP};
use super::history;
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

/// The calls made since the last look (the log is cleared).
fn calls(api: &Mutex<FakeApi>) -> Vec<String> {
    std::mem::take(&mut api.lock().unwrap().log)
}

fn checkout_policy(api: &Mutex<FakeApi>) -> Value {
    api.lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout")
}

fn target(s: &str) -> Target {
    Target::parse(s).unwrap()
}

/// Runs a cluster verb into a buffer: its exit code and what it printed.
macro_rules! run {
    ($($verb:ident)::+ ($($arg:expr),* $(,)?)) => {{
        let mut out = Vec::new();
        let code = $($verb)::+($($arg,)* &mut out).await.unwrap();
        (code, String::from_utf8(out).unwrap())
    }};
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
    let (code, out) = run!(baseline::diff(client.clone(), &t, false));
    assert_eq!(code, 1, "something to review");
    // A baseline without DNS names (as learned before names were recorded).
    assert_eq!(
        out,
        format!("baseline diff shop/checkout: learned baseline vs no approved policy\n\
         + out-db\n    to db.shop.example port 5432 tls\n\
         \x20   evidence: 10 flows, 2026-11-20T10:00:00Z .. 2026-11-23T10:00:00Z, replicas checkout-1\n\
         \x20   example: checkout-1 -> db.shop.example:5432\n\
         \x20   ! risk: no process attribution\n\
         + out-payments\n    to api.payments.example port 443 tls\n\
         \x20   evidence: 10 flows, 2026-11-20T10:00:00Z .. 2026-11-23T10:00:00Z, replicas checkout-1\n\
         \x20   example: checkout-1 -> api.payments.example:443\n\
         \x20   ! risk: no process attribution\n\
         ! warning: {}\n\
         2 proposed, 0 dropped, 0 unchanged, 0 rejected before (hidden)\n",
        podwarden_learner::diff::NO_NAMES_WARNING
        )
    );
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadbaselines"),
            format!("GET {NS}/workloadbaselines/deployment-checkout"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
        ]
    );

    // reject: a merge patch of spec.rejected only, guarded by resourceVersion.
    let (_, out) = run!(baseline::reject(
        client.clone(),
        &t,
        &["out-db".into()],
        "bob",
        Some("legacy")
    ));
    assert_eq!(
        out,
        "rejected out-db (not proposed again) in WorkloadBaseline shop/deployment-checkout\n"
    );
    assert_eq!(
        calls(&api),
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
    let (_, out) = run!(baseline::approve(
        client.clone(),
        &t,
        Approval::All,
        "alice",
        None
    ));
    // The diff's warning (no DNS names learned) is said here too, as the
    // local verb says it.
    assert_eq!(
        out,
        format!("! warning: {}\n\
         approved by alice: shop/checkout (Deployment) version 1 (1 rules, 0 processes, mode learn): approved 1 baseline entries\n\
         WorkloadPolicy shop/deployment-checkout written; the operator pushes it to the workload's sidecars\n",
         podwarden_learner::diff::NO_NAMES_WARNING)
    );
    let log = calls(&api);
    assert_eq!(log.last().unwrap(), &format!("POST {NS}/workloadpolicies"));
    let p = checkout_policy(&api);
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
    let (_, out) = run!(baseline::approve(
        client.clone(),
        &t,
        Approval::ModeOnly,
        "carol",
        Some(Mode::Monitor)
    ));
    assert!(out.starts_with("approved by carol: shop/checkout (Deployment) version 2 (1 rules, 0 processes, mode monitor): mode learn -> monitor\n"));
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
    let (_, out) = run!(baseline::diff(
        client,
        &target("shop/statefulset/checkout"),
        true
    ));
    let d: Value = serde_json::from_str(&out).unwrap();
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

    let (_, out) = run!(set_mode(
        client.clone(),
        &t,
        Feature::Waf,
        Mode::Protect,
        "carol"
    ));
    assert_eq!(
        out,
        "shop/checkout: waf mode learn -> protect (WorkloadPolicy shop/deployment-checkout version 2, by carol); the operator pushes it to the sidecars without restarts\n"
    );
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
            format!("PUT {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    let p = checkout_policy(&api);
    assert_eq!(p["spec"]["version"], 2);
    assert_eq!(p["spec"]["approvedBy"], "carol");
    assert_eq!(p["spec"]["policy"]["features"]["waf"], "protect");
    assert_eq!(p["spec"]["policy"]["mode"], "learn");
    assert_eq!(p["spec"]["history"][0]["version"], 1);
    assert_eq!(p["spec"]["history"][0]["approvedBy"], "alice");

    // Same again: no new version, nothing written.
    let (_, out) = run!(set_mode(
        client.clone(),
        &t,
        Feature::Waf,
        Mode::Protect,
        "carol"
    ));
    assert_eq!(
        out,
        "shop/checkout: waf mode already protect at version 2; nothing changed\n"
    );
    assert_eq!(
        calls(&api),
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
    let (_, out) = run!(export(
        client.clone(),
        &target("shop/checkout"),
        ExportFormat::Yaml
    ));
    let doc: PolicyDocument = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(doc.metadata.workload, "shop/checkout");
    assert_eq!(doc.metadata.version, 3);
    assert_eq!(doc.metadata.approved_by.as_deref(), Some("dan"));
    assert_eq!(doc.spec.mode, Mode::Protect);
    assert_eq!(doc.spec.features.waf, Some(Mode::Protect));
    podwarden_policy::CompiledPolicy::compile(&doc).unwrap();
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadpolicies"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    // …and for other enforcers.
    let (_, out) = run!(export(client.clone(), &t, ExportFormat::Networkpolicy));
    let np = out;
    assert!(
        np.contains("kind: NetworkPolicy") && np.contains("namespace: shop"),
        "{np}"
    );
    let (_, out) = run!(export(client.clone(), &t, ExportFormat::Cilium));
    let cnp = out;
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

    let (code, out) = run!(status(client.clone(), None, None, false));
    assert_eq!(code, 1, "a pod is behind: degraded");
    assert_eq!(
        out,
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
    let (_, out) = run!(status(
        client.clone(),
        None,
        Some(&target("shop/checkout")),
        true
    ));
    let rows: Value = serde_json::from_str(&out).unwrap();
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
    let mut p = checkout_policy(&api);
    p["status"]["pods"] = json!([{"pod": "checkout-7d9f-a", "version": 3, "mode": "protect", "violationsLastHour": 0}]);
    p["status"]["inSync"] = json!("1/1");
    api.lock().unwrap().insert(p);
    let (code, out) = run!(status(client, Some("shop"), None, false));
    assert_eq!(code, 0);
    assert!(out.contains("ok, approved by alice"));
}

/// A policy at version 3 (protect) whose history keeps v2 in full
/// (monitor, one more rule) and v1 as a summary only.
fn policy_with_history() -> Value {
    let mut p = policy_cr(3, "protect", json!({}));
    p["spec"]["change"] = json!("mode monitor -> protect");
    p["spec"]["approvedBy"] = json!("carol");
    p["spec"]["history"] = json!([
        {"version": 2, "approvedBy": "bob", "approvedAt": "2026-11-22T09:30:00Z", "mode": "monitor",
         "ruleCount": 2, "change": "approved 1 baseline entries",
         "policy": {"mode": "monitor", "rules": [rule("out-payments", "api.payments.example", 443),
                                                  rule("out-db", "db.shop.example", 5432)]}},
        {"version": 1, "approvedBy": "alice", "approvedAt": "2026-11-21T08:00:00Z", "mode": "learn",
         "ruleCount": 1, "change": "approved 1 baseline entries"}
    ]);
    p
}

#[tokio::test]
async fn history_lists_who_approved_each_version_and_rollback_is_a_new_version() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(policy_with_history());
    let t = target("shop/checkout");

    let (_, out) = run!(history::history(client.clone(), &t, false));
    assert_eq!(
        out,
        "version   approved at            by                rules  mode     change\n\
         v1        2026-11-21T08:00:00Z   alice                 1  learn    approved 1 baseline entries  (summary only: cannot roll back)\n\
         v2        2026-11-22T09:30:00Z   bob                   2  monitor  approved 1 baseline entries\n\
         v3        2026-11-23T12:00:00Z   carol                 1  protect  mode monitor -> protect  (current)\n"
    );
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadpolicies"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    let (_, out) = run!(history::history(client.clone(), &t, true));
    let h: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 3);
    assert_eq!(
        (&h[1]["version"], &h[1]["approvedBy"], &h[1]["restorable"]),
        (&json!(2), &json!("bob"), &json!(true))
    );
    assert_eq!(h[2]["current"], true);
    api.lock().unwrap().log.clear();

    // Roll back to v2: a PUT of version 4 carrying v2's policy; nothing
    // before it is rewritten.
    let (_, out) = run!(history::rollback(client.clone(), &t, 2, "dan"));
    assert_eq!(
        out,
        "shop/checkout: rolled back to v2 as version 4 (by dan, mode monitor, 2 rules); the operator pushes it to the sidecars without restarts\n"
    );
    assert_eq!(
        calls(&api),
        [
            format!("GET {NS}/workloadpolicies"),
            format!("GET {NS}/workloadpolicies/deployment-checkout"),
            format!("PUT {NS}/workloadpolicies/deployment-checkout"),
        ]
    );
    let p = checkout_policy(&api);
    assert_eq!(p["spec"]["version"], 4);
    assert_eq!(p["spec"]["approvedBy"], "dan");
    assert_eq!(
        p["spec"]["change"],
        "rollback to v2 (mode protect -> monitor)"
    );
    // v2's policy exactly (compared as the model: the write adds defaults).
    let spec = |v: &Value| {
        serde_json::from_value::<podwarden_policy::model::PolicySpec>(v.clone()).unwrap()
    };
    assert_eq!(
        spec(&p["spec"]["policy"]),
        spec(&policy_with_history()["spec"]["history"][0]["policy"])
    );
    let kept: Vec<_> = p["spec"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].clone(), v["approvedBy"].clone()))
        .collect();
    assert_eq!(
        kept,
        [
            (json!(3), json!("carol")),
            (json!(2), json!("bob")),
            (json!(1), json!("alice"))
        ]
    );
    // What the controller pushes: the exported document is version 4 in monitor.
    let (_, out) = run!(export(client.clone(), &t, ExportFormat::Yaml));
    let doc: PolicyDocument = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!((doc.metadata.version, doc.spec.mode), (4, Mode::Monitor));
    assert_eq!(doc.spec.rules.len(), 2);
    api.lock().unwrap().log.clear();

    // Refused, and nothing written: the current version, a version only
    // summarised, one never kept, the same rollback again.
    for (to, why) in [
        (4, "version 4 is the current version"),
        (1, "version 1 is older than the versions kept in full"),
        (9, "no version 9 in the policy's history (kept: v1, v2, v3)"),
        (2, "version 4 already has version 2's policy"),
    ] {
        let e = history::rollback(client.clone(), &t, to, "dan", &mut Vec::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains(why), "{to}: {e}");
    }
    assert!(api
        .lock()
        .unwrap()
        .log
        .iter()
        .all(|l| l.starts_with("GET ")));

    // No policy for the workload: a clear error.
    let e = history::history(client, &target("shop/cart"), false, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no WorkloadPolicy for workload shop/cart"),
        "{e}"
    );
}
