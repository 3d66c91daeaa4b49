//! Rule usage into the policy status: the controller pulls `GET
//! /rules/usage` from every sidecar of the workload while distributing, sums
//! hits over the pods, takes the latest last hit (kept across pod restarts)
//! and writes `status.ruleUsage` on the WorkloadPolicy CR of a mocked API
//! server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use podwarden_operator::controller::{Controller, InjectedPod, SidecarClient};
use podwarden_operator::crd::{WorkloadKind, WorkloadRef};
use serde_json::{json, Value};

#[path = "support/fake_api.rs"]
mod fake_api;
use fake_api::mock_client;

const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";
/// The fake sidecars answer at once; the timeout only bounds a hung test. A
/// short one would turn a loaded CI machine's stall into a sidecar error.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(60);

/// A sidecar already running version 4 in protect, answering `/status`
/// and `/rules/usage` (None = an older sidecar: 404).
async fn sidecar(usage: Arc<Mutex<Option<Value>>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let usage = usage.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let usage = usage.lock().unwrap().clone();
                    async move {
                        let ok = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            == Some(&format!("Bearer {TOKEN}"));
                        let (code, body) = match (ok, req.uri().path(), usage) {
                            (false, _, _) => (StatusCode::UNAUTHORIZED, json!("bad token")),
                            (true, "/status", _) => (
                                StatusCode::OK,
                                json!({"policyVersion": 4, "mode": "protect", "violationsLastHour": 0}),
                            ),
                            (true, "/rules/usage", Some(u)) => (StatusCode::OK, u),
                            _ => (StatusCode::NOT_FOUND, json!("not found")),
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from(body.to_string())))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

fn workload() -> WorkloadRef {
    WorkloadRef {
        namespace: "shop".into(),
        kind: WorkloadKind::Deployment,
        name: "checkout".into(),
    }
}

fn rule(id: &str, port: u16) -> Value {
    json!({"id": id, "direction": "outbound", "peer": {"cidr": "198.51.100.7/32"}, "ports": [port.to_string()]})
}

// 2026-11-23T10:00:00Z
const T0: i64 = 1_795_428_000;

#[tokio::test]
async fn distribution_writes_rule_usage_summed_over_the_pods() {
    let (client, api) = mock_client();
    api.lock().unwrap().insert(json!({
        "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
        "metadata": {"name": "deployment-checkout", "namespace": "shop"},
        "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 4,
                 "approvedBy": "alice", "approvedAt": "2026-11-01T00:00:00Z",
                 "policy": {"mode": "protect", "rules": [rule("db", 5432), rule("cache", 6379), rule("idle", 9000)]}},
        // What an earlier pass wrote, before the pods restarted.
        "status": {"observedVersion": 4, "ruleUsage": [
            {"rule": "cache", "hits": 80, "lastHit": "2026-11-20T08:00:00Z"},
            {"rule": "removed", "hits": 3, "lastHit": "2026-11-19T00:00:00Z"}]}
    }));
    let a = Arc::new(Mutex::new(Some(json!({"policyVersion": 4, "rules": [
        {"rule": "db", "hits": 10, "lastHit": T0},
        {"rule": "cache", "hits": 0},
        {"rule": "idle", "hits": 0}]}))));
    let b = Arc::new(Mutex::new(Some(json!({"policyVersion": 4, "rules": [
        {"rule": "db", "hits": 5, "lastHit": T0 + 60},
        {"rule": "cache", "hits": 0},
        {"rule": "idle", "hits": 0}]}))));
    // An older sidecar without the endpoint: counted out, not an error.
    let c = Arc::new(Mutex::new(None));
    let mut pods = Vec::new();
    for (i, s) in [&a, &b, &c].into_iter().enumerate() {
        pods.push(InjectedPod {
            name: format!("checkout-{i}"),
            workload: workload(),
            admin: sidecar(s.clone()).await,
        });
    }
    let controller = Controller::new(client, SidecarClient::new(TOKEN, SIDECAR_TIMEOUT), 15000);
    let st = controller
        .distribute(&workload(), &pods)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.in_sync, "3/3");
    let stored = api
        .lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout");
    assert_eq!(
        stored["status"]["ruleUsage"],
        json!([
            {"rule": "db", "hits": 15, "lastHit": "2026-11-23T10:01:00Z"},
            {"rule": "cache", "hits": 0, "lastHit": "2026-11-20T08:00:00Z"},
            {"rule": "idle", "hits": 0}
        ]),
        "{:#}",
        stored["status"]
    );
    // The rest of the status is still written.
    assert_eq!(stored["status"]["inSync"], "3/3");
    assert_eq!(st.rule_usage.len(), 3);

    // Next pass: db keeps counting, the previous last hits stay.
    *a.lock().unwrap() = Some(
        json!({"policyVersion": 4, "rules": [{"rule": "db", "hits": 11, "lastHit": T0 + 120}]}),
    );
    controller.distribute(&workload(), &pods).await.unwrap();
    let stored = api
        .lock()
        .unwrap()
        .get("shop", "workloadpolicies", "deployment-checkout");
    let usage = &stored["status"]["ruleUsage"];
    assert_eq!(
        usage[0],
        json!({"rule": "db", "hits": 16, "lastHit": "2026-11-23T10:02:00Z"})
    );
    assert_eq!(usage[1]["lastHit"], "2026-11-20T08:00:00Z");
}
