//! Policy hot reload: on SIGHUP or when the file's content changes (polled,
//! which also catches Kubernetes ConfigMap updates — those swap a symlink,
//! which file-watch APIs report unreliably), the file is loaded, validated
//! and compiled off the hot path, then swapped into the [`DecisionHook`]
//! atomically. In-flight decisions finish with the policy they loaded.
//!
//! An invalid file keeps the last good policy in force; the located error
//! (`file:line:col: field.path: message`) is logged, counted
//! (`podwarden_policy_reloads_total{result="error"}`,
//! `podwarden_policy_last_reload_success 0`) and emitted as a
//! `policy_reload` event with `result: error`.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use podwarden_policy::events::{EventKind, ReloadResult, SecurityEvent};
use podwarden_policy::model::Feature;
use podwarden_policy::{
    load_policy_str, CompiledPolicy, Decide, Decision, Flow, Mode, PolicyError,
};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::task::JoinHandle;

use crate::decision_metrics::{DecisionMetrics, PolicyCounters};
use crate::events::EventBus;
use crate::DecisionHook;

/// The compiled policy as the hook sees it, with its decision counters
/// resolved (see `decision_metrics`); also kept for explain/admin.
#[derive(Clone)]
pub struct SharedPolicy(pub Arc<CompiledPolicy>, pub Option<Arc<PolicyCounters>>);

impl Decide for SharedPolicy {
    fn decide(&self, flow: &Flow) -> Decision {
        let (decision, rule) = self.0.decide_indexed(flow);
        if let Some(c) = &self.1 {
            c.observe(flow.direction, rule);
        }
        decision
    }
}

/// The policy in force, readable without a lock (the DNS listener reads it
/// per query). `None` until a policy is loaded.
pub type PolicyWatch = Arc<ArcSwapOption<CompiledPolicy>>;

#[derive(Clone)]
pub struct ReloadMetrics {
    pub reloads: IntCounterVec,
    pub version: IntGauge,
    pub last_success: IntGauge,
    pub last_reload_time: IntGauge,
    pub rules: IntGauge,
    pub decisions: DecisionMetrics,
}

impl ReloadMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "podwarden_policy_reloads_total",
                "Policy load attempts, by result (ok, error).",
            ),
            &["result"],
        )?;
        let version = IntGauge::new(
            "podwarden_policy_version",
            "metadata.version of the policy in force.",
        )?;
        let last_success = IntGauge::new(
            "podwarden_policy_last_reload_success",
            "1 if the last policy load succeeded, 0 if it was rejected (the previous policy stays in force).",
        )?;
        let last_reload_time = IntGauge::new(
            "podwarden_policy_last_reload_timestamp_seconds",
            "Unix time of the last policy load attempt.",
        )?;
        let rules = IntGauge::new("podwarden_policy_rules", "Rules in the policy in force.")?;
        for m in [&version, &last_success, &last_reload_time, &rules] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(reloads.clone()))?;
        let decisions = DecisionMetrics::new(registry)?;
        Ok(ReloadMetrics {
            decisions,
            reloads,
            version,
            last_success,
            last_reload_time,
            rules,
        })
    }
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Same content as the policy in force; nothing done.
    Unchanged,
    Applied {
        version: u64,
        rules: usize,
        mode: Mode,
    },
    /// Invalid or unreadable; the previous policy stays. Located message.
    Rejected { error: String },
}

struct State {
    digest: Option<u64>,
    rejected_digest: Option<u64>,
    modes: Option<[Mode; 3]>,
    current: Option<Arc<CompiledPolicy>>,
}

pub struct PolicyReloader {
    path: PathBuf,
    hook: DecisionHook,
    /// WAF/DLP inspectors built with each policy (see [`crate::l7`]).
    l7: std::sync::OnceLock<(crate::l7::L7Builder, crate::inspect::Inspectors)>,
    metrics: ReloadMetrics,
    events: Option<EventBus>,
    workload: String,
    pod: String,
    state: Mutex<State>,
    published: PolicyWatch,
}

const FEATURES: [(Feature, &str); 3] = [
    (Feature::Network, "network"),
    (Feature::Waf, "waf"),
    (Feature::Dlp, "dlp"),
];

