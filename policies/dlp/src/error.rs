use thiserror::Error;

/// Errors building a scanner from configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("custom sensor {name:?}: invalid pattern: {source}")]
    Pattern {
        name: String,
        source: Box<regex::Error>,
    },
    #[error(
        "custom sensor {name:?}: unknown validator {validator:?} (expected luhn, mod97 or none)"
    )]
    Validator { name: String, validator: String },
    #[error("unknown sensor {0:?} (built-ins: {list})", list = crate::BUILTIN_SENSORS.join(", "))]
    UnknownSensor(String),
    #[error("custom sensor name {0:?} is empty or clashes with another sensor")]
    Name(String),
    #[error("limits: {0}")]
    Limits(&'static str),
    #[error("building the prefilter: {0}")]
    Prefilter(String),
}
