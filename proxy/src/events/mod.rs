//! Security event delivery: a bounded queue per sink (stdout JSON lines, a
//! rotating file, RFC 5424 syslog over UDP/TCP, an HTTP webhook with retry).
//!
//! [`EventBus::emit`] never blocks the data path: it offers the event to
//! each sink's queue. A full queue or a failed delivery is counted
//! (`podwarden_events_dropped_total{sink,reason}`) and reported as an
//! `events_dropped` event through that sink once it has room again, so a
//! loss is never silent. Each sink runs on its own task: a slow webhook does
//! not hold up the file or stdout.

pub mod file;
pub mod sinks_file;
pub mod syslog;
pub mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use podwarden_policy::events::{EventKind, SecurityEvent};
use podwarden_policy::Mode;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use file::{RotatingFile, RotatingFileConfig};
pub use sinks_file::{load_sinks, SinksFileError};
pub use syslog::{format_rfc5424, SyslogConfig, SyslogTransport};
pub use webhook::WebhookConfig;

/// Where events go; several may be configured at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    Stdout,
    File(RotatingFileConfig),
    Syslog(SyslogConfig),
    Webhook(WebhookConfig),
}

impl SinkConfig {
    pub fn name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout => "stdout",
            SinkConfig::File(_) => "file",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Webhook(_) => "webhook",
        }
    }
}

#[derive(Clone)]
pub struct EventMetrics {
    /// Delivered, by sink.
    pub delivered: IntCounterVec,
    /// Lost, by sink and reason (`queue_full`, `send_failed`).
    pub dropped: IntCounterVec,
}

impl EventMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let delivered = IntCounterVec::new(
            Opts::new(
                "podwarden_events_delivered_total",
                "Security events delivered, by sink.",
            ),
            &["sink"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "podwarden_events_dropped_total",
                "Security events a sink lost, by sink and reason (queue_full, send_failed).",
            ),
            &["sink", "reason"],
        )?;
        registry.register(Box::new(delivered.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(EventMetrics { delivered, dropped })
    }
}

/// Losses not yet reported in the stream, shared by the bus and a sink task.
#[derive(Default)]
struct Unreported(AtomicU64);

struct SinkHandle {
    name: &'static str,
    tx: mpsc::Sender<Arc<SecurityEvent>>,
    unreported: Arc<Unreported>,
}

/// Identity stamped on `events_dropped` reports.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub workload: String,
    pub pod: String,
    /// The workload's network mode, for the report's `mode` field.
    pub mode: Mode,
}

/// The bounded fan-out in front of the sinks. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    sinks: Arc<Vec<SinkHandle>>,
    metrics: EventMetrics,
}

impl EventBus {
    /// Starts one task per sink, each behind a queue of `capacity` events.
    /// Must be called inside a tokio runtime.
    pub fn start(
        sinks: Vec<SinkConfig>,
        capacity: usize,
        origin: Origin,
        metrics: EventMetrics,
    ) -> (EventBus, Vec<JoinHandle<()>>) {
        let mut handles = Vec::new();
        let mut tasks = Vec::new();
        for cfg in sinks {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            let unreported = Arc::new(Unreported::default());
            let name = cfg.name();
            let worker = Worker {
                name,
                rx,
                unreported: unreported.clone(),
                metrics: metrics.clone(),
                origin: origin.clone(),
            };
            tasks.push(tokio::spawn(worker.run(cfg)));
            handles.push(SinkHandle {
                name,
                tx,
                unreported,
            });
        }
        (
            EventBus {
                sinks: Arc::new(handles),
                metrics,
            },
            tasks,
        )
    }

