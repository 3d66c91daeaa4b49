//! Hostile SecLang input never panics the loader and always names a line.

use proptest::prelude::*;
use std::path::Path;

fn load(text: &str) -> Result<podwarden_waf::RuleSet, podwarden_waf::LoadErrors> {
    podwarden_waf::load_str(text, "fuzz.conf", Path::new("/nonexistent"))
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC*") {
        let _ = load(&s);
    }

    #[test]
    fn seclang_shaped_text_never_panics(
        d in prop::sample::select(vec!["SecRule", "SecAction", "SecMarker", "SecDefaultAction", "SecRuleRemoveById", "SecRuleUpdateTargetById", "Include", "SecRuleEngine"]),
        a in "[A-Z_:!&|/'\"@a-z0-9 ,.%{}=+\\\\-]{0,60}",
        b in "[A-Z_:!&|/'\"@a-z0-9 ,.%{}=+\\\\-]{0,60}",
    ) {
        let _ = load(&format!("{d} {a} {b}\n"));
        let _ = load(&format!("{d} \"{a}\" \"{b}\"\n"));
    }
}

#[test]
fn errors_name_file_and_line() {
    let e = load("SecRuleEngine On\n\nSecRule ARGS \"@rx a\" \"id:1,phase:2,pass,frob\"\nSecBogus x\nSecRule NOPE \"@rx a\" \"id:2\"\nSecRule ARGS \"@nope\" \"id:3\"\nSecRule ARGS \"@rx a\" \"id:4,t:nope\"\n").unwrap_err();
    let msgs: Vec<String> = e.0.iter().map(|x| x.to_string()).collect();
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert!(msgs[0].starts_with("fuzz.conf:3:") && msgs[0].contains("frob"));
    assert!(msgs[1].starts_with("fuzz.conf:4:") && msgs[1].contains("SecBogus"));
    assert!(msgs[2].starts_with("fuzz.conf:5:") && msgs[2].contains("NOPE"));
    assert!(msgs[3].contains("@nope"));
    assert!(msgs[4].contains("nope"));
}

#[test]
fn dangling_chain_is_an_error() {
    assert!(load("SecRule ARGS \"@rx a\" \"id:1,chain\"\n").is_err());
    assert!(load("SecRule ARGS \"@rx a\" \"id:1,chain\"\nSecMarker X\n").is_err());
}

// ---------------------------------------------------------------------------
// Hostile SecLang, as the cargo-fuzz target `seclang` (policies/waf/fuzz)
// explores it on nightly: include loops, deep chains, huge numbers, bad
// regexes, and generated rules that load and then run on arbitrary requests.

fn request(uri: &str, body: &[u8]) -> podwarden_waf::Request {
    podwarden_waf::Request {
        method: "POST".into(),
        uri: uri.into(),
        protocol: "HTTP/1.1".into(),
        headers: vec![
            ("Host".into(), b"example.com".to_vec()),
            (
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ),
            ("Content-Length".into(), body.len().to_string().into_bytes()),
        ],
        body: body.to_vec(),
        remote_addr: "192.0.2.1".into(),
        remote_port: 40000,
        server_port: 80,
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "pw-waf-props-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn include_loops_are_errors() {
    let t = TempDir::new("loop");
    std::fs::write(t.0.join("self.conf"), "Include self.conf\n").unwrap();
    std::fs::write(t.0.join("a.conf"), "SecMarker A\nInclude b.conf\n").unwrap();
    std::fs::write(t.0.join("b.conf"), "SecMarker B\nInclude a.conf\n").unwrap();
    // Two files that include each other by glob: an exponential load
    // (2^32 files) without loop detection.
    std::fs::create_dir_all(t.0.join("glob")).unwrap();
    for f in ["glob/x.conf", "glob/y.conf"] {
        std::fs::write(t.0.join(f), "SecMarker G\nInclude *.conf\n").unwrap();
    }
    for f in ["self.conf", "a.conf", "glob/x.conf"] {
        let e = podwarden_waf::load_file(&t.0.join(f)).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("Include"), "{f}: {text}");
    }
}

#[test]
fn deep_chains_load_and_run() {
    let mut text = String::new();
    let n = 5_000;
    for i in 0..n {
        let first = if i == 0 { "id:1,phase:2,pass,log," } else { "" };
        let chain = if i + 1 < n { "chain" } else { "t:none" };
        text.push_str(&format!(
            "SecRule ARGS \"@contains a\" \"{first}{chain}\"\n"
        ));
    }
    let rs = load(&text).expect("a 5000-link chain loads");
    let out = rs.evaluate(&request("/?x=a", b""), None);
    assert_eq!(out.logged_ids(), vec![1]);
    let out = rs.evaluate(&request("/?x=b", b""), None);
    assert!(out.logged_ids().is_empty());
}

