//! The `podwarden` binary in cluster mode through a real kubeconfig: an
//! API server stand-in on loopback (plain HTTP) holds one WorkloadPolicy;
//! `mode set --cluster` must find it, replace it with the next version, and
//! send the kubeconfig user's token on every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const PATH: &str = "/apis/podwarden.io/v1alpha1/namespaces/shop/workloadpolicies";

struct Seen {
    /// `METHOD path auth-header`
    requests: Vec<String>,
    policy: Value,
}

fn serve(listener: TcpListener, state: Arc<Mutex<Seen>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let (mut len, mut auth) = (0usize, String::new());
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap(),
                    "authorization" => auth = v.trim().to_string(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let path = target.split('?').next().unwrap().to_string();
            let mut s = state.lock().unwrap();
            s.requests.push(format!("{method} {path} {auth}"));
            let (code, out) = match (method.as_str(), path.as_str()) {
                ("GET", PATH) => (
                    200,
                    json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "List",
                           "metadata": {}, "items": [s.policy.clone()]}),
                ),
                ("GET", p) if p == format!("{PATH}/deployment-checkout") => (200, s.policy.clone()),
                ("PUT", p) if p == format!("{PATH}/deployment-checkout") => {
                    let mut new: Value = serde_json::from_slice(&body).unwrap();
                    new["metadata"]["resourceVersion"] = json!("2");
                    s.policy = new.clone();
                    (200, new)
                }
                _ => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "NotFound", "code": 404, "message": "no"}),
                ),
            };
            let text = out.to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
}

#[test]
fn mode_set_uses_the_kubeconfig_and_writes_the_next_version() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(Seen {
        requests: Vec::new(),
        policy: json!({"apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
            "metadata": {"name": "deployment-checkout", "namespace": "shop", "resourceVersion": "1"},
            "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 4,
                     "approvedBy": "alice", "approvedAt": "2026-11-23T12:00:00Z",
                     "policy": {"mode": "monitor", "rules": []}}}),
    }));
    serve(listener, state.clone());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: other\n\
             clusters: [{{name: test, cluster: {{server: \"http://{addr}\"}}}}, {{name: other, cluster: {{server: \"http://127.0.0.1:1\"}}}}]\n\
             users: [{{name: reviewer, user: {{token: s3cr3t-reviewer-token}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: reviewer}}}}, {{name: other, context: {{cluster: other, user: reviewer}}}}]\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_podwarden"))
        .args([
            "mode",
            "set",
            "shop/checkout",
            "protect",
            "--by",
            "carol",
            "--context",
            "test",
        ])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "shop/checkout: mode monitor -> protect (WorkloadPolicy shop/deployment-checkout version 5, by carol); the operator pushes it to the sidecars without restarts\n"
    );
    let s = state.lock().unwrap();
    let auth = "Bearer s3cr3t-reviewer-token";
    assert_eq!(
        s.requests,
        [
            format!("GET {PATH} {auth}"),
            format!("GET {PATH}/deployment-checkout {auth}"),
            format!("PUT {PATH}/deployment-checkout {auth}"),
        ]
    );
    assert_eq!(s.policy["spec"]["version"], 5);
    assert_eq!(s.policy["spec"]["policy"]["mode"], "protect");
    assert_eq!(s.policy["spec"]["approvedBy"], "carol");
    assert_eq!(s.policy["spec"]["history"][0]["version"], 4);
    assert_eq!(s.policy["metadata"]["resourceVersion"], "2");
}
