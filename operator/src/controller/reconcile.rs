//! The controller's I/O: Kubernetes API on one side, sidecar admin APIs on
//! the other. Decisions are made by the pure functions of the sibling
//! modules; this file only fetches, calls them and writes back.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use podwarden_policy::model::Feature;
use podwarden_policy::Mode;
use serde_json::json;
use tokio::task::JoinSet;

use super::approve::{policy_document, ApproveError};
use super::baseline::{aggregate, ReplicaBaseline};
use super::review::Review;
use super::sidecar::SidecarClient;
use super::sidecar::SidecarUsage;
use super::status::{policy_status, rule_usage};
use crate::crd::owner::workload_from_pod_metadata;
use crate::crd::{
    PodPolicyState, WorkloadBaseline, WorkloadPolicy, WorkloadPolicyStatus, WorkloadRef,
};
use crate::inject::keys;

pub const FIELD_MANAGER: &str = "podwarden-operator";

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Approve(#[from] ApproveError),
    #[error("baseline of {workload}: {reason}")]
    Aggregate { workload: String, reason: String },
    #[error("{0} not found")]
    NotFound(String),
}

/// An injected, running pod the controller can talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedPod {
    pub name: String,
    pub workload: WorkloadRef,
    pub admin: SocketAddr,
}

/// Brings every pod to `policy`'s version: `GET /status`, then `PUT
/// /policy` where the version or mode differs. Returns what each pod runs
/// afterwards; a pod that refused the push (e.g. 400, the policy does not
/// compile there) still reports the version it kept, with the error.
pub async fn sync_pods(
    sidecars: &SidecarClient,
    policy: &WorkloadPolicy,
    pods: &[InjectedPod],
) -> Vec<PodPolicyState> {
    let doc = policy_document(policy);
    let want = policy.spec.version;
    let mut set = JoinSet::new();
    for p in pods {
        let (sc, addr, pod, doc) = (sidecars.clone(), p.admin, p.name.clone(), doc.clone());
        set.spawn(async move {
            let (running, error) = match sc.status(addr).await {
                // Mode too: a hand edit of spec.policy.mode that forgot to
                // bump spec.version must still reach the sidecars.
                Ok(s) if s.policy_version == want && s.mode == doc.spec.mode => (Some(s), None),
                Ok(s) => match sc.put_policy(addr, &doc).await {
                    Ok(now) => (Some(now), None),
                    Err(e) => (Some(s), Some(e.to_string())),
                },
                Err(e) => (None, Some(e.to_string())),
            };
            PodPolicyState {
                pod,
                version: running.as_ref().map_or(0, |s| s.policy_version),
                mode: running.as_ref().map(|s| s.mode),
                violations_last_hour: running.as_ref().map_or(0, |s| s.violations_last_hour),
                error,
            }
        });
    }
    let mut states = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            states.push(s);
        }
    }
    states
}

/// Every pod's `GET /rules/usage`; a pod that does not answer (down, or a
/// sidecar older than the endpoint) contributes nothing this pass.
pub async fn pull_usage(sidecars: &SidecarClient, pods: &[InjectedPod]) -> Vec<SidecarUsage> {
    let mut set = JoinSet::new();
    for p in pods {
        let (sc, addr, pod) = (sidecars.clone(), p.admin, p.name.clone());
        set.spawn(async move { (pod, sc.rule_usage(addr).await) });
    }
    let mut reports = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((_, Ok(u))) => reports.push(u),
            Ok((pod, Err(e))) => tracing::debug!(%pod, error = %e, "rule usage not available"),
            Err(_) => {}
        }
    }
    reports
}

