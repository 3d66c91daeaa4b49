//! Controller tests against a mocked API server (kube's tower-test pattern)
//! and fake sidecars serving the admin API contract on loopback.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use podwarden_operator::controller::approve::ApproveError;
use podwarden_operator::controller::{Controller, ControllerError, InjectedPod, SidecarClient};
use podwarden_operator::crd::{WorkloadKind, WorkloadPolicy, WorkloadRef};
use podwarden_policy::model::PolicyDocument;
use podwarden_policy::Mode;
use serde_json::{json, Value};

const TOKEN: &str = "0123456789abcdef0123456789abcdef-test-token";
/// The fake sidecars answer at once; the timeout only bounds a hung test. A
/// short one would turn a loaded CI machine's stall into a sidecar error.
const SIDECAR_TIMEOUT: Duration = Duration::from_secs(60);

#[path = "support/fake_api.rs"]
mod fake_api;
use fake_api::{mock_client, FakeApi};

// ---------- fake sidecars ----------

#[derive(Default)]
struct SidecarState {
    baseline: Option<Value>,
    policies: Vec<PolicyDocument>,
    version: u64,
    mode: Option<Mode>,
    violations: u64,
    unauthorized: u64,
    /// Answer PUT /policy with 400 and this reason (the policy does not compile here).
    reject_put: Option<String>,
}

async fn fake_sidecar(state: Arc<Mutex<SidecarState>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = state.clone();
                    async move {
                        let authorized = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            == Some(&format!("Bearer {TOKEN}"));
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await.unwrap().to_bytes();
                        let mut s = state.lock().unwrap();
                        let reply = |code: StatusCode, v: Value| {
                            Response::builder()
                                .status(code)
                                .body(Full::new(Bytes::from(v.to_string())))
                                .unwrap()
                        };
                        if !authorized {
                            s.unauthorized += 1;
                            return Ok::<_, std::convert::Infallible>(reply(
                                StatusCode::UNAUTHORIZED,
                                json!("bad token"),
                            ));
                        }
                        let status = |s: &SidecarState| json!({"policyVersion": s.version, "mode": s.mode.unwrap_or(Mode::Learn), "violationsLastHour": s.violations});
                        Ok(match (parts.method.as_str(), parts.uri.path()) {
                            ("GET", "/baseline") => match &s.baseline {
                                Some(b) => reply(StatusCode::OK, b.clone()),
                                None => {
                                    reply(StatusCode::SERVICE_UNAVAILABLE, json!("nothing learned"))
                                }
                            },
                            ("GET", "/status") => reply(StatusCode::OK, status(&s)),
                            ("PUT", "/policy") if s.reject_put.is_some() => reply(
                                StatusCode::BAD_REQUEST,
                                json!(s.reject_put.clone().unwrap_or_default()),
                            ),
                            ("PUT", "/policy") => {
                                let doc: PolicyDocument = serde_json::from_slice(&bytes).unwrap();
                                s.version = doc.metadata.version;
                                s.mode = Some(doc.spec.mode);
                                s.policies.push(doc);
                                reply(StatusCode::OK, status(&s))
                            }
                            _ => reply(StatusCode::NOT_FOUND, json!("no")),
                        })
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

fn baseline_doc(rules: &[(&str, &str, u16, &str)]) -> Value {
    let rules: Vec<Value> = rules
        .iter()
        .map(|(id, fqdn, port, pod)| {
            json!({
                "id": id, "direction": "outbound", "peer": {"fqdn": fqdn}, "ports": [port.to_string()],
                "protocols": ["tls"],
                "evidence": {"count": 10, "firstSeen": "2026-11-20T10:00:00Z", "lastSeen": "2026-11-23T10:00:00Z",
                             "example": format!("{pod} -> {fqdn}:{port}"), "replicas": [pod]}
            })
        })
        .collect();
    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "Baseline",
           "metadata": {"workload": "shop/checkout"}, "spec": {"mode": "learn", "rules": rules}})
}

fn workload() -> WorkloadRef {
    WorkloadRef {
        namespace: "shop".into(),
        kind: WorkloadKind::Deployment,
        name: "checkout".into(),
    }
}

const BASE: &str = "/apis/podwarden.io/v1alpha1/namespaces/shop";

struct Setup {
    controller: Controller,
    api: Arc<Mutex<FakeApi>>,
    sidecars: Vec<Arc<Mutex<SidecarState>>>,
    pods: Vec<InjectedPod>,
}

