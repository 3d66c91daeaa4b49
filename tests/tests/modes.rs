//! The three modes end to end: the proxy runs with a policy file in the pod,
//! the app uses real clients, and what was let through or kept out is
//! checked where it would arrive — server logs and packet counters in the
//! server and "unknown" namespaces — as well as in `/flows` and the security
//! events the proxy prints on stdout.
//!
//! The world: `api.example.test` is 198.51.100.10 (the server namespace)
//! according to the resolver the policy allows (198.51.100.10:53). The
//! unknown namespace (203.0.113.10, 2001:db8:3::10) plays every attacker
//! endpoint: the same HTTP/TLS services, and a resolver that claims
//! `api.example.test` is 203.0.113.10.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use podwarden_e2e::pod::{fixture, proxy_bin};
use podwarden_e2e::{python, require, servers, Counter, Topology, ADMIN, APP_UID, PROXY_UID};
use podwarden_e2e::{SERVER, UNKNOWN};
use podwarden_policy::{Direction, FlowRecord};
use serde_json::Value;

const BIN: &[&str] = &["podwarden-proxy"];
const NAME: &str = "api.example.test";
/// Base32-looking labels: what a DNS tunnel sends.
const TUNNEL_QUERY: &str =
    "mzxw6ytboi5gk4tbmfzgs3ldmvzxgzlsmzxw6ytb.nbswy3dpeb3w64tmmqqho33snrsc4.t.example";

fn policy(mode: &str, version: u32) -> String {
    format!(
        r#"apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: shop/web, version: {version} }}
spec:
  mode: {mode}
  dns: {{ resolvers: ["{server}"], blockTunneling: true }}
  rules:
    - id: dns
      note: the cluster resolver
      direction: outbound
      peer: {{ cidr: {server}/32 }}
      ports: ["53"]
      protocols: [dns]
    - id: api
      note: the API, by name only
      direction: outbound
      peer: {{ fqdn: {NAME} }}
      ports: ["8000", "8443"]
    - id: redis
      note: the cache
      direction: outbound
      peer: {{ cidr: {server}/32 }}
      ports: ["6379"]
    - id: egress-proxy
      note: the egress proxy (CONNECT and absolute-form are judged by target)
      direction: outbound
      peer: {{ cidr: {server}/32 }}
      ports: ["3128"]
    - id: api-v6
      note: the API over IPv6
      direction: outbound
      peer: {{ cidr: "{server6}/128" }}
      ports: ["8000"]
"#,
        server = SERVER.v4,
        server6 = SERVER.v6,
    )
}

struct World {
    t: Topology,
    policy_file: PathBuf,
    state_dir: PathBuf,
    cert: String,
    proxies: usize,
}

/// Servers in both namespaces, the pod's resolv.conf, the policy file and
/// the proxy (as UID 1337) with `init` applied; `None` when skipped.
fn world(test: &str, mode: &str, dns_upstreams: &[&str]) -> Option<World> {
    world_with(test, mode, dns_upstreams, true)
}

