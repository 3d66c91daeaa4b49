//! Harness for end-to-end tests: network namespaces, processes, cleanup.
//!
//! Every test builds its own [`Topology`] (unique namespace names, TEST-NET
//! addresses only, no route out) and drops it at the end, which kills every
//! process it started and deletes the namespaces and their veths. Tests call
//! [`env::require`] first: without root or a needed tool they print
//! `skipped: …` and return (or fail, with `PODWARDEN_E2E_STRICT=1`).

pub mod drive;
pub mod env;
pub mod l7;
pub mod learn;
pub mod netns;
pub mod pod;
pub mod servers;
pub mod topology;

pub use env::require;
pub use netns::{Netns, READY};
pub use pod::{python, Counter, ADMIN, APP_UID, PROXY_START, PROXY_UID};
pub use topology::{Topology, CLIENT, POD, SERVER, UNKNOWN};
