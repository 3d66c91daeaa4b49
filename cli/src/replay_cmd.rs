//! `podwarden policy replay | unused`, and `policy explain --event`: a
//! candidate policy judged on recorded traffic with the proxy's own compiled
//! decision code (no second implementation).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use podwarden_learner::evidence::rfc3339_ms;
use podwarden_learner::replay::Replay;
use podwarden_policy::{
    load_policy_file, AppProtocol, CompiledPolicy, Direction, Flow, HttpRequestInfo, ProcessInfo,
    SecurityEvent,
};

use crate::flows_cmd::{read_flows, time_range};

pub mod cluster;
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
use crate::cluster::fake;

fn compile(policy: &Path) -> Result<(podwarden_policy::PolicyDocument, CompiledPolicy)> {
    let doc = load_policy_file(policy)?;
    let compiled = CompiledPolicy::compile(&doc)?;
    Ok((doc, compiled))
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The candidate policy file.
    #[arg(long)]
    policy: PathBuf,
    /// Recorded flows: a flow-log directory, a segment, or JSON lines / a
    /// JSON array of flow records (`flows export`, `/flows`).
    #[arg(long, required_unless_present_any = ["cluster", "context"])]
    flows: Option<PathBuf>,
    /// Only flows since (unix ms, RFC 3339, or a duration ago like 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only flows until (as --since).
    #[arg(long)]
    until: Option<String>,
    /// The full report as JSON.
    #[arg(long)]
    json: bool,
    /// With --cluster: the workload (`namespace/name` or
    /// `namespace/Kind/name`) whose aggregated `WorkloadBaseline` (every
    /// learned entry with its count and first/last seen) is replayed.
    #[arg(long, value_name = "NS/NAME")]
    workload: Option<String>,
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
}

/// Exit 1 when any recorded flow would be denied, 0 when none.
pub fn replay(a: ReplayArgs) -> Result<i32> {
    let (_, policy) = compile(&a.policy)?;
    if a.cluster.enabled() {
        if a.flows.is_some() || a.since.is_some() || a.until.is_some() {
            bail!("--cluster replays the workload's aggregated baseline; --flows, --since and --until are for recorded flows");
        }
        let t = crate::cluster::Target::from_flag(a.workload.as_deref())?;
        return crate::cluster::block_on(async {
            let client = crate::cluster::connect(&a.cluster).await?;
            cluster::replay(client, &t, &policy, a.json, &mut std::io::stdout()).await
        });
    }
    let flows = a.flows.context("--flows is required (or --cluster)")?;
    let range = time_range(a.since.as_deref(), a.until.as_deref())?;
    let mut r = Replay::new();
    read_flows(&flows, range, |rec| r.replay(&policy, &rec))?;
    let report = r.finish(Some(&policy));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(if report.any_denied() { 1 } else { 0 })
}

#[derive(clap::Args)]
pub struct UnusedArgs {
    /// The policy file (local mode; with --cluster the workload's
    /// `WorkloadPolicy` is read instead).
    #[arg(long, required_unless_present_any = ["cluster", "context"])]
    policy: Option<PathBuf>,
    /// Recorded flows, as for `replay` (local mode).
    #[arg(long, required_unless_present_any = ["cluster", "context"])]
    flows: Option<PathBuf>,
    /// The period that counts (unix ms, RFC 3339, or a duration ago).
    #[arg(long, default_value = "30d")]
    since: String,
    #[arg(long)]
    json: bool,
    /// With --cluster: the workload whose `WorkloadPolicy` status
    /// (`ruleUsage`, summed by the operator over the pods) is read.
    #[arg(long, value_name = "NS/NAME")]
    workload: Option<String>,
    #[command(flatten)]
    cluster: crate::cluster::ClusterArgs,
}

/// Rules that allowed no recorded flow since `--since` (first match wins,
/// as in the proxy, so a rule shadowed by an earlier one is unused too).
/// Exit 1 when some rule is unused, 0 when every rule was used.
pub fn unused(a: UnusedArgs) -> Result<i32> {
    let range = time_range(Some(&a.since), None)?;
    if a.cluster.enabled() {
        if a.policy.is_some() || a.flows.is_some() {
            bail!("--cluster reads the workload's WorkloadPolicy and its rule usage; --policy and --flows are for local mode");
        }
        let t = crate::cluster::Target::from_flag(a.workload.as_deref())?;
        let since_ms = range.since.unwrap_or(0);
        return crate::cluster::block_on(async {
            let client = crate::cluster::connect(&a.cluster).await?;
            cluster::unused(
                client,
                &t,
                since_ms,
                &a.since,
                a.json,
                &mut std::io::stdout(),
            )
            .await
        });
    }
    let (Some(policy_file), Some(flows)) = (&a.policy, &a.flows) else {
        bail!("--policy and --flows are required (or --cluster --workload NS/NAME)");
    };
    let (doc, policy) = compile(policy_file)?;
    let mut r = Replay::new();
    read_flows(flows, range, |rec| r.replay(&policy, &rec))?;
    let records = r.records();
    let report = r.finish(None);
    let ids: Vec<&str> = doc.spec.rules.iter().map(|r| r.id.as_str()).collect();
    let unused = report.unused(ids.iter().copied());
    if a.json {
        let used: BTreeMap<&str, serde_json::Value> = report
            .rule_use()
            .into_iter()
            .map(|(k, u)| {
                (
                    k,
                    serde_json::json!({"hits": u.hits, "lastHit": rfc3339_ms(u.last_ms)}),
                )
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "records": records,
                "since": a.since,
                "unused": unused,
                "used": used,
            }))?
        );
    } else {
        println!(
            "{} of {} rules allowed none of the {records} recorded flows since {}",
            unused.len(),
            ids.len(),
            a.since
        );
        for id in &unused {
            println!("unused: {id}");
        }
    }
    Ok(if unused.is_empty() { 0 } else { 1 })
}

