//! The I/O edge of `init`: finding and running iptables-save / iptables-restore.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::rules::Family;

/// Which iptables flavour to run. `Auto` is whatever `iptables-restore` the
/// machine has (on Debian the alternatives system picks nft or legacy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Auto,
    Nft,
    Legacy,
}

#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("`{0}` not found in PATH or /usr/sbin, /sbin (install the `iptables` package, or pick another --backend)")]
    NotFound(String),
    #[error("could not run `{cmd}`: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}{context}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
        /// The script line the tool complained about, when it says which.
        context: String,
    },
}

/// The save/restore pair for one family and backend.
#[derive(Debug, Clone)]
pub struct Tools {
    pub save: PathBuf,
    pub restore: PathBuf,
}

fn tool_name(family: Family, backend: Backend, verb: &str) -> String {
    let base = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    match backend {
        Backend::Auto => format!("{base}-{verb}"),
        Backend::Nft => format!("{base}-nft-{verb}"),
        Backend::Legacy => format!("{base}-legacy-{verb}"),
    }
}

/// Looks in PATH, then in the sbin directories an unprivileged PATH often lacks.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Tools {
    pub fn locate(family: Family, backend: Backend) -> Result<Self, IptablesError> {
        let find = |verb| {
            let name = tool_name(family, backend, verb);
            which(&name).ok_or(IptablesError::NotFound(name))
        };
        Ok(Self {
            save: find("save")?,
            restore: find("restore")?,
        })
    }

    /// The current ruleset, as iptables-save prints it.
    pub fn save(&self) -> Result<String, IptablesError> {
        let cmd = self.save.display().to_string();
        let out = Command::new(&self.save)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| IptablesError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(IptablesError::Failed {
                cmd,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                context: String::new(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Feeds `script` to `restore --noflush`: tables we do not mention, and rules
    /// of others in tables we do, are left alone.
    pub fn restore(&self, script: &str) -> Result<(), IptablesError> {
        let cmd = format!("{} --noflush", self.restore.display());
        let mut child = Command::new(&self.restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| IptablesError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A write error here means the tool exited early; its status says why.
            let _ = stdin.write_all(script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|source| IptablesError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let context = failing_line(&stderr)
            .and_then(|n| script.lines().nth(n.saturating_sub(1)))
            .map(|l| format!("\n  near script line: {l}"))
            .unwrap_or_default();
        Err(IptablesError::Failed {
            cmd,
            status: out.status.to_string(),
            stderr,
            context,
        })
    }
}

/// iptables-restore reports "Error occurred at line: 7" (or, older, "line 7
/// failed"); find the 7.
fn failing_line(stderr: &str) -> Option<usize> {
    let idx = stderr.find("line")?;
    stderr[idx + 4..]
        .trim_start_matches([':', ' '])
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_follow_debian_alternatives() {
        assert_eq!(
            tool_name(Family::V4, Backend::Auto, "restore"),
            "iptables-restore"
        );
        assert_eq!(
            tool_name(Family::V6, Backend::Nft, "save"),
            "ip6tables-nft-save"
        );
        assert_eq!(
            tool_name(Family::V6, Backend::Legacy, "restore"),
            "ip6tables-legacy-restore"
        );
    }

    #[test]
    fn finds_the_failing_line_number() {
        assert_eq!(failing_line("iptables-restore: line 7 failed"), Some(7));
        assert_eq!(
            failing_line("iptables-restore v1.8.9 (nf_tables): unknown option \"--bogus\"\nError occurred at line: 12"),
            Some(12)
        );
        assert_eq!(failing_line("something else"), None);
    }

    #[test]
    fn a_missing_tool_is_a_clear_error() {
        let e = which("podwarden-no-such-tool-xyz");
        assert!(e.is_none());
        let err = IptablesError::NotFound("iptables-restore".into()).to_string();
        assert!(err.contains("install the `iptables` package"), "{err}");
    }
}
