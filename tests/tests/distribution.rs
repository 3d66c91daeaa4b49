//! Policy distribution end to end, without a cluster: a real
//! `podwarden-proxy run` in a pod namespace (admin token from
//! `PODWARDEN_ADMIN_TOKEN_SHA256`, as the webhook injects it) receives
//! approved `WorkloadPolicy` versions through the operator's own
//! distribution code (`podwarden-operator push`: `controller::sync_pods`
//! over `controller::sidecar`), and enforcement changes without a restart.
//! Versions are made with the operator's versioning (`approve::set_mode`).
//! What gets through is checked where it would arrive: a SYN counter and the
//! request log in the server namespace.

use std::path::Path;
use std::process::Command;

use podwarden_e2e::pod::proxy_bin;
use podwarden_e2e::{require, servers, Counter, Topology, ADMIN, PROXY_UID, SERVER};
use podwarden_operator::controller::approve::set_mode;
use podwarden_operator::crd::WorkloadPolicy;
use podwarden_policy::Mode;
use serde_json::{json, Value};

const BIN: &[&str] = &["podwarden-proxy", "podwarden-operator"];
const TOKEN: &str = "e2e-distribution-token-0123456789abcdef";

fn sha256_hex(s: &str) -> String {
    let out = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Version 1 as `podwarden baseline approve` writes it: monitor, and one
/// rule that is not the server (so traffic to it is a violation, reported
/// in monitor, blocked in protect).
fn policy_v1() -> WorkloadPolicy {
    serde_json::from_value(json!({
        "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
        "metadata": {"name": "deployment-web", "namespace": "shop"},
        "spec": {
            "workload": {"kind": "Deployment", "name": "web"},
            "version": 1, "approvedBy": "alice@example.com", "approvedAt": "2026-11-23T12:00:00Z",
            "change": "approved 1 baseline entries",
            "policy": {"mode": "monitor", "rules": [
                {"id": "payments", "direction": "outbound", "peer": {"cidr": "203.0.113.77/32"}, "ports": ["443"]}
            ]}
        }
    }))
    .unwrap()
}

struct Push {
    code: i32,
    status: Value,
}

/// `podwarden-operator push` inside the pod namespace (the admin API listens
/// on the pod's loopback, as the operator reaches it on the pod IP).
fn push(t: &Topology, policy: &WorkloadPolicy, token_file: &Path) -> Push {
    let file = t
        .scratch
        .write(
            &format!("policy-v{}.json", policy.spec.version),
            &serde_json::to_string_pretty(policy).unwrap(),
        )
        .unwrap();
    let bin = podwarden_e2e::env::workspace_bin("podwarden-operator").unwrap();
    let out = t
        .pod
        .output(
            None,
            &[
                &bin.display().to_string(),
                "push",
                "--policy",
                &file.display().to_string(),
                "--admin",
                ADMIN,
                "--token-file",
                &token_file.display().to_string(),
            ],
        )
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let status = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "push printed no status ({e}): {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            t.logs()
        )
    });
    Push {
        code: out.status.code().unwrap_or(-1),
        status,
    }
}

/// curl from the app to the server; true when the file came back.
fn app_reaches_server(t: &Topology) -> bool {
    t.app_curl(&[
        "--max-time",
        "30",
        &format!("http://{}:8000/ok.txt", SERVER.v4),
    ])
    .is_ok_and(|body| body == "allowed\n")
}

