//! People's decisions on the cluster's CRs — diff, approve, reject, mode
//! changes — as API calls. Shared by the controller and the `podwarden`
//! CLI's cluster mode, so both write the same versions the same way. The
//! decisions themselves are the pure functions of [`super::approve`].

use kube::api::{Api, Patch, PatchParams, PostParams};
use podwarden_learner::diff::BaselineDiff;
use podwarden_policy::model::Feature;
use podwarden_policy::Mode;
use serde_json::json;

use super::approve::{approve, reject, review_diff, set_feature_mode, with_mode, ApproveError};
use super::reconcile::ControllerError;
use crate::crd::{WorkloadBaseline, WorkloadPolicy};

pub struct Review {
    client: kube::Client,
    field_manager: String,
}

impl Review {
    pub fn new(client: kube::Client, field_manager: impl Into<String>) -> Self {
        Review {
            client,
            field_manager: field_manager.into(),
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.field_manager.clone()),
            ..Default::default()
        }
    }

    pub async fn baseline(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<WorkloadBaseline, ControllerError> {
        let api: Api<WorkloadBaseline> = Api::namespaced(self.client.clone(), namespace);
        let mut b = api.get_opt(name).await?.ok_or_else(|| {
            ControllerError::NotFound(format!("WorkloadBaseline {namespace}/{name}"))
        })?;
        b.metadata
            .namespace
            .get_or_insert_with(|| namespace.to_string());
        Ok(b)
    }

    pub async fn policy(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkloadPolicy>, ControllerError> {
        let api: Api<WorkloadPolicy> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?)
    }

    /// The workload's baseline against its approved policy.
    pub async fn diff(&self, namespace: &str, name: &str) -> Result<BaselineDiff, ControllerError> {
        let baseline = self.baseline(namespace, name).await?;
        let current = self.policy(namespace, name).await?;
        Ok(review_diff(&baseline, current.as_ref())?)
    }

    /// Approves the workload's baseline (all proposals, or the ids in
    /// `select`), optionally setting the mode in the same version: creates
    /// version 1 of its policy or replaces the current one with the next
    /// version (optimistic concurrency: a concurrent approval makes this
    /// fail, not merge). Also returns the review's warnings (the diff's,
    /// e.g. a baseline without DNS names) from the same reads, for a person
    /// approving from the CLI.
    pub async fn approve(
        &self,
        namespace: &str,
        name: &str,
        select: Option<&[String]>,
        mode: Option<Mode>,
        approver: &str,
        now: &str,
    ) -> Result<(WorkloadPolicy, Vec<String>), ControllerError> {
        let baseline = self.baseline(namespace, name).await?;
        let current = self.policy(namespace, name).await?;
        let warnings = review_diff(&baseline, current.as_ref())?.warnings;
        let mut next = approve(&baseline, current.as_ref(), select, approver, now)?;
        if let Some(m) = mode {
            next = with_mode(next, m);
        }
        let api: Api<WorkloadPolicy> = Api::namespaced(self.client.clone(), namespace);
        let written = match current {
            None => api.create(&self.post_params(), &next).await?,
            Some(_) => api.replace(name, &self.post_params(), &next).await?,
        };
        Ok((written, warnings))
    }

    /// Records rejected proposals in the baseline (a merge patch of
    /// `spec.rejected` only, guarded by the resourceVersion read).
    pub async fn reject(
        &self,
        namespace: &str,
        name: &str,
        ids: &[String],
        by: &str,
        reason: Option<&str>,
        now: &str,
    ) -> Result<WorkloadBaseline, ControllerError> {
        let baseline = self.baseline(namespace, name).await?;
        let current = self.policy(namespace, name).await?;
        let rejected = reject(&baseline, current.as_ref(), ids, by, reason, now)?;
        let api: Api<WorkloadBaseline> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({
            "metadata": { "resourceVersion": baseline.metadata.resource_version },
            "spec": { "rejected": rejected },
        });
        let pp = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..Default::default()
        };
        Ok(api.patch(name, &pp, &Patch::Merge(&patch)).await?)
    }

    /// Changes the workload's mode, or one feature's: a new policy version
    /// recording who. `None` when the mode already is `mode`.
    pub async fn set_mode(
        &self,
        namespace: &str,
        name: &str,
        feature: Feature,
        mode: Mode,
        who: &str,
        now: &str,
    ) -> Result<(WorkloadPolicy, bool), ControllerError> {
        if who.trim().is_empty() {
            return Err(ApproveError::NoReviewer.into());
        }
        let current = self.policy(namespace, name).await?.ok_or_else(|| {
            ControllerError::NotFound(format!("WorkloadPolicy {namespace}/{name}"))
        })?;
        match set_feature_mode(&current, feature, mode, who, now) {
            None => Ok((current, false)),
            Some(next) => {
                let api: Api<WorkloadPolicy> = Api::namespaced(self.client.clone(), namespace);
                Ok((api.replace(name, &self.post_params(), &next).await?, true))
            }
        }
    }

    /// Makes version `to`'s policy current again as a new version (see
    /// [`super::rollback`]); replaced with the resourceVersion read, so a
    /// concurrent approval makes this fail rather than be overwritten.
    pub async fn rollback(
        &self,
        namespace: &str,
        name: &str,
        to: u64,
        who: &str,
        now: &str,
    ) -> Result<WorkloadPolicy, ControllerError> {
        let current = self.policy(namespace, name).await?.ok_or_else(|| {
            ControllerError::NotFound(format!("WorkloadPolicy {namespace}/{name}"))
        })?;
        let next = super::rollback::rollback(&current, to, who, now)?;
        let api: Api<WorkloadPolicy> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.replace(name, &self.post_params(), &next).await?)
    }
}
