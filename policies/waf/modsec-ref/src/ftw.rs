//! go-ftw's view of the CRS regression suite: the stages of every test and
//! the request go-ftw sends for each, plus the albedo backend's response.
//! `policies/waf/tests/crs_regression.rs` replays the same requests through
//! this module (a dev-dependency), so both engines see exactly those requests.

use base64::Engine as _;
use podwarden_waf::{Request, Response};
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};

/// The test configuration of CRS's tests/docker-compose.yml: DetectionOnly,
/// blocking paranoia 4, the ARG/FILE size settings, and the test marker rule;
/// plus `arg_name_length=100` and `max_num_args=255` from the test
/// configuration in tests/regression/README.md (rules 920360/920380 need them).
pub const TEST_CONFIG: &str = r#"
SecAction "id:900005,phase:1,nolog,pass,ctl:ruleEngine=DetectionOnly,setvar:tx.blocking_paranoia_level=4,setvar:tx.arg_length=400,setvar:tx.total_arg_length=6400,setvar:tx.max_file_size=64100,setvar:tx.combined_file_sizes=65535,setvar:tx.arg_name_length=100,setvar:tx.max_num_args=255"
SecResponseBodyMimeType text/plain text/html text/xml application/json
SecRule REQUEST_HEADERS:X-CRS-Test "@rx ^.*$" "id:999999,phase:1,pass,t:none,log,msg:'%{MATCHED_VAR}'"
"#;

/// A scalar field of a YAML mapping, as text.
pub fn s(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Rule ids of an `expect_ids`/`no_expect_ids` entry (a list or one number).
pub fn ids(v: Option<&Value>) -> Vec<u64> {
    match v {
        Some(Value::Sequence(seq)) => seq.iter().filter_map(|x| x.as_u64()).collect(),
        Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Builds the request go-ftw would send for a stage input.
pub fn build_request(input: &Value) -> Result<Request, String> {
    if let Some(enc) = s(input, "encoded_request") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(enc.split_whitespace().collect::<String>())
            .map_err(|e| format!("bad encoded_request: {e}"))?;
        return podwarden_waf::http::parse_request(&raw).map_err(|e| e.to_string());
    }
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(Value::Mapping(m)) = input.get("headers") {
        for (k, v) in m {
            let k = k.as_str().unwrap_or_default().to_string();
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => String::new(),
            };
            headers.push((k, v.into_bytes()));
        }
    }
    let body = s(input, "data").unwrap_or_default().into_bytes();
    let autocomplete = input
        .get("autocomplete_headers")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let has = |h: &[(String, Vec<u8>)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
    if autocomplete {
        if !body.is_empty() && !has(&headers, "content-length") {
            headers.push(("Content-Length".into(), body.len().to_string().into_bytes()));
        }
        if !body.is_empty() && !has(&headers, "content-type") {
            headers.push((
                "Content-Type".into(),
                b"application/x-www-form-urlencoded".to_vec(),
            ));
        }
        if !has(&headers, "connection") {
            headers.push(("Connection".into(), b"close".to_vec()));
        }
    }
    Ok(Request {
        method: s(input, "method").unwrap_or_else(|| "GET".into()),
        uri: s(input, "uri").unwrap_or_else(|| "/".into()),
        protocol: s(input, "version").unwrap_or_else(|| "HTTP/1.1".into()),
        headers,
        body,
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        server_port: 80,
    })
}

/// The response the albedo backend gives: `/reflect` echoes a JSON spec.
pub fn backend_response(req: &Request) -> Response {
    let mut resp = Response {
        status: 200,
        protocol: "HTTP/1.1".into(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    if req.uri.starts_with("/reflect") {
        if let Ok(serde_json::Value::Object(spec)) =
            serde_json::from_slice::<serde_json::Value>(&req.body)
        {
            if let Some(st) = spec.get("status").and_then(|v| v.as_u64()) {
                resp.status = st as u16;
            }
            if let Some(serde_json::Value::Object(h)) = spec.get("headers") {
                for (k, v) in h {
                    resp.headers.push((
                        k.clone(),
                        v.as_str().unwrap_or_default().as_bytes().to_vec(),
                    ));
                }
            }
            if let Some(b) = spec.get("body").and_then(|v| v.as_str()) {
                resp.body = b.as_bytes().to_vec();
            }
            if let Some(b) = spec.get("encodedBody").and_then(|v| v.as_str()) {
                resp.body = base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .unwrap_or_default();
            }
        }
    }
    if !resp
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        let html = resp.body.trim_ascii_start().first() == Some(&b'<');
        let ct: &[u8] = if html {
            b"text/html; charset=utf-8"
        } else {
            b"text/plain; charset=utf-8"
        };
        resp.headers.push(("Content-Type".into(), ct.to_vec()));
    }
    resp
}

/// Every `.yaml` below `dir`, sorted, depth first.
pub fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

/// CRS v4.28.0 beside the repository (`../shared/crs/v4.28.0`), if present.
///
/// Without it the callers print why they skip. Under `PODWARDEN_E2E_STRICT=1`
/// (the test command as root, i.e. CI) a missing CRS is a failure instead: a
/// checkout without `../shared` (a git worktree, say) must not pass the CRS
/// suites by skipping them.
pub fn crs_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/crs/v4.28.0");
    if d.join("rules").is_dir() {
        return Some(d);
    }
    assert!(
        std::env::var("PODWARDEN_E2E_STRICT").as_deref() != Ok("1"),
        "CRS not found at {} (../shared beside the repository) and PODWARDEN_E2E_STRICT=1: \
         the CRS tests cannot be skipped here",
        d.display()
    );
    None
}

/// One stage of one regression test.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Test file relative to tests/regression/tests.
    pub file: String,
    pub test_id: String,
    pub index: usize,
    pub input: Value,
    pub expect_ids: Vec<u64>,
    pub no_expect_ids: Vec<u64>,
}

impl Stage {
    /// `file#test/stage`, the key used in allowlists and reports.
    pub fn key(&self) -> String {
        format!("{}#{}/{}", self.file, self.test_id, self.index)
    }
}

/// Every stage of every test under `tests_dir`, in file order.
pub fn stages(tests_dir: &Path) -> Result<Vec<Stage>, String> {
    let mut files = Vec::new();
    yaml_files(tests_dir, &mut files);
    let mut out = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(tests_dir).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| format!("{rel}: {e}"))?;
        let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| format!("{rel}: {e}"))?;
        let Some(Value::Sequence(tests)) = doc.get("tests") else {
            continue;
        };
        for t in tests {
            let test_id = s(t, "test_id").unwrap_or_default();
            let Some(Value::Sequence(st)) = t.get("stages") else {
                continue;
            };
            for (index, st) in st.iter().enumerate() {
                let stage = st.get("stage").unwrap_or(st);
                let Some(input) = stage.get("input") else {
                    continue;
                };
                let log = stage.get("output").and_then(|o| o.get("log"));
                out.push(Stage {
                    file: rel.clone(),
                    test_id: test_id.clone(),
                    index,
                    input: input.clone(),
                    expect_ids: ids(log.and_then(|l| l.get("expect_ids"))),
                    no_expect_ids: ids(log.and_then(|l| l.get("no_expect_ids"))),
                });
            }
        }
    }
    Ok(out)
}
