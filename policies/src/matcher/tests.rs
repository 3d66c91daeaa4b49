use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::flow::{Action, ProcessInfo};
use crate::load::load_policy_str;

const POLICY: &str = r#"
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: shop/checkout, version: 7 }
spec:
  mode: protect
  rules:
    - id: out-payments
      direction: outbound
      peer: { fqdn: api.payments.example }
      ports: ["443"]
      protocols: [tls]
      processes: [/usr/local/bin/checkout]
    - id: out-cdn
      direction: outbound
      peer: { fqdn: "*.cdn.example" }
      ports: ["443", "8000-8100"]
    - id: out-db-narrow
      direction: outbound
      peer: { cidr: 198.51.100.10/32 }
      ports: ["5432"]
    - id: out-db-wide
      direction: outbound
      peer: { cidr: 198.51.100.0/24 }
      ports: ["6379"]
    - id: out-v6
      direction: outbound
      peer: { cidr: "2001:db8:1::/48" }
      ports: ["9000-9100"]
    - id: out-v6-host
      direction: outbound
      peer: { cidr: "2001:db8:1::5/128" }
      ports: ["22"]
    - id: out-proxy
      direction: outbound
      peer: { cidr: 203.0.113.50/32 }
      ports: ["3128"]
      http: { methods: [CONNECT, GET] }
    - id: out-api-http
      direction: outbound
      peer: { fqdn: api.partner.example }
      ports: ["80"]
      protocols: [http]
      http:
        hosts: [api.partner.example]
        methods: [GET]
        paths: ["/v1/users/{id}/orders", "/static/*"]
    - id: in-web
      direction: inbound
      peer: { cidr: 192.0.2.0/24 }
      ports: ["8080"]
      http: { paths: ["/healthz", "/api/*"] }
    - id: in-admin-v6
      direction: inbound
      peer: { cidr: "2001:db8:ad::/64" }
      ports: ["9090"]
    - id: out-dns
      direction: outbound
      peer: any
      ports: ["53"]
      protocols: [dns]
"#;

fn policy() -> CompiledPolicy {
    CompiledPolicy::compile(&load_policy_str(POLICY, "test.yaml").unwrap()).unwrap()
}

fn out(peer: &str) -> Flow {
    Flow::connection(
        Direction::Outbound,
        peer.parse().unwrap(),
        "10.0.0.2:40000".parse().unwrap(),
    )
}

fn inbound(client: &str, port: u16) -> Flow {
    let local: SocketAddr = format!("10.0.0.2:{port}").parse().unwrap();
    Flow::connection(Direction::Inbound, client.parse().unwrap(), local)
}

fn with(mut f: Flow, p: AppProtocol, names: &[&str]) -> Flow {
    f.protocol = p;
    f.peer_names = names.iter().map(|s| s.to_string()).collect();
    f
}

fn proc(mut f: Flow, exe: &str) -> Flow {
    f.process = Some(ProcessInfo {
        pid: 1,
        exe: exe.into(),
        cmdline: vec![],
        uid: 0,
    });
    f
}

fn http(mut f: Flow, method: &str, host: Option<&str>, path: &str, target: Option<&str>) -> Flow {
    f.http = Some(HttpRequestInfo {
        method: method.into(),
        host: host.map(Into::into),
        path: path.into(),
        target: target.map(Into::into),
    });
    f
}

