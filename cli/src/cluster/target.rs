//! Which workload's CRs a command is about: `--workload namespace/name`
//! (found by listing the CRs of the namespace) or `namespace/Kind/name`
//! (the CR name follows directly, no lookup).

use anyhow::{bail, Context, Result};
use kube::api::{Api, ListParams};
use kube::Resource;
use podwarden_operator::crd::{WorkloadBaseline, WorkloadKind, WorkloadPolicy, WorkloadTarget};
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub kind: Option<WorkloadKind>,
    pub name: String,
}

const KINDS: [WorkloadKind; 7] = [
    WorkloadKind::Deployment,
    WorkloadKind::ReplicaSet,
    WorkloadKind::StatefulSet,
    WorkloadKind::DaemonSet,
    WorkloadKind::Job,
    WorkloadKind::CronJob,
    WorkloadKind::Pod,
];

impl Target {
    pub fn parse(s: &str) -> Result<Target> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad =
            || anyhow::anyhow!("--workload {s:?}: expected namespace/name or namespace/Kind/name");
        match parts.as_slice() {
            [ns, name] if !ns.is_empty() && !name.is_empty() => Ok(Target {
                namespace: ns.to_string(),
                kind: None,
                name: name.to_string(),
            }),
            [ns, kind, name] if !ns.is_empty() && !name.is_empty() => {
                let kind = KINDS
                    .into_iter()
                    .find(|k| k.as_str().eq_ignore_ascii_case(kind))
                    .with_context(|| {
                        let names: Vec<_> = KINDS.iter().map(|k| k.as_str()).collect();
                        format!("{}: unknown kind {kind:?} ({})", bad(), names.join(", "))
                    })?;
                Ok(Target {
                    namespace: ns.to_string(),
                    kind: Some(kind),
                    name: name.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }

    pub fn from_flag(w: Option<&str>) -> Result<Target> {
        Target::parse(w.context("--workload namespace/name is required")?)
    }
}

/// Reads `spec.workload` of either CR kind.
pub trait HasWorkload: Resource + Clone + DeserializeOwned + std::fmt::Debug {
    fn workload(&self) -> &WorkloadTarget;
}

impl HasWorkload for WorkloadBaseline {
    fn workload(&self) -> &WorkloadTarget {
        &self.spec.workload
    }
}

impl HasWorkload for WorkloadPolicy {
    fn workload(&self) -> &WorkloadTarget {
        &self.spec.workload
    }
}

/// The CR name of `t`'s workload among the objects of kind `K`.
pub async fn resolve<K>(client: &kube::Client, t: &Target) -> Result<String>
where
    K: HasWorkload<DynamicType = (), Scope = kube::core::NamespaceResourceScope>,
{
    if let Some(kind) = t.kind {
        return Ok(format!("{}-{}", kind.as_str().to_ascii_lowercase(), t.name));
    }
    let api: Api<K> = Api::namespaced(client.clone(), &t.namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing {} in {}", K::plural(&()), t.namespace))?;
    let found: Vec<_> = list
        .items
        .iter()
        .filter(|o| o.workload().name == t.name)
        .collect();
    match found.as_slice() {
        [one] => one
            .meta()
            .name
            .clone()
            .context("the API server returned an object without a name"),
        [] => bail!(
            "no {} for workload {}/{} (see: kubectl get {} -n {})",
            K::kind(&()),
            t.namespace,
            t.name,
            K::plural(&()),
            t.namespace
        ),
        many => {
            let kinds: Vec<_> = many
                .iter()
                .map(|o| format!("{}/{}/{}", t.namespace, o.workload().kind.as_str(), t.name))
                .collect();
            bail!(
                "{}/{} names several workloads; say which: {}",
                t.namespace,
                t.name,
                kinds.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_names_bad_input() {
        assert_eq!(
            Target::parse("shop/checkout").unwrap(),
            Target {
                namespace: "shop".into(),
                kind: None,
                name: "checkout".into()
            }
        );
        assert_eq!(
            Target::parse("shop/statefulset/db").unwrap().kind,
            Some(WorkloadKind::StatefulSet)
        );
        for bad in ["checkout", "shop/", "/x", "a/b/c/d", ""] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        let e = Target::parse("shop/Widget/x").unwrap_err().to_string();
        assert!(
            e.contains("unknown kind") && e.contains("Deployment"),
            "{e}"
        );
    }
}