/// Running pods that went through the webhook, with the workload they
/// belong to (as the webhook recorded it in the sidecar's environment, else
/// resolved from owner references) and their admin address. Pure.
pub fn injected_pods(pods: &[Pod], admin_port: u16) -> Vec<InjectedPod> {
    pods.iter()
        .filter_map(|p| {
            let injected = p
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(keys::STATUS));
            let status = p.status.as_ref()?;
            if !injected || status.phase.as_deref() != Some("Running") {
                return None;
            }
            let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
            let ns = p.metadata.namespace.as_deref()?;
            let workload = workload_from_pod_metadata(ns, &p.metadata)?;
            Some(InjectedPod {
                name: p.metadata.name.clone()?,
                workload,
                admin: SocketAddr::new(ip, admin_port),
            })
        })
        .collect()
}

pub struct Controller {
    client: kube::Client,
    sidecars: SidecarClient,
    admin_port: u16,
}

impl Controller {
    pub fn new(client: kube::Client, sidecars: SidecarClient, admin_port: u16) -> Self {
        Controller {
            client,
            sidecars,
            admin_port,
        }
    }

    /// Pulls every pod's baseline and writes the merged proposal into the
    /// workload's `WorkloadBaseline` (server-side apply, then status).
    pub async fn sync_baseline(
        &self,
        workload: &WorkloadRef,
        pods: &[InjectedPod],
        now: &str,
    ) -> Result<Option<WorkloadBaseline>, ControllerError> {
        let mut set = JoinSet::new();
        for p in pods {
            let (sc, addr, name) = (self.sidecars.clone(), p.admin, p.name.clone());
            set.spawn(async move {
                ReplicaBaseline {
                    pod: name,
                    result: sc.baseline(addr).await.map_err(|e| e.to_string()),
                }
            });
        }
        let mut replicas = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                if let Err(e) = &r.result {
                    tracing::warn!(pod = %r.pod, error = %e, "baseline pull failed");
                }
                replicas.push(r);
            }
        }
        let Some((spec, status)) =
            aggregate(workload, &replicas, now).map_err(|reason| ControllerError::Aggregate {
                workload: workload.to_string(),
                reason,
            })?
        else {
            return Ok(None);
        };
        let api: Api<WorkloadBaseline> = Api::namespaced(self.client.clone(), &workload.namespace);
        let name = workload.object_name();
        let mut obj = WorkloadBaseline::new(&name, spec);
        obj.metadata.namespace = Some(workload.namespace.clone());
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await?;
        let updated = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        Ok(Some(updated))
    }

    /// Brings every pod of the workload to the approved policy's version
    /// (`PUT /policy` where the reported version differs) and records what
    /// each pod runs in the policy's status. `None` when nothing is approved.
    pub async fn distribute(
        &self,
        workload: &WorkloadRef,
        pods: &[InjectedPod],
    ) -> Result<Option<WorkloadPolicyStatus>, ControllerError> {
        let api: Api<WorkloadPolicy> = Api::namespaced(self.client.clone(), &workload.namespace);
        let name = workload.object_name();
        let Some(policy) = api.get_opt(&name).await? else {
            return Ok(None);
        };
        let states = sync_pods(&self.sidecars, &policy, pods).await;
        // Only pods that answered `GET /status`: one that refused our token
        // or is down would refuse or time out again, and each refusal is a
        // security signal on the sidecar's side (401 counted and logged).
        let answered: Vec<InjectedPod> = pods
            .iter()
            .filter(|p| states.iter().any(|s| s.pod == p.name && s.mode.is_some()))
            .cloned()
            .collect();
        let reports = pull_usage(&self.sidecars, &answered).await;
        let previous = policy
            .status
            .as_ref()
            .map(|s| s.rule_usage.as_slice())
            .unwrap_or_default();
        let mut status = policy_status(&policy, states);
        status.rule_usage = rule_usage(&policy, &reports, previous);
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
        Ok(Some(status))
    }

    /// Approves the workload's baseline: creates version 1 of its policy or
    /// replaces the current one with the next version (see [`Review::approve`]).
    pub async fn approve(
        &self,
        namespace: &str,
        baseline_name: &str,
        select: Option<&[String]>,
        approver: &str,
        now: &str,
    ) -> Result<WorkloadPolicy, ControllerError> {
        Review::new(self.client.clone(), FIELD_MANAGER)
            .approve(namespace, baseline_name, select, None, approver, now)
            .await
            .map(|(p, _)| p)
    }

    /// Changes the workload's mode (a new policy version).
    pub async fn set_mode(
        &self,
        namespace: &str,
        name: &str,
        mode: Mode,
        who: &str,
        now: &str,
    ) -> Result<WorkloadPolicy, ControllerError> {
        Review::new(self.client.clone(), FIELD_MANAGER)
            .set_mode(namespace, name, Feature::Network, mode, who, now)
            .await
            .map(|(p, _)| p)
    }

    /// One pass over every injected pod in the cluster.
    pub async fn run_once(&self, now: &str) -> Result<(), ControllerError> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods
            .list(&ListParams::default().labels(&format!("{}=true", keys::INJECTED)))
            .await?;
        let mut by_workload: BTreeMap<WorkloadRef, Vec<InjectedPod>> = BTreeMap::new();
        for p in injected_pods(&list.items, self.admin_port) {
            by_workload.entry(p.workload.clone()).or_default().push(p);
        }
        let m = &crate::metrics::METRICS;
        for (w, pods) in &by_workload {
            let labels = [
                w.namespace.as_str(),
                &format!("{}/{}", w.kind.as_str(), w.name),
            ];
            match self.sync_baseline(w, pods, now).await {
                Ok(Some(b)) => {
                    let rules = b.status.map_or(0, |s| s.rule_count);
                    m.baseline_rules
                        .with_label_values(&labels)
                        .set(i64::from(rules));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(workload = %w, error = %e, "baseline sync failed"),
            }
            match self.distribute(w, pods).await {
                Ok(Some(st)) => {
                    let behind = st
                        .pods
                        .iter()
                        .filter(|p| p.version != st.observed_version || p.error.is_some())
                        .count();
                    m.out_of_sync
                        .with_label_values(&labels)
                        .set(i64::try_from(behind).unwrap_or(i64::MAX));
                    m.violations
                        .with_label_values(&labels)
                        .set(i64::try_from(st.violations_last_hour).unwrap_or(i64::MAX));
                    for pod in &st.pods {
                        let ok = if pod.error.is_some() { "error" } else { "ok" };
                        m.sidecar_requests.with_label_values(&["sync", ok]).inc();
                    }
                    for mode in [Mode::Learn, Mode::Monitor, Mode::Protect] {
                        let on = st.pods.iter().any(|p| p.mode == Some(mode));
                        m.mode
                            .with_label_values(&[labels[0], labels[1], mode.as_str()])
                            .set(i64::from(on));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(workload = %w, error = %e, "policy distribution failed"),
            }
        }
        Ok(())
    }

    /// Runs [`Self::run_once`] every `interval` until the task is dropped.
    pub async fn run(self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.run_once(&now_rfc3339()).await {
                tracing::warn!(error = %e, "controller pass failed");
            }
        }
    }
}

/// Current time, RFC 3339, UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, injected: bool, phase: &str, ip: Option<&str>) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"pod-template-hash": "abc12"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-abc12", "uid": "u", "controller": true}]},
            "status": {"phase": phase}
        });
        if injected {
            v["metadata"]["annotations"] = json!({"podwarden.io/status": "{}"});
        }
        if let Some(ip) = ip {
            v["status"]["podIP"] = json!(ip);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_running_injected_pods_with_an_ip_are_contacted() {
        let pods = vec![
            pod("a", true, "Running", Some("192.0.2.10")),
            pod("b", false, "Running", Some("192.0.2.11")),
            pod("c", true, "Pending", None),
            pod("d", true, "Running", None),
            pod("e", true, "Running", Some("2001:db8::5")),
        ];
        let got = injected_pods(&pods, 15000);
        let names: Vec<_> = got.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a", "e"]);
        assert_eq!(got[0].admin, "192.0.2.10:15000".parse().unwrap());
        assert_eq!(got[1].admin, "[2001:db8::5]:15000".parse().unwrap());
        assert_eq!(got[0].workload.to_string(), "shop/Deployment/checkout");
    }
}
