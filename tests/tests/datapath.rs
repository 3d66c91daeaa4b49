//! The transparent data path end to end: the proxy runs as UID 1337 in the pod
//! with `init` applied, the app (UID 1000, or root) uses real clients, real
//! servers answer in the server namespace, and both what the server received
//! and what `/flows` recorded are checked.

use podwarden_e2e::servers;
use podwarden_e2e::{require, Topology, CLIENT, POD, SERVER};
use podwarden_policy::{AppProtocol, Direction, FlowRecord, RecordKind};

const BIN: &[&str] = &["podwarden-proxy"];

/// A topology with the proxy running and the rules applied, or `None` (skipped).
fn pod_with_proxy(test: &str, tools: &[&str], init_flags: &[&str]) -> Option<Topology> {
    if !require(test, tools, BIN) {
        return None;
    }
    let t = Topology::new().unwrap();
    t.start_proxy(&[]).unwrap();
    t.init(init_flags).unwrap();
    Some(t)
}

fn outbound_to(r: &FlowRecord, port: u16) -> bool {
    r.flow.direction == Direction::Outbound && r.flow.peer.port() == port
}

#[test]
fn http1_outbound_is_relayed_and_recorded() {
    let Some(t) = pod_with_proxy(
        "http1_outbound_is_relayed_and_recorded",
        &["curl", "python3"],
        &[],
    ) else {
        return;
    };
    servers::http(
        &t.server,
        &t.scratch,
        "web",
        8000,
        &[("hello.txt", "hello from the server\n")],
    )
    .unwrap();
    let url = format!("http://{}:8000/hello.txt", SERVER.v4);
    for _ in 0..2 {
        let body = t.app_curl(&[&url]).unwrap();
        assert_eq!(body, "hello from the server\n");
    }
    // The server saw the requests, from the pod's address (not rewritten).
    let log = t.server.log_of("web");
    assert_eq!(
        log.matches("\"GET /hello.txt HTTP/1.1\" 200").count(),
        2,
        "{log}"
    );
    assert!(log.contains(&POD.v4.to_string()), "{log}");

    let req = t
        .wait_flow("for GET /hello.txt", |r| {
            outbound_to(r, 8000)
                && r.kind == RecordKind::Request
                && r.flow.http.as_ref().is_some_and(|h| h.path == "/hello.txt")
        })
        .unwrap();
    let http = req.flow.http.as_ref().unwrap();
    assert_eq!(http.method, "GET");
    assert_eq!(http.host.as_deref(), Some(SERVER.v4.to_string().as_str()));
    assert_eq!(req.flow.protocol, AppProtocol::Http);
    assert_eq!(req.flow.peer.ip(), SERVER.ip(false));
    assert_eq!(req.status, Some(200));
    assert!(req.decision.is_allowed());
    let conn = t
        .wait_flow("for the connection", |r| {
            outbound_to(r, 8000) && r.kind == RecordKind::Connection
        })
        .unwrap();
    assert!(
        conn.bytes_received >= "hello from the server\n".len() as u64,
        "{conn:?}"
    );
}

#[test]
fn root_in_the_pod_is_intercepted_too() {
    let Some(t) = pod_with_proxy(
        "root_in_the_pod_is_intercepted_too",
        &["curl", "python3"],
        &[],
    ) else {
        return;
    };
    servers::http(&t.server, &t.scratch, "web", 8000, &[("root.txt", "r\n")]).unwrap();
    t.pod
        .exec(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "10",
            &format!("http://{}:8000/root.txt", SERVER.v4),
        ])
        .unwrap();
    t.wait_flow("for root's request", |r| {
        outbound_to(r, 8000) && r.flow.http.as_ref().is_some_and(|h| h.path == "/root.txt")
    })
    .unwrap();
}

