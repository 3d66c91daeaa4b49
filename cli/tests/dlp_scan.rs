//! `podwarden dlp scan` as a CI step would run it: real files, stdin, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

fn podwarden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podwarden"))
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn finds_masks_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let leaky = dir.path().join("leaky.log");
    std::fs::write(
        &leaky,
        "user paid card=4111 1111 1111 1111 ok\nkey AKIA2E0A8F3B244C9986 used\n",
    )
    .unwrap();
    let out = podwarden()
        .args(["dlp", "scan"])
        .arg(&leaky)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8_lossy(&out.stdout);
    assert!(
        !raw.contains("4111 1111 1111 1111") && !raw.contains("2E0A8F3B244C"),
        "leaked: {raw}"
    );
    let found = lines(&out.stdout);
    assert_eq!(found.len(), 2, "{raw}");
    assert_eq!(found[0]["sensor"], "credit_card");
    assert_eq!(found[0]["offset"], 15);
    assert_eq!(found[0]["masked"], "4111 **** **** 1111");
    assert_eq!(found[0]["path"], leaky.display().to_string());
    assert_eq!(found[1]["sensor"], "aws_access_key_id");
    assert_eq!(found[1]["masked"], "AKIA************9986");
}

#[test]
fn clean_file_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.json");
    std::fs::write(&clean, r#"{"order_id":"4111111111111112","uuid":"550e8400-e29b-41d4-a716-446655440000","key":"AKIAIOSFODNN7EXAMPLE","card":"4111 **** **** 1111"}"#).unwrap();
    let out = podwarden()
        .args(["dlp", "scan"])
        .arg(&clean)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn reads_stdin_and_gzip_files() {
    let mut child = podwarden()
        .args(["dlp", "scan", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ssn: 536-22-5412\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let found = lines(&out.stdout);
    assert_eq!(found[0]["path"], "-");
    assert_eq!(found[0]["sensor"], "ssn");
    assert_eq!(found[0]["masked"], "***-**-5412");

    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("dump.gz");
    std::fs::write(&gz, gzip(b"iban DE89 3704 0044 0532 0130 00\n")).unwrap();
    let out = podwarden().args(["dlp", "scan"]).arg(&gz).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = lines(&out.stdout);
    assert_eq!(found[0]["sensor"], "iban");
    assert_eq!(found[0]["layers"][0], "gzip");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn missing_file_exits_two() {
    let out = podwarden()
        .args(["dlp", "scan", "/nonexistent/podwarden-dlp-test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opening"));
}
