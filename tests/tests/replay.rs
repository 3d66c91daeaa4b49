//! Confidence before protect, end to end: the proxy records a learn phase
//! to its on-disk flow log; the CLI exports it (admin API and directory),
//! learns and approves a baseline, and replays candidate policies on it —
//! one with a rule deliberately removed (exactly that rule's flows would be
//! denied, exit 1) and the full one (exit 0). Then the full policy is
//! enforced in protect and the event id of a real 403 is explained by the
//! CLI from the proxy's event log.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use podwarden_e2e::drive::{cli_path, curl, describe as text, podwarden};
use podwarden_e2e::l7::wait_event;
use podwarden_e2e::{require, servers, Topology, ADMIN, APP_UID, SERVER};
use podwarden_policy::{load_policy_file, FlowRecord, Mode, PolicyDocument};
use serde_json::Value;

const BINS: &[&str] = &["podwarden-proxy", "podwarden"];
const WORKLOAD: &str = "shop/web";

fn run(args: &[&str]) -> Output {
    podwarden(args).unwrap()
}

/// `podwarden policy replay --policy POLICY --flows FLOWS EXTRA...`.
fn replay(policy: &Path, flows: &str, extra: &[&str]) -> Output {
    let policy = policy.display().to_string();
    let mut args = vec!["policy", "replay", "--policy", &policy, "--flows", flows];
    args.extend_from_slice(extra);
    run(&args)
}

fn read_records(path: &Path) -> Vec<FlowRecord> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn port_of(r: &FlowRecord) -> u16 {
    r.flow.service_port()
}

