use super::*;
use crate::learn::{Learner, LearnerConfig};
use crate::testutil::{dns, inb, out, RecExt};
use podwarden_policy::model::{AllowedNames, DocumentKind, HttpMatch};
use podwarden_policy::AppProtocol;

fn baseline(f: impl Fn(&mut Learner)) -> PolicyDocument {
    let mut l = Learner::new(LearnerConfig::new("shop/checkout")).unwrap();
    f(&mut l);
    l.baseline()
}

fn as_policy(mut d: PolicyDocument, version: u64) -> PolicyDocument {
    d.kind = DocumentKind::WorkloadPolicy;
    d.metadata.version = version;
    d
}

fn kinds(d: &BaselineDiff) -> Vec<(ChangeKind, String)> {
    d.entries.iter().map(|e| (e.change, e.id.clone())).collect()
}

/// The DNS name entries only.
fn dns_kinds(d: &BaselineDiff) -> Vec<(ChangeKind, String)> {
    kinds(d)
        .into_iter()
        .filter(|(_, id)| id.starts_with("dns:"))
        .collect()
}

#[test]
fn nothing_approved_means_everything_is_added_with_risks() {
    let b = baseline(|l| {
        l.ingest(&out("203.0.113.7:4444", 1, AppProtocol::Opaque).by("/usr/bin/nc"));
        l.ingest(&inb("10.0.0.9:5000", 8080, AppProtocol::Opaque).by("/app"));
    });
    let d = diff(&b, None, &Rejections::default());
    assert_eq!(d.policy_version, None);
    let ext = d
        .entries
        .iter()
        .find(|e| e.id == "out-opaque-203.0.113.7-4444")
        .unwrap();
    assert_eq!(ext.change, ChangeKind::Added);
    assert!(ext.risks.contains(&RiskHint::ExternalIpWithoutName {
        ip: "203.0.113.7/32".into()
    }));
    assert!(
        !ext.risks
            .iter()
            .any(|r| matches!(r, RiskHint::NewProcess { .. })),
        "said once, on the process entry"
    );
    let nc = d
        .entries
        .iter()
        .find(|e| e.id == "process:/usr/bin/nc")
        .unwrap();
    assert_eq!(
        nc.risks,
        vec![RiskHint::NewProcess {
            exe: "/usr/bin/nc".into()
        }]
    );
    let inbound = d.entries.iter().find(|e| e.id.starts_with("in-")).unwrap();
    assert!(inbound.risks.contains(&RiskHint::NewInboundExposure {
        port: "8080".into()
    }));
    assert_eq!(
        d.entries
            .iter()
            .filter(|e| e.change == ChangeKind::ProcessAdded)
            .count(),
        2
    );
    let text = render_text(&d);
    assert!(text.contains("+ out-opaque-203.0.113.7-4444"), "{text}");
    assert!(
        text.contains("! risk: external IP 203.0.113.7/32 without a DNS name"),
        "{text}"
    );
    assert!(
        text.contains("example: 10.0.0.5:1 -> 203.0.113.7:4444 opaque by /usr/bin/nc"),
        "{text}"
    );
}

#[test]
fn same_traffic_again_is_unchanged_and_unseen_policy_is_dropped() {
    let learn = |l: &mut Learner| {
        l.ingest(
            &out("192.0.2.1:443", 1, AppProtocol::Tls)
                .named(&["api.example"])
                .by("/app"),
        );
    };
    let mut policy = as_policy(baseline(learn), 3);
    policy.spec.rules.push(Rule {
        id: "out-legacy".into(),
        note: String::new(),
        direction: Direction::Outbound,
        peer: Peer::Fqdn("legacy.example".into()),
        ports: vec![PortSpec::single(443)],
        protocols: vec![],
        http: None,
        processes: vec![],
        evidence: None,
    });
    let d = diff(&baseline(learn), Some(&policy), &Rejections::default());
    assert_eq!(d.unchanged, 1);
    assert_eq!(
        kinds(&d),
        vec![(ChangeKind::Dropped, "out-legacy".to_string())]
    );
    assert_eq!(d.proposals().count(), 0);
}

