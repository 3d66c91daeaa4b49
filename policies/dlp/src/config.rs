//! Scanner settings: which sensors, custom sensors, and decoding bounds.
//! Plain data so the policy file's DLP section maps onto it one to one.

use serde::{Deserialize, Serialize};

/// A user-defined sensor from the policy file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomSensor {
    pub name: String,
    /// Regular expression (Rust `regex` syntax) for the value.
    pub pattern: String,
    /// Optional validator run on the match: `luhn`, `mod97` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// At least one of these words (case-insensitive) must appear within
    /// `context_window` bytes before or after the match. Empty = no condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    #[serde(default = "default_context_window")]
    pub context_window: usize,
    /// Minimum Shannon entropy (bits per byte) of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_entropy: Option<f64>,
}

fn default_context_window() -> usize {
    64
}

/// Bounds that keep a scan's memory and time proportional to its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Nesting of decoders (base64 inside percent inside gzip…).
    pub max_depth: u8,
    /// Bytes one decoding step may produce; beyond it a `DecodeLimit` is reported.
    pub max_decoded: usize,
    /// Longest candidate (token, encoded run, PEM block) considered; also the
    /// stream scanner's carry-over bound.
    pub max_candidate: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 4,
            max_decoded: 1 << 20,
            max_candidate: 16 << 10,
        }
    }
}

/// Everything a scanner is built from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// Built-in sensors to turn off, by name (see [`crate::BUILTIN_SENSORS`]).
    #[serde(default)]
    pub disabled_sensors: Vec<String>,
    /// Off-by-default sensors to turn on (e.g. `stripe_test_key`).
    #[serde(default)]
    pub enabled_sensors: Vec<String>,
    #[serde(default)]
    pub custom_sensors: Vec<CustomSensor>,
    #[serde(default)]
    pub limits: Limits,
}
