//! Admin endpoints, IPv6, inbound direction and CONNECT through the proxy.

mod common;

use common::*;
use http::Method;
use http_body_util::BodyExt;
use podwarden_policy::{Direction, FlowRecord, RecordKind};
use podwarden_proxy::admin::route_parts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn body(r: http::Response<http_body_util::Full<bytes::Bytes>>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn admin_endpoints_over_tcp() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let admin = podwarden_proxy::admin::spawn(h.proxy.shared().clone()).unwrap();
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    c.read_to_end(&mut sink).await.unwrap();
    h.records_until(|r| r.iter().any(|r| r.kind == RecordKind::Connection))
        .await;

    for (path, want) in [
        ("/healthz", "200 OK"),
        ("/ready", "200 OK"),
        ("/nope", "404"),
    ] {
        let mut a = TcpStream::connect(admin.addr).await.unwrap();
        a.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, _) = read_response(&mut a).await;
        assert!(head.contains(want), "{path}: {head}");
    }
    let mut a = TcpStream::connect(admin.addr).await.unwrap();
    a.write_all(b"GET /flows HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    let (_, flows) = read_response(&mut a).await;
    let recs: Vec<FlowRecord> = serde_json::from_str(&flows).unwrap();
    assert_eq!(recs.len(), 2, "{flows}");
    assert_eq!(recs[0].kind, RecordKind::Request); // request ends before its connection
    assert_eq!(recs[1].kind, RecordKind::Connection);
    assert!(recs[1].bytes_sent > 0 && recs[1].bytes_received > 0);

    let after = route_parts(
        h.proxy.shared(),
        &Method::GET,
        "/flows",
        Some(&format!("since={}", recs[0].id)),
    );
    let newer: Vec<FlowRecord> = serde_json::from_str(&body(after).await).unwrap();
    assert_eq!(newer.len(), 1);
    assert_eq!(newer[0].id, recs[1].id);

    let metrics = body(route_parts(
        h.proxy.shared(),
        &Method::GET,
        "/metrics",
        None,
    ))
    .await;
    for want in [
        r#"podwarden_connections_total{direction="outbound",protocol="http",verdict="allow"} 1"#,
        r#"podwarden_http_requests_total{direction="outbound",verdict="allow"} 1"#,
        r#"podwarden_bytes_total{direction="outbound",stream="sent"}"#,
        "podwarden_flow_records_dropped_total 0",
        r#"podwarden_flow_records_total{kind="request"} 1"#,
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
}

#[tokio::test]
async fn ready_only_after_listeners_bound() {
    let proxy = podwarden_proxy::Proxy::builder(podwarden_proxy::config::Config {
        listen_ip: "127.0.0.1".parse().unwrap(),
        outbound_port: 0,
        inbound_port: 0,
        dns_port: 0,
        ..Default::default()
    })
    .build()
    .unwrap();
    let r = route_parts(proxy.shared(), &Method::GET, "/ready", None);
    assert_eq!(r.status(), 503);
    let running = proxy.start().await.unwrap();
    assert_eq!(
        route_parts(proxy.shared(), &Method::GET, "/ready", None).status(),
        200
    );
    running.shutdown();
}

#[tokio::test]
async fn inbound_listener_records_inbound_flows() {
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let mut c = TcpStream::connect(h.running.inbound).await.unwrap();
    c.write_all(b"GET /in HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(recs[0].flow.direction, Direction::Inbound);
    assert_eq!(recs[0].flow.local, srv.addr); // the app's port is the local side
    assert_eq!(recs[0].flow.peer, c.local_addr().unwrap());
}

#[tokio::test]
async fn ipv6_loopback() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        println!("skipped: no IPv6 loopback");
        return;
    };
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut b = [0u8; 5];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
    });
    let h = Harness::start(addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"\x01ping").await.unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"\x01ping");
    drop(c);
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(recs[0].flow.peer, addr);
}

#[tokio::test]
async fn connect_tunnel_is_forwarded_and_target_recorded() {
    // The original destination is an explicit forward proxy: it answers the
    // CONNECT with 200 and then echoes the tunnel.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        *s2.lock().unwrap() = String::from_utf8_lossy(&head).to_string();
        s.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .unwrap();
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    let h = Harness::start(addr).await;
    let mut c = TcpStream::connect(h.addr()).await.unwrap();
    c.write_all(b"CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    c.write_all(b"tunnelled").await.unwrap();
    let mut back = [0u8; 9];
    tokio::time::timeout(WAIT, c.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&back, b"tunnelled");
    assert!(seen
        .lock()
        .unwrap()
        .starts_with("CONNECT db.example:5432 HTTP/1.1"));
    let recs = h
        .records_until(|r| r.iter().any(|r| r.kind == RecordKind::Request))
        .await;
    let info = recs.iter().find_map(|r| r.flow.http.clone()).unwrap();
    assert_eq!(info.target.as_deref(), Some("db.example:5432"));
}

#[tokio::test]
async fn dns_listener_forwards_records_and_learns_names() {
    // Fake resolver: answers any query with www.example.com A 192.0.2.7.
    let upstream = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        loop {
            let (n, from) = upstream.recv_from(&mut buf).await.unwrap();
            let q = &buf[..n];
            let mut r = vec![q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            r.extend_from_slice(&q[12..]); // the question
            r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
            upstream.send_to(&r, from).await.unwrap();
        }
    });
    let srv = http_server().await;
    let h = Harness::start(srv.addr).await;
    let listen = podwarden_proxy::dns::start(
        h.proxy.shared().clone(),
        "127.0.0.1:0".parse().unwrap(),
        vec![up_addr],
    )
    .await
    .unwrap();
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = vec![0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
    client.send_to(&q, listen).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(WAIT, client.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..2], &[0xBE, 0xEF]);
    assert_eq!(&buf[n - 4..n], &[192, 0, 2, 7]);
    let names = h
        .proxy
        .shared()
        .names
        .names_for("192.0.2.7".parse().unwrap());
    assert_eq!(names, vec!["www.example.com"]);
    let recs = h.records_until(|r| !r.is_empty()).await;
    assert_eq!(recs[0].flow.protocol, podwarden_policy::AppProtocol::Dns);
    assert_eq!(recs[0].flow.peer, up_addr);
}
