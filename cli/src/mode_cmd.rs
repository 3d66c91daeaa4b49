//! `podwarden mode set <workload> learn|monitor|protect [--feature waf|dlp]`:
//! moves a workload between modes as a new approved policy version that
//! records who. On the cluster (`--cluster`) the operator pushes the new
//! version to the running sidecars; locally it is a new version in the store.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use podwarden_learner::{Selection, Store};
use podwarden_policy::model::Feature;
use podwarden_policy::Mode;

use crate::cluster::{self, ClusterArgs, Target};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set the workload's mode (or one feature's) in a new policy version.
    Set {
        /// The workload: `namespace/name` (cluster: also `namespace/Kind/name`).
        workload: String,
        #[arg(value_enum)]
        mode: ModeArg,
        /// Change only this feature's mode (default: the workload's mode,
        /// which network enforcement follows).
        #[arg(long, value_enum)]
        feature: Option<FeatureArg>,
        /// Who decides (recorded in the new version).
        #[arg(long)]
        by: String,
        /// Root directory of the local policy store (local mode).
        #[arg(long, default_value = "./podwarden-store")]
        store: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Learn,
    Monitor,
    Protect,
}

#[derive(Clone, Copy, ValueEnum)]
enum FeatureArg {
    Waf,
    Dlp,
}

pub fn run(args: Args) -> Result<i32> {
    let Cmd::Set {
        workload,
        mode,
        feature,
        by,
        store,
        cluster: c,
    } = args.command;
    let mode = match mode {
        ModeArg::Learn => Mode::Learn,
        ModeArg::Monitor => Mode::Monitor,
        ModeArg::Protect => Mode::Protect,
    };
    let feature = match feature {
        None => Feature::Network,
        Some(FeatureArg::Waf) => Feature::Waf,
        Some(FeatureArg::Dlp) => Feature::Dlp,
    };
    if c.enabled() {
        let t = Target::parse(&workload)?;
        return cluster::block_on(async {
            let client = cluster::connect(&c).await?;
            cluster::status::set_mode(client, &t, feature, mode, &by, &mut std::io::stdout()).await
        });
    }
    if feature != Feature::Network {
        bail!("--feature needs --cluster: the local store records only the workload mode");
    }
    let s = Store::open(&store, &workload)?;
    if s.current()?.is_some_and(|p| p.spec.mode == mode) {
        println!(
            "{workload}: mode already {}; nothing changed",
            mode.as_str()
        );
        return Ok(0);
    }
    let doc = s.approve(&Selection::Ids(Vec::new()), &by, Some(mode))?;
    println!(
        "{workload}: mode {} in version {} (by {by})",
        mode.as_str(),
        doc.metadata.version
    );
    Ok(0)
}