impl PolicyReloader {
    pub fn new(
        path: PathBuf,
        hook: DecisionHook,
        metrics: ReloadMetrics,
        events: Option<EventBus>,
        workload: &str,
        pod: &str,
    ) -> PolicyReloader {
        PolicyReloader {
            path,
            hook,
            l7: std::sync::OnceLock::new(),
            metrics,
            events,
            workload: workload.to_string(),
            pod: pod.to_string(),
            state: Mutex::new(State {
                digest: None,
                rejected_digest: None,
                modes: None,
                current: None,
            }),
            published: PolicyWatch::default(),
        }
    }

    /// The policy in force, lock-free (updated at every successful load).
    pub fn watch(&self) -> PolicyWatch {
        self.published.clone()
    }

    /// The event bus reload events go to (other components reuse it).
    pub fn events(&self) -> Option<EventBus> {
        self.events.clone()
    }

    /// (workload, pod) stamped on events.
    pub fn identity(&self) -> (String, String) {
        (self.workload.clone(), self.pod.clone())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policy in force, if one was ever loaded.
    pub fn current(&self) -> Option<Arc<CompiledPolicy>> {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Loads the file now (blocking: call from `spawn_blocking` or at
    /// start). Re-reading an unchanged file does nothing; a file that was
    /// rejected is reported once until it changes.
    pub fn reload_now(&self) -> ReloadOutcome {
        let name = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(source) => {
                let e = PolicyError::Io { path: name, source };
                return self.reject(None, e);
            }
        };
        let digest = digest(&text);
        {
            let st = self.lock();
            if st.digest == Some(digest) || st.rejected_digest == Some(digest) {
                return ReloadOutcome::Unchanged;
            }
        }
        let compiled = load_policy_str(&text, &name).and_then(|doc| {
            let modes = FEATURES.map(|(f, _)| doc.spec.mode_of(f));
            let policy = CompiledPolicy::compile(&doc)?;
            let l7 = self.build_l7(&doc.spec, &name)?;
            Ok((policy, modes, l7))
        });
        match compiled {
            Err(e) => self.reject(Some(digest), e),
            Ok((policy, modes, l7)) => {
                self.swap_l7(l7);
                self.apply(digest, policy, modes)
            }
        }
    }

    /// Validates, compiles and swaps in a policy given as text (YAML or
    /// JSON) rather than read from the file: the admin API's `PUT /policy`
    /// and the start-up modes. Same checks and the same swap as
    /// [`Self::reload_now`] (keep the two in step); `source` names the text
    /// in errors. Re-applying the text in force does nothing.
    pub fn apply_str(&self, text: &str, source: &str) -> ReloadOutcome {
        let digest = digest(text);
        if self.lock().digest == Some(digest) {
            return ReloadOutcome::Unchanged;
        }
        let compiled = load_policy_str(text, source).and_then(|doc| {
            let modes = FEATURES.map(|(f, _)| doc.spec.mode_of(f));
            let policy = CompiledPolicy::compile(&doc)?;
            let l7 = self.build_l7(&doc.spec, source)?;
            Ok((policy, modes, l7))
        });
        match compiled {
            Err(e) => self.reject(None, e),
            Ok((policy, modes, l7)) => {
                self.swap_l7(l7);
                self.apply(digest, policy, modes)
            }
        }
    }

    fn apply(&self, digest: u64, policy: CompiledPolicy, modes: [Mode; 3]) -> ReloadOutcome {
        let policy = Arc::new(policy);
        let (version, rules, mode) = (policy.version(), policy.rule_count(), policy.mode());
        let counters = Arc::new(self.metrics.decisions.counters_for(&policy));
        self.hook
            .swap(Box::new(SharedPolicy(policy.clone(), Some(counters))));
        self.published.store(Some(policy.clone()));
        let previous = {
            let mut st = self.lock();
            st.digest = Some(digest);
            st.rejected_digest = None;
            st.current = Some(policy);
            st.modes.replace(modes)
        };
        self.metrics.reloads.with_label_values(&["ok"]).inc();
        self.metrics.last_success.set(1);
        self.metrics
            .version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.metrics
            .rules
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
        self.metrics.last_reload_time.set(unix_now());
        tracing::info!(file = %self.path.display(), version, rules, mode = mode.as_str(), "policy loaded");
        self.emit(
            EventKind::PolicyReload {
                result: ReloadResult::Ok,
                version,
                error: None,
            },
            mode,
        );
        if let Some(prev) = previous {
            for (i, (_, feature)) in FEATURES.iter().enumerate() {
                if prev[i] != modes[i] {
                    tracing::info!(
                        feature,
                        from = prev[i].as_str(),
                        to = modes[i].as_str(),
                        "mode changed"
                    );
                    self.emit(
                        EventKind::ModeChange {
                            feature: feature.to_string(),
                            from: prev[i],
                            to: modes[i],
                        },
                        modes[0],
                    );
                }
            }
        }
        ReloadOutcome::Applied {
            version,
            rules,
            mode,
        }
    }

    fn reject(&self, digest: Option<u64>, e: PolicyError) -> ReloadOutcome {
        let error = e.to_string();
        let (version, mode) = {
            let mut st = self.lock();
            st.rejected_digest = digest;
            match &st.current {
                Some(p) => (p.version(), p.mode()),
                None => (0, Mode::Learn),
            }
        };
        self.metrics.reloads.with_label_values(&["error"]).inc();
        self.metrics.last_success.set(0);
        self.metrics.last_reload_time.set(unix_now());
        tracing::error!(error = %error, kept_version = version, "policy rejected; the previous policy stays in force");
        self.emit(
            EventKind::PolicyReload {
                result: ReloadResult::Error,
                version,
                error: Some(error.clone()),
            },
            mode,
        );
        ReloadOutcome::Rejected { error }
    }

    fn emit(&self, kind: EventKind, mode: Mode) {
        if let Some(bus) = &self.events {
            let now = SystemTime::now();
            let id = format!("reload-{:x}-{:x}", unix_now_ms(now), std::process::id());
            bus.emit(SecurityEvent::new(
                id,
                now,
                &self.workload,
                &self.pod,
                kind,
                mode,
            ));
        }
    }

    /// Reloads on SIGHUP and whenever the file's content changes (checked
    /// every `poll`). Loading runs on the blocking pool, never on the data
    /// path's workers.
    pub fn spawn(self: Arc<Self>, poll: Duration) -> std::io::Result<JoinHandle<()>> {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let forced = tokio::select! {
                    _ = tick.tick() => false,
                    s = hup.recv() => s.is_some(),
                };
                #[cfg(not(unix))]
                let forced = {
                    tick.tick().await;
                    false
                };
                let me = self.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    if forced {
                        // SIGHUP: re-validate even an unchanged file, so an
                        // operator gets an answer.
                        me.forget_digest();
                    }
                    me.reload_now()
                })
                .await;
                if let Err(e) = outcome {
                    tracing::error!(error = %e, "policy reload task failed");
                }
            }
        }))
    }

    fn forget_digest(&self) {
        let mut st = self.lock();
        st.digest = None;
        st.rejected_digest = None;
    }
}

