//! `podwarden baseline ...`: learn from flow records, review the learned
//! baseline as a diff against the approved policy, approve or reject,
//! keep history, roll back, merge replicas, and export.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use podwarden_learner::diff::render_text;
use podwarden_learner::export::{self, ExportOptions};
use podwarden_learner::store::{read_yaml, write_yaml};
use podwarden_learner::{merge_baselines, Selection, Store};
use podwarden_policy::{FlowRecord, Mode, PolicyDocument};

#[derive(clap::Args)]
pub struct Args {
    /// Root directory of the local policy store.
    #[arg(long, global = true, default_value = "./podwarden-store")]
    store: PathBuf,
    /// The workload, `namespace/name`.
    #[arg(long, global = true)]
    workload: Option<String>,
    /// `--cluster`: diff/approve/reject/history/rollback work on the cluster's CRs.
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Show what the learned baseline adds and drops relative to the approved
    /// policy. Exit code 1 when there is something to review.
    Diff {
        #[arg(long)]
        json: bool,
    },
    /// Approve proposals (all, or selected ids) as a new policy version.
    Approve {
        /// Entry id from the diff (repeatable); a dropped rule id removes it.
        #[arg(long = "rule")]
        rules: Vec<String>,
        /// Every proposal in the diff (drops are never implied).
        #[arg(long, conflicts_with = "rules")]
        all: bool,
        /// Who approves (recorded in the policy and the decision log).
        #[arg(long)]
        by: String,
        /// Also set the workload's mode in the new version.
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
    },
    /// Reject proposals so they are not proposed again.
    Reject {
        #[arg(long = "rule", required = true)]
        rules: Vec<String>,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// List the approved policy versions (with --cluster: the WorkloadPolicy's
    /// history, who approved each version and when).
    History {
        #[arg(long)]
        json: bool,
    },
    /// Write a new version equal to version N (history is never rewritten;
    /// with --cluster the operator pushes it to the sidecars).
    Rollback {
        #[arg(long)]
        to: u64,
        #[arg(long, default_value = "podwarden-cli")]
        by: String,
    },
    /// Merge baselines learned by several replicas of one workload.
    Merge {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Ingest FlowRecord JSON lines into the workload's learning state and
    /// refresh its baseline.
    Learn {
        #[arg(long)]
        flows: PathBuf,
        /// Pod name recorded in evidence (for later merges).
        #[arg(long)]
        replica: Option<String>,
    },
    /// Learning coverage of recorded flows: ready to approve, or keep
    /// learning because ... Exit 0 when ready, 1 when not.
    Status(crate::flows_cmd::StatusArgs),
    /// Export the approved policy (or the baseline) for other enforcers.
    Export {
        #[arg(long, value_enum)]
        format: Format,
        /// Policy version (default: the current one).
        #[arg(long, conflicts_with = "baseline")]
        version: Option<u64>,
        /// Export the learned baseline instead of an approved policy.
        #[arg(long)]
        baseline: bool,
        /// NetworkPolicy only: express FQDN rules as the addresses last seen
        /// behind the name (they go stale when the name moves).
        #[arg(long)]
        fqdn_ips: bool,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Learn,
    Monitor,
    Protect,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Learn => Mode::Learn,
            ModeArg::Monitor => Mode::Monitor,
            ModeArg::Protect => Mode::Protect,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Networkpolicy,
    Cilium,
    Dot,
    Svg,
}

pub fn run(args: Args) -> Result<i32> {
    if args.cluster.enabled() {
        return run_cluster(args);
    }
    let store = || -> Result<Store> {
        let w = args
            .workload
            .as_deref()
            .context("--workload namespace/name is required")?;
        Ok(Store::open(&args.store, w)?)
    };
    match args.command {
        Cmd::Status(a) => crate::flows_cmd::status(a),
        Cmd::Diff { json } => {
            let d = store()?.diff()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", render_text(&d));
            }
            Ok(if d.is_empty() { 0 } else { 1 })
        }
        Cmd::Approve {
            rules,
            all,
            by,
            mode,
        } => {
            let sel = match (all, rules.is_empty()) {
                (true, _) => Selection::All,
                (false, false) => Selection::Ids(rules),
                (false, true) if mode.is_some() => Selection::Ids(Vec::new()),
                (false, true) => bail!("say what to approve: --all or --rule ID"),
            };
            let store = store()?;
            // Said before approving, so a reviewer reads it whatever follows.
            for w in store.diff()?.warnings {
                println!("! warning: {w}");
            }
            let doc = store.approve(&sel, &by, mode.map(Mode::from))?;
            println!(
                "approved by {by}: {} version {} ({} rules, {} processes, mode {})",
                doc.metadata.workload,
                doc.metadata.version,
                doc.spec.rules.len(),
                doc.spec.processes.len(),
                doc.spec.mode.as_str()
            );
            Ok(0)
        }
        Cmd::Reject { rules, by, reason } => {
            store()?.reject(&rules, &by, reason.as_deref())?;
            println!("rejected {} (not proposed again)", rules.join(", "));
            Ok(0)
        }
        Cmd::History { json } => {
            let h = store()?.history()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else if h.is_empty() {
                println!("no approved versions");
            } else {
                println!(
                    "{:<8} {:<22} {:<16} {:>6} {:>10}  mode",
                    "version", "approved at", "by", "rules", "processes"
                );
                for v in &h {
                    println!(
                        "{:<8} {:<22} {:<16} {:>6} {:>10}  {}",
                        format!("v{}", v.version),
                        v.approved_at.as_deref().unwrap_or("-"),
                        v.approved_by.as_deref().unwrap_or("-"),
                        v.rules,
                        v.processes,
                        v.mode.as_str()
                    );
                }
            }
            Ok(0)
        }
        Cmd::Rollback { to, by } => {
            let doc = store()?.rollback(to, &by)?;
            println!(
                "rolled back to v{to}: wrote version {}",
                doc.metadata.version
            );
            Ok(0)
        }
        Cmd::Merge { files, output } => {
            let docs = files
                .iter()
                .map(|f| read_yaml(f).map_err(anyhow::Error::from))
                .collect::<Result<Vec<PolicyDocument>>>()?;
            let merged = merge_baselines(&docs)?;
            write_yaml(&output, &merged)?;
            println!(
                "merged {} baselines into {} ({} rules)",
                docs.len(),
                output.display(),
                merged.spec.rules.len()
            );
            Ok(0)
        }
        Cmd::Learn { flows, replica } => {
            let s = store()?;
            let mut l = s.load_learner(None)?;
            if replica.is_some() && replica != l.config().replica {
                if l.is_empty() {
                    let mut c = l.config().clone();
                    c.replica = replica;
                    l = podwarden_learner::Learner::new(c)?;
                } else {
                    bail!(
                        "the learning state of {} is for replica {:?}; merge baselines of different replicas with `merge`",
                        s.workload(),
                        l.config().replica
                    );
                }
            }
            let f = std::fs::File::open(&flows).with_context(|| format!("{}", flows.display()))?;
            let mut n = 0u64;
            for (i, line) in BufReader::new(f).lines().enumerate() {
                let line = line.with_context(|| format!("{}:{}", flows.display(), i + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                let rec: FlowRecord = serde_json::from_str(&line)
                    .with_context(|| format!("{}:{}: not a flow record", flows.display(), i + 1))?;
                l.ingest(&rec);
                n += 1;
            }
            s.save_learner(&l)?;
            println!(
                "learned {n} flow records into {} ({} rule shapes, {} records not learnable in total; baseline at {})",
                s.workload(),
                l.len(),
                l.skipped(),
                s.baseline_path().display()
            );
            Ok(0)
        }
        Cmd::Export {
            format,
            version,
            baseline,
            fqdn_ips,
            output,
        } => {
            let s = store()?;
            let doc = if baseline {
                s.baseline()?
            } else {
                match version {
                    Some(v) => s.policy(v)?,
                    None => s
                        .current()?
                        .context("no approved policy yet; approve first or pass --baseline")?,
                }
            };
            let mut opts = ExportOptions::default();
            if fqdn_ips {
                let l = s.load_learner(None)?;
                opts.fqdn_addresses = Some(export::fqdn_addresses(&l));
            }
            let text = match format {
                Format::Networkpolicy => export::networkpolicy(&doc, &opts)?,
                Format::Cilium => export::cilium(&doc)?,
                Format::Dot => export::dot(&doc),
                Format::Svg => export::svg(&doc),
            };
            match output {
                Some(p) => std::fs::write(&p, text).with_context(|| format!("{}", p.display()))?,
                None => std::io::stdout().write_all(text.as_bytes())?,
            }
            Ok(0)
        }
    }
}

/// Cluster mode: the review verbs on the operator's CRs (see `crate::cluster`).
fn run_cluster(args: Args) -> Result<i32> {
    use crate::cluster::{self, baseline::Approval, Target};
    let t = Target::from_flag(args.workload.as_deref())?;
    let out = &mut std::io::stdout();
    cluster::block_on(async {
        let client = cluster::connect(&args.cluster).await?;
        match args.command {
            Cmd::Diff { json } => cluster::baseline::diff(client, &t, json, out).await,
            Cmd::Approve {
                rules,
                all,
                by,
                mode,
            } => {
                let what = match (all, rules.is_empty()) {
                    (true, _) => Approval::All,
                    (false, false) => Approval::Ids(rules),
                    (false, true) => Approval::ModeOnly,
                };
                let mode = mode.map(Mode::from);
                cluster::baseline::approve(client, &t, what, &by, mode, out).await
            }
            Cmd::Reject { rules, by, reason } => {
                cluster::baseline::reject(client, &t, &rules, &by, reason.as_deref(), out).await
            }
            Cmd::History { json } => cluster::history::history(client, &t, json, out).await,
            Cmd::Rollback { to, by } => cluster::history::rollback(client, &t, to, &by, out).await,
            _ => bail!(
                "only diff, approve, reject, history and rollback work with --cluster; the others use the local store"
            ),
        }
    })
}
