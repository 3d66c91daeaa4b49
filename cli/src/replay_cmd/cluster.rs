//! `policy replay --cluster` and `policy unused --cluster`: the same
//! verdicts on what the operator aggregated. Replay judges the candidate
//! policy on the workload's `WorkloadBaseline` (every learned entry, with its
//! count and first/last seen, from all replicas); unused reads the rule usage
//! the controller keeps in the `WorkloadPolicy` status.

use std::io::Write;

use anyhow::{Context, Result};
use kube::api::Api;
use podwarden_learner::evidence::parse_rfc3339;
use podwarden_learner::replay_baseline::replay_baseline;
use podwarden_operator::crd::{WorkloadBaseline, WorkloadPolicy};
use podwarden_policy::CompiledPolicy;

use crate::cluster::target::resolve;
use crate::cluster::Target;

/// Exit 1 when any aggregated flow would be denied, 0 when none.
pub async fn replay(
    client: kube::Client,
    t: &Target,
    policy: &CompiledPolicy,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadBaseline>(&client, t).await?;
    let api: Api<WorkloadBaseline> = Api::namespaced(client, &t.namespace);
    let baseline = api
        .get(&name)
        .await
        .with_context(|| format!("reading WorkloadBaseline {}/{name}", t.namespace))?;
    let report = replay_baseline(policy, &baseline.spec.policy);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "replayed on WorkloadBaseline {}/{name} ({} learned entries)",
            t.namespace,
            baseline.spec.policy.rules.len()
        )?;
        write!(out, "{}", report.render_text())?;
    }
    Ok(if report.any_denied() { 1 } else { 0 })
}

/// Rules of the workload's policy with no recorded hit at or after
/// `since_ms` (unix ms) in `status.ruleUsage`. Exit 1 when some rule is
/// unused, 0 when every rule was used.
pub async fn unused(
    client: kube::Client,
    t: &Target,
    since_ms: u64,
    since_text: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadPolicy>(&client, t).await?;
    let api: Api<WorkloadPolicy> = Api::namespaced(client, &t.namespace);
    let p = api
        .get(&name)
        .await
        .with_context(|| format!("reading WorkloadPolicy {}/{name}", t.namespace))?;
    let usage = p.status.map(|s| s.rule_usage).unwrap_or_default();
    let since_ns = i128::from(since_ms) * 1_000_000;
    let mut unused = Vec::new();
    let mut used = Vec::new();
    for rule in &p.spec.policy.rules {
        let u = usage.iter().find(|u| u.rule == rule.id);
        let last = u.and_then(|u| u.last_hit.as_deref());
        match last.and_then(parse_rfc3339) {
            Some(ns) if ns >= since_ns => used.push((rule.id.as_str(), u)),
            _ => unused.push((rule.id.as_str(), last)),
        }
    }
    if json {
        let unused_ids: Vec<&str> = unused.iter().map(|(id, _)| *id).collect();
        let used: serde_json::Map<String, serde_json::Value> = used
            .iter()
            .filter_map(|(id, u)| {
                let u = (*u)?;
                Some((
                    id.to_string(),
                    serde_json::json!({"hits": u.hits, "lastHit": u.last_hit}),
                ))
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "policy": format!("{}/{name}", t.namespace),
                "version": p.spec.version,
                "since": since_text,
                "unused": unused_ids,
                "used": used,
            }))?
        )?;
    } else {
        writeln!(
            out,
            "{} of {} rules of WorkloadPolicy {}/{name} (version {}) have no hit since {since_text} (status.ruleUsage)",
            unused.len(),
            p.spec.policy.rules.len(),
            t.namespace,
            p.spec.version
        )?;
        for (id, last) in &unused {
            match last {
                Some(l) => writeln!(out, "unused: {id} (last hit {l})")?,
                None => writeln!(out, "unused: {id} (no hit recorded)")?,
            }
        }
    }
    Ok(if unused.is_empty() { 0 } else { 1 })
}
