//! `mode set` and `policy export` without `--cluster`: the local store keeps
//! working as before (a new version per mode change; export of the current
//! version as the policy file, NetworkPolicy or CiliumNetworkPolicy).

use std::path::Path;
use std::process::{Command, Output};

use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, Mode, PolicyDocument, RecordKind,
};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podwarden"))
        .args(args)
        .output()
        .expect("run podwarden")
}

fn ok(o: Output) -> String {
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    text
}

fn learn(store: &Path, dir: &Path) {
    let mut flow = Flow::connection(
        Direction::Outbound,
        "192.0.2.10:443".parse().unwrap(),
        "10.0.0.5:40000".parse().unwrap(),
    );
    flow.protocol = AppProtocol::Tls;
    flow.peer_names = vec!["api.payments.example".into()];
    let rec = FlowRecord {
        id: "f".into(),
        start_ms: 1_700_000_000_000,
        duration_ms: 3,
        flow,
        bytes_sent: 10,
        bytes_received: 20,
        decision: Decision::allow_learning(),
        kind: RecordKind::Connection,
        status: None,
    };
    let flows = dir.join("flows.jsonl");
    std::fs::write(&flows, serde_json::to_string(&rec).unwrap() + "\n").unwrap();
    let s = store.display().to_string();
    let f = flows.display().to_string();
    let base = ["baseline", "--store", &s, "--workload", "shop/checkout"];
    ok(run(&[&base[..], &["learn", "--flows", &f]].concat()));
    ok(run(
        &[&base[..], &["approve", "--all", "--by", "alice"]].concat()
    ));
}

#[test]
fn mode_set_and_export_on_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    learn(&store, dir.path());
    let s = store.display().to_string();

    let out = ok(run(&[
        "mode",
        "set",
        "shop/checkout",
        "protect",
        "--by",
        "carol",
        "--store",
        &s,
    ]));
    assert_eq!(out, "shop/checkout: mode protect in version 2 (by carol)\n");
    let out = ok(run(&[
        "mode",
        "set",
        "shop/checkout",
        "protect",
        "--by",
        "carol",
        "--store",
        &s,
    ]));
    assert_eq!(
        out,
        "shop/checkout: mode already protect; nothing changed\n"
    );
    let o = run(&[
        "mode",
        "set",
        "shop/checkout",
        "monitor",
        "--feature",
        "waf",
        "--by",
        "c",
        "--store",
        &s,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--feature needs --cluster"));

    let yaml = ok(run(&[
        "policy",
        "export",
        "--workload",
        "shop/checkout",
        "--store",
        &s,
    ]));
    let doc: PolicyDocument = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        (
            doc.metadata.version,
            doc.spec.mode,
            doc.metadata.approved_by.as_deref()
        ),
        (2, Mode::Protect, Some("carol"))
    );
    assert_eq!(doc.spec.rules.len(), 1);
    let np = ok(run(&[
        "policy",
        "export",
        "--workload",
        "shop/checkout",
        "--store",
        &s,
        "--format",
        "networkpolicy",
    ]));
    assert!(np.contains("kind: NetworkPolicy"), "{np}");
    let cnp = ok(run(&[
        "policy",
        "export",
        "--workload",
        "shop/checkout",
        "--store",
        &s,
        "--format",
        "cilium",
    ]));
    assert!(cnp.contains("api.payments.example"), "{cnp}");
}
