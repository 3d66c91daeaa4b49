use std::sync::Mutex;

use podwarden_policy::events::SecurityEvent;
use prometheus::Registry;

use super::*;
use crate::l7::report::L7Metrics;

const CARD: &str = "4111 1111 1111 1111";
const CARD_DIGITS: &str = "4111111111111111";

type Events = Arc<Mutex<Vec<SecurityEvent>>>;

fn engine(yaml: &str, mode: Mode) -> (Arc<DlpEngine>, Events, Registry) {
    let settings: DlpSettings = serde_yaml_ng::from_str(yaml).unwrap();
    let events: Events = Arc::default();
    let sink = events.clone();
    let registry = Registry::new();
    let r = Reporter::with_sink(
        move |e| sink.lock().unwrap().push(e),
        L7Metrics::new(&registry).unwrap(),
    );
    (
        Arc::new(DlpEngine::compile(&settings, mode, r).unwrap()),
        events,
        registry,
    )
}

fn flow(dir: Direction, proto: AppProtocol) -> Flow {
    let (peer, local) = match dir {
        Direction::Outbound => ("198.51.100.10:80", "192.0.2.10:40000"),
        Direction::Inbound => ("192.0.2.74:40000", "192.0.2.10:8080"),
    };
    let mut f = Flow::connection(dir, peer.parse().unwrap(), local.parse().unwrap());
    f.protocol = proto;
    f
}

fn post(uri: &str) -> http::request::Parts {
    http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn ok() -> http::response::Parts {
    http::Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// Nothing anyone can read holds the full number.
fn assert_never_leaks(events: &Events, registry: &Registry) {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    let mut all = text;
    for e in events.lock().unwrap().iter() {
        all.push_str(&e.to_json_line());
        all.push_str(&format!("{e:?}"));
    }
    assert!(!all.contains(CARD) && !all.contains(CARD_DIGITS), "{all}");
}

#[test]
fn protect_blocks_an_outbound_post_before_it_is_sent() {
    let (e, events, registry) = engine("{}", Mode::Protect);
    let i = DlpHttpInspector(e);
    let mut s = i
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Http), "ev-7")
        .unwrap();
    assert_eq!(s.request_head(&post("/pay")), Verdict::Continue);
    let body = format!("{{\"card\":\"{CARD}\",\"amount\":12}}");
    match s.request_body(body.as_bytes(), true) {
        Verdict::Block(b) => {
            assert_eq!(b.rule, "credit_card");
            assert!(!b.reason.contains("4111"), "{}", b.reason);
        }
        v => panic!("{v:?}"),
    }
    let ev = events.lock().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].id, "ev-7");
    assert_eq!(ev[0].action, EventAction::Blocked);
    assert_eq!(
        ev[0].kind,
        EventKind::DlpHit {
            sensor: "credit_card".into(),
            sample: "4111 **** **** 1111".into()
        }
    );
    assert_eq!(ev[0].details["location"], "request_body");
    drop(ev);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains(
            "podwarden_dlp_findings_total{action=\"blocked\",direction=\"outbound\",sensor=\"credit_card\"} 1"
        ),
        "{text}"
    );
    assert_never_leaks(&events, &registry);
}

#[test]
fn monitor_passes_and_reports_masked() {
    let (e, events, registry) = engine("{}", Mode::Monitor);
    let i = DlpHttpInspector(e);
    let mut s = i
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Http), "ev")
        .unwrap();
    s.request_head(&post("/pay"));
    assert_eq!(
        s.request_body(format!("card={CARD}&x=1").as_bytes(), true),
        Verdict::Continue
    );
    let ev = events.lock().unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].action, EventAction::WouldBlock);
    drop(ev);
    assert_never_leaks(&events, &registry);
}

#[test]
fn a_card_in_the_query_string_is_refused_at_the_head() {
    let (e, events, _) = engine("{}", Mode::Protect);
    let i = DlpHttpInspector(e);
    let mut s = i
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Http), "ev")
        .unwrap();
    let v = s.request_head(&post("/pay?card=4111%201111%201111%201111&x=1"));
    assert!(matches!(v, Verdict::Block(b) if b.rule == "credit_card"));
    assert_eq!(events.lock().unwrap()[0].details["location"], "query");
}

#[test]
fn split_values_are_found_across_body_chunks_and_stream_segments() {
    let (e, events, registry) = engine("{}", Mode::Protect);
    let i = DlpHttpInspector(e.clone());
    let mut s = i
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Http), "ev")
        .unwrap();
    s.request_head(&post("/pay"));
    assert_eq!(
        s.request_body(b"{\"card\":\"4111 1111 ", false),
        Verdict::Continue
    );
    assert!(matches!(
        s.request_body(b"1111 1111\"}", true),
        Verdict::Block(_)
    ));

    let si = DlpStreamInspector(e);
    let mut st = si
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Opaque), "ev-s")
        .unwrap();
    assert_eq!(
        st.on_data(StreamDir::ClientToServer, b"SET card 4111 1111 "),
        Verdict::Continue
    );
    // The peer's bytes are not leaving the pod.
    assert_eq!(
        st.on_data(StreamDir::ServerToClient, CARD.as_bytes()),
        Verdict::Continue
    );
    match st.on_data(StreamDir::ClientToServer, b"1111 1111\r\nQUIT\r\n") {
        Verdict::Block(b) => assert_eq!(b.rule, "credit_card"),
        v => panic!("{v:?}"),
    }
    let ev = events.lock().unwrap();
    assert_eq!(ev.last().unwrap().details["location"], "stream");
    assert_eq!(ev.last().unwrap().id, "ev-s");
    drop(ev);
    assert_never_leaks(&events, &registry);
}

