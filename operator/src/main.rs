use std::net::{Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use podwarden_operator::config::OperatorConfig;
use podwarden_operator::controller::reconcile::now_rfc3339;
use podwarden_operator::controller::{Controller, SidecarClient};
use podwarden_operator::leader::{while_leading, LeaderElector};
use podwarden_operator::tls::{self, TlsMaterial};
use podwarden_operator::webhook::{serve_health, serve_webhook, ApiNamespaces, CertStore};

#[derive(Parser)]
#[command(
    name = "podwarden-operator",
    version,
    about = "podwarden operator: webhook and controllers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
    /// Validate a configuration file and print it with defaults filled in.
    CheckConfig { path: String },
    /// Compliance report from the cluster (kubeconfig) or a snapshot file.
    Compliance {
        /// table, json or html.
        #[arg(long, default_value = "table")]
        format: String,
        /// Approvals older than this do not count as reviewed.
        #[arg(long, default_value_t = 90)]
        max_age_days: u32,
        /// Read a ClusterSnapshot (JSON) instead of the cluster.
        #[arg(long)]
        snapshot: Option<String>,
        /// Whether sidecars export events to an external sink (cluster mode).
        #[arg(long)]
        events_exported: bool,
    },
    /// Push an approved policy (a WorkloadPolicy CR as YAML, e.g. from
    /// `kubectl get pwpolicy NAME -o yaml`) to sidecars' admin APIs with the
    /// controller's own distribution code, without a cluster: for
    /// break-glass pushes and end-to-end tests. Prints the status the
    /// controller would record; exit 1 unless every pod runs the version.
    Push {
        /// The WorkloadPolicy CR (YAML or JSON).
        #[arg(long)]
        policy: String,
        /// A sidecar's admin address (repeatable), e.g. 10.1.2.3:15000.
        #[arg(long = "admin", required = true)]
        admins: Vec<SocketAddr>,
        /// File holding the admin bearer token.
        #[arg(long)]
        token_file: String,
        #[arg(long, default_value_t = 5)]
        timeout_seconds: u64,
    },
    /// Run the webhook server and the controller.
    Run {
        #[arg(long, default_value = "/etc/podwarden/config.yaml")]
        config: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => {
            print!("{}", podwarden_operator::crd::crds_yaml()?);
            Ok(())
        }
        Command::CheckConfig { path } => {
            let cfg = OperatorConfig::load(&path)?;
            print!("{}", serde_yaml_ng::to_string(&cfg)?);
            Ok(())
        }
        Command::Compliance {
            format,
            max_age_days,
            snapshot,
            events_exported,
        } => {
            let snap = match snapshot {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {path}"))?;
                    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?
                }
                None => {
                    tokio::runtime::Runtime::new()?.block_on(cluster_snapshot(events_exported))?
                }
            };
            let report = podwarden_operator::compliance::evaluate(&snap, max_age_days);
            match format.as_str() {
                "table" => print!("{}", podwarden_operator::compliance::table(&report)),
                "json" => println!("{}", serde_json::to_string_pretty(&report)?),
                "html" => print!("{}", podwarden_operator::compliance::html(&report)),
                other => anyhow::bail!("unknown format {other:?}: expected table, json or html"),
            }
            Ok(())
        }
        Command::Push {
            policy,
            admins,
            token_file,
            timeout_seconds,
        } => {
            let code = tokio::runtime::Runtime::new()?.block_on(push(
                &policy,
                &admins,
                &token_file,
                Duration::from_secs(timeout_seconds),
            ))?;
            std::process::exit(code)
        }
        Command::Run { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .json()
                .init();
            let cfg = OperatorConfig::load(&config)?;
            tokio::runtime::Runtime::new()?.block_on(run(cfg))
        }
    }
}

