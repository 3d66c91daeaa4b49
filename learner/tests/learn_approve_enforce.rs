//! The learner's contract with the policy engine, without sockets: learn a
//! realistic mix, approve it, compile it in protect mode; the same kind of
//! traffic (new ids, new client ports, other IPs behind the same names,
//! other replicas of a client) passes with zero violations, and every
//! anomaly is denied.

use podwarden_learner::{LearnerConfig, Selection, Store};
use podwarden_policy::{
    Action, AppProtocol, CompiledPolicy, Decide, Decision, Direction, Flow, FlowRecord,
    HttpRequestInfo, Mode, ProcessInfo, RecordKind,
};

struct F(Flow);

fn out(peer: &str, port: u16, proto: AppProtocol) -> F {
    let local = format!("10.0.0.5:{port}").parse().unwrap();
    let mut f = Flow::connection(Direction::Outbound, peer.parse().unwrap(), local);
    f.protocol = proto;
    F(f).by("/usr/local/bin/checkout")
}

fn inb(client: &str, proto: AppProtocol) -> F {
    let mut f = Flow::connection(
        Direction::Inbound,
        client.parse().unwrap(),
        "10.0.0.5:8080".parse().unwrap(),
    );
    f.protocol = proto;
    F(f).by("/usr/local/bin/checkout")
}

impl F {
    fn named(mut self, n: &str) -> F {
        self.0.peer_names = vec![n.to_string()];
        self
    }
    fn by(mut self, exe: &str) -> F {
        self.0.process = Some(ProcessInfo {
            pid: 9,
            exe: exe.into(),
            cmdline: vec![],
            uid: 1000,
        });
        self
    }
    fn sni(mut self, s: &str) -> F {
        self.0.sni = Some(s.into());
        self
    }
    fn req(mut self, m: &str, host: Option<&str>, path: &str) -> F {
        self.0.http = Some(HttpRequestInfo {
            method: m.into(),
            host: host.map(String::from),
            path: path.into(),
            target: None,
        });
        self
    }
    fn record(&self) -> FlowRecord {
        FlowRecord {
            id: "r".into(),
            start_ms: 1_700_000_000_000,
            duration_ms: 1,
            flow: self.0.clone(),
            bytes_sent: 1,
            bytes_received: 1,
            decision: Decision::allow_learning(),
            kind: if self.0.http.is_some() {
                RecordKind::Request
            } else {
                RecordKind::Connection
            },
            status: None,
        }
    }
}

/// Normal traffic; `n` varies ids, client ports, IPs behind names, clients.
fn normal(n: u16) -> Vec<F> {
    let ip = |base: u8| format!("192.0.2.{}", base + (n % 5) as u8);
    let eph = 40000 + n;
    vec![
        out(&format!("{}:443", ip(10)), eph, AppProtocol::Tls)
            .named("api.payments.example")
            .sni("api.payments.example"),
        out(&format!("{}:80", ip(20)), eph, AppProtocol::Http).named("users.example"),
        out(&format!("{}:80", ip(20)), eph, AppProtocol::Http)
            .named("users.example")
            .req(
                "GET",
                Some("users.example"),
                &format!("/users/{}", 1000 + n),
            ),
        out(&format!("{}:80", ip(20)), eph, AppProtocol::Http)
            .named("users.example")
            .req(
                "POST",
                Some("users.example"),
                &format!("/users/{}/orders", n),
            ),
        out("10.0.3.4:6379", eph, AppProtocol::Opaque),
        out("10.96.0.10:53", eph, AppProtocol::Dns),
        inb(
            &format!("10.1.2.{}:{}", 3 + n % 2, 50000 + n),
            AppProtocol::Http,
        ),
        inb(
            &format!("10.1.2.{}:{}", 3 + n % 2, 50000 + n),
            AppProtocol::Http,
        )
        .req("POST", Some("checkout"), &format!("/orders/{}", 7000 + n)),
    ]
}

#[test]
fn learned_policy_allows_normal_and_denies_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "shop/checkout").unwrap();
    let mut l = store
        .load_learner(Some(LearnerConfig::new("shop/checkout")))
        .unwrap();
    for n in 0..20 {
        for f in normal(n) {
            l.ingest(&f.record());
        }
    }
    store.save_learner(&l).unwrap();
    let policy = store
        .approve(&Selection::All, "secops", Some(Mode::Protect))
        .unwrap();
    let compiled = CompiledPolicy::compile(&policy).expect("learned policy compiles");
    // the file the store wrote passes the policy loader's validation too
    let loaded = podwarden_policy::load_policy_file(&store.policy_path(1))
        .unwrap_or_else(|e| panic!("stored policy does not load: {e}"));
    assert_eq!(loaded, policy);
    let baseline = podwarden_policy::load_policy_file(&store.baseline_path())
        .unwrap_or_else(|e| panic!("stored baseline does not load: {e}"));
    assert_eq!(
        baseline.spec.rules.len(),
        store.baseline().unwrap().spec.rules.len()
    );

    // replay with values never seen while learning
    for n in 100..130 {
        for f in normal(n) {
            let d = compiled.decide(&f.0);
            assert_eq!(
                d.action,
                Action::Allow,
                "normal flow denied: {:?}\n{:#?}",
                f.0,
                policy.spec.rules
            );
        }
    }

    let anomalies = [
        (
            "new external IP",
            out("203.0.113.66:443", 41000, AppProtocol::Tls),
        ),
        (
            "known host, new port",
            out("192.0.2.10:8443", 41000, AppProtocol::Tls).named("api.payments.example"),
        ),
        (
            "new process",
            out("192.0.2.10:443", 41000, AppProtocol::Tls)
                .named("api.payments.example")
                .by("/usr/bin/curl"),
        ),
        (
            "new path",
            out("192.0.2.20:80", 41000, AppProtocol::Http)
                .named("users.example")
                .req("GET", Some("users.example"), "/admin"),
        ),
        (
            "new method on a known path",
            out("192.0.2.20:80", 41000, AppProtocol::Http)
                .named("users.example")
                .req("DELETE", Some("users.example"), "/users/5"),
        ),
        (
            "name never seen",
            out("192.0.2.10:443", 41000, AppProtocol::Tls).named("evil.example"),
        ),
        (
            "new inbound client network",
            inb("10.9.9.9:5000", AppProtocol::Http),
        ),
    ];
    for (what, f) in anomalies {
        let d = compiled.decide(&f.0);
        assert_eq!(d.action, Action::Deny, "{what} allowed by {:?}", d.rule);
    }
}
