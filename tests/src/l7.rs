//! Helpers for the WAF/DLP end-to-end tests: an app server that logs what
//! it received (request line and body), a raw TCP sink that logs the bytes
//! of each connection, a client that writes a value in two TCP segments,
//! and reading the proxy's security events back from its stdout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::netns::Netns;
use crate::pod::python;
use crate::topology::{Scratch, Topology};

/// HTTP/1.1 server (threaded, dual-stack) that logs `REQ <method> <target>
/// body=<repr>` for every request it receives, answers `ok`, and on
/// `/card` answers a body holding a test card number.
const APP_SERVER: &str = r#"
import sys, http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def handle_any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        print("REQ %s %s body=%r" % (self.command, self.path, body), flush=True)
        out = b"card: 4111 1111 1111 1111\n" if self.path.startswith("/card") else b"ok\n"
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = do_PUT = handle_any
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
S(("::", int(sys.argv[1])), H).serve_forever()
"#;

/// TCP sink: logs `TOTAL <repr>` of everything one connection delivered,
/// however it ended (EOF or reset).
const RAW_SINK: &str = r#"
import sys, socket, threading
def serve(c):
    got = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
    except OSError as e:
        print("ERR %s" % e, flush=True)
    print("TOTAL %r" % got, flush=True)
    c.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Client: sends argv[3..] as separate writes 500 ms apart (separate TCP
/// segments), then half-closes and waits for the peer; prints `SENT` or the
/// error it got.
const SPLIT_CLIENT: &str = r#"
import sys, socket, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
try:
    for part in sys.argv[3:]:
        c.sendall(part.encode())
        time.sleep(0.5)
    c.shutdown(socket.SHUT_WR)
    c.recv(100)
    print("SENT", flush=True)
except OSError as e:
    print("ERROR %s" % e, flush=True)
"#;

fn script(scratch: &Scratch, name: &str, text: &str) -> Result<String> {
    Ok(scratch.write(name, text)?.display().to_string())
}

/// Starts the logging HTTP app server in `ns` on `port`.
pub fn app_server(ns: &Netns, scratch: &Scratch, label: &str, port: u16) -> Result<()> {
    let s = script(scratch, "l7_app_server.py", APP_SERVER)?;
    ns.spawn(label, None, &[python(), &s, &port.to_string()])?;
    ns.wait_listening(port, crate::netns::READY)
}

/// Starts the raw TCP sink in `ns` on `port`.
pub fn raw_sink(ns: &Netns, scratch: &Scratch, label: &str, port: u16) -> Result<()> {
    let s = script(scratch, "l7_raw_sink.py", RAW_SINK)?;
    ns.spawn(label, None, &[python(), &s, &port.to_string()])?;
    ns.wait_listening(port, crate::netns::READY)
}

/// Runs the split client as `uid` in `ns`, one write per part; returns
/// what it printed.
pub fn split_send(
    ns: &Netns,
    scratch: &Scratch,
    uid: Option<u32>,
    host: &str,
    port: u16,
    parts: &[&str],
) -> Result<String> {
    let s = script(scratch, "l7_split_client.py", SPLIT_CLIENT)?;
    let port = port.to_string();
    let mut argv = vec![python(), s.as_str(), host, port.as_str()];
    argv.extend_from_slice(parts);
    let out = ns.output(uid, &argv)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The shared OWASP CRS copy (`../shared/crs/v4.28.0` next to the repo).
pub fn crs_dir() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    [
        repo.join("../shared/crs/v4.28.0"),
        PathBuf::from("/work/shared/crs/v4.28.0"),
    ]
    .into_iter()
    .find(|p| p.join("rules").is_dir())
}

/// A policy that leaves the network in learn mode and sets the WAF and
/// DLP modes.
pub fn policy(waf: &str, dlp: &str) -> String {
    format!(
        "apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: test/l7, version: 1 }}
spec:
  mode: learn
  features: {{ waf: {waf}, dlp: {dlp} }}
"
    )
}

/// Security events (JSON lines) the proxy printed so far.
pub fn events(t: &Topology) -> Vec<Value> {
    t.pod
        .log_of("podwarden")
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("kind").is_some() && v.get("id").is_some())
        .collect()
}

/// Waits (polling, up to [`crate::netns::READY`]) for an event satisfying `pred`.
pub fn wait_event(t: &Topology, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + crate::netns::READY;
    loop {
        if let Some(e) = events(t).into_iter().find(|e| pred(e)) {
            return Ok(e);
        }
        if Instant::now() > deadline {
            bail!(
                "no event {what} after {:?}; proxy log:\n{}",
                crate::netns::READY,
                t.pod.log_of("podwarden")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
