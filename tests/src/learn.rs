//! Driving the sidecar's control plane from a test: a proxy with process
//! attribution (the /proc access it needs in a pod), and the authenticated
//! admin routes (`/baseline`, `/status`, `PUT /policy`).

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::pod::{proxy_bin, ADMIN, PROXY_UID};
use crate::topology::Topology;

/// The admin token tests use; the proxy gets only its SHA-256.
pub const TOKEN: &str = "e2e-admin-token";

/// Hex SHA-256 of `s` (via coreutils, so the harness needs no crypto crate).
pub fn sha256_hex(s: &str) -> Result<String> {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running sha256sum")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("sha256sum stdin")?;
        stdin.write_all(s.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

impl Topology {
    /// Starts `podwarden-proxy run` as UID 1337 with the two capabilities
    /// process attribution needs for another UID's processes:
    /// CAP_DAC_READ_SEARCH (list `/proc/PID/fd`, mode 0500 of the owner) and
    /// CAP_SYS_PTRACE (read its links and `/proc/PID/exe`). `state_dir` is
    /// made the proxy's. Waits for the listeners.
    pub fn start_attributing_proxy(
        &self,
        label: &str,
        state_dir: &Path,
        extra: &[&str],
    ) -> Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let dir = state_dir.display().to_string();
        self.pod
            .exec(&["chown", "-R", &PROXY_UID.to_string(), &dir])?;
        let bin = proxy_bin()?.display().to_string();
        let uid = PROXY_UID.to_string();
        let hash = sha256_hex(TOKEN)?;
        let mut argv = vec![
            "setpriv",
            "--reuid",
            &uid,
            "--regid",
            &uid,
            "--clear-groups",
            "--inh-caps",
            "+sys_ptrace,+dac_read_search",
            "--ambient-caps",
            "+sys_ptrace,+dac_read_search",
            "--",
            "env",
        ];
        let token_env = format!("PODWARDEN_ADMIN_TOKEN_SHA256={hash}");
        argv.push(&token_env);
        argv.extend_from_slice(&[&bin, "run", "--admin-addr", ADMIN, "--state-dir", &dir]);
        argv.extend_from_slice(extra);
        self.pod.spawn(label, None, &argv)?;
        for port in [15001, 15006, 15000] {
            self.pod
                .wait_listening(port, crate::pod::PROXY_START)
                .context("waiting for podwarden-proxy's listeners")?;
        }
        Ok(())
    }

    /// An admin call from inside the pod with the bearer token (or
    /// `token`): (HTTP status, body). `body` is sent as JSON.
    pub fn admin_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(u16, String)> {
        let url = format!("http://{ADMIN}{path}");
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let body_file = self.scratch.path("admin-body.json");
        let mut argv = vec![
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ];
        if let Some(a) = &auth {
            argv.extend_from_slice(&["-H", a]);
        }
        let data = format!("@{}", body_file.display());
        if let Some(b) = body {
            std::fs::write(&body_file, b)?;
            argv.extend_from_slice(&[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
            ]);
        }
        argv.push(&url);
        let out = self.pod.exec(&argv)?;
        let (text, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
        let code: u16 = code
            .trim()
            .parse()
            .with_context(|| format!("no status from {method} {path}: {out}"))?;
        Ok((code, text.to_string()))
    }

    /// `admin_call` that must answer 200; returns the body.
    pub fn admin_ok(&self, method: &str, path: &str, body: Option<&str>) -> Result<String> {
        let (code, text) = self.admin_call(method, path, Some(TOKEN), body)?;
        if code != 200 {
            bail!("{method} {path}: HTTP {code}: {text}\n{}", self.logs());
        }
        Ok(text)
    }
}
