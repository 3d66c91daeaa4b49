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
