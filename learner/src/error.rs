use std::path::PathBuf;

/// Everything that can go wrong in the learner crate.
#[derive(Debug, thiserror::Error)]
pub enum LearnerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: invalid YAML: {source}")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid workload {0:?}: expected namespace/name")]
    Workload(String),
    #[error("{0}")]
    Store(String),
    #[error("cannot merge: {0}")]
    Merge(String),
    #[error("export: {0}")]
    Export(String),
}

impl LearnerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LearnerError::Io {
            path: path.into(),
            source,
        }
    }
}
