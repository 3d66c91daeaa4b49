//! `GET /coverage` served for real on loopback: the learning-coverage
//! signals and advice computed from a synthetic flow history written into
//! the workload's flow log (the same segments the proxy's writer produces).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime};

use podwarden_policy::{
    AppProtocol, Decision, Direction, Flow, FlowRecord, HttpRequestInfo, RecordKind,
};
use serde_json::Value;

use crate::config::Config;
use crate::flowlog::{workload_dir, Limits, SegmentWriter};
use crate::Proxy;

const HOUR: u64 = 3_600_000;
const WORKLOAD: &str = "shop/checkout";

/// The admin server of a proxy whose flow log holds `history`.
struct Served {
    addr: SocketAddr,
    _proxy: Proxy,
    _dir: tempfile::TempDir,
}

fn serve(history: &[FlowRecord]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), history);
    let config = Config {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        workload: WORKLOAD.into(),
        flow_log_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    let proxy = Proxy::builder(config).build().unwrap();
    let server = super::spawn(proxy.shared().clone()).unwrap();
    Served {
        addr: server.addr,
        _proxy: proxy,
        _dir: dir,
    }
}

fn write_log(root: &Path, history: &[FlowRecord]) {
    let limits = Limits {
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(30 * 24 * 3600),
    };
    let mut w = SegmentWriter::open(&workload_dir(root, WORKLOAD), limits).unwrap();
    for rec in history {
        w.append(rec, SystemTime::now()).unwrap();
    }
    w.flush().unwrap();
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn coverage(addr: SocketAddr, query: &str) -> Value {
    let (st, body) = get(addr, &format!("/coverage{query}"));
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn now_ms() -> u64 {
    crate::records::now_ms()
}

fn rec(id: String, at: u64, flow: Flow) -> FlowRecord {
    FlowRecord {
        id,
        start_ms: at,
        duration_ms: 1,
        flow,
        bytes_sent: 1,
        bytes_received: 1,
        decision: Decision::allow_learning(),
        kind: RecordKind::Connection,
        status: None,
    }
}

/// An outbound opaque connection to the database (by address).
fn db(at: u64) -> FlowRecord {
    rec(
        format!("db{at}"),
        at,
        Flow::connection(
            Direction::Outbound,
            "198.51.100.7:5432".parse().unwrap(),
            "10.0.0.2:40000".parse().unwrap(),
        ),
    )
}

/// An outbound HTTP request to `api.example` for `/users/<n>`.
fn api(at: u64, n: u64) -> FlowRecord {
    let mut f = Flow::connection(
        Direction::Outbound,
        "203.0.113.9:80".parse().unwrap(),
        "10.0.0.2:40001".parse().unwrap(),
    );
    f.protocol = AppProtocol::Http;
    f.peer_names = vec!["api.example".into()];
    f.http = Some(HttpRequestInfo {
        method: "GET".into(),
        host: Some("api.example".into()),
        path: format!("/users/{n}"),
        target: None,
    });
    let mut r = rec(format!("api{at}"), at, f);
    r.kind = RecordKind::Request;
    r
}

const DB: &str = "out-opaque-198.51.100.7-5432";
const API: &str = "out-http-api.example-80 GET /users/{id}";

#[test]
fn converged_history_with_an_hourly_job_is_ready_to_approve() {
    let now = now_ms();
    let start = now - 72 * HOUR;
    // Three days: the database hourly (a job), the API every 25 minutes
    // with changing ids (one shape, no schedule); nothing new since start.
    let mut h: Vec<FlowRecord> = (0..72).map(|i| db(start + i * HOUR)).collect();
    h.extend((0..172).map(|i| api(start + 60_000 + i * 25 * 60_000, i)));
    let s = serve(&h);
    let c = coverage(s.addr, "");
    assert_eq!(c["records"], 244);
    assert_eq!(c["distinctFlows"], 2);
    assert_eq!(c["ready"], true, "{c:#}");
    assert_eq!(c["advice"], "ready to approve");
    assert_eq!(c["reasons"], Value::Array(vec![]));
    // Both shapes were new in the first hour, none after.
    let per_hour = c["newFlowsPerHour"].as_array().unwrap();
    assert_eq!(per_hour[0], 2);
    assert!(per_hour[1..].iter().all(|n| n == 0), "{per_hour:?}");
    assert!(c["hoursSinceLastNewFlow"].as_f64().unwrap() > 71.9);
    let sched = c["scheduled"].as_array().unwrap();
    assert_eq!(sched.len(), 1, "{sched:?}");
    assert_eq!(sched[0]["flow"], DB);
    assert_eq!(sched[0]["every"], "hourly");
    assert_eq!(sched[0]["runs"], 72);
    assert_eq!(c["seenOnce"], Value::Array(vec![]));
}

#[test]
fn growing_short_history_keeps_learning_and_names_the_reasons() {
    let now = now_ms();
    let start = now - 10 * HOUR;
    let mut h: Vec<FlowRecord> = (0..10).map(|i| db(start + i * HOUR)).collect();
    // A new flow 30 minutes ago, seen once.
    h.push(api(now - HOUR / 2, 7));
    let s = serve(&h);
    let c = coverage(s.addr, "");
    assert_eq!(c["ready"], false);
    let advice = c["advice"].as_str().unwrap();
    assert!(advice.starts_with("keep learning because "), "{advice}");
    let reasons: Vec<&str> = c["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].contains("daily"),
        "window too short: {reasons:?}"
    );
    assert!(
        reasons[1].contains("still growing: 1 new flow(s)"),
        "{reasons:?}"
    );
    assert_eq!(c["seenOnce"], serde_json::json!([API]));
    assert!(c["hoursSinceLastNewFlow"].as_f64().unwrap() < 0.6);

    // `since` narrows the window to the records after it: only the last
    // database connection and the API request remain.
    let since = now - 2 * HOUR + 60_000;
    let c = coverage(s.addr, &format!("?since={since}"));
    assert_eq!(c["records"], 2, "{c:#}");
    // A relative time works too.
    let c = coverage(s.addr, "?since=2h");
    assert_eq!(c["records"], 2, "{c:#}");

    let (st, body) = get(s.addr, "/coverage?since=yesterday-ish");
    assert_eq!(st, 400, "{body}");
}

#[test]
fn no_history_says_so_and_a_disabled_log_is_404() {
    let s = serve(&[]);
    let c = coverage(s.addr, "");
    assert_eq!(c["records"], 0);
    assert_eq!(c["ready"], false);
    assert_eq!(
        c["advice"],
        "keep learning because no flows have been recorded yet"
    );

    let config = Config {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let proxy = Proxy::builder(config).build().unwrap();
    let server = super::spawn(proxy.shared().clone()).unwrap();
    let (st, body) = get(server.addr, "/coverage");
    assert_eq!(st, 404);
    assert!(body.contains("--flow-log-dir"), "{body}");
}