#[test]
fn huge_numbers_are_errors_or_saturate() {
    for bad in [
        "SecRule ARGS \"@rx a\" \"id:99999999999999999999999,phase:2,pass\"",
        "SecRule ARGS \"@rx a\" \"id:-5,phase:2,pass\"",
        "SecRule ARGS \"@rx a\" \"id:1,phase:99999999999999999999,pass\"",
        "SecRequestBodyLimit 999999999999999999999999999",
        "SecAction \"id:2,phase:2,pass,nolog,skip:4294967296\"",
    ] {
        let e = load(&format!("{bad}\n")).unwrap_err();
        assert!(e.to_string().starts_with("fuzz.conf:1:"), "{bad}: {e}");
    }
    // Huge but valid numbers load and evaluate without overflow panics.
    let rs = load(concat!(
        "SecRule ARGS \"@eq 99999999999999999999\" \"id:1,phase:2,pass,log\"\n",
        "SecAction \"id:2,phase:2,pass,nolog,skip:1000000\"\n",
        "SecAction \"id:3,phase:2,pass,nolog,setvar:tx.a=9223372036854775807,setvar:tx.a=+9223372036854775807,setvar:tx.b=-9223372036854775807,setvar:tx.b=-9223372036854775807\"\n",
        "SecRule TX:A \"@gt 0\" \"id:4,phase:2,pass,log\"\n",
    ))
    .expect("huge numbers load");
    let out = rs.evaluate(&request("/?n=99999999999999999999", b""), None);
    assert!(
        !out.logged_ids().contains(&4),
        "skip:1000000 skips the rest of the phase"
    );
}

#[test]
fn setvar_arithmetic_saturates() {
    let rs = load(concat!(
        "SecAction \"id:1,phase:1,pass,nolog,setvar:tx.a=9223372036854775807,setvar:tx.a=+1,setvar:tx.b=-9223372036854775807,setvar:tx.b=-10\"\n",
        "SecRule TX:A \"@eq 9223372036854775807\" \"id:2,phase:1,pass,log\"\n",
        "SecRule TX:B \"@lt -9223372036854775806\" \"id:3,phase:1,pass,log\"\n",
    ))
    .expect("loads");
    let out = rs.evaluate(&request("/", b""), None);
    assert_eq!(out.logged_ids(), vec![2, 3]);
}

#[test]
fn bad_regexes_are_errors_naming_the_line() {
    for (i, rx) in [
        "(",
        "[z-a]",
        "a{99999999}",
        "(?<n",
        "\\",
        "(?P<1>x)",
        "a**",
        "(a{1000}){1000}",
    ]
    .iter()
    .enumerate()
    {
        let text = format!(
            "SecMarker M\nSecRule ARGS \"@rx {rx}\" \"id:{},phase:2,pass\"\n",
            i + 1
        );
        match load(&text) {
            Err(e) => assert!(e.to_string().starts_with("fuzz.conf:2:"), "{rx}: {e}"),
            // A regex the engine accepts must then run without panicking.
            Ok(rs) => {
                let _ = rs.evaluate(&request("/?a=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", b""), None);
            }
        }
    }
}

