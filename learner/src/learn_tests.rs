use super::*;
use crate::testutil::{dns, inb, out, RecExt};
use podwarden_policy::model::{AllowedNames, Peer};

fn learner() -> Learner {
    let mut c = LearnerConfig::new("shop/checkout");
    c.replica = Some("checkout-abc".into());
    Learner::new(c).unwrap()
}

fn rule<'a>(doc: &'a PolicyDocument, id: &str) -> &'a Rule {
    doc.spec
        .rules
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| {
            panic!(
                "no rule {id} in {:?}",
                doc.spec.rules.iter().map(|r| &r.id).collect::<Vec<_>>()
            )
        })
}

#[test]
fn ephemeral_ports_and_ips_behind_a_name_collapse() {
    let mut l = learner();
    for (i, ip) in ["192.0.2.10", "192.0.2.11", "198.51.100.7"]
        .iter()
        .enumerate()
    {
        let r = out(&format!("{ip}:443"), 40000 + i as u16, AppProtocol::Tls)
            .named(&["api.payments.example"])
            .sni("api.payments.example")
            .by("/usr/local/bin/checkout")
            .at(1_700_000_000_000 + i as u64 * 1000);
        l.ingest(&r);
    }
    let doc = l.baseline();
    assert_eq!(doc.kind, DocumentKind::Baseline);
    assert_eq!(doc.spec.rules.len(), 1);
    let r = rule(&doc, "out-tls-api.payments.example-443");
    assert_eq!(r.peer, Peer::Fqdn("api.payments.example".into()));
    assert_eq!(r.ports, vec![PortSpec::single(443)]);
    assert_eq!(r.protocols, vec![AppProtocol::Tls]);
    assert_eq!(r.processes, vec!["/usr/local/bin/checkout".to_string()]);
    assert!(
        r.note.contains("SNI seen: api.payments.example"),
        "{}",
        r.note
    );
    let ev = r.evidence.as_ref().unwrap();
    assert_eq!(ev.count, 3);
    assert_eq!(ev.first_seen, "2023-11-14T22:13:20Z");
    assert_eq!(ev.last_seen, "2023-11-14T22:13:22Z");
    assert!(
        ev.example.contains("by /usr/local/bin/checkout"),
        "{}",
        ev.example
    );
    assert_eq!(ev.replicas, vec!["checkout-abc".to_string()]);
    assert_eq!(doc.spec.processes.len(), 1);
    assert_eq!(doc.spec.processes[0].evidence.as_ref().unwrap().count, 3);
    let (_, agg) = l.rules().next().unwrap();
    assert_eq!(agg.recent_ips.len(), 3);
}

#[test]
fn unnamed_peers_stay_hosts_and_sni_is_not_trusted() {
    let mut l = learner();
    l.ingest(&out("203.0.113.9:443", 40000, AppProtocol::Tls).sni("api.example"));
    l.ingest(&out("[2001:db8::9]:6379", 40001, AppProtocol::Opaque));
    let doc = l.baseline();
    let r = rule(&doc, "out-tls-203.0.113.9-443");
    assert_eq!(r.peer, Peer::Cidr("203.0.113.9/32".parse().unwrap()));
    let v6 = doc
        .spec
        .rules
        .iter()
        .find(|r| r.ports == vec![PortSpec::single(6379)])
        .unwrap();
    assert_eq!(v6.peer, Peer::Cidr("2001:db8::9/128".parse().unwrap()));
    assert!(
        v6.id.starts_with("out-opaque-2001-db8--9-6379-"),
        "{}",
        v6.id
    );
}

#[test]
fn distinct_ports_and_protocols_are_distinct_rules() {
    let mut l = learner();
    l.ingest(&out("192.0.2.1:443", 1, AppProtocol::Tls).named(&["a.example"]));
    l.ingest(&out("192.0.2.1:8443", 2, AppProtocol::Tls).named(&["a.example"]));
    l.ingest(
        &out("192.0.2.1:80", 3, AppProtocol::Http)
            .named(&["a.example"])
            .req("GET", Some("a.example"), "/"),
    );
    let ids: Vec<_> = l.baseline().spec.rules.into_iter().map(|r| r.id).collect();
    assert_eq!(
        ids,
        vec![
            "out-http-a.example-80-get",
            "out-tls-a.example-443",
            "out-tls-a.example-8443"
        ]
    );
}

