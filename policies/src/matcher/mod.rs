//! A policy compiled for lookups: the decision hook the data path calls.
//!
//! Candidates come from indexes keyed by direction, peer (CIDR per prefix
//! length, exact FQDN, `*.suffix`, any) and server port; only those few
//! candidates have their remaining conditions (protocol, process, HTTP host,
//! method, path) checked. Among all matching rules the first in document
//! order wins, so the answer never depends on index layout.
//!
//! ## What counts as proof of a destination
//! * An FQDN rule matches an outbound flow only through `flow.peer_names`:
//!   names the pod's resolver returned for that very IP. SNI and Host are
//!   claims made by the client and are never used to pick a rule; an HTTP
//!   `hosts` list only narrows a rule further.
//! * An outbound HTTP request that names its own destination
//!   (`http.target`: CONNECT target or absolute-form URI) is allowed only if
//!   the connection is allowed by some rule AND the target is itself allowed
//!   as an outbound destination: an IP target must fall in a CIDR (or `any`)
//!   rule for that port; a name target must match an FQDN rule's pattern
//!   (the proxy, not the pod, will resolve it, so there is no resolver answer
//!   to check) and that rule's HTTP `hosts`. For CONNECT the tunnel's content
//!   is unknown, so a target rule that restricts methods or paths cannot be
//!   honoured and does not match. An allowed open proxy therefore only
//!   reaches destinations the policy allows directly. Malformed targets,
//!   userinfo (`http://a@b/`) and CONNECT without a port are denied.
//!   Inbound requests' targets are not judged here: if the app acts on them
//!   its own outbound connection is judged.
//! * With a non-empty `spec.processes` baseline, a flow from a known
//!   executable outside it is a violation whatever the destination. Flows
//!   whose process is unknown are not judged by the baseline (rules that list
//!   processes still require a known, listed one).
//! * IPv4-mapped IPv6 peers (`::ffff:192.0.2.1`) are judged as IPv4.

mod dns_verdict;
mod explain;
pub(crate) mod index;
mod methods;
pub mod names;
pub mod path;
pub mod target;

use std::collections::HashSet;
use std::sync::Arc;

use ipnet::IpNet;

pub use dns_verdict::DnsVerdict;
pub use explain::{Explanation, Mismatch, NearMiss, Violation};
use index::{
    build_map, ip_key, FastMap, IndexOverflow, PortTable, PortTableBuilder, PrefixIndex,
    PrefixIndexBuilder, RuleIdx, RulePool,
};
use methods::MethodSet;
use names::{normalise, parent_suffixes, NamePattern};
use path::PathPattern;
use target::{parse_target, TargetHost};

use crate::error::{Diagnostic, Diagnostics, PolicyError};
use crate::flow::{AppProtocol, Decide, Decision, Direction, Flow, HttpRequestInfo, Mode};
use crate::load::validate;
use crate::model::{DnsSettings, Feature, Peer, PolicyDocument, PortSpec};

#[derive(Debug, Clone)]
pub(crate) struct CompiledHttp {
    hosts: Vec<NamePattern>,
    methods: MethodSet,
    paths: Vec<PathPattern>,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    /// Shared with every [`Decision`] this rule makes (no copy per decision).
    pub(crate) id: Arc<str>,
    direction: Direction,
    peer: Peer,
    peer_name: Option<NamePattern>,
    ports: Vec<PortSpec>,
    /// Bit per [`AppProtocol`]; 0 = any.
    protocols: u8,
    processes: Vec<String>,
    http: Option<CompiledHttp>,
}

fn proto_bit(p: AppProtocol) -> u8 {
    match p {
        AppProtocol::Http => 1,
        AppProtocol::Http2 => 2,
        AppProtocol::Tls => 4,
        AppProtocol::Dns => 8,
        AppProtocol::Opaque => 16,
    }
}

impl CompiledRule {
    #[inline]
    fn admits_protocol(&self, p: AppProtocol) -> bool {
        self.protocols == 0 || self.protocols & proto_bit(p) != 0
    }

