//! Dry-run replay: what a candidate policy would allow and deny on recorded
//! traffic, grouped so a reviewer reads dozens of lines, not millions.
//!
//! The verdict comes from the same [`CompiledPolicy`] the proxy runs
//! ([`CompiledPolicy::allowing_rule`], the verdict behind
//! `Decide::decide`, and [`CompiledPolicy::explain`] for the nearest
//! rules of a denied group); a flow "would be denied" when no rule allows
//! it, whatever the policy's mode. Grouping ([`Replay::observe`]) is pure:
//! record and decision in, counters out. Groups are keyed by direction, peer
//! (resolver name when there is one, else the address), service port,
//! protocol, process, and for HTTP requests the method and path template
//! (learning's [`path_template`], so groups line up with learned rules).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};

use podwarden_policy::{AppProtocol, CompiledPolicy, Decision, Direction, Explanation, FlowRecord};
use serde::Serialize;

use crate::evidence::rfc3339_ms;
use crate::generalize::{best_name, best_name_ref, path_template, path_template_into};
use crate::learn::PeerKey;

/// What flows of one group have in common.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKey {
    pub direction: Direction,
    pub peer: PeerKey,
    pub port: u16,
    pub protocol: AppProtocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path template (`/users/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl GroupKey {
    pub fn of(rec: &FlowRecord) -> GroupKey {
        let f = &rec.flow;
        let peer = match f.direction {
            Direction::Outbound => match best_name(&f.peer_names) {
                Some(n) => PeerKey::Name(n),
                None => PeerKey::Addr(f.peer.ip()),
            },
            Direction::Inbound => PeerKey::Addr(f.peer.ip()),
        };
        GroupKey {
            direction: f.direction,
            peer,
            port: f.service_port(),
            protocol: f.protocol,
            process: f.process.as_ref().map(|p| p.exe.clone()),
            method: f.http.as_ref().map(|h| h.method.to_ascii_uppercase()),
            path: f.http.as_ref().map(|h| path_template(&h.path)),
        }
    }

    /// `outbound api.example:443/tls by /usr/bin/curl GET /v1/{id}`
    pub fn label(&self) -> String {
        let dir = match self.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        let peer = match &self.peer {
            PeerKey::Name(n) => n.clone(),
            PeerKey::Addr(std::net::IpAddr::V6(a)) => format!("[{a}]"),
            PeerKey::Addr(a) => a.to_string(),
        };
        let mut s = format!("{dir} {peer}:{}/{}", self.port, self.protocol.as_str());
        if let Some(p) = &self.process {
            s.push_str(&format!(" by {p}"));
        }
        if let (Some(m), Some(p)) = (&self.method, &self.path) {
            s.push_str(&format!(" {m} {p}"));
        }
        s
    }
}

/// One group of replayed flows with the same key and the same verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    #[serde(flatten)]
    pub key: GroupKey,
    /// The rule that allows these flows; `None` = would be denied.
    pub rule: Option<String>,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// The first record of the group.
    pub example: FlowRecord,
    /// For a denied group: why, and the nearest rules (explained on the
    /// example record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

impl Group {
    pub fn would_deny(&self) -> bool {
        self.rule.is_none()
    }
}

/// Accumulates groups; feed it records and the decisions made for them.
///
/// Grouping runs once per replayed record, so a record that lands in an
/// existing group costs no allocation and few cache misses: its key is
/// built as a borrowed view ([`KeyView`], with the case-folded name, method
/// and path template in reused buffers) and encoded into a reused byte
/// buffer; the table holds only group numbers, and a lookup compares the
/// group's hash and its encoded key (kept back to back in one arena) in
/// place. The owned [`GroupKey`] and the example record are built only when
/// a new group is created.
#[derive(Debug, Default)]
pub struct Replay {
    /// Group numbers; 4 bytes a slot keeps the table itself cache-resident.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Encoded keys of all groups, back to back.
    keys: Vec<u8>,
    /// Hot per-group state, by group number.
    hot: Vec<Hot>,
    /// Cold per-group state (owned key, rule, example), by group number.
    groups: Vec<Group>,
    scratch: Scratch,
    records: u64,
    denied: u64,
}

/// What a lookup and a count touch, in one place.
#[derive(Debug, Clone, Copy)]
struct Hot {
    hash: u64,
    key_start: usize,
    key_end: usize,
    count: u64,
    first_ms: u64,
    last_ms: u64,
}

/// Reused buffers for the parts of a key that are not plain borrows.
#[derive(Debug, Default)]
struct Scratch {
    name: String,
    method: String,
    path: String,
    encoded: Vec<u8>,
}

/// A record's group key, borrowed from the record and the scratch buffers;
/// materialises to exactly [`GroupKey::of`] plus the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyView<'a> {
    direction: Direction,
    peer: PeerView<'a>,
    port: u16,
    protocol: AppProtocol,
    process: Option<&'a str>,
    method: Option<&'a str>,
    path: Option<&'a str>,
    rule: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerView<'a> {
    Name(&'a str),
    Addr(IpAddr),
}

impl<'a> KeyView<'a> {
    fn of(
        rec: &'a FlowRecord,
        rule: Option<&'a str>,
        name: &'a mut String,
        method: &'a mut String,
        path: &'a mut String,
    ) -> KeyView<'a> {
        let f = &rec.flow;
        let peer = match f.direction {
            Direction::Outbound => match best_name_ref(&f.peer_names) {
                Some(n) => {
                    name.clear();
                    name.push_str(n);
                    name.make_ascii_lowercase();
                    PeerView::Name(name.as_str())
                }
                None => PeerView::Addr(f.peer.ip()),
            },
            Direction::Inbound => PeerView::Addr(f.peer.ip()),
        };
        let (m, p) = match &f.http {
            Some(h) => {
                method.clear();
                method.push_str(&h.method);
                method.make_ascii_uppercase();
                path_template_into(&h.path, path);
                (Some(method.as_str()), Some(path.as_str()))
            }
            None => (None, None),
        };
        KeyView {
            direction: f.direction,
            peer,
            port: f.service_port(),
            protocol: f.protocol,
            process: f.process.as_ref().map(|p| p.exe.as_str()),
            method: m,
            path: p,
            rule,
        }
    }

    /// An injective byte encoding (fixed-size fields, tagged options and
    /// length-prefixed strings): equal bytes if and only if equal views.
    fn encode(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                None => out.push(0),
                Some(s) => {
                    out.push(1);
                    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
                    out.extend_from_slice(s.as_bytes());
                }
            }
        }
        out.clear();
        out.push(self.direction as u8);
        out.push(self.protocol as u8);
        out.extend_from_slice(&self.port.to_le_bytes());
        match self.peer {
            PeerView::Addr(IpAddr::V4(a)) => {
                out.push(0);
                out.extend_from_slice(&a.octets());
            }
            PeerView::Addr(IpAddr::V6(a)) => {
                out.push(1);
                out.extend_from_slice(&a.octets());
            }
            PeerView::Name(n) => {
                out.push(2);
                text(out, Some(n));
            }
        }
        text(out, self.process);
        text(out, self.method);
        text(out, self.path);
        text(out, self.rule);
    }

    fn to_key(self) -> GroupKey {
        GroupKey {
            direction: self.direction,
            peer: match self.peer {
                PeerView::Name(n) => PeerKey::Name(n.to_string()),
                PeerView::Addr(a) => PeerKey::Addr(a),
            },
            port: self.port,
            protocol: self.protocol,
            process: self.process.map(str::to_string),
            method: self.method.map(str::to_string),
            path: self.path.map(str::to_string),
        }
    }
}

impl Replay {
    pub fn new() -> Replay {
        Replay::default()
    }

    /// Counts `rec` under its group; `decision.rule` is the allowing rule.
    pub fn observe(&mut self, rec: &FlowRecord, decision: &Decision) {
        self.count(rec, decision.rule.as_deref(), 1, rec.start_ms, rec.start_ms);
    }

    /// Counts `count` flows shaped like `rec`, seen from `first_ms` to
    /// `last_ms` (an aggregate, e.g. one learned baseline entry with its
    /// evidence). `observe` is `observe_many(rec, d, 1, start, start)`.
    pub fn observe_many(
        &mut self,
        rec: &FlowRecord,
        decision: &Decision,
        count: u64,
        first_ms: u64,
        last_ms: u64,
    ) {
        self.count(rec, decision.rule.as_deref(), count, first_ms, last_ms);
    }

    /// `rule` allows the flows; `None` = they would be denied.
    fn count(
        &mut self,
        rec: &FlowRecord,
        rule: Option<&str>,
        count: u64,
        first_ms: u64,
        last_ms: u64,
    ) {
        self.records += count;
        if rule.is_none() {
            self.denied += count;
        }
        let Replay {
            index,
            hasher,
            keys,
            hot,
            groups,
            scratch,
            ..
        } = self;
        let Scratch {
            name,
            method,
            path,
            encoded,
        } = scratch;
        let view = KeyView::of(rec, rule, name, method, path);
        view.encode(encoded);
        let hash = hasher.hash_one(encoded.as_slice());
        let found = index.find(hash, |&g| {
            let h = &hot[g as usize];
            h.hash == hash && keys[h.key_start..h.key_end] == encoded[..]
        });
        if let Some(&g) = found {
            let h = &mut hot[g as usize];
            h.count += count;
            h.first_ms = h.first_ms.min(first_ms);
            h.last_ms = h.last_ms.max(last_ms);
            return;
        }
        let Ok(g) = u32::try_from(groups.len()) else {
            // 4 billion distinct groups cannot be shown anyway; count the
            // record (above) but stop adding groups rather than wrap.
            return;
        };
        hot.push(Hot {
            hash,
            key_start: keys.len(),
            key_end: keys.len() + encoded.len(),
            count,
            first_ms,
            last_ms,
        });
        keys.extend_from_slice(encoded);
        groups.push(Group {
            key: view.to_key(),
            rule: view.rule.map(str::to_string),
            count: 0,
            first_ms: 0,
            last_ms: 0,
            first_seen: String::new(),
            last_seen: String::new(),
            example: rec.clone(),
            explanation: None,
        });
        index.insert_unique(hash, g, |&j| hot[j as usize].hash);
    }

    /// Decides `rec` with `policy` (the proxy's decision code) and counts it.
    pub fn replay(&mut self, policy: &CompiledPolicy, rec: &FlowRecord) {
        let rule = policy.allowing_rule(&rec.flow);
        self.count(rec, rule, 1, rec.start_ms, rec.start_ms);
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// The report; denied groups are explained with `policy` when given.
    pub fn finish(self, policy: Option<&CompiledPolicy>) -> ReplayReport {
        let mut allowed = Vec::new();
        let mut denied = Vec::new();
        for (mut g, c) in self.groups.into_iter().zip(self.hot) {
            g.count = c.count;
            g.first_ms = c.first_ms;
            g.last_ms = c.last_ms;
            g.first_seen = rfc3339_ms(g.first_ms);
            g.last_seen = rfc3339_ms(g.last_ms);
            if g.would_deny() {
                g.explanation = policy.map(|p| p.explain(&g.example.flow));
                denied.push(g);
            } else {
                allowed.push(g);
            }
        }
        // Most frequent first; ties in key order so output is stable.
        let order = |a: &Group, b: &Group| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key));
        allowed.sort_by(order);
        denied.sort_by(order);
        ReplayReport {
            records: self.records,
            allowed_records: self.records - self.denied,
            denied_records: self.denied,
            denied,
            allowed,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    pub records: u64,
    pub allowed_records: u64,
    pub denied_records: u64,
    /// Groups the policy would deny, most frequent first.
    pub denied: Vec<Group>,
    pub allowed: Vec<Group>,
}

/// Per rule: how many replayed records it allowed and when it last did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleUse {
    pub hits: u64,
    pub last_ms: u64,
}

impl ReplayReport {
    pub fn any_denied(&self) -> bool {
        self.denied_records > 0
    }

    pub fn rule_use(&self) -> BTreeMap<&str, RuleUse> {
        let mut m: BTreeMap<&str, RuleUse> = BTreeMap::new();
        for g in &self.allowed {
            if let Some(r) = &g.rule {
                let u = m.entry(r.as_str()).or_default();
                u.hits += g.count;
                u.last_ms = u.last_ms.max(g.last_ms);
            }
        }
        m
    }

    /// Rule ids (in `rule_ids` order) that allowed no replayed record.
    pub fn unused<'a>(&self, rule_ids: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        let used = self.rule_use();
        rule_ids
            .into_iter()
            .filter(|id| !used.contains_key(id))
            .collect()
    }

    /// Human-readable summary: denied groups with their nearest rules, then
    /// allowed groups with the rule that allows them.
    pub fn render_text(&self) -> String {
        let mut s = format!(
            "{} records: {} allowed, {} would be denied ({} groups denied, {} allowed)\n",
            self.records,
            self.allowed_records,
            self.denied_records,
            self.denied.len(),
            self.allowed.len()
        );
        if !self.denied.is_empty() {
            s.push_str("\nWOULD DENY\n");
        }
        for g in &self.denied {
            s.push_str(&format!(
                "  {:>7}x  {}  [{} .. {}]  e.g. {}\n",
                g.count,
                g.key.label(),
                g.first_seen,
                g.last_seen,
                g.example.id
            ));
            if let Some(e) = &g.explanation {
                s.push_str(&format!("           why: {}\n", violation_text(e)));
                for n in e.near_misses.iter().take(3) {
                    let why: Vec<String> = n.reasons.iter().map(|r| r.to_string()).collect();
                    s.push_str(&format!("           near {}: {}\n", n.rule, why.join("; ")));
                }
            }
        }
        if !self.allowed.is_empty() {
            s.push_str("\nALLOWED\n");
        }
        for g in &self.allowed {
            s.push_str(&format!(
                "  {:>7}x  {}  by {}  [{} .. {}]\n",
                g.count,
                g.key.label(),
                g.rule.as_deref().unwrap_or("-"),
                g.first_seen,
                g.last_seen
            ));
        }
        s
    }
}

fn violation_text(e: &Explanation) -> String {
    use podwarden_policy::Violation;
    match &e.violation {
        Some(Violation::NoRule) | None => "no rule allows it".to_string(),
        Some(Violation::ProcessNotInBaseline { exe }) => {
            format!("process {exe} is not in the workload's process baseline")
        }
        Some(Violation::TargetNotAllowed { rule, target, why }) => {
            format!("connection allowed by {rule} but its target {target} is not: {why}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{out, RecExt};
    use podwarden_policy::{load_policy_str, Mode};

    fn allow(rule: &str) -> Decision {
        Decision::new(Mode::Protect, Some(rule.into()))
    }
    fn deny() -> Decision {
        Decision::new(Mode::Protect, None)
    }

    #[test]
    fn groups_by_shape_with_counts_and_times() {
        let mut r = Replay::new();
        let a1 = out("192.0.2.7:443", 40001, AppProtocol::Http)
            .named(&["API.example."])
            .by("/app")
            .req("get", None, "/users/12")
            .at(5_000);
        // Another client port, id and address behind the same name: same group.
        let a2 = out("192.0.2.8:443", 40002, AppProtocol::Http)
            .named(&["api.example"])
            .by("/app")
            .req("GET", None, "/users/99")
            .at(1_000);
        let b = out("192.0.2.7:443", 40003, AppProtocol::Http)
            .named(&["api.example"])
            .by("/app")
            .req("POST", None, "/users/12")
            .at(3_000);
        let c = out("198.51.100.1:5432", 40004, AppProtocol::Opaque).at(2_000);
        r.observe(&a1, &allow("api"));
        r.observe(&a2, &allow("api"));
        r.observe(&b, &deny());
        r.observe(&c, &deny());
        r.observe(&c, &deny());
        let rep = r.finish(None);
        assert_eq!(
            (rep.records, rep.allowed_records, rep.denied_records),
            (5, 2, 3)
        );
        assert_eq!(rep.allowed.len(), 1);
        let g = &rep.allowed[0];
        assert_eq!(g.count, 2);
        assert_eq!((g.first_ms, g.last_ms), (1_000, 5_000));
        assert_eq!(g.key.peer, PeerKey::Name("api.example".into()));
        assert_eq!(g.key.path.as_deref(), Some("/users/{id}"));
        assert_eq!(g.key.method.as_deref(), Some("GET"));
        assert_eq!(
            g.example.start_ms, 5_000,
            "example is the first record seen"
        );
        assert_eq!(
            g.key.label(),
            "outbound api.example:443/http by /app GET /users/{id}"
        );
        // Denied: most frequent first.
        assert_eq!(rep.denied.len(), 2);
        assert_eq!(rep.denied[0].count, 2);
        assert_eq!(rep.denied[0].key.port, 5432);
        assert_eq!(rep.denied[1].key.method.as_deref(), Some("POST"));
        assert!(rep.any_denied());
    }

    #[test]
    fn same_shape_different_verdicts_are_separate_groups() {
        let mut r = Replay::new();
        let x = out("192.0.2.7:80", 1, AppProtocol::Http);
        r.observe(&x, &allow("a"));
        r.observe(&x, &allow("b"));
        r.observe(&x, &deny());
        let rep = r.finish(None);
        assert_eq!(rep.allowed.len(), 2);
        assert_eq!(rep.denied.len(), 1);
    }

    #[test]
    fn rule_use_and_unused() {
        let mut r = Replay::new();
        let x = out("192.0.2.7:80", 1, AppProtocol::Http).at(10);
        let y = out("192.0.2.9:80", 1, AppProtocol::Http).at(20);
        r.observe(&x, &allow("a"));
        r.observe(&y, &allow("a"));
        r.observe(&y, &deny());
        let rep = r.finish(None);
        let u = rep.rule_use();
        assert_eq!(
            u["a"],
            RuleUse {
                hits: 2,
                last_ms: 20
            }
        );
        assert_eq!(rep.unused(["a", "b", "c"]), vec!["b", "c"]);
    }

    #[test]
    fn empty_replay_denies_nothing() {
        let rep = Replay::new().finish(None);
        assert!(!rep.any_denied());
        assert!(rep.render_text().starts_with("0 records"));
    }

    /// A group as the tests compare it: key, rule, count, first, last,
    /// example id.
    type Row = (GroupKey, Option<String>, u64, u64, u64, String);
    type Acc = (u64, u64, u64, String);

    /// The grouping as it was first written (owned [`GroupKey::of`] in a
    /// map): the borrowed fast path must produce exactly these groups.
    fn reference(obs: &[(FlowRecord, Option<String>)]) -> Vec<Row> {
        let mut m: std::collections::HashMap<(GroupKey, Option<String>), Acc> =
            std::collections::HashMap::new();
        for (rec, rule) in obs {
            let e = m.entry((GroupKey::of(rec), rule.clone())).or_insert((
                0,
                rec.start_ms,
                rec.start_ms,
                rec.id.clone(),
            ));
            e.0 += 1;
            e.1 = e.1.min(rec.start_ms);
            e.2 = e.2.max(rec.start_ms);
        }
        let mut v: Vec<_> = m
            .into_iter()
            .map(|((k, r), (c, f, l, ex))| (k, r, c, f, l, ex))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    fn fast(obs: &[(FlowRecord, Option<String>)]) -> Vec<Row> {
        let mut r = Replay::new();
        for (rec, rule) in obs {
            r.observe(
                rec,
                &Decision::new(Mode::Protect, rule.as_deref().map(Into::into)),
            );
        }
        let rep = r.finish(None);
        assert_eq!(rep.records, obs.len() as u64);
        let mut v: Vec<_> = rep
            .allowed
            .into_iter()
            .chain(rep.denied)
            .map(|g| (g.key, g.rule, g.count, g.first_ms, g.last_ms, g.example.id))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    #[test]
    fn names_methods_and_paths_fold_like_the_owned_key() {
        // Case, trailing dots, invalid and wildcard names, method case and
        // ids in paths all fold into one group, as GroupKey::of does.
        let mk = |names: &[&str], m: &str, path: &str, id: &str, at: u64| {
            let mut r = out("192.0.2.7:443", 1, AppProtocol::Http)
                .named(names)
                .req(m, None, path)
                .at(at);
            r.id = id.into();
            r
        };
        let obs = vec![
            (
                mk(&["API.Example.", "bad..name"], "get", "/u/1", "a", 30),
                None,
            ),
            (
                mk(&["api.example", "*.x"], "GET", "/u/22?x=1", "b", 10),
                None,
            ),
            (mk(&["api.example.."], "Get", "/u/333", "c", 20), None),
            (mk(&["api.example"], "GET", "u/4", "d", 40), None),
            (
                mk(&["a.x", "b.x"], "GET", "/u/4", "e", 50),
                Some("r".into()),
            ),
            (
                mk(&["B.x", "A.X."], "GET", "/u/4", "f", 60),
                Some("r".into()),
            ),
        ];
        let got = fast(&obs);
        assert_eq!(got, reference(&obs));
        // "/u/{id}" and "u/4" (templated as "/u/{id}" too) are one group.
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0].0.peer, PeerKey::Name("a.x".into()));
        assert_eq!((got[0].2, got[0].3, got[0].4), (2, 50, 60));
        assert_eq!(got[1].0.peer, PeerKey::Name("api.example".into()));
        assert_eq!((got[1].2, got[1].3, got[1].4), (4, 10, 40));
        assert_eq!(got[1].5, "a", "example is the first record seen");
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const NAMES: &[&str] = &[
            "api.example",
            "API.Example.",
            "cdn.api.example",
            "a.x",
            "B.x",
            "bad..name",
            "*.x",
            "",
            "x",
        ];
        const METHODS: &[&str] = &["get", "GET", "Post", "pOsT", "DELETE"];
        const PATHS: &[&str] = &[
            "/users/1",
            "/users/22",
            "/users/22/orders/9f1c2d3e4f",
            "/a?b=1",
            "a/1",
            "",
            "/",
            "/files/*",
            "/caf\u{e9}/1",
        ];

        fn arb_obs() -> impl Strategy<Value = (FlowRecord, Option<String>)> {
            (
                (any::<bool>(), 0..3u8, 0..3u16, 0..4u8),
                proptest::sample::subsequence(NAMES, 0..3),
                proptest::option::of(0..2u8),
                proptest::option::of((0..METHODS.len(), 0..PATHS.len())),
                proptest::option::of(0..2u8),
                0..1000u64,
            )
                .prop_map(
                    |((inbound, ip, port, proto), names, exe, http, rule, at)| {
                        let proto = [
                            AppProtocol::Http,
                            AppProtocol::Tls,
                            AppProtocol::Opaque,
                            AppProtocol::Http2,
                        ][usize::from(proto)];
                        let addr = format!("192.0.2.{}:{}", ip + 1, 80 + port);
                        let mut r = if inbound {
                            crate::testutil::inb(&addr, 8080 + port, proto)
                        } else {
                            out(&addr, 40000 + port, proto)
                        };
                        r = r.named(&names).at(at);
                        if let Some(e) = exe {
                            r = r.by(["/app", "/usr/bin/curl"][usize::from(e)]);
                        }
                        if let Some((m, p)) = http {
                            r = r.req(METHODS[m], None, PATHS[p]);
                        }
                        (r, rule.map(|i| ["a", "b"][usize::from(i)].to_string()))
                    },
                )
        }

        proptest! {
            #[test]
            fn borrowed_grouping_equals_owned_keys(
                obs in proptest::collection::vec(arb_obs(), 0..60)
            ) {
                let obs: Vec<_> = obs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (mut r, rule))| {
                        r.id = format!("f{i}");
                        (r, rule)
                    })
                    .collect();
                prop_assert_eq!(fast(&obs), reference(&obs));
            }
        }
    }

    const POLICY: &str = r#"
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: shop/web, version: 1 }
spec:
  mode: learn
  rules:
    - id: db
      direction: outbound
      peer: { cidr: 198.51.100.0/24 }
      ports: [5432]
"#;

    #[test]
    fn replays_with_the_compiled_policy_whatever_its_mode() {
        let doc = load_policy_str(POLICY, "p.yaml").unwrap();
        let p = CompiledPolicy::compile(&doc).unwrap();
        let mut r = Replay::new();
        r.replay(&p, &out("198.51.100.1:5432", 1, AppProtocol::Opaque));
        r.replay(&p, &out("198.51.100.1:6379", 1, AppProtocol::Opaque));
        let rep = r.finish(Some(&p));
        assert_eq!(rep.allowed[0].rule.as_deref(), Some("db"));
        // Learn mode lets everything through live, but replay reports what
        // the rules do not allow.
        assert_eq!(rep.denied.len(), 1);
        let e = rep.denied[0].explanation.as_ref().unwrap();
        assert_eq!(e.near_misses[0].rule, "db");
        let text = rep.render_text();
        assert!(
            text.contains("near db: port 6379 is outside 5432"),
            "{text}"
        );
    }
}
