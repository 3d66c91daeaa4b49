//! `podwarden status` and `podwarden mode set` on the cluster: per-workload
//! health from the CRs' status (what the controller last saw on each pod),
//! and mode changes as new policy versions.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use kube::api::{Api, ListParams};
use podwarden_operator::controller::Review;
use podwarden_operator::crd::{WorkloadBaseline, WorkloadPolicy};
use podwarden_policy::model::Feature;
use podwarden_policy::Mode;
use serde::Serialize;

use super::target::{resolve, Target};
use super::FIELD_MANAGER;

/// One workload's health as `status --json` prints it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadHealth {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// `None`: nothing approved yet (the sidecars learn).
    pub policy_version: Option<u64>,
    pub mode: Option<Mode>,
    pub waf_mode: Option<Mode>,
    pub dlp_mode: Option<Mode>,
    pub approved_by: Option<String>,
    pub in_sync: String,
    pub violations_last_hour: u64,
    pub baseline_rules: Option<u32>,
    pub pods: Vec<PodHealth>,
    /// Some pod runs another version than the approved one, or errs.
    pub degraded: bool,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodHealth {
    pub pod: String,
    pub policy_version: u64,
    pub mode: Option<Mode>,
    pub violations_last_hour: u64,
    pub error: Option<String>,
}

/// Joins policies and baselines by CR name (pure).
pub fn health(policies: &[WorkloadPolicy], baselines: &[WorkloadBaseline]) -> Vec<WorkloadHealth> {
    let key = |ns: &Option<String>, n: &Option<String>| {
        (
            ns.clone().unwrap_or_default(),
            n.clone().unwrap_or_default(),
        )
    };
    let mut out: BTreeMap<(String, String), WorkloadHealth> = BTreeMap::new();
    for p in policies {
        let k = key(&p.metadata.namespace, &p.metadata.name);
        let st = p.status.clone().unwrap_or_default();
        let pods: Vec<PodHealth> = st
            .pods
            .iter()
            .map(|s| PodHealth {
                pod: s.pod.clone(),
                policy_version: s.version,
                mode: s.mode,
                violations_last_hour: s.violations_last_hour,
                error: s.error.clone(),
            })
            .collect();
        // The status describes the spec version the controller last pushed;
        // a newer spec is not distributed yet.
        let degraded = st.observed_version != p.spec.version
            || pods
                .iter()
                .any(|s| s.error.is_some() || s.policy_version != p.spec.version);
        let spec = &p.spec.policy;
        out.insert(
            k.clone(),
            WorkloadHealth {
                namespace: k.0,
                kind: p.spec.workload.kind.as_str().into(),
                name: p.spec.workload.name.clone(),
                policy_version: Some(p.spec.version),
                mode: Some(spec.mode),
                waf_mode: Some(spec.mode_of(Feature::Waf)),
                dlp_mode: Some(spec.mode_of(Feature::Dlp)),
                approved_by: Some(p.spec.approved_by.clone()),
                in_sync: if st.in_sync.is_empty() {
                    "-".into()
                } else {
                    st.in_sync.clone()
                },
                violations_last_hour: st.violations_last_hour,
                baseline_rules: None,
                pods,
                degraded,
            },
        );
    }
    for b in baselines {
        let k = key(&b.metadata.namespace, &b.metadata.name);
        let rules = b.status.as_ref().map(|s| s.rule_count);
        out.entry(k.clone())
            .or_insert_with(|| WorkloadHealth {
                namespace: k.0,
                kind: b.spec.workload.kind.as_str().into(),
                name: b.spec.workload.name.clone(),
                policy_version: None,
                mode: None,
                waf_mode: None,
                dlp_mode: None,
                approved_by: None,
                in_sync: "-".into(),
                violations_last_hour: 0,
                baseline_rules: None,
                pods: Vec::new(),
                degraded: false,
            })
            .baseline_rules = rules;
    }
    out.into_values().collect()
}