async fn cluster_snapshot(
    events_exported: bool,
) -> anyhow::Result<podwarden_operator::compliance::ClusterSnapshot> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ListParams;
    use podwarden_operator::crd::WorkloadPolicy;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let lp = ListParams::default();
    let ns = Api::<Namespace>::all(client.clone()).list(&lp).await?.items;
    let pods = Api::<Pod>::all(client.clone()).list(&lp).await?.items;
    let policies = Api::<WorkloadPolicy>::all(client).list(&lp).await?.items;
    let now = podwarden_operator::controller::reconcile::now_rfc3339();
    Ok(podwarden_operator::compliance::snapshot_from_objects(
        &ns,
        &pods,
        &policies,
        events_exported,
        &now,
    ))
}

async fn push(
    policy: &str,
    admins: &[SocketAddr],
    token_file: &str,
    timeout: Duration,
) -> anyhow::Result<i32> {
    use podwarden_operator::controller::{policy_status_of, sync_pods, InjectedPod};
    use podwarden_operator::crd::WorkloadPolicy;
    let text = std::fs::read_to_string(policy).with_context(|| format!("reading {policy}"))?;
    let cr: WorkloadPolicy = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{policy}: not a WorkloadPolicy"))?;
    let namespace = cr
        .metadata
        .namespace
        .clone()
        .with_context(|| format!("{policy}: metadata.namespace is missing"))?;
    let token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading {token_file}"))?
        .trim()
        .to_string();
    let workload = cr.spec.workload.in_namespace(&namespace);
    let pods: Vec<InjectedPod> = admins
        .iter()
        .map(|a| InjectedPod {
            name: a.to_string(),
            workload: workload.clone(),
            admin: *a,
        })
        .collect();
    let states = sync_pods(&SidecarClient::new(token, timeout), &cr, &pods).await;
    let status = policy_status_of(&cr, states);
    println!("{}", serde_json::to_string_pretty(&status)?);
    let all = status
        .pods
        .iter()
        .all(|p| p.version == cr.spec.version && p.error.is_none());
    Ok(if all { 0 } else { 1 })
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn run(mut cfg: OperatorConfig) -> anyhow::Result<()> {
    let token = std::fs::read_to_string(&cfg.controller.admin_token_file)
        .with_context(|| format!("reading admin token {}", cfg.controller.admin_token_file))?;
    let token = token.trim().to_string();
    anyhow::ensure!(
        token.len() >= 32,
        "admin token is shorter than 32 characters"
    );
    cfg.inject.admin_token_sha256 = Some(sha256_hex(token.as_bytes()));

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let namespace = cfg.inject.operator_namespace.clone();
    let certs = CertStore::new();
    let ready = Arc::new(AtomicBool::new(false));

    let health =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, cfg.metrics_port)))
            .await?;
    tokio::spawn(serve_health(health, ready.clone()));

    // TLS first: the webhook must not accept connections it cannot serve.
    {
        let (client, certs, ready, w) = (
            client.clone(),
            certs.clone(),
            ready.clone(),
            cfg.webhook.clone(),
        );
        let ns = namespace.clone();
        tokio::spawn(async move {
            loop {
                let r = if w.cert_manager {
                    load_mounted(&w.tls_dir, &certs)
                } else {
                    ensure_generated(&client, &ns, &w, &certs).await
                };
                match r {
                    Ok(()) => ready.store(certs.is_loaded(), Ordering::Relaxed),
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "webhook TLS"),
                }
                let wait = if certs.is_loaded() { 600 } else { 5 };
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
        });
    }

    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, cfg.webhook.port)))
            .await?;
    let ns_api = Arc::new(ApiNamespaces(Api::<Namespace>::all(client.clone())));
    tokio::spawn(serve_webhook(
        listener,
        certs,
        ns_api,
        Arc::new(cfg.inject.clone()),
    ));

    let controller = Controller::new(
        client.clone(),
        SidecarClient::new(token, Duration::from_secs(5)),
        cfg.inject.admin_port,
    );
    let interval = Duration::from_secs(cfg.controller.sync_interval_seconds);
    let election = cfg.controller.leader_election.clone();
    // Without election this replica always leads (the sender lives until exit).
    let (leading_tx, leading) = tokio::sync::watch::channel(!election.enabled);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut always_leading = None;
    let elector = if election.enabled {
        let identity = replica_identity();
        tracing::info!(%identity, lease = %election.lease_name, "leader election on");
        let elector = LeaderElector::new(client, &namespace, identity, &election);
        Some(tokio::spawn(elector.run(leading_tx, async {
            let _ = stop_rx.await;
        })))
    } else {
        drop(stop_rx);
        always_leading = Some(leading_tx);
        None
    };
    tracing::info!("podwarden operator running");
    let c = &controller;
    tokio::select! {
        _ = while_leading(leading, interval, move || async move {
            if let Err(e) = c.run_once(&now_rfc3339()).await {
                tracing::warn!(error = %e, "controller pass failed");
            }
        }) => {}
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    // The controller pass is dropped above; now hand the lease over.
    let _ = stop_tx.send(());
    if let Some(task) = elector {
        let _ = task.await;
    }
    drop(always_leading);
    Ok(())
}

