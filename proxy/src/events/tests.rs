use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use podwarden_policy::events::{EventKind, SecurityEvent};
use podwarden_policy::Mode;
use prometheus::Registry;

use super::*;

fn event(i: usize) -> SecurityEvent {
    SecurityEvent::new(
        format!("ev-{i}"),
        SystemTime::UNIX_EPOCH,
        "shop/checkout",
        "checkout-1",
        EventKind::Violation,
        Mode::Protect,
    )
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("podwarden-events-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("events.log")
}

fn origin() -> Origin {
    Origin {
        workload: "shop/checkout".into(),
        pod: "checkout-1".into(),
        mode: Mode::Monitor,
    }
}

#[tokio::test]
async fn file_sink_receives_every_event_as_a_json_line() {
    let path = temp_path("file");
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let cfg = SinkConfig::File(RotatingFileConfig {
        path: path.clone(),
        max_bytes: 1 << 20,
        keep: 1,
    });
    let (bus, tasks) = EventBus::start(vec![cfg], 1000, origin(), metrics.clone());
    for i in 0..50 {
        bus.emit(event(i));
    }
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<SecurityEvent>(l).unwrap().id)
        .collect();
    assert_eq!(ids, (0..50).map(|i| format!("ev-{i}")).collect::<Vec<_>>());
    assert_eq!(metrics.delivered.with_label_values(&["file"]).get(), 50);
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["file", "queue_full"])
            .get(),
        0
    );
}

// current_thread: the sink task cannot run while the test emits, so the
// queue fills deterministically.
#[tokio::test(flavor = "current_thread")]
async fn overflow_is_counted_and_reported_in_the_stream() {
    let path = temp_path("overflow");
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let cfg = SinkConfig::File(RotatingFileConfig {
        path: path.clone(),
        max_bytes: 1 << 20,
        keep: 1,
    });
    let (bus, tasks) = EventBus::start(vec![cfg], 2, origin(), metrics.clone());
    for i in 0..10 {
        bus.emit(event(i));
    }
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["file", "queue_full"])
            .get(),
        8
    );
    // Let the sink drain, then send one more: the report precedes it.
    tokio::task::yield_now().await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    bus.emit(event(99));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    let events: Vec<SecurityEvent> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        vec!["violation", "violation", "events_dropped", "violation"],
        "{events:?}"
    );
    assert_eq!(
        events[2].kind,
        EventKind::EventsDropped {
            sink: "file".into(),
            count: 8
        }
    );
    assert_eq!(events[2].mode, Mode::Monitor);
    assert_eq!(events[3].id, "ev-99");
}

/// A collector that answers 503 to the first `fail_first` requests.
async fn collector(
    fail_first: usize,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (got2, calls2) = (got.clone(), calls.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (got, calls) = (got2.clone(), calls2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (got, calls) = (got.clone(), calls.clone());
                    async move {
                        assert_eq!(req.headers()["authorization"], "Bearer t0ken");
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        let status = if n < fail_first {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            let v: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                            got.lock().unwrap().extend(v);
                            StatusCode::OK
                        };
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = status;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}/ingest"), got, calls)
}

/// Per-request timeout of the test webhooks: only a bound for a hung
/// collector. A request that times out is retried and counted twice by the
/// collector, so it must not fire on a merely slow (loaded CI) machine.
const WEBHOOK_TIMEOUT_MS: u64 = 60_000;

fn webhook(url: String, attempts: u32) -> SinkConfig {
    SinkConfig::Webhook(WebhookConfig {
        url,
        attempts,
        timeout_ms: WEBHOOK_TIMEOUT_MS,
        backoff_ms: 10,
        bearer_token: Some("t0ken".into()),
        ca_file: None,
    })
}

/// A collector on TLS (certificate for `localhost` from a throwaway CA
/// written to `ca.pem`); returns its https URL, the CA file and what it got.
async fn tls_collector(name: &str) -> (String, std::path::PathBuf, Arc<Mutex<Vec<String>>>) {
    use tokio_rustls::rustls;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let ca = temp_path(name).with_file_name("ca.pem");
    std::fs::write(&ca, cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, got) = (acceptor.clone(), got2.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let v: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
                        got.lock()
                            .unwrap()
                            .extend(v.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (format!("https://localhost:{port}/ingest"), ca, got)
}

#[tokio::test]
async fn https_webhook_verifies_the_collector_against_the_ca_file() {
    let (url, ca, got) = tls_collector("tls-ok").await;
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let cfg = SinkConfig::Webhook(WebhookConfig {
        url,
        ca_file: Some(ca),
        attempts: 2,
        timeout_ms: WEBHOOK_TIMEOUT_MS,
        backoff_ms: 10,
        bearer_token: None,
    });
    let (bus, tasks) = EventBus::start(vec![cfg], 100, origin(), metrics.clone());
    bus.emit(event(1));
    bus.emit(event(2));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*got.lock().unwrap(), vec!["ev-1", "ev-2"]);
    assert_eq!(metrics.delivered.with_label_values(&["webhook"]).get(), 2);
}

#[tokio::test]
async fn https_webhook_refuses_a_collector_the_roots_do_not_vouch_for() {
    // Default roots (Mozilla's) do not include the throwaway CA.
    let (url, _ca, got) = tls_collector("tls-untrusted").await;
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let (bus, tasks) = EventBus::start(vec![webhook(url, 2)], 100, origin(), metrics.clone());
    bus.emit(event(1));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        got.lock().unwrap().is_empty(),
        "delivered to an unverified collector"
    );
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["webhook", "send_failed"])
            .get(),
        1
    );
}