    #[inline]
    fn admits_process(&self, flow: &Flow) -> bool {
        self.processes.is_empty()
            || flow
                .process
                .as_ref()
                .is_some_and(|p| self.processes.contains(&p.exe))
    }

    #[inline]
    fn admits_http(&self, req: Option<&HttpRequestInfo>) -> bool {
        let (Some(h), Some(req)) = (&self.http, req) else {
            // No HTTP narrowing, or a connection-level decision before any
            // request: requests are judged one by one later.
            return true;
        };
        h.admits_host(req.host.as_deref())
            && h.admits_method(&req.method)
            && h.admits_path(&req.path)
    }

    /// Conditions not covered by the indexes.
    #[inline]
    fn matches_rest(&self, flow: &Flow) -> bool {
        self.admits_protocol(flow.protocol)
            && self.admits_process(flow)
            && self.admits_http(flow.http.as_ref())
    }
}

impl CompiledHttp {
    fn admits_host(&self, host: Option<&str>) -> bool {
        if self.hosts.is_empty() {
            return true;
        }
        let Some(host) = host else { return false };
        let host = strip_port(host);
        let host = normalise(host);
        self.hosts.iter().any(|p| p.matches(&host))
    }
    fn admits_method(&self, method: &str) -> bool {
        self.methods.admits(method)
    }
    fn admits_path(&self, path: &str) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path))
    }
}

/// `host:port` → `host`; `[v6]:port` → `v6`. Host headers should come
/// without a port, but clients add one.
fn strip_port(host: &str) -> &str {
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// One direction's rules by peer, while the policy is compiled.
#[derive(Debug, Default)]
struct DirIndexBuilder {
    any: PortTableBuilder,
    v4: PrefixIndexBuilder,
    v6: PrefixIndexBuilder,
    fqdn_exact: FastMap<Box<str>, PortTableBuilder>,
    fqdn_suffix: FastMap<Box<str>, PortTableBuilder>,
}

impl DirIndexBuilder {
    fn build(self) -> Result<DirIndex, IndexOverflow> {
        let mut pool = RulePool::default();
        Ok(DirIndex {
            any: self.any.build(&mut pool)?,
            v4: self.v4.build(&mut pool)?,
            v6: self.v6.build(&mut pool)?,
            fqdn_exact: build_map(self.fqdn_exact, &mut pool)?,
            fqdn_suffix: build_map(self.fqdn_suffix, &mut pool)?,
            pool,
        })
    }
}

#[derive(Debug, Default, Clone)]
struct DirIndex {
    any: PortTable,
    v4: PrefixIndex,
    v6: PrefixIndex,
    fqdn_exact: FastMap<Box<str>, PortTable>,
    /// `*.example` keyed by `example`.
    fqdn_suffix: FastMap<Box<str>, PortTable>,
    /// The rule lists all the tables above point into.
    pool: RulePool,
}

impl DirIndex {
    #[inline]
    fn for_each_any(&self, port: u16, f: &mut impl FnMut(&[RuleIdx])) {
        self.any.for_each(&self.pool, port, f);
    }

    #[inline]
    fn for_each_ip(&self, ip: std::net::IpAddr, port: u16, f: &mut impl FnMut(&[RuleIdx])) {
        let (bits, width, v4) = ip_key(ip);
        if v4 {
            self.v4.for_each(&self.pool, bits, width, port, f);
        } else {
            self.v6.for_each(&self.pool, bits, width, port, f);
        }
    }

    /// `name` must be normalised.
    #[inline]
    fn for_each_name(&self, name: &str, port: u16, f: &mut impl FnMut(&[RuleIdx])) {
        if let Some(t) = self.fqdn_exact.get(name) {
            t.for_each(&self.pool, port, f);
        }
        if self.fqdn_suffix.is_empty() {
            return;
        }
        for s in parent_suffixes(name) {
            if let Some(t) = self.fqdn_suffix.get(s) {
                t.for_each(&self.pool, port, f);
            }
        }
    }
}

/// What most rules reduce to once the index picked them by peer and port:
/// the protocols they admit, and whether anything else (process, HTTP) is
/// left to check. Kept dense beside the rules (2 bytes each) so that a
/// candidate is usually decided without loading its [`CompiledRule`].
#[derive(Debug, Clone, Copy)]
struct QuickCheck {
    /// As [`CompiledRule::protocols`].
    protocols: u8,
    /// The rule restricts processes or HTTP requests too.
    more: bool,
}

impl QuickCheck {
    fn of(r: &CompiledRule) -> QuickCheck {
        QuickCheck {
            protocols: r.protocols,
            more: !r.processes.is_empty() || r.http.is_some(),
        }
    }
}

/// Rule ids in one string: reading rule `i`'s id touches this dense text
/// (a few bytes per rule) rather than the id's own allocation.
#[derive(Debug, Clone, Default)]
struct IdText {
    text: String,
    /// `ends[i]` is where rule `i`'s id ends (and rule `i + 1`'s starts).
    ends: Vec<usize>,
}

impl IdText {
    fn new<'a>(ids: impl Iterator<Item = &'a str>) -> IdText {
        let mut t = IdText::default();
        for id in ids {
            t.text.push_str(id);
            t.ends.push(t.text.len());
        }
        t
    }

    #[inline]
    fn get(&self, r: RuleIdx) -> &str {
        let r = r as usize;
        let start = r.checked_sub(1).and_then(|p| self.ends.get(p)).copied();
        match self.ends.get(r) {
            Some(&end) => self.text.get(start.unwrap_or(0)..end).unwrap_or_default(),
            None => "",
        }
    }
}

