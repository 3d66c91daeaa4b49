//! `podwarden policy ...`: lint policy files, print the JSON Schema, explain
//! a decision for a flow.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use podwarden_policy::{load_policy_file, load_policy_str, CompiledPolicy, Flow, PolicyError};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check policy files; prints `file:line:col: field.path: problem` for
    /// each problem. Exit 0 when all are valid, 1 when any is invalid, 2 when
    /// a file cannot be read. `-` reads standard input.
    Lint {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the policy file.
    Schema,
    /// Export a workload's approved policy (YAML, NetworkPolicy,
    /// CiliumNetworkPolicy) from the cluster (`--cluster`) or the local store.
    Export(crate::cluster::export::ExportArgs),
    /// Explain the decision for one flow (JSON, as in `/flows`) or for a
    /// security event by id: the rule that allowed it, or the nearest rules
    /// and why each did not match.
    /// Exit 0 when allowed, 1 when the policy does not allow it.
    Explain {
        /// The policy file (or --policy).
        #[arg(required_unless_present = "policy_flag")]
        policy: Option<PathBuf>,
        /// A JSON file holding one flow (or a flow record); `-` for stdin.
        #[arg(conflicts_with_all = ["flow_flag", "event"])]
        flow: Option<PathBuf>,
        #[arg(long = "policy", value_name = "FILE", conflicts_with = "policy")]
        policy_flag: Option<PathBuf>,
        #[arg(long = "flow", value_name = "FILE", conflicts_with = "event")]
        flow_flag: Option<PathBuf>,
        /// A security event id (the id in a 403 / x-podwarden-event-id).
        #[arg(long, requires = "events")]
        event: Option<String>,
        /// The event log (JSON lines) to find --event in.
        #[arg(long, value_name = "FILE")]
        events: Option<PathBuf>,
        /// Recorded flows holding the event's flow record (exact flow).
        #[arg(long, value_name = "PATH", requires = "event")]
        flows: Option<PathBuf>,
    },
    /// Replay recorded flows against a candidate policy: what it would allow
    /// and deny, grouped. Exit 1 when anything would be denied, 0 when not.
    Replay(crate::replay_cmd::ReplayArgs),
    /// Rules no recorded flow used since --since (default 30d). Exit 1 when
    /// some rule is unused.
    Unused(crate::replay_cmd::UnusedArgs),
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        Command::Lint { files } => Ok(lint(&files)),
        Command::Schema => {
            print!("{}", podwarden_policy::schema::policy_schema_json());
            Ok(0)
        }
        Command::Export(a) => crate::cluster::export::run(a),
        Command::Explain {
            policy,
            flow,
            policy_flag,
            flow_flag,
            event,
            events,
            flows,
        } => {
            let policy = policy
                .or(policy_flag)
                .context("a policy file is required")?;
            match (flow.or(flow_flag), event, events) {
                (Some(flow), None, _) => explain(&policy, &flow),
                (None, Some(id), Some(events)) => {
                    let (ev, flow) = crate::replay_cmd::event_flow(&events, &id, flows.as_deref())?;
                    eprintln!(
                        "event {} ({}, {}): recorded rule {:?}, mode {}",
                        ev.id,
                        ev.kind.name(),
                        ev.time,
                        ev.rule,
                        ev.mode.as_str()
                    );
                    explain_flow(&policy, &flow)
                }
                _ => anyhow::bail!(
                    "give a flow (--flow FILE) or an event (--event ID --events FILE)"
                ),
            }
        }
        Command::Replay(a) => crate::replay_cmd::replay(a),
        Command::Unused(a) => crate::replay_cmd::unused(a),
    }
}

fn lint(files: &[PathBuf]) -> i32 {
    let mut code = 0;
    for file in files {
        let result = if file.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => load_policy_str(&text, "<stdin>"),
                Err(source) => Err(PolicyError::Io {
                    path: "<stdin>".into(),
                    source,
                }),
            }
        } else {
            load_policy_file(file)
        };
        match result.and_then(|doc| CompiledPolicy::compile(&doc).map(|p| (doc, p))) {
            Ok((doc, p)) => println!(
                "{}: ok ({} {:?}, {} rules, network mode {})",
                file.display(),
                doc.metadata.workload,
                doc.kind,
                p.rule_count(),
                p.mode().as_str()
            ),
            Err(e @ PolicyError::Io { .. }) => {
                eprintln!("{e}");
                code = 2;
            }
            Err(e) => {
                println!("{e}");
                code = code.max(1);
            }
        }
    }
    code
}

fn explain(policy: &Path, flow: &Path) -> anyhow::Result<i32> {
    let doc = load_policy_file(policy)?;
    let compiled = CompiledPolicy::compile(&doc)?;
    let text = if flow.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the flow from stdin")?;
        s
    } else {
        std::fs::read_to_string(flow).with_context(|| format!("reading {}", flow.display()))?
    };
    let flow: Flow = serde_json::from_str(&text).context("parsing the flow JSON")?;
    explain_compiled(&compiled, &flow)
}

fn explain_flow(policy: &Path, flow: &Flow) -> anyhow::Result<i32> {
    let compiled = CompiledPolicy::compile(&load_policy_file(policy)?)?;
    explain_compiled(&compiled, flow)
}

fn explain_compiled(compiled: &CompiledPolicy, flow: &Flow) -> anyhow::Result<i32> {
    let e = compiled.explain(flow);
    println!("{}", serde_json::to_string_pretty(&e)?);
    if !e.near_misses.is_empty() {
        eprintln!("nearest rules:");
        for n in &e.near_misses {
            let why: Vec<String> = n.reasons.iter().map(|r| r.to_string()).collect();
            eprintln!("  {}: {}", n.rule, why.join("; "));
        }
    }
    Ok(if e.matched.is_some() { 0 } else { 1 })
}