#[test]
fn http_paths_are_templated_with_methods_per_template() {
    let mut l = learner();
    let base = || {
        out("192.0.2.1:80", 5, AppProtocol::Http)
            .named(&["users.example"])
            .by("/app")
    };
    l.ingest(&base());
    l.ingest(&base().req("GET", Some("users.example:80"), "/users/123"));
    l.ingest(&base().req("GET", Some("users.example"), "/users/456"));
    l.ingest(&base().req("get", Some("users.example"), "/healthz"));
    l.ingest(&base().req(
        "DELETE",
        Some("users.example"),
        "/users/789/sessions/550e8400-e29b-41d4-a716-446655440000",
    ));
    let doc = l.baseline();
    let get = rule(&doc, "out-http-users.example-80-get");
    let h = get.http.as_ref().unwrap();
    assert_eq!(h.methods, vec!["GET"]);
    assert_eq!(h.paths, vec!["/healthz", "/users/{id}"]);
    assert_eq!(h.hosts, vec!["users.example"]);
    assert_eq!(get.evidence.as_ref().unwrap().count, 3);
    let del = rule(&doc, "out-http-users.example-80-delete");
    assert_eq!(
        del.http.as_ref().unwrap().paths,
        vec!["/users/{id}/sessions/{id}"]
    );
    assert_eq!(doc.spec.rules.len(), 2);
}

