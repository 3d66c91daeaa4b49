//! Incremental learning state: flow records in, a baseline document out.
//!
//! Ingest is a hash-map update per record (keys are the already-generalised
//! rule shape), so it is cheap enough for the data path's learn mode; the
//! expensive parts (grouping, ids, RFC 3339) run only when a document is
//! emitted. The state snapshots to JSON so learning survives a restart.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use podwarden_policy::model::{
    AllowedNames, DnsSettings, DocumentKind, HttpMatch, Metadata, Peer, PolicyDocument, PolicySpec,
    PortSpec, ProcessRule, Rule, API_VERSION,
};
use podwarden_policy::{AppProtocol, Direction, FlowRecord, Mode};
use serde::{Deserialize, Serialize};

use crate::error::LearnerError;
use crate::evidence::EvidenceAgg;
use crate::generalize::{
    flow_name, network_of, normalize_host_cow, path_template_into, short_hash, slug,
};

/// The widest inbound client networks learning may ever propose.
pub const WIDEST_V4_PREFIX: u8 = 16;
pub const WIDEST_V6_PREFIX: u8 = 48;
/// Bounded sets: beyond these, new values are counted but not kept, so a
/// scanner cannot grow the state without bound (and nothing is widened).
const MAX_NAMES: usize = 16;
const MAX_RECENT_IPS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LearnerConfig {
    /// `namespace/name` of the workload.
    pub workload: String,
    /// The pod this learner runs in; recorded in evidence for merges.
    #[serde(default)]
    pub replica: Option<String>,
    /// Inbound clients of one network of this prefix length collapse into
    /// the network when at least `inbound_min_clients` distinct hosts of it
    /// were seen (replicas of one client service share a node's pod range).
    pub inbound_v4_prefix: u8,
    pub inbound_v6_prefix: u8,
    /// `0` turns collapsing off (every client is a host rule).
    pub inbound_min_clients: usize,
    /// Path templates kept per rule; more are counted as dropped.
    pub max_paths_per_rule: usize,
    /// Distinct rule shapes kept; records of further shapes are counted in
    /// `skipped` (an Internet-facing pod would otherwise grow a rule per
    /// scanner address). Never widened instead.
    #[serde(default = "default_max_rules")]
    pub max_rules: usize,
    /// Distinct names directly under one zone that collapse into `*.zone`
    /// in the proposed `allowNames` (never for a public suffix); `0` = off.
    #[serde(default = "default_name_wildcard_min")]
    pub name_wildcard_min: usize,
    /// Distinct DNS names kept; queries for further names are counted in
    /// `skipped` (a pod resolving random names must not grow the state).
    #[serde(default = "default_max_names")]
    pub max_names: usize,
}

fn default_max_rules() -> usize {
    10_000
}

fn default_name_wildcard_min() -> usize {
    5
}

fn default_max_names() -> usize {
    4096
}

impl LearnerConfig {
    pub fn new(workload: impl Into<String>) -> Self {
        LearnerConfig {
            workload: workload.into(),
            replica: None,
            inbound_v4_prefix: 24,
            inbound_v6_prefix: 64,
            inbound_min_clients: 2,
            max_paths_per_rule: 256,
            max_rules: default_max_rules(),
            name_wildcard_min: default_name_wildcard_min(),
            max_names: default_max_names(),
        }
    }

    pub fn validate(&self) -> Result<(), LearnerError> {
        crate::store::split_workload(&self.workload)?;
        if !(WIDEST_V4_PREFIX..=32).contains(&self.inbound_v4_prefix) {
            return Err(LearnerError::Config(format!(
                "inboundV4Prefix {} must be between {WIDEST_V4_PREFIX} and 32",
                self.inbound_v4_prefix
            )));
        }
        if !(WIDEST_V6_PREFIX..=128).contains(&self.inbound_v6_prefix) {
            return Err(LearnerError::Config(format!(
                "inboundV6Prefix {} must be between {WIDEST_V6_PREFIX} and 128",
                self.inbound_v6_prefix
            )));
        }
        if self.name_wildcard_min == 1 {
            return Err(LearnerError::Config(
                "nameWildcardMin 1 would widen every single name to its zone; use 0 (off) or >= 2"
                    .into(),
            ));
        }
        if self.inbound_min_clients == 1 {
            return Err(LearnerError::Config(
                "inboundMinClients 1 would widen every single client to a network; use 0 (off) or >= 2".into(),
            ));
        }
        Ok(())
    }
}

