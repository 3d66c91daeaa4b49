//! Learning in the running proxy: every flow record (in every mode, so the
//! process baseline and "new executable" events work in monitor/protect
//! too) feeds the learner's [`LearningSink`]; its state snapshots to the
//! state directory on a timer and at shutdown and is restored at start, so
//! learning survives a restart. `GET /baseline` serves it.
//!
//! The same consumer turns decided records into security events
//! (violations, would-blocks, new executables) and counts violations for
//! `GET /status`: one reader of the flow log, one place that interprets it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use podwarden_learner::{LearnerConfig, LearnerError, LearningSink, Store};
use podwarden_policy::events::{EventAction, EventKind, SecurityEvent};
use podwarden_policy::{Action, FlowRecord, PolicyDocument};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::admin::violations::ViolationWindow;
use crate::events::EventBus;

/// How long the record consumer lets records gather before draining them:
/// short for events and `/status`, long enough that a busy proxy wakes the
/// consumer once per many requests (the channel holds 4096 records, i.e.
/// 400k records/s before drops).
const BATCH_WINDOW: Duration = Duration::from_millis(10);

/// Executables remembered for "new process" events; beyond this a pod is
/// spawning throwaway binaries and each further one is still reported.
const MAX_KNOWN_EXES: usize = 4096;

pub struct Learning {
    sink: LearningSink,
    known_exes: Mutex<HashSet<String>>,
    /// Last flush failed: further failures are logged at debug, not every tick.
    failing: std::sync::atomic::AtomicBool,
}

impl Learning {
    /// Opens (or restores) the learning state of `workload` under
    /// `state_dir`. `workload` may be the operator's `ns/kind/name` or the
    /// learner's `ns/name`; see [`learner_workload`].
    pub fn open(state_dir: &Path, workload: &str, pod: &str) -> Result<Learning, LearnerError> {
        let store = Store::open(state_dir, &learner_workload(workload))?;
        let mut cfg = LearnerConfig::new(store.workload().to_string());
        if !pod.is_empty() {
            cfg.replica = Some(pod.to_string());
        }
        let sink = LearningSink::open(store, Some(cfg))?;
        let known = sink
            .baseline()?
            .spec
            .processes
            .into_iter()
            .map(|p| p.exe)
            .collect();
        Ok(Learning {
            sink,
            known_exes: Mutex::new(known),
            failing: Default::default(),
        })
    }

    pub fn baseline(&self) -> Result<PolicyDocument, LearnerError> {
        self.sink.baseline()
    }

    /// Learns from one record. Returns the executable when this is the
    /// first time the pod is seen running it.
    pub fn observe(&self, rec: &FlowRecord) -> Option<String> {
        self.sink.record(rec);
        let exe = &rec.flow.process.as_ref()?.exe;
        self.note_exe(exe).then(|| exe.clone())
    }

    /// Remembers an executable seen in the pod; true the first time.
    pub fn note_exe(&self, exe: &str) -> bool {
        let mut known = match self.known_exes.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if known.contains(exe) {
            return false;
        }
        if known.len() < MAX_KNOWN_EXES {
            known.insert(exe.to_string());
        }
        true
    }

    /// Writes the snapshot if something was learned since the last one.
    pub fn flush(&self) {
        use std::sync::atomic::Ordering;
        match self.sink.flush() {
            Ok(wrote) => {
                if wrote {
                    tracing::debug!("learning state saved");
                }
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("learning state saved again");
                }
            }
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %e, "learning state not saved (a restart will lose it); retrying")
            }
            Err(e) => tracing::debug!(error = %e, "learning state still not saved"),
        }
    }
}

/// The learner's workload key `namespace/name`: the operator names
/// workloads `namespace/kind/name`; anything else is made a valid key
/// (lower-case DNS-label characters) rather than refused, so a proxy always
/// learns.
pub fn learner_workload(w: &str) -> String {
    let clean = |s: &str| -> String {
        let c: String = s
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let c = c.trim_start_matches('.').to_string();
        if c.is_empty() {
            "unknown".to_string()
        } else {
            c
        }
    };
    let parts: Vec<&str> = w.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [] => "default/unknown".to_string(),
        [name] => format!("default/{}", clean(name)),
        [ns, .., name] => format!("{}/{}", clean(ns), clean(name)),
    }
}

