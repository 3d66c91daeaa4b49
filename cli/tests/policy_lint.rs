//! `podwarden policy lint|schema|explain` run as a process on files it is fed.

use std::path::PathBuf;
use std::process::{Command, Output};

const GOOD: &str = "apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata:
  workload: shop/checkout
spec:
  mode: protect
  rules:
    - id: out-db
      direction: outbound
      peer: { cidr: 198.51.100.0/24 }
      ports: [\"5432\"]
    - id: in-web
      direction: inbound
      peer: any
      ports: [\"8080\"]
      http: { paths: [\"/api/*\"] }
";

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podwarden-policy-lint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn podwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podwarden"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn valid_file_exits_zero() {
    let f = write("good.yaml", GOOD);
    let o = podwarden(&["policy", "lint", f.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout(&o).contains("ok (shop/checkout"), "{}", stdout(&o));
}

#[test]
fn broken_files_get_located_errors_and_exit_one() {
    let cases: &[(&str, String, &str)] = &[
        ("port.yaml", GOOD.replace("\"5432\"", "\"5432-80\""), ":11:"),
        (
            "fqdn.yaml",
            GOOD.replace("{ cidr: 198.51.100.0/24 }", "{ fqdn: \"bad..example\" }"),
            "spec.rules[0].peer",
        ),
        (
            "cidr.yaml",
            GOOD.replace("198.51.100.0/24", "198.51.100.0/99"),
            "invalid cidr",
        ),
        ("dup.yaml", GOOD.replace("id: in-web", "id: out-db"), ":12:"),
        ("api.yaml", GOOD.replace("v1alpha1", "v2"), ":1:"),
        (
            "unknown.yaml",
            GOOD.replace("      ports: [\"8080\"]", "      portz: [\"8080\"]"),
            "unknown field `portz`",
        ),
        (
            "path.yaml",
            GOOD.replace("/api/*", "/api/*/x"),
            "spec.rules[1].http.paths[0]",
        ),
        ("yaml.yaml", GOOD.replace("spec:\n", "spec: [\n"), ":"),
    ];
    for (name, text, want) in cases {
        let f = write(name, text);
        let o = podwarden(&["policy", "lint", f.to_str().unwrap()]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {out}");
        let first = out.lines().next().unwrap_or("");
        assert!(first.starts_with(f.to_str().unwrap()), "{name}: {out}");
        assert!(out.contains(want), "{name}: want {want:?} in {out}");
    }
    // Every problem is reported, each on its own located line.
    let f = write(
        "many.yaml",
        &GOOD
            .replace("id: in-web", "id: out-db")
            .replace("v1alpha1", "v2"),
    );
    let o = podwarden(&["policy", "lint", f.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains(":1:") && out.contains("spec.rules[1].id: duplicate rule id"),
        "{out}"
    );
}

#[test]
fn missing_file_exits_two_and_mixed_runs_take_the_worst() {
    let o = podwarden(&["policy", "lint", "/nonexistent/policy.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/policy.yaml"));

    let good = write("good2.yaml", GOOD);
    let bad = write("bad2.yaml", &GOOD.replace("v1alpha1", "v2"));
    let o = podwarden(&[
        "policy",
        "lint",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = podwarden(&[
        "policy",
        "lint",
        good.to_str().unwrap(),
        "/nonexistent/x.yaml",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn schema_is_printed_and_matches_checked_in_copy() {
    let o = podwarden(&["policy", "schema"]);
    assert_eq!(o.status.code(), Some(0));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/schema/podwarden-policy.schema.json"
    );
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(printed, on_disk);
}

#[test]
fn explain_names_rule_or_near_misses() {
    let policy = write("explain.yaml", GOOD);
    let allowed = write(
        "flow-ok.json",
        r#"{"direction":"outbound","peer":"198.51.100.7:5432","local":"10.0.0.2:40000","protocol":"opaque"}"#,
    );
    let o = podwarden(&[
        "policy",
        "explain",
        policy.to_str().unwrap(),
        allowed.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("\"matched\": \"out-db\""),
        "{}",
        stdout(&o)
    );

    let denied = write(
        "flow-no.json",
        r#"{"direction":"outbound","peer":"198.51.100.7:5433","local":"10.0.0.2:40000","protocol":"opaque"}"#,
    );
    let o = podwarden(&[
        "policy",
        "explain",
        policy.to_str().unwrap(),
        denied.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("out-db: port 5433 is outside 5432"), "{err}");
}