#[tokio::test]
async fn webhook_retries_until_delivered() {
    let (url, got, calls) = collector(2).await;
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let (bus, tasks) = EventBus::start(vec![webhook(url, 5)], 100, origin(), metrics.clone());
    bus.emit(event(1));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["id"], "ev-1");
    assert_eq!(metrics.delivered.with_label_values(&["webhook"]).get(), 1);
}

#[tokio::test]
async fn webhook_failure_is_counted_then_reported() {
    // Fails 2 requests; with 2 attempts per batch the first batch is lost.
    let (url, got, _calls) = collector(2).await;
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let (bus, tasks) = EventBus::start(vec![webhook(url, 2)], 100, origin(), metrics.clone());
    bus.emit(event(1));
    // Wait for the first batch to fail for good before sending the next
    // (a poll: the deadline only bounds a hung test).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while metrics
        .dropped
        .with_label_values(&["webhook", "send_failed"])
        .get()
        == 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["webhook", "send_failed"])
            .get(),
        1
    );
    bus.emit(event(2));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    let got = got.lock().unwrap();
    let kinds: Vec<&str> = got.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["violation", "events_dropped"]);
    assert_eq!(got[0]["id"], "ev-2");
    assert_eq!(got[1]["count"], 1);
    assert_eq!(got[1]["sink"], "webhook");
}

#[tokio::test]
async fn sink_that_cannot_start_counts_its_events_as_lost() {
    let metrics = EventMetrics::new(&Registry::new()).unwrap();
    let cfg = SinkConfig::File(RotatingFileConfig {
        path: "/nonexistent-dir/x/events.log".into(),
        max_bytes: 10,
        keep: 1,
    });
    let (bus, tasks) = EventBus::start(vec![cfg], 10, origin(), metrics.clone());
    bus.emit(event(1));
    drop(bus);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        metrics
            .dropped
            .with_label_values(&["file", "send_failed"])
            .get(),
        1
    );
}

#[test]
fn sink_config_from_yaml() {
    let y = "- type: stdout\n- type: file\n  path: /var/log/podwarden/events.log\n  maxBytes: 1000\n- type: syslog\n  address: collector:514\n  transport: tcp\n- type: webhook\n  url: http://siem:8080/in\n";
    let v: Vec<SinkConfig> = serde_yaml_ng::from_str(y).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(
        v.iter().map(|s| s.name()).collect::<Vec<_>>(),
        vec!["stdout", "file", "syslog", "webhook"]
    );
    assert!(serde_yaml_ng::from_str::<Vec<SinkConfig>>("- type: kafka\n").is_err());
}

#[test]
fn backoff_grows_and_caps() {
    let b = |a| backoff(a, Duration::from_millis(100), Duration::from_secs(1));
    assert_eq!(b(0), Duration::from_millis(100));
    assert_eq!(b(1), Duration::from_millis(200));
    assert_eq!(b(3), Duration::from_millis(800));
    assert_eq!(b(4), Duration::from_secs(1));
    assert_eq!(b(40), Duration::from_secs(1));
}