/// The table a person reads.
pub fn render(rows: &[WorkloadHealth]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        s.push_str("no podwarden workloads (no WorkloadPolicy or WorkloadBaseline found)\n");
        return s;
    }
    let m = |m: Option<Mode>| m.map_or("-", Mode::as_str);
    s.push_str(&format!(
        "{:<12} {:<28} {:<8} {:<8} {:<8} {:>7} {:>7} {:>13}  {}\n",
        "NAMESPACE",
        "WORKLOAD",
        "MODE",
        "WAF",
        "DLP",
        "VERSION",
        "IN-SYNC",
        "VIOLATIONS-1H",
        "NOTE"
    ));
    for r in rows {
        let workload = format!("{}/{}", r.kind, r.name);
        let note = match (r.policy_version, r.baseline_rules) {
            (None, Some(n)) => format!("not approved: baseline has {n} rules (learning)"),
            (None, None) => "not approved".into(),
            (Some(_), _) if r.degraded => "DEGRADED".into(),
            (Some(_), _) => format!(
                "ok, approved by {}",
                r.approved_by.as_deref().unwrap_or("-")
            ),
        };
        s.push_str(&format!(
            "{:<12} {:<28} {:<8} {:<8} {:<8} {:>7} {:>7} {:>13}  {}\n",
            r.namespace,
            workload,
            m(r.mode),
            m(r.waf_mode),
            m(r.dlp_mode),
            r.policy_version.map_or("-".into(), |v| format!("v{v}")),
            r.in_sync,
            r.violations_last_hour,
            note
        ));
        for p in &r.pods {
            let state = match (&p.error, r.policy_version) {
                (Some(e), _) => format!("error: {e}"),
                (None, Some(want)) if p.policy_version != want => {
                    format!("behind (wants v{want})")
                }
                _ => "in sync".into(),
            };
            s.push_str(&format!(
                "  pod {:<32} v{:<5} {:<8} {:>5} violations  {}\n",
                p.pod,
                p.policy_version,
                m(p.mode),
                p.violations_last_hour,
                state
            ));
        }
    }
    s
}

/// Prints every workload's health in `namespace` (all when `None`), or one
/// workload's. Exit 1 when any approved workload is degraded.
pub async fn status(
    client: kube::Client,
    namespace: Option<&str>,
    only: Option<&Target>,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let ns = only.map(|t| t.namespace.as_str()).or(namespace);
    let (pol, base): (Api<WorkloadPolicy>, Api<WorkloadBaseline>) = match ns {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let lp = ListParams::default();
    let policies = pol
        .list(&lp)
        .await
        .context("listing WorkloadPolicies")?
        .items;
    let baselines = base
        .list(&lp)
        .await
        .context("listing WorkloadBaselines")?
        .items;
    let mut rows = health(&policies, &baselines);
    if let Some(t) = only {
        rows.retain(|r| r.name == t.name && t.kind.is_none_or(|k| k.as_str() == r.kind));
        anyhow::ensure!(
            !rows.is_empty(),
            "no podwarden workload {}/{} (no WorkloadPolicy or WorkloadBaseline)",
            t.namespace,
            t.name
        );
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    } else {
        write!(out, "{}", render(&rows))?;
    }
    Ok(if rows.iter().any(|r| r.degraded) {
        1
    } else {
        0
    })
}

/// `mode set`: a new version of the workload's policy with the mode (or one
/// feature's mode) changed, recording who.
pub async fn set_mode(
    client: kube::Client,
    t: &Target,
    feature: Feature,
    mode: Mode,
    by: &str,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadPolicy>(&client, t).await?;
    let (p, changed) = Review::new(client, FIELD_MANAGER)
        .set_mode(&t.namespace, &name, feature, mode, by, &super::now())
        .await?;
    let what = match feature {
        Feature::Network => "mode",
        Feature::Waf => "waf mode",
        Feature::Dlp => "dlp mode",
    };
    if changed {
        writeln!(
            out,
            "{}/{}: {} (WorkloadPolicy {}/{} version {}, by {by}); the operator pushes it to the sidecars without restarts",
            t.namespace, p.spec.workload.name, p.spec.change, t.namespace, name, p.spec.version
        )?;
    } else {
        writeln!(
            out,
            "{}/{}: {what} already {} at version {}; nothing changed",
            t.namespace,
            p.spec.workload.name,
            mode.as_str(),
            p.spec.version
        )?;
    }
    Ok(0)
}
