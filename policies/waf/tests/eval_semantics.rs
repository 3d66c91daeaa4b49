//! ModSecurity semantics the CRS depends on, each checked on a tiny rule set.

use podwarden_waf::{load_str, Outcome, Request, RuleSet};
use std::path::Path;

fn rules(text: &str) -> RuleSet {
    match load_str(text, "test.conf", Path::new(".")) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn get(uri: &str) -> Request {
    Request {
        method: "GET".into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers: vec![("Host".into(), b"example.com".to_vec())],
        ..Default::default()
    }
}

fn post(ct: &str, body: &[u8]) -> Request {
    let mut r = get("/submit");
    r.method = "POST".into();
    r.headers
        .push(("Content-Type".into(), ct.as_bytes().to_vec()));
    r.body = body.to_vec();
    r
}

fn ids(o: &Outcome) -> Vec<u64> {
    o.logged_ids()
}

const BASE: &str =
    "SecRuleEngine On\nSecRequestBodyAccess On\nSecDefaultAction \"phase:2,log,pass\"\n";

#[test]
fn chain_matches_only_as_a_whole_but_links_run_their_actions() {
    let rs = rules(&format!(
        "{BASE}SecRule ARGS \"@rx a\" \"id:1,phase:2,setvar:tx.first=1,chain\"\n  SecRule ARGS \"@rx zzz\" \"setvar:tx.second=1\"\n\
         SecRule TX:first \"@eq 1\" \"id:2,phase:2\"\nSecRule TX:second \"@eq 1\" \"id:3,phase:2\"\n"
    ));
    let o = rs.evaluate(&get("/?x=abc"), None);
    assert_eq!(
        ids(&o),
        vec![2],
        "chain failed at link 2, but link 1's setvar ran"
    );
    let o = rs.evaluate(&get("/?x=a&y=zzz"), None);
    assert_eq!(ids(&o), vec![1, 2, 3]);
}

#[test]
fn setvar_arithmetic_and_macros() {
    let rs = rules(&format!(
        "{BASE}SecAction \"id:10,phase:1,pass,nolog,setvar:tx.crit=5,setvar:tx.score=0\"\n\
         SecRule ARGS \"@rx attack\" \"id:11,phase:2,setvar:'tx.score=+%{{tx.crit}}'\"\n\
         SecRule TX:score \"@ge 10\" \"id:12,phase:2,deny,status:403\"\n"
    ));
    // Actions run once per matched value: two matching args add 5 twice.
    let o = rs.evaluate(&get("/?a=attack&b=attack"), None);
    assert_eq!(ids(&o), vec![11, 12]);
    assert_eq!(
        o.interruption.map(|i| (i.rule_id, i.status)),
        Some((12, 403))
    );
    let o = rs.evaluate(&get("/?a=attack"), None);
    assert!(o.interruption.is_none());
}

#[test]
fn tx_macros_in_setvar_keys_values_operator_arguments_and_messages() {
    let rs = rules(&format!(
        "{BASE}SecAction \"id:20,phase:1,pass,nolog,setvar:tx.limit=7,setvar:'tx.allowed=GET HEAD',setvar:tx.base=10\"\n\
         SecRule ARGS:k \"@rx ^(\\w+)$\" \"id:21,phase:2,capture,nolog,setvar:'tx.n_%{{tx.1}}=%{{tx.base}}',setvar:'tx.n_%{{tx.1}}=-%{{tx.limit}}'\"\n\
         SecRule TX:n_abc \"@eq 3\" \"id:22,phase:2,msg:'n=%{{tx.n_abc}} of %{{tx.base}}, missing=[%{{tx.none}}]'\"\n\
         SecRule TX:base \"@ge %{{tx.limit}}\" \"id:23,phase:2\"\n\
         SecRule TX:base \"@lt %{{tx.absent}}\" \"id:24,phase:2\"\n\
         SecRule REQUEST_METHOD \"@within %{{tx.allowed}}\" \"id:25,phase:2\"\n\
         SecRule REQUEST_METHOD \"@within %{{tx.absent}}\" \"id:26,phase:2\"\n"
    ));
    // The same answer twice on one thread: pooled buffers start empty.
    for _ in 0..2 {
        let o = rs.evaluate(&get("/?k=ABC"), None);
        // Key macros are lower-cased (tx.n_abc), `=` copies a TX value and
        // `-` subtracts one; an absent variable expands to nothing (0 for
        // numbers, empty for @within, which an empty argument never holds).
        assert_eq!(ids(&o), vec![22, 23, 25]);
        let msg = o
            .matched
            .iter()
            .find(|m| m.id == 22)
            .and_then(|m| m.msg.clone());
        assert_eq!(msg.as_deref(), Some("n=3 of 10, missing=[]"));
    }
}

#[test]
fn skip_after_jumps_to_marker() {
    let rs = rules(&format!(
        "{BASE}SecRule ARGS:skip \"@streq yes\" \"id:20,phase:2,nolog,skipAfter:END\"\nSecRule ARGS \"@rx .\" \"id:21,phase:2\"\nSecMarker END\nSecRule ARGS \"@rx .\" \"id:22,phase:2\"\n"
    ));
    assert_eq!(ids(&rs.evaluate(&get("/?skip=yes"), None)), vec![22]);
    assert_eq!(ids(&rs.evaluate(&get("/?skip=no"), None)), vec![21, 22]);
}

#[test]
fn exclusions_counts_and_runtime_target_removal() {
    let rs = rules(&format!(
        "{BASE}SecRule ARGS|!ARGS:safe \"@rx evil\" \"id:30,phase:2\"\n\
         SecRule &ARGS \"@eq 2\" \"id:31,phase:2\"\n\
         SecRule REQUEST_FILENAME \"@streq /api\" \"id:32,phase:1,pass,nolog,ctl:ruleRemoveTargetById=33;ARGS:token\"\n\
         SecRule ARGS \"@rx evil\" \"id:33,phase:2\"\n\
         SecRule REQUEST_HEADERS:/^x-/ \"@rx evil\" \"id:34,phase:1\"\n"
    ));
    // 30 excludes ARGS:safe; 33 has no exclusion for it.
    assert_eq!(
        ids(&rs.evaluate(&get("/?safe=evil&other=1"), None)),
        vec![31, 33]
    );
    assert_eq!(
        ids(&rs.evaluate(&get("/api?token=evil"), None)),
        vec![30],
        "ctl removed ARGS:token from rule 33 only"
    );
    assert_eq!(ids(&rs.evaluate(&get("/x?token=evil"), None)), vec![30, 33]);
    let mut r = get("/");
    r.headers.push(("X-Foo".into(), b"evil".to_vec()));
    assert_eq!(ids(&rs.evaluate(&r, None)), vec![34]);
}

#[test]
fn capture_transformations_and_rule_removal() {
    let rs = rules(&format!(
        "{BASE}SecRule ARGS \"@rx ^(\\w+)-(\\d+)$\" \"id:40,phase:2,capture,nolog,setvar:tx.word=%{{tx.1}}\"\n\
         SecRule TX:word \"@streq abc\" \"id:41,phase:2\"\n\
         SecRule ARGS \"@contains <script>\" \"id:42,phase:2,t:none,t:urlDecodeUni,t:lowercase\"\n\
         SecRule ARGS \"@contains <script>\" \"id:43,phase:2,t:none\"\n\
         SecRule ARGS \"@rx x\" \"id:44,phase:2\"\nSecRuleRemoveById 44\n"
    ));
    assert_eq!(ids(&rs.evaluate(&get("/?a=abc-12"), None)), vec![41]);
    // %253C decodes once in the query parser, then t:urlDecodeUni decodes %3C.
    assert_eq!(
        ids(&rs.evaluate(&get("/?q=%253CSCRIPT%253E"), None)),
        vec![42]
    );
}

#[test]
fn detection_only_logs_without_interrupting() {
    let rs = rules(
        "SecRuleEngine DetectionOnly\nSecRule ARGS \"@rx evil\" \"id:50,phase:2,deny,log\"\n",
    );
    let o = rs.evaluate(&get("/?a=evil"), None);
    assert_eq!(ids(&o), vec![50]);
    assert!(o.interruption.is_none());
    assert!(o.would_block());
}

#[test]
fn body_processors_fill_args_and_error_flags() {
    let rs = rules(&format!(
        "{BASE}SecRule REQUEST_HEADERS:Content-Type \"^application/json\" \"id:60,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=JSON\"\n\
         SecRule ARGS:json.user.name \"@streq bob\" \"id:61,phase:2\"\n\
         SecRule REQBODY_ERROR \"!@eq 0\" \"id:62,phase:2\"\n\
         SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" \"id:63,phase:2\"\n\
         SecRule FILES \"@endsWith .php\" \"id:64,phase:2\"\n\
         SecRule ARGS_POST:a \"@streq 1\" \"id:65,phase:2\"\n"
    ));
    assert_eq!(
        ids(&rs.evaluate(
            &post("application/json", br#"{"user":{"name":"bob"}}"#),
            None
        )),
        vec![61]
    );
    assert_eq!(
        ids(&rs.evaluate(&post("application/json", b"{broken"), None)),
        vec![62]
    );
    assert_eq!(
        ids(&rs.evaluate(&post("application/x-www-form-urlencoded", b"a=1&b=2"), None)),
        vec![65]
    );
    let mp = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\n\r\n<?php\r\n--B--\r\n";
    assert_eq!(
        ids(&rs.evaluate(&post("multipart/form-data; boundary=B", mp), None)),
        vec![64]
    );
    let bad =
        b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--B--\r\n";
    assert_eq!(
        ids(&rs.evaluate(&post("multipart/form-data; boundary=B", bad), None)),
        vec![63, 65]
    );
}

#[test]
fn crs_blocks_sqli_and_passes_benign_at_pl1() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if !dir.join("rules").is_dir() {
        println!("skipped: CRS not found at {}", dir.display());
        return;
    }
    let rs = podwarden_waf::crs::load_crs(&dir, &Default::default()).unwrap();
    let mut ok = get("/search?q=shoes&page=2");
    ok.headers
        .push(("User-Agent".into(), b"Mozilla/5.0".to_vec()));
    ok.headers.push(("Accept".into(), b"text/html".to_vec()));
    let o = rs.evaluate(&ok, None);
    assert!(o.interruption.is_none(), "{:?}", o.logged_ids());
    let mut bad = get("/item?id=1%27%20UNION%20SELECT%20password%20FROM%20users--");
    bad.headers = ok.headers.clone();
    let o = rs.evaluate(&bad, None);
    assert_eq!(o.interruption.as_ref().map(|i| i.rule_id), Some(949110));
    assert!(o.logged_ids().contains(&942100), "{:?}", o.logged_ids());
    assert!(o.inbound_anomaly_score >= 5);
}