#[test]
fn table_of_flows() {
    let p = policy();
    let cases: Vec<(&str, Flow, Option<&str>)> = vec![
        // FQDN exact, with process.
        (
            "fqdn+process",
            proc(
                with(
                    out("198.51.100.77:443"),
                    AppProtocol::Tls,
                    &["api.payments.example"],
                ),
                "/usr/local/bin/checkout",
            ),
            Some("out-payments"),
        ),
        (
            "fqdn name case/dot",
            proc(
                with(
                    out("198.51.100.77:443"),
                    AppProtocol::Tls,
                    &["API.Payments.Example."],
                ),
                "/usr/local/bin/checkout",
            ),
            Some("out-payments"),
        ),
        (
            "wrong process",
            proc(
                with(
                    out("198.51.100.77:443"),
                    AppProtocol::Tls,
                    &["api.payments.example"],
                ),
                "/usr/bin/curl",
            ),
            None,
        ),
        (
            "unknown process",
            with(
                out("198.51.100.77:443"),
                AppProtocol::Tls,
                &["api.payments.example"],
            ),
            None,
        ),
        (
            "wrong protocol",
            proc(
                with(
                    out("198.51.100.77:443"),
                    AppProtocol::Opaque,
                    &["api.payments.example"],
                ),
                "/usr/local/bin/checkout",
            ),
            None,
        ),
        (
            "wrong port",
            proc(
                with(
                    out("198.51.100.77:8443"),
                    AppProtocol::Tls,
                    &["api.payments.example"],
                ),
                "/usr/local/bin/checkout",
            ),
            None,
        ),
        // SNI alone is no proof.
        (
            "sni to unknown ip",
            {
                let mut f = proc(
                    with(out("203.0.113.9:443"), AppProtocol::Tls, &[]),
                    "/usr/local/bin/checkout",
                );
                f.sni = Some("api.payments.example".into());
                f
            },
            None,
        ),
        // Wildcard FQDN and port ranges.
        (
            "wildcard sub",
            with(
                out("198.51.100.80:443"),
                AppProtocol::Tls,
                &["img.cdn.example"],
            ),
            Some("out-cdn"),
        ),
        (
            "wildcard deep",
            with(
                out("198.51.100.80:8050"),
                AppProtocol::Opaque,
                &["a.b.cdn.example"],
            ),
            Some("out-cdn"),
        ),
        (
            "wildcard range end",
            with(
                out("198.51.100.80:8100"),
                AppProtocol::Opaque,
                &["a.cdn.example"],
            ),
            Some("out-cdn"),
        ),
        (
            "wildcard range past",
            with(
                out("198.51.100.80:8101"),
                AppProtocol::Opaque,
                &["a.cdn.example"],
            ),
            None,
        ),
        (
            "wildcard apex",
            with(out("198.51.100.80:443"), AppProtocol::Tls, &["cdn.example"]),
            None,
        ),
        (
            "wildcard lookalike",
            with(
                out("198.51.100.80:443"),
                AppProtocol::Tls,
                &["badcdn.example"],
            ),
            None,
        ),
        (
            "second name proves",
            with(
                out("198.51.100.80:443"),
                AppProtocol::Tls,
                &["other.example", "x.cdn.example"],
            ),
            Some("out-cdn"),
        ),
        // Overlapping CIDRs with different ports.
        (
            "narrow cidr port",
            out("198.51.100.10:5432"),
            Some("out-db-narrow"),
        ),
        (
            "wide cidr port on narrow host",
            out("198.51.100.10:6379"),
            Some("out-db-wide"),
        ),
        (
            "narrow port outside narrow host",
            out("198.51.100.11:5432"),
            None,
        ),
        ("wide cidr", out("198.51.100.11:6379"), Some("out-db-wide")),
        ("outside cidr", out("198.51.101.11:6379"), None),
        (
            "v4-mapped v6",
            out("[::ffff:198.51.100.11]:6379"),
            Some("out-db-wide"),
        ),
        // IPv6.
        ("v6 range", out("[2001:db8:1::1]:9050"), Some("out-v6")),
        ("v6 outside", out("[2001:db8:2::1]:9050"), None),
        (
            "v6 host port",
            out("[2001:db8:1::5]:22"),
            Some("out-v6-host"),
        ),
        ("v6 host port other ip", out("[2001:db8:1::6]:22"), None),
        // Any peer.
        (
            "dns anywhere",
            with(out("192.0.2.53:53"), AppProtocol::Dns, &[]),
            Some("out-dns"),
        ),
        ("opaque on 53", out("192.0.2.53:53"), None),
        // Inbound.
        (
            "inbound web",
            with(inbound("192.0.2.10:50000", 8080), AppProtocol::Http, &[]),
            Some("in-web"),
        ),
        (
            "inbound wrong client",
            with(inbound("198.51.100.10:50000", 8080), AppProtocol::Http, &[]),
            None,
        ),
        (
            "inbound wrong port",
            with(inbound("192.0.2.10:50000", 8081), AppProtocol::Http, &[]),
            None,
        ),
        (
            "inbound v6",
            inbound("[2001:db8:ad::7]:50000", 9090),
            Some("in-admin-v6"),
        ),
        ("inbound is not outbound", out("192.0.2.10:8080"), None),
        (
            "inbound path ok",
            http(
                with(inbound("192.0.2.10:50000", 8080), AppProtocol::Http, &[]),
                "GET",
                Some("app"),
                "/api/v1/x",
                None,
            ),
            Some("in-web"),
        ),
        (
            "inbound path outside",
            http(
                with(inbound("192.0.2.10:50000", 8080), AppProtocol::Http, &[]),
                "GET",
                Some("app"),
                "/admin",
                None,
            ),
            None,
        ),
        (
            "inbound traversal",
            http(
                with(inbound("192.0.2.10:50000", 8080), AppProtocol::Http, &[]),
                "GET",
                Some("app"),
                "/api/../admin",
                None,
            ),
            None,
        ),
        // HTTP narrowing: host, method, template.
        (
            "http template",
            http(
                with(
                    out("198.51.100.90:80"),
                    AppProtocol::Http,
                    &["api.partner.example"],
                ),
                "GET",
                Some("api.partner.example"),
                "/v1/users/42/orders",
                None,
            ),
            Some("out-api-http"),
        ),
        (
            "http host with port",
            http(
                with(
                    out("198.51.100.90:80"),
                    AppProtocol::Http,
                    &["api.partner.example"],
                ),
                "GET",
                Some("api.partner.example:80"),
                "/static/a.js",
                None,
            ),
            Some("out-api-http"),
        ),
        (
            "http template outside",
            http(
                with(
                    out("198.51.100.90:80"),
                    AppProtocol::Http,
                    &["api.partner.example"],
                ),
                "GET",
                Some("api.partner.example"),
                "/v1/users/42",
                None,
            ),
            None,
        ),
        (
            "http method",
            http(
                with(
                    out("198.51.100.90:80"),
                    AppProtocol::Http,
                    &["api.partner.example"],
                ),
                "POST",
                Some("api.partner.example"),
                "/v1/users/42/orders",
                None,
            ),
            None,
        ),
        (
            "http wrong host",
            http(
                with(
                    out("198.51.100.90:80"),
                    AppProtocol::Http,
                    &["api.partner.example"],
                ),
                "GET",
                Some("evil.example"),
                "/static/a",
                None,
            ),
            None,
        ),
        (
            "http host is not proof",
            http(
                with(out("203.0.113.1:80"), AppProtocol::Http, &[]),
                "GET",
                Some("api.partner.example"),
                "/static/a",
                None,
            ),
            None,
        ),
        (
            "http conn level",
            with(
                out("198.51.100.90:80"),
                AppProtocol::Http,
                &["api.partner.example"],
            ),
            Some("out-api-http"),
        ),
        // Proxies: CONNECT / absolute-form targets are destinations too.
        (
            "connect to allowed name",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("x.cdn.example:443"),
            ),
            Some("out-proxy"),
        ),
        (
            "connect to unknown host",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("evil.example:443"),
            ),
            None,
        ),
        (
            "connect to allowed name, wrong port",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("x.cdn.example:22"),
            ),
            None,
        ),
        (
            "connect to allowed ip",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("198.51.100.10:5432"),
            ),
            Some("out-proxy"),
        ),
        (
            "connect to unknown ip",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("192.0.2.99:443"),
            ),
            None,
        ),
        (
            "connect ip does not prove name",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("198.51.100.77:443"),
            ),
            None,
        ),
        (
            "connect without port",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("x.cdn.example"),
            ),
            None,
        ),
        (
            "connect into path-restricted rule",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("api.partner.example:80"),
            ),
            None,
        ),
        (
            "absolute-form allowed",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "GET",
                Some("api.partner.example"),
                "/static/x",
                Some("http://api.partner.example/static/x"),
            ),
            Some("out-proxy"),
        ),
        (
            "absolute-form unknown",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "GET",
                Some("evil.example"),
                "/",
                Some("http://evil.example/"),
            ),
            None,
        ),
        (
            "absolute-form userinfo",
            http(
                with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
                "GET",
                None,
                "/static/x",
                Some("http://api.partner.example@evil.example/static/x"),
            ),
            None,
        ),
        (
            "connect from disallowed proxy",
            http(
                with(out("203.0.113.51:3128"), AppProtocol::Http, &[]),
                "CONNECT",
                None,
                "",
                Some("x.cdn.example:443"),
            ),
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, flow, want) in &cases {
        let d = p.decide(flow);
        if d.rule.as_deref() != *want {
            failures.push(format!("{name}: got {:?}, want {want:?}", d.rule));
        }
        assert_eq!(d.mode, Mode::Protect);
        assert_eq!(d.action == Action::Allow, want.is_some(), "{name}");
        // explain agrees with decide.
        let e = p.explain(flow);
        assert_eq!(e.matched.as_deref(), *want, "explain {name}");
        assert_eq!(e.violation.is_some(), want.is_none(), "explain {name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn first_rule_in_document_order_wins() {
    let y = r#"
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: a/b }
spec:
  mode: protect
  rules:
    - { id: late-any, direction: outbound, peer: any, ports: ["1-65535"] }
    - { id: host, direction: outbound, peer: { cidr: 192.0.2.1/32 } }
"#;
    let p = CompiledPolicy::compile(&load_policy_str(y, "t").unwrap()).unwrap();
    assert_eq!(
        p.decide(&out("192.0.2.1:80")).rule.as_deref(),
        Some("late-any")
    );
}

