//! Learned baseline vs approved policy, like `git diff`: what the baseline
//! would add (not covered by any policy rule), what it widens (a policy rule
//! for the same destination exists but not for this process/path/method),
//! and what the policy allows that was never seen. Pure data plus renderers.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use podwarden_policy::model::{LearnedName, Peer, PolicyDocument, PortSpec, ProcessRule, Rule};
use podwarden_policy::Direction;
use serde::Serialize;

use crate::diff_names::name_entries;
use crate::generalize::is_internal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// In the baseline, no policy rule for this destination.
    Added,
    /// A policy rule for this destination exists but does not cover it all.
    Widened,
    /// In the policy, nothing like it seen while learning.
    Dropped,
    ProcessAdded,
    ProcessDropped,
    /// A name the pod resolved that the policy does not list.
    NameAdded,
    /// An `allowNames` entry of the policy no learned name needs.
    NameDropped,
    /// The policy lets the pod resolve any name; the baseline proposes
    /// `allowedNames: listed` (only listed names are resolved in protect).
    NamesListed,
}

/// What a reviewer should look at twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RiskHint {
    /// An outbound destination outside private ranges, known only by address.
    ExternalIpWithoutName { ip: String },
    /// An executable the policy has never allowed.
    NewProcess { exe: String },
    /// A port range rather than single ports.
    WidePortRange { ports: String },
    /// The pod would accept connections on a port it did not before.
    NewInboundExposure { port: String },
    /// Flows whose owning process could not be found.
    UnattributedProcess,
}

impl fmt::Display for RiskHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RiskHint::ExternalIpWithoutName { ip } => {
                write!(f, "external IP {ip} without a DNS name")
            }
            RiskHint::NewProcess { exe } => write!(f, "new process {exe}"),
            RiskHint::WidePortRange { ports } => write!(f, "wide port range {ports}"),
            RiskHint::NewInboundExposure { port } => {
                write!(f, "new inbound exposure on port {port}")
            }
            RiskHint::UnattributedProcess => write!(f, "no process attribution"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    pub change: ChangeKind,
    /// The rule id, or `process:<exe>` for process entries.
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessRule>,
    /// For name entries: the `allowNames` entry and its evidence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<LearnedName>,
    /// For `Widened`: the policy rule it extends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// For `Widened`: what is new relative to `extends`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub widens: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub risks: Vec<RiskHint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineDiff {
    pub workload: String,
    /// The policy version compared against; `None` when nothing is approved.
    pub policy_version: Option<u64>,
    pub entries: Vec<DiffEntry>,
    /// Baseline rules already covered by the policy.
    pub unchanged: usize,
    /// Entries left out because they were rejected before.
    pub rejected: usize,
    /// What a reviewer must know before approving (e.g. a baseline that
    /// recorded no DNS names keeps `allowedNames: any`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl BaselineDiff {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries that approval applies by default (drops are only applied
    /// when selected explicitly: "not seen" may just mean "not yet").
    pub fn proposals(&self) -> impl Iterator<Item = &DiffEntry> {
        self.entries.iter().filter(|e| !e.change.is_drop())
    }
}

impl ChangeKind {
    /// Drops are only applied when selected explicitly: "not seen" may
    /// just mean "not yet".
    pub fn is_drop(self) -> bool {
        matches!(
            self,
            ChangeKind::Dropped | ChangeKind::ProcessDropped | ChangeKind::NameDropped
        )
    }

    /// Entries a reviewer can reject (not proposed again).
    pub fn is_proposal(self) -> bool {
        !self.is_drop()
    }
}

/// Rejected entry ids, each with the fingerprint of the rule as it was
/// rejected: the same rule is not proposed again, but if it changes (a new
/// process, path or method under the same id) it is, since that was never
/// reviewed. `None` hides the id whatever its shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections(pub std::collections::BTreeMap<String, Option<String>>);

