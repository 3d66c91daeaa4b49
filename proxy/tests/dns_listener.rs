//! The DNS listener with a policy in force, over loopback sockets. With
//! `spec.dns.allowedNames: listed`, a name the policy does not list must not
//! reach the upstream in protect — the upstream itself records every name it
//! is asked — and is answered NXDOMAIN over UDP and TCP, with a violation
//! event naming it (the only event for that query: its record raises none);
//! monitor forwards it and reports a would-block; a listed name is forwarded
//! and answered by the upstream in both. Records carry the question.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podwarden_policy::dns::{parse_message, NAME_NOT_IN_POLICY};
use podwarden_proxy::admin::violations::ViolationWindow;
use podwarden_proxy::config::Config;
use podwarden_proxy::events::{EventBus, EventMetrics, Origin, RotatingFileConfig, SinkConfig};
use podwarden_proxy::learning::RecordConsumer;
use podwarden_proxy::policy_reload::{PolicyReloader, ReloadMetrics, ReloadOutcome};
use podwarden_proxy::{dns, DecisionHook, Proxy};
use prometheus::Registry;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Bound of every wait for an answer or an event: generous, since only a
/// hung test reaches it (a loaded CI machine can stall for seconds).
const WAIT: Duration = Duration::from_secs(60);

/// Names the upstream was asked, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A UDP resolver on loopback: answers every A query with 192.0.2.7 and
/// records the question's name.
async fn upstream() -> (SocketAddr, Seen) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let q = &buf[..n];
            let Ok(m) = parse_message(q) else { continue };
            if let Some(question) = m.questions.first() {
                log.lock().unwrap().push(question.name.clone());
            }
            let mut r = q.to_vec();
            r[2] |= 0x80;
            r[7] = 1; // ANCOUNT
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            let _ = sock.send_to(&r, from).await;
        }
    });
    (addr, seen)
}

