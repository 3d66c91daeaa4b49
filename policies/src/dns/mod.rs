//! DNS, as the policy sees it: what the pod's resolver answered (so FQDN
//! rules can be proven against the destination IP), what a tunnelling-shaped
//! query looks like, and parsing the messages. Pure: time is a parameter.

pub mod answer;
pub mod listing;
pub mod message;
pub mod names;
pub mod reverse;
pub mod tunnel;

pub use answer::{negative_answer, RCODE_NXDOMAIN, RCODE_REFUSED};
pub use listing::{DnsNameVerdict, NameListing, NAME_NOT_IN_POLICY};
pub use message::{
    parse_message, AnswerData, DnsAnswer, DnsMessage, DnsParseError, DnsQuestion, RecordType,
    Resolution,
};
pub use names::{NameTable, NameTableConfig};
pub use reverse::reverse_name_addr;
pub use tunnel::{assess_query, TunnelAssessment, TunnelSign, TunnelThresholds};
