//! Leader election against a mocked API server (kube's tower-test pattern)
//! holding one Lease, on tokio's paused clock: who leads, renewal, takeover
//! only after expiry, release on shutdown, stepping down when renewals fail,
//! and that only the leader's controller loop runs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use podwarden_operator::leader::{while_leading, LeaderElectionConfig, LeaderElector};
use serde_json::{json, Value};
use tokio::sync::{oneshot, watch};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/podwarden/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/podwarden/leases/podwarden-controller";

#[derive(Default)]
struct FakeLeases {
    lease: Option<Value>,
    rv: u64,
    /// `who METHOD path`, in order.
    log: Vec<String>,
    /// The API server answers 500 to everything.
    down: bool,
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason,
               "reason": reason, "code": code.as_u16()}),
    )
}

impl FakeLeases {
    fn handle(
        &mut self,
        who: &str,
        method: &Method,
        path: &str,
        body: &[u8],
    ) -> (StatusCode, Value) {
        self.log.push(format!("{who} {method} {path}"));
        if self.down {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).unwrap()
        };
        match (method.as_str(), path) {
            ("GET", LEASE) => match &self.lease {
                Some(l) => (StatusCode::OK, l.clone()),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            ("POST", LEASES) => {
                if self.lease.is_some() {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                self.rv += 1;
                let mut l = body;
                l["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.lease = Some(l.clone());
                (StatusCode::CREATED, l)
            }
            ("PUT", LEASE) => {
                let Some(cur) = &self.lease else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if cur["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                self.rv += 1;
                let mut l = body;
                l["metadata"]["resourceVersion"] = json!(self.rv.to_string());
                self.lease = Some(l.clone());
                (StatusCode::OK, l)
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }

    fn holder(&self) -> Option<String> {
        self.lease.as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(String::from)
    }

    fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }
}

fn client(who: &'static str, api: Arc<Mutex<FakeLeases>>) -> kube::Client {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let (code, out) =
                api.lock()
                    .unwrap()
                    .handle(who, &parts.method, parts.uri.path(), &bytes);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&out).unwrap()))
                    .unwrap(),
            );
        }
    });
    kube::Client::new(svc, "default")
}

fn elector(who: &'static str, api: &Arc<Mutex<FakeLeases>>) -> LeaderElector {
    LeaderElector::new(
        client(who, api.clone()),
        "podwarden",
        who,
        &LeaderElectionConfig::default(),
    )
}

async fn advance(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn one_leader_renews_and_a_follower_takes_over_only_after_expiry() {
    let api = Arc::new(Mutex::new(FakeLeases::default()));
    let mut a = elector("a", &api);
    let mut b = elector("b", &api);

    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.is_leader() && !b.is_leader());
    assert_eq!(
        api.lock().unwrap().take_log(),
        [
            format!("a GET {LEASE}"),
            format!("a POST {LEASES}"),
            format!("b GET {LEASE}"),
        ]
    );
    let lease = api.lock().unwrap().lease.clone().unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(lease["spec"]["leaseTransitions"], 0);
    assert!(lease["spec"]["renewTime"].is_string());

    // 40 s of renewals every 2 s: far past the 15 s lease, b never takes over.
    for _ in 0..20 {
        advance(2).await;
        assert!(a.try_acquire_or_renew().await.unwrap());
        assert!(!b.try_acquire_or_renew().await.unwrap());
    }
    assert_eq!(api.lock().unwrap().holder().as_deref(), Some("a"));
    let log = api.lock().unwrap().take_log();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("a PUT")).count(),
        20,
        "a renews once per round"
    );
    assert!(log.iter().all(|l| !l.starts_with("b PUT")), "{log:?}");

    // a dies. b counts the lease duration from when it last saw the record change.
    for i in 1..=7 {
        advance(2).await;
        assert!(
            !b.try_acquire_or_renew().await.unwrap(),
            "took over {}s after the last renewal, before the 15 s lease expired",
            2 * i
        );
    }
    advance(2).await;
    assert!(b.try_acquire_or_renew().await.unwrap());
    let lease = api.lock().unwrap().lease.clone().unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert!(!a.is_leader(), "a's renew deadline passed long ago");

    // a comes back: it follows.
    assert!(!a.try_acquire_or_renew().await.unwrap());
    assert!(!a.is_leader() && b.is_leader());
}

