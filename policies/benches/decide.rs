//! One decision against a 100k-rule policy: CIDR v4/v6 (overlapping prefix
//! lengths), exact and `*.suffix` FQDNs, single ports and ranges, HTTP path
//! templates. Target: ≤ 1 µs median per decision.
//!
//! cargo bench -p podwarden-policy --bench decide -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use podwarden_policy::model::{DocumentKind, HttpMatch, Metadata, Peer, PortSpec};
use podwarden_policy::{
    AppProtocol, CompiledPolicy, Decide, Direction, Flow, HttpRequestInfo, Mode, PolicyDocument,
    PolicySpec, Rule,
};

const RULES: usize = 100_000;

fn rule(i: usize, direction: Direction, peer: Peer, ports: Vec<PortSpec>) -> Rule {
    Rule {
        id: format!("r{i}"),
        note: String::new(),
        direction,
        peer,
        ports,
        protocols: vec![],
        http: None,
        processes: vec![],
        evidence: None,
    }
}

fn ports(i: usize) -> Vec<PortSpec> {
    match i % 4 {
        0 => vec![PortSpec::single(443)],
        1 => vec![PortSpec::single(1000 + (i % 5000) as u16)],
        2 => vec![
            PortSpec {
                first: 8000,
                last: 8100,
            },
            PortSpec::single(9090),
        ],
        _ => vec![PortSpec {
            first: 20000 + (i % 100) as u16,
            last: 20100 + (i % 100) as u16,
        }],
    }
}

fn v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x0A00_0000u32 + (i as u32) * 7)
}

fn v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::from(0x2001_0db8_0000_0000_0000_0000_0000_0000u128 + ((i as u128) << 64) + i as u128)
}

fn policy() -> PolicyDocument {
    let mut rules = Vec::with_capacity(RULES);
    for i in 0..RULES {
        let r = match i % 10 {
            // 30%: IPv4 hosts, /24s and /16s, overlapping.
            0 | 1 => rule(
                i,
                Direction::Outbound,
                Peer::Cidr(format!("{}/32", v4(i)).parse().unwrap()),
                ports(i),
            ),
            2 => {
                let net = format!(
                    "{}/{}",
                    Ipv4Addr::from(u32::from(v4(i)) & 0xFFFF_FF00),
                    24 - (i % 3) * 4
                );
                let net: ipnet::IpNet = net.parse().unwrap();
                rule(i, Direction::Outbound, Peer::Cidr(net.trunc()), ports(i))
            }
            // 20%: IPv6 /128, /64, /48.
            3 => rule(
                i,
                Direction::Outbound,
                Peer::Cidr(format!("{}/128", v6(i)).parse().unwrap()),
                ports(i),
            ),
            4 => {
                let net: ipnet::IpNet = format!("{}/{}", v6(i), [64, 48, 56][i % 3])
                    .parse()
                    .unwrap();
                rule(i, Direction::Outbound, Peer::Cidr(net.trunc()), ports(i))
            }
            // 20%: exact FQDNs; 10%: suffixes.
            5 | 6 => rule(
                i,
                Direction::Outbound,
                Peer::Fqdn(format!("svc{i}.ns{}.example.com", i % 97)),
                ports(i),
            ),
            7 => rule(
                i,
                Direction::Outbound,
                Peer::Fqdn(format!("*.zone{i}.example.net")),
                ports(i),
            ),
            // 10%: HTTP with hosts, methods and path templates.
            8 => {
                let mut r = rule(
                    i,
                    Direction::Outbound,
                    Peer::Fqdn(format!("api{i}.example.org")),
                    vec![PortSpec::single(80)],
                );
                r.protocols = vec![AppProtocol::Http];
                r.http = Some(HttpMatch {
                    hosts: vec![format!("api{i}.example.org")],
                    methods: vec!["GET".into(), "POST".into()],
                    paths: vec![
                        format!("/v{}/users/{{id}}/orders", i % 3),
                        "/static/*".into(),
                    ],
                });
                r
            }
            // 10%: inbound clients.
            _ => rule(
                i,
                Direction::Inbound,
                Peer::Cidr(
                    format!("{}/32", Ipv4Addr::from(0xC0A8_0000u32 + i as u32))
                        .parse()
                        .unwrap(),
                ),
                ports(i),
            ),
        };
        rules.push(r);
    }
    PolicyDocument {
        api_version: podwarden_policy::model::API_VERSION.into(),
        kind: DocumentKind::WorkloadPolicy,
        metadata: Metadata {
            workload: "bench/app".into(),
            ..Metadata::default()
        },
        spec: PolicySpec {
            mode: Mode::Protect,
            rules,
            ..PolicySpec::default()
        },
    }
}

fn out(ip: IpAddr, port: u16, names: &[String]) -> Flow {
    let mut f = Flow::connection(
        Direction::Outbound,
        SocketAddr::new(ip, port),
        "10.1.0.2:40000".parse().unwrap(),
    );
    f.protocol = AppProtocol::Tls;
    f.peer_names = names.to_vec();
    f
}

fn bench(c: &mut Criterion) {
    let doc = policy();
    let t = Instant::now();
    let p = CompiledPolicy::compile(&doc).expect("bench policy compiles");
    eprintln!("compiled {} rules in {:?}", p.rule_count(), t.elapsed());

    let hit_v4 = out(IpAddr::V4(v4(10)), 443, &[]);
    let hit_v6 = out(IpAddr::V6(v6(13)), 1013, &[]);
    let hit_exact = out(
        "198.51.100.7".parse().unwrap(),
        1005,
        &["svc5.ns5.example.com".to_string()],
    );
    let hit_suffix = out(
        "198.51.100.8".parse().unwrap(),
        1017,
        &["a.b.zone17.example.net".to_string()],
    );
    let miss = out(
        "203.0.113.200".parse().unwrap(),
        6553,
        &["unknown.example.com".to_string()],
    );
    let sni_trick = {
        let mut f = out("203.0.113.201".parse().unwrap(), 443, &[]);
        f.sni = Some("svc5.ns5.example.com".into());
        f
    };
    let mut http = out(
        "198.51.100.9".parse().unwrap(),
        80,
        &["api18.example.org".to_string()],
    );
    http.protocol = AppProtocol::Http;
    http.http = Some(HttpRequestInfo {
        method: "GET".into(),
        host: Some("api18.example.org".into()),
        path: "/v0/users/42/orders".into(),
        target: None,
    });
    let inbound = {
        let mut f = Flow::connection(
            Direction::Inbound,
            "192.168.0.19:50000".parse().unwrap(),
            "10.1.0.2:20050".parse().unwrap(),
        );
        f.protocol = AppProtocol::Opaque;
        f
    };
    for (name, f, allowed) in [
        ("hit_v4", &hit_v4, true),
        ("hit_v6", &hit_v6, true),
        ("hit_fqdn_exact", &hit_exact, true),
        ("hit_fqdn_suffix", &hit_suffix, true),
        ("hit_http_template", &http, true),
        ("hit_inbound", &inbound, true),
        ("miss", &miss, false),
        ("sni_to_unknown_ip", &sni_trick, false),
    ] {
        assert_eq!(
            p.decide(f).is_allowed(),
            allowed,
            "{name}: {:?}",
            p.explain(f)
        );
        c.bench_function(&format!("decide_100k/{name}"), |b| {
            b.iter(|| p.decide(black_box(f)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