#[test]
fn http2_prior_knowledge_is_relayed_and_recorded() {
    let Some(t) = pod_with_proxy(
        "http2_prior_knowledge_is_relayed_and_recorded",
        &["curl", "nghttpd"],
        &[],
    ) else {
        return;
    };
    servers::h2c(
        &t.server,
        &t.scratch,
        "h2",
        8080,
        &[("h2.txt", "over h2c\n")],
    )
    .unwrap();
    let url = format!("http://{}:8080/h2.txt", SERVER.v4);
    let out = t
        .app_curl(&[
            "--http2-prior-knowledge",
            "-w",
            "\nversion=%{http_version}",
            &url,
        ])
        .unwrap();
    assert_eq!(out, "over h2c\n\nversion=2");
    let log = t.server.log_of("h2");
    assert!(log.contains(":path: /h2.txt"), "{log}");
    let req = t
        .wait_flow("for the h2 request", |r| {
            outbound_to(r, 8080) && r.flow.http.as_ref().is_some_and(|h| h.path == "/h2.txt")
        })
        .unwrap();
    assert_eq!(req.flow.protocol, AppProtocol::Http2);
    assert_eq!(req.flow.http.as_ref().unwrap().method, "GET");
}

#[test]
fn tls_is_passed_through_with_sni_recorded() {
    let Some(t) = pod_with_proxy(
        "tls_is_passed_through_with_sni_recorded",
        &["curl", "openssl", "python3"],
        &[],
    ) else {
        return;
    };
    let name = "api.example.test";
    let (cert, key) = servers::self_signed(&t.server, &t.scratch, name).unwrap();
    servers::tls(&t.server, "tls", 8443, &cert, &key).unwrap();
    // The proxy passes TLS through: the app verifies the server's own certificate.
    let body = t
        .app_curl(&[
            "--cacert",
            &cert,
            "--resolve",
            &format!("{name}:8443:{}", SERVER.v4),
            &format!("https://{name}:8443/"),
        ])
        .unwrap();
    assert_eq!(body, "hello over tls\n");
    let log = t.server.log_of("tls");
    assert!(log.contains(&format!("SNI={name}")), "{log}");
    let rec = t
        .wait_flow("for the TLS connection", |r| outbound_to(r, 8443))
        .unwrap();
    assert_eq!(rec.flow.protocol, AppProtocol::Tls);
    assert_eq!(rec.flow.sni.as_deref(), Some(name));
    assert_eq!(rec.flow.peer.ip(), SERVER.ip(false));
}

#[test]
fn websocket_upgrade_is_relayed() {
    let Some(t) = pod_with_proxy("websocket_upgrade_is_relayed", &["python3"], &[]) else {
        return;
    };
    servers::websocket(&t.server, "ws", 8765).unwrap();
    let out = t
        .pod
        .exec_as(
            Some(podwarden_e2e::APP_UID),
            &[
                podwarden_e2e::python(),
                &podwarden_e2e::pod::fixture("ws_client.py"),
                &SERVER.v4.to_string(),
                "8765",
                "hello",
                "world",
            ],
        )
        .unwrap();
    assert_eq!(out, "ECHO hello\nECHO world\n");
    let log = t.server.log_of("ws");
    assert!(
        log.contains("UPGRADE GET /chat HTTP/1.1 upgrade=websocket"),
        "{log}"
    );
    assert!(
        log.contains("WS-RECV hello") && log.contains("WS-RECV world"),
        "{log}"
    );
    let req = t
        .wait_flow("for the upgrade request", |r| {
            outbound_to(r, 8765) && r.flow.http.as_ref().is_some_and(|h| h.path == "/chat")
        })
        .unwrap();
    assert_eq!(req.status, Some(101));
}

#[test]
fn redis_is_relayed_as_opaque_tcp() {
    let Some(t) = pod_with_proxy(
        "redis_is_relayed_as_opaque_tcp",
        &["redis-server", "redis-cli"],
        &[],
    ) else {
        return;
    };
    servers::redis(&t.server, &t.scratch, "redis", 6379).unwrap();
    let host = SERVER.v4.to_string();
    let cli = |args: &[&str]| {
        let mut argv = vec!["redis-cli", "-h", host.as_str(), "-p", "6379"];
        argv.extend_from_slice(args);
        t.pod.exec_as(Some(podwarden_e2e::APP_UID), &argv).unwrap()
    };
    assert_eq!(cli(&["SET", "podwarden", "through-the-proxy"]).trim(), "OK");
    assert_eq!(cli(&["GET", "podwarden"]).trim(), "through-the-proxy");
    // The server really stored it.
    let stored = t
        .server
        .exec(&["redis-cli", "-p", "6379", "GET", "podwarden"])
        .unwrap();
    assert_eq!(stored.trim(), "through-the-proxy");
    let rec = t
        .wait_flow("for the redis connection", |r| outbound_to(r, 6379))
        .unwrap();
    assert_eq!(rec.flow.protocol, AppProtocol::Opaque);
    assert!(rec.bytes_sent > 0 && rec.bytes_received > 0, "{rec:?}");
}