/// A query (no EDNS) for `name`, type A, id 0x4242.
fn query(name: &str) -> Vec<u8> {
    let mut m = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for l in name.split('.') {
        m.push(l.len() as u8);
        m.extend_from_slice(l.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    m
}

fn policy(mode: &str, upstream: SocketAddr) -> String {
    format!(
        r#"apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: shop/web, version: 1 }}
spec:
  mode: {mode}
  dns: {{ allowedNames: listed, allowNames: ["*.cluster.local"] }}
  rules:
    - {{ id: dns, direction: outbound, peer: {{ cidr: 127.0.0.1/32 }}, ports: ["{port}"], protocols: [dns] }}
    - {{ id: api, direction: outbound, peer: {{ fqdn: api.example }}, ports: ["443"] }}
"#,
        port = upstream.port()
    )
}

async fn ask_udp(listener: SocketAddr, q: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(q, listener).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, s.recv(&mut buf))
        .await
        .expect("the listener answered")
        .unwrap();
    buf.truncate(n);
    buf
}

async fn ask_tcp(listener: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(listener).await.unwrap();
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(q);
    s.write_all(&out).await.unwrap();
    let len = tokio::time::timeout(WAIT, s.read_u16())
        .await
        .expect("the listener answered")
        .unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

fn rcode(answer: &[u8]) -> u8 {
    answer[3] & 0x0F
}

fn ancount(answer: &[u8]) -> u16 {
    u16::from_be_bytes([answer[6], answer[7]])
}

/// Events in the file sink, polling for one matching `pred`.
async fn wait_event(path: &Path, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| pred(e));
        if let Some(e) = found {
            return e;
        }
        assert!(Instant::now() < deadline, "no such event; events:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free loopback port for the listener: it binds UDP and TCP on the
/// same port, and only reports the UDP one.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn unlisted_names_never_reach_the_upstream_in_protect() {
    let dir = tempfile::tempdir().unwrap();
    let (up, seen) = upstream().await;
    let policy_file = dir.path().join("policy.yaml");
    let events_file = dir.path().join("events.log");
    std::fs::write(&policy_file, policy("protect", up)).unwrap();

    let hook = DecisionHook::default();
    let proxy = Proxy::builder(Config::default())
        .hook(hook.clone())
        .build()
        .unwrap();
    let sink = SinkConfig::File(RotatingFileConfig {
        path: events_file.clone(),
        max_bytes: 1 << 20,
        keep: 1,
    });
    let (bus, _tasks) = EventBus::start(
        vec![sink],
        100,
        Origin::default(),
        EventMetrics::new(&Registry::new()).unwrap(),
    );
    let reloader = Arc::new(PolicyReloader::new(
        policy_file.clone(),
        hook,
        ReloadMetrics::new(&Registry::new()).unwrap(),
        Some(bus),
        "shop/web",
        "web-0",
    ));
    assert!(matches!(
        reloader.reload_now(),
        ReloadOutcome::Applied { .. }
    ));
    // The port was free a moment ago; another process may have taken it
    // (for UDP it was never checked): then try another.
    let mut tries = 0;
    let (listen, udp) = loop {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        match dns::start_with_policy(
            proxy.shared().clone(),
            listen,
            vec![up],
            Vec::new(),
            Some(reloader.clone()),
        )
        .await
        {
            Ok(udp) => break (listen, udp),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 10 => tries += 1,
            Err(e) => panic!("dns listener on {listen}: {e}"),
        }
    };

    // A listed name and an allowNames suffix are forwarded and answered.
    for name in ["api.example", "kube-dns.kube-system.svc.cluster.local"] {
        let a = ask_udp(udp, &query(name)).await;
        assert_eq!((rcode(&a), ancount(&a)), (0, 1), "{name}");
        assert!(seen.lock().unwrap().iter().any(|n| n == name), "{name}");
    }
    // The bindings it returned are remembered for FQDN rules.
    assert_eq!(
        proxy.shared().names.names_for("192.0.2.7".parse().unwrap()),
        vec!["api.example", "kube-dns.kube-system.svc.cluster.local"]
    );

    // Unlisted: NXDOMAIN from the listener, same id, no answer records,
    // over UDP and TCP, and the upstream never hears of it.
    let leak = "mzxw6ytboi.attacker.example";
    let a = ask_udp(udp, &query(leak)).await;
    assert_eq!(
        (rcode(&a), ancount(&a), &a[..2]),
        (3, 0, &[0x42u8, 0x42][..])
    );
    let a = ask_tcp(listen, &query("tcp.attacker.example")).await;
    assert_eq!((rcode(&a), ancount(&a)), (3, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = seen.lock().unwrap().clone();
    assert!(
        !asked.iter().any(|n| n.contains("attacker")),
        "the upstream saw {asked:?}"
    );

    let e = wait_event(&events_file, |e| {
        e["kind"] == "violation" && e["names"][0] == leak
    })
    .await;
    assert_eq!(e["rule"], NAME_NOT_IN_POLICY);
    assert_eq!(e["action"], "blocked");
    assert_eq!(e["details"]["answer"], "NXDOMAIN");
    assert_eq!(e["workload"], "shop/web");

    // The unforwarded query is recorded as a denied flow to the resolver,
    // with its question and the answer the pod got; the forwarded ones
    // with theirs (what the learner learns names from).
    let recs = proxy.shared().flows.snapshot(None);
    let refused = recs
        .iter()
        .find(|r| r.flow.dns.as_ref().is_some_and(|q| q.name == leak))
        .unwrap_or_else(|| panic!("no record of {leak}: {recs:?}"));
    assert_eq!(refused.flow.peer, up);
    assert!(!refused.decision.is_allowed());
    let q = refused.flow.dns.as_ref().unwrap();
    assert_eq!(
        (q.qtype.as_str(), q.rcode.as_deref(), q.reported),
        ("A", Some("NXDOMAIN"), true)
    );
    let answered = recs
        .iter()
        .find(|r| r.flow.dns.as_ref().is_some_and(|q| q.name == "api.example"))
        .unwrap_or_else(|| panic!("no record of api.example: {recs:?}"));
    assert!(answered.decision.is_allowed());
    let q = answered.flow.dns.as_ref().unwrap();
    assert_eq!((q.rcode.as_deref(), q.reported), (Some("NOERROR"), false));
    let json = serde_json::to_value(refused).unwrap();
    assert_eq!(json["dns"]["name"], leak, "the flow log shows the name");

    // One refused query, one event: the listener's (naming the name and
    // the reason); the record stream, which turns denied records into
    // violations, raises none for it, but still counts it.
    let consumer = RecordConsumer {
        learning: None,
        events: None,
        violations: Arc::new(ViolationWindow::new()),
        workload: "shop/web".into(),
        pod: "web-0".into(),
    };
    assert!(consumer.handle(refused).is_empty());
    assert_eq!(consumer.violations.last_hour(refused.start_ms), 1);
    let text = std::fs::read_to_string(&events_file).unwrap();
    assert_eq!(
        text.lines().filter(|l| l.contains(leak)).count(),
        1,
        "{text}"
    );

    // Monitor: the same name is forwarded, answered, and reported.
    std::fs::write(&policy_file, policy("monitor", up)).unwrap();
    assert!(matches!(
        reloader.reload_now(),
        ReloadOutcome::Applied { .. }
    ));
    let a = ask_udp(udp, &query(leak)).await;
    assert_eq!((rcode(&a), ancount(&a)), (0, 1));
    assert!(seen.lock().unwrap().iter().any(|n| n == leak));
    let e = wait_event(&events_file, |e| {
        e["kind"] == "would_block" && e["names"][0] == leak
    })
    .await;
    assert_eq!(e["rule"], NAME_NOT_IN_POLICY);
    assert_eq!(e["details"]["answer"], "forwarded");
}
