//! `podwarden baseline history|rollback --cluster`: the `WorkloadPolicy`'s
//! version history (who approved what, when) and rollback to an earlier
//! version as a new one, which the controller then pushes to the sidecars.

use std::io::Write;

use anyhow::{Context, Result};
use podwarden_operator::controller::rollback::history as versions;
use podwarden_operator::controller::Review;
use podwarden_operator::crd::WorkloadPolicy;

use super::target::{resolve, Target};
use super::FIELD_MANAGER;

pub async fn history(
    client: kube::Client,
    t: &Target,
    json: bool,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadPolicy>(&client, t).await?;
    let cr = Review::new(client, FIELD_MANAGER)
        .policy(&t.namespace, &name)
        .await?
        .with_context(|| format!("no WorkloadPolicy {}/{name}", t.namespace))?;
    let h = versions(&cr);
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&h)?)?;
        return Ok(0);
    }
    writeln!(
        out,
        "{:<9} {:<22} {:<16} {:>6}  {:<8} change",
        "version", "approved at", "by", "rules", "mode"
    )?;
    for v in &h {
        let mark = if v.current {
            "  (current)"
        } else if !v.restorable {
            "  (summary only: cannot roll back)"
        } else {
            ""
        };
        writeln!(
            out,
            "{:<9} {:<22} {:<16} {:>6}  {:<8} {}{mark}",
            format!("v{}", v.version),
            v.approved_at,
            v.approved_by,
            v.rules,
            v.mode.as_str(),
            v.change
        )?;
    }
    Ok(0)
}

pub async fn rollback(
    client: kube::Client,
    t: &Target,
    to: u64,
    by: &str,
    out: &mut dyn Write,
) -> Result<i32> {
    let name = resolve::<WorkloadPolicy>(&client, t).await?;
    let p = Review::new(client, FIELD_MANAGER)
        .rollback(&t.namespace, &name, to, by, &super::now())
        .await?;
    writeln!(
        out,
        "{}/{}: rolled back to v{to} as version {} (by {by}, mode {}, {} rules); the operator pushes it to the sidecars without restarts",
        t.namespace,
        p.spec.workload.name,
        p.spec.version,
        p.spec.policy.mode.as_str(),
        p.spec.policy.rules.len(),
    )?;
    Ok(0)
}