#[test]
fn modes_from_features() {
    let base = POLICY.replace(
        "mode: protect",
        "mode: protect\n  features: { network: monitor }",
    );
    let p = CompiledPolicy::compile(&load_policy_str(&base, "t").unwrap()).unwrap();
    assert_eq!(p.mode(), Mode::Monitor);
    let d = p.decide(&out("192.0.2.200:1"));
    assert_eq!(
        (d.action, d.would_deny, d.rule),
        (Action::Allow, true, None)
    );
    let d = p.decide(&out("198.51.100.11:6379"));
    assert_eq!(
        (d.action, d.would_deny, d.rule.as_deref()),
        (Action::Allow, false, Some("out-db-wide"))
    );

    let learn = POLICY.replace("mode: protect", "mode: learn");
    let p = CompiledPolicy::compile(&load_policy_str(&learn, "t").unwrap()).unwrap();
    let d = p.decide(&out("192.0.2.200:1"));
    assert_eq!(
        (d.action, d.would_deny, d.mode),
        (Action::Allow, false, Mode::Learn)
    );
}

#[test]
fn process_baseline_is_enforced_before_rules() {
    let y = format!("{POLICY}  processes:\n    - exe: /usr/local/bin/checkout\n");
    let p = CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap();
    let allowed_dest = out("198.51.100.11:6379");
    assert_eq!(
        p.decide(&proc(allowed_dest.clone(), "/usr/local/bin/checkout"))
            .rule
            .as_deref(),
        Some("out-db-wide")
    );
    let d = p.decide(&proc(allowed_dest.clone(), "/tmp/miner"));
    assert_eq!((d.action, d.rule), (Action::Deny, None));
    let e = p.explain(&proc(allowed_dest.clone(), "/tmp/miner"));
    assert_eq!(
        e.violation,
        Some(Violation::ProcessNotInBaseline {
            exe: "/tmp/miner".into()
        })
    );
    // Unknown process: judged by the rules only.
    assert_eq!(p.decide(&allowed_dest).rule.as_deref(), Some("out-db-wide"));
}

