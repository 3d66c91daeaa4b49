//! Building a [`ClusterSnapshot`] from API objects (pure; the caller lists them).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use podwarden_policy::model::Feature;

use super::{ClusterSnapshot, NamespaceState, WorkloadState};
use crate::crd::owner::workload_from_pod_metadata;
use crate::crd::WorkloadPolicy;
use crate::inject::keys;

/// Groups pods into workloads (as the webhook and controller do), marks
/// which run the sidecar, and attaches each workload's approved policy.
/// `events_exported`: whether the cluster's sidecars ship events to a sink.
pub fn snapshot_from_objects(
    namespaces: &[Namespace],
    pods: &[Pod],
    policies: &[WorkloadPolicy],
    events_exported: bool,
    taken_at: &str,
) -> ClusterSnapshot {
    let mut by_ns: BTreeMap<String, BTreeMap<String, WorkloadState>> = BTreeMap::new();
    for ns in namespaces {
        if let Some(n) = &ns.metadata.name {
            by_ns.entry(n.clone()).or_default();
        }
    }
    for p in pods {
        let Some(ns) = p.metadata.namespace.as_deref() else {
            continue;
        };
        let Some(w) = workload_from_pod_metadata(ns, &p.metadata) else {
            continue;
        };
        let name = format!("{}/{}", w.kind.as_str(), w.name);
        let entry = by_ns
            .entry(ns.to_string())
            .or_default()
            .entry(name.clone())
            .or_insert_with(|| WorkloadState {
                name,
                events_exported,
                ..Default::default()
            });
        entry.pods += 1;
        if p.metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(keys::STATUS))
        {
            entry.injected_pods += 1;
        }
    }
    for pol in policies {
        let Some(ns) = pol.metadata.namespace.as_deref() else {
            continue;
        };
        let name = format!(
            "{}/{}",
            pol.spec.workload.kind.as_str(),
            pol.spec.workload.name
        );
        let Some(w) = by_ns.get_mut(ns).and_then(|m| m.get_mut(&name)) else {
            continue;
        };
        let spec = &pol.spec.policy;
        w.network_mode = Some(spec.mode_of(Feature::Network));
        w.waf_mode = spec.waf.as_ref().map(|_| spec.mode_of(Feature::Waf));
        w.dlp_mode = spec.dlp.as_ref().map(|_| spec.mode_of(Feature::Dlp));
        w.approved_at = Some(pol.spec.approved_at.clone());
        w.policy_version = Some(pol.spec.version);
    }
    let enabled = |name: &str| {
        namespaces.iter().any(|n| {
            n.metadata.name.as_deref() == Some(name)
                && n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(keys::INJECT))
                    .map(String::as_str)
                    == Some("enabled")
        })
    };
    ClusterSnapshot {
        taken_at: taken_at.to_string(),
        namespaces: by_ns
            .into_iter()
            .map(|(name, wl)| NamespaceState {
                injection_enabled: enabled(&name),
                workloads: wl.into_values().collect(),
                name,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compliance::{evaluate, Control, Outcome};
    use serde_json::json;

    #[test]
    fn pods_group_into_workloads_with_their_policy() {
        let ns: Vec<Namespace> = vec![
            serde_json::from_value(
                json!({"metadata": {"name": "shop", "labels": {"podwarden.io/inject": "enabled"}}}),
            )
            .unwrap(),
            serde_json::from_value(json!({"metadata": {"name": "empty"}})).unwrap(),
        ];
        let pod = |name: &str, injected: bool| -> Pod {
            let mut v = json!({"metadata": {"name": name, "namespace": "shop",
                "labels": {"pod-template-hash": "abc12"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-abc12", "uid": "u", "controller": true}]}});
            if injected {
                v["metadata"]["annotations"] = json!({"podwarden.io/status": "{}"});
            }
            serde_json::from_value(v).unwrap()
        };
        let pods = vec![pod("checkout-abc12-1", true), pod("checkout-abc12-2", true)];
        let policy: WorkloadPolicy = serde_json::from_value(json!({
            "apiVersion": "podwarden.io/v1alpha1", "kind": "WorkloadPolicy",
            "metadata": {"name": "deployment-checkout", "namespace": "shop"},
            "spec": {"workload": {"kind": "Deployment", "name": "checkout"}, "version": 4,
                     "policy": {"mode": "protect", "features": {"waf": "monitor"}, "waf": {}},
                     "approvedBy": "alice", "approvedAt": "2026-11-20T00:00:00Z"}
        }))
        .unwrap();
        let snap = snapshot_from_objects(&ns, &pods, &[policy], true, "2026-11-23T00:00:00Z");
        let shop = snap.namespaces.iter().find(|n| n.name == "shop").unwrap();
        assert!(shop.injection_enabled);
        let w = &shop.workloads[0];
        assert_eq!(
            (w.name.as_str(), w.pods, w.injected_pods),
            ("Deployment/checkout", 2, 2)
        );
        assert_eq!(w.waf_mode, Some(podwarden_policy::Mode::Monitor));
        assert_eq!(w.dlp_mode, None, "no DLP settings: DLP is off");
        let r = evaluate(&snap, 90);
        let res = &r.workloads[0].results;
        assert_eq!(
            res.iter()
                .find(|x| x.control == Control::NetworkSegmentation)
                .unwrap()
                .outcome,
            Outcome::Pass
        );
        assert_eq!(
            res.iter()
                .find(|x| x.control == Control::Dlp)
                .unwrap()
                .outcome,
            Outcome::Fail
        );
        assert_eq!(r.uncovered_namespaces, vec!["empty".to_string()]);
    }
}
