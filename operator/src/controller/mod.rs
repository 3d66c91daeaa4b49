//! The controller: turns what the sidecars of a workload learned into its
//! `WorkloadBaseline`, and pushes the approved `WorkloadPolicy` back to every
//! sidecar of the workload, reporting what each pod runs.
//!
//! Direction of the channel: **pull**. The operator calls each sidecar's
//! admin API (see [`sidecar`] for the HTTP contract) rather than sidecars
//! publishing to the operator, because
//! * the operator already knows every injected pod (it injected them; it
//!   lists pods labelled `podwarden.io/injected`), so no discovery or
//!   registration protocol is needed;
//! * sidecars need no credentials at all — no ServiceAccount token, no
//!   client certificate, no route to the operator — and a compromised pod
//!   cannot push a poisoned baseline for another workload: the operator
//!   only ever attributes what it fetched from a pod to that pod's workload;
//! * load is bounded by the operator (interval, concurrency), not by how
//!   many pods start at once;
//! * the same channel carries policy distribution (`PUT /policy`), so mode
//!   changes and policy updates take effect without pod restarts.
//!
//! The sidecar authenticates the operator: it is given the SHA-256 of a
//! bearer token at injection time and compares (constant-time) what the
//! operator sends. The cost of pull: the operator must reach pod IPs on the
//! admin port (allow it in NetworkPolicies), and what a pod learned between
//! its last pull and its death is lost (one interval at most).

pub mod approve;
pub mod baseline;
pub mod reconcile;
pub mod review;
pub mod rollback;
pub mod sidecar;
pub mod status;

pub use reconcile::{sync_pods, Controller, ControllerError, InjectedPod};
pub use review::Review;
pub use sidecar::{SidecarClient, SidecarError, SidecarStatus};
pub use status::policy_status as policy_status_of;