#[test]
fn inbound_clients_of_one_subnet_collapse_only_with_enough_replicas() {
    let mut l = learner();
    l.ingest(&inb("10.1.2.3:50000", 8080, AppProtocol::Http).req("GET", None, "/api/items/17"));
    l.ingest(&inb("10.1.2.4:50001", 8080, AppProtocol::Http).req("POST", None, "/api/items"));
    l.ingest(&inb("10.9.9.9:50002", 8080, AppProtocol::Http).req("GET", None, "/api/items/18"));
    let doc = l.baseline();
    let peers: BTreeSet<String> = doc
        .spec
        .rules
        .iter()
        .map(|r| match &r.peer {
            Peer::Cidr(c) => c.to_string(),
            p => panic!("unexpected peer {p:?}"),
        })
        .collect();
    assert_eq!(
        peers,
        ["10.1.2.0/24", "10.9.9.9/32"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let net = doc
        .spec
        .rules
        .iter()
        .find(|r| r.id == "in-http-10.1.2.0-24-8b3f7c4b-get")
        .or_else(|| {
            doc.spec
                .rules
                .iter()
                .find(|r| r.id.starts_with("in-http-10.1.2.0-24") && r.id.ends_with("-get"))
        });
    let net = net.unwrap();
    assert_eq!(net.http.as_ref().unwrap().paths, vec!["/api/items/{id}"]);
    assert!(net.http.as_ref().unwrap().hosts.is_empty());

    // collapsing off: every client stays a host
    let mut c = LearnerConfig::new("shop/checkout");
    c.inbound_min_clients = 0;
    let mut l = Learner::new(c).unwrap();
    l.ingest(&inb("10.1.2.3:50000", 8080, AppProtocol::Opaque));
    l.ingest(&inb("10.1.2.4:50000", 8080, AppProtocol::Opaque));
    assert!(l
        .baseline()
        .spec
        .rules
        .iter()
        .all(|r| matches!(&r.peer, Peer::Cidr(c) if c.prefix_len() == 32)));
}

#[test]
fn config_refuses_wide_prefixes() {
    let mut c = LearnerConfig::new("shop/checkout");
    c.inbound_v4_prefix = 8;
    assert!(matches!(
        Learner::new(c.clone()),
        Err(LearnerError::Config(_))
    ));
    c.inbound_v4_prefix = 24;
    c.inbound_v6_prefix = 32;
    assert!(Learner::new(c.clone()).is_err());
    c.inbound_v6_prefix = 64;
    c.inbound_min_clients = 1;
    assert!(Learner::new(c.clone()).is_err());
    assert!(Learner::new(LearnerConfig::new("no-slash")).is_err());
}

#[test]
fn port_zero_is_skipped_not_learned() {
    let mut l = learner();
    l.ingest(&out("192.0.2.1:0", 5, AppProtocol::Opaque));
    assert!(l.is_empty());
    assert_eq!(l.skipped(), 1);
}

#[test]
fn ids_are_stable_and_output_deterministic() {
    let recs = vec![
        out("192.0.2.1:443", 1, AppProtocol::Tls).named(&["b.example"]),
        out("192.0.2.2:5432", 2, AppProtocol::Opaque),
        inb("10.0.0.9:1", 80, AppProtocol::Http).req("GET", None, "/"),
    ];
    let mut a = learner();
    a.ingest_all(&recs);
    let mut b = learner();
    b.ingest_all(recs.iter().rev());
    assert_eq!(a.baseline(), b.baseline());
}

#[test]
fn snapshot_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/learning.json");
    let mut l = learner();
    l.ingest(
        &out("192.0.2.1:443", 1, AppProtocol::Tls)
            .named(&["a.example"])
            .by("/bin/app"),
    );
    l.save(&path).unwrap();
    let mut back = Learner::load(&path).unwrap();
    assert_eq!(back.baseline(), l.baseline());
    back.ingest(
        &out("192.0.2.1:443", 2, AppProtocol::Tls)
            .named(&["a.example"])
            .by("/bin/app"),
    );
    assert_eq!(
        back.baseline().spec.rules[0]
            .evidence
            .as_ref()
            .unwrap()
            .count,
        2
    );
    // no temp files left behind
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::write(&path, b"{not json").unwrap();
    assert!(matches!(
        Learner::load(&path),
        Err(LearnerError::Json { .. })
    ));
}

#[test]
fn path_cap_drops_without_widening() {
    let mut c = LearnerConfig::new("a/b");
    c.max_paths_per_rule = 2;
    let mut l = Learner::new(c).unwrap();
    for p in ["/a", "/b", "/c", "/d"] {
        l.ingest(&out("192.0.2.1:80", 1, AppProtocol::Http).req("GET", None, p));
    }
    let doc = l.baseline();
    assert_eq!(
        doc.spec.rules[0].http.as_ref().unwrap().paths,
        vec!["/a", "/b"]
    );
    assert!(doc.spec.rules[0]
        .note
        .contains("2 requests on further paths not learned"));
}

#[test]
fn rule_cap_counts_instead_of_growing() {
    let mut c = LearnerConfig::new("a/b");
    c.max_rules = 2;
    let mut l = Learner::new(c).unwrap();
    for i in 1..=5u8 {
        l.ingest(&inb(
            &format!("203.0.113.{i}:1000"),
            22,
            AppProtocol::Opaque,
        ));
    }
    // known shapes still learn
    l.ingest(&inb("203.0.113.1:1001", 22, AppProtocol::Opaque));
    assert_eq!(l.len(), 2);
    assert_eq!(l.skipped(), 3);
    let doc = l.baseline();
    assert_eq!(
        doc.spec
            .rules
            .iter()
            .map(|r| r.evidence.as_ref().unwrap().count)
            .sum::<u64>(),
        3
    );
}

/// One address, several names (virtual hosts): each request is learned for
/// the name it asked for, and the HTTP connection record (no host, no path)
/// adds no path-less rule under a guessed name.
#[test]
fn shared_address_learns_the_requested_name_and_no_pathless_rule() {
    let mut l = learner();
    let names = ["api.example", "cache.example", "secure.example"];
    l.ingest(&out("192.0.2.1:8000", 1, AppProtocol::Http).named(&names));
    l.ingest(
        &out("192.0.2.1:8000", 1, AppProtocol::Http)
            .named(&names)
            .req("GET", Some("api.example:8000"), "/users/7"),
    );
    l.ingest(
        &out("192.0.2.1:443", 2, AppProtocol::Tls)
            .named(&names)
            .sni("api.example"),
    );
    let rules = l.baseline().spec.rules;
    let ids: Vec<_> = rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["out-http-api.example-8000-get", "out-tls-api.example-443"]
    );
    let http = rules[0].http.as_ref().unwrap();
    assert_eq!(http.paths, ["/users/{id}"]);
}

