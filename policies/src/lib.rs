//! podwarden's policy model, compiled matchers and the pure decision function.
//!
//! * [`load_policy_str`] / [`load_policy_file`]: YAML → validated
//!   [`PolicyDocument`], errors located by file, line, column and field path.
//! * [`CompiledPolicy`]: indexes for decisions whose cost does not grow with
//!   the number of rules; implements [`Decide`]; [`CompiledPolicy::explain`].
//! * [`schema`]: the JSON Schema of the policy file.
//! * [`dns`]: resolver answers (name ↔ IP with TTL), tunnelling heuristics,
//!   DNS message parsing.
//! * [`events`]: the security event every component emits, and masking.

pub mod dns;
pub mod error;
pub mod events;
pub mod flow;
pub mod load;
pub mod mask;
pub mod matcher;
pub mod model;
pub mod schema;

pub use error::{Diagnostic, Diagnostics, PolicyError};
pub use events::{EventAction, EventKind, SecurityEvent};

pub use flow::{
    Action, AllowAll, AppProtocol, Decide, Decision, Direction, DnsQueryInfo, Flow, FlowRecord,
    HttpRequestInfo, Mode, ProcessInfo, RecordKind,
};
pub use load::{load_policy_file, load_policy_str};
pub use matcher::{CompiledPolicy, Explanation, Mismatch, NearMiss, Violation};
pub use model::{Feature, PolicyDocument, PolicySpec, Rule};
