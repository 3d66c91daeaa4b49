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
    /// Explain the decision for one flow (JSON, as in `/flows`): the rule that
    /// allowed it, or the nearest rules and why each did not match.
    /// Exit 0 when allowed, 1 when the policy does not allow it.
    Explain {
        /// The policy file.
        policy: PathBuf,
        /// A JSON file holding one flow (or a flow record); `-` for stdin.
        flow: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        Command::Lint { files } => Ok(lint(&files)),
        Command::Schema => {
            print!("{}", podwarden_policy::schema::policy_schema_json());
            Ok(0)
        }
        Command::Export(a) => crate::cluster::export::run(a),
        Command::Explain { policy, flow } => explain(&policy, &flow),
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
    let e = compiled.explain(&flow);
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
