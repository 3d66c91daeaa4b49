//! `podwarden status`: per-workload health from the cluster's CRs — mode,
//! the policy version each pod runs, violations in the last hour. Exit 1
//! when some approved workload has a pod behind or in error.

use anyhow::Result;

use crate::cluster::{self, ClusterArgs, Target};

#[derive(clap::Args)]
pub struct Args {
    /// Only this namespace (default: all namespaces).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Only this workload: `namespace/name` or `namespace/Kind/name`.
    #[arg(long)]
    workload: Option<String>,
    #[arg(long)]
    json: bool,
    /// Accepted for symmetry with the other verbs: status always reads the cluster.
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn run(args: Args) -> Result<i32> {
    let only = args.workload.as_deref().map(Target::parse).transpose()?;
    cluster::block_on(async {
        let client = cluster::connect(&args.cluster).await?;
        cluster::status::status(
            client,
            args.namespace.as_deref(),
            only.as_ref(),
            args.json,
            &mut std::io::stdout(),
        )
        .await
    })
}
