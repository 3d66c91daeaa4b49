//! WAF and DLP in the data path, end to end: the proxy runs in the pod with
//! a policy file turning the features on (network left in learn), the app
//! is a real HTTP server that logs what it receives, clients in the client
//! namespace (inbound) and the app itself (outbound) use curl and a raw
//! socket client, and both what the servers received and the security
//! events on the proxy's stdout are checked.

use podwarden_e2e::drive::{curl, CurlReply};
use podwarden_e2e::l7::{app_server, crs_dir, policy, raw_sink, split_send, wait_event};
use podwarden_e2e::{require, Topology, APP_UID, POD, SERVER};
use serde_json::Value;

const BIN: &[&str] = &["podwarden-proxy"];
const CARD: &str = "4111 1111 1111 1111";
const CARD_DIGITS: &str = "4111111111111111";

/// The pod with the proxy enforcing `policy`, the app server on 8080, or
/// `None` (skipped).
fn l7_pod(test: &str, policy_text: &str) -> Option<Topology> {
    if !require(test, &["curl", "python3"], BIN) {
        return None;
    }
    let Some(crs) = crs_dir() else {
        let msg = format!("skipped: {test}: needs the OWASP CRS at ../shared/crs/v4.28.0");
        if std::env::var(podwarden_e2e::env::STRICT_ENV).as_deref() == Ok("1") {
            panic!("{msg}");
        }
        println!("{msg}");
        return None;
    };
    let t = Topology::new().unwrap();
    let file = t.scratch.write("policy.yaml", policy_text).unwrap();
    let (file, crs) = (file.display().to_string(), crs.display().to_string());
    t.start_proxy(&["--policy-file", &file, "--waf-rules-dir", &crs])
        .unwrap();
    t.init(&[]).unwrap();
    app_server(&t.pod, &t.scratch, "app", 8080).unwrap();
    Some(t)
}

/// curl from the client namespace to the app; (status, body).
fn inbound(t: &Topology, args: &[&str]) -> (u16, String) {
    let r = curl(&t.client, None, args).unwrap();
    (r.status, r.body)
}

fn app_url(path: &str) -> String {
    format!("http://{}:8080{path}", POD.v4)
}