#[test]
fn long_lines_and_continuations_load() {
    let cont = "SecMarker \\\n".to_string() + &" \\\n".repeat(10_000) + "END\n";
    load(&cont).expect("10k continuation lines");
    let long = format!(
        "SecRule ARGS \"@pm {}\" \"id:1,phase:2,pass,log\"\n",
        (0..5_000)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rs = load(&long).expect("a 5000-word @pm");
    assert_eq!(
        rs.evaluate(&request("/?q=w4999", b""), None).logged_ids(),
        vec![1]
    );
}

const VARS: &[&str] = &[
    "ARGS",
    "ARGS_NAMES",
    "ARGS:a",
    "!ARGS:a",
    "&ARGS",
    "ARGS:/^a/",
    "REQUEST_URI",
    "REQUEST_HEADERS",
    "REQUEST_HEADERS:Host",
    "&REQUEST_HEADERS:Host",
    "REQUEST_BODY",
    "REQUEST_COOKIES",
    "XML:/*",
    "TX:score",
    "MATCHED_VAR",
    "MATCHED_VARS",
    "FILES",
    "MULTIPART_STRICT_ERROR",
    "REQBODY_ERROR",
    "REQUEST_FILENAME",
    "QUERY_STRING",
    "UNIQUE_ID",
    "ENV:x",
    "REQUEST_LINE",
];
const OPS: &[&str] = &[
    "@rx",
    "!@rx",
    "@pm",
    "@streq",
    "@contains",
    "@beginsWith",
    "@endsWith",
    "@within",
    "@eq",
    "@ge",
    "@gt",
    "@le",
    "@lt",
    "@detectSQLi",
    "@detectXSS",
    "@validateByteRange",
    "@validateUrlEncoding",
    "@validateUtf8Encoding",
    "@unconditionalMatch",
    "@noMatch",
    "@ipMatch",
];
const TRANSFORMS: &[&str] = &[
    "none",
    "lowercase",
    "urlDecodeUni",
    "htmlEntityDecode",
    "jsDecode",
    "cssDecode",
    "cmdLine",
    "compressWhitespace",
    "removeWhitespace",
    "removeNulls",
    "replaceComments",
    "normalizePath",
    "base64Decode",
    "hexDecode",
    "length",
    "sha1",
    "utf8toUnicode",
    "escapeSeqDecode",
    "trim",
];
const ACTIONS: &[&str] = &[
    "capture",
    "multiMatch",
    "setvar:tx.score=+%{tx.x}",
    "setvar:tx.x=%{MATCHED_VAR}",
    "setvar:!tx.score",
    "ctl:ruleRemoveById=2",
    "ctl:ruleRemoveTargetById=2;ARGS:a",
    "ctl:ruleEngine=DetectionOnly",
    "skipAfter:END",
    "skip:1",
    "msg:'%{MATCHED_VAR_NAME}'",
    "logdata:'%{TX.0}'",
    "deny",
    "block",
    "allow",
    "status:403",
    "severity:2",
    "tag:'x'",
    "chain",
];

fn pick(from: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
    prop::sample::select(from)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Rules built from real SecLang pieces either load with errors naming a
    /// line, or load and then evaluate arbitrary requests without panicking.
    #[test]
    fn generated_rules_load_and_run(
        rules in prop::collection::vec(
            (pick(VARS), pick(VARS), pick(OPS), "[a-z0-9 .*+?()\\[\\]|^$\\\\-]{0,12}", 1u8..=5,
             prop::collection::vec(pick(TRANSFORMS), 0..4), prop::collection::vec(pick(ACTIONS), 0..4)),
            1..6),
        uri in "/[a-z0-9/?=&%.+-]{0,40}",
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut text = String::from("SecRuleEngine On\nSecRequestBodyAccess On\nSecAction \"id:100,phase:1,pass,nolog,setvar:tx.x=1\"\n");
        for (i, (v1, v2, op, arg, phase, ts, acts)) in rules.iter().enumerate() {
            let ts: String = ts.iter().map(|t| format!(",t:{t}")).collect();
            let acts: String = acts.iter().map(|a| format!(",{a}")).collect();
            text.push_str(&format!(
                "SecRule {v1}|{v2} \"{op} {arg}\" \"id:{},phase:{phase},pass,log{ts}{acts}\"\n",
                i + 1
            ));
        }
        text.push_str("SecRule ARGS \"@rx x\" \"id:90,phase:2,pass\"\nSecMarker END\n");
        match load(&text) {
            Ok(rs) => {
                let out = rs.evaluate(&request(&uri, &body), None);
                for id in out.logged_ids() {
                    prop_assert!(id <= rules.len() as u64 || id == 90, "unknown id {id}");
                }
            }
            Err(e) => {
                for err in &e.0 {
                    prop_assert!(err.to_string().starts_with("fuzz.conf:"), "{err}");
                }
            }
        }
    }

    #[test]
    fn nested_quotes_and_macros_never_panic(
        depth in 1usize..200,
        tail in "[%{}a-zA-Z0-9._:'\"\\\\ ]{0,30}",
    ) {
        let open = "%{".repeat(depth);
        let _ = load(&format!("SecAction \"id:1,phase:1,pass,msg:'{open}{tail}'\"\n"));
        let quotes = "\\\"".repeat(depth);
        let _ = load(&format!("SecRule ARGS \"@rx {quotes}\" \"id:1,phase:1,pass\"\n"));
    }
}