#[test]
fn new_process_and_new_path_widen_the_existing_rule() {
    let base = || out("192.0.2.1:80", 1, AppProtocol::Http).named(&["users.example"]);
    let policy = as_policy(
        baseline(|l| {
            l.ingest(
                &base()
                    .by("/app")
                    .req("GET", Some("users.example"), "/users/1"),
            );
        }),
        1,
    );
    let b = baseline(|l| {
        l.ingest(
            &base()
                .by("/app")
                .req("GET", Some("users.example"), "/users/2"),
        );
        l.ingest(
            &base()
                .by("/usr/bin/curl")
                .req("GET", Some("users.example"), "/admin"),
        );
    });
    let d = diff(&b, Some(&policy), &Rejections::default());
    let w = d
        .entries
        .iter()
        .find(|e| e.change == ChangeKind::Widened)
        .unwrap();
    assert_eq!(w.extends.as_deref(), Some("out-http-users.example-80-get"));
    assert!(
        w.widens.contains(&"process /usr/bin/curl".to_string()),
        "{:?}",
        w.widens
    );
    assert!(
        w.widens.contains(&"path /admin".to_string()),
        "{:?}",
        w.widens
    );
    assert!(w.risks.contains(&RiskHint::NewProcess {
        exe: "/usr/bin/curl".into()
    }));
    assert!(d
        .entries
        .iter()
        .any(|e| e.id == "process:/usr/bin/curl" && e.change == ChangeKind::ProcessAdded));
    assert!(render_text(&d)
        .contains("~ out-http-users.example-80-get (extends out-http-users.example-80-get)"));
}

#[test]
fn rejected_entries_are_hidden_and_counted() {
    let b = baseline(|l| {
        l.ingest(&out("203.0.113.7:4444", 1, AppProtocol::Opaque).by("/usr/bin/nc"));
    });
    let rejected: Rejections = [
        "out-opaque-203.0.113.7-4444".to_string(),
        "process:/usr/bin/nc".to_string(),
        NAMES_LISTED_ID.to_string(),
    ]
    .into();
    let d = diff(&b, None, &rejected);
    assert!(d.is_empty(), "{:?}", kinds(&d));
    assert_eq!(d.rejected, 3);
}

#[test]
fn coverage_rules() {
    assert!(fqdn_covers("*.example", "a.b.example"));
    assert!(!fqdn_covers("*.example", "example"));
    assert!(!fqdn_covers("a.example", "b.example"));
    assert!(path_covers("/users/{id}", "/users/{id}"));
    assert!(path_covers("/users/{uid}", "/users/42"));
    assert!(!path_covers("/users/42", "/users/{id}"));
    assert!(path_covers("/static/*", "/static/css/a.css"));
    assert!(!path_covers("/users/{id}", "/users/1/x"));
    let mk = |peer: Peer, ports: Vec<PortSpec>, http: Option<HttpMatch>| Rule {
        id: "x".into(),
        note: String::new(),
        direction: Direction::Outbound,
        peer,
        ports,
        protocols: vec![],
        http,
        processes: vec![],
        evidence: None,
    };
    let wide = mk(Peer::Cidr("192.0.2.0/24".parse().unwrap()), vec![], None);
    let host = mk(
        Peer::Cidr("192.0.2.9/32".parse().unwrap()),
        vec![PortSpec::single(80)],
        None,
    );
    assert!(rule_covers(&wide, &host));
    assert!(!rule_covers(&host, &wide));
    let http = mk(
        Peer::Any,
        vec![],
        Some(HttpMatch {
            methods: vec!["GET".into()],
            ..Default::default()
        }),
    );
    assert!(
        !rule_covers(&http, &host),
        "an HTTP-narrowed rule does not cover any request"
    );
    let name = mk(Peer::Fqdn("a.example".into()), vec![], None);
    assert!(!rule_covers(&name, &host) && !rule_covers(&host, &name));
}

/// A baseline that resolved `meta.example.org` and connects to
/// `api.example.com` by name.
fn with_names() -> PolicyDocument {
    baseline(|l| {
        l.ingest(&dns("meta.example.org", "NOERROR").by("/app"));
        l.ingest(&dns("api.example.com", "NOERROR").by("/app"));
        l.ingest(&dns("api.example.com.shop.svc.cluster.local", "NXDOMAIN"));
        l.ingest(
            &out("192.0.2.10:443", 40001, AppProtocol::Tls)
                .named(&["api.example.com"])
                .by("/app"),
        );
    })
}