/// Who the peer is, after generalisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerKey {
    Name(String),
    Addr(IpAddr),
}

/// The shape of one learned rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleKey {
    pub direction: Direction,
    pub peer: PeerKey,
    pub port: u16,
    pub protocol: AppProtocol,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathAgg {
    pub methods: BTreeSet<String>,
    pub evidence: EvidenceAgg,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleAgg {
    pub evidence: EvidenceAgg,
    pub processes: BTreeSet<String>,
    /// TLS SNI values seen (recorded for review, never the rule's peer).
    #[serde(default)]
    pub snis: BTreeSet<String>,
    /// HTTP Host values seen (outbound only).
    #[serde(default)]
    pub hosts: BTreeSet<String>,
    /// Path template → methods and evidence.
    #[serde(default)]
    pub paths: BTreeMap<String, PathAgg>,
    #[serde(default)]
    pub paths_dropped: u64,
    /// For name peers: the addresses last seen behind the name, newest last
    /// (export fallback when a target cannot express names).
    #[serde(default)]
    pub recent_ips: Vec<IpAddr>,
}

impl RuleAgg {
    fn absorb(&mut self, o: &RuleAgg, max_paths: usize) {
        self.evidence.absorb(&o.evidence);
        self.processes.extend(o.processes.iter().cloned());
        self.snis.extend(o.snis.iter().cloned());
        self.hosts.extend(o.hosts.iter().cloned());
        for (t, p) in &o.paths {
            if let Some(mine) = self.paths.get_mut(t) {
                mine.methods.extend(p.methods.iter().cloned());
                mine.evidence.absorb(&p.evidence);
            } else if self.paths.len() < max_paths {
                self.paths.insert(t.clone(), p.clone());
            } else {
                self.paths_dropped += p.evidence.count;
            }
        }
        self.paths_dropped += o.paths_dropped;
        for ip in &o.recent_ips {
            push_recent(&mut self.recent_ips, *ip);
        }
    }
}

fn push_recent(v: &mut Vec<IpAddr>, ip: IpAddr) {
    if v.last() == Some(&ip) {
        return;
    }
    v.retain(|x| *x != ip);
    if v.len() >= MAX_RECENT_IPS {
        v.remove(0);
    }
    v.push(ip);
}

fn insert_bounded(set: &mut BTreeSet<String>, v: &str) {
    if set.len() < MAX_NAMES && !set.contains(v) {
        set.insert(v.to_string());
    }
}

/// The learning state of one workload replica.
#[derive(Debug, Clone)]
pub struct Learner {
    config: LearnerConfig,
    rules: HashMap<RuleKey, RuleAgg>,
    processes: BTreeMap<String, EvidenceAgg>,
    /// DNS names the pod resolved (see [`crate::names`]).
    names: BTreeMap<String, EvidenceAgg>,
    /// Names have been recorded since learning began. False for a state
    /// learned before names were recorded, or fed DNS records without their
    /// question (an old flow log): its baseline keeps `allowedNames: any`,
    /// since some names the pod resolved are unknown and listing only the
    /// others would lock the pod out.
    names_recorded: bool,
    skipped: u64,
    /// The current record's path template, reused: looking a known path up
    /// needs no allocation.
    template: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    format: u32,
    config: LearnerConfig,
    rules: Vec<(RuleKey, RuleAgg)>,
    processes: BTreeMap<String, EvidenceAgg>,
    #[serde(default)]
    names: BTreeMap<String, EvidenceAgg>,
    /// Absent in snapshots written before names were recorded.
    #[serde(default)]
    names_recorded: bool,
    skipped: u64,
}

const SNAPSHOT_FORMAT: u32 = 1;

impl Learner {
    pub fn new(config: LearnerConfig) -> Result<Self, LearnerError> {
        config.validate()?;
        Ok(Learner {
            config,
            rules: HashMap::new(),
            processes: BTreeMap::new(),
            names: BTreeMap::new(),
            names_recorded: true,
            skipped: 0,
            template: String::new(),
        })
    }

    pub fn config(&self) -> &LearnerConfig {
        &self.config
    }

    /// Number of distinct rule shapes learned so far.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Records that could not be learned (service port 0, or a new shape
    /// beyond `max_rules`).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The raw learned state, for exports that need more than the document.
    pub fn rules(&self) -> impl Iterator<Item = (&RuleKey, &RuleAgg)> {
        self.rules.iter()
    }

    /// Whether this state has recorded DNS names from its start.
    pub fn names_recorded(&self) -> bool {
        self.names_recorded
    }

    /// The DNS names learned so far, with their evidence.
    pub fn names(&self) -> &BTreeMap<String, EvidenceAgg> {
        &self.names
    }

    pub fn ingest(&mut self, rec: &FlowRecord) {
        let flow = &rec.flow;
        match &flow.dns {
            Some(q) => self.learn_name(rec, q),
            // A DNS record without its question: from a proxy (or a flow
            // log) older than recorded names, so names are missing.
            None if flow.protocol == AppProtocol::Dns => self.names_recorded = false,
            None => {}
        }
        let port = flow.service_port();
        if port == 0 {
            self.skipped += 1;
            return;
        }
        // An HTTP connection is learned from its requests, which carry the
        // host, method and path; its connection record has none of them and,
        // with several names behind one address, no way to pick the right
        // one — learning it would add a path-less rule under a guessed name.
        if matches!(flow.protocol, AppProtocol::Http | AppProtocol::Http2) && flow.http.is_none() {
            return;
        }
        let peer = match flow.direction {
            Direction::Outbound => match flow_name(flow) {
                Some(n) => PeerKey::Name(n),
                None => PeerKey::Addr(flow.peer.ip()),
            },
            Direction::Inbound => PeerKey::Addr(flow.peer.ip()),
        };
        let peer_is_name = matches!(peer, PeerKey::Name(_));
        let key = RuleKey {
            direction: flow.direction,
            peer,
            port,
            protocol: flow.protocol,
        };
        let replica = self.config.replica.as_deref();
        let max_paths = self.config.max_paths_per_rule;
        let at = rec.start_ms;
        if self.rules.len() >= self.config.max_rules && !self.rules.contains_key(&key) {
            self.skipped += 1;
            return;
        }
        let agg = self.rules.entry(key).or_default();
        if agg.evidence.count == 0 {
            if let Some(r) = replica {
                agg.evidence.replicas.insert(r.to_string());
            }
        }
        agg.evidence.observe(at, || example(rec));
        if let Some(p) = &flow.process {
            if !agg.processes.contains(&p.exe) {
                agg.processes.insert(p.exe.clone());
            }
            match self.processes.get_mut(&p.exe) {
                Some(e) => e.observe(at, String::new),
                None => {
                    let mut e = EvidenceAgg::default();
                    if let Some(r) = replica {
                        e.replicas.insert(r.to_string());
                    }
                    e.observe(at, || example(rec));
                    self.processes.insert(p.exe.clone(), e);
                }
            }
        }
        if let Some(sni) = flow.sni.as_deref().and_then(normalize_host_cow) {
            insert_bounded(&mut agg.snis, &sni);
        }
        if peer_is_name {
            push_recent(&mut agg.recent_ips, flow.peer.ip());
        }
        if let Some(h) = &flow.http {
            if flow.direction == Direction::Outbound {
                if let Some(host) = h.host.as_deref().and_then(normalize_host_cow) {
                    insert_bounded(&mut agg.hosts, &host);
                }
            }
            path_template_into(&h.path, &mut self.template);
            let method: Cow<'_, str> = if h.method.bytes().any(|b| b.is_ascii_lowercase()) {
                Cow::Owned(h.method.to_ascii_uppercase())
            } else {
                Cow::Borrowed(&h.method)
            };
            let known = agg.paths.len();
            match agg.paths.get_mut(self.template.as_str()) {
                Some(p) => {
                    if !p.methods.contains(method.as_ref()) {
                        p.methods.insert(method.into_owned());
                    }
                    p.evidence.observe(at, String::new);
                }
                None if known < max_paths => {
                    let mut p = PathAgg::default();
                    p.methods.insert(method.into_owned());
                    if let Some(r) = replica {
                        p.evidence.replicas.insert(r.to_string());
                    }
                    p.evidence.observe(at, || example(rec));
                    agg.paths.insert(self.template.clone(), p);
                }
                None => agg.paths_dropped += 1,
            }
        }
    }

    fn learn_name(&mut self, rec: &FlowRecord, q: &podwarden_policy::DnsQueryInfo) {
        if !rec.decision.is_allowed() || !crate::names::learnable(q) {
            return;
        }
        let at = rec.start_ms;
        let name: Cow<'_, str> =
            if q.name.ends_with('.') || q.name.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(q.name.trim_end_matches('.').to_ascii_lowercase())
            } else {
                Cow::Borrowed(&q.name)
            };
        if let Some(e) = self.names.get_mut(name.as_ref()) {
            e.observe(at, String::new);
            return;
        }
        if self.names.len() >= self.config.max_names {
            self.skipped += 1;
            return;
        }
        let mut e = EvidenceAgg::default();
        if let Some(r) = &self.config.replica {
            e.replicas.insert(r.clone());
        }
        e.observe(at, || {
            let by = rec
                .flow
                .process
                .as_ref()
                .map(|p| format!(" by {}", p.exe))
                .unwrap_or_default();
            format!("{} {} via {}{by}", q.qtype, q.name, rec.flow.peer)
        });
        self.names.insert(name.into_owned(), e);
    }

    pub fn ingest_all<'a>(&mut self, recs: impl IntoIterator<Item = &'a FlowRecord>) {
        for r in recs {
            self.ingest(r);
        }
    }

    /// The baseline document: `kind: Baseline`, rules sorted by id.
    pub fn baseline(&self) -> PolicyDocument {
        let mut rules = Vec::new();
        for (dir, peer, port, proto, agg) in self.generalised_entries() {
            rules.extend(entry_rules(dir, &peer, port, proto, &agg));
        }
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let dns = self.dns_settings(&rules);
        let processes = self
            .processes
            .iter()
            .map(|(exe, e)| ProcessRule {
                exe: exe.clone(),
                note: "learned".into(),
                evidence: Some(e.to_evidence()),
            })
            .collect();
        PolicyDocument {
            api_version: API_VERSION.to_string(),
            kind: DocumentKind::Baseline,
            metadata: Metadata {
                workload: self.config.workload.clone(),
                ..Default::default()
            },
            spec: PolicySpec {
                mode: Mode::Learn,
                dns,
                rules,
                processes,
                ..Default::default()
            },
        }
    }

    /// `allowedNames: listed` with the learned names, when names were
    /// recorded from the start; otherwise the default (`any`).
    fn dns_settings(&self, rules: &[Rule]) -> DnsSettings {
        if !self.names_recorded {
            return DnsSettings::default();
        }
        let covered: Vec<String> = rules
            .iter()
            .filter(|r| r.direction == Direction::Outbound)
            .filter_map(|r| match &r.peer {
                Peer::Fqdn(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        let learned =
            crate::names::proposed_names(&self.names, &covered, self.config.name_wildcard_min);
        DnsSettings {
            allowed_names: AllowedNames::Listed,
            allow_names: learned.iter().map(|l| l.name.clone()).collect(),
            learned_names: learned,
            ..Default::default()
        }
    }

    /// Rule shapes after peer generalisation (inbound subnet collapsing),
    /// in a deterministic order.
    fn generalised_entries(&self) -> Vec<(Direction, Peer, u16, AppProtocol, RuleAgg)> {
        let mut keys: Vec<&RuleKey> = self.rules.keys().collect();
        keys.sort();
        let cfg = &self.config;
        // Inbound host peers grouped by (port, protocol, network).
        let mut groups: BTreeMap<(u16, AppProtocol, IpNet), Vec<&RuleKey>> = BTreeMap::new();
        let mut out = Vec::new();
        for k in keys {
            match (&k.direction, &k.peer) {
                (Direction::Inbound, PeerKey::Addr(ip)) if cfg.inbound_min_clients >= 2 => {
                    let net = network_of(*ip, cfg.inbound_v4_prefix, cfg.inbound_v6_prefix);
                    groups.entry((k.port, k.protocol, net)).or_default().push(k);
                }
                _ => {
                    let peer = match &k.peer {
                        PeerKey::Name(n) => Peer::Fqdn(n.clone()),
                        PeerKey::Addr(ip) => Peer::Cidr(IpNet::from(*ip)),
                    };
                    if let Some(a) = self.rules.get(k) {
                        out.push((k.direction, peer, k.port, k.protocol, a.clone()));
                    }
                }
            }
        }
        for ((port, proto, net), members) in groups {
            if members.len() >= cfg.inbound_min_clients {
                let mut agg = RuleAgg::default();
                for k in &members {
                    if let Some(a) = self.rules.get(k) {
                        agg.absorb(a, cfg.max_paths_per_rule);
                    }
                }
                out.push((Direction::Inbound, Peer::Cidr(net), port, proto, agg));
            } else {
                for k in members {
                    if let (PeerKey::Addr(ip), Some(a)) = (&k.peer, self.rules.get(k)) {
                        out.push((
                            Direction::Inbound,
                            Peer::Cidr(IpNet::from(*ip)),
                            port,
                            proto,
                            a.clone(),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Writes the state atomically (temp file + fsync + rename).
    pub fn save(&self, path: &Path) -> Result<(), LearnerError> {
        let mut rules: Vec<(RuleKey, RuleAgg)> = self
            .rules
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        rules.sort_by(|a, b| a.0.cmp(&b.0));
        let snap = Snapshot {
            format: SNAPSHOT_FORMAT,
            config: self.config.clone(),
            rules,
            processes: self.processes.clone(),
            names: self.names.clone(),
            names_recorded: self.names_recorded,
            skipped: self.skipped,
        };
        let bytes = serde_json::to_vec(&snap).map_err(|e| LearnerError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        write_atomic(path, &bytes)
    }

    /// Restores a snapshot; the configured workload must match the file's.
    pub fn load(path: &Path) -> Result<Self, LearnerError> {
        let bytes = std::fs::read(path).map_err(|e| LearnerError::io(path, e))?;
        let snap: Snapshot = serde_json::from_slice(&bytes).map_err(|e| LearnerError::Json {
            path: path.to_path_buf(),
            source: e,
        })?;
        if snap.format != SNAPSHOT_FORMAT {
            return Err(LearnerError::Config(format!(
                "{}: snapshot format {} is not supported (expected {SNAPSHOT_FORMAT})",
                path.display(),
                snap.format
            )));
        }
        snap.config.validate()?;
        Ok(Learner {
            config: snap.config,
            rules: snap.rules.into_iter().collect(),
            processes: snap.processes,
            names: snap.names,
            names_recorded: snap.names_recorded,
            skipped: snap.skipped,
            template: String::new(),
        })
    }
}

/// One line a reviewer can read: who, to where, what, by which process.
fn example(rec: &FlowRecord) -> String {
    let f = &rec.flow;
    let mut s = match f.direction {
        Direction::Outbound => format!("{} -> {}", f.local, f.peer),
        Direction::Inbound => format!("{} -> {}", f.peer, f.local),
    };
    if let Some(n) = f.peer_names.first() {
        s.push_str(&format!(" ({n})"));
    }
    s.push(' ');
    s.push_str(f.protocol.as_str());
    if let Some(sni) = &f.sni {
        s.push_str(&format!(" sni={sni}"));
    }
    if let Some(h) = &f.http {
        s.push_str(&format!(" {} {}", h.method, h.path));
        if let Some(host) = &h.host {
            s.push_str(&format!(" host={host}"));
        }
    }
    if let Some(p) = &f.process {
        s.push_str(&format!(" by {} (pid {}, uid {})", p.exe, p.pid, p.uid));
    }
    s
}

/// The deterministic id of a rule shape: readable, and unique because a
/// hash of the exact key is appended whenever the readable part is lossy.
pub fn rule_id(direction: Direction, peer: &Peer, port: u16, proto: AppProtocol) -> String {
    let dir = match direction {
        Direction::Inbound => "in",
        Direction::Outbound => "out",
    };
    let peer_text = match peer {
        Peer::Any => "any".to_string(),
        Peer::Cidr(n) if n.prefix_len() == n.max_prefix_len() => n.addr().to_string(),
        Peer::Cidr(n) => n.to_string(),
        Peer::Fqdn(f) => f.clone(),
    };
    let (s, lossy) = slug(&peer_text);
    let mut id = format!("{dir}-{}-{s}-{port}", proto.as_str());
    if lossy || id.len() > 80 {
        id.truncate(70);
        id.push('-');
        id.push_str(&short_hash(&format!(
            "{dir}|{}|{peer_text}|{port}",
            proto.as_str()
        )));
    }
    id
}

fn entry_rules(
    dir: Direction,
    peer: &Peer,
    port: u16,
    proto: AppProtocol,
    agg: &RuleAgg,
) -> Vec<Rule> {
    let base_id = rule_id(dir, peer, port, proto);
    let mut note = format!("learned from {} flows", agg.evidence.count);
    if !agg.snis.is_empty() {
        note.push_str(&format!("; SNI seen: {}", join(&agg.snis)));
    }
    if matches!(peer, Peer::Fqdn(_)) {
        note.push_str("; peer name from the pod's resolver");
    }
    if agg.paths_dropped > 0 {
        note.push_str(&format!(
            "; {} requests on further paths not learned (path cap reached)",
            agg.paths_dropped
        ));
    }
    let base = Rule {
        id: base_id.clone(),
        note,
        direction: dir,
        peer: peer.clone(),
        ports: vec![PortSpec::single(port)],
        protocols: vec![proto],
        http: None,
        processes: agg.processes.iter().cloned().collect(),
        evidence: Some(agg.evidence.to_evidence()),
    };
    if agg.paths.is_empty() {
        return vec![base];
    }
    // Methods are kept per path template: templates sharing a method set
    // share a rule, so GET /a and DELETE /b do not allow DELETE /a.
    let mut by_methods: BTreeMap<&BTreeSet<String>, Vec<(&String, &PathAgg)>> = BTreeMap::new();
    for (t, p) in &agg.paths {
        by_methods.entry(&p.methods).or_default().push((t, p));
    }
    by_methods
        .into_iter()
        .map(|(methods, paths)| {
            let mut ev = EvidenceAgg::default();
            for (_, p) in &paths {
                ev.absorb(&p.evidence);
            }
            let m: Vec<String> = methods.iter().map(|m| m.to_ascii_lowercase()).collect();
            let (ms, _) = slug(&m.join("-"));
            let mut r = base.clone();
            r.id = format!("{base_id}-{ms}");
            r.evidence = Some(ev.to_evidence());
            r.http = Some(HttpMatch {
                hosts: agg.hosts.iter().cloned().collect(),
                methods: methods.iter().cloned().collect(),
                paths: paths.iter().map(|(t, _)| (*t).clone()).collect(),
            });
            r
        })
        .collect()
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Writes `bytes` to `path` atomically: a reader sees the old or the new
/// file, never a torn one, even if the process dies mid-write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LearnerError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| LearnerError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok::<(), std::io::Error>(())
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(LearnerError::io(path, e));
    }
    Ok(())
}

#[cfg(test)]
#[path = "learn_tests.rs"]
mod tests;
