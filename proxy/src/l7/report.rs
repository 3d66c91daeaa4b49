//! What the WAF and DLP inspectors report: security events (through the
//! event bus) and Prometheus counters. Nothing here ever receives a
//! sensitive value: DLP findings carry masked excerpts only, and flow
//! details are reduced to method, host and path (no query string).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use podwarden_policy::events::{EventAction, EventKind, SecurityEvent};
use podwarden_policy::{Direction, Flow, Mode};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::events::EventBus;
use crate::metrics::direction_label;

#[derive(Clone)]
pub struct L7Metrics {
    /// WAF verdicts by result: pass, detected (rules matched below the
    /// threshold), would_block (learn/monitor), blocked.
    pub waf_requests: IntCounterVec,
    /// WAF evaluation time by phase (request, response).
    pub waf_seconds: HistogramVec,
    /// DLP findings by sensor, direction and action.
    pub dlp_findings: IntCounterVec,
    /// Bytes the DLP scanners looked at, by direction.
    pub dlp_bytes: IntCounterVec,
}

impl L7Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let waf_requests = IntCounterVec::new(
            Opts::new(
                "podwarden_waf_requests_total",
                "Inbound HTTP requests the WAF evaluated, by result (pass, detected, would_block, blocked).",
            ),
            &["result"],
        )?;
        let waf_seconds = HistogramVec::new(
            HistogramOpts::new(
                "podwarden_waf_evaluation_seconds",
                "Time the WAF spent on one request or response, by phase.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
            ]),
            &["phase"],
        )?;
        let dlp_findings = IntCounterVec::new(
            Opts::new(
                "podwarden_dlp_findings_total",
                "DLP findings, by sensor, direction and action (blocked, would_block, allowed).",
            ),
            &["sensor", "direction", "action"],
        )?;
        let dlp_bytes = IntCounterVec::new(
            Opts::new(
                "podwarden_dlp_scanned_bytes_total",
                "Bytes the DLP scanners inspected, by direction.",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(waf_requests.clone()))?;
        registry.register(Box::new(waf_seconds.clone()))?;
        registry.register(Box::new(dlp_findings.clone()))?;
        registry.register(Box::new(dlp_bytes.clone()))?;
        Ok(L7Metrics {
            waf_requests,
            waf_seconds,
            dlp_findings,
            dlp_bytes,
        })
    }
}

type Sink = Arc<dyn Fn(SecurityEvent) + Send + Sync>;

/// Emits events stamped with the workload and pod, and counts.
#[derive(Clone)]
pub struct Reporter {
    sink: Option<Sink>,
    workload: Arc<str>,
    pod: Arc<str>,
    pub metrics: L7Metrics,
}

impl Reporter {
    pub fn new(bus: Option<EventBus>, workload: &str, pod: &str, metrics: L7Metrics) -> Self {
        let sink: Option<Sink> = bus.map(|b| Arc::new(move |e| b.emit(e)) as Sink);
        Reporter {
            sink,
            workload: workload.into(),
            pod: pod.into(),
            metrics,
        }
    }

    /// Events go to `sink` (tests collect them).
    pub fn with_sink(
        sink: impl Fn(SecurityEvent) + Send + Sync + 'static,
        metrics: L7Metrics,
    ) -> Self {
        Reporter {
            sink: Some(Arc::new(sink)),
            workload: "test/workload".into(),
            pod: "test-pod".into(),
            metrics,
        }
    }

    /// No events, metrics on a private registry.
    #[cfg(test)]
    pub fn detached() -> Self {
        let metrics = L7Metrics::new(&Registry::new()).unwrap();
        Reporter {
            sink: None,
            workload: "".into(),
            pod: "".into(),
            metrics,
        }
    }

    /// An event about `flow`, filled with what a SOC needs and nothing that
    /// may carry the payload.
    pub fn event(
        &self,
        id: &str,
        kind: EventKind,
        mode: Mode,
        action: EventAction,
        rule: String,
        flow: &FlowSummary,
    ) -> SecurityEvent {
        let mut e = SecurityEvent::new(
            id.to_string(),
            SystemTime::now(),
            &self.workload,
            &self.pod,
            kind,
            mode,
        );
        e.action = action;
        e.rule = rule;
        e.direction = Some(flow.direction);
        e.peer = Some(flow.peer);
        e.names = flow.names.clone();
        e.process = flow.process.clone();
        e.details
            .insert("protocol".into(), flow.protocol.to_string());
        if let Some(m) = &flow.method {
            e.details.insert("method".into(), m.clone());
        }
        if let Some(p) = &flow.path {
            e.details.insert("path".into(), p.clone());
        }
        if let Some(h) = &flow.host {
            e.details.insert("host".into(), h.clone());
        }
        e
    }

    pub fn emit(&self, e: SecurityEvent) {
        if let Some(s) = &self.sink {
            s(e);
        }
    }

    pub fn observe_waf(&self, phase: &str, took: Duration) {
        self.metrics
            .waf_seconds
            .with_label_values(&[phase])
            .observe(took.as_secs_f64());
    }
}

/// The parts of a flow an L7 event shows (the path without its query: query
/// values may hold the very data DLP looks for).
#[derive(Debug, Clone)]
pub struct FlowSummary {
    pub direction: Direction,
    pub peer: std::net::SocketAddr,
    pub protocol: &'static str,
    pub names: Vec<String>,
    pub process: Option<String>,
    pub method: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
}

impl FlowSummary {
    pub fn of(flow: &Flow) -> FlowSummary {
        FlowSummary {
            direction: flow.direction,
            peer: flow.peer,
            protocol: flow.protocol.as_str(),
            names: flow.peer_names.clone(),
            process: flow.process.as_ref().map(|p| p.exe.clone()),
            method: flow.http.as_ref().map(|h| h.method.clone()),
            host: flow.http.as_ref().and_then(|h| h.host.clone()),
            path: flow.http.as_ref().map(|h| h.path.clone()),
        }
    }

    pub fn direction_label(&self) -> &'static str {
        direction_label(self.direction)
    }
}