fn rule_ids(e: &Value) -> Vec<String> {
    e["rule_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn is_waf(e: &Value, action: &str, family: &str) -> bool {
    e["kind"] == "waf_hit"
        && e["action"] == action
        && rule_ids(e).iter().any(|id| id.starts_with(family))
}

const SQLI: &str = "/search?id=1%27%20OR%20%271%27%3D%271";
const XSS: &str = "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E";
const BENIGN: &str = "/search?q=blue+shoes&page=2";

#[test]
fn waf_protect_answers_403_and_the_app_never_sees_the_attack() {
    let Some(t) = l7_pod(
        "waf_protect_answers_403_and_the_app_never_sees_the_attack",
        &policy("protect", "learn"),
    ) else {
        return;
    };
    for (attack, family) in [(SQLI, "942"), (XSS, "941")] {
        let (status, body) = inbound(&t, &[&app_url(attack)]);
        assert_eq!(status, 403, "{body}\n{}", t.logs());
        let reply: Value = serde_json::from_str(&body).unwrap();
        let id = reply["event_id"].as_str().unwrap().to_string();
        let ev = wait_event(&t, "for the blocked request", |e| e["id"] == id.as_str()).unwrap();
        assert!(is_waf(&ev, "blocked", family), "{ev}");
        assert!(ev["score"].as_u64().unwrap() >= 5, "{ev}");
        assert_eq!(ev["mode"], "protect");
    }
    // Over h2c (prior knowledge) too: answered by the proxy, so the app
    // (HTTP/1.1 only) is never asked.
    let (status, body) = inbound(&t, &["--http2-prior-knowledge", &app_url(SQLI)]);
    assert_eq!(status, 403, "{body}");
    // A form POST with SQLi in the body: refused before the body is sent on.
    let (status, _) = inbound(
        &t,
        &["--data", "user=admin' OR 1=1-- &pass=x", &app_url("/login")],
    );
    assert_eq!(status, 403);
    // Benign requests pass.
    let (status, body) = inbound(&t, &[&app_url(BENIGN)]);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = inbound(
        &t,
        &["--data", "user=alice&pass=s3cret", &app_url("/login")],
    );
    assert_eq!(status, 200);
    let app = t.pod.log_of("app");
    assert!(app.contains("REQ GET /search?q=blue+shoes&page=2"), "{app}");
    assert!(app.contains("user=alice"), "{app}");
    assert!(!app.contains("OR%20") && !app.contains("script"), "{app}");
    assert!(
        !app.contains("admin"),
        "the app received the blocked POST:\n{app}"
    );
}

#[test]
fn waf_monitor_lets_attacks_through_with_rule_ids_and_score() {
    let Some(t) = l7_pod(
        "waf_monitor_lets_attacks_through_with_rule_ids_and_score",
        &policy("monitor", "learn"),
    ) else {
        return;
    };
    for (attack, family) in [(SQLI, "942"), (XSS, "941")] {
        let (status, body) = inbound(&t, &[&app_url(attack)]);
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{}", t.logs());
        let ev = wait_event(&t, "for the monitored attack", |e| {
            is_waf(e, "would_block", family)
        })
        .unwrap();
        assert!(ev["score"].as_u64().unwrap() >= 5, "{ev}");
        assert!(rule_ids(&ev).contains(&"949110".to_string()), "{ev}");
        assert_eq!(ev["mode"], "monitor");
        assert_eq!(ev["direction"], "inbound");
    }
    let (status, _) = inbound(&t, &[&app_url(BENIGN)]);
    assert_eq!(status, 200);
    let app = t.pod.log_of("app");
    assert!(app.contains("OR%20"), "{app}");
    assert!(app.contains("%3Cscript%3E"), "{app}");
    assert!(app.contains("blue+shoes"), "{app}");
    // Only the two attacks raised events: the benign request's numeric Host
    // header matches 920350 (score 3), under the threshold of 5.
    let n = podwarden_e2e::l7::events(&t)
        .iter()
        .filter(|e| e["kind"] == "waf_hit" && e["action"] == "would_block")
        .count();
    assert_eq!(n, 2, "{}", t.pod.log_of("podwarden"));
}

/// What the app's three attempts to send a card out gave.
struct Cards {
    /// The app's outbound POST.
    post: CurlReply,
    /// An inbound client's GET of a response holding a card.
    response: CurlReply,
    /// The split raw-stream client's output.
    split: String,
}

/// The pod with DLP in `dlp_mode` (WAF and network in learn), after the
/// three ways a card leaves it: an outbound POST, a response to an inbound
/// client, and a raw outbound stream with the number split across two TCP
/// segments. `None` when skipped.
fn cards_sent(test: &str, dlp_mode: &str) -> Option<(Topology, Cards)> {
    let t = l7_pod(test, &policy("learn", dlp_mode))?;
    app_server(&t.server, &t.scratch, "collector", 8080).unwrap();
    raw_sink(&t.server, &t.scratch, "sink", 9000).unwrap();
    let body = format!("{{\"name\":\"alice\",\"card\":\"{CARD}\"}}");
    let url = format!("http://{}:8080/collect", SERVER.v4);
    let json = [
        "-H",
        "content-type: application/json",
        "--data",
        &body,
        &url,
    ];
    let post = curl(&t.pod, Some(APP_UID), &json).unwrap();
    let response = curl(&t.client, None, &[&app_url("/card")]).unwrap();
    let split = split_send(
        &t.pod,
        &t.scratch,
        Some(APP_UID),
        &SERVER.v4.to_string(),
        9000,
        &["card=4111 1111 ", "1111 1111\r\n", "bye\r\n"],
    )
    .unwrap();
    let cards = Cards {
        post,
        response,
        split,
    };
    Some((t, cards))
}

fn dlp_events(t: &Topology, action: &str, location: &str) -> Value {
    wait_event(t, &format!("dlp {action} at {location}"), |e| {
        e["kind"] == "dlp_hit" && e["action"] == action && e["details"]["location"] == location
    })
    .unwrap()
}

fn assert_masked(t: &Topology, ev: &Value) {
    assert_eq!(ev["sensor"], "credit_card", "{ev}");
    assert_eq!(ev["sample"], "4111 **** **** 1111", "{ev}");
    let proxy = t.pod.log_of("podwarden");
    assert!(
        !proxy.contains(CARD) && !proxy.contains(CARD_DIGITS),
        "the full number appears in the proxy's output:\n{proxy}"
    );
}

/// Waits (polling, up to [`podwarden_e2e::READY`]) for the sink to log the
/// end of `n` connections; returns its log.
fn sink_totals(t: &Topology, n: usize) -> String {
    let deadline = std::time::Instant::now() + podwarden_e2e::READY;
    while std::time::Instant::now() < deadline {
        let log = t.server.log_of("sink");
        if log.matches("TOTAL").count() >= n {
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the sink never logged {n} connection(s):\n{}", t.logs());
}

#[test]
fn dlp_protect_blocks_cards_leaving_the_pod() {
    let Some((t, cards)) = cards_sent("dlp_protect_blocks_cards_leaving_the_pod", "protect") else {
        return;
    };

    // Outbound POST: 403 with the event id, the collector never got it.
    let CurlReply { status, body, .. } = &cards.post;
    assert_eq!(*status, 403, "{body}\n{}", t.logs());
    let id = serde_json::from_str::<Value>(body).unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ev = dlp_events(&t, "blocked", "request_body");
    assert_eq!(ev["id"], id.as_str());
    assert_masked(&t, &ev);
    let collector = t.server.log_of("collector");
    assert!(!collector.contains("4111"), "{collector}");

    // Response to an inbound client: the stream is reset, the number does
    // not reach the client.
    let resp = &cards.response;
    assert!(
        !resp.body.contains(CARD),
        "the client got the card: {resp:?}"
    );
    assert!(!resp.ok, "curl should see a reset: {resp:?}");
    assert_masked(&t, &dlp_events(&t, "blocked", "response_body"));
    assert!(t.pod.log_of("app").contains("REQ GET /card"));

    // Raw stream, number split across two segments: reset before the
    // second half is forwarded.
    let total = sink_totals(&t, 1);
    assert!(!total.contains(CARD), "the sink got the card:\n{total}");
    assert!(
        total.contains("card=4111 1111 "),
        "first segment not relayed:\n{total}"
    );
    let split = &cards.split;
    assert!(
        split.contains("ERROR") || !split.contains("SENT"),
        "{split}"
    );
    let first = dlp_events(&t, "blocked", "stream");
    assert_masked(&t, &first);

    // A number that is the last thing the app sends before closing is
    // decided at the close: the connection is reset instead of ended.
    split_send(
        &t.pod,
        &t.scratch,
        Some(APP_UID),
        &SERVER.v4.to_string(),
        9000,
        &["card=", CARD],
    )
    .unwrap();
    let ev = wait_event(&t, "for the number at the end of a stream", |e| {
        e["kind"] == "dlp_hit" && e["details"]["location"] == "stream" && e["id"] != first["id"]
    })
    .unwrap();
    assert_eq!(ev["action"], "blocked");
    let sink = sink_totals(&t, 2);
    assert_eq!(sink.matches("TOTAL").count(), 2, "{sink}");
    assert_eq!(sink.matches("Connection reset").count(), 2, "{sink}");
}

#[test]
fn dlp_monitor_passes_cards_with_masked_events() {
    let Some((t, cards)) = cards_sent("dlp_monitor_passes_cards_with_masked_events", "monitor")
    else {
        return;
    };
    let post = &cards.post;
    assert_eq!(
        (post.status, post.body.as_str()),
        (200, "ok\n"),
        "{}",
        t.logs()
    );
    assert!(t.server.log_of("collector").contains(CARD));
    let resp = &cards.response;
    assert_eq!(resp.status, 200);
    assert!(resp.body.contains(CARD), "{resp:?}");
    assert!(cards.split.contains("SENT"), "{}", cards.split);
    let total = sink_totals(&t, 1);
    assert!(
        total.contains("card=4111 1111 1111 1111\\r\\nbye"),
        "{total}"
    );
    for location in ["request_body", "response_body", "stream"] {
        let ev = dlp_events(&t, "would_block", location);
        assert_eq!(ev["mode"], "monitor");
        assert_masked(&t, &ev);
    }
}

/// Waits for a `policy_reload` event with `result` and `version`.
fn wait_reload(t: &Topology, result: &str, version: u64) -> Value {
    wait_event(t, &format!("policy_reload {result} v{version}"), |e| {
        e["kind"] == "policy_reload" && e["result"] == result && e["version"] == version
    })
    .unwrap()
}

#[test]
fn waf_mode_follows_policy_reloads_and_a_bad_waf_keeps_the_last_good() {
    let with = |version: u64, waf: &str| {
        policy("monitor", "learn")
            .replace("version: 1", &format!("version: {version}"))
            .replace("waf: monitor", waf)
    };
    let Some(t) = l7_pod(
        "waf_mode_follows_policy_reloads_and_a_bad_waf_keeps_the_last_good",
        &with(1, "waf: monitor"),
    ) else {
        return;
    };
    let (status, _) = inbound(&t, &[&app_url(SQLI)]);
    assert_eq!(status, 200, "monitor lets it through");

    // Rewritten to protect: picked up by the file poll, no restart.
    t.scratch
        .write("policy.yaml", &with(2, "waf: protect"))
        .unwrap();
    wait_reload(&t, "ok", 2);
    let (status, _) = inbound(&t, &[&app_url(SQLI)]);
    assert_eq!(status, 403, "{}", t.pod.log_of("podwarden"));

    // A WAF section the engine cannot load: rejected, protect stays.
    t.scratch
        .write(
            "policy.yaml",
            &format!(
                "{}  waf: {{ extraSeclang: 'SecBogusDirective On' }}\n",
                with(3, "waf: monitor")
            ),
        )
        .unwrap();
    let ev = wait_reload(&t, "error", 2);
    assert!(ev["error"].as_str().unwrap().contains("spec.waf"), "{ev}");
    let (status, _) = inbound(&t, &[&app_url(SQLI)]);
    assert_eq!(status, 403);
    let (status, _) = inbound(&t, &[&app_url(BENIGN)]);
    assert_eq!(status, 200);
}
