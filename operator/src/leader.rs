//! Leader election on a `coordination.k8s.io/v1` Lease, so that with several
//! operator replicas exactly one controller pulls baselines and pushes
//! policies (two would race on the CRs and double the load on sidecars),
//! while the webhook serves on every replica.
//!
//! The algorithm is client-go's: the holder renews `renewTime` every retry
//! period; a candidate takes the lease over only when the lease record has
//! not changed for `leaseDurationSeconds` *as measured on the candidate's own
//! monotonic clock* (so clock skew between nodes does not matter); every
//! write carries the `resourceVersion` read, so two candidates cannot both
//! win. A leader that cannot renew for `renew_deadline` (shorter than the
//! lease duration) stops reconciling before anyone else may start. On
//! shutdown the leader releases the lease (holder cleared) so a successor
//! takes over at its next retry instead of after a full lease duration.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// Leader election settings (`controller.leaderElection` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElectionConfig {
    /// Off: this replica always reconciles (single-replica installs, tests).
    pub enabled: bool,
    pub lease_name: String,
    pub lease_duration_seconds: u32,
    pub renew_deadline_seconds: u32,
    pub retry_period_seconds: u32,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: "podwarden-controller".into(),
            lease_duration_seconds: 15,
            renew_deadline_seconds: 10,
            retry_period_seconds: 2,
        }
    }
}

impl LeaderElectionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.lease_name.is_empty() {
            return Err("controller.leaderElection.leaseName is empty".into());
        }
        if self.retry_period_seconds == 0 {
            return Err("controller.leaderElection.retryPeriodSeconds must be > 0".into());
        }
        // A leader must give up before others may take over, and must get
        // more than one renewal attempt before giving up.
        if self.renew_deadline_seconds >= self.lease_duration_seconds {
            return Err(
                "controller.leaderElection: renewDeadlineSeconds must be < leaseDurationSeconds"
                    .into(),
            );
        }
        if self.retry_period_seconds >= self.renew_deadline_seconds {
            return Err(
                "controller.leaderElection: retryPeriodSeconds must be < renewDeadlineSeconds"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What to do with the lease as read (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// No lease object yet.
    Create,
    /// We hold it.
    Renew,
    /// Nobody holds it, or the holder let it expire.
    TakeOver,
    /// Someone else holds it and it has not expired.
    Follow { holder: String },
}

/// `expired`: the lease record has not changed for its duration (measured
/// by the caller on its own clock).
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, expired: bool) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == identity => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) if expired => Step::TakeOver,
        Some(h) => Step::Follow {
            holder: h.to_string(),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lease {0}: {1}")]
    Kube(String, #[source] kube::Error),
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
    /// resourceVersion of the lease last read and when (our clock) it changed.
    observed: Option<(String, Instant)>,
    /// When we last wrote the lease as its holder.
    renewed: Option<Instant>,
}

impl LeaderElector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        identity: impl Into<String>,
        cfg: &LeaderElectionConfig,
    ) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: cfg.lease_name.clone(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(cfg.lease_duration_seconds.into()),
            renew_deadline: Duration::from_secs(cfg.renew_deadline_seconds.into()),
            retry_period: Duration::from_secs(cfg.retry_period_seconds.into()),
            observed: None,
            renewed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Leading = renewed within the renew deadline.
    pub fn is_leader(&self) -> bool {
        self.renewed
            .is_some_and(|t| Instant::now() < t + self.renew_deadline)
    }

    /// One election round: create, renew or take over the lease when we may.
    /// Returns whether we lead afterwards. A lost write race (409) is not an
    /// error: someone else won this round.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = Instant::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let expired = match (&current, &self.observed) {
            (Some(l), Some((rv, at))) if l.metadata.resource_version.as_ref() == Some(rv) => {
                let duration = l
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_duration_seconds)
                    .and_then(|s| u64::try_from(s).ok())
                    .map_or(self.lease_duration, Duration::from_secs);
                now >= *at + duration
            }
            _ => false,
        };
        if let Some(l) = &current {
            let rv = l.metadata.resource_version.clone().unwrap_or_default();
            if self.observed.as_ref().map(|(r, _)| r) != Some(&rv) {
                self.observed = Some((rv, now));
            }
        }
        let step = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            expired,
        );
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let duration_secs = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let pp = PostParams::default();
        let written = match (step, current) {
            (Step::Follow { holder }, _) => {
                tracing::debug!(%holder, "another replica leads");
                self.renewed = None;
                return Ok(false);
            }
            (Step::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(duration_secs),
                        acquire_time: Some(stamp.clone()),
                        renew_time: Some(stamp),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api.create(&pp, &lease).await
            }
            (Step::Renew, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(stamp);
                spec.lease_duration_seconds = Some(duration_secs);
                self.api.replace(&self.name, &pp, &lease).await
            }
            (Step::TakeOver, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.holder_identity = Some(self.identity.clone());
                spec.lease_duration_seconds = Some(duration_secs);
                spec.acquire_time = Some(stamp.clone());
                spec.renew_time = Some(stamp);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                tracing::info!(identity = %self.identity, "taking over the controller lease");
                self.api.replace(&self.name, &pp, &lease).await
            }
            // decide() only says Renew/TakeOver for an existing lease.
            (Step::Renew | Step::TakeOver, None) => return Ok(false),
        };
        match written {
            Ok(l) => {
                self.observed = l.metadata.resource_version.map(|rv| (rv, now));
                self.renewed = Some(now);
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!("lost a lease write race");
                self.renewed = None;
                Ok(false)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the lease up if we hold it: holder cleared, so a successor
    /// takes over at its next round.
    pub async fn release(&mut self) -> Result<(), LeaderError> {
        self.renewed = None;
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone already took it: nothing left to release.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Election rounds every retry period, publishing whether we lead on
    /// `leading`, until `stop` fires; then releases the lease if we hold it.
    pub async fn run(mut self, leading: watch::Sender<bool>, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(self.retry_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {}
            }
            let was = *leading.borrow();
            if let Err(e) = self.try_acquire_or_renew().await {
                tracing::warn!(error = %e, "leader election round failed");
            }
            // After an error we may still lead until the renew deadline.
            let now = self.is_leader();
            if now != was {
                if now {
                    tracing::info!(identity = %self.identity, "leading: controller starts");
                } else {
                    tracing::warn!(identity = %self.identity, "not leading: controller stops");
                }
                leading.send_replace(now);
            }
        }
        leading.send_replace(false);
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "releasing the controller lease failed");
        }
    }

    fn err(&self, e: kube::Error) -> LeaderError {
        LeaderError::Kube(format!("{}/{}", self.api.resource_url(), self.name), e)
    }
}

