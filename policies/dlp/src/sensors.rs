//! The catalogue of built-in sensors: names, severities, defaults.

use crate::finding::Severity;

/// Built-in sensors. Names are stable: they appear in findings, events,
/// metrics and the policy file's `disabledSensors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    CreditCard,
    Ssn,
    Iban,
    AwsAccessKeyId,
    AwsSecretKey,
    GithubToken,
    SlackToken,
    SlackWebhook,
    StripeKey,
    StripeTestKey,
    GoogleApiKey,
    Jwt,
    PrivateKey,
}

pub const ALL: [Builtin; 13] = [
    Builtin::CreditCard,
    Builtin::Ssn,
    Builtin::Iban,
    Builtin::AwsAccessKeyId,
    Builtin::AwsSecretKey,
    Builtin::GithubToken,
    Builtin::SlackToken,
    Builtin::SlackWebhook,
    Builtin::StripeKey,
    Builtin::StripeTestKey,
    Builtin::GoogleApiKey,
    Builtin::Jwt,
    Builtin::PrivateKey,
];

/// Names of all built-in sensors, in catalogue order.
pub const BUILTIN_SENSORS: [&str; 13] = [
    "credit_card",
    "ssn",
    "iban",
    "aws_access_key_id",
    "aws_secret_key",
    "github_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "stripe_test_key",
    "google_api_key",
    "jwt",
    "private_key",
];

/// Name of the pseudo-sensor reported when a decoder hits its bound.
pub const DECODE_LIMIT: &str = "decode_limit";

impl Builtin {
    pub fn name(self) -> &'static str {
        BUILTIN_SENSORS[self as usize]
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        BUILTIN_SENSORS
            .iter()
            .position(|n| *n == name)
            .map(|i| ALL[i])
    }

    pub fn severity(self) -> Severity {
        match self {
            Builtin::StripeTestKey => Severity::Low,
            Builtin::Iban | Builtin::GoogleApiKey | Builtin::Jwt => Severity::Medium,
            _ => Severity::High,
        }
    }

    /// Test-mode keys grant nothing real; they are opt-in.
    pub fn on_by_default(self) -> bool {
        self != Builtin::StripeTestKey
    }
}

/// Which sensor produced a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SensorRef {
    Builtin(Builtin),
    Custom(u16),
    DecodeLimit,
}
