//! The product's promise end to end: a pod runs in `learn` with a realistic
//! mix of traffic (an HTTP API by name, HTTPS by SNI, redis, DNS, inbound
//! calls); the learned baseline is fetched from the sidecar's admin API,
//! approved with the `podwarden` CLI on a local store, pushed back with
//! `PUT /policy` (protect, no restart); the same traffic then raises zero
//! violations, and every anomaly is blocked — checked on the receiving side
//! (packet counters and server logs), not only in the proxy's records.
//! DNS too: the approved baseline lists the names the pod resolved, so a
//! name never seen is answered NXDOMAIN by the proxy and never reaches the
//! resolver (its query log), with exactly one event per refused query.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use podwarden_e2e::pod::ADMIN;
use podwarden_e2e::{require, servers, Counter, Topology, APP_UID, POD, SERVER, UNKNOWN};
use podwarden_policy::model::AllowedNames;
use podwarden_policy::{Action, Direction, FlowRecord, Mode, PolicyDocument};

const BIN: &[&str] = &["podwarden-proxy", "podwarden"];
/// As the operator names it (`namespace/kind/name`); the learner keys it
/// `shop/checkout`.
const WORKLOAD: &str = "shop/deployment/checkout";
const STORE_WORKLOAD: &str = "shop/checkout";
/// A second address of the server namespace (TEST-NET-2), for redis.
const CACHE: &str = "198.51.100.11";

struct World {
    t: Topology,
    state: PathBuf,
}

fn world(test: &str) -> Option<World> {
    let tools = [
        "curl",
        "dig",
        "python3",
        "redis-server",
        "redis-cli",
        "openssl",
        "sha256sum",
    ];
    if !require(test, &tools, BIN) {
        return None;
    }
    let t = Topology::new().unwrap();
    let s4 = SERVER.v4.to_string();
    let u4 = UNKNOWN.v4.to_string();
    // The cache has an address of its own; the API and the HTTPS service
    // share one (two names behind one address, as with virtual hosts).
    t.server
        .exec(&["ip", "addr", "add", &format!("{CACHE}/24"), "dev", "eth0"])
        .unwrap();
    t.server
        .spawn(
            "dns",
            None,
            &[
                podwarden_e2e::python(),
                &podwarden_e2e::pod::fixture("dns_server.py"),
                "53",
                &format!("api.example.test={s4}"),
                &format!("secure.example.test={s4}"),
                &format!("cache.example.test={CACHE}"),
                &format!("meta.example.test={s4}"),
                &format!("never.example.test={u4}"),
            ],
        )
        .unwrap();
    t.server.wait_udp_bound(53, podwarden_e2e::READY).unwrap();
    // The API: /users/<id> documents.
    let api = t.scratch.path("api");
    std::fs::create_dir_all(api.join("users")).unwrap();
    for id in 1..=3 {
        std::fs::write(api.join(format!("users/{id}")), format!("user {id}\n")).unwrap();
    }
    let api_s = api.display().to_string();
    t.server
        .spawn(
            "api",
            None,
            &[
                podwarden_e2e::python(),
                "-m",
                "http.server",
                "8000",
                "--bind",
                "::",
                "--directory",
                &api_s,
            ],
        )
        .unwrap();
    t.server.wait_listening(8000, podwarden_e2e::READY).unwrap();
    let (cert, key) = servers::self_signed(&t.server, &t.scratch, "secure.example.test").unwrap();
    servers::tls(&t.server, "tls", 8443, &cert, &key).unwrap();
    servers::redis(&t.server, &t.scratch, "redis", 6379).unwrap();
    // The app's own server in the pod, called by the outside client.
    let app = t.scratch.path("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("hello.txt"), "hello\n").unwrap();
    let app_s = app.display().to_string();
    t.pod
        .spawn(
            "app-server",
            Some(APP_UID),
            &[
                podwarden_e2e::python(),
                "-m",
                "http.server",
                "8080",
                "--bind",
                "::",
                "--directory",
                &app_s,
            ],
        )
        .unwrap();
    t.pod.wait_listening(8080, podwarden_e2e::READY).unwrap();

    t.pod
        .set_resolv_conf(&format!("nameserver {s4}\n"))
        .unwrap();
    let state = t.scratch.path("state");
    start_proxy(&t, &state, "podwarden");
    t.init(&["--dns-resolver", &s4]).unwrap();
    Some(World { t, state })
}

fn start_proxy(t: &Topology, state: &std::path::Path, label: &str) {
    let s4 = SERVER.v4.to_string();
    t.start_attributing_proxy(
        label,
        state,
        &[
            "--dns-upstream",
            &s4,
            "--workload",
            WORKLOAD,
            "--pod",
            "checkout-0",
            "--mode",
            "learn",
        ],
    )
    .unwrap();
    t.pod
        .wait_udp_bound(15053, podwarden_e2e::READY)
        .expect("the proxy's DNS listener");
}

/// The workload's normal day: every call must succeed.
fn normal_traffic(t: &Topology) {
    // A name the app resolves but never connects to by name (no FQDN rule
    // will list it: the learned DNS names must).
    let answer = t
        .pod
        .exec_as(
            Some(APP_UID),
            &[
                "dig",
                "+short",
                "+tries=1",
                "+time=5",
                "meta.example.test",
                "A",
            ],
        )
        .unwrap_or_else(|e| panic!("dig meta: {e}\n{}", t.logs()));
    assert_eq!(answer.trim(), SERVER.v4.to_string(), "{}", t.logs());
    for id in 1..=3 {
        let body = t
            .app_curl(&["-4", &format!("http://api.example.test:8000/users/{id}")])
            .unwrap_or_else(|e| panic!("API call {id}: {e}\n{}", t.logs()));
        assert_eq!(body, format!("user {id}\n"));
    }
    let body = t
        .app_curl(&["-4", "-k", "https://secure.example.test:8443/"])
        .unwrap_or_else(|e| panic!("HTTPS: {e}\n{}", t.logs()));
    assert_eq!(body, "hello over tls\n");
    let pong = t
        .pod
        .exec_as(
            Some(APP_UID),
            &[
                "redis-cli",
                "-h",
                "cache.example.test",
                "-p",
                "6379",
                "PING",
            ],
        )
        .unwrap_or_else(|e| panic!("redis: {e}\n{}", t.logs()));
    assert_eq!(pong.trim(), "PONG", "{}", t.logs());
    let body = t
        .client
        .exec(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            &format!("http://{}:8080/hello.txt", POD.v4),
        ])
        .unwrap_or_else(|e| panic!("inbound: {e}\n{}", t.logs()));
    assert_eq!(body, "hello\n");
}