#[test]
fn learned_names_are_proposed_with_the_switch_to_listed() {
    let b = with_names();
    let d = diff(&b, None, &Rejections::default());
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let names = dns_kinds(&d);
    assert_eq!(
        names,
        vec![
            (ChangeKind::NameAdded, "dns:meta.example.org".to_string()),
            (ChangeKind::NamesListed, NAMES_LISTED_ID.to_string()),
        ]
    );
    let text = render_text(&d);
    assert!(
        text.contains("+ dns:meta.example.org\n    resolve meta.example.org"),
        "{text}"
    );
    assert!(text.contains("evidence: 1 query,"), "{text}");
    assert!(text.contains("allowedNames: listed"), "{text}");
    assert!(!text.contains("cluster.local"), "search-path junk: {text}");

    // Approving everything: listed, the learned name, no evidence copied,
    // and a document the policy loader accepts.
    let p = crate::promote::promote(
        None,
        Some(&b),
        "shop/checkout",
        &d.proposals().cloned().collect::<Vec<_>>(),
    );
    assert_eq!(p.spec.dns.allowed_names, AllowedNames::Listed);
    assert_eq!(p.spec.dns.allow_names, vec!["meta.example.org"]);
    assert!(p.spec.dns.learned_names.is_empty());
    let yaml = serde_yaml_ng::to_string(&p).unwrap();
    let compiled = podwarden_policy::CompiledPolicy::compile(
        &podwarden_policy::load_policy_str(&yaml, "v1.yaml").unwrap(),
    )
    .unwrap();
    use podwarden_policy::dns::RecordType;
    for ok in ["meta.example.org", "api.example.com"] {
        assert!(
            compiled.judge_dns_name(ok, RecordType::A).listed.is_some(),
            "{ok}"
        );
    }
    assert!(compiled
        .judge_dns_name("never.example.org", RecordType::A)
        .listed
        .is_none());

    // Against that policy: nothing new for DNS.
    let again = diff(&b, Some(&as_policy(p.clone(), 1)), &Rejections::default());
    assert!(
        !again.entries.iter().any(|e| e.id.starts_with("dns:")),
        "{:?}",
        kinds(&again)
    );
}

#[test]
fn names_added_and_removed_against_a_listed_policy() {
    let b = with_names();
    let mut p = as_policy(b.clone(), 3);
    p.spec.dns.allow_names = vec!["old.example.net".into()];
    p.spec.dns.learned_names.clear();
    let d = diff(&b, Some(&p), &Rejections::default());
    let names = dns_kinds(&d);
    assert_eq!(
        names,
        vec![
            (ChangeKind::NameAdded, "dns:meta.example.org".to_string()),
            (ChangeKind::NameDropped, "dns:old.example.net".to_string()),
        ]
    );
    let text = render_text(&d);
    assert!(
        text.contains("- dns:old.example.net (listed, not resolved while learning)"),
        "{text}"
    );
    // Drops apply only when chosen; rejected names are not proposed again.
    assert_eq!(
        d.proposals().filter(|e| e.id.starts_with("dns:")).count(),
        1
    );
    let promoted = crate::promote::promote(Some(&p), Some(&b), "shop/checkout", &d.entries);
    assert_eq!(promoted.spec.dns.allow_names, vec!["meta.example.org"]);
    let r = Rejections::from(vec!["dns:meta.example.org".to_string()]);
    let d = diff(&b, Some(&p), &r);
    assert_eq!(d.rejected, 1);
    assert!(!d.entries.iter().any(|e| e.change == ChangeKind::NameAdded));
}

#[test]
fn a_baseline_without_names_keeps_any_and_says_so() {
    let mut b = with_names();
    b.spec.dns = Default::default();
    let d = diff(&b, None, &Rejections::default());
    assert!(!d.entries.iter().any(|e| e.id.starts_with("dns:")));
    assert_eq!(d.warnings, vec![NO_NAMES_WARNING.to_string()]);
    let text = render_text(&d);
    assert!(
        text.contains("! warning: the baseline recorded no DNS names"),
        "{text}"
    );
    let p = crate::promote::promote(
        None,
        Some(&b),
        "shop/checkout",
        &d.proposals().cloned().collect::<Vec<_>>(),
    );
    assert_eq!(p.spec.dns.allowed_names, AllowedNames::Any);
    assert!(p.spec.dns.allow_names.is_empty());
}
