//! Errors of loading, validating and compiling a policy, located in the
//! source file so that people can fix them: `file:line:col: field.path: message`.

use std::fmt;

/// One problem in a policy file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name or other source label (`<stdin>`, a ConfigMap key, ...).
    pub source_name: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path in the document, e.g. `spec.rules[3].ports[0]`; empty for
    /// the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source_name)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.path, self.message)
        }
    }
}

/// A list of diagnostics, displayed one per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or YAML that does not fit the policy types (unknown field,
    /// wrong type, bad port, bad CIDR, ...).
    #[error("{0}")]
    Syntax(Diagnostic),
    /// Well-formed but semantically wrong (duplicate ids, bad path template,
    /// wrong apiVersion, ...). Every problem found is listed.
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl PolicyError {
    /// Every located problem this error carries (none for I/O errors).
    pub fn diagnostics(&self) -> Vec<&Diagnostic> {
        match self {
            PolicyError::Io { .. } => Vec::new(),
            PolicyError::Syntax(d) => vec![d],
            PolicyError::Invalid(ds) => ds.0.iter().collect(),
        }
    }

    /// The first located problem, for one-line logs and metrics labels.
    pub fn first(&self) -> Option<&Diagnostic> {
        self.diagnostics().into_iter().next()
    }
}
