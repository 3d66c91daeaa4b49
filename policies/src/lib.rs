//! podwarden's policy model, compiled matchers and the pure decision function.

pub mod flow;
pub mod model;

pub use flow::{
    Action, AllowAll, AppProtocol, Decide, Decision, Direction, Flow, FlowRecord, HttpRequestInfo,
    Mode, ProcessInfo, RecordKind,
};
pub use model::{PolicyDocument, PolicySpec, Rule};
