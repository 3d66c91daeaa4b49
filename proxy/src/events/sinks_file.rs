//! `--event-sinks FILE`: where security events go, as a YAML list of sinks
//! (`- type: stdout`, `- type: webhook\n  url: https://…`, see [`SinkConfig`]).
//! Checked at start — a sink that could never deliver (bad URL, unreadable
//! CA file) stops the proxy with the file named, rather than losing every
//! event later. Without the flag, events go to stdout.

use std::path::{Path, PathBuf};

use super::{webhook::WebhookSender, SinkConfig};

#[derive(Debug, thiserror::Error)]
pub enum SinksFileError {
    #[error("cannot read event sinks file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid event sinks file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The sinks named in `path`, or stdout alone without one.
pub fn load_sinks(path: Option<&Path>) -> Result<Vec<SinkConfig>, SinksFileError> {
    let Some(path) = path else {
        return Ok(vec![SinkConfig::Stdout]);
    };
    let invalid = |reason: String| SinksFileError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| SinksFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let sinks: Vec<SinkConfig> =
        serde_yaml_ng::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if sinks.is_empty() {
        return Err(invalid("no sink listed (events would all be lost)".into()));
    }
    for (i, s) in sinks.iter().enumerate() {
        if let SinkConfig::Webhook(w) = s {
            WebhookSender::new(w.clone()).map_err(|e| invalid(format!("[{i}]: {e}")))?;
        }
    }
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn default_file_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_sinks(None).unwrap(), vec![SinkConfig::Stdout]);
        let ok = write(
            &dir,
            "ok.yaml",
            "- type: stdout\n- type: webhook\n  url: https://siem.example/in\n",
        );
        let sinks = load_sinks(Some(&ok)).unwrap();
        assert_eq!(
            sinks.iter().map(SinkConfig::name).collect::<Vec<_>>(),
            vec!["stdout", "webhook"]
        );
        let bad_url = write(
            &dir,
            "bad.yaml",
            "- type: webhook\n  url: ftp://siem.example/\n",
        );
        let e = load_sinks(Some(&bad_url)).unwrap_err().to_string();
        assert!(e.contains("bad.yaml") && e.contains("[0]"), "{e}");
        let no_ca = write(
            &dir,
            "noca.yaml",
            "- type: webhook\n  url: https://siem.example/\n  caFile: /nonexistent/ca.pem\n",
        );
        let e = load_sinks(Some(&no_ca)).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let empty = write(&dir, "empty.yaml", "[]\n");
        assert!(load_sinks(Some(&empty)).is_err());
        let typo = write(&dir, "typo.yaml", "- type: stdot\n");
        assert!(load_sinks(Some(&typo))
            .unwrap_err()
            .to_string()
            .contains("typo.yaml"));
        assert!(load_sinks(Some(Path::new("/nonexistent/sinks.yaml"))).is_err());
    }
}
