//! DNS, as the policy sees it: what the pod's resolver answered (so FQDN
//! rules can be proven against the destination IP), what a tunnelling-shaped
//! query looks like, and parsing the messages. Pure: time is a parameter.

pub mod message;
pub mod names;
pub mod tunnel;

pub use message::{
    parse_message, AnswerData, DnsAnswer, DnsMessage, DnsParseError, DnsQuestion, RecordType,
    Resolution,
};
pub use names::{NameTable, NameTableConfig};
pub use tunnel::{assess_query, TunnelAssessment, TunnelSign, TunnelThresholds};