#[test]
fn inbound_calls_reach_the_app_through_the_proxy() {
    let Some(t) = pod_with_proxy(
        "inbound_calls_reach_the_app_through_the_proxy",
        &["curl", "python3"],
        &[],
    ) else {
        return;
    };
    servers::http(
        &t.pod,
        &t.scratch,
        "app",
        8080,
        &[("in.txt", "hello from the app\n")],
    )
    .unwrap();
    for v6 in [false, true] {
        let host = match POD.ip(v6) {
            std::net::IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        let body = t
            .client
            .exec(&[
                "curl",
                "-sS",
                "-g",
                "--fail",
                "--max-time",
                "10",
                &format!("http://{host}:8080/in.txt"),
            ])
            .unwrap();
        assert_eq!(body, "hello from the app\n");
        let rec = t
            .wait_flow("for the inbound request", |r| {
                r.flow.direction == Direction::Inbound
                    && r.flow.peer.ip() == CLIENT.ip(v6)
                    && r.flow.local.port() == 8080
            })
            .unwrap();
        assert_eq!(rec.flow.protocol, AppProtocol::Http, "{rec:?}");
    }
    // The admin port is not redirected (and binds loopback only): from outside it is closed.
    let out = t
        .client
        .output(
            None,
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                &format!("http://{}:15000/flows", POD.v4),
            ],
        )
        .unwrap();
    assert!(
        !out.status.success(),
        "admin API reachable from outside the pod"
    );
}

#[test]
fn ipv6_outbound_is_relayed_and_recorded() {
    let Some(t) = pod_with_proxy(
        "ipv6_outbound_is_relayed_and_recorded",
        &["curl", "python3"],
        &[],
    ) else {
        return;
    };
    servers::http(&t.server, &t.scratch, "web", 8000, &[("six.txt", "v6\n")]).unwrap();
    // Neighbour discovery must work under the rules: forget the router's
    // link-layer address so the request below needs a fresh NS/NA exchange.
    t.pod
        .exec(&["ip", "-6", "neigh", "flush", "dev", "eth0"])
        .unwrap();
    let body = t
        .app_curl(&["-g", &format!("http://[{}]:8000/six.txt", SERVER.v6)])
        .unwrap();
    assert_eq!(body, "v6\n");
    assert!(t.server.log_of("web").contains(&POD.v6.to_string()));
    let rec = t
        .wait_flow("for the IPv6 request", |r| {
            outbound_to(r, 8000) && r.flow.http.as_ref().is_some_and(|h| h.path == "/six.txt")
        })
        .unwrap();
    assert_eq!(rec.flow.peer.ip(), SERVER.ip(true));
    assert_eq!(
        rec.flow.http.as_ref().unwrap().host.as_deref(),
        Some(format!("{}", SERVER.v6).as_str())
    );
}

#[test]
fn excluded_ports_bypass_the_proxy() {
    let Some(t) = pod_with_proxy(
        "excluded_ports_bypass_the_proxy",
        &["redis-server", "redis-cli", "curl", "python3"],
        &["--exclude-outbound-ports", "6379"],
    ) else {
        return;
    };
    servers::redis(&t.server, &t.scratch, "redis", 6379).unwrap();
    servers::http(&t.server, &t.scratch, "web", 8000, &[("x.txt", "x\n")]).unwrap();
    let pong = t
        .pod
        .exec_as(
            Some(podwarden_e2e::APP_UID),
            &["redis-cli", "-h", &SERVER.v4.to_string(), "PING"],
        )
        .unwrap();
    assert_eq!(pong.trim(), "PONG");
    // A later, intercepted request proves /flows is live; the redis one never shows up.
    t.app_curl(&[&format!("http://{}:8000/x.txt", SERVER.v4)])
        .unwrap();
    t.wait_flow("for the control request", |r| outbound_to(r, 8000))
        .unwrap();
    let flows = t.flows().unwrap();
    assert!(
        !flows.iter().any(|r| outbound_to(r, 6379)),
        "excluded port was intercepted"
    );
}

