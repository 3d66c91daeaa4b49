//! `podwarden baseline diff|approve|reject --cluster`: review the
//! controller's `WorkloadBaseline` against the workload's `WorkloadPolicy`.

use std::io::Write;

use anyhow::{bail, Result};
use podwarden_learner::diff::render_text;
use podwarden_operator::controller::Review;
use podwarden_operator::crd::WorkloadBaseline;
use podwarden_policy::Mode;

use super::target::{resolve, Target};
use super::FIELD_MANAGER;

/// Prints the diff; exit 1 when there is something to review (as locally).
pub async fn diff(
    client: kube::Client,
    t: &Target,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadBaseline>(&client, t).await?;
    let d = Review::new(client, FIELD_MANAGER)
        .diff(&t.namespace, &name)
        .await?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
    } else {
        write!(out, "{}", render_text(&d))?;
    }
    Ok(if d.is_empty() { 0 } else { 1 })
}

/// What to approve, as the local verb's flags say it.
pub enum Approval {
    All,
    Ids(Vec<String>),
    /// Only a mode change (`--mode` without entries).
    ModeOnly,
}

pub async fn approve(
    client: kube::Client,
    t: &Target,
    what: Approval,
    by: &str,
    mode: Option<Mode>,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadBaseline>(&client, t).await?;
    let review = Review::new(client, FIELD_MANAGER);
    let now = super::now();
    let (p, warnings) = match what {
        Approval::All => {
            review
                .approve(&t.namespace, &name, None, mode, by, &now)
                .await?
        }
        Approval::Ids(ids) => {
            review
                .approve(&t.namespace, &name, Some(&ids), mode, by, &now)
                .await?
        }
        Approval::ModeOnly => {
            let Some(m) = mode else {
                bail!("say what to approve: --all or --rule ID");
            };
            let (p, changed) = review
                .set_mode(
                    &t.namespace,
                    &name,
                    podwarden_policy::model::Feature::Network,
                    m,
                    by,
                    &now,
                )
                .await?;
            if !changed {
                writeln!(
                    out,
                    "{}/{}: already in {} at version {}; nothing changed",
                    t.namespace,
                    p.spec.workload.name,
                    m.as_str(),
                    p.spec.version
                )?;
                return Ok(0);
            }
            (p, Vec::new())
        }
    };
    // As the local verb says them: a reviewer reads them with the outcome.
    for w in warnings {
        writeln!(out, "! warning: {w}")?;
    }
    writeln!(
        out,
        "approved by {by}: {}/{} ({}) version {} ({} rules, {} processes, mode {}): {}",
        t.namespace,
        p.spec.workload.name,
        p.spec.workload.kind.as_str(),
        p.spec.version,
        p.spec.policy.rules.len(),
        p.spec.policy.processes.len(),
        p.spec.policy.mode.as_str(),
        p.spec.change
    )?;
    writeln!(
        out,
        "WorkloadPolicy {}/{} written; the operator pushes it to the workload's sidecars",
        t.namespace, name
    )?;
    Ok(0)
}

pub async fn reject(
    client: kube::Client,
    t: &Target,
    ids: &[String],
    by: &str,
    reason: Option<&str>,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadBaseline>(&client, t).await?;
    Review::new(client, FIELD_MANAGER)
        .reject(&t.namespace, &name, ids, by, reason, &super::now())
        .await?;
    writeln!(
        out,
        "rejected {} (not proposed again) in WorkloadBaseline {}/{}",
        ids.join(", "),
        t.namespace,
        name
    )?;
    Ok(0)
}