/// Runs `pass` every `interval` while `leading` says so; a pass in flight
/// when leadership is lost is dropped (cancelled) at its next await.
/// Returns when the sender is gone.
pub async fn while_leading<F, Fut>(
    mut leading: watch::Receiver<bool>,
    interval: Duration,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost = leading.clone();
        tokio::select! {
            r = lost.wait_for(|l| !*l) => {
                if r.is_err() {
                    return;
                }
            }
            _ = async {
                loop {
                    tick.tick().await;
                    pass().await;
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(None, "a", false), Step::Create);
        assert_eq!(decide(Some(&spec(Some("a"))), "a", false), Step::Renew);
        assert_eq!(decide(Some(&spec(Some("a"))), "a", true), Step::Renew);
        assert_eq!(decide(Some(&spec(None)), "a", false), Step::TakeOver);
        assert_eq!(decide(Some(&spec(Some(""))), "a", false), Step::TakeOver);
        assert_eq!(
            decide(Some(&spec(Some("b"))), "a", false),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(decide(Some(&spec(Some("b"))), "a", true), Step::TakeOver);
    }

    #[test]
    fn config_bounds() {
        let c = LeaderElectionConfig::default();
        c.validate().unwrap();
        let bad = LeaderElectionConfig {
            renew_deadline_seconds: 15,
            ..c.clone()
        };
        assert!(bad.validate().unwrap_err().contains("renewDeadlineSeconds"));
        let bad = LeaderElectionConfig {
            retry_period_seconds: 10,
            ..c.clone()
        };
        assert!(bad.validate().unwrap_err().contains("retryPeriodSeconds"));
        let off = LeaderElectionConfig {
            enabled: false,
            retry_period_seconds: 0,
            ..c
        };
        off.validate().unwrap();
    }
}
