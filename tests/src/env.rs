//! Whether end-to-end tests can run here, and where the binaries are.

use std::path::{Path, PathBuf};

/// Set to `1` to turn every skip into a failure (CI as root sets it, so a
/// missing tool or binary cannot pass silently).
pub const STRICT_ENV: &str = "PODWARDEN_E2E_STRICT";
/// Directory holding `podwarden-proxy` (overrides the cargo target dir).
pub const BIN_DIR_ENV: &str = "PODWARDEN_BIN_DIR";

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds an executable in PATH or the sbin directories.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn target_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(BIN_DIR_ENV) {
        dirs.push(PathBuf::from(d));
    }
    // The test executable lives in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(Path::parent) {
            dirs.push(profile.to_path_buf());
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        dirs.push(PathBuf::from(t).join("debug"));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    dirs
}

/// Path of a workspace binary (`podwarden-proxy`), if built.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    target_dirs()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Checks the prerequisites of a test. Returns `false` after printing
/// `skipped: <test>: <reason>` (or panics when [`STRICT_ENV`] is `1`).
pub fn require(test: &str, tools: &[&str], bins: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (network namespaces)".to_string());
    }
    for t in [
        "ip",
        "iptables-restore",
        "ip6tables-restore",
        "setpriv",
        "ss",
        "ping",
    ]
    .iter()
    .chain(tools)
    {
        if which(t).is_none() {
            missing.push(format!("tool `{t}` (bash scripts/setup.sh installs it)"));
        }
    }
    for b in bins {
        if workspace_bin(b).is_none() {
            missing.push(format!(
                "binary `{b}` (cargo build --workspace --bins, or set {BIN_DIR_ENV})"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("skipped: {test}: needs {}", missing.join(", "));
    if std::env::var(STRICT_ENV).as_deref() == Ok("1") {
        panic!("{msg} ({STRICT_ENV}=1 forbids skipping)");
    }
    println!("{msg}");
    eprintln!("{msg}");
    false
}
