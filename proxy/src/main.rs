use anyhow::Context;
use clap::{Parser, Subcommand};
use podwarden_learner::process::ProcfsResolver;
use podwarden_proxy::admin::control::AdminControl;
use podwarden_proxy::config::RunArgs;
use podwarden_proxy::events::{EventBus, EventMetrics, Origin};
use podwarden_proxy::learning::{Learning, RecordConsumer};
use podwarden_proxy::policy_reload::{PolicyReloader, ReloadMetrics, ReloadOutcome};
use podwarden_proxy::Proxy;
use tracing_subscriber::EnvFilter;

// Every relayed HTTP request allocates and frees a few dozen small objects
// (hyper's header maps and buffers, the flow record); glibc's malloc/free
// were ~13% of the proxy's instructions per request. mimalloc's thread-local
// free lists serve them in a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    // Boxed: RunArgs is much larger than the other variants (clippy).
    Run(Box<RunArgs>),
    /// Wait until the proxy's admin /ready answers 200 (exit 0) or the
    /// timeout passes (exit 1); the sidecar's postStart hook.
    WaitReady(podwarden_proxy::admin::wait_ready::WaitReadyArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Init(a) => podwarden_proxy::init::run(a),
        Command::Run(a) => run(*a),
        Command::WaitReady(a) => std::process::exit(podwarden_proxy::admin::wait_ready::run(a)),
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
    // First, while this is the only thread: loading the kernel relay needs
    // CAP_BPF + CAP_NET_ADMIN, which `start` then drops (per thread).
    podwarden_proxy::sockmap::start(config.opaque_offload)
        .context("loading the sockmap opaque relay (--opaque-offload)")?;
    let control = std::sync::Arc::new(AdminControl::from_config(&config));
    let startup = config.clone();
    let workers = config.worker_threads;
    let fixed = config.fixed_dst;
    let policy_file = config.policy_file.clone();
    let waf_rules_dir = config.waf_rules_dir.clone();
    let (workload, pod) = (config.workload.clone(), config.pod.clone());
    let dns_port = config.dns_port;
    let (pod_resolvers, dns_search) = pod_resolv_conf();
    let dns_upstreams = if config.dns_upstreams.is_empty() {
        pod_resolvers
    } else {
        config.dns_upstreams.clone()
    };
    let mut builder = Proxy::builder(config);
    if let Some(dst) = fixed {
        tracing::warn!(%dst, "--fixed-dst: every connection goes to one address (testing only)");
        builder = builder.original_dst(std::sync::Arc::new(
            podwarden_proxy::orig_dst::FixedOriginalDst(dst),
        ));
    }
    let proxy = builder.build()?;
    podwarden_proxy::sockmap::register(proxy.registry())
        .context("registering the opaque relay metrics")?;
    // Every flow record also goes to the on-disk flow log (off the data path).
    podwarden_proxy::flowlog::start_configured(proxy.shared()).context("starting the flow log")?;
    // Which process owns each connection (needs the pod's /proc; see README).
    proxy
        .shared()
        .process
        .install(std::sync::Arc::new(ProcfsResolver::new()));
    let admin = podwarden_proxy::admin::spawn_with(proxy.shared().clone(), control.clone())
        .context("starting the admin server")?;
    tracing::info!(admin = %admin.addr, "podwarden-proxy starting");
    let rt = data_path_runtime(workers).context("building the runtime")?;
    rt.block_on(async move {
        // Always a policy: the file, else the last pushed one, else the
        // start-up modes; `PUT /policy` replaces it without a restart.
        let policy = Some(start_policy(
            &proxy,
            policy_file,
            &workload,
            &pod,
            waf_rules_dir,
            &control,
            &startup,
        )?);
        let shared = proxy.shared().clone();
        // Before the listeners accept: FQDN rules need what the pod resolved.
        podwarden_proxy::dns::persist_names(
            shared.clone(),
            startup.state_dir.join("dns-names.json"),
        );
        let _running = proxy.start().await?;
        if dns_port != 0 {
            start_dns(shared, dns_port, dns_upstreams, dns_search, policy.clone()).await?;
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for ctrl-c")?,
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        control.flush_learning();
        anyhow::Ok(())
    })
}

/// The data path's runtime. One worker is a current-thread runtime on this
/// thread: every wake-up between a connection's tasks (hyper's upstream
/// connection task, the record consumer) stays on one thread, with no
/// work-stealing queues, no parking of a second worker and no cross-thread
/// futex/eventfd wake-ups: about half the context switches per request of
/// two workers, and no more CPU per request, on a sidecar's one or two CPUs
/// shared with the app (benches/RESULTS.md). Blocking work still goes to
/// tokio's blocking pool in both cases.
fn data_path_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("podwarden-worker")
            .enable_all()
            .build()
    }
}

