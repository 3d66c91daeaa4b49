//! Cluster mode of the CLI: the same review verbs as the local store, on the
//! operator's `WorkloadBaseline` / `WorkloadPolicy` CRs through the
//! kubeconfig. Decisions are the operator's own (`controller::review`), so a
//! version approved here is exactly what the controller would write.
//!
//! Each verb is an `async fn(client, …, out)` writing what a person reads to
//! `out`, so tests drive it with a mocked API server and check both the API
//! calls and the text; the `run_*` wrappers connect and print to stdout.

pub mod baseline;
pub mod export;
pub mod history;
pub mod status;
pub mod target;

/// The in-memory API server the operator's controller tests use too.
#[cfg(test)]
#[path = "../../../operator/tests/support/fake_api.rs"]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use anyhow::{Context, Result};

pub use target::Target;

/// Who writes: the field manager on every object the CLI changes.
pub const FIELD_MANAGER: &str = "podwarden-cli";

/// Flags that select cluster mode, shared by the verbs that have both modes.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Work on the cluster's CRs (kubeconfig: $KUBECONFIG or ~/.kube/config)
    /// instead of the local store. `--workload` is then `namespace/name` or
    /// `namespace/Kind/name`.
    #[arg(long, global = true)]
    pub cluster: bool,
    /// kubeconfig context (default: the current one). Implies --cluster.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

impl ClusterArgs {
    pub fn enabled(&self) -> bool {
        self.cluster || self.context.is_some()
    }
}

/// A client from the kubeconfig (or the in-cluster service account).
pub async fn connect(args: &ClusterArgs) -> Result<kube::Client> {
    let config = match &args.context {
        Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(ctx.clone()),
            ..Default::default()
        })
        .await
        .with_context(|| format!("loading kubeconfig context {ctx:?}"))?,
        None => kube::Config::infer()
            .await
            .context("no kubeconfig found (set KUBECONFIG) and not running in a cluster")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Runs one cluster verb to completion on a small runtime of its own (the
/// rest of the CLI is synchronous).
pub fn block_on<F: std::future::Future<Output = Result<i32>>>(fut: F) -> Result<i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(fut)
}

/// Current time, RFC 3339, UTC (recorded in approvals and rejections).
pub fn now() -> String {
    podwarden_operator::controller::reconcile::now_rfc3339()
}
