//! podwarden operator: admission webhook (sidecar injection), custom
//! resources, the controller that turns what sidecars learn into baselines
//! and pushes approved policies back, and the compliance report.

pub mod crd;
pub mod inject;
pub mod controller;
pub mod compliance;
pub mod tls;
pub mod config;
pub mod metrics;
pub mod webhook;
