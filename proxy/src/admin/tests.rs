//! The admin API served for real on loopback (no network namespace):
//! authentication, `PUT /policy` swaps or keeps, `/baseline`, `/status`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podwarden_policy::{
    Action, AppProtocol, Decision, Direction, Flow, FlowRecord, Mode, RecordKind,
};
use prometheus::Registry;

use super::control::{AdminControl, SidecarStatus};
use crate::config::Config;
use crate::learning::Learning;
use crate::policy_reload::{PolicyReloader, ReloadMetrics};
use crate::Proxy;

pub(super) const TOKEN: &str = "correct horse battery staple";

pub(super) fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct Fixture {
    addr: SocketAddr,
    proxy: Proxy,
    control: Arc<AdminControl>,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

fn fixture(startup: Mode) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_path_buf();
    let config = Config {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let proxy = Proxy::builder(config).build().unwrap();
    let pushed = state.join("policy.json");
    let control = Arc::new(AdminControl::new(
        Some(&sha256_hex(TOKEN)),
        startup,
        Some(pushed),
        None,
    ));
    let reloader = Arc::new(PolicyReloader::new(
        state.join("unused.yaml"),
        proxy.hook().clone(),
        ReloadMetrics::new(&Registry::new()).unwrap(),
        None,
        "shop/checkout",
        "checkout-1",
    ));
    control.set_reloader(reloader);
    let learning = Learning::open(&state, "shop/deployment/checkout", "checkout-1").unwrap();
    control.set_learning(Arc::new(learning));
    let server = super::spawn_with(proxy.shared().clone(), control.clone()).unwrap();
    Fixture {
        addr: server.addr,
        proxy,
        control,
        state,
        _dir: dir,
    }
}

/// One HTTP/1.0 exchange: (status, body).
pub(super) fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn policy_json(version: u64, mode: &str, port: u16) -> String {
    serde_json::json!({
        "apiVersion": "podwarden.io/v1alpha1",
        "kind": "WorkloadPolicy",
        "metadata": {"workload": "shop/checkout", "version": version},
        "spec": {
            "mode": mode,
            "rules": [{
                "id": "out-db",
                "direction": "outbound",
                "peer": {"cidr": "198.51.100.0/24"},
                "ports": [port.to_string()]
            }]
        }
    })
    .to_string()
}

fn db_flow(port: u16) -> Flow {
    Flow::connection(
        Direction::Outbound,
        format!("198.51.100.7:{port}").parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    )
}

#[test]
fn authenticated_routes_refuse_without_or_with_a_wrong_token() {
    let f = fixture(Mode::Learn);
    for (method, path) in [("GET", "/baseline"), ("GET", "/status"), ("PUT", "/policy")] {
        let body = if method == "PUT" {
            policy_json(1, "protect", 5432)
        } else {
            String::new()
        };
        assert_eq!(
            call(f.addr, method, path, None, &body).0,
            401,
            "{method} {path} without token"
        );
        assert_eq!(
            call(f.addr, method, path, Some("wrong"), &body).0,
            401,
            "{method} {path} with a wrong token"
        );
    }
    // nothing was swapped in by the refused PUT
    assert_eq!(f.control.status().policy_version, 0);
    // the kubelet's routes stay open
    assert_eq!(call(f.addr, "GET", "/healthz", None, "").0, 200);
    assert_eq!(
        call(f.addr, "GET", "/ready", None, "").0,
        503,
        "listeners not started"
    );
    // and the right token works
    let (st, body) = call(f.addr, "GET", "/status", Some(TOKEN), "");
    assert_eq!(st, 200);
    let s: SidecarStatus = serde_json::from_str(&body).unwrap();
    assert_eq!((s.policy_version, s.mode), (0, Mode::Learn));
}

#[test]
fn no_configured_token_refuses_everyone() {
    let config = Config {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let proxy = Proxy::builder(config).build().unwrap();
    let server = super::spawn(proxy.shared().clone()).unwrap();
    let (st, body) = call(server.addr, "GET", "/status", Some(TOKEN), "");
    assert_eq!(st, 401);
    assert!(body.contains("no admin token"), "{body}");
}

#[test]
fn put_policy_swaps_a_valid_policy_and_keeps_it_over_a_broken_one() {
    let f = fixture(Mode::Learn);
    assert!(
        f.proxy.hook().decide(&db_flow(6000)).is_allowed(),
        "learn allows all"
    );

    let (st, body) = call(
        f.addr,
        "PUT",
        "/policy",
        Some(TOKEN),
        &policy_json(3, "protect", 5432),
    );
    assert_eq!(st, 200, "{body}");
    let s: SidecarStatus = serde_json::from_str(&body).unwrap();
    assert_eq!((s.policy_version, s.mode), (3, Mode::Protect));
    // enforced at once: the allowed port passes, another is denied
    assert!(f.proxy.hook().decide(&db_flow(5432)).is_allowed());
    assert_eq!(f.proxy.hook().decide(&db_flow(6000)).action, Action::Deny);
    // kept for a restart
    let saved = std::fs::read_to_string(f.state.join("policy.json")).unwrap();
    assert!(saved.contains("\"version\":3"), "{saved}");

    // a policy that does not validate: 400 with the reason, old one stays
    let broken = policy_json(4, "protect", 5432).replace("198.51.100.0/24", "198.51.100.0/99");
    let (st, body) = call(f.addr, "PUT", "/policy", Some(TOKEN), &broken);
    assert_eq!(st, 400);
    assert!(
        body.contains("cidr") || body.contains("198.51.100.0/99"),
        "{body}"
    );
    // not JSON at all
    let (st, _) = call(f.addr, "PUT", "/policy", Some(TOKEN), "{\"kind\": ");
    assert_eq!(st, 400);
    // a Baseline is not a policy
    let baseline = policy_json(5, "protect", 5432).replace("WorkloadPolicy", "Baseline");
    let (st, body) = call(f.addr, "PUT", "/policy", Some(TOKEN), &baseline);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("WorkloadPolicy"), "{body}");
    let s = f.control.status();
    assert_eq!((s.policy_version, s.mode), (3, Mode::Protect));
    assert_eq!(f.proxy.hook().decide(&db_flow(6000)).action, Action::Deny);

    // the same policy again is a no-op answered 200; a mode change applies
    assert_eq!(
        call(
            f.addr,
            "PUT",
            "/policy",
            Some(TOKEN),
            &policy_json(3, "protect", 5432)
        )
        .0,
        200
    );
    let (st, body) = call(
        f.addr,
        "PUT",
        "/policy",
        Some(TOKEN),
        &policy_json(4, "monitor", 5432),
    );
    assert_eq!(st, 200, "{body}");
    let d: Decision = f.proxy.hook().decide(&db_flow(6000));
    assert!(d.is_allowed() && d.would_deny, "{d:?}");
    // GET is not a way to push
    assert_eq!(call(f.addr, "GET", "/policy", Some(TOKEN), "").0, 405);
}

#[test]
fn baseline_serves_what_was_learned_and_status_counts_violations() {
    let f = fixture(Mode::Learn);
    let (st, body) = call(f.addr, "GET", "/baseline", Some(TOKEN), "");
    assert_eq!(st, 200, "{body}");
    let doc: podwarden_policy::PolicyDocument = serde_json::from_str(&body).unwrap();
    assert!(doc.spec.rules.is_empty());
    assert_eq!(doc.metadata.workload, "shop/checkout");

    let mut flow = db_flow(5432);
    flow.protocol = AppProtocol::Opaque;
    let rec = FlowRecord {
        id: "r1".into(),
        start_ms: crate::records::now_ms(),
        duration_ms: 1,
        flow,
        bytes_sent: 10,
        bytes_received: 20,
        decision: Decision::new(Mode::Monitor, None),
        kind: RecordKind::Connection,
        status: None,
    };
    let consumer = crate::learning::RecordConsumer {
        learning: Some(Arc::new(
            Learning::open(&f.state, "shop/checkout", "checkout-1").unwrap(),
        )),
        events: None,
        violations: f.control.violations().clone(),
        workload: "shop/checkout".into(),
        pod: "checkout-1".into(),
    };
    let events = consumer.handle(&rec);
    assert_eq!(events.len(), 1, "a would-block event");
    let (_, body) = call(f.addr, "GET", "/status", Some(TOKEN), "");
    let s: SidecarStatus = serde_json::from_str(&body).unwrap();
    assert_eq!(s.violations_last_hour, 1);
}