/// WAF and DLP: their engines compile with the policy, and a policy whose
/// WAF/DLP settings cannot compile (or whose WAF has no CRS to run) is
/// rejected like any other invalid policy, keeping the last good policy and
/// inspectors in force.
impl PolicyReloader {
    /// Builds inspectors with every policy loaded from now on and swaps
    /// them into `inspectors`. Set once, before the first load; later calls
    /// are ignored.
    pub fn set_l7(&self, builder: crate::l7::L7Builder, inspectors: crate::inspect::Inspectors) {
        let _ = self.l7.set((builder, inspectors));
    }

    fn build_l7(
        &self,
        spec: &podwarden_policy::PolicySpec,
        source: &str,
    ) -> Result<Option<crate::inspect::InspectorSet>, PolicyError> {
        let Some((builder, _)) = self.l7.get() else {
            return Ok(None);
        };
        builder.build(spec).map(Some).map_err(|e| {
            let path = match e {
                crate::l7::L7Error::Waf(_) => "spec.waf",
                crate::l7::L7Error::Dlp(_) => "spec.dlp",
            };
            PolicyError::Invalid(podwarden_policy::Diagnostics(vec![
                podwarden_policy::Diagnostic {
                    source_name: source.to_string(),
                    line: None,
                    column: None,
                    path: path.to_string(),
                    message: e.to_string(),
                },
            ]))
        })
    }

    /// Swapped just before the decision hook, so a request never sees the
    /// new network policy with the old inspectors.
    fn swap_l7(&self, set: Option<crate::inspect::InspectorSet>) {
        if let (Some((_, inspectors)), Some(set)) = (self.l7.get(), set) {
            inspectors.swap(set);
        }
    }
}

fn digest(text: &str) -> u64 {
    // Fixed keys: the digest only has to differ when the content does.
    let mut h = std::hash::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn unix_now_ms(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn unix_now() -> i64 {
    i64::try_from(unix_now_ms(SystemTime::now()) / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests;
