//! Load-time errors: every problem names the file and line it came from.

use std::fmt;

/// One problem found while loading a rule set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {msg}")]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

impl LoadError {
    pub fn new(file: &str, line: usize, msg: impl Into<String>) -> Self {
        LoadError {
            file: file.to_string(),
            line,
            msg: msg.into(),
        }
    }
}

/// All problems found while loading; loading reports every one, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