/// [`world`]; with `proxy_first` false, `init` is applied before any proxy
/// runs (as the init container does in a pod) and none is started.
fn world_with(test: &str, mode: &str, dns_upstreams: &[&str], proxy_first: bool) -> Option<World> {
    let tools = [
        "curl",
        "python3",
        "openssl",
        "dig",
        "redis-server",
        "redis-cli",
    ];
    if !require(test, &tools, BIN) {
        return None;
    }
    let t = Topology::new().unwrap();
    let files = [("ok.txt", "allowed\n"), ("secret.txt", "exfiltrated\n")];
    servers::http(&t.server, &t.scratch, "web", 8000, &files).unwrap();
    servers::http(&t.unknown, &t.scratch, "evil-web", 8000, &files).unwrap();
    servers::http(&t.unknown, &t.scratch, "evil-9999", 9999, &files).unwrap();
    let (cert, key) = servers::self_signed(&t.server, &t.scratch, NAME).unwrap();
    servers::tls(&t.server, "tls", 8443, &cert, &key).unwrap();
    servers::tls(&t.unknown, "evil-tls", 8443, &cert, &key).unwrap();
    servers::redis(&t.server, &t.scratch, "redis", 6379).unwrap();
    let dns = |ns: &podwarden_e2e::Netns, label: &str, records: &[String]| {
        let script = fixture("dns_server.py");
        let mut argv = vec![python(), script.as_str(), "53"];
        argv.extend(records.iter().map(String::as_str));
        ns.spawn(label, None, &argv).unwrap();
        ns.wait_udp_bound(53, podwarden_e2e::READY).unwrap();
    };
    dns(
        &t.server,
        "dns",
        &[
            format!("{NAME}={}", SERVER.v4),
            format!("{NAME}={}", SERVER.v6),
        ],
    );
    dns(&t.unknown, "evil-dns", &[format!("{NAME}={}", UNKNOWN.v4)]);
    let fwd = fixture("forward_proxy.py");
    let map = format!("{NAME}={}", SERVER.v4);
    t.server
        .spawn("fwd", None, &[python(), &fwd, "3128", &map])
        .unwrap();
    t.server.wait_listening(3128, podwarden_e2e::READY).unwrap();

    t.pod
        .set_resolv_conf(&format!("nameserver {}\n", SERVER.v4))
        .unwrap();
    let policy_file = t.scratch.write("policy.yaml", &policy(mode, 1)).unwrap();
    let state_dir = t.scratch.path("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    t.pod
        .exec(&[
            "chown",
            &format!("{PROXY_UID}"),
            &state_dir.display().to_string(),
        ])
        .unwrap();
    let mut w = World {
        t,
        policy_file,
        state_dir,
        cert,
        proxies: 0,
    };
    if proxy_first {
        w.start_proxy(dns_upstreams);
    }
    w.t.init(&["--dns-resolver", &SERVER.v4.to_string()])
        .unwrap();
    Some(w)
}

fn label(n: usize) -> String {
    format!("podwarden-{n}")
}

impl World {
    /// Starts (or restarts) the proxy; returns its pid.
    fn start_proxy(&mut self, dns_upstreams: &[&str]) -> u32 {
        self.proxies += 1;
        let bin = proxy_bin().unwrap().display().to_string();
        let (policy, state) = (
            self.policy_file.display().to_string(),
            self.state_dir.display().to_string(),
        );
        let mut argv = vec![
            bin.as_str(),
            "run",
            "--admin-addr",
            ADMIN,
            "--policy-file",
            &policy,
            "--state-dir",
            &state,
            "--workload",
            "shop/web",
            "--pod",
            "web-0",
        ];
        for u in dns_upstreams {
            argv.extend_from_slice(&["--dns-upstream", u]);
        }
        let pid = self
            .t
            .pod
            .spawn(&label(self.proxies), Some(PROXY_UID), &argv)
            .unwrap();
        for port in [15001, 15006, 15000] {
            self.t
                .pod
                .wait_listening(port, podwarden_e2e::PROXY_START)
                .unwrap_or_else(|e| panic!("{e:#}\n{}", self.t.logs()));
        }
        self.t
            .pod
            .wait_udp_bound(15053, podwarden_e2e::READY)
            .unwrap();
        pid
    }

    fn proxy_log(&self) -> String {
        (1..=self.proxies)
            .map(|n| self.t.pod.log_of(&label(n)))
            .collect()
    }

    /// Security events the proxy printed (JSON lines on stdout).
    fn events(&self) -> Vec<Value> {
        self.proxy_log()
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + podwarden_e2e::READY;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no event {what} after {:?}; proxy log:\n{}",
                podwarden_e2e::READY,
                self.proxy_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write_policy(&self, text: &str) {
        // Atomic replace, as a ConfigMap update does.
        let tmp = self.policy_file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.policy_file).unwrap();
    }

    /// curl as the app; Ok(body) on success, Err(stderr/status) otherwise.
    fn curl(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["curl", "-sS", "-g", "--fail", "--max-time", "30"];
        argv.extend_from_slice(args);
        let out = self.t.pod.output(Some(APP_UID), &argv).unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn dig(&self, args: &[&str]) -> String {
        let server = format!("@{}", SERVER.v4);
        let mut argv = vec!["dig", "+tries=1", "+time=10", server.as_str()];
        argv.extend_from_slice(args);
        self.t.pod.exec_as(Some(APP_UID), &argv).unwrap()
    }

    fn redis(&self, host: &str, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["timeout", "30", "redis-cli", "-h", host, "-p", "6379"];
        argv.extend_from_slice(args);
        let out = self.t.pod.output(Some(APP_UID), &argv).unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.starts_with("Could not connect") && !text.is_empty() {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn flows(&self) -> Vec<FlowRecord> {
        self.t.flows().unwrap()
    }

    /// `/metrics` as the app would scrape it (from inside the pod).
    fn metrics(&self) -> String {
        self.t
            .pod
            .exec(&[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "30",
                &format!("http://{ADMIN}/metrics"),
            ])
            .unwrap()
    }

    /// Starts the app's long-lived redis connection: a PING every 300 ms
    /// for `secs` seconds on one socket, each reply logged.
    fn start_pinger(&self, secs: u32) {
        let script = r#"
import socket, sys, time
s = socket.create_connection((sys.argv[1], 6379), timeout=30)
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    s.sendall(b"PING\r\n")
    r = s.recv(64)
    if r != b"+PONG\r\n":
        print("BROKEN", r, flush=True)
        sys.exit(1)
    n += 1
    if n == 1:
        print("CONNECTED", flush=True)
    time.sleep(0.3)
print("DONE", n, flush=True)
"#;
        let secs = secs.to_string();
        self.t
            .pod
            .spawn(
                "pinger",
                Some(APP_UID),
                &[python(), "-c", script, &SERVER.v4.to_string(), &secs],
            )
            .unwrap();
        // Its connection is up (one PING answered) before the test goes on:
        // a sleep would not be enough for a python start on a loaded machine.
        let deadline = Instant::now() + podwarden_e2e::READY;
        while !self.t.pod.log_of("pinger").contains("CONNECTED") {
            assert!(
                self.t.pod.is_running("pinger") && Instant::now() < deadline,
                "the pinger never got its first PONG: {}\n{}",
                self.t.pod.log_of("pinger"),
                self.proxy_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_pinger(&self) -> String {
        // It runs for its given seconds at most, then some slack.
        let deadline = Instant::now() + Duration::from_secs(30) + podwarden_e2e::READY;
        while self.t.pod.is_running("pinger") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        self.t.pod.log_of("pinger")
    }
}

fn is_violation_to(e: &Value, peer: &str) -> bool {
    e["kind"] == "violation" && e["peer"].as_str().is_some_and(|p| p == peer)
}

fn addr6(ip: std::net::Ipv6Addr, port: u16) -> String {
    format!("[{ip}]:{port}")
}

#[test]
fn learn_allows_and_records_everything() {
    let Some(w) = world(
        "learn_allows_and_records_everything",
        "learn",
        &[&SERVER.v4.to_string()],
    ) else {
        return;
    };
    let allowed = format!("http://{NAME}:8000/ok.txt");
    let unknown = format!("http://{}:8000/secret.txt", UNKNOWN.v4);
    assert_eq!(w.curl(&[&allowed]).unwrap(), "allowed\n");
    assert_eq!(w.curl(&[&unknown]).unwrap(), "exfiltrated\n");
    assert!(w.t.unknown.log_of("evil-web").contains("GET /secret.txt"));
    // Both recorded, both allowed; the unknown one by no rule.
    let rec =
        w.t.wait_flow("to the unknown host", |r| {
            r.flow.peer.ip() == UNKNOWN.ip(false) && r.flow.http.is_some()
        })
        .unwrap();
    assert!(rec.decision.is_allowed() && !rec.decision.would_deny);
    assert_eq!(rec.decision.rule, None);
    let ok =
        w.t.wait_flow("to the API", |r| {
            r.flow.peer.port() == 8000 && r.flow.peer_names.iter().any(|n| n == NAME)
        })
        .unwrap();
    assert_eq!(ok.decision.rule.as_deref(), Some("api"), "{ok:?}");
    assert!(ok.flow.peer_names.iter().any(|n| n == NAME));
    // Learn raises no violation or would-block events.
    std::thread::sleep(Duration::from_millis(300));
    let noisy: Vec<Value> = w
        .events()
        .into_iter()
        .filter(|e| e["kind"] == "violation" || e["kind"] == "would_block")
        .collect();
    assert!(noisy.is_empty(), "{noisy:?}");
}

#[test]
fn monitor_allows_everything_and_reports_would_block() {
    let Some(w) = world(
        "monitor_allows_everything_and_reports_would_block",
        "monitor",
        &[&SERVER.v4.to_string()],
    ) else {
        return;
    };
    let unknown = format!("http://{}:9999/secret.txt", UNKNOWN.v4);
    assert_eq!(w.curl(&[&unknown]).unwrap(), "exfiltrated\n");
    assert!(w.t.unknown.log_of("evil-9999").contains("GET /secret.txt"));
    assert_eq!(
        w.curl(&[&format!("http://{NAME}:8000/ok.txt")]).unwrap(),
        "allowed\n"
    );
    let peer = format!("{}:9999", UNKNOWN.v4);
    let e = w.wait_event("would_block for the unknown host", |e| {
        e["kind"] == "would_block" && e["peer"] == peer.as_str()
    });
    assert_eq!(e["mode"], "monitor");
    assert_eq!(e["action"], "would_block");
    assert_eq!(e["workload"], "shop/web");
    // The allowed call raised nothing.
    assert!(!w
        .events()
        .iter()
        .any(|e| e["kind"] == "would_block" && e["peer"] == format!("{}:8000", SERVER.v4)));
    // Metrics: would-deny counted under the default rule, the API under its rule.
    let m = w.metrics();
    assert!(
        m.lines()
            .any(|l| l.starts_with("podwarden_decisions_total{")
                && l.contains(r#"mode="monitor""#)
                && l.contains(r#"rule="default""#)
                && l.contains(r#"verdict="would_deny""#)),
        "{m}"
    );
    assert!(
        m.contains(r#"podwarden_rule_hits_total{rule="api"}"#),
        "{m}"
    );
}

#[test]
fn protect_blocks_what_the_policy_does_not_allow_and_lets_the_rest_work() {
    // The unknown resolver is the first upstream: the policy must keep the
    // listener from ever asking it.
    let Some(w) = world(
        "protect_blocks_what_the_policy_does_not_allow_and_lets_the_rest_work",
        "protect",
        &[&UNKNOWN.v4.to_string(), &SERVER.v4.to_string()],
    ) else {
        return;
    };
    let t = &w.t;
    let evil4 = Counter::install(&t.unknown, false, "pw-evil4", &["-p", "tcp"]).unwrap();
    let evil6 = Counter::install(&t.unknown, true, "pw-evil6", &["-p", "tcp"]).unwrap();
    let evil_dns = Counter::install(&t.unknown, false, "pw-evil-dns", &["-p", "udp"]).unwrap();

    // --- allowed traffic keeps working ---
    let a = w.dig(&["+short", NAME, "A"]);
    assert_eq!(a.trim(), SERVER.v4.to_string(), "{}", w.proxy_log());
    assert_eq!(
        w.curl(&[&format!("http://{NAME}:8000/ok.txt")]).unwrap(),
        "allowed\n"
    );
    assert_eq!(
        w.curl(&["--cacert", &w.cert, &format!("https://{NAME}:8443/")])
            .unwrap(),
        "hello over tls\n"
    );
    let host = SERVER.v4.to_string();
    assert_eq!(w.redis(&host, &["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(w.redis(&host, &["GET", "k"]).unwrap(), "v");
    assert_eq!(
        w.curl(&[&format!("http://[{}]:8000/ok.txt", SERVER.v6)])
            .unwrap(),
        "allowed\n"
    );
    // Through the allowed egress proxy, to an allowed name.
    let via_proxy = format!("http://{}:3128", SERVER.v4);
    assert_eq!(
        w.curl(&["-x", &via_proxy, &format!("http://{NAME}:8000/ok.txt")])
            .unwrap(),
        "allowed\n"
    );
    let web_log = t.server.log_of("web");
    assert!(web_log.matches("GET /ok.txt").count() >= 3, "{web_log}");
    assert!(t.server.log_of("tls").contains(&format!("SNI={NAME}")));

    // --- everything else is refused before it leaves the pod ---
    let secret4 = format!("http://{}:8000/secret.txt", UNKNOWN.v4);
    let attempts: Vec<(&str, Vec<String>)> = vec![
        ("unknown IP", vec![secret4.clone()]),
        (
            "unknown IP, other port",
            vec![format!("http://{}:9999/secret.txt", UNKNOWN.v4)],
        ),
        (
            "allowed name (Host header) at an IP its resolver never gave",
            vec![
                "--resolve".into(),
                format!("{NAME}:8000:{}", UNKNOWN.v4),
                format!("http://{NAME}:8000/secret.txt"),
            ],
        ),
        (
            "allowed name (SNI) at an IP its resolver never gave",
            vec![
                "--cacert".into(),
                w.cert.clone(),
                "--resolve".into(),
                format!("{NAME}:8443:{}", UNKNOWN.v4),
                format!("https://{NAME}:8443/"),
            ],
        ),
        (
            "CONNECT through the allowed proxy to an unknown host",
            vec!["-p".into(), "-x".into(), via_proxy.clone(), secret4.clone()],
        ),
        (
            "absolute-form GET through the allowed proxy to an unknown host",
            vec!["-x".into(), via_proxy.clone(), secret4.clone()],
        ),
        (
            "IPv6 unknown host",
            vec![format!("http://[{}]:8000/secret.txt", UNKNOWN.v6)],
        ),
    ];
    for (what, args) in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = w.curl(&args);
        assert!(r.is_err(), "{what}: got through: {r:?}");
    }
    assert!(
        w.redis(&UNKNOWN.v4.to_string(), &["PING"]).is_err(),
        "redis to an unknown host"
    );
    // Receiving side: not one TCP packet reached the unknown host, no request
    // reached its servers, and the egress proxy never saw the unknown target.
    assert_eq!(evil4.packets().unwrap(), 0, "{}", t.logs());
    assert_eq!(evil6.packets().unwrap(), 0, "{}", t.logs());
    for label in ["evil-web", "evil-9999", "evil-tls"] {
        let log = t.unknown.log_of(label);
        assert!(
            !log.contains("secret") && !log.contains("SNI="),
            "{label}: {log}"
        );
    }
    let fwd = t.server.log_of("fwd");
    assert!(!fwd.contains(&UNKNOWN.v4.to_string()), "{fwd}");

    // --- DNS: only the policy's resolver, no tunnels ---
    let refused = w.dig(&["TXT", TUNNEL_QUERY]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let dns_log = t.server.log_of("dns");
    assert!(!dns_log.contains("t.example"), "{dns_log}");
    assert!(dns_log.contains(&format!("QUERY {NAME} 1")), "{dns_log}");
    assert_eq!(
        evil_dns.packets().unwrap(),
        0,
        "a query went to the resolver the policy does not list"
    );
    assert!(t.unknown.log_of("evil-dns").is_empty());
    let tunnel = w.wait_event("dns_tunneling", |e| e["kind"] == "dns_tunneling");
    assert_eq!(tunnel["refused"], true);
    assert_eq!(
        tunnel["query"], "***.t.example",
        "the carried data is masked"
    );

    // --- each refusal is a violation event naming the peer ---
    for peer in [
        format!("{}:8000", UNKNOWN.v4),
        format!("{}:9999", UNKNOWN.v4),
        format!("{}:8443", UNKNOWN.v4),
        format!("{}:6379", UNKNOWN.v4),
        addr6(UNKNOWN.v6, 8000),
    ] {
        let e = w.wait_event(&format!("violation to {peer}"), |e| {
            is_violation_to(e, &peer)
        });
        assert_eq!(e["action"], "blocked");
        assert!(
            matches!(e["rule"].as_str(), Some("default deny" | "no rule")),
            "{e}"
        );
    }
    let proxied = w.wait_event("violation for the proxied target", |e| {
        e["kind"] == "violation"
            && e["details"]["target"]
                .as_str()
                .is_some_and(|t| t.contains(&UNKNOWN.v4.to_string()))
    });
    assert_eq!(proxied["peer"], format!("{}:3128", SERVER.v4));
    // /flows agrees: denied records for the unknown host, the API allowed by its rule.
    let flows = w.flows();
    assert!(flows
        .iter()
        .filter(|r| r.flow.peer.ip() == UNKNOWN.ip(false))
        .all(|r| !r.decision.is_allowed()));
    assert!(flows
        .iter()
        .any(|r| r.flow.direction == Direction::Outbound
            && r.decision.rule.as_deref() == Some("api")));
}

#[test]
fn mode_switch_and_broken_reload_take_effect_without_restart_or_dropping_connections() {
    let Some(w) = world(
        "mode_switch_and_broken_reload_take_effect_without_restart_or_dropping_connections",
        "monitor",
        &[&SERVER.v4.to_string()],
    ) else {
        return;
    };
    let t = &w.t;
    let unknown = format!("http://{}:8000/secret.txt", UNKNOWN.v4);
    let allowed = format!("http://{NAME}:8000/ok.txt");
    w.start_pinger(14);
    assert_eq!(w.curl(&[&unknown]).unwrap(), "exfiltrated\n", "monitor");

    // monitor → protect by rewriting the file: no restart.
    w.write_policy(&policy("protect", 2));
    let change = w.wait_event("mode change", |e| e["kind"] == "mode_change");
    assert_eq!(
        (&change["from"], &change["to"]),
        (&"monitor".into(), &"protect".into())
    );
    w.wait_event("reload ok v2", |e| {
        e["kind"] == "policy_reload" && e["result"] == "ok" && e["version"] == 2
    });
    let before = t.unknown.log_of("evil-web").matches("secret").count();
    assert!(
        w.curl(&[&unknown]).is_err(),
        "protect lets the unknown host through"
    );
    assert_eq!(w.curl(&[&allowed]).unwrap(), "allowed\n");

    // A broken file: the error is reported, protect stays in force.
    w.write_policy(
        "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nspec: [not, a, spec\n",
    );
    let err = w.wait_event("reload error", |e| {
        e["kind"] == "policy_reload" && e["result"] == "error"
    });
    assert_eq!(err["version"], 2, "the version kept in force");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|m| m.contains("policy.yaml")),
        "{err}"
    );
    assert!(
        w.curl(&[&unknown]).is_err(),
        "broken reload opened the gate"
    );
    assert_eq!(w.curl(&[&allowed]).unwrap(), "allowed\n");
    assert_eq!(
        t.unknown.log_of("evil-web").matches("secret").count(),
        before,
        "a request reached the unknown host after the switch"
    );
    let m = w.metrics();
    assert!(m.contains("podwarden_policy_last_reload_success 0"), "{m}");
    assert!(m.contains("podwarden_policy_version 2"), "{m}");

    // The redis connection opened in monitor lived through both reloads.
    let pings = w.wait_pinger();
    assert!(pings.contains("DONE"), "{pings}\n{}", w.proxy_log());
    assert!(!pings.contains("BROKEN"), "{pings}");
    assert_eq!(w.proxies, 1, "the proxy was never restarted");
}

/// promtool (Debian package `prometheus`) accepts what a live proxy serves.
#[test]
fn metrics_of_a_live_proxy_pass_promtool() {
    if !require("metrics_of_a_live_proxy_pass_promtool", &["promtool"], BIN) {
        return;
    }
    let Some(w) = world(
        "metrics_of_a_live_proxy_pass_promtool",
        "protect",
        &[&SERVER.v4.to_string()],
    ) else {
        return;
    };
    w.curl(&[&format!("http://{NAME}:8000/ok.txt")]).unwrap();
    let _ = w.curl(&[&format!("http://{}:8000/", UNKNOWN.v4)]);
    let m = w.metrics();
    for want in [
        r#"podwarden_decisions_total{direction="outbound",mode="protect",rule="api",verdict="allow"}"#,
        r#"podwarden_decisions_total{direction="outbound",mode="protect",rule="default",verdict="deny"}"#,
        r#"podwarden_rule_hits_total{rule="dns"}"#,
        r#"podwarden_rule_last_hit_timestamp_seconds{rule="api"}"#,
    ] {
        assert!(m.contains(want), "{want} missing:\n{m}");
    }
    let file = w.t.scratch.write("metrics.txt", &m).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 9, "no enforcement gap": with the proxy killed, the REDIRECT rules
/// point at a closed port, so new connections are refused (not let through);
/// a restarted proxy restores what the pod resolved, so an FQDN rule allows
/// the next call at once, without a new DNS query.
#[test]
fn killed_proxy_refuses_new_connections_and_restart_keeps_learned_names() {
    let Some(mut w) = world(
        "killed_proxy_refuses_new_connections_and_restart_keeps_learned_names",
        "protect",
        &[&SERVER.v4.to_string()],
    ) else {
        return;
    };
    let allowed = format!("http://{NAME}:8000/ok.txt");
    assert_eq!(w.curl(&[&allowed]).unwrap(), "allowed\n");
    // The binding is saved soon after the answer (the proxy saves every second).
    let saved = w.state_dir.join("dns-names.json");
    let deadline = Instant::now() + podwarden_e2e::READY;
    while !std::fs::read_to_string(&saved).is_ok_and(|s| s.contains(NAME)) {
        assert!(
            Instant::now() < deadline,
            "names never saved\n{}",
            w.proxy_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.start_pinger(30);

    // kill -9 mid-traffic.
    let pid =
        w.t.pod
            .exec(&["ss", "-ltnpH", "sport = :15001"])
            .unwrap()
            .split("pid=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .map(str::to_string)
            .expect("the proxy's pid");
    w.t.pod.exec(&["kill", "-9", &pid]).unwrap();
    let syn = Counter::install(
        &w.t.server,
        false,
        "pw-syn-8000",
        &["-p", "tcp", "--dport", "8000", "--syn"],
    )
    .unwrap();
    let served = w.t.server.log_of("web").matches("GET /ok.txt").count();
    let pinned = format!("{NAME}:8000:{}", SERVER.v4);
    for _ in 0..3 {
        let r = w.curl(&["--resolve", &pinned, &allowed]);
        assert!(r.is_err(), "a connection got through with no proxy: {r:?}");
    }
    assert!(
        w.redis(&SERVER.v4.to_string(), &["PING"]).is_err(),
        "redis got through with no proxy"
    );
    assert_eq!(
        syn.packets().unwrap(),
        0,
        "SYNs reached the server unproxied"
    );
    assert_eq!(
        w.t.server.log_of("web").matches("GET /ok.txt").count(),
        served
    );
    let pings = w.wait_pinger();
    assert!(
        !pings.contains("DONE"),
        "the redis connection outlived the proxy?"
    );

    // Restart: the FQDN rule works at once, with no new query.
    let queries =
        w.t.server
            .log_of("dns")
            .matches(&format!("QUERY {NAME} 1 "))
            .count();
    w.start_proxy(&[&SERVER.v4.to_string()]);
    assert_eq!(
        w.curl(&["--resolve", &pinned, &allowed]).unwrap(),
        "allowed\n",
        "{}",
        w.proxy_log()
    );
    assert_eq!(
        w.t.server
            .log_of("dns")
            .matches(&format!("QUERY {NAME} 1 "))
            .count(),
        queries,
        "the restarted proxy needed a new DNS query"
    );
    let rec =
        w.t.wait_flow("the call after the restart", |r| {
            r.flow.peer.port() == 8000 && r.decision.rule.as_deref() == Some("api")
        })
        .unwrap();
    assert!(rec.flow.peer_names.iter().any(|n| n == NAME));
}

/// Issue 9: in a pod, `init` runs before the proxy. Until the proxy listens,
/// the app's connections are refused (checked on the server: no SYN arrives),
/// and once it is ready the policy decides.
#[test]
fn connections_before_the_proxy_is_ready_are_refused() {
    let Some(mut w) = world_with(
        "connections_before_the_proxy_is_ready_are_refused",
        "protect",
        &[&SERVER.v4.to_string()],
        false,
    ) else {
        return;
    };
    let syn =
        Counter::install(&w.t.server, false, "pw-early-syn", &["-p", "tcp", "--syn"]).unwrap();
    let host = SERVER.v4.to_string();
    let pinned = format!("{NAME}:8000:{}", SERVER.v4);
    let url = format!("http://{NAME}:8000/ok.txt");
    assert!(w.curl(&["--resolve", &pinned, &url]).is_err());
    assert!(w.redis(&host, &["PING"]).is_err());
    assert_eq!(
        syn.packets().unwrap(),
        0,
        "SYNs left the pod before the proxy was ready"
    );
    assert!(!w.t.server.log_of("web").contains("GET /ok.txt"));

    w.start_proxy(&[&host]);
    assert_eq!(w.redis(&host, &["PING"]).unwrap(), "PONG");
    assert_eq!(w.curl(&[&url]).unwrap(), "allowed\n");
    assert!(w.t.server.log_of("web").contains("GET /ok.txt"));
}
