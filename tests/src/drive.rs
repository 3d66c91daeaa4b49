//! Steps several end-to-end suites take the same way: curl that reports the
//! HTTP status with the body, the `podwarden` CLI run from the host with
//! its output kept for failure messages, scratch directories the proxy
//! (UID 1337) can write its state and flow log to, and the DNS server
//! fixture that logs every query it receives.

use std::path::PathBuf;
use std::process::{Command, Output};

use anyhow::{anyhow, Context, Result};

use crate::env::workspace_bin;
use crate::netns::Netns;
use crate::pod::{fixture, python, PROXY_UID};
use crate::topology::Topology;

/// What a curl run gave: the HTTP status (0 when no response arrived),
/// the body, and whether curl itself exited 0 (a reset mid-body is a
/// failure even after a 200 status line).
#[derive(Debug, Clone)]
pub struct CurlReply {
    pub status: u16,
    pub body: String,
    pub ok: bool,
    pub stderr: String,
}

/// Runs `curl -sS --max-time 10 -w '\n%{http_code}' ARGS` in `ns` as `uid`.
/// `--fail` is not added: a 403 is an answer the tests look at.
pub fn curl(ns: &Netns, uid: Option<u32>, args: &[&str]) -> Result<CurlReply> {
    let mut argv = vec!["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}"];
    argv.extend_from_slice(args);
    let out = ns.output(uid, &argv)?;
    Ok(reply_of(&out))
}

/// Splits curl's stdout into body and the status `-w` appended.
fn reply_of(out: &Output) -> CurlReply {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    CurlReply {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The built `podwarden` CLI.
pub fn cli_path() -> Result<String> {
    workspace_bin("podwarden")
        .map(|p| p.display().to_string())
        .ok_or_else(|| anyhow!("podwarden CLI binary not built"))
}

/// Runs the `podwarden` CLI on the host (outside the namespaces).
pub fn podwarden(args: &[&str]) -> Result<Output> {
    let cli = cli_path()?;
    Command::new(&cli)
        .args(args)
        .output()
        .with_context(|| format!("running {cli}"))
}

/// Exit code, stdout and stderr of a run, for assertion messages.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts `tests/fixtures/dns_server.py` in `ns` on port 53 (UDP, dual
/// stack) under `label`: it answers A/AAAA for `records` (`name=ip`, a name
/// may repeat), NXDOMAIN otherwise, and logs `QUERY <name> <type> from
/// <addr>` for every query it receives — the receiving side's record of
/// what left the pod.
pub fn dns_server(ns: &Netns, label: &str, records: &[String]) -> Result<()> {
    let script = fixture("dns_server.py");
    let mut argv = vec![python(), script.as_str(), "53"];
    argv.extend(records.iter().map(String::as_str));
    ns.spawn(label, None, &argv)?;
    ns.wait_udp_bound(53, crate::netns::READY)
}

impl Topology {
    /// A new directory in the scratch dir owned by the proxy's UID, for
    /// `--state-dir`, `--flow-log-dir` and the like.
    pub fn proxy_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.scratch.path(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.pod
            .exec(&["chown", &PROXY_UID.to_string(), &dir.display().to_string()])?;
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    fn output(code: i32, stdout: &str) -> Output {
        Output {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.as_bytes().to_vec(),
            stderr: b"curl: (56) Recv failure".to_vec(),
        }
    }

    #[test]
    fn status_and_body_are_split_at_the_last_newline() {
        let r = reply_of(&output(0, "line 1\nline 2\n\n200"));
        assert_eq!(
            (r.status, r.body.as_str(), r.ok),
            (200, "line 1\nline 2\n", true)
        );
        let r = reply_of(&output(56, "partial\n200"));
        assert_eq!((r.status, r.ok), (200, false), "a reset after the status");
        assert!(r.stderr.contains("Recv failure"));
        let r = reply_of(&output(7, "\n000"));
        assert_eq!((r.status, r.body.as_str()), (0, ""));
        let r = reply_of(&output(7, ""));
        assert_eq!(r.status, 0);
    }
}