async fn setup() -> Setup {
    let (client, api) = mock_client();
    let a = Arc::new(Mutex::new(SidecarState {
        baseline: Some(baseline_doc(&[(
            "out-payments",
            "api.payments.example",
            443,
            "checkout-1",
        )])),
        ..Default::default()
    }));
    let b = Arc::new(Mutex::new(SidecarState {
        baseline: Some(baseline_doc(&[
            ("out-payments", "api.payments.example", 443, "checkout-2"),
            ("out-db", "db.shop.example", 5432, "checkout-2"),
        ])),
        ..Default::default()
    }));
    let mut pods = Vec::new();
    for (i, s) in [&a, &b].into_iter().enumerate() {
        let addr = fake_sidecar(s.clone()).await;
        pods.push(InjectedPod {
            name: format!("checkout-{}", i + 1),
            workload: workload(),
            admin: addr,
        });
    }
    let controller = Controller::new(client, SidecarClient::new(TOKEN, SIDECAR_TIMEOUT), 15000);
    Setup {
        controller,
        api,
        sidecars: vec![a, b],
        pods,
    }
}

/// Both replicas' baselines into the CR, then alice approves all of it:
/// version 1 of the policy (the start of most tests).
async fn approve_learned(s: &Setup) -> WorkloadPolicy {
    s.controller
        .sync_baseline(&workload(), &s.pods, "2026-11-23T12:00:00Z")
        .await
        .unwrap();
    s.controller
        .approve(
            "shop",
            "deployment-checkout",
            None,
            "alice@example.com",
            "2026-11-23T12:05:00Z",
        )
        .await
        .unwrap()
}

async fn carol_sets_mode(s: &Setup, mode: Mode) -> WorkloadPolicy {
    s.controller
        .set_mode(
            "shop",
            "deployment-checkout",
            mode,
            "carol@example.com",
            "2026-11-23T14:00:00Z",
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn learn_updates_the_baseline_cr_from_every_replica() {
    let s = setup().await;
    let cr = s
        .controller
        .sync_baseline(&workload(), &s.pods, "2026-11-23T12:00:00Z")
        .await
        .unwrap()
        .unwrap();
    let status = cr.status.clone().unwrap();
    assert_eq!(status.rule_count, 2);
    assert_eq!(status.replica_count, 2);
    assert_eq!(status.last_updated.as_deref(), Some("2026-11-23T12:00:00Z"));
    let ids: Vec<_> = cr.spec.policy.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["out-db", "out-payments"]);
    let payments = &cr.spec.policy.rules[1];
    let ev = payments.evidence.as_ref().unwrap();
    assert_eq!(ev.count, 20, "evidence of both replicas adds up");
    assert_eq!(ev.replicas, ["checkout-1", "checkout-2"]);

    let stored = s.api.lock().unwrap().objects
        [&format!("{BASE}/workloadbaselines/deployment-checkout")]
        .clone();
    assert_eq!(stored["kind"], "WorkloadBaseline");
    assert_eq!(
        stored["spec"]["workload"],
        json!({"kind": "Deployment", "name": "checkout"})
    );
    assert_eq!(stored["status"]["ruleCount"], 2);
    let log = s.api.lock().unwrap().log.clone();
    assert_eq!(
        log,
        [
            format!("PATCH {BASE}/workloadbaselines/deployment-checkout"),
            format!("PATCH {BASE}/workloadbaselines/deployment-checkout/status")
        ]
    );

    // A replica that fails is reported, the others still count.
    s.sidecars[1].lock().unwrap().baseline = None;
    let cr = s
        .controller
        .sync_baseline(&workload(), &s.pods, "2026-11-23T12:01:00Z")
        .await
        .unwrap()
        .unwrap();
    let st = cr.status.unwrap();
    assert_eq!(st.replica_count, 1);
    assert!(
        st.replicas[1].error.as_deref().unwrap().contains("503"),
        "{:?}",
        st.replicas
    );
}

#[tokio::test]
async fn approve_versions_the_policy_cr_and_keeps_history() {
    let s = setup().await;
    let v1 = approve_learned(&s).await;
    assert_eq!(v1.spec.version, 1);
    assert_eq!(v1.spec.approved_by, "alice@example.com");
    assert_eq!(v1.spec.policy.rules.len(), 2);
    assert_eq!(v1.spec.policy.mode, Mode::Learn);
    assert!(v1.spec.history.is_empty());

    // Nothing new in the baseline: approval is refused, not a no-op version.
    let e = s
        .controller
        .approve(
            "shop",
            "deployment-checkout",
            None,
            "alice@example.com",
            "2026-11-23T12:06:00Z",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, ControllerError::Approve(ApproveError::NothingNew(1))),
        "{e}"
    );

    // The workload learns a new flow; approving it makes version 2.
    s.sidecars[0].lock().unwrap().baseline = Some(baseline_doc(&[
        ("out-payments", "api.payments.example", 443, "checkout-1"),
        ("out-cache", "cache.shop.example", 6379, "checkout-1"),
    ]));
    s.controller
        .sync_baseline(&workload(), &s.pods, "2026-11-23T13:00:00Z")
        .await
        .unwrap();
    let v2 = s
        .controller
        .approve(
            "shop",
            "deployment-checkout",
            None,
            "bob@example.com",
            "2026-11-23T13:05:00Z",
        )
        .await
        .unwrap();
    assert_eq!(v2.spec.version, 2);
    assert_eq!(v2.spec.policy.rules.len(), 3);
    assert_eq!(v2.spec.history.len(), 1);
    assert_eq!(v2.spec.history[0].version, 1);
    assert_eq!(v2.spec.history[0].approved_by, "alice@example.com");
    assert_eq!(v2.spec.history[0].policy.as_ref().unwrap().rules.len(), 2);

    let v3 = carol_sets_mode(&s, Mode::Protect).await;
    assert_eq!((v3.spec.version, v3.spec.policy.mode), (3, Mode::Protect));
    assert_eq!(v3.spec.change, "mode learn -> protect");

    let log = s.api.lock().unwrap().log.clone();
    assert!(log.contains(&format!("POST {BASE}/workloadpolicies")));
    assert_eq!(
        log.iter()
            .filter(|l| *l == &format!("PUT {BASE}/workloadpolicies/deployment-checkout"))
            .count(),
        2
    );
}