#[tokio::test(start_paused = true)]
async fn release_hands_the_lease_over_at_the_next_round() {
    let api = Arc::new(Mutex::new(FakeLeases::default()));
    let mut a = elector("a", &api);
    let mut b = elector("b", &api);
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    api.lock().unwrap().take_log();

    a.release().await.unwrap();
    assert!(!a.is_leader());
    assert_eq!(
        api.lock().unwrap().take_log(),
        [format!("a GET {LEASE}"), format!("a PUT {LEASE}")]
    );
    assert_eq!(api.lock().unwrap().holder(), None);

    // No waiting for expiry: b takes it at once.
    advance(2).await;
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert_eq!(api.lock().unwrap().holder().as_deref(), Some("b"));

    // Releasing a lease someone else holds changes nothing.
    api.lock().unwrap().take_log();
    a.release().await.unwrap();
    assert_eq!(api.lock().unwrap().take_log(), [format!("a GET {LEASE}")]);
    assert_eq!(api.lock().unwrap().holder().as_deref(), Some("b"));
}

#[tokio::test(start_paused = true)]
async fn two_candidates_racing_for_a_free_lease_get_one_winner() {
    let api = Arc::new(Mutex::new(FakeLeases::default()));
    let mut a = elector("a", &api);
    let mut b = elector("b", &api);
    // Both read "no lease" and both create: the API server lets one in.
    let (ra, rb) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra ^ rb, "exactly one winner: a={ra} b={rb}");
    let holder = api.lock().unwrap().holder().unwrap();
    assert_eq!(holder, if ra { "a" } else { "b" });
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_the_lease_expires() {
    let api = Arc::new(Mutex::new(FakeLeases::default()));
    let (tx, mut leading) = watch::channel(false);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(elector("a", &api).run(tx, async {
        let _ = stop_rx.await;
    }));
    leading.wait_for(|l| *l).await.unwrap();
    let started = tokio::time::Instant::now();
    advance(5).await;
    assert!(*leading.borrow());

    api.lock().unwrap().down = true;
    let down_at = tokio::time::Instant::now();
    leading.wait_for(|l| !*l).await.unwrap();
    let stepped_down = tokio::time::Instant::now();
    // Last successful renewal was at most one retry period (2 s) before the
    // outage; the renew deadline is 10 s and the lease lasts 15 s.
    let since_last_renew_max = stepped_down - down_at + Duration::from_secs(2);
    assert!(
        since_last_renew_max < Duration::from_secs(15),
        "stepped down {:?} after the outage began (started {:?} earlier)",
        stepped_down - down_at,
        down_at - started
    );
    assert!(stepped_down - down_at >= Duration::from_secs(8));

    // The API comes back: it leads again (the lease still names it).
    api.lock().unwrap().down = false;
    leading.wait_for(|l| *l).await.unwrap();
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    assert!(!*leading.borrow());
    assert_eq!(api.lock().unwrap().holder(), None, "released on stop");
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_runs_controller_passes() {
    let api = Arc::new(Mutex::new(FakeLeases::default()));
    let mut replicas = Vec::new();
    for who in ["a", "b"] {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let elector = tokio::spawn(elector(who, &api).run(tx, async {
            let _ = stop_rx.await;
        }));
        let passes = Arc::new(AtomicU32::new(0));
        let p = passes.clone();
        let controller = tokio::spawn(while_leading(rx, Duration::from_secs(10), move || {
            let p = p.clone();
            async move {
                p.fetch_add(1, Ordering::SeqCst);
            }
        }));
        replicas.push((who, stop_tx, elector, passes, controller));
        // a starts first and wins.
        advance(1).await;
    }
    advance(60).await;
    let count = |i: usize| replicas[i].3.load(Ordering::SeqCst);
    assert_eq!(api.lock().unwrap().holder().as_deref(), Some("a"));
    assert!(count(0) >= 6, "leader ran {} passes in 60 s", count(0));
    assert_eq!(count(1), 0, "the follower reconciled");

    // a shuts down (releases); b takes over and reconciles, a no longer does.
    let (_, stop_a, elector_a, _, controller_a) = replicas.remove(0);
    stop_a.send(()).unwrap();
    elector_a.await.unwrap();
    controller_a.await.unwrap();
    let a_total = api.lock().unwrap().holder();
    assert_eq!(a_total, None);
    advance(3).await;
    assert_eq!(api.lock().unwrap().holder().as_deref(), Some("b"));
    advance(30).await;
    assert!(replicas[0].3.load(Ordering::SeqCst) >= 3);
}
