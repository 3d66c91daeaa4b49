//! The data path's own metrics (other modules register theirs in the same
//! registry). Names follow Prometheus conventions: `_total` counters, bytes
//! in bytes, low-cardinality labels only.

use podwarden_policy::{Action, AppProtocol, Decision, Direction};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct ProxyMetrics {
    pub connections: IntCounterVec,
    pub active: IntGaugeVec,
    pub requests: IntCounterVec,
    pub bytes: IntCounterVec,
    pub errors: IntCounterVec,
    pub inspector_blocks: IntCounterVec,
    hot: Hot,
}

/// Children of the per-request and per-connection series, resolved once:
/// `with_label_values` hashes the labels and takes a lock on every call.
/// Indexed by [`dir_index`] (and verdict / stream).
#[derive(Clone)]
struct Hot {
    active: [IntGauge; 2],
    /// `[direction][allow, deny, would_deny]`
    requests: [[IntCounter; 3]; 2],
    /// `[direction][sent, received]`
    bytes: [[IntCounter; 2]; 2],
}

const DIRS: [&str; 2] = ["inbound", "outbound"];
const VERDICTS: [&str; 3] = ["allow", "deny", "would_deny"];

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

fn verdict_index(d: &Decision) -> usize {
    match verdict_label(d) {
        "allow" => 0,
        "deny" => 1,
        _ => 2,
    }
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
        let hot = Hot {
            active: DIRS.map(|d| active.with_label_values(&[d])),
            requests: DIRS.map(|d| VERDICTS.map(|v| requests.with_label_values(&[d, v]))),
            bytes: DIRS.map(|d| ["sent", "received"].map(|s| bytes.with_label_values(&[d, s]))),
        };
        Ok(ProxyMetrics {
            hot,
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
        let [s, r] = &self.hot.bytes[dir_index(dir)];
        s.inc_by(sent);
        r.inc_by(received);
    }

    /// One HTTP request decided.
    pub fn request(&self, dir: Direction, decision: &Decision) {
        self.hot.requests[dir_index(dir)][verdict_index(decision)].inc();
    }

    /// The open-connections gauge for `dir`.
    pub fn active(&self, dir: Direction) -> &IntGauge {
        &self.hot.active[dir_index(dir)]
    }

    pub fn error(&self, dir: Direction, stage: &'static str) {
        self.errors
            .with_label_values(&[direction_label(dir), stage])
            .inc();
    }
}
