//! The security event: one typed record per violation, would-block, mode
//! change, policy reload, WAF/DLP hit, new process or DNS tunnelling
//! attempt, serialised as one JSON line. Its `id` is the id shown in a 403
//! (the flow record's id when a flow caused it).
//!
//! Events never hold secrets: constructors take what a SOC needs (who,
//! where, which rule) and the masking helpers in [`crate::mask`] are applied
//! to anything that might carry credentials or personal data (command lines,
//! DLP samples, query strings).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::flow::{Action, Decision, Direction, FlowRecord, Mode};
use crate::mask::{mask_cmdline, mask_query, mask_secret};

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// Protect mode blocked a flow the policy does not allow.
    Violation,
    /// Monitor mode let through a flow that protect would block.
    WouldBlock,
    /// A feature's mode changed (e.g. on reload).
    ModeChange {
        feature: String,
        from: Mode,
        to: Mode,
    },
    /// A policy reload was attempted.
    PolicyReload {
        result: ReloadResult,
        /// Version now enforced (the old one when the reload failed).
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    WafHit {
        rule_ids: Vec<String>,
        score: u32,
    },
    /// `sample` is masked at construction.
    DlpHit {
        sensor: String,
        sample: String,
    },
    /// An executable not seen before (learn) or outside the baseline.
    NewProcess,
    /// A tunnelling-shaped DNS query.
    DnsTunneling {
        query: String,
        qtype: String,
        refused: bool,
    },
    /// Events a sink could not take (queue full or delivery failed), reported
    /// so that losses are visible in the event stream itself.
    EventsDropped {
        sink: String,
        count: u64,
    },
}

impl EventKind {
    /// The `kind` tag as serialised (`violation`, `policy_reload`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Violation => "violation",
            EventKind::WouldBlock => "would_block",
            EventKind::ModeChange { .. } => "mode_change",
            EventKind::PolicyReload { .. } => "policy_reload",
            EventKind::WafHit { .. } => "waf_hit",
            EventKind::DlpHit { .. } => "dlp_hit",
            EventKind::NewProcess => "new_process",
            EventKind::DnsTunneling { .. } => "dns_tunneling",
            EventKind::EventsDropped { .. } => "events_dropped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadResult {
    Ok,
    Error,
}

/// What was done about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Blocked,
    Allowed,
    /// Allowed only because of monitor/learn mode.
    WouldBlock,
    /// Nothing to enforce (reloads, mode changes).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityEvent {
    /// Stable id; the id in the 403 body and `x-podwarden-event-id`.
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `namespace/name` of the workload.
    pub workload: String,
    pub pod: String,
    #[serde(flatten)]
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<SocketAddr>,
    /// Names the resolver returned for the peer (and SNI/Host as claimed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Executable path of the process in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The deciding rule id; for flows without one, what decided instead
    /// ([`Decision::rule_label`]: "default deny", "no rule, monitor");
    /// "no rule" for events not about a flow.
    pub rule: String,
    pub mode: Mode,
    pub action: EventAction,
    /// Free-form context, already masked.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

pub const NO_RULE: &str = "no rule";

