//! Flow record builders for unit tests.

use podwarden_policy::{
    AppProtocol, Decision, Direction, DnsQueryInfo, Flow, FlowRecord, HttpRequestInfo, ProcessInfo,
    RecordKind,
};

pub fn out(peer: &str, local_port: u16, proto: AppProtocol) -> FlowRecord {
    let peer = peer.parse().unwrap();
    let local = format!("10.0.0.5:{local_port}").parse().unwrap();
    rec(Flow {
        protocol: proto,
        ..Flow::connection(Direction::Outbound, peer, local)
    })
}

pub fn inb(client: &str, app_port: u16, proto: AppProtocol) -> FlowRecord {
    let peer = client.parse().unwrap();
    let local = format!("10.0.0.5:{app_port}").parse().unwrap();
    rec(Flow {
        protocol: proto,
        ..Flow::connection(Direction::Inbound, peer, local)
    })
}

/// A query through the DNS listener to the resolver 10.96.0.10, answered
/// `rcode`.
pub fn dns(name: &str, rcode: &str) -> FlowRecord {
    let mut r = out("10.96.0.10:53", 40000, AppProtocol::Dns);
    r.flow.dns = Some(DnsQueryInfo {
        name: name.into(),
        qtype: "A".into(),
        rcode: Some(rcode.into()),
        reported: false,
    });
    r
}

fn rec(flow: Flow) -> FlowRecord {
    FlowRecord {
        id: "f".into(),
        start_ms: 1_700_000_000_000,
        duration_ms: 1,
        flow,
        bytes_sent: 1,
        bytes_received: 1,
        decision: Decision::allow_learning(),
        kind: RecordKind::Connection,
        status: None,
    }
}

pub trait RecExt {
    fn named(self, names: &[&str]) -> Self;
    fn by(self, exe: &str) -> Self;
    fn at(self, ms: u64) -> Self;
    fn req(self, method: &str, host: Option<&str>, path: &str) -> Self;
    fn sni(self, s: &str) -> Self;
}

impl RecExt for FlowRecord {
    fn named(mut self, names: &[&str]) -> Self {
        self.flow.peer_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn by(mut self, exe: &str) -> Self {
        self.flow.process = Some(ProcessInfo {
            pid: 42,
            exe: exe.into(),
            cmdline: vec![exe.into()],
            uid: 1000,
        });
        self
    }
    fn at(mut self, ms: u64) -> Self {
        self.start_ms = ms;
        self
    }
    fn req(mut self, method: &str, host: Option<&str>, path: &str) -> Self {
        self.kind = RecordKind::Request;
        self.flow.http = Some(HttpRequestInfo {
            method: method.into(),
            host: host.map(String::from),
            path: path.into(),
            target: None,
        });
        self
    }
    fn sni(mut self, s: &str) -> Self {
        self.flow.sni = Some(s.into());
        self
    }
}