fn write_policy(path: &Path, doc: &PolicyDocument) {
    // JSON is YAML: the policy loader reads it as is.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn replay_gates_a_policy_change_and_explains_a_real_403() {
    if !require(
        "replay_gates_a_policy_change_and_explains_a_real_403",
        &["curl", "python3"],
        BINS,
    ) {
        return;
    }
    let t = Topology::new().unwrap();
    servers::http(
        &t.server,
        &t.scratch,
        "web",
        8000,
        &[("a.txt", "a\n"), ("forbidden.txt", "secret\n")],
    )
    .unwrap();
    servers::http(&t.server, &t.scratch, "web2", 8001, &[("b.txt", "b\n")]).unwrap();

    // The proxy (UID 1337) writes its flow log and state in the scratch dir.
    let flow_log = t.proxy_dir("flowlog").unwrap();
    let state = t.proxy_dir("state").unwrap();
    let policy_file = t.scratch.path("policy.yaml");
    std::fs::write(
        &policy_file,
        "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: { workload: shop/web, version: 1 }\nspec:\n  mode: learn\n  rules: []\n",
    )
    .unwrap();
    let (fl, st, pf) = (
        flow_log.display().to_string(),
        state.display().to_string(),
        policy_file.display().to_string(),
    );
    t.start_proxy(&[
        "--policy-file",
        &pf,
        "--state-dir",
        &st,
        "--flow-log-dir",
        &fl,
        "--workload",
        WORKLOAD,
        "--pod",
        "web-0",
        "--dns-port",
        "0",
    ])
    .unwrap_or_else(|e| panic!("{e:#}\n{}", t.logs()));
    t.init(&[]).unwrap();

    // Learn phase: a traffic mix on two services.
    let url = |port: u16, file: &str| format!("http://{}:{port}/{file}", SERVER.v4);
    for _ in 0..3 {
        assert_eq!(t.app_curl(&[&url(8000, "a.txt")]).unwrap(), "a\n");
    }
    for _ in 0..2 {
        assert_eq!(t.app_curl(&[&url(8001, "b.txt")]).unwrap(), "b\n");
    }

    // The flow log has every record (within a second or so); export it
    // through the admin API from inside the pod, and from the directory.
    let export = t.scratch.path("export.jsonl");
    let exported = export.display().to_string();
    let cli = cli_path().unwrap();
    let deadline = Instant::now() + podwarden_e2e::READY;
    let recs = loop {
        let out = t
            .pod
            .output(
                None,
                &[
                    &cli,
                    "flows",
                    "export",
                    "--admin",
                    &format!("http://{ADMIN}"),
                    "--since",
                    "1h",
                    "-o",
                    &exported,
                ],
            )
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let recs = read_records(&export);
        let count = |p: u16| recs.iter().filter(|r| port_of(r) == p).count();
        // A connection and a request record per curl.
        if count(8000) >= 6 && count(8001) >= 4 {
            break recs;
        }
        assert!(
            Instant::now() < deadline,
            "flow log incomplete after {:?}: {} records\n{}",
            podwarden_e2e::READY,
            recs.len(),
            t.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let from_dir = t.scratch.path("from-dir.jsonl");
    let o = run(&[
        "flows",
        "export",
        "--dir",
        &fl,
        "-o",
        &from_dir.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(read_records(&from_dir).len() >= recs.len());

    // Coverage: a minute of history is not enough to approve.
    let o = run(&["baseline", "status", "--flows", &fl]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("keep learning because the window covers only"),
        "{}",
        text(&o)
    );

    // Learn and approve with the CLI on a local store.
    let store = t.scratch.path("store").display().to_string();
    let base = ["--store", store.as_str(), "--workload", WORKLOAD];
    let mut learn = vec!["baseline", "learn", "--flows", exported.as_str()];
    learn.extend_from_slice(&base);
    let o = run(&learn);
    assert!(o.status.success(), "{}", text(&o));
    let mut approve = vec![
        "baseline", "approve", "--all", "--by", "e2e", "--mode", "protect",
    ];
    approve.extend_from_slice(&base);
    let o = run(&approve);
    assert!(o.status.success(), "{}", text(&o));
    let approved = t.scratch.path("store/shop/web/policy-v1.yaml");
    let full = load_policy_file(&approved).unwrap();
    assert_eq!(full.spec.mode, Mode::Protect);

    // The candidate: the approved policy without the rule(s) for port 8001.
    let mut reduced = full.clone();
    let removed: Vec<String> = full
        .spec
        .rules
        .iter()
        .filter(|r| r.ports.iter().any(|p| p.contains(8001)))
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "one learned rule for port 8001: {removed:?}"
    );
    reduced.spec.rules.retain(|r| !removed.contains(&r.id));
    let reduced_file = t.scratch.path("reduced.yaml");
    write_policy(&reduced_file, &reduced);
    let full_file = t.scratch.path("full.yaml");
    write_policy(&full_file, &full);

    let o = replay(&reduced_file, &fl, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let denied = report["denied"].as_array().unwrap();
    assert!(!denied.is_empty());
    for g in denied {
        assert_eq!(
            g["port"], 8001,
            "only the removed rule's flows are denied: {g}"
        );
        let near = g["explanation"]["near_misses"].as_array().unwrap();
        assert!(!near.is_empty(), "{g}");
    }
    let logged = read_records(&from_dir);
    let on_8001 = logged.iter().filter(|r| port_of(r) == 8001).count() as u64;
    assert_eq!(
        report["deniedRecords"], on_8001,
        "every 8001 flow, nothing else"
    );
    for g in report["allowed"].as_array().unwrap() {
        assert_ne!(g["port"], 8001, "{g}");
    }
    // The text form names the group.
    let o = replay(&reduced_file, &fl, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("WOULD DENY") && out.contains(":8001/http"),
        "{out}"
    );

    let o = replay(&full_file, &fl, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Rule usage: against the full policy every rule was used.
    let o = run(&[
        "policy",
        "unused",
        "--policy",
        &full_file.display().to_string(),
        "--flows",
        &fl,
        "--since",
        "1h",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // Enforce the full policy in protect (hot reload), then a path the
    // learned rule does not cover gets a 403 with an event id.
    let mut enforced = full.clone();
    enforced.metadata.version = 2;
    write_policy(&policy_file, &enforced);
    let deadline = Instant::now() + podwarden_e2e::READY;
    let (event_id, body) = loop {
        // With the response head (-D -) ahead of the body.
        let r = curl(
            &t.pod,
            Some(APP_UID),
            &["-D", "-", &url(8000, "forbidden.txt")],
        )
        .unwrap();
        let resp = r.body;
        if r.status == 403 && resp.starts_with("HTTP/1.1 403") {
            let id = resp
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("x-podwarden-event-id:")
                        .map(|v| v.trim().to_string())
                })
                .expect("403 carries x-podwarden-event-id");
            break (id, resp);
        }
        assert!(
            Instant::now() < deadline,
            "no 403 after {:?}: {resp}\n{}",
            podwarden_e2e::READY,
            t.logs()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        body.contains("default deny"),
        "the 403 names what decided: {body}"
    );
    // The allowed path still works in protect.
    assert_eq!(t.app_curl(&[&url(8000, "a.txt")]).unwrap(), "a\n");

    // The event reaches the event log (the proxy's stdout).
    wait_event(&t, &format!("with id {event_id}"), |e| {
        e["id"] == event_id.as_str()
    })
    .unwrap();
    let events_file = t.scratch.path("events.jsonl");
    std::fs::write(&events_file, t.pod.log_of("podwarden")).unwrap();
    let o = run(&[
        "policy",
        "explain",
        "--policy",
        &full_file.display().to_string(),
        "--event",
        &event_id,
        "--events",
        &events_file.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("default deny"), "{}", text(&o));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    assert_eq!(e["violation"]["kind"], "no_rule", "{e}");
    let near = e["near_misses"].as_array().unwrap();
    let rule_8000 = full
        .spec
        .rules
        .iter()
        .find(|r| r.ports.iter().any(|p| p.contains(8000)))
        .unwrap();
    let nearest = &near[0];
    assert_eq!(nearest["rule"], rule_8000.id.as_str(), "{e}");
    assert!(
        nearest["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reason"] == "http_path"),
        "the nearest rule's path template does not cover /forbidden.txt: {e}"
    );
    assert!(
        stderr.contains("is outside the rule's paths"),
        "{}",
        text(&o)
    );
}