/// Why a flow was not allowed, or which rule allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed(RuleIdx),
    NoRule,
    ProcessNotInBaseline,
    /// The connection is allowed by `outer` but the request's own target is not.
    TargetDenied {
        outer: RuleIdx,
    },
}

/// A policy ready for decisions. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    mode: Mode,
    workload: String,
    version: u64,
    rules: Vec<CompiledRule>,
    /// `quick[i]` summarises `rules[i]`, see [`QuickCheck`].
    quick: Vec<QuickCheck>,
    /// The rule ids again, back to back, for [`CompiledPolicy::allowing_rule`].
    id_text: IdText,
    outbound: DirIndex,
    inbound: DirIndex,
    baseline: HashSet<String>,
    dns: DnsSettings,
}

impl CompiledPolicy {
    /// Validates and compiles. Errors carry field paths but no lines (the
    /// document has no source here); use [`crate::load_policy_str`] first to
    /// get located errors.
    pub fn compile(doc: &PolicyDocument) -> Result<CompiledPolicy, PolicyError> {
        let problems = validate(doc);
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(Diagnostics(
                problems
                    .into_iter()
                    .map(|p| Diagnostic {
                        source_name: format!("policy {}", doc.metadata.workload),
                        line: None,
                        column: None,
                        path: p.path,
                        message: p.message,
                    })
                    .collect(),
            )));
        }
        let too_many = || {
            PolicyError::Invalid(Diagnostics(vec![Diagnostic {
                source_name: format!("policy {}", doc.metadata.workload),
                line: None,
                column: None,
                path: "spec.rules".into(),
                message: "too many rules".into(),
            }]))
        };
        let mut rules = Vec::with_capacity(doc.spec.rules.len());
        let (mut outbound, mut inbound) = (DirIndexBuilder::default(), DirIndexBuilder::default());
        for (i, rule) in doc.spec.rules.iter().enumerate() {
            let idx = RuleIdx::try_from(i).map_err(|_| too_many())?;
            let dir = match rule.direction {
                Direction::Outbound => &mut outbound,
                Direction::Inbound => &mut inbound,
            };
            let table = match &rule.peer {
                Peer::Any => &mut dir.any,
                Peer::Cidr(IpNet::V4(n)) => {
                    dir.v4
                        .table(u128::from(u32::from(n.network())), n.prefix_len(), 32)
                }
                Peer::Cidr(IpNet::V6(n)) => {
                    dir.v6.table(u128::from(n.network()), n.prefix_len(), 128)
                }
                Peer::Fqdn(f) => match NamePattern::new(f) {
                    NamePattern::Exact(e) => dir.fqdn_exact.entry(e.into()).or_default(),
                    NamePattern::Suffix(s) => dir.fqdn_suffix.entry(s.into()).or_default(),
                },
            };
            table.insert(&rule.ports, idx);

            let mut protocols = rule.protocols.iter().fold(0u8, |m, p| m | proto_bit(*p));
            let http = rule.http.as_ref().map(|h| {
                if protocols == 0 {
                    protocols = proto_bit(AppProtocol::Http) | proto_bit(AppProtocol::Http2);
                }
                CompiledHttp {
                    hosts: h.hosts.iter().map(|p| NamePattern::new(p)).collect(),
                    methods: MethodSet::new(&h.methods),
                    // Validated above, so parsing cannot fail here.
                    paths: h
                        .paths
                        .iter()
                        .filter_map(|p| PathPattern::parse(p).ok())
                        .collect(),
                }
            });
            rules.push(CompiledRule {
                id: Arc::from(rule.id.as_str()),
                direction: rule.direction,
                peer: rule.peer.clone(),
                peer_name: match &rule.peer {
                    Peer::Fqdn(f) => Some(NamePattern::new(f)),
                    _ => None,
                },
                ports: rule.ports.clone(),
                protocols,
                processes: rule.processes.clone(),
                http,
            });
        }
        Ok(CompiledPolicy {
            mode: doc.spec.mode_of(Feature::Network),
            workload: doc.metadata.workload.clone(),
            version: doc.metadata.version,
            quick: rules.iter().map(QuickCheck::of).collect(),
            id_text: IdText::new(rules.iter().map(|r| &*r.id)),
            rules,
            outbound: outbound.build().map_err(|_| too_many())?,
            inbound: inbound.build().map_err(|_| too_many())?,
            baseline: doc.spec.processes.iter().map(|p| p.exe.clone()).collect(),
            dns: doc.spec.dns.clone(),
        })
    }

    /// The effective network mode (`spec.features.network` or `spec.mode`).
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn workload(&self) -> &str {
        &self.workload
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
    /// Whether any decision depends on which process made the flow (a rule
    /// lists processes, or the policy has a process baseline). When not,
    /// the data path can skip looking the process up.
    pub fn uses_processes(&self) -> bool {
        !self.baseline.is_empty() || self.rules.iter().any(|r| !r.processes.is_empty())
    }

    fn index(&self, d: Direction) -> &DirIndex {
        match d {
            Direction::Outbound => &self.outbound,
            Direction::Inbound => &self.inbound,
        }
    }

    pub(crate) fn verdict(&self, flow: &Flow) -> Verdict {
        if !self.baseline.is_empty() {
            if let Some(p) = &flow.process {
                if !self.baseline.contains(&p.exe) {
                    return Verdict::ProcessNotInBaseline;
                }
            }
        }
        let Some(outer) = self.first_match(flow) else {
            return Verdict::NoRule;
        };
        if flow.direction == Direction::Outbound {
            if let Some(req) = &flow.http {
                if let Some(target) = &req.target {
                    if self.target_rule(flow, req, target).is_none() {
                        return Verdict::TargetDenied { outer };
                    }
                }
            }
        }
        Verdict::Allowed(outer)
    }

    /// The first rule (document order) that allows the flow itself.
    fn first_match(&self, flow: &Flow) -> Option<RuleIdx> {
        let idx = self.index(flow.direction);
        let port = flow.service_port();
        let proto = proto_bit(flow.protocol);
        let mut best: Option<RuleIdx> = None;
        // Slices are ascending: stop at the first match or at `best`.
        let mut consider = |rs: &[RuleIdx]| {
            for &r in rs {
                if best.is_some_and(|b| b <= r) {
                    return;
                }
                let Some(q) = self.quick.get(r as usize) else {
                    continue;
                };
                if q.protocols != 0 && q.protocols & proto == 0 {
                    continue;
                }
                if !q.more || self.rules[r as usize].matches_rest(flow) {
                    best = Some(r);
                    return;
                }
            }
        };
        idx.for_each_any(port, &mut consider);
        idx.for_each_ip(flow.peer_ip(), port, &mut consider);
        if flow.direction == Direction::Outbound {
            for name in &flow.peer_names {
                idx.for_each_name(&normalise(name), port, &mut consider);
            }
        }
        best
    }

    /// The first outbound rule that allows the request's own target.
    fn target_rule(&self, flow: &Flow, req: &HttpRequestInfo, target: &str) -> Option<RuleIdx> {
        let is_connect = req.method.eq_ignore_ascii_case("CONNECT");
        let (host, port) = parse_target(target, is_connect)?;
        let idx = &self.outbound;
        let mut best: Option<RuleIdx> = None;
        let mut consider = |rs: &[RuleIdx]| {
            for &r in rs {
                if best.is_some_and(|b| b <= r) {
                    return;
                }
                if self.rules[r as usize].admits_target(flow, req, &host, is_connect) {
                    best = Some(r);
                    return;
                }
            }
        };
        idx.for_each_any(port, &mut consider);
        match &host {
            TargetHost::Ip(ip) => idx.for_each_ip(*ip, port, &mut consider),
            TargetHost::Name(n) => idx.for_each_name(n, port, &mut consider),
        }
        best
    }

    fn rule_id(&self, r: RuleIdx) -> &Arc<str> {
        &self.rules[r as usize].id
    }

    /// Rule ids in document order; a rule's position is the index
    /// [`CompiledPolicy::decide_indexed`] reports.
    pub fn rule_ids(&self) -> impl ExactSizeIterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// Direction of the rule at position `i`.
    pub fn rule_direction(&self, i: usize) -> Option<Direction> {
        self.rules.get(i).map(|r| r.direction)
    }

    /// The rule [`Decide::decide`] names in `Decision.rule` for `flow`
    /// (same verdict code), borrowed from the policy: for callers that only
    /// need the id and run millions of decisions (replay), this skips the
    /// reference count of the shared id, a cache miss per decision with
    /// thousands of rules.
    pub fn allowing_rule(&self, flow: &Flow) -> Option<&str> {
        match self.verdict(flow) {
            Verdict::Allowed(r) => Some(self.id_text.get(r)),
            _ => None,
        }
    }

    /// [`Decide::decide`] plus the position of the deciding rule, so callers
    /// keeping per-rule state (metrics) index it without hashing the id.
    pub fn decide_indexed(&self, flow: &Flow) -> (Decision, Option<usize>) {
        match self.verdict(flow) {
            Verdict::Allowed(r) => (
                Decision::new(self.mode, Some(Arc::clone(self.rule_id(r)))),
                Some(r as usize),
            ),
            _ => (Decision::new(self.mode, None), None),
        }
    }
}

impl CompiledRule {
    fn admits_target(
        &self,
        flow: &Flow,
        req: &HttpRequestInfo,
        host: &TargetHost,
        is_connect: bool,
    ) -> bool {
        if !self.admits_process(flow) {
            return false;
        }
        // A CONNECT tunnel's content is unknown; an absolute-form request is HTTP.
        let speaks_http =
            self.admits_protocol(AppProtocol::Http) || self.admits_protocol(AppProtocol::Http2);
        if !is_connect && !speaks_http {
            return false;
        }
        let Some(h) = &self.http else { return true };
        if !h.hosts.is_empty() {
            let TargetHost::Name(n) = host else {
                return false;
            };
            if !h.hosts.iter().any(|p| p.matches(n)) {
                return false;
            }
        }
        if is_connect {
            h.methods.is_empty() && h.paths.is_empty()
        } else {
            h.admits_method(&req.method) && h.admits_path(&req.path)
        }
    }
}

impl Decide for CompiledPolicy {
    fn decide(&self, flow: &Flow) -> Decision {
        self.decide_indexed(flow).0
    }
}

#[cfg(test)]
mod tests;
