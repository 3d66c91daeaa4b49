use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "podwarden-proxy", version, about = "podwarden transparent proxy sidecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the pod's interception rules in the current network namespace.
    Init(podwarden_proxy::init::InitArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Init(a) => podwarden_proxy::init::run(a),
    }
}