impl Rejections {
    pub fn hides(&self, id: &str, fingerprint: &str) -> bool {
        match self.0.get(id) {
            Some(None) => true,
            Some(Some(fp)) => fp == fingerprint,
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<I: IntoIterator<Item = String>> From<I> for Rejections {
    fn from(ids: I) -> Self {
        Rejections(ids.into_iter().map(|i| (i, None)).collect())
    }
}

/// The shape of a rule without its evidence and note.
pub fn fingerprint(r: &Rule) -> String {
    let mut shape = r.clone();
    shape.evidence = None;
    shape.note.clear();
    crate::generalize::short_hash(&serde_json::to_string(&shape).unwrap_or_default())
}

pub fn process_entry_id(exe: &str) -> String {
    format!("process:{exe}")
}

pub fn name_entry_id(name: &str) -> String {
    format!("dns:{name}")
}

/// The id of the `allowedNames: listed` proposal.
pub const NAMES_LISTED_ID: &str = "dns:allowedNames=listed";

/// The warning for a baseline without DNS names.
pub const NO_NAMES_WARNING: &str = "the baseline recorded no DNS names (learned before names were recorded): approving keeps spec.dns.allowedNames as it is (any: the pod may resolve, and send data through, any name); remove the learning state (learning.json in the state directory) and learn again to have names proposed";

/// Compares a learned baseline with the approved policy (if any), leaving
/// out entries rejected before (see [`Rejections`]).
pub fn diff(
    baseline: &PolicyDocument,
    policy: Option<&PolicyDocument>,
    rejected: &Rejections,
) -> BaselineDiff {
    let empty: Vec<Rule> = Vec::new();
    let prules = policy.map(|p| &p.spec.rules).unwrap_or(&empty);
    let known_exes: BTreeSet<&str> = policy
        .map(|p| {
            p.spec
                .processes
                .iter()
                .map(|x| x.exe.as_str())
                .chain(
                    p.spec
                        .rules
                        .iter()
                        .flat_map(|r| r.processes.iter().map(String::as_str)),
                )
                .collect()
        })
        .unwrap_or_default();
    let mut entries = Vec::new();
    let mut unchanged = 0;
    let mut n_rejected = 0;
    for b in &baseline.spec.rules {
        if prules.iter().any(|p| rule_covers(p, b)) {
            unchanged += 1;
            continue;
        }
        if rejected.hides(&b.id, &fingerprint(b)) {
            n_rejected += 1;
            continue;
        }
        let related = prules.iter().find(|p| related(p, b));
        let mut risks = rule_risks(b, &known_exes);
        // Before the first approval every executable is new: say so once,
        // on the process entries, rather than on every rule.
        if policy.is_none() {
            risks.retain(|r| !matches!(r, RiskHint::NewProcess { .. }));
        }
        let (change, extends, widens) = match related {
            Some(p) => (ChangeKind::Widened, Some(p.id.clone()), widening(p, b)),
            None => (ChangeKind::Added, None, Vec::new()),
        };
        if change == ChangeKind::Widened {
            risks.retain(|r| !matches!(r, RiskHint::NewInboundExposure { .. }));
        }
        entries.push(DiffEntry {
            change,
            id: b.id.clone(),
            rule: Some(b.clone()),
            process: None,
            name: None,
            extends,
            widens,
            risks,
        });
    }
    for p in prules {
        let seen = baseline
            .spec
            .rules
            .iter()
            .any(|b| rule_covers(p, b) || related(p, b));
        if !seen {
            entries.push(DiffEntry {
                change: ChangeKind::Dropped,
                id: p.id.clone(),
                rule: Some(p.clone()),
                process: None,
                name: None,
                extends: None,
                widens: Vec::new(),
                risks: Vec::new(),
            });
        }
    }
    let policy_exes: BTreeSet<&str> = policy
        .map(|p| p.spec.processes.iter().map(|x| x.exe.as_str()).collect())
        .unwrap_or_default();
    for pr in &baseline.spec.processes {
        if policy_exes.contains(pr.exe.as_str()) {
            continue;
        }
        let id = process_entry_id(&pr.exe);
        if rejected.hides(&id, "") {
            n_rejected += 1;
            continue;
        }
        let risks = if known_exes.contains(pr.exe.as_str()) {
            Vec::new()
        } else {
            vec![RiskHint::NewProcess {
                exe: pr.exe.clone(),
            }]
        };
        entries.push(DiffEntry {
            change: ChangeKind::ProcessAdded,
            id,
            rule: None,
            process: Some(pr.clone()),
            name: None,
            extends: None,
            widens: Vec::new(),
            risks,
        });
    }
    if let Some(p) = policy {
        for pr in &p.spec.processes {
            if !baseline.spec.processes.iter().any(|b| b.exe == pr.exe) {
                entries.push(DiffEntry {
                    change: ChangeKind::ProcessDropped,
                    id: process_entry_id(&pr.exe),
                    rule: None,
                    process: Some(pr.clone()),
                    name: None,
                    extends: None,
                    widens: Vec::new(),
                    risks: Vec::new(),
                });
            }
        }
    }
    let mut warnings = Vec::new();
    let names = name_entries(baseline, policy, rejected);
    entries.extend(names.entries);
    unchanged += names.unchanged;
    n_rejected += names.rejected;
    if !names.recorded {
        warnings.push(NO_NAMES_WARNING.to_string());
    }
    BaselineDiff {
        workload: baseline.metadata.workload.clone(),
        policy_version: policy.map(|p| p.metadata.version),
        entries,
        unchanged,
        rejected: n_rejected,
        warnings,
    }
}

fn rule_risks(b: &Rule, known_exes: &BTreeSet<&str>) -> Vec<RiskHint> {
    let mut risks = Vec::new();
    if b.direction == Direction::Outbound {
        if let Peer::Cidr(n) = &b.peer {
            if !is_internal(n.addr()) {
                risks.push(RiskHint::ExternalIpWithoutName { ip: n.to_string() });
            }
        }
    }
    for exe in &b.processes {
        if !known_exes.contains(exe.as_str()) {
            risks.push(RiskHint::NewProcess { exe: exe.clone() });
        }
    }
    if b.processes.is_empty() {
        risks.push(RiskHint::UnattributedProcess);
    }
    for p in &b.ports {
        if p.first != p.last {
            risks.push(RiskHint::WidePortRange {
                ports: p.to_string(),
            });
        }
    }
    if b.ports.is_empty() {
        risks.push(RiskHint::WidePortRange {
            ports: "any".into(),
        });
    }
    if b.direction == Direction::Inbound {
        let ports = if b.ports.is_empty() {
            "any".to_string()
        } else {
            b.ports
                .iter()
                .map(PortSpec::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        risks.push(RiskHint::NewInboundExposure { port: ports });
    }
    risks
}

/// Same direction, overlapping peers and ports: a rule "about" the same
/// destination.
fn related(p: &Rule, b: &Rule) -> bool {
    p.direction == b.direction
        && peers_overlap(&p.peer, &b.peer)
        && (p.ports.is_empty()
            || b.ports.is_empty()
            || p.ports.iter().any(|x| {
                b.ports
                    .iter()
                    .any(|y| x.first <= y.last && y.first <= x.last)
            }))
}

fn peers_overlap(a: &Peer, b: &Peer) -> bool {
    match (a, b) {
        (Peer::Any, _) | (_, Peer::Any) => true,
        (Peer::Cidr(x), Peer::Cidr(y)) => x.contains(y) || y.contains(x),
        (Peer::Fqdn(x), Peer::Fqdn(y)) => fqdn_covers(x, y) || fqdn_covers(y, x),
        _ => false,
    }
}

/// Whether every flow `b` allows is allowed by `p`.
pub fn rule_covers(p: &Rule, b: &Rule) -> bool {
    p.direction == b.direction
        && peer_covers(&p.peer, &b.peer)
        && ports_cover(&p.ports, &b.ports)
        && subset_or_any(&p.protocols, &b.protocols)
        && subset_or_any(&p.processes, &b.processes)
        && http_covers(p, b)
}

pub fn peer_covers(p: &Peer, b: &Peer) -> bool {
    match (p, b) {
        (Peer::Any, _) => true,
        (Peer::Cidr(pn), Peer::Cidr(bn)) => cidr_contains(pn, bn),
        (Peer::Fqdn(pf), Peer::Fqdn(bf)) => fqdn_covers(pf, bf),
        _ => false,
    }
}

fn cidr_contains(p: &IpNet, b: &IpNet) -> bool {
    p.contains(b)
}

/// `a.example` covers itself; `*.example` covers `x.example`, `y.x.example`.
pub fn fqdn_covers(p: &str, b: &str) -> bool {
    let p = p.trim_end_matches('.').to_ascii_lowercase();
    let b = b.trim_end_matches('.').to_ascii_lowercase();
    if p == b {
        return true;
    }
    match (p.strip_prefix("*."), b.strip_prefix("*.")) {
        (Some(ps), Some(bs)) => bs == ps || bs.ends_with(&format!(".{ps}")),
        (Some(ps), None) => b.ends_with(&format!(".{ps}")),
        _ => false,
    }
}

fn ports_cover(p: &[PortSpec], b: &[PortSpec]) -> bool {
    if p.is_empty() {
        return true;
    }
    !b.is_empty()
        && b.iter()
            .all(|x| p.iter().any(|y| y.first <= x.first && x.last <= y.last))
}

fn subset_or_any<T: PartialEq>(p: &[T], b: &[T]) -> bool {
    p.is_empty() || (!b.is_empty() && b.iter().all(|x| p.contains(x)))
}

fn http_covers(p: &Rule, b: &Rule) -> bool {
    let Some(ph) = &p.http else { return true };
    let Some(bh) = &b.http else {
        // b allows any request: only an unrestricted p covers it.
        return ph.hosts.is_empty() && ph.methods.is_empty() && ph.paths.is_empty();
    };
    let hosts = ph.hosts.is_empty()
        || (!bh.hosts.is_empty()
            && bh
                .hosts
                .iter()
                .all(|h| ph.hosts.iter().any(|x| fqdn_covers(x, h))));
    let methods = ph.methods.is_empty()
        || (!bh.methods.is_empty()
            && bh
                .methods
                .iter()
                .all(|m| ph.methods.iter().any(|x| x.eq_ignore_ascii_case(m))));
    let paths = ph.paths.is_empty()
        || (!bh.paths.is_empty()
            && bh
                .paths
                .iter()
                .all(|bp| ph.paths.iter().any(|pp| path_covers(pp, bp))));
    hosts && methods && paths
}

/// Path pattern coverage: exact, prefix (`/static/*`), or template with
/// `{param}` segments; a baseline `{id}` is only covered by a parameter.
pub fn path_covers(p: &str, b: &str) -> bool {
    if p == b {
        return true;
    }
    if let Some(prefix) = p.strip_suffix('*') {
        return b.starts_with(prefix);
    }
    let ps: Vec<&str> = p.split('/').collect();
    let bs: Vec<&str> = b.split('/').collect();
    ps.len() == bs.len()
        && ps.iter().zip(&bs).all(|(x, y)| {
            let param = |s: &str| s.starts_with('{') && s.ends_with('}');
            param(x) || (x == y && !param(y))
        })
}

/// What `b` adds over the related policy rule `p`, for humans.
fn widening(p: &Rule, b: &Rule) -> Vec<String> {
    let mut w = Vec::new();
    let new_of = |pv: &[String], bv: &[String], what: &str, w: &mut Vec<String>| {
        if !pv.is_empty() {
            for x in bv.iter().filter(|x| !pv.contains(x)) {
                w.push(format!("{what} {x}"));
            }
        }
    };
    if !p.processes.is_empty() && b.processes.is_empty() {
        w.push("any process (unattributed flows)".into());
    }
    new_of(&p.processes, &b.processes, "process", &mut w);
    if !ports_cover(&p.ports, &b.ports) {
        w.push(format!(
            "ports {}",
            b.ports
                .iter()
                .map(PortSpec::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !subset_or_any(&p.protocols, &b.protocols) {
        w.push(format!(
            "protocols {}",
            b.protocols
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !peer_covers(&p.peer, &b.peer) {
        w.push(format!("peer {}", peer_text(&b.peer)));
    }
    if let Some(ph) = &p.http {
        match &b.http {
            None => w.push("any HTTP request".into()),
            Some(bh) => {
                if !ph.methods.is_empty() {
                    for m in bh
                        .methods
                        .iter()
                        .filter(|m| !ph.methods.iter().any(|x| x.eq_ignore_ascii_case(m)))
                    {
                        w.push(format!("method {m}"));
                    }
                }
                if !ph.paths.is_empty() {
                    for bp in bh
                        .paths
                        .iter()
                        .filter(|bp| !ph.paths.iter().any(|pp| path_covers(pp, bp)))
                    {
                        w.push(format!("path {bp}"));
                    }
                }
                if !ph.hosts.is_empty() {
                    for h in bh
                        .hosts
                        .iter()
                        .filter(|h| !ph.hosts.iter().any(|x| fqdn_covers(x, h)))
                    {
                        w.push(format!("host {h}"));
                    }
                }
            }
        }
    }
    if w.is_empty() {
        w.push("scope not covered by the policy rule".into());
    }
    w
}

pub fn peer_text(p: &Peer) -> String {
    match p {
        Peer::Any => "any".into(),
        Peer::Cidr(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
        Peer::Cidr(n) => n.to_string(),
        Peer::Fqdn(f) => f.clone(),
    }
}

/// One line describing a rule's scope.
pub fn rule_summary(r: &Rule) -> String {
    let dir = match r.direction {
        Direction::Inbound => "from",
        Direction::Outbound => "to",
    };
    let mut s = format!("{dir} {}", peer_text(&r.peer));
    if !r.ports.is_empty() {
        s.push_str(&format!(
            " port {}",
            r.ports
                .iter()
                .map(PortSpec::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if !r.protocols.is_empty() {
        s.push_str(&format!(
            " {}",
            r.protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if let Some(h) = &r.http {
        if !h.methods.is_empty() {
            s.push_str(&format!(" {}", h.methods.join(",")));
        }
        if !h.paths.is_empty() {
            s.push_str(&format!(" {}", h.paths.join(" ")));
        }
        if !h.hosts.is_empty() {
            s.push_str(&format!(" host={}", h.hosts.join(",")));
        }
    }
    if !r.processes.is_empty() {
        s.push_str(&format!(" by {}", r.processes.join(",")));
    }
    s
}

/// The `git diff`-like text a reviewer reads.
pub fn render_text(d: &BaselineDiff) -> String {
    let mut out = String::new();
    let against = match d.policy_version {
        Some(v) => format!("approved policy v{v}"),
        None => "no approved policy".into(),
    };
    out.push_str(&format!(
        "baseline diff {}: learned baseline vs {against}\n",
        d.workload
    ));
    for e in &d.entries {
        let (sign, what) = match e.change {
            ChangeKind::Added => ('+', String::new()),
            ChangeKind::Widened => (
                '~',
                format!(" (extends {})", e.extends.as_deref().unwrap_or("?")),
            ),
            ChangeKind::Dropped => ('-', " (allowed, not seen while learning)".to_string()),
            ChangeKind::ProcessAdded => ('+', String::new()),
            ChangeKind::ProcessDropped => ('-', " (allowed, not seen while learning)".to_string()),
            ChangeKind::NameAdded => ('+', String::new()),
            ChangeKind::NameDropped => ('-', " (listed, not resolved while learning)".to_string()),
            ChangeKind::NamesListed => ('+', String::new()),
        };
        let scope = match (&e.rule, &e.process, &e.name) {
            (Some(r), _, _) => rule_summary(r),
            (None, Some(p), _) => format!("executable {}", p.exe),
            (None, None, Some(n)) => format!("resolve {}", n.name),
            _ if e.change == ChangeKind::NamesListed => {
                "resolve only listed names (spec.dns.allowedNames: listed): others get NXDOMAIN in protect, never forwarded".to_string()
            }
            _ => String::new(),
        };
        out.push_str(&format!("{sign} {}{what}\n    {scope}\n", e.id));
        if !e.widens.is_empty() {
            out.push_str(&format!("    adds: {}\n", e.widens.join("; ")));
        }
        let ev = e
            .rule
            .as_ref()
            .and_then(|r| r.evidence.as_ref())
            .or(e.process.as_ref().and_then(|p| p.evidence.as_ref()))
            .or(e.name.as_ref().and_then(|n| n.evidence.as_ref()));
        if let Some(n) = e.name.as_ref().filter(|n| !n.note.is_empty()) {
            out.push_str(&format!("    {}\n", n.note));
        }
        if let Some(ev) = ev {
            if e.change.is_proposal() {
                let unit = match (e.name.is_some(), ev.count == 1) {
                    (true, true) => "query",
                    (true, false) => "queries",
                    (false, true) => "flow",
                    (false, false) => "flows",
                };
                out.push_str(&format!(
                    "    evidence: {} {unit}, {} .. {}{}\n",
                    ev.count,
                    ev.first_seen,
                    ev.last_seen,
                    if ev.replicas.is_empty() {
                        String::new()
                    } else {
                        format!(", replicas {}", ev.replicas.join(","))
                    }
                ));
                if !ev.example.is_empty() {
                    out.push_str(&format!("    example: {}\n", ev.example));
                }
            }
        }
        for r in &e.risks {
            out.push_str(&format!("    ! risk: {r}\n"));
        }
    }
    for w in &d.warnings {
        out.push_str(&format!("! warning: {w}\n"));
    }
    let adds = d.entries.iter().filter(|e| e.change.is_proposal()).count();
    out.push_str(&format!(
        "{} proposed, {} dropped, {} unchanged, {} rejected before (hidden)\n",
        adds,
        d.entries.len() - adds,
        d.unchanged,
        d.rejected
    ));
    out
}

/// Is `ip` covered by a CIDR peer; exported for callers building hints.
pub fn cidr_has(n: &IpNet, ip: IpAddr) -> bool {
    n.contains(&ip)
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