/// The event with `id` in a file of event JSON lines (other lines skipped).
pub fn find_event(events: &Path, id: &str) -> Result<SecurityEvent> {
    let f = std::fs::File::open(events).with_context(|| format!("{}", events.display()))?;
    for line in BufReader::new(f).lines() {
        let line = line.with_context(|| format!("reading {}", events.display()))?;
        let line = line.trim();
        if !line.starts_with('{') || !line.contains(id) {
            continue;
        }
        if let Ok(ev) = serde_json::from_str::<SecurityEvent>(line) {
            if ev.id == id {
                return Ok(ev);
            }
        }
    }
    bail!("no event with id {id} in {}", events.display())
}

/// The flow an event describes, rebuilt from its fields (query strings and
/// secrets in it are masked, which only matters for path rules that look
/// at them: none do).
pub fn flow_of_event(ev: &SecurityEvent) -> Result<Flow> {
    let direction = ev
        .direction
        .with_context(|| format!("event {} ({}) is not about a flow", ev.id, ev.kind.name()))?;
    let peer = ev.peer.context("the event has no peer address")?;
    let d = &ev.details;
    let local: SocketAddr = match d.get("local").and_then(|l| l.parse().ok()) {
        Some(l) => l,
        None => {
            if direction == Direction::Inbound {
                eprintln!(
                    "podwarden: warning: event {} does not record the local port; pass --flows to explain an inbound event exactly",
                    ev.id
                );
            }
            SocketAddr::new(peer.ip(), 0)
        }
    };
    let protocol = match d.get("protocol").map(String::as_str) {
        Some("http") => AppProtocol::Http,
        Some("http2") => AppProtocol::Http2,
        Some("tls") => AppProtocol::Tls,
        Some("dns") => AppProtocol::Dns,
        _ => AppProtocol::Opaque,
    };
    let mut flow = Flow::connection(direction, peer, local);
    flow.protocol = protocol;
    flow.sni = d.get("sni").cloned();
    flow.peer_names = ev.names.clone();
    flow.process = ev.process.as_ref().map(|exe| ProcessInfo {
        pid: d.get("pid").and_then(|p| p.parse().ok()).unwrap_or(0),
        exe: exe.clone(),
        cmdline: Vec::new(),
        uid: d.get("uid").and_then(|p| p.parse().ok()).unwrap_or(0),
    });
    if let Some(method) = d.get("method") {
        let path = d.get("path").cloned().unwrap_or_else(|| "/".into());
        flow.http = Some(HttpRequestInfo {
            method: method.clone(),
            host: d.get("host").cloned(),
            path: path.split('?').next().unwrap_or("/").to_string(),
            target: d.get("target").cloned(),
        });
    }
    Ok(flow)
}

/// The flow for event `id`: the flow record with the same id when `flows`
/// holds it (exact), else rebuilt from the event.
pub fn event_flow(events: &Path, id: &str, flows: Option<&Path>) -> Result<(SecurityEvent, Flow)> {
    let ev = find_event(events, id)?;
    if let Some(path) = flows {
        let mut found = None;
        read_flows(path, Default::default(), |rec| {
            if found.is_none() && rec.id == id {
                found = Some(rec.flow);
            }
        })?;
        if let Some(f) = found {
            return Ok((ev, f));
        }
        eprintln!(
            "podwarden: warning: no flow record {id} in {}; explaining from the event's fields",
            path.display()
        );
    }
    let flow = flow_of_event(&ev)?;
    Ok((ev, flow))
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::{Decision, FlowRecord, Mode, RecordKind};

    #[test]
    fn event_roundtrips_to_the_same_decision_inputs() {
        let mut flow = Flow::connection(
            Direction::Inbound,
            "192.0.2.74:50000".parse().unwrap(),
            "192.0.2.10:8080".parse().unwrap(),
        );
        flow.protocol = AppProtocol::Http;
        flow.http = Some(HttpRequestInfo {
            method: "POST".into(),
            host: Some("web".into()),
            path: "/admin".into(),
            target: None,
        });
        let rec = FlowRecord {
            id: "e1".into(),
            start_ms: 1,
            duration_ms: 1,
            flow: flow.clone(),
            bytes_sent: 0,
            bytes_received: 0,
            decision: Decision::new(Mode::Protect, None),
            kind: RecordKind::Request,
            status: Some(403),
        };
        let ev = SecurityEvent::from_record(&rec, "w/x", "p").unwrap();
        assert_eq!(ev.rule, "default deny");
        let back = flow_of_event(&ev).unwrap();
        assert_eq!(back.service_port(), 8080);
        assert_eq!(back, flow);
    }
}