fn proxy_cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn approved_versions_change_enforcement_without_restart() {
    if !require("distribution", &["curl", "python3", "sha256sum"], BIN) {
        return;
    }
    let t = Topology::new().unwrap();
    servers::http(
        &t.server,
        &t.scratch,
        "web",
        8000,
        &[("ok.txt", "allowed\n")],
    )
    .unwrap();

    let state = t.scratch.path("state");
    std::fs::create_dir_all(&state).unwrap();
    t.pod
        .exec(&[
            "chown",
            &PROXY_UID.to_string(),
            &state.display().to_string(),
        ])
        .unwrap();
    let token_file = t.scratch.write("token", TOKEN).unwrap();
    let wrong_token = t
        .scratch
        .write("wrong-token", "not-the-token-not-the-token-not-it")
        .unwrap();
    // Started in learn, as an injected pod is; the token only as its hash.
    let bin = proxy_bin().unwrap().display().to_string();
    let token_env = format!("PODWARDEN_ADMIN_TOKEN_SHA256={}", sha256_hex(TOKEN));
    let pid = t
        .pod
        .spawn(
            "podwarden",
            Some(PROXY_UID),
            &[
                "env",
                &token_env,
                &bin,
                "run",
                "--admin-addr",
                ADMIN,
                "--mode",
                "learn",
                "--state-dir",
                &state.display().to_string(),
                "--workload",
                "shop/web",
                "--pod",
                "web-0",
            ],
        )
        .unwrap();
    for port in [15001, 15006, 15000] {
        t.pod
            .wait_listening(port, podwarden_e2e::PROXY_START)
            .unwrap();
    }
    t.init(&[]).unwrap();
    assert!(
        proxy_cmdline(pid).contains("podwarden-proxy run"),
        "{}",
        proxy_cmdline(pid)
    );
    let syn = Counter::install(
        &t.server,
        false,
        "web-syn",
        &["-p", "tcp", "--dport", "8000", "--syn"],
    )
    .unwrap();

    // v1 (monitor): pushed, in force, and the server is reached (reported only).
    let v1 = policy_v1();
    let p = push(&t, &v1, &token_file);
    assert_eq!(p.code, 0, "{}", p.status);
    assert_eq!(p.status["observedVersion"], 1);
    assert_eq!(p.status["inSync"], "1/1");
    assert_eq!(p.status["pods"][0]["version"], 1);
    assert_eq!(p.status["pods"][0]["mode"], "monitor");
    let before = syn.packets().unwrap();
    assert!(
        app_reaches_server(&t),
        "v1 (monitor) must let the app through\n{}",
        t.logs()
    );
    assert!(
        syn.packets().unwrap() > before,
        "no SYN reached the server under v1"
    );
    assert!(t.server.log_of("web").contains("GET /ok.txt"));

    // v2 = mode protect (the operator's versioning), same rules: blocked.
    let v2 = set_mode(
        &v1,
        Mode::Protect,
        "carol@example.com",
        "2026-11-23T13:00:00Z",
    )
    .unwrap();
    assert_eq!(v2.spec.version, 2);
    let p = push(&t, &v2, &token_file);
    assert_eq!(p.code, 0, "{}", p.status);
    assert_eq!(p.status["pods"][0]["version"], 2);
    assert_eq!(p.status["pods"][0]["mode"], "protect");
    assert!(
        p.status["pods"][0]["violationsLastHour"].as_u64().unwrap() >= 1,
        "the monitored flow counts as a violation: {}",
        p.status
    );
    let before = syn.packets().unwrap();
    assert!(!app_reaches_server(&t), "v2 (protect) must block the app");
    assert_eq!(
        syn.packets().unwrap(),
        before,
        "a SYN reached the server under v2"
    );
    assert_eq!(
        proxy_cmdline(pid),
        format!("{bin} run --admin-addr {ADMIN} --mode learn --state-dir {} --workload shop/web --pod web-0 ", state.display()),
        "the same proxy process enforces v2 (no restart)"
    );
    assert!(t.pod.is_running("podwarden"));

    // Already in sync: pushing v2 again is a status read, no new version.
    let p = push(&t, &v2, &token_file);
    assert_eq!((p.code, &p.status["pods"][0]["version"]), (0, &json!(2)));

    // A wrong token: the sidecar answers 401 and keeps v2.
    let v3 = set_mode(&v2, Mode::Monitor, "mallory", "2026-11-23T14:00:00Z").unwrap();
    let p = push(&t, &v3, &wrong_token);
    assert_eq!(p.code, 1);
    let err = p.status["pods"][0]["error"].as_str().unwrap_or_default();
    assert!(err.contains("HTTP 401"), "{}", p.status);
    assert!(
        !app_reaches_server(&t),
        "still protect after the refused push"
    );

    // A broken version (duplicate rule id, as a hand edit might make): 400,
    // the sidecar reports it still runs v2, and still blocks.
    let mut broken = v3.clone();
    let dup = broken.spec.policy.rules[0].clone();
    broken.spec.policy.rules.push(dup);
    let p = push(&t, &broken, &token_file);
    assert_eq!(p.code, 1, "{}", p.status);
    let err = p.status["pods"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("HTTP 400") && err.contains("duplicate"),
        "{}",
        p.status
    );
    assert_eq!(p.status["pods"][0]["version"], 2, "the old policy stays");
    assert_eq!(p.status["pods"][0]["mode"], "protect");
    assert!(
        !app_reaches_server(&t),
        "the old (protect) policy still enforces"
    );

    // And the fixed v3 (monitor) goes through, still the same process.
    let p = push(&t, &v3, &token_file);
    assert_eq!(p.code, 0, "{}", p.status);
    assert_eq!(p.status["pods"][0]["mode"], "monitor");
    assert!(
        app_reaches_server(&t),
        "v3 (monitor) lets the app through again"
    );
    assert!(proxy_cmdline(pid).contains("podwarden-proxy run"));
}