#[test]
fn connecting_to_the_proxy_ports_directly_does_not_loop() {
    let Some(t) = pod_with_proxy(
        "connecting_to_the_proxy_ports_directly_does_not_loop",
        &["curl", "python3"],
        &[],
    ) else {
        return;
    };
    servers::http(&t.server, &t.scratch, "web", 8000, &[("ok.txt", "ok\n")]).unwrap();
    // From outside (redirected inbound with original port 15001/15006), and
    // from the app straight at the listeners: neither may make the proxy
    // connect to itself over and over.
    for port in [15001, 15006] {
        let _ = t.client.output(
            None,
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                &format!("http://{}:{port}/", POD.v4),
            ],
        );
        let _ = t.pod.output(
            Some(podwarden_e2e::APP_UID),
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                &format!("http://127.0.0.1:{port}/"),
            ],
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let established = t.pod.exec(&["ss", "-tnH", "state", "established"]).unwrap();
    assert!(
        established.lines().count() < 10,
        "connections piling up in the pod:\n{established}"
    );
    assert!(t.pod.is_running("podwarden"), "{}", t.logs());
    // And the proxy still works.
    assert_eq!(
        t.app_curl(&[&format!("http://{}:8000/ok.txt", SERVER.v4)])
            .unwrap(),
        "ok\n"
    );
}

/// The DNS listener answers on 127.0.0.1/::1 so that its reply to a
/// REDIRECTed query leaves from the address conntrack expects (a wildcard bind
/// would answer from the pod IP and the app would never see it).
#[test]
fn dns_is_answered_through_the_proxy_and_names_reach_later_flows() {
    if !require(
        "dns_is_answered_through_the_proxy_and_names_reach_later_flows",
        &["curl", "dig", "python3"],
        BIN,
    ) {
        return;
    }
    let t = Topology::new().unwrap();
    let resolver = SERVER.v4.to_string();
    t.server
        .spawn(
            "dns",
            None,
            &[
                podwarden_e2e::python(),
                &podwarden_e2e::pod::fixture("dns_server.py"),
                "53",
                &format!("api.example.test={}", SERVER.v4),
                &format!("api.example.test={}", SERVER.v6),
            ],
        )
        .unwrap();
    t.server.wait_udp_bound(53, podwarden_e2e::READY).unwrap();
    servers::http(
        &t.server,
        &t.scratch,
        "web",
        8000,
        &[("named.txt", "by name\n")],
    )
    .unwrap();
    t.pod
        .set_resolv_conf(&format!("nameserver {resolver}\n"))
        .unwrap();
    t.start_proxy(&["--dns-upstream", &resolver]).unwrap();
    t.pod
        .wait_udp_bound(15053, podwarden_e2e::READY)
        .expect("the proxy's DNS listener");
    t.init(&["--dns-resolver", &resolver]).unwrap();

    let answer = t
        .pod
        .exec_as(
            Some(podwarden_e2e::APP_UID),
            &[
                "dig",
                "+short",
                "+tries=1",
                "+time=3",
                &format!("@{resolver}"),
                "api.example.test",
                "A",
            ],
        )
        .unwrap();
    assert_eq!(answer.trim(), SERVER.v4.to_string());
    // The upstream saw the query from the pod (the proxy forwarded it).
    let log = t.server.log_of("dns");
    assert!(
        log.contains(&format!("QUERY api.example.test 1 from ::ffff:{}", POD.v4)),
        "{log}"
    );
    let q = t
        .wait_flow("for the DNS query", |r| r.flow.protocol == AppProtocol::Dns)
        .unwrap();
    assert_eq!(q.flow.direction, Direction::Outbound);

    // The app resolving through the pod's resolv.conf, then connecting by name.
    let body = t
        .app_curl(&["-4", "http://api.example.test:8000/named.txt"])
        .unwrap();
    assert_eq!(body, "by name\n");
    let rec = t
        .wait_flow("for the request by name", |r| {
            outbound_to(r, 8000) && r.flow.http.as_ref().is_some_and(|h| h.path == "/named.txt")
        })
        .unwrap();
    assert!(
        rec.flow
            .peer_names
            .iter()
            .any(|n| n.trim_end_matches('.') == "api.example.test"),
        "{rec:?}"
    );
    assert_eq!(
        rec.flow.http.as_ref().unwrap().host.as_deref(),
        Some("api.example.test")
    );
}
