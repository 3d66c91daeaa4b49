//! The contract between the data path, the policy engine and the learner.
//!
//! A [`Flow`] is what a decision sees; a [`Decision`] is what it returns; a
//! [`FlowRecord`] is what the proxy records afterwards (for `/flows`, metrics,
//! events and the learner). These types are plain data so that every consumer
//! can be tested without sockets.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which side of the pod opened the connection.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A peer outside the pod connected to the app.
    Inbound,
    /// The app connected to a peer outside the pod.
    Outbound,
}

/// Application protocol as recognised by detection (or the DNS listener).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// HTTP/1.0 or HTTP/1.1.
    Http,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// A TLS session; only the ClientHello was read.
    Tls,
    /// DNS over UDP/TCP through the proxy's DNS listener.
    Dns,
    /// Anything else: bytes are relayed without interpretation.
    Opaque,
}

impl AppProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Http => "http",
            AppProtocol::Http2 => "http2",
            AppProtocol::Tls => "tls",
            AppProtocol::Dns => "dns",
            AppProtocol::Opaque => "opaque",
        }
    }
}

/// The process inside the pod that owns the app side of the connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ProcessInfo {
    pub pid: u32,
    /// Absolute path of the executable (`/proc/PID/exe`).
    pub exe: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmdline: Vec<String>,
    pub uid: u32,
}

/// What an HTTP request asks for. Filled per request, not per connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct HttpRequestInfo {
    pub method: String,
    /// Host header (HTTP/1) or `:authority` (HTTP/2), without port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path without the query string.
    pub path: String,
    /// The authority a request asks to reach when it names one itself: a
    /// CONNECT target or an absolute-form URI (`GET http://other/ HTTP/1.1`).
    /// Judged like any other destination so that an allowed open proxy cannot
    /// become a tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Everything a decision is allowed to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Flow {
    pub direction: Direction,
    /// The remote side: the original destination for outbound flows, the
    /// client for inbound flows.
    pub peer: SocketAddr,
    /// The pod side: the app's socket for outbound flows, the original
    /// destination (the app's listening port) for inbound flows.
    pub local: SocketAddr,
    pub protocol: AppProtocol,
    /// TLS ClientHello SNI. Recorded, never trusted as proof of destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRequestInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    /// Names that the pod's resolver (through the proxy's DNS listener)
    /// actually returned `peer.ip()` for, still within their TTL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_names: Vec<String>,
    /// The question of a query through the proxy's DNS listener (DNS
    /// records only): what the learner learns allowed names from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsQueryInfo>,
}

/// One DNS question as the listener handled it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsQueryInfo {
    /// The name asked for, lower-case, without the trailing dot. A
    /// tunnelling-shaped name is masked (`***.t.example`): its leading
    /// labels are the data being carried out, and the flow log must not
    /// keep them.
    pub name: String,
    /// The question's type: `A`, `AAAA`, `TXT`, `TYPE65`...
    pub qtype: String,
    /// The answer's RCODE as the pod got it (`NOERROR`, `NXDOMAIN`,
    /// `REFUSED`...); none when no answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// The listener raised its own, more specific event for this query (a
    /// name not in the policy, a tunnelling-shaped query): the record raises
    /// no second one for the same query.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reported: bool,
}

impl DnsQueryInfo {
    /// The usual name of an RCODE (RFC 1035, 6895).
    pub fn rcode_name(rcode: u8) -> String {
        match rcode {
            0 => "NOERROR".into(),
            1 => "FORMERR".into(),
            2 => "SERVFAIL".into(),
            3 => "NXDOMAIN".into(),
            4 => "NOTIMP".into(),
            5 => "REFUSED".into(),
            n => format!("RCODE{n}"),
        }
    }

    /// Whether the name does not exist (the answer was NXDOMAIN).
    pub fn is_nxdomain(&self) -> bool {
        self.rcode.as_deref() == Some("NXDOMAIN")
    }
}

impl Flow {
    /// A connection-level flow before detection has finished.
    pub fn connection(direction: Direction, peer: SocketAddr, local: SocketAddr) -> Self {
        Flow {
            direction,
            peer,
            local,
            protocol: AppProtocol::Opaque,
            sni: None,
            alpn: Vec::new(),
            http: None,
            process: None,
            peer_names: Vec::new(),
            dns: None,
        }
    }

    /// The port the policy reasons about: the server's port (peer port for
    /// outbound, local port for inbound). Client ports are ephemeral noise.
    pub fn service_port(&self) -> u16 {
        match self.direction {
            Direction::Outbound => self.peer.port(),
            Direction::Inbound => self.local.port(),
        }
    }

    pub fn peer_ip(&self) -> IpAddr {
        self.peer.ip()
    }
}

/// Enforcement mode; mode semantics live in [`Decision::new`] only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Allow everything, record everything, feed the learner.
    #[default]
    Learn,
    /// Evaluate, allow, and report what would have been blocked.
    Monitor,
    /// Block what the policy does not allow (default deny).
    Protect,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Learn => "learn",
            Mode::Monitor => "monitor",
            Mode::Protect => "protect",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// The outcome of evaluating a flow against a policy in a mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    pub action: Action,
    /// The rule that allowed the flow, or `None` when no rule matched.
    /// Shared with the compiled rule, so a decision costs no allocation;
    /// serialised as a plain string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<str>>,
    pub mode: Mode,
    /// True when the policy does not allow the flow but the mode let it pass.
    pub would_deny: bool,
}