/// Loads the policy before any listener is bound and keeps it current.
///
/// A configured policy that cannot be loaded at start stops the proxy
/// (fail closed: the interception rules stay in place, so the pod's traffic
/// is refused rather than let through unjudged). Later invalid files keep the
/// last good policy (see `policy_reload`). Security events go to stdout as
/// JSON lines; logs go to stderr.
fn start_policy(
    proxy: &Proxy,
    path: Option<std::path::PathBuf>,
    workload: &str,
    pod: &str,
    waf_rules_dir: std::path::PathBuf,
    control: &std::sync::Arc<AdminControl>,
    startup: &podwarden_proxy::config::Config,
) -> anyhow::Result<std::sync::Arc<PolicyReloader>> {
    let registry = proxy.registry();
    let (bus, _) = EventBus::start(
        podwarden_proxy::events::load_sinks(startup.event_sinks_file.as_deref())?,
        4096,
        Origin {
            workload: workload.to_string(),
            pod: pod.to_string(),
            mode: Default::default(),
        },
        EventMetrics::new(registry).context("registering event metrics")?,
    );
    let from_file = path.is_some();
    let reloader = std::sync::Arc::new(PolicyReloader::new(
        path.unwrap_or_else(|| startup.state_dir.join("policy.json")),
        proxy.hook().clone(),
        ReloadMetrics::new(registry).context("registering reload metrics")?,
        Some(bus.clone()),
        workload,
        pod,
    ));
    // WAF and DLP inspectors are built with each policy (refused with it).
    reloader.set_l7(
        podwarden_proxy::l7::L7Builder::new(
            podwarden_proxy::l7::L7Options { waf_rules_dir },
            podwarden_proxy::l7::Reporter::new(
                Some(bus.clone()),
                workload,
                pod,
                podwarden_proxy::l7::L7Metrics::new(registry)
                    .context("registering WAF/DLP metrics")?,
            ),
        ),
        proxy.inspectors().clone(),
    );
    control.set_reloader(reloader.clone());
    let outcome = if from_file {
        reloader.reload_now()
    } else {
        control
            .restore_or_start(startup)
            .unwrap_or_else(|error| ReloadOutcome::Rejected { error })
    };
    match outcome {
        ReloadOutcome::Rejected { error } => {
            anyhow::bail!("refusing to start without a valid policy: {error}")
        }
        ReloadOutcome::Applied {
            version,
            rules,
            mode,
        } => {
            tracing::info!(version, rules, mode = mode.as_str(), "policy loaded")
        }
        ReloadOutcome::Unchanged => {}
    }
    if from_file {
        reloader
            .clone()
            .spawn(std::time::Duration::from_secs(2))
            .context("starting the policy reloader")?;
    }
    // Every record: learning (all modes), violation/would-block and
    // new-executable events, the violation count of /status.
    let learning = match Learning::open(&startup.state_dir, workload, pod) {
        Ok(l) => {
            let l = std::sync::Arc::new(l);
            control.set_learning(l.clone());
            Some(l)
        }
        Err(e) => {
            tracing::error!(error = %e, dir = %startup.state_dir.display(), "learning not started");
            None
        }
    };
    // The per-connection process lookup only when its answer is used.
    proxy
        .shared()
        .process
        .only_when(podwarden_proxy::process::needed_by(
            reloader.watch(),
            learning.is_some(),
        ));
    if let Some(l) = &learning {
        let control = control.clone();
        podwarden_proxy::learning::spawn_exe_watcher(
            l.clone(),
            Some(bus.clone()),
            workload.to_string(),
            pod.to_string(),
            move || control.status().mode,
            std::time::Duration::from_secs(5),
        );
    }
    RecordConsumer {
        learning,
        events: Some(bus),
        violations: control.violations().clone(),
        workload: workload.to_string(),
        pod: pod.to_string(),
    }
    .spawn(
        proxy.flows().subscribe(4096),
        std::time::Duration::from_secs(5),
    );
    Ok(reloader)
}

/// The DNS listener answers on loopback only: `init` REDIRECTs the app's
/// queries to 127.0.0.1/::1, and a reply must leave from that address for
/// conntrack to undo the redirect (a wildcard bind would answer from the pod
/// IP and the app would drop it).
async fn start_dns(
    shared: std::sync::Arc<podwarden_proxy::Shared>,
    port: u16,
    upstreams: Vec<std::net::SocketAddr>,
    search: Vec<String>,
    policy: Option<std::sync::Arc<PolicyReloader>>,
) -> anyhow::Result<()> {
    if upstreams.is_empty() {
        // Redirected queries then find no listener and fail: closed, not open.
        tracing::warn!(
            "no DNS upstream (pass --dns-upstream or list a nameserver in /etc/resolv.conf): DNS listener not started"
        );
        return Ok(());
    }
    let v4 = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
    podwarden_proxy::dns::start_with_policy(
        shared.clone(),
        v4,
        upstreams.clone(),
        search.clone(),
        policy.clone(),
    )
    .await
    .with_context(|| format!("binding the DNS listener on {v4}"))?;
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    if let Err(e) = podwarden_proxy::dns::start_with_policy(
        shared,
        v6,
        upstreams.clone(),
        search.clone(),
        policy,
    )
    .await
    {
        // Pods without IPv6 have no ::1; IPv4 DNS still works.
        tracing::warn!(error = %e, "DNS listener on [::1] not started");
    }
    tracing::info!(port, ?upstreams, ?search, "DNS listener on loopback");
    Ok(())
}

/// The pod's resolv.conf: its resolvers (the proxy's UID is exempt from
/// the redirect, so it reaches the real servers the app was configured
/// with) and its search list. Unreadable: none of either.
fn pod_resolv_conf() -> (Vec<std::net::SocketAddr>, Vec<String>) {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let servers = podwarden_proxy::config::resolv_conf_nameservers(&text)
        .into_iter()
        .filter(|s| !s.ip().is_loopback())
        .collect();
    (servers, podwarden_proxy::config::resolv_conf_search(&text))
}
