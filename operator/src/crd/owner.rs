//! Which workload a pod belongs to, from its owner references. Pure: the
//! API lookups the walk needs are behind [`OwnerLookup`].

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The label the Deployment controller puts on its ReplicaSets and pods;
/// the ReplicaSet is named `<deployment>-<hash>`.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum WorkloadKind {
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// A pod without a controller is its own workload.
    Pod,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::Job => "Job",
            WorkloadKind::CronJob => "CronJob",
            WorkloadKind::Pod => "Pod",
        }
    }
}

/// `namespace/Kind/name`.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: WorkloadKind,
    pub name: String,
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind.as_str(), self.name)
    }
}

impl WorkloadRef {
    /// A name usable for the CRs of this workload: `<kind>-<name>`, lower-case
    /// (a Deployment and a StatefulSet may share a name).
    pub fn object_name(&self) -> String {
        format!("{}-{}", self.kind.as_str().to_ascii_lowercase(), self.name)
    }
}

/// Reads owner references of objects the pod's owner chain goes through.
pub trait OwnerLookup {
    /// Owner references of `kind`/`name` in `namespace`, or `None` when the
    /// object is unknown (deleted, or not visible to us).
    fn owners(&self, namespace: &str, kind: &str, name: &str) -> Option<Vec<OwnerReference>>;
}

/// A lookup that knows nothing: resolution falls back to naming conventions.
pub struct NoLookup;
impl OwnerLookup for NoLookup {
    fn owners(&self, _: &str, _: &str, _: &str) -> Option<Vec<OwnerReference>> {
        None
    }
}

fn controller(refs: &[OwnerReference]) -> Option<&OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true))
}

/// Resolves the pod's workload. Deployment via ReplicaSet, CronJob via Job,
/// StatefulSet and DaemonSet directly; a bare pod is its own workload.
/// Returns `None` only when the pod has no name and no controller.
pub fn resolve_workload(
    namespace: &str,
    pod: &ObjectMeta,
    lookup: &dyn OwnerLookup,
) -> Option<WorkloadRef> {
    let mk = |kind, name: &str| WorkloadRef {
        namespace: namespace.to_string(),
        kind,
        name: name.to_string(),
    };
    let Some(owner) = pod.owner_references.as_deref().and_then(controller) else {
        return pod.name.as_deref().map(|n| mk(WorkloadKind::Pod, n));
    };
    let from_parent = |kind: &str, want: &str| {
        lookup
            .owners(namespace, kind, &owner.name)
            .and_then(|refs| {
                controller(&refs)
                    .filter(|r| r.kind == want)
                    .map(|r| r.name.clone())
            })
    };
    match owner.kind.as_str() {
        "ReplicaSet" => {
            if let Some(d) = from_parent("ReplicaSet", "Deployment") {
                return Some(mk(WorkloadKind::Deployment, &d));
            }
            let hash = pod.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
            match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
                Some(d) if !d.is_empty() => Some(mk(WorkloadKind::Deployment, d)),
                _ => Some(mk(WorkloadKind::ReplicaSet, &owner.name)),
            }
        }
        "Job" => match from_parent("Job", "CronJob") {
            Some(c) => Some(mk(WorkloadKind::CronJob, &c)),
            None => Some(mk(WorkloadKind::Job, &owner.name)),
        },
        "StatefulSet" => Some(mk(WorkloadKind::StatefulSet, &owner.name)),
        "DaemonSet" => Some(mk(WorkloadKind::DaemonSet, &owner.name)),
        // Other controllers (operators' own kinds): the pod is governed as
        // its own workload rather than guessed into someone else's.
        _ => pod
            .name
            .as_deref()
            .or(pod.generate_name.as_deref())
            .map(|n| mk(WorkloadKind::Pod, n)),
    }
}

/// [`resolve_workload`] without API lookups, as the webhook sees a pod.
pub fn workload_from_pod_metadata(namespace: &str, pod: &ObjectMeta) -> Option<WorkloadRef> {
    resolve_workload(namespace, pod, &NoLookup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn oref(kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn pod(owner: Option<OwnerReference>, labels: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            name: Some("p-1".into()),
            owner_references: owner.map(|o| vec![o]),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    struct Map(HashMap<(String, String), Vec<OwnerReference>>);
    impl OwnerLookup for Map {
        fn owners(&self, _: &str, kind: &str, name: &str) -> Option<Vec<OwnerReference>> {
            self.0.get(&(kind.to_string(), name.to_string())).cloned()
        }
    }

    #[test]
    fn deployment_by_hash_label_and_by_lookup() {
        let p = pod(
            Some(oref("ReplicaSet", "checkout-7d9f8b6c5d")),
            &[(POD_TEMPLATE_HASH, "7d9f8b6c5d")],
        );
        let w = workload_from_pod_metadata("shop", &p).unwrap();
        assert_eq!(w.to_string(), "shop/Deployment/checkout");
        assert_eq!(w.object_name(), "deployment-checkout");
        // A hash that is not the suffix: a bare ReplicaSet.
        let p = pod(
            Some(oref("ReplicaSet", "web")),
            &[(POD_TEMPLATE_HASH, "abc")],
        );
        assert_eq!(
            workload_from_pod_metadata("shop", &p).unwrap().kind,
            WorkloadKind::ReplicaSet
        );
        // The lookup wins over the naming convention.
        let lookup = Map(HashMap::from([(
            ("ReplicaSet".into(), "web".into()),
            vec![oref("Deployment", "frontend")],
        )]));
        let w = resolve_workload("shop", &p, &lookup).unwrap();
        assert_eq!(w.to_string(), "shop/Deployment/frontend");
    }

    #[test]
    fn statefulset_daemonset_job_cronjob_and_bare_pod() {
        let k = |o| {
            workload_from_pod_metadata("ns", &pod(o, &[]))
                .unwrap()
                .to_string()
        };
        assert_eq!(k(Some(oref("StatefulSet", "db"))), "ns/StatefulSet/db");
        assert_eq!(k(Some(oref("DaemonSet", "agent"))), "ns/DaemonSet/agent");
        assert_eq!(k(Some(oref("Job", "migrate"))), "ns/Job/migrate");
        assert_eq!(k(None), "ns/Pod/p-1");
        let lookup = Map(HashMap::from([(
            ("Job".into(), "report-29012345".into()),
            vec![oref("CronJob", "report")],
        )]));
        let p = pod(Some(oref("Job", "report-29012345")), &[]);
        assert_eq!(
            resolve_workload("ns", &p, &lookup).unwrap().to_string(),
            "ns/CronJob/report"
        );
    }

    #[test]
    fn non_controller_owners_are_ignored() {
        let mut o = oref("StatefulSet", "db");
        o.controller = None;
        let w = workload_from_pod_metadata("ns", &pod(Some(o), &[])).unwrap();
        assert_eq!(w.kind, WorkloadKind::Pod);
    }
}