#[test]
fn resolved_names_are_learned_with_evidence_and_search_path_tries_are_not() {
    let mut l = learner();
    l.ingest(&dns("api.example.com", "NOERROR").at(1_000));
    l.ingest(&dns("API.example.com", "NOERROR").at(500).by("/app"));
    // The stub resolver's search-path tries that got NXDOMAIN.
    for junk in [
        "meta.example.org.shop.svc.cluster.local",
        "meta.example.org.svc.cluster.local",
        "meta.example.org.cluster.local",
    ] {
        l.ingest(&dns(junk, "NXDOMAIN"));
    }
    l.ingest(&dns("meta.example.org", "NOERROR").at(2_000).by("/app"));
    // Refused by the listener in protect: not something the pod may resolve.
    let mut refused = dns("leak.attacker.example", "NOERROR");
    refused.decision = podwarden_policy::Decision::new(Mode::Protect, None);
    l.ingest(&refused);
    // The pod connects to api.example.com: an FQDN rule lists that name.
    l.ingest(&out("192.0.2.10:443", 40001, AppProtocol::Tls).named(&["api.example.com"]));

    assert_eq!(
        l.names().keys().collect::<Vec<_>>(),
        vec!["api.example.com", "meta.example.org"]
    );
    let api = &l.names()["api.example.com"];
    assert_eq!((api.count, api.first_ms, api.last_ms), (2, 500, 1_000));
    assert!(api.replicas.contains("checkout-abc"));

    let doc = l.baseline();
    let d = &doc.spec.dns;
    assert_eq!(d.allowed_names, AllowedNames::Listed);
    // api.example.com is listed by its FQDN rule: not repeated.
    assert_eq!(d.allow_names, vec!["meta.example.org"]);
    let meta = d
        .learned_names
        .iter()
        .find(|n| n.name == "meta.example.org")
        .unwrap();
    let ev = meta.evidence.as_ref().unwrap();
    assert_eq!(
        (ev.count, ev.replicas.clone()),
        (1, vec!["checkout-abc".to_string()])
    );
    assert!(
        ev.example.contains("meta.example.org") && ev.example.contains("/app"),
        "{}",
        ev.example
    );
    // A proposal the policy loader accepts as it is.
    let yaml = serde_yaml_ng::to_string(&doc).unwrap();
    podwarden_policy::load_policy_str(&yaml, "baseline.yaml").unwrap();
}

#[test]
fn many_names_under_one_zone_become_a_wildcard_at_the_threshold() {
    let mut c = LearnerConfig::new("shop/checkout");
    c.name_wildcard_min = 3;
    let mut l = Learner::new(c).unwrap();
    for n in ["a.img.example.net", "b.img.example.net"] {
        l.ingest(&dns(n, "NOERROR"));
    }
    assert_eq!(
        l.baseline().spec.dns.allow_names,
        vec!["a.img.example.net", "b.img.example.net"]
    );
    l.ingest(&dns("c.img.example.net", "NOERROR"));
    let doc = l.baseline();
    assert_eq!(doc.spec.dns.allow_names, vec!["*.img.example.net"]);
    assert_eq!(
        doc.spec.dns.learned_names[0]
            .evidence
            .as_ref()
            .unwrap()
            .count,
        3
    );
    let mut c = LearnerConfig::new("shop/checkout");
    c.name_wildcard_min = 1;
    assert!(Learner::new(c).is_err(), "1 would widen every name");
}

#[test]
fn names_are_bounded_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learning.json");
    let mut c = LearnerConfig::new("shop/checkout");
    c.max_names = 2;
    let mut l = Learner::new(c).unwrap();
    for n in ["a.example.com", "b.example.com", "c.example.com"] {
        l.ingest(&dns(n, "NOERROR"));
    }
    assert_eq!(l.names().len(), 2);
    assert_eq!(l.skipped(), 1);
    l.save(&path).unwrap();
    let back = Learner::load(&path).unwrap();
    assert_eq!(back.names(), l.names());
    assert!(back.names_recorded());
    assert_eq!(back.baseline(), l.baseline());
}

#[test]
fn a_state_learned_before_names_were_recorded_keeps_any() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("learning.json");
    let mut l = learner();
    l.ingest(&out("192.0.2.10:443", 40001, AppProtocol::Tls).named(&["api.example.com"]));
    l.save(&path).unwrap();
    // The snapshot as the previous release wrote it: no names, no flag.
    let mut snap: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let obj = snap.as_object_mut().unwrap();
    assert!(obj.remove("names").is_some() && obj.remove("namesRecorded").is_some());
    std::fs::write(&path, serde_json::to_vec(&snap).unwrap()).unwrap();

    let mut old = Learner::load(&path).unwrap();
    assert!(!old.names_recorded());
    // Names seen after the upgrade are recorded, but the pod resolved
    // others before: listing only these would lock it out of those.
    old.ingest(&dns("meta.example.org", "NOERROR"));
    let doc = old.baseline();
    assert_eq!(doc.spec.dns, Default::default());
    assert!(old.names().contains_key("meta.example.org"));
}

#[test]
fn dns_records_without_their_question_keep_any() {
    let mut l = learner();
    l.ingest(&dns("meta.example.org", "NOERROR"));
    assert_eq!(l.baseline().spec.dns.allowed_names, AllowedNames::Listed);
    // As an older proxy wrote it (e.g. a flow log learned offline).
    let mut old = dns("other.example.org", "NOERROR");
    old.flow.dns = None;
    l.ingest(&old);
    assert!(!l.names_recorded());
    assert_eq!(l.baseline().spec.dns, Default::default());
}