#[test]
fn a_value_at_the_end_of_a_stream_is_decided_when_the_sender_closes() {
    let (e, events, _) = engine("{}", Mode::Protect);
    let mut st = DlpStreamInspector(e)
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Opaque), "x")
        .unwrap();
    // The scanner needs two bytes past a number to know it ended.
    assert_eq!(
        st.on_data(StreamDir::ClientToServer, format!("card={CARD}").as_bytes()),
        Verdict::Continue
    );
    assert!(events.lock().unwrap().is_empty());
    assert_eq!(st.on_end(StreamDir::ServerToClient), Verdict::Continue);
    assert!(matches!(
        st.on_end(StreamDir::ClientToServer),
        Verdict::Block(b) if b.rule == "credit_card"
    ));
    assert_eq!(events.lock().unwrap().len(), 1);
}

#[test]
fn responses_to_inbound_clients_are_scanned_not_their_requests() {
    let (e, events, _) = engine("{}", Mode::Protect);
    let i = DlpHttpInspector(e);
    let mut s = i
        .begin_with_id(&flow(Direction::Inbound, AppProtocol::Http), "ev")
        .unwrap();
    // What a client sends in is not data leaving the pod.
    s.request_head(&post("/pay"));
    assert_eq!(s.request_body(CARD.as_bytes(), true), Verdict::Continue);
    assert_eq!(s.response_head(&ok()), Verdict::Continue);
    assert!(matches!(
        s.response_body(format!("your card: {CARD}\n").as_bytes(), true),
        Verdict::Block(_)
    ));
    assert_eq!(
        events.lock().unwrap()[0].details["location"],
        "response_body"
    );
}

#[test]
fn directions_and_protocols_select_what_is_scanned() {
    let (e, _, _) = engine("{directions: [outbound]}", Mode::Protect);
    assert!(DlpHttpInspector(e.clone())
        .begin_with_id(&flow(Direction::Inbound, AppProtocol::Http), "x")
        .is_none());
    assert!(DlpStreamInspector(e.clone())
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Opaque), "x")
        .is_some());
    // Encrypted passthrough is never inspected.
    assert!(DlpStreamInspector(e)
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Tls), "x")
        .is_none());
    // Inbound opaque streams: the server-to-client half leaves the pod.
    let (e, _, _) = engine("{}", Mode::Protect);
    let mut st = DlpStreamInspector(e)
        .begin_with_id(&flow(Direction::Inbound, AppProtocol::Opaque), "x")
        .unwrap();
    assert_eq!(
        st.on_data(
            StreamDir::ClientToServer,
            format!("{CARD}\r\n\r\n").as_bytes()
        ),
        Verdict::Continue
    );
    assert!(matches!(
        st.on_data(
            StreamDir::ServerToClient,
            format!("{CARD}\r\n\r\n").as_bytes()
        ),
        Verdict::Block(_)
    ));
}

#[test]
fn disabled_and_custom_sensors_come_from_the_policy() {
    let (e, events, _) = engine(
        "{disabledSensors: [credit_card], customSensors: [{name: employee_id, pattern: 'EMP-[0-9]{6}'}]}",
        Mode::Protect,
    );
    let i = DlpHttpInspector(e);
    let mut s = i
        .begin_with_id(&flow(Direction::Outbound, AppProtocol::Http), "ev")
        .unwrap();
    s.request_head(&post("/"));
    assert_eq!(s.request_body(CARD.as_bytes(), false), Verdict::Continue);
    assert!(matches!(
        s.request_body(b" id=EMP-123456 ", true),
        Verdict::Block(b) if b.rule == "employee_id"
    ));
    assert_eq!(events.lock().unwrap().len(), 1);
    let settings: DlpSettings = serde_yaml_ng::from_str("{disabledSensors: [no_such]}").unwrap();
    let r = Reporter::with_sink(|_| {}, L7Metrics::new(&Registry::new()).unwrap());
    assert!(DlpEngine::compile(&settings, Mode::Protect, r).is_err());
}

#[test]
fn content_encoding_selects_the_decoder() {
    let mut h = http::HeaderMap::new();
    assert_eq!(stream_options(&h).content_encoding, None);
    h.insert("content-encoding", "GZIP".parse().unwrap());
    assert_eq!(stream_options(&h).content_encoding, Some(Compression::Gzip));
    h.insert("content-encoding", "deflate".parse().unwrap());
    assert_eq!(
        stream_options(&h).content_encoding,
        Some(Compression::Deflate)
    );
    h.insert("content-encoding", "br".parse().unwrap());
    assert_eq!(stream_options(&h).content_encoding, None);
}
