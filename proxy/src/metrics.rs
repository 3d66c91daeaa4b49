//! The data path's own metrics (other modules register theirs in the same
//! registry). Names follow Prometheus conventions: `_total` counters, bytes
//! in bytes, low-cardinality labels only.

use podwarden_policy::{Action, AppProtocol, Decision, Direction};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct ProxyMetrics {
    pub connections: IntCounterVec,
    pub active: IntGaugeVec,
    pub requests: IntCounterVec,
    pub bytes: IntCounterVec,
    pub errors: IntCounterVec,
    pub inspector_blocks: IntCounterVec,
}

pub fn direction_label(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// `allow`, `deny`, or `would_deny` (monitor mode let it pass).
pub fn verdict_label(d: &Decision) -> &'static str {
    match (d.action, d.would_deny) {
        (Action::Deny, _) => "deny",
        (Action::Allow, true) => "would_deny",
        (Action::Allow, false) => "allow",
    }
}

impl ProxyMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let connections = IntCounterVec::new(
            Opts::new(
                "podwarden_connections_total",
                "TCP connections handled, by direction, protocol and verdict.",
            ),
            &["direction", "protocol", "verdict"],
        )?;
        let active = IntGaugeVec::new(
            Opts::new(
                "podwarden_active_connections",
                "TCP connections currently open through the proxy.",
            ),
            &["direction"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "podwarden_http_requests_total",
                "HTTP requests handled, by direction and verdict.",
            ),
            &["direction", "verdict"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "podwarden_bytes_total",
                "Bytes relayed; stream=sent is from the connection's initiator, received towards it.",
            ),
            &["direction", "stream"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "podwarden_connection_errors_total",
                "Per-connection failures, by direction and stage.",
            ),
            &["direction", "stage"],
        )?;
        let inspector_blocks = IntCounterVec::new(
            Opts::new(
                "podwarden_inspector_blocks_total",
                "Requests or streams stopped by an inspector, by phase.",
            ),
            &["direction", "phase"],
        )?;
        for c in [&connections, &requests, &bytes, &errors, &inspector_blocks] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(active.clone()))?;
        Ok(ProxyMetrics {
            connections,
            active,
            requests,
            bytes,
            errors,
            inspector_blocks,
        })
    }

    pub fn connection(&self, dir: Direction, proto: AppProtocol, decision: &Decision) {
        self.connections
            .with_label_values(&[
                direction_label(dir),
                proto.as_str(),
                verdict_label(decision),
            ])
            .inc();
    }

    pub fn bytes(&self, dir: Direction, sent: u64, received: u64) {
        let d = direction_label(dir);
        self.bytes.with_label_values(&[d, "sent"]).inc_by(sent);
        self.bytes
            .with_label_values(&[d, "received"])
            .inc_by(received);
    }

    pub fn error(&self, dir: Direction, stage: &'static str) {
        self.errors
            .with_label_values(&[direction_label(dir), stage])
            .inc();
    }
}