/// `SystemTime` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl SecurityEvent {
    /// An event with no flow attached (reloads, mode changes).
    pub fn new(
        id: String,
        time: SystemTime,
        workload: &str,
        pod: &str,
        kind: EventKind,
        mode: Mode,
    ) -> Self {
        SecurityEvent {
            id,
            time: rfc3339(time),
            workload: workload.to_string(),
            pod: pod.to_string(),
            kind,
            direction: None,
            peer: None,
            names: Vec::new(),
            process: None,
            rule: NO_RULE.to_string(),
            mode,
            action: EventAction::None,
            details: BTreeMap::new(),
        }
    }

    /// The event a decided flow raises: a violation when it was blocked, a
    /// would-block when monitor let it pass, nothing when the policy allowed
    /// it (or learn mode recorded it). A DNS query the listener already
    /// reported with its own event (`DnsQueryInfo::reported`) raises none
    /// here: one refused query, one event.
    pub fn from_record(rec: &FlowRecord, workload: &str, pod: &str) -> Option<SecurityEvent> {
        if rec.flow.dns.as_ref().is_some_and(|q| q.reported) {
            return None;
        }
        let d: &Decision = &rec.decision;
        let (kind, action) = match (d.action, d.would_deny) {
            (Action::Deny, _) => (EventKind::Violation, EventAction::Blocked),
            (Action::Allow, true) => (EventKind::WouldBlock, EventAction::WouldBlock),
            (Action::Allow, false) => return None,
        };
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(rec.start_ms);
        let mut e = SecurityEvent::new(rec.id.clone(), time, workload, pod, kind, d.mode);
        e.action = action;
        e.rule = d.rule_label().to_string();
        e.with_flow(rec);
        Some(e)
    }

    /// Fills direction, peer, names, process and request details from a
    /// record, masking what may carry secrets.
    pub fn with_flow(&mut self, rec: &FlowRecord) -> &mut Self {
        let f = &rec.flow;
        self.direction = Some(f.direction);
        self.peer = Some(f.peer);
        // The pod side: an inbound flow's service port, needed to explain it later.
        self.details.insert("local".into(), f.local.to_string());
        self.names = f.peer_names.clone();
        self.process = f.process.as_ref().map(|p| p.exe.clone());
        self.details
            .insert("protocol".into(), f.protocol.as_str().into());
        if let Some(sni) = &f.sni {
            self.details.insert("sni".into(), sni.clone());
        }
        if let Some(q) = &f.dns {
            // Already masked by the listener when tunnelling-shaped.
            self.details.insert("query".into(), q.name.clone());
            self.details.insert("qtype".into(), q.qtype.clone());
            if let Some(r) = &q.rcode {
                self.details.insert("answer".into(), r.clone());
            }
        }
        if let Some(p) = &f.process {
            if !p.cmdline.is_empty() {
                self.details
                    .insert("cmdline".into(), mask_cmdline(&p.cmdline).join(" "));
            }
            self.details.insert("pid".into(), p.pid.to_string());
            self.details.insert("uid".into(), p.uid.to_string());
        }
        if let Some(h) = &f.http {
            self.details.insert("method".into(), h.method.clone());
            self.details.insert("path".into(), mask_query(&h.path));
            if let Some(host) = &h.host {
                self.details.insert("host".into(), host.clone());
            }
            if let Some(t) = &h.target {
                self.details
                    .insert("target".into(), crate::mask::mask_userinfo(&mask_query(t)));
            }
        }
        if let Some(s) = rec.status {
            self.details.insert("status".into(), s.to_string());
        }
        self
    }

    /// A DLP hit; the matched value is masked here, never stored raw.
    pub fn dlp_hit(
        id: String,
        time: SystemTime,
        workload: &str,
        pod: &str,
        mode: Mode,
        sensor: &str,
        matched: &str,
    ) -> Self {
        let kind = EventKind::DlpHit {
            sensor: sensor.to_string(),
            sample: mask_secret(matched),
        };
        SecurityEvent::new(id, time, workload, pod, kind, mode)
    }

    /// Adds a detail that may hold a secret; stored masked.
    pub fn detail_masked(&mut self, key: &str, value: &str) -> &mut Self {
        self.details.insert(key.to_string(), mask_secret(value));
        self
    }

    /// One JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serialising plain strings, numbers and maps cannot fail.
        serde_json::to_string(self)
            .unwrap_or_else(|e| format!("{{\"id\":{:?},\"error\":{:?}}}", self.id, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{AppProtocol, Flow, HttpRequestInfo, ProcessInfo, RecordKind};

    fn record(decision: Decision) -> FlowRecord {
        let mut flow = Flow::connection(
            Direction::Outbound,
            "203.0.113.9:443".parse().unwrap(),
            "10.0.0.2:40000".parse().unwrap(),
        );
        flow.protocol = AppProtocol::Http;
        flow.peer_names = vec!["x.example".into()];
        flow.process = Some(ProcessInfo {
            pid: 42,
            exe: "/usr/bin/curl".into(),
            cmdline: vec![
                "curl".into(),
                "--password".into(),
                "hunter2".into(),
                "https://u:pw@h.example/".into(),
            ],
            uid: 1000,
        });
        flow.http = Some(HttpRequestInfo {
            method: "GET".into(),
            host: Some("x.example".into()),
            path: "/login?token=abc123".into(),
            target: Some("http://u:pw2@y.example/?k=v".into()),
        });
        FlowRecord {
            id: "18c-1-0".into(),
            start_ms: 1_700_000_000_123,
            duration_ms: 1,
            flow,
            bytes_sent: 0,
            bytes_received: 0,
            decision,
            kind: RecordKind::Request,
            status: Some(403),
        }
    }

    #[test]
    fn violation_from_record_is_a_masked_json_line() {
        let e = SecurityEvent::from_record(
            &record(Decision::new(Mode::Protect, None)),
            "shop/checkout",
            "checkout-7d9",
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Violation);
        assert_eq!(e.action, EventAction::Blocked);
        assert_eq!(e.rule, "default deny");
        assert_eq!(e.details["local"], "10.0.0.2:40000");
        assert_eq!(e.time, "2023-11-14T22:13:20.123Z");
        let line = e.to_json_line();
        assert!(!line.contains('\n'));
        for leaked in ["hunter2", "abc123", ":pw@", "pw2", "k=v"] {
            assert!(!line.contains(leaked), "{leaked} leaked: {line}");
        }
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["kind"], "violation");
        assert_eq!(v["id"], "18c-1-0");
        assert_eq!(v["workload"], "shop/checkout");
        assert_eq!(v["direction"], "outbound");
        assert_eq!(v["peer"], "203.0.113.9:443");
        assert_eq!(v["names"][0], "x.example");
        assert_eq!(v["process"], "/usr/bin/curl");
        assert_eq!(v["mode"], "protect");
        assert_eq!(v["action"], "blocked");
        assert_eq!(v["details"]["path"], "/login?token=***");
        let back: SecurityEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn monitor_gives_would_block_and_allowed_flows_give_nothing() {
        let e = SecurityEvent::from_record(&record(Decision::new(Mode::Monitor, None)), "a/b", "p")
            .unwrap();
        assert_eq!(
            (e.kind, e.action),
            (EventKind::WouldBlock, EventAction::WouldBlock)
        );
        assert_eq!(e.rule, "no rule, monitor");
        assert!(SecurityEvent::from_record(
            &record(Decision::new(Mode::Protect, Some("r".into()))),
            "a/b",
            "p"
        )
        .is_none());
        assert!(
            SecurityEvent::from_record(&record(Decision::new(Mode::Learn, None)), "a/b", "p")
                .is_none()
        );
    }

    #[test]
    fn dns_records_name_the_query_unless_the_listener_reported_it() {
        let mut rec = record(Decision::new(Mode::Protect, None));
        rec.flow.http = None;
        rec.flow.protocol = crate::flow::AppProtocol::Dns;
        rec.flow.dns = Some(crate::flow::DnsQueryInfo {
            name: "api.example".into(),
            qtype: "A".into(),
            rcode: Some("REFUSED".into()),
            reported: false,
        });
        let e = SecurityEvent::from_record(&rec, "a/b", "p").unwrap();
        assert_eq!(e.details["query"], "api.example");
        assert_eq!(e.details["qtype"], "A");
        assert_eq!(e.details["answer"], "REFUSED");
        if let Some(q) = rec.flow.dns.as_mut() {
            q.reported = true;
        }
        assert!(SecurityEvent::from_record(&rec, "a/b", "p").is_none());
    }

    #[test]
    fn other_kinds_serialise_with_their_fields() {
        let t = SystemTime::UNIX_EPOCH;
        let reload = SecurityEvent::new(
            "r1".into(),
            t,
            "a/b",
            "p",
            EventKind::PolicyReload {
                result: ReloadResult::Error,
                version: 3,
                error: Some("p.yaml:4:7: spec.rules[0].id: duplicate".into()),
            },
            Mode::Protect,
        );
        let v: serde_json::Value = serde_json::from_str(&reload.to_json_line()).unwrap();
        assert_eq!(v["kind"], "policy_reload");
        assert_eq!(v["result"], "error");
        assert_eq!(v["version"], 3);
        assert_eq!(v["rule"], "no rule");
        assert_eq!(v["action"], "none");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");

        let dlp = SecurityEvent::dlp_hit(
            "d1".into(),
            t,
            "a/b",
            "p",
            Mode::Monitor,
            "credit_card",
            "4111111111111111",
        );
        let line = dlp.to_json_line();
        assert!(!line.contains("4111111111111111"), "{line}");
        assert!(line.contains("************1111"), "{line}");

        let mc = SecurityEvent::new(
            "m1".into(),
            t,
            "a/b",
            "p",
            EventKind::ModeChange {
                feature: "network".into(),
                from: Mode::Monitor,
                to: Mode::Protect,
            },
            Mode::Protect,
        );
        let back: SecurityEvent = serde_json::from_str(&mc.to_json_line()).unwrap();
        assert_eq!(back, mc);

        // `name()` is the serialised tag, for every kind.
        let kinds = [
            EventKind::Violation,
            EventKind::WouldBlock,
            EventKind::ModeChange {
                feature: "waf".into(),
                from: Mode::Learn,
                to: Mode::Monitor,
            },
            EventKind::PolicyReload {
                result: ReloadResult::Ok,
                version: 1,
                error: None,
            },
            EventKind::WafHit {
                rule_ids: vec!["942100".into()],
                score: 5,
            },
            EventKind::DlpHit {
                sensor: "iban".into(),
                sample: "***".into(),
            },
            EventKind::NewProcess,
            EventKind::DnsTunneling {
                query: "x".into(),
                qtype: "TXT".into(),
                refused: true,
            },
            EventKind::EventsDropped {
                sink: "webhook".into(),
                count: 3,
            },
        ];
        for k in kinds {
            let e = SecurityEvent::new("k".into(), t, "a/b", "p", k.clone(), Mode::Learn);
            let v: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
            assert_eq!(v["kind"], k.name());
        }
    }
}
