use super::*;
use crate::error::PolicyError;

const GOOD: &str = "apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata:
  workload: shop/checkout
spec:
  mode: monitor
  rules:
    - id: a
      direction: outbound
      peer: { cidr: 192.0.2.0/24 }
      ports: [\"443\"]
";

fn syntax(text: &str) -> Diagnostic {
    match load_policy_str(text, "p.yaml") {
        Err(PolicyError::Syntax(d)) => d,
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

fn invalid(text: &str) -> Vec<Diagnostic> {
    match load_policy_str(text, "p.yaml") {
        Err(PolicyError::Invalid(ds)) => ds.0,
        other => panic!("expected invalid, got {other:?}"),
    }
}

#[test]
fn good_document_loads() {
    let d = load_policy_str(GOOD, "p.yaml").unwrap();
    assert_eq!(d.spec.rules.len(), 1);
}

#[test]
fn syntax_errors_are_located() {
    // Bad port in the first rule's ports, line 11.
    let d = syntax(&GOOD.replace("\"443\"", "\"99999\""));
    assert_eq!(d.path, "spec.rules[0].ports[0]");
    assert_eq!(d.line, Some(11), "{d}");
    assert!(d.message.contains("invalid port"), "{d}");
    assert!(!d.message.contains(" at line "), "{d}");
    assert!(d.to_string().starts_with("p.yaml:11:"), "{d}");

    // Unknown field.
    let d = syntax(&GOOD.replace("      ports:", "      portz:"));
    assert_eq!(d.path, "spec.rules[0].portz");
    assert!(d.message.contains("unknown field `portz`"), "{d}");
    assert_eq!(d.line, Some(11), "{d}");

    // Bad CIDR.
    let d = syntax(&GOOD.replace("192.0.2.0/24", "192.0.2.0/33"));
    assert!(d.path.starts_with("spec.rules[0].peer"), "{d}");
    assert_eq!(d.line, Some(10), "{d}");

    // Bad FQDN.
    let d = syntax(&GOOD.replace("{ cidr: 192.0.2.0/24 }", "{ fqdn: \"a..example\" }"));
    assert!(
        d.message.contains("invalid fqdn") || d.message.contains("did not match"),
        "{d}"
    );
    assert_eq!(d.line, Some(10), "{d}");

    // Broken YAML.
    let d = syntax("apiVersion: podwarden.io/v1alpha1\nspec: [\n  rules: {\n");
    assert!(d.line.is_some(), "{d}");

    // Wrong type.
    let d = syntax(&GOOD.replace("mode: monitor", "mode: [x]"));
    assert_eq!(d.path, "spec.mode");
    assert_eq!(d.line, Some(6), "{d}");

    // Missing field.
    let d = syntax(&GOOD.replace("      direction: outbound\n", ""));
    assert!(d.message.contains("missing field `direction`"), "{d}");
}

#[test]
fn semantic_errors_are_located_and_all_reported() {
    let text = "apiVersion: podwarden.io/v1beta9
kind: WorkloadPolicy
metadata: { workload: shop/checkout }
spec:
  rules:
    - id: a
      direction: outbound
      peer: { cidr: 192.0.2.1/24 }
    - id: a
      direction: inbound
      peer: { fqdn: client.example }
    - id: \"\"
      direction: outbound
      peer: any
      protocols: [tls]
      http:
        methods: [get]
        paths: [\"/users/{id/orders\", \"/ok/*\", \"static/*\"]
    - id: d
      direction: outbound
      peer: any
      processes: [curl]
  processes:
    - exe: /bin/a
    - exe: /bin/a
";
    let ds = invalid(text);
    let got: Vec<(String, Option<usize>)> = ds.iter().map(|d| (d.path.clone(), d.line)).collect();
    let want: Vec<(&str, usize)> = vec![
        ("apiVersion", 1),
        ("spec.rules[0].peer.cidr", 8),
        ("spec.rules[1].id", 9),
        ("spec.rules[1].peer", 11),
        ("spec.rules[2].id", 12),
        ("spec.rules[2].http", 17),
        ("spec.rules[2].http.methods[0]", 17),
        ("spec.rules[2].http.paths[0]", 18),
        ("spec.rules[2].http.paths[2]", 18),
        ("spec.rules[3].processes[0]", 22),
        ("spec.processes[1].exe", 25),
    ];
    let want: Vec<(String, Option<usize>)> = want
        .into_iter()
        .map(|(p, l)| (p.to_string(), Some(l)))
        .collect();
    assert_eq!(got, want, "{}", Diagnostics(ds.clone()));
    assert!(ds[2].message.contains("first used by spec.rules[0]"));
    assert!(ds[1].message.contains("did you mean 192.0.2.0/24"));
    assert!(ds.iter().all(|d| d.column.is_some()));
}

#[test]
fn io_errors_name_the_file() {
    let e = load_policy_file(std::path::Path::new("/nonexistent/p.yaml")).unwrap_err();
    assert!(matches!(e, PolicyError::Io { .. }));
    assert!(e.to_string().starts_with("/nonexistent/p.yaml: "), "{e}");
}

#[test]
fn bare_message_strips_path_and_mark() {
    assert_eq!(
        bare_message("a.b: bad thing at line 3 column 4", "a.b"),
        "bad thing"
    );
    assert_eq!(
        bare_message("bad at line x column 4", ""),
        "bad at line x column 4"
    );
    assert_eq!(bare_message("plain", "p"), "plain");
}

proptest::proptest! {
    #[test]
    fn loading_garbage_never_panics(text in ".{0,300}") {
        let _ = load_policy_str(&text, "fuzz");
    }

    #[test]
    fn loading_mutated_policy_never_panics(cut in 0usize..400, insert in "[\\[\\]{}:,\"' \n-]{0,5}") {
        let mut t = GOOD.to_string();
        let at = cut.min(t.len());
        if t.is_char_boundary(at) {
            t.insert_str(at, &insert);
        }
        let _ = load_policy_str(&t, "fuzz");
    }
}