#[test]
fn explain_names_near_misses_and_reasons() {
    let p = policy();
    // SNI names an allowed host but the IP was never resolved for it.
    let mut f = proc(
        with(out("203.0.113.9:443"), AppProtocol::Tls, &[]),
        "/usr/local/bin/checkout",
    );
    f.sni = Some("api.payments.example".into());
    let e = p.explain(&f);
    assert_eq!(e.decision.action, Action::Deny);
    let first = &e.near_misses[0];
    assert_eq!(first.rule, "out-payments");
    assert_eq!(
        first.reasons,
        vec![Mismatch::NameNotResolved {
            pattern: "api.payments.example".into(),
            peer_names: vec![],
            claimed: Some("api.payments.example".into()),
        }]
    );
    assert!(first.reasons[0].to_string().contains("not proof"));

    // Port just outside a range.
    let e = p.explain(&with(
        out("198.51.100.80:8101"),
        AppProtocol::Opaque,
        &["a.cdn.example"],
    ));
    assert_eq!(e.near_misses[0].rule, "out-cdn");
    assert!(matches!(
        e.near_misses[0].reasons[..],
        [Mismatch::Port { port: 8101, .. }]
    ));

    // Template path.
    let f = http(
        with(inbound("192.0.2.10:50000", 8080), AppProtocol::Http, &[]),
        "GET",
        None,
        "/admin",
        None,
    );
    let e = p.explain(&f);
    assert_eq!(e.near_misses[0].rule, "in-web");
    assert_eq!(
        e.near_misses[0].reasons,
        vec![Mismatch::HttpPath {
            path: "/admin".into()
        }]
    );

    // CONNECT to an unknown host: the proxy rule matched, the target did not.
    let f = http(
        with(out("203.0.113.50:3128"), AppProtocol::Http, &[]),
        "CONNECT",
        None,
        "",
        Some("evil.example:443"),
    );
    let e = p.explain(&f);
    assert!(
        matches!(&e.violation, Some(Violation::TargetNotAllowed { rule, .. }) if rule == "out-proxy")
    );
    let json = serde_json::to_string(&e).unwrap();
    assert!(json.contains("target_not_allowed"), "{json}");
}