/// Reads decided flow records: learning, events, violation counts.
pub struct RecordConsumer {
    pub learning: Option<Arc<Learning>>,
    pub events: Option<EventBus>,
    pub violations: Arc<ViolationWindow>,
    pub workload: String,
    pub pod: String,
}

impl RecordConsumer {
    /// What one record causes: events to emit (the caller sends them).
    pub fn handle(&self, rec: &FlowRecord) -> Vec<SecurityEvent> {
        let mut out = Vec::new();
        let d = &rec.decision;
        if d.action == Action::Deny || d.would_deny {
            self.violations.add(rec.start_ms);
        }
        if let Some(ev) = SecurityEvent::from_record(rec, &self.workload, &self.pod) {
            out.push(ev);
        }
        if let Some(exe) = self.learning.as_ref().and_then(|l| l.observe(rec)) {
            let time = SystemTime::UNIX_EPOCH + Duration::from_millis(rec.start_ms);
            let mut ev = SecurityEvent::new(
                format!("{}-new-process", rec.id),
                time,
                &self.workload,
                &self.pod,
                EventKind::NewProcess,
                d.mode,
            );
            ev.with_flow(rec);
            ev.action = match (d.action, d.would_deny) {
                (Action::Deny, _) => EventAction::Blocked,
                (Action::Allow, true) => EventAction::WouldBlock,
                (Action::Allow, false) => EventAction::Allowed,
            };
            if let Some(r) = &d.rule {
                ev.rule = r.to_string();
            }
            tracing::info!(exe = %exe, "new executable in the pod");
            out.push(ev);
        }
        out
    }

    /// Consumes `records` until the channel closes, snapshotting learning
    /// every `flush_every` (and once more at the end).
    ///
    /// Records are taken in batches: after the first of a burst the task
    /// waits [`BATCH_WINDOW`] and then drains what queued meanwhile. Woken
    /// per record instead, every request paid for a task wake-up on the
    /// data path's workers (often waking the other worker thread too).
    pub fn spawn(
        self,
        mut records: mpsc::Receiver<Arc<FlowRecord>>,
        flush_every: Duration,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(flush_every.max(Duration::from_millis(100)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    rec = records.recv() => match rec {
                        Some(rec) => {
                            self.deliver(&rec);
                            tokio::time::sleep(BATCH_WINDOW).await;
                            // Bounded by the channel's capacity; a closed
                            // channel ends the loop at the next recv.
                            while let Ok(rec) = records.try_recv() {
                                self.deliver(&rec);
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => self.flush().await,
                }
            }
            self.flush().await;
        })
    }

    fn deliver(&self, rec: &FlowRecord) {
        for ev in self.handle(rec) {
            if let Some(bus) = &self.events {
                bus.emit(ev);
            }
        }
    }

    async fn flush(&self) {
        if let Some(l) = &self.learning {
            let l = l.clone();
            // Disk I/O off the data path's workers.
            let _ = tokio::task::spawn_blocking(move || l.flush()).await;
        }
    }
}

/// Reports executables that start in the pod (see
/// [`crate::process::ExeWatcher`]) as `new_process` events, scanning /proc
/// every `every` on the blocking pool.
pub fn spawn_exe_watcher(
    learning: Arc<Learning>,
    events: Option<EventBus>,
    workload: String,
    pod: String,
    mode: impl Fn() -> podwarden_policy::Mode + Send + 'static,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let watcher = Arc::new(Mutex::new(crate::process::ExeWatcher::new(
            std::path::PathBuf::from("/proc"),
        )));
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(200)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (w, l) = (watcher.clone(), learning.clone());
            let found = tokio::task::spawn_blocking(move || match w.lock() {
                Ok(mut w) => w.scan(|exe| l.note_exe(exe)),
                Err(_) => Vec::new(),
            })
            .await
            .unwrap_or_default();
            for (pid, exe) in found {
                tracing::info!(pid, exe = %exe, "new executable in the pod");
                if let Some(bus) = &events {
                    let now = SystemTime::now();
                    let ms = now
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                        .unwrap_or(0);
                    let mut ev = SecurityEvent::new(
                        format!("exe-{ms:x}-{pid}"),
                        now,
                        &workload,
                        &pod,
                        EventKind::NewProcess,
                        mode(),
                    );
                    ev.process = Some(exe);
                    ev.details.insert("pid".into(), pid.to_string());
                    ev.action = EventAction::None;
                    bus.emit(ev);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests;
