//! The literal prefilter must never change an outcome: every request of the
//! CRS regression corpus, and random requests built from attack fragments,
//! evaluate to the same matched rules (ids, phases, messages), anomaly
//! scores and interruption with the prefilter on and off.
//!
//! Runs at paranoia 4 (every rule evaluated) and at paranoia 1 with the
//! engine On (interruptions stop evaluation). Skips without CRS.

use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf::{Outcome, Request, Response, RuleSet, Transaction};
use podwarden_waf_modsec_ref::ftw;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const PL4_CONFIG: &str = r#"
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,setvar:tx.blocking_paranoia_level=4,setvar:tx.arg_length=400,setvar:tx.total_arg_length=6400,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535,setvar:tx.arg_name_length=100,setvar:tx.max_num_args=255"
SecResponseBodyMimeType text/plain text/html text/xml application/json
"#;

fn crs_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if d.join("tests/regression/tests").is_dir() {
        Some(d)
    } else {
        println!("skipped: CRS not found at {}", d.display());
        None
    }
}

fn pl4() -> Option<&'static RuleSet> {
    static RS: OnceLock<Option<RuleSet>> = OnceLock::new();
    RS.get_or_init(|| {
        let dir = crs_dir()?;
        let opts = CrsOptions {
            extra_before_rules: Some(PL4_CONFIG.into()),
            ..Default::default()
        };
        Some(load_crs(&dir, &opts).expect("CRS loads"))
    })
    .as_ref()
}

fn response_for(req: &Request) -> Response {
    Response {
        status: 200,
        protocol: "HTTP/1.1".into(),
        headers: vec![("Content-Type".into(), b"text/html".to_vec())],
        // Echo the request so the RESPONSE-95x rules see attack text too.
        body: [req.uri.as_bytes(), b"\n", &req.body].concat(),
    }
}

/// The requests go-ftw sends for every stage of the CRS regression suite.
fn corpus(dir: &Path) -> Vec<Request> {
    ftw::stages(&dir.join("tests/regression/tests"))
        .expect("regression suite readable")
        .iter()
        .filter_map(|st| ftw::build_request(&st.input).ok())
        .collect()
}

/// Everything observable about an outcome.
fn summary(o: &Outcome) -> String {
    format!(
        "{:?} in={} out={} int={:?}",
        o.matched, o.inbound_anomaly_score, o.outbound_anomaly_score, o.interruption
    )
}

fn run(rs: &RuleSet, req: &Request, resp: &Response, prefilter: bool) -> Outcome {
    let mut tx = Transaction::new(rs);
    tx.set_prefilter(prefilter);
    tx.process_request(req);
    tx.process_response(resp);
    tx.finish()
}

fn with_and_without(rs: &RuleSet, req: &Request) -> (String, String) {
    let resp = response_for(req);
    let on = summary(&run(rs, req, &resp, true));
    let off = summary(&run(rs, req, &resp, false));
    (on, off)
}

#[test]
fn prefilter_covers_most_crs_links() {
    let Some(rs) = pl4() else { return };
    let pf = &rs.prefilter;
    println!(
        "prefilter: {} of {} links gated",
        pf.filtered_links, pf.total_links
    );
    assert!(pf.filtered_links * 2 > pf.total_links / 2);
}

#[test]
fn crs_corpus_outcomes_identical_with_and_without_prefilter() {
    let Some(dir) = crs_dir() else { return };
    let Some(rs) = pl4() else { return };
    let pl1 = load_crs(&dir, &CrsOptions::default()).expect("CRS loads");
    let reqs = corpus(&dir);
    assert!(reqs.len() > 4000, "corpus has {} requests", reqs.len());
    let mut differ = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        for (name, set) in [("pl4", rs), ("pl1", &pl1)] {
            let (on, off) = with_and_without(set, req);
            if on != off {
                differ.push(format!(
                    "request {i} ({name}) {} {}:\n  on:  {on}\n  off: {off}",
                    req.method, req.uri
                ));
            }
        }
    }
    println!("{} corpus requests compared at PL4 and PL1", reqs.len());
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("' OR 1=1--".to_string()),
        Just("UNION SELECT".to_string()),
        Just("<script>".to_string()),
        Just("javascript:".to_string()),
        Just("../".to_string()),
        Just("/etc/passwd".to_string()),
        Just(";cat ".to_string()),
        Just("${jndi:".to_string()),
        Just("%27".to_string()),
        Just("%u0027".to_string()),
        Just("&#x3c;".to_string()),
        Just("onerror=".to_string()),
        Just("<?php".to_string()),
        "[ -~]{0,12}",
        "[a-zA-Z0-9%+=&;<>'\"()/\\\\.*-]{0,10}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_requests_identical_with_and_without_prefilter(
        path in "[a-z/._-]{0,12}",
        a in text(),
        b in text(),
        ua in text(),
        cookie in text(),
        body in text(),
        post in any::<bool>(),
    ) {
        let Some(rs) = pl4() else { return Ok(()) };
        let enc = |s: &str| s.replace('%', "%25").replace('&', "%26").replace(' ', "+").replace('#', "%23");
        let req = Request {
            method: if post { "POST".into() } else { "GET".into() },
            uri: format!("/{path}?a={}&b={}", enc(&a), enc(&b)),
            protocol: "HTTP/1.1".into(),
            headers: vec![
                ("Host".into(), b"example.com".to_vec()),
                ("User-Agent".into(), ua.into_bytes()),
                ("Cookie".into(), format!("c={cookie}").into_bytes()),
                ("Content-Type".into(), b"application/x-www-form-urlencoded".to_vec()),
            ],
            body: if post { format!("x={}", enc(&body)).into_bytes() } else { Vec::new() },
            remote_addr: "192.0.2.1".into(),
            remote_port: 40000,
            server_port: 80,
        };
        let (on, off) = with_and_without(rs, &req);
        prop_assert_eq!(on, off);
    }
}
