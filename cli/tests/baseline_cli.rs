//! `podwarden baseline ...` end to end on a temporary store: learn from
//! flow JSON lines, diff, reject, approve, history, rollback, merge, export.

use std::path::Path;
use std::process::{Command, Output};

use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, HttpRequestInfo, ProcessInfo, RecordKind,
};

fn podwarden(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podwarden"))
        .arg("baseline")
        .arg("--store")
        .arg(store)
        .arg("--workload")
        .arg("shop/checkout")
        .args(args)
        .output()
        .expect("run podwarden")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rec(
    peer: &str,
    proto: AppProtocol,
    names: &[&str],
    exe: &str,
    http: Option<(&str, &str)>,
) -> FlowRecord {
    let mut flow = Flow::connection(
        Direction::Outbound,
        peer.parse().unwrap(),
        "10.0.0.5:40000".parse().unwrap(),
    );
    flow.protocol = proto;
    flow.peer_names = names.iter().map(|s| s.to_string()).collect();
    flow.process = Some(ProcessInfo {
        pid: 7,
        exe: exe.into(),
        cmdline: vec![],
        uid: 1000,
    });
    flow.http = http.map(|(m, p)| HttpRequestInfo {
        method: m.into(),
        host: None,
        path: p.into(),
        target: None,
    });
    FlowRecord {
        id: "f".into(),
        start_ms: 1_700_000_000_000,
        duration_ms: 3,
        flow,
        bytes_sent: 10,
        bytes_received: 20,
        decision: Decision::allow_learning(),
        kind: if http.is_some() {
            RecordKind::Request
        } else {
            RecordKind::Connection
        },
        status: None,
    }
}

fn write_flows(path: &Path, recs: &[FlowRecord]) {
    let lines: Vec<String> = recs
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn learn_review_approve_rollback_export() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let flows = dir.path().join("flows.jsonl");
    write_flows(
        &flows,
        &[
            rec(
                "192.0.2.10:443",
                AppProtocol::Tls,
                &["api.payments.example"],
                "/app",
                None,
            ),
            rec(
                "192.0.2.11:443",
                AppProtocol::Tls,
                &["api.payments.example"],
                "/app",
                None,
            ),
            rec(
                "192.0.2.20:80",
                AppProtocol::Http,
                &["users.example"],
                "/app",
                Some(("GET", "/users/42")),
            ),
            rec(
                "203.0.113.66:4444",
                AppProtocol::Opaque,
                &[],
                "/usr/bin/nc",
                None,
            ),
        ],
    );
    let o = podwarden(&store, &["learn", "--flows", flows.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("learned 4 flow records"), "{}", text(&o));

    let o = podwarden(&store, &["diff"]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "diff with proposals exits 1: {}",
        text(&o)
    );
    let t = text(&o);
    assert!(t.contains("+ out-tls-api.payments.example-443"), "{t}");
    assert!(t.contains("+ out-http-users.example-80-get"), "{t}");
    assert!(
        t.contains("! risk: external IP 203.0.113.66/32 without a DNS name"),
        "{t}"
    );

    let o = podwarden(
        &store,
        &[
            "reject",
            "--rule",
            "out-opaque-203.0.113.66-4444",
            "--rule",
            "process:/usr/bin/nc",
            "--by",
            "alice",
            "--reason",
            "netcat",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = podwarden(&store, &["diff", "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["rejected"], 2);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("4444"));

    let o = podwarden(
        &store,
        &["approve", "--all", "--by", "bob", "--mode", "protect"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("version 1"), "{}", text(&o));
    let o = podwarden(&store, &["diff"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let v1 = std::fs::read_to_string(store.join("shop/checkout/policy-v1.yaml")).unwrap();
    assert!(
        v1.contains("kind: WorkloadPolicy")
            && v1.contains("approvedBy: bob")
            && v1.contains("mode: protect"),
        "{v1}"
    );
    assert!(!v1.contains("/usr/bin/nc"));

    // new traffic: a known host on a new port, approved selectively
    write_flows(
        &flows,
        &[rec(
            "192.0.2.10:8443",
            AppProtocol::Tls,
            &["api.payments.example"],
            "/app",
            None,
        )],
    );
    assert!(
        podwarden(&store, &["learn", "--flows", flows.to_str().unwrap()])
            .status
            .success()
    );
    let o = podwarden(
        &store,
        &[
            "approve",
            "--rule",
            "out-tls-api.payments.example-8443",
            "--by",
            "carol",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = podwarden(&store, &["rollback", "--to", "1", "--by", "dave"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = podwarden(&store, &["history"]);
    let t = text(&o);
    assert!(
        t.contains("v1") && t.contains("v2") && t.contains("v3") && t.contains("carol"),
        "{t}"
    );
    let v3 = std::fs::read_to_string(store.join("shop/checkout/policy-v3.yaml")).unwrap();
    assert!(
        !v3.contains("8443"),
        "rollback to v1 drops the v2 rule: {v3}"
    );

    for (fmt, needle) in [
        ("networkpolicy", "kind: NetworkPolicy"),
        ("cilium", "toFQDNs"),
        ("dot", "digraph"),
        ("svg", "<svg"),
    ] {
        let o = podwarden(&store, &["export", "--format", fmt]);
        assert!(o.status.success(), "{fmt}: {}", text(&o));
        assert!(text(&o).contains(needle), "{fmt}: {}", text(&o));
    }
    let out = dir.path().join("graph.svg");
    let o = podwarden(
        &store,
        &[
            "export",
            "--format",
            "svg",
            "--baseline",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("/usr/bin/nc"),
        "the baseline graph shows everything seen"
    );
}

#[test]
fn merge_of_replica_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, ip) in ["192.0.2.10:443", "192.0.2.11:443"].iter().enumerate() {
        let store = dir.path().join(format!("s{i}"));
        let flows = dir.path().join(format!("f{i}.jsonl"));
        write_flows(
            &flows,
            &[rec(
                ip,
                AppProtocol::Tls,
                &["api.payments.example"],
                "/app",
                None,
            )],
        );
        let o = podwarden(
            &store,
            &[
                "learn",
                "--flows",
                flows.to_str().unwrap(),
                "--replica",
                &format!("pod-{i}"),
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        files.push(store.join("shop/checkout/baseline.yaml"));
    }
    let out = dir.path().join("merged.yaml");
    let o = podwarden(
        dir.path(),
        &[
            "merge",
            files[0].to_str().unwrap(),
            files[1].to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let m = std::fs::read_to_string(&out).unwrap();
    assert!(
        m.contains("count: 2") && m.contains("pod-0") && m.contains("pod-1"),
        "{m}"
    );
}

#[test]
fn bad_input_is_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("bad.jsonl");
    std::fs::write(&flows, "{\"id\": 1}\n").unwrap();
    let o = podwarden(dir.path(), &["learn", "--flows", flows.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("bad.jsonl:1: not a flow record"),
        "{}",
        text(&o)
    );
    let o = podwarden(dir.path(), &["diff"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no baseline for shop/checkout"),
        "{}",
        text(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_podwarden"))
        .args(["baseline", "--workload", "../etc", "diff"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("expected namespace/name"), "{}", text(&o));
    let o = podwarden(dir.path(), &["approve", "--by", "x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
