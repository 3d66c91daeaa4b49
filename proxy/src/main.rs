use anyhow::Context;
use clap::{Parser, Subcommand};
use podwarden_proxy::config::RunArgs;
use podwarden_proxy::Proxy;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "podwarden-proxy",
    version,
    about = "podwarden transparent proxy sidecar"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write the pod's interception rules in the current network namespace.
    Init(podwarden_proxy::init::InitArgs),
    /// Run the proxy: outbound and inbound listeners plus the admin server.
    Run(RunArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Init(a) => podwarden_proxy::init::run(a),
        Command::Run(a) => run(a),
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PODWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = args.load()?;
    let workers = config.worker_threads;
    let fixed = config.fixed_dst;
    let mut builder = Proxy::builder(config);
    if let Some(dst) = fixed {
        tracing::warn!(%dst, "--fixed-dst: every connection goes to one address (testing only)");
        builder = builder.original_dst(std::sync::Arc::new(
            podwarden_proxy::orig_dst::FixedOriginalDst(dst),
        ));
    }
    let proxy = builder.build()?;
    let admin = podwarden_proxy::admin::spawn(proxy.shared().clone())
        .context("starting the admin server")?;
    tracing::info!(admin = %admin.addr, "podwarden-proxy starting");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("podwarden-worker")
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(async move {
        let _running = proxy.start().await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        anyhow::Ok(())
    })
}