#[tokio::test]
async fn sidecars_receive_the_approved_policy_and_status_reports_it() {
    let s = setup().await;
    // Nothing approved yet: nothing distributed.
    assert!(s
        .controller
        .distribute(&workload(), &s.pods)
        .await
        .unwrap()
        .is_none());
    approve_learned(&s).await;

    let st = s
        .controller
        .distribute(&workload(), &s.pods)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.in_sync, "2/2");
    assert_eq!(st.observed_version, 1);
    for sc in &s.sidecars {
        let sc = sc.lock().unwrap();
        assert_eq!(sc.policies.len(), 1);
        let doc = &sc.policies[0];
        assert_eq!(doc.metadata.version, 1);
        assert_eq!(doc.metadata.workload, "shop/checkout");
        assert_eq!(
            doc.metadata.approved_by.as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(doc.spec.rules.len(), 2);
    }
    // Already in sync: no second PUT.
    s.controller.distribute(&workload(), &s.pods).await.unwrap();
    assert_eq!(s.sidecars[0].lock().unwrap().policies.len(), 1);

    // Mode change flows to the running sidecars without a restart.
    carol_sets_mode(&s, Mode::Monitor).await;
    s.sidecars[1].lock().unwrap().violations = 7;
    let st = s
        .controller
        .distribute(&workload(), &s.pods)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.in_sync, "2/2");
    assert_eq!(st.violations_last_hour, 7);
    for sc in &s.sidecars {
        assert_eq!(sc.lock().unwrap().mode, Some(Mode::Monitor));
        assert_eq!(sc.lock().unwrap().version, 2);
    }
    let stored = s.api.lock().unwrap().objects
        [&format!("{BASE}/workloadpolicies/deployment-checkout")]
        .clone();
    assert_eq!(stored["status"]["inSync"], "2/2");
    assert_eq!(stored["status"]["pods"][1]["violationsLastHour"], 7);
    assert_eq!(stored["status"]["pods"][0]["mode"], "monitor");
}

#[tokio::test]
async fn a_sidecar_rejecting_our_token_is_reported_not_skipped() {
    let s = setup().await;
    approve_learned(&s).await;
    let (client, _api) = (s.controller, ());
    drop(client);
    // A controller with the wrong token: sidecars refuse it.
    let (kc, api) = mock_client();
    {
        let src = s.api.lock().unwrap();
        api.lock().unwrap().objects = src.objects.clone();
    }
    let wrong = Controller::new(
        kc,
        SidecarClient::new("not-the-token-not-the-token-xxxxx", SIDECAR_TIMEOUT),
        15000,
    );
    let st = wrong
        .distribute(&workload(), &s.pods)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.in_sync, "0/2");
    assert!(
        st.pods
            .iter()
            .all(|p| p.error.as_deref().is_some_and(|e| e.contains("401"))),
        "{:?}",
        st.pods
    );
    assert!(s
        .sidecars
        .iter()
        .all(|sc| sc.lock().unwrap().policies.is_empty()));
    assert_eq!(s.sidecars[0].lock().unwrap().unauthorized, 1);
}

#[tokio::test]
async fn a_pod_refusing_a_version_reports_the_one_it_kept() {
    let s = setup().await;
    approve_learned(&s).await;
    s.controller.distribute(&workload(), &s.pods).await.unwrap();
    carol_sets_mode(&s, Mode::Protect).await;
    s.sidecars[0].lock().unwrap().reject_put = Some("spec.rules[1].id: duplicate".into());
    let st = s
        .controller
        .distribute(&workload(), &s.pods)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.in_sync, "1/2");
    let refused = &st.pods[0];
    assert_eq!((refused.version, refused.mode), (1, Some(Mode::Learn)));
    let err = refused.error.as_deref().unwrap();
    assert!(
        err.contains("HTTP 400") && err.contains("duplicate"),
        "{err}"
    );
    assert_eq!(
        (st.pods[1].version, st.pods[1].mode),
        (2, Some(Mode::Protect))
    );
    assert!(st.pods[1].error.is_none());
}
