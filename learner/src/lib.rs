//! Learner: flow records to baselines.
//!
//! Pure logic lives in [`generalize`], [`learn`], [`merge`], [`diff`] and
//! [`export`]; file I/O is confined to [`store`] and the snapshot helpers in
//! [`learn`]; /proc and netlink access to [`process`].

pub mod coverage;
pub mod diff;
mod diff_names;
pub mod error;
pub mod evidence;
pub mod export;
pub mod generalize;
pub mod learn;
pub mod merge;
pub mod names;
pub mod process;
pub mod promote;
pub mod replay;
pub mod replay_baseline;
pub mod sink;
pub mod store;

pub use diff::{diff, BaselineDiff, ChangeKind, DiffEntry, Rejections, RiskHint};
pub use error::LearnerError;
pub use learn::{Learner, LearnerConfig};
pub use merge::merge_baselines;
pub use sink::LearningSink;
pub use store::{Selection, Store};

#[cfg(test)]
pub(crate) mod testutil;
