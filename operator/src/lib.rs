//! podwarden operator: admission webhook (sidecar injection), custom
//! resources, the controller that turns what sidecars learn into baselines
//! and pushes approved policies back, and the compliance report.

pub mod compliance;
pub mod config;
pub mod controller;
pub mod crd;
pub mod inject;
pub mod leader;
pub mod metrics;
pub mod tls;
pub mod webhook;