#[test]
fn compile_rejects_invalid_documents() {
    let mut doc = load_policy_str(POLICY, "t").unwrap();
    doc.spec.rules[1].id = "out-payments".into();
    let e = CompiledPolicy::compile(&doc).unwrap_err();
    assert!(
        e.to_string()
            .contains("spec.rules[1].id: duplicate rule id"),
        "{e}"
    );
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    let ip = prop_oneof![
        any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
        any::<[u8; 16]>().prop_map(std::net::IpAddr::from),
        Just("198.51.100.10".parse().unwrap()),
        Just("2001:db8:1::5".parse().unwrap()),
        Just("203.0.113.50".parse().unwrap()),
    ];
    let port = prop_oneof![any::<u16>(), Just(443u16), Just(3128), Just(8080), Just(80)];
    let proto = prop_oneof![
        Just(AppProtocol::Http),
        Just(AppProtocol::Http2),
        Just(AppProtocol::Tls),
        Just(AppProtocol::Dns),
        Just(AppProtocol::Opaque)
    ];
    let name = prop_oneof![
        "[a-zA-Z0-9.*-]{0,40}",
        Just("x.cdn.example".to_string()),
        Just("api.partner.example".to_string()),
        ".*",
    ];
    let req = proptest::option::of((
        prop_oneof![
            Just("GET".to_string()),
            Just("CONNECT".to_string()),
            "[A-Za-z]{0,8}"
        ],
        proptest::option::of(name.clone()),
        prop_oneof![Just("/static/x".to_string()), "/[a-z/{}.%]{0,30}", ".*"],
        proptest::option::of(prop_oneof![
            ".*",
            "[a-z.:/@\\[\\]0-9]{0,40}",
            Just("x.cdn.example:443".to_string())
        ]),
    ));
    (
        any::<bool>(),
        ip,
        port,
        proto,
        proptest::collection::vec(name.clone(), 0..3),
        req,
        proptest::option::of(name),
        any::<bool>(),
    )
        .prop_map(|(inb, ip, port, protocol, names, req, sni, with_proc)| {
            let dir = if inb {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            let mut f = Flow::connection(dir, SocketAddr::new(ip, port), SocketAddr::new(ip, port));
            f.protocol = protocol;
            f.peer_names = names;
            f.sni = sni;
            f.http = req.map(|(method, host, path, target)| HttpRequestInfo {
                method,
                host,
                path,
                target,
            });
            if with_proc {
                f.process = Some(ProcessInfo {
                    pid: 1,
                    exe: "/usr/local/bin/checkout".into(),
                    cmdline: vec![],
                    uid: 0,
                });
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn decide_never_panics_and_explain_agrees(flow in arb_flow()) {
        let p = policy();
        let d = p.decide(&flow);
        let e = p.explain(&flow);
        prop_assert_eq!(&e.decision, &d);
        prop_assert_eq!(e.matched, d.rule.clone());
        // The index names the same rule as the id.
        let (di, idx) = p.decide_indexed(&flow);
        prop_assert_eq!(&di, &d);
        let ids: Vec<&str> = p.rule_ids().collect();
        prop_assert_eq!(idx.map(|i| ids[i]), d.rule.as_deref());
        // A match is a match of a rule for that direction.
        if let Some(r) = &d.rule {
            let rule = p.rules.iter().find(|x| &x.id == r).unwrap();
            prop_assert_eq!(rule.direction, flow.direction);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn allowing_rule_is_the_decisions_rule(flow in arb_flow()) {
        let p = policy();
        let d = p.decide(&flow);
        prop_assert_eq!(p.allowing_rule(&flow), d.rule.as_deref());
    }
}

#[test]
fn allowing_rule_names_every_rule_of_the_policy() {
    let p = policy();
    for (i, id) in p.rule_ids().enumerate() {
        assert_eq!(p.id_text.get(i as RuleIdx), id);
    }
    assert_eq!(p.id_text.get(p.rule_count() as RuleIdx), "");
}

#[test]
fn uses_processes_when_a_rule_or_the_baseline_names_one() {
    // POLICY's out-payments rule lists a process.
    assert!(policy().uses_processes());
    let no_rule_process = POLICY.replace("      processes: [/usr/local/bin/checkout]\n", "");
    let p = CompiledPolicy::compile(&load_policy_str(&no_rule_process, "t").unwrap()).unwrap();
    assert!(!p.uses_processes());
    let baseline = format!("{no_rule_process}  processes:\n    - exe: /usr/local/bin/checkout\n");
    let p = CompiledPolicy::compile(&load_policy_str(&baseline, "t").unwrap()).unwrap();
    assert!(p.uses_processes());
}