impl Decision {
    /// Applies mode semantics to a policy verdict (`matched` = the rule that
    /// allowed the flow, if any). The one place where modes are interpreted.
    pub fn new(mode: Mode, matched: Option<Arc<str>>) -> Self {
        let allowed_by_policy = matched.is_some();
        let action = match (mode, allowed_by_policy) {
            (Mode::Protect, false) => Action::Deny,
            _ => Action::Allow,
        };
        Decision {
            action,
            would_deny: !allowed_by_policy && mode == Mode::Monitor,
            rule: matched,
            mode,
        }
    }

    /// The decision used before any policy is loaded: learn, allow all.
    pub fn allow_learning() -> Self {
        Decision::new(Mode::Learn, None)
    }

    pub fn is_allowed(&self) -> bool {
        self.action == Action::Allow
    }

    /// What explain/events print for the deciding rule.
    pub fn rule_label(&self) -> &str {
        match (&self.rule, self.mode) {
            (Some(r), _) => r,
            (None, Mode::Protect) => "default deny",
            (None, Mode::Monitor) => "no rule, monitor",
            (None, Mode::Learn) => "no rule, learn",
        }
    }
}

/// The one decision hook the data path calls, once per connection and once
/// per HTTP request. Implementations must be pure and cheap: no I/O.
pub trait Decide: Send + Sync {
    fn decide(&self, flow: &Flow) -> Decision;
}

/// Allow-all hook used until a policy is configured (learn mode).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Decide for AllowAll {
    fn decide(&self, _flow: &Flow) -> Decision {
        Decision::allow_learning()
    }
}

/// A flow after the fact: what `/flows` shows, metrics count, and the
/// learner consumes. One per connection and one per HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FlowRecord {
    /// Stable id; also the event id when the flow raised an event.
    pub id: String,
    /// Unix time in milliseconds when the flow started.
    pub start_ms: u64,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub flow: Flow,
    /// Bytes sent from the app side towards the peer (outbound) or from the
    /// client to the app (inbound), i.e. from the connection's initiator.
    pub bytes_sent: u64,
    /// Bytes in the other direction.
    pub bytes_received: u64,
    pub decision: Decision,
    /// Kind of record: a whole connection or one HTTP request in it.
    pub kind: RecordKind,
    /// HTTP response status for request records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    Connection,
    Request,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_semantics() {
        let r: Option<Arc<str>> = Some("r1".into());
        assert_eq!(Decision::new(Mode::Learn, None).action, Action::Allow);
        assert!(!Decision::new(Mode::Learn, None).would_deny);
        let m = Decision::new(Mode::Monitor, None);
        assert_eq!(m.action, Action::Allow);
        assert!(m.would_deny);
        assert_eq!(m.rule_label(), "no rule, monitor");
        assert!(!Decision::new(Mode::Monitor, r.clone()).would_deny);
        let p = Decision::new(Mode::Protect, None);
        assert_eq!(p.action, Action::Deny);
        assert!(!p.would_deny);
        assert_eq!(p.rule_label(), "default deny");
        assert_eq!(Decision::new(Mode::Protect, r).action, Action::Allow);
    }

    #[test]
    fn service_port_is_server_side() {
        let peer: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let local: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        assert_eq!(
            Flow::connection(Direction::Outbound, peer, local).service_port(),
            443
        );
        let client: SocketAddr = "203.0.113.5:51000".parse().unwrap();
        let app: SocketAddr = "192.0.2.2:8080".parse().unwrap();
        assert_eq!(
            Flow::connection(Direction::Inbound, client, app).service_port(),
            8080
        );
    }

    #[test]
    fn record_roundtrips_as_json() {
        let peer: SocketAddr = "[2001:db8::1]:6379".parse().unwrap();
        let local: SocketAddr = "[2001:db8::2]:40000".parse().unwrap();
        let rec = FlowRecord {
            id: "f-1".into(),
            start_ms: 1,
            duration_ms: 2,
            flow: Flow::connection(Direction::Outbound, peer, local),
            bytes_sent: 3,
            bytes_received: 4,
            decision: Decision::allow_learning(),
            kind: RecordKind::Connection,
            status: None,
        };
        let json = serde_json::to_string(&rec).unwrap();
        assert!(!json.contains("\"dns\""), "absent, not null: {json}");
        let back: FlowRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn dns_question_is_optional_and_roundtrips() {
        let peer: SocketAddr = "198.51.100.53:53".parse().unwrap();
        let local: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let mut flow = Flow::connection(Direction::Outbound, peer, local);
        flow.protocol = AppProtocol::Dns;
        // A record written before the field existed still reads.
        let old = serde_json::to_value(&flow).unwrap();
        assert!(old.get("dns").is_none());
        let back: Flow = serde_json::from_value(old).unwrap();
        assert_eq!(back.dns, None);

        flow.dns = Some(DnsQueryInfo {
            name: "api.example".into(),
            qtype: "AAAA".into(),
            rcode: Some(DnsQueryInfo::rcode_name(3)),
            reported: false,
        });
        let j = serde_json::to_value(&flow).unwrap();
        assert_eq!(j["dns"]["name"], "api.example");
        assert_eq!(j["dns"]["rcode"], "NXDOMAIN");
        assert!(j["dns"].get("reported").is_none(), "false is left out");
        let back: Flow = serde_json::from_value(j).unwrap();
        assert_eq!(back, flow);
        assert!(back.dns.unwrap().is_nxdomain());
        assert_eq!(DnsQueryInfo::rcode_name(0), "NOERROR");
        assert_eq!(DnsQueryInfo::rcode_name(9), "RCODE9");
    }
}