    /// Offers `event` to every sink without waiting.
    pub fn emit(&self, event: SecurityEvent) {
        let event = Arc::new(event);
        for s in self.sinks.iter() {
            if s.tx.try_send(event.clone()).is_err() {
                self.metrics
                    .dropped
                    .with_label_values(&[s.name, "queue_full"])
                    .inc();
                s.unreported.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

struct Worker {
    name: &'static str,
    rx: mpsc::Receiver<Arc<SecurityEvent>>,
    unreported: Arc<Unreported>,
    metrics: EventMetrics,
    origin: Origin,
}

/// One way of writing a batch of events; `Err` means they were lost.
enum Writer {
    Stdout(tokio::io::Stdout),
    File(Box<RotatingFile>),
    Syslog(syslog::SyslogSender),
    Webhook(webhook::WebhookSender),
}

impl Writer {
    async fn open(cfg: SinkConfig) -> Result<Writer, String> {
        Ok(match cfg {
            SinkConfig::Stdout => Writer::Stdout(tokio::io::stdout()),
            SinkConfig::File(c) => {
                Writer::File(Box::new(RotatingFile::open(c).map_err(|e| e.to_string())?))
            }
            SinkConfig::Syslog(c) => Writer::Syslog(syslog::SyslogSender::new(c)),
            SinkConfig::Webhook(c) => {
                Writer::Webhook(webhook::WebhookSender::new(c).map_err(|e| e.to_string())?)
            }
        })
    }

    async fn write(&mut self, batch: &[Arc<SecurityEvent>]) -> Result<(), String> {
        match self {
            Writer::Stdout(out) => {
                let mut buf = String::new();
                for e in batch {
                    buf.push_str(&e.to_json_line());
                    buf.push('\n');
                }
                out.write_all(buf.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                out.flush().await.map_err(|e| e.to_string())
            }
            Writer::File(f) => {
                // Small appends; rotation renames are rare. Kept on this task
                // (the sink's own) rather than a blocking pool for simplicity.
                for e in batch {
                    f.write_line(&e.to_json_line()).map_err(|e| e.to_string())?;
                }
                f.flush().map_err(|e| e.to_string())
            }
            Writer::Syslog(s) => s.send(batch).await,
            Writer::Webhook(w) => w.send(batch).await,
        }
    }
}

const MAX_BATCH: usize = 64;

impl Worker {
    async fn run(mut self, cfg: SinkConfig) {
        let mut writer = match Writer::open(cfg).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(sink = self.name, error = %e, "event sink could not start; its events are counted as dropped");
                None
            }
        };
        let mut batch: Vec<Arc<SecurityEvent>> = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.rx.recv().await {
            batch.clear();
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            // Losses happened while the queue was full, i.e. after what was
            // in it: the report goes after those events.
            let lost = self.unreported.0.swap(0, Ordering::Relaxed);
            if lost > 0 {
                batch.push(Arc::new(self.dropped_report(lost)));
            }
            let result = match writer.as_mut() {
                Some(w) => w.write(&batch).await,
                None => Err("sink not started".into()),
            };
            let n = batch.len() as u64;
            match result {
                Ok(()) => self
                    .metrics
                    .delivered
                    .with_label_values(&[self.name])
                    .inc_by(n),
                Err(e) => {
                    tracing::warn!(sink = self.name, events = n, error = %e, "event delivery failed");
                    self.metrics
                        .dropped
                        .with_label_values(&[self.name, "send_failed"])
                        .inc_by(n);
                    // Reported with the next batch: the events of this batch
                    // (not counting the report) plus what the lost report covered.
                    let real = if lost > 0 { n - 1 } else { n };
                    self.unreported.0.fetch_add(real + lost, Ordering::Relaxed);
                }
            }
        }
    }

    fn dropped_report(&self, count: u64) -> SecurityEvent {
        let id = format!("drop-{}-{}", self.name, crate_now_ms());
        SecurityEvent::new(
            id,
            SystemTime::now(),
            &self.origin.workload,
            &self.origin.pod,
            EventKind::EventsDropped {
                sink: self.name.to_string(),
                count,
            },
            self.origin.mode,
        )
    }
}

fn crate_now_ms() -> u128 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Exponential backoff with a cap, shared by the network sinks.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.min(16)).min(max)
}

#[cfg(test)]
mod tests;