/// This replica's name in the Lease: the pod name (downward API), else the
/// host name, else the process id.
fn replica_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| format!("podwarden-operator-{}", std::process::id()))
}

/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn load_mounted(dir: &str, certs: &CertStore) -> anyhow::Result<()> {
    let crt = std::fs::read_to_string(format!("{dir}/tls.crt")).context("reading tls.crt")?;
    let key = std::fs::read_to_string(format!("{dir}/tls.key")).context("reading tls.key")?;
    certs.set(tls::certified_key(&crt, &key)?);
    Ok(())
}

/// Reads the shared Secret, generates or rotates it when needed (one
/// replica wins the write; the others re-read), serves it, and makes sure
/// the webhook configuration's caBundle matches.
async fn ensure_generated(
    client: &kube::Client,
    namespace: &str,
    w: &podwarden_operator::config::WebhookConfig,
    certs: &CertStore,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let now = time::OffsetDateTime::now_utc();
    let existing = secrets.get_opt(&w.tls_secret).await?;
    let current: Option<TlsMaterial> = existing.as_ref().and_then(|s| {
        let data = s.data.clone().unwrap_or_default();
        tls::from_secret_data(&data.into_iter().map(|(k, v)| (k, v.0)).collect()).ok()
    });
    let material = match current {
        Some(m) if !tls::needs_rotation(&m, now, w.validity_days) => m,
        previous => {
            let m = tls::generate(
                &w.service_name,
                namespace,
                now,
                w.validity_days,
                previous.as_ref(),
            )?;
            let data = tls::to_secret_data(&m)
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect();
            let pp = PostParams::default();
            let written = match existing {
                None => {
                    let s = Secret {
                        metadata: ObjectMeta {
                            name: Some(w.tls_secret.clone()),
                            ..Default::default()
                        },
                        data: Some(data),
                        type_: Some("Opaque".into()),
                        ..Default::default()
                    };
                    secrets.create(&pp, &s).await
                }
                Some(mut s) => {
                    s.data = Some(data);
                    secrets.replace(&w.tls_secret, &pp, &s).await
                }
            };
            match written {
                Ok(_) => {
                    tracing::info!(not_after = %m.not_after, "generated webhook certificate");
                    m
                }
                // Another replica rotated first: use theirs next round.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    anyhow::bail!("TLS secret changed concurrently; retrying")
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    certs.set(tls::certified_key(&material.cert_pem, &material.key_pem)?);
    let hooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let mwc = hooks.get(&w.configuration_name).await?;
    let want = tls::ca_bundle(&material);
    let webhooks = mwc.webhooks.unwrap_or_default();
    let stale = webhooks.iter().any(|h| {
        h.client_config.ca_bundle.as_ref().map(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(&b.0)
        }) != Some(want.clone())
    });
    if stale {
        let patch: json_patch::Patch =
            serde_json::from_value(tls::ca_bundle_patch(&material, webhooks.len()))?;
        hooks
            .patch(
                &w.configuration_name,
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await?;
        tracing::info!(webhook = %w.configuration_name, "caBundle updated");
    }
    Ok(())
}