fn flows_since(t: &Topology, since_ms: u64) -> Vec<FlowRecord> {
    let body = t
        .pod
        .exec(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "30",
            &format!("http://{ADMIN}/flows?since={since_ms}"),
        ])
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

/// Waits until the records of the inbound call and of redis (the last
/// connections of [`normal_traffic`]) have been written.
fn wait_traffic_recorded(t: &Topology, since_ms: u64) -> Vec<FlowRecord> {
    let deadline = Instant::now() + podwarden_e2e::READY;
    loop {
        let flows = flows_since(t, since_ms);
        let inbound = flows
            .iter()
            .any(|r| r.flow.direction == Direction::Inbound && r.flow.local.port() == 8080);
        let redis = flows.iter().any(|r| r.flow.peer.port() == 6379);
        if inbound && redis {
            return flows;
        }
        assert!(
            Instant::now() < deadline,
            "records missing: {}",
            serde_json::to_string_pretty(&flows).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn status(t: &Topology) -> serde_json::Value {
    serde_json::from_str(&t.admin_ok("GET", "/status", None).unwrap()).unwrap()
}

fn baseline(t: &Topology) -> PolicyDocument {
    let body = t.admin_ok("GET", "/baseline", None).unwrap();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn podwarden(args: &[&str]) -> (i32, String) {
    let bin = podwarden_e2e::env::workspace_bin("podwarden").unwrap();
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn curl_fails(t: &Topology, uid: Option<u32>, argv: &[&str]) -> bool {
    let mut a = vec!["-sS", "--fail", "--max-time", "5"];
    a.extend_from_slice(argv);
    let mut full = vec!["curl"];
    full.extend_from_slice(&a);
    !t.pod.output(uid, &full).unwrap().status.success()
}

#[test]
fn learn_approve_protect_zero_false_positives_and_every_anomaly_blocked() {
    let Some(w) = world("learn_approve_protect_zero_false_positives_and_every_anomaly_blocked")
    else {
        return;
    };
    let t = &w.t;

    // ---- learn ----
    let learn_start = now_ms();
    for _ in 0..2 {
        normal_traffic(t);
    }
    let learned = wait_traffic_recorded(t, learn_start);
    let curl = std::fs::canonicalize("/usr/bin/curl").unwrap();
    let curl = curl.display().to_string();
    let by_curl = learned
        .iter()
        .find(|r| r.flow.peer.port() == 8000)
        .and_then(|r| r.flow.process.clone())
        .unwrap_or_else(|| panic!("API call not attributed: {learned:#?}\n{}", t.logs()));
    assert_eq!(by_curl.exe, curl);
    assert_eq!(by_curl.uid, APP_UID);
    let inbound = learned
        .iter()
        .find(|r| r.flow.direction == Direction::Inbound)
        .unwrap();
    assert!(
        inbound
            .flow
            .process
            .as_ref()
            .is_some_and(|p| p.exe.contains("python")),
        "inbound attributed to the app's server: {inbound:#?}"
    );
    assert_eq!(status(t)["violationsLastHour"], 0);

    // The admin routes are closed without the token.
    assert_eq!(t.admin_call("GET", "/baseline", None, None).unwrap().0, 401);
    assert_eq!(
        t.admin_call("GET", "/baseline", Some("not-the-token"), None)
            .unwrap()
            .0,
        401
    );

    let base = baseline(t);
    let text = serde_json::to_string(&base).unwrap();
    for needle in [
        "api.example.test",
        "/users/{id}",
        "secure.example.test",
        "cache.example.test",
        "meta.example.test",
        curl.as_str(),
        "redis-cli",
    ] {
        assert!(text.contains(needle), "baseline lacks {needle}: {text}");
    }
    assert!(
        base.spec.processes.iter().any(|p| p.exe == curl),
        "{:?}",
        base.spec.processes
    );
    // The names the pod resolved, less those its FQDN rules list.
    assert_eq!(base.spec.dns.allowed_names, AllowedNames::Listed);
    let names = &base.spec.dns.allow_names;
    assert!(names.iter().any(|n| n == "meta.example.test"), "{text}");
    assert!(!names.iter().any(|n| n == "api.example.test"), "{text}");

    // Learning survives a restart (SIGTERM saves; the new proxy restores).
    // SIGTERM; a SIGKILL after the grace would lose the state this checks.
    t.pod.stop("podwarden", podwarden_e2e::READY);
    assert!(
        w.state.join("shop/checkout/learning.json").is_file(),
        "learning state saved"
    );
    start_proxy(t, &w.state, "podwarden-2");
    assert_eq!(
        baseline(t),
        base,
        "the restarted proxy restored what it learned"
    );

    // ---- review and approve with the CLI on a local store ----
    let store = t.scratch.path("store");
    let store_s = store.display().to_string();
    std::fs::create_dir_all(store.join(STORE_WORKLOAD)).unwrap();
    std::fs::write(store.join(STORE_WORKLOAD).join("baseline.yaml"), &text).unwrap();
    let common = ["--store", &store_s, "--workload", STORE_WORKLOAD];
    let (code, diff) = podwarden(&[&["baseline", "diff"][..], &common].concat());
    assert_eq!(code, 1, "something to review: {diff}");
    assert!(diff.contains("api.example.test"), "{diff}");
    assert!(diff.contains("+ dns:meta.example.test"), "{diff}");
    assert!(diff.contains("allowedNames: listed"), "{diff}");
    let (code, out) = podwarden(
        &[
            &[
                "baseline", "approve", "--all", "--by", "secteam", "--mode", "protect",
            ][..],
            &common,
        ]
        .concat(),
    );
    assert_eq!(code, 0, "{out}");
    let yaml = std::fs::read_to_string(store.join(STORE_WORKLOAD).join("policy-v1.yaml")).unwrap();
    let policy = podwarden_policy::load_policy_str(&yaml, "policy-v1.yaml").unwrap();
    assert_eq!(policy.spec.mode, Mode::Protect);
    assert_eq!(
        policy.spec.dns.allowed_names,
        AllowedNames::Listed,
        "{yaml}"
    );
    assert!(
        policy
            .spec
            .dns
            .allow_names
            .iter()
            .any(|n| n == "meta.example.test"),
        "{yaml}"
    );

    // ---- protect, pushed without a restart ----
    let body = serde_json::to_string(&policy).unwrap();
    assert_eq!(
        t.admin_call("PUT", "/policy", None, Some(&body)).unwrap().0,
        401
    );
    let st: serde_json::Value =
        serde_json::from_str(&t.admin_ok("PUT", "/policy", Some(&body)).unwrap()).unwrap();
    assert_eq!(st["policyVersion"], 1);
    assert_eq!(st["mode"], "protect");

    // Replay the normal day: zero violations.
    let api_syn = Counter::install(
        &t.server,
        false,
        "lp-api-syn",
        &["-p", "tcp", "--dport", "8000", "--syn"],
    )
    .unwrap();
    let replay_start = now_ms();
    normal_traffic(t);
    let replayed = wait_traffic_recorded(t, replay_start);
    let bad: Vec<&FlowRecord> = replayed
        .iter()
        .filter(|r| {
            r.decision.action != Action::Allow || r.decision.would_deny || r.decision.rule.is_none()
        })
        .collect();
    assert!(bad.is_empty(), "false positives after approval: {bad:#?}");
    assert_eq!(status(t)["violationsLastHour"], 0);
    assert!(
        api_syn.packets().unwrap() >= 3,
        "the counter counts the API's SYNs"
    );

    // ---- anomalies: each blocked before it reaches anyone ----
    let unknown_syn =
        Counter::install(&t.unknown, false, "lp-unknown-syn", &["-p", "tcp", "--syn"]).unwrap();
    let new_port_syn = Counter::install(
        &t.server,
        false,
        "lp-new-port-syn",
        &["-p", "tcp", "--dport", "9000", "--syn"],
    )
    .unwrap();
    let anomaly_start = now_ms();

    // 1. A new external IP.
    assert!(curl_fails(
        t,
        Some(APP_UID),
        &["-4", &format!("http://{}:8000/", UNKNOWN.v4)]
    ));
    // 2. A known host on a new port.
    assert!(curl_fails(
        t,
        Some(APP_UID),
        &["-4", "http://api.example.test:9000/"]
    ));
    // 3. A new process: a copy of curl, calling an allowed destination on
    //    an allowed path.
    let bin = t.scratch.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("curl-copy");
    std::fs::copy("/usr/bin/curl", &copy).unwrap();
    let copy_s = copy.display().to_string();
    let api_before = api_syn.packets().unwrap();
    let out = t
        .pod
        .output(
            Some(APP_UID),
            &[
                &copy_s,
                "-sS",
                "--fail",
                "--max-time",
                "5",
                "-4",
                "http://api.example.test:8000/users/4242",
            ],
        )
        .unwrap();
    assert!(!out.status.success(), "the copied curl got through");
    assert_eq!(
        api_syn.packets().unwrap(),
        api_before,
        "nothing of it reached the API"
    );
    // the real curl may use that path (a learned template)
    let code = t
        .pod
        .exec_as(
            Some(APP_UID),
            &[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-4",
                "http://api.example.test:8000/users/4243",
            ],
        )
        .unwrap();
    assert_eq!(
        code, "404",
        "allowed by the template, unknown to the server"
    );
    // 4. A new HTTP path outside the learned templates.
    assert!(curl_fails(
        t,
        Some(APP_UID),
        &["-4", "http://api.example.test:8000/admin/secrets"]
    ));
    // 5. A DNS name never seen: the resolver would answer it, but the
    //    proxy answers NXDOMAIN itself and never forwards it (the query
    //    alone would carry data to the name's server).
    let answer = t
        .pod
        .exec_as(
            Some(APP_UID),
            &["dig", "+tries=1", "+time=5", "never.example.test", "A"],
        )
        .unwrap();
    assert!(answer.contains("status: NXDOMAIN"), "{answer}");
    assert!(curl_fails(
        t,
        Some(APP_UID),
        &["-4", "http://never.example.test:8000/"]
    ));

    // Receiving side: nothing arrived.
    assert_eq!(
        unknown_syn.packets().unwrap(),
        0,
        "the unknown host saw SYNs"
    );
    assert_eq!(new_port_syn.packets().unwrap(), 0, "port 9000 saw SYNs");
    let api_log = t.server.log_of("api");
    assert!(!api_log.contains("/users/4242"), "{api_log}");
    assert!(api_log.contains("/users/4243"), "control: {api_log}");
    assert!(!api_log.contains("/admin/secrets"), "{api_log}");
    let dns_log = t.server.log_of("dns");
    assert!(
        !dns_log.contains("QUERY never.example.test"),
        "forwarded: {dns_log}"
    );
    assert!(
        dns_log.contains("QUERY meta.example.test"),
        "control: {dns_log}"
    );

    // Flagged: a denied record for each, and events. Records and events
    // land asynchronously: poll until all are there (or the deadline), then
    // check each with its own message.
    type Pred<'a> = Box<dyn Fn(&FlowRecord) -> bool + 'a>;
    let flags: [(&str, Pred); 5] = [
        (
            "new IP",
            Box::new(|r| r.flow.peer.ip() == UNKNOWN.v4 && r.flow.peer_names.is_empty()),
        ),
        ("new port", Box::new(|r| r.flow.peer.port() == 9000)),
        (
            "new process",
            Box::new(|r| r.flow.process.as_ref().is_some_and(|p| p.exe == copy_s)),
        ),
        (
            "new path",
            Box::new(|r| {
                r.flow
                    .http
                    .as_ref()
                    .is_some_and(|h| h.path == "/admin/secrets")
            }),
        ),
        (
            "never-seen name",
            Box::new(|r| {
                r.flow
                    .dns
                    .as_ref()
                    .is_some_and(|q| q.name == "never.example.test")
            }),
        ),
    ];
    let denied = |recs: &[FlowRecord], pred: &Pred| {
        recs.iter()
            .any(|r| r.decision.action == Action::Deny && pred(r))
    };
    let events_in = |log: &str| {
        log.contains("\"kind\":\"new_process\"")
            && log.contains(&copy_s)
            && log.matches("\"kind\":\"violation\"").count() >= 5
    };
    let deadline = Instant::now() + podwarden_e2e::READY;
    let recs = loop {
        let recs = flows_since(t, anomaly_start);
        let n_denied = recs
            .iter()
            .filter(|r| r.decision.action == Action::Deny)
            .count() as u64;
        // Counted by the record consumer once it handled every denied
        // record above (and so emitted whatever events they raise).
        let all = flags.iter().all(|(_, p)| denied(&recs, p))
            && events_in(&t.pod.log_of("podwarden-2"))
            && status(t)["violationsLastHour"].as_u64().unwrap_or(0) >= n_denied.max(5);
        if all || Instant::now() > deadline {
            break recs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for (what, pred) in &flags {
        assert!(denied(&recs, pred), "{what}: {recs:#?}");
    }
    let st = status(t);
    assert!(st["violationsLastHour"].as_u64().unwrap() >= 5, "{st}");
    let log = t.pod.log_of("podwarden-2");
    assert!(log.contains("\"kind\":\"new_process\""), "{log}");
    assert!(log.contains(&copy_s), "{log}");
    assert!(log.matches("\"kind\":\"violation\"").count() >= 5, "{log}");
    // One event per refused query (dig's, and curl's lookup): the
    // listener's, naming the name; not a second one from its record.
    let refused = recs
        .iter()
        .filter(|r| {
            r.decision.action == Action::Deny
                && r.flow
                    .dns
                    .as_ref()
                    .is_some_and(|q| q.name == "never.example.test")
        })
        .count();
    let events: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"kind\":") && l.contains("never.example.test"))
        .collect();
    assert!(refused >= 1);
    assert_eq!(events.len(), refused, "{events:#?}\n{recs:#?}");
    assert!(
        events
            .iter()
            .all(|e| e.contains("dns: name not in policy") && e.contains("NXDOMAIN")),
        "{events:#?}"
    );
}
