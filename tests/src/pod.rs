//! Driving podwarden inside the pod namespace: start the proxy as its UID,
//! apply `init`, read `/flows`, and count packets on the receiving side.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use podwarden_policy::FlowRecord;

use crate::env::workspace_bin;
use crate::netns::Netns;
use crate::topology::Topology;

/// How long a test waits for the proxy's listeners. A poll, so a fast start
/// costs nothing; generous because a proxy with a WAF compiles the whole CRS
/// before listening (seconds in a debug build, more on a loaded CI machine).
pub const PROXY_START: Duration = Duration::from_secs(60);

pub const PROXY_UID: u32 = 1337;
/// The app's UID: neither root nor the proxy.
pub const APP_UID: u32 = 1000;
pub const ADMIN: &str = "127.0.0.1:15000";

pub fn proxy_bin() -> Result<PathBuf> {
    workspace_bin("podwarden-proxy").ok_or_else(|| anyhow!("podwarden-proxy binary not built"))
}

/// `/usr/bin/python3` when present: a pyenv shim under /root is not usable by other UIDs.
pub fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A fixture script shipped in tests/fixtures/.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

impl Topology {
    /// Starts `podwarden-proxy run` in the pod as UID 1337 and waits for its listeners.
    pub fn start_proxy(&self, extra: &[&str]) -> Result<()> {
        let bin = proxy_bin()?;
        let bin = bin.display().to_string();
        let mut argv = vec![bin.as_str(), "run", "--admin-addr", ADMIN];
        argv.extend_from_slice(extra);
        self.pod.spawn("podwarden", Some(PROXY_UID), &argv)?;
        for port in [15001, 15006, 15000] {
            self.pod
                .wait_listening(port, PROXY_START)
                .context("waiting for podwarden-proxy's listeners")?;
        }
        Ok(())
    }

    /// Runs `podwarden-proxy init` (as root) in the pod with `extra` flags.
    pub fn init(&self, extra: &[&str]) -> Result<String> {
        run_init(&self.pod, extra)
    }

    /// Everything `/flows` holds right now.
    pub fn flows(&self) -> Result<Vec<FlowRecord>> {
        let body = self.pod.exec(&[
            "curl",
            "-sS",
            "--fail",
            "--max-time",
            "30",
            &format!("http://{ADMIN}/flows"),
        ])?;
        serde_json::from_str(&body).with_context(|| format!("parsing /flows: {body}"))
    }

    /// Polls `/flows` until some record satisfies `pred` (records of a
    /// connection appear when it ends) and returns that record.
    pub fn wait_flow(&self, what: &str, pred: impl Fn(&FlowRecord) -> bool) -> Result<FlowRecord> {
        let deadline = Instant::now() + crate::netns::READY;
        loop {
            let flows = self.flows()?;
            if let Some(r) = flows.iter().find(|r| pred(r)) {
                return Ok(r.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "no flow record {what} after {:?}; /flows has:\n{}\n{}",
                    crate::netns::READY,
                    serde_json::to_string_pretty(&flows).unwrap_or_default(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// curl from the app (UID 1000) in the pod; returns the body.
    pub fn app_curl(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["curl", "-sS", "--fail", "--max-time", "30"];
        argv.extend_from_slice(args);
        self.pod.exec_as(Some(APP_UID), &argv)
    }
}

pub fn run_init(ns: &Netns, extra: &[&str]) -> Result<String> {
    let bin = proxy_bin()?;
    let bin = bin.display().to_string();
    let mut argv = vec![bin.as_str(), "init"];
    argv.extend_from_slice(extra);
    ns.exec(&argv)
}

/// iptables-save of both families, without comments and counters, for
/// before/after comparisons. Empty built-in tables are left out: nft keeps a
/// table once it was used, which is not a rule of anyone's.
pub fn ruleset(ns: &Netns, save: &str) -> Result<String> {
    let text = ns.exec(&[save])?;
    let mut out = String::new();
    let mut block: Vec<String> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix(':') {
            // ":CHAIN POLICY [pkts:bytes]" → ":CHAIN POLICY"
            Some(decl) => format!(":{}", decl.rsplit_once(' ').map_or(decl, |(a, _)| a)),
            None => line.to_string(),
        };
        block.push(line.clone());
        if line == "COMMIT" {
            let interesting = block
                .iter()
                .any(|l| l.starts_with("-A") || (l.starts_with(':') && l.ends_with(" -")));
            if interesting {
                out.push_str(&block.join("\n"));
                out.push('\n');
            }
            block.clear();
        }
    }
    Ok(out)
}

/// Packet counter on the receiving side: an iptables rule in `ns`'s INPUT
/// chain that matches `spec` and only counts (no target).
pub struct Counter<'a> {
    ns: &'a Netns,
    tool: &'static str,
    tag: String,
}

impl<'a> Counter<'a> {
    pub fn install(ns: &'a Netns, v6: bool, tag: &str, spec: &[&str]) -> Result<Counter<'a>> {
        let tool = if v6 { "ip6tables" } else { "iptables" };
        let mut argv = vec![tool, "-A", "INPUT"];
        argv.extend_from_slice(spec);
        argv.extend_from_slice(&["-m", "comment", "--comment", tag]);
        ns.exec(&argv)?;
        Ok(Counter {
            ns,
            tool,
            tag: tag.to_string(),
        })
    }

    pub fn packets(&self) -> Result<u64> {
        let out = self.ns.exec(&[self.tool, "-nvxL", "INPUT"])?;
        out.lines()
            .find(|l| l.contains(&format!("/* {} */", self.tag)))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("counter {} not found in:\n{out}", self.tag))
    }
}
