//! `podwarden policy export`: the approved policy of a workload as the
//! policy file (YAML), a Kubernetes NetworkPolicy or a CiliumNetworkPolicy,
//! from the cluster's `WorkloadPolicy` or the local store.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use podwarden_learner::export::{self, ExportOptions};
use podwarden_operator::controller::approve::policy_document;
use podwarden_operator::crd::WorkloadPolicy;
use podwarden_policy::PolicyDocument;

use super::target::{resolve, Target};
use super::ClusterArgs;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    /// The policy document, as `podwarden-proxy --policy-file` reads it.
    Yaml,
    /// Kubernetes NetworkPolicy (L3/L4 only; FQDN rules become comments).
    Networkpolicy,
    /// CiliumNetworkPolicy (with FQDN and HTTP rules).
    Cilium,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The workload: `namespace/name` (cluster: also `namespace/Kind/name`).
    #[arg(long)]
    pub workload: String,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: ExportFormat,
    /// Root directory of the local policy store (local mode).
    #[arg(long, default_value = "./podwarden-store")]
    pub store: PathBuf,
    /// Output file (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let text = if args.cluster.enabled() {
        let t = Target::parse(&args.workload)?;
        let mut buf = Vec::new();
        super::block_on(async {
            let client = super::connect(&args.cluster).await?;
            export(client, &t, args.format, &mut buf).await
        })?;
        buf
    } else {
        let doc = podwarden_learner::Store::open(&args.store, &args.workload)?
            .current()?
            .context("no approved policy yet in the local store")?;
        render(&doc, args.format)?.into_bytes()
    };
    write_out(args.output.as_ref(), &text)?;
    Ok(0)
}

fn write_out(path: Option<&PathBuf>, bytes: &[u8]) -> Result<()> {
    match path {
        Some(p) => std::fs::write(p, bytes).with_context(|| format!("{}", p.display())),
        None => Ok(std::io::stdout().write_all(bytes)?),
    }
}

pub fn render(doc: &PolicyDocument, format: ExportFormat) -> Result<String> {
    Ok(match format {
        ExportFormat::Yaml => serde_yaml_ng::to_string(doc)?,
        ExportFormat::Networkpolicy => export::networkpolicy(doc, &ExportOptions::default())?,
        ExportFormat::Cilium => export::cilium(doc)?,
    })
}

/// The workload's approved policy (the version the controller distributes).
pub async fn export(
    client: kube::Client,
    t: &Target,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadPolicy>(&client, t).await?;
    let api: kube::Api<WorkloadPolicy> = kube::Api::namespaced(client, &t.namespace);
    let mut cr = api
        .get_opt(&name)
        .await?
        .with_context(|| format!("WorkloadPolicy {}/{name} not found", t.namespace))?;
    cr.metadata
        .namespace
        .get_or_insert_with(|| t.namespace.clone());
    out.write_all(render(&policy_document(&cr), format)?.as_bytes())?;
    Ok(0)
}
