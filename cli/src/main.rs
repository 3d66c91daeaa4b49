//! `podwarden`: the command-line tool for people — review and approve
//! baselines, lint and export policies, tune the WAF, scan for secrets.
//!
//! Each verb group lives in its own module with its own clap `Args` and a
//! `run` that returns the process exit code, so groups grow independently.

use clap::{Parser, Subcommand};

mod baseline_cmd;
mod cluster;
mod dlp_cmd;
mod flows_cmd;
mod mode_cmd;
mod policy_cmd;
mod replay_cmd;
mod status_cmd;
mod waf_cmd;

#[derive(Parser)]
#[command(
    name = "podwarden",
    version,
    about = "podwarden: zero-trust enforcement for Kubernetes pods"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Lint, export, replay and explain policies.
    Policy(policy_cmd::Args),
    /// Review, approve and reject learned baselines.
    Baseline(baseline_cmd::Args),
    /// Lint and evaluate WAF rule sets (OWASP CRS).
    Waf(waf_cmd::Args),
    /// Scan files for sensitive data with the DLP sensors.
    Dlp(dlp_cmd::Args),
    /// Export recorded flows (flow log or admin API) for a time range.
    Flows(flows_cmd::Args),
    /// Move a workload between learn, monitor and protect (a new policy version).
    Mode(mode_cmd::Args),
    /// Per-workload health from the cluster: mode, policy version per pod, violations.
    Status(status_cmd::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Policy(a) => policy_cmd::run(a),
        Command::Baseline(a) => baseline_cmd::run(a),
        Command::Waf(a) => waf_cmd::run(a),
        Command::Dlp(a) => dlp_cmd::run(a),
        Command::Flows(a) => flows_cmd::run(a),
        Command::Mode(a) => mode_cmd::run(a),
        Command::Status(a) => status_cmd::run(a),
    };
    // Exit 2 on error across verbs: 0 and 1 carry meaning (clean / found).
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podwarden: error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}
