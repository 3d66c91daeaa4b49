//! A transaction: one request (and optionally its response) evaluated
//! against a shared [`RuleSet`], phase by phase.

mod cache;
mod collect;
mod eval;
mod request;
mod txmap;

use crate::model::{BodyProcessor, Disruptive, EngineMode, Target, VarKind};
use crate::ruleset::RuleSet;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub use request::ReqVars;

/// An HTTP request as received (the request target as written on the wire).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub protocol: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub remote_addr: String,
    pub remote_port: u16,
    pub server_port: u16,
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub protocol: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// A rule whose whole chain matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub id: u64,
    pub phase: u8,
    /// False for `nolog` rules (they ran but ModSecurity would not log them).
    pub logged: bool,
    pub disruptive: Disruptive,
    pub msg: Option<String>,
    pub severity: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub rule_id: u64,
    pub status: u16,
    pub action: Disruptive,
}

/// The result of evaluating a transaction.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub matched: Vec<MatchedRule>,
    /// Set only when the engine is `On` and a disruptive rule fired.
    pub interruption: Option<Interruption>,
    pub inbound_anomaly_score: i64,
    pub outbound_anomaly_score: i64,
}

impl Outcome {
    /// Ids of logged rules, in match order.
    pub fn logged_ids(&self) -> Vec<u64> {
        self.matched
            .iter()
            .filter(|m| m.logged)
            .map(|m| m.id)
            .collect()
    }
    /// Whether a deny/drop rule matched, whatever the engine mode.
    pub fn would_block(&self) -> bool {
        self.matched
            .iter()
            .any(|m| matches!(m.disruptive, Disruptive::Deny | Disruptive::Drop))
    }
}

/// Rule id ranges and the targets removed from them at run time.
pub(crate) type IdTargets = (Vec<(u64, u64)>, Vec<Target>);

/// Mutable per-transaction state that rules read and write.
#[derive(Debug, Default)]
pub(crate) struct TxState {
    pub tx: txmap::TxMap,
    pub env: BTreeMap<String, Vec<u8>>,
    /// IP/GLOBAL/SESSION/USER/RESOURCE: kept per transaction only (no persistence).
    pub other: BTreeMap<(u8, String), Vec<u8>>,
    pub matched_var: Vec<u8>,
    pub matched_var_name: String,
    pub matched_vars: MatchedVars,
    pub removed_ids: Vec<(u64, u64)>,
    pub removed_tags: Vec<String>,
    pub removed_targets_by_id: Vec<IdTargets>,
    pub removed_targets_by_tag: Vec<(String, Vec<Target>)>,
    pub engine: Option<EngineMode>,
    pub request_body_access: Option<bool>,
    pub body_processor: Option<BodyProcessor>,
    pub force_body_var: bool,
    pub rule_id: u64,
    pub rule_severity: Option<u8>,
}

/// MATCHED_VARS of the rule being evaluated: the (name, value) buffers
/// stay allocated when the list is cleared, so each match rewrites them
/// instead of allocating two copies.
#[derive(Debug, Default)]
pub(crate) struct MatchedVars {
    items: Vec<(String, Vec<u8>)>,
    len: usize,
}

impl MatchedVars {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        if self.len == self.items.len() {
            self.items.push((String::new(), Vec::new()));
        }
        let (n, v) = &mut self.items[self.len];
        n.clear();
        n.push_str(name);
        v.clear();
        v.extend_from_slice(value);
        self.len += 1;
    }

    pub fn iter(&self) -> impl Iterator<Item = &(String, Vec<u8>)> {
        self.items[..self.len].iter()
    }
}

static TX_COUNTER: AtomicU64 = AtomicU64::new(1);

/// Per-thread scratch (value cache, value buffers) handed from one
/// transaction to the next: their allocations are reused instead of being
/// made and freed on every request.
#[derive(Default)]
struct Scratch {
    cache: cache::ValueCache,
    tx: txmap::TxMap,
    matched_vars: MatchedVars,
    matched_var: Vec<u8>,
    tbuf: Vec<u8>,
    vbuf: Vec<collect::Val<'static>>,
    ubuf: Vec<collect::Val<'static>>,
    xbuf: Vec<u8>,
    kbuf: Vec<u8>,
    /// How many rules the last transaction matched: the next one's list
    /// is allocated at that size once (CRS matches ~65 rules on a benign
    /// GET, mostly nolog setup rules) instead of growing through 6 copies.
    matched_hint: usize,
}

/// A buffer that grew past this (a macro over a large request value) is
/// not kept for the next transaction.
const MAX_POOLED_BUF: usize = 64 << 10;

fn small_or_new(b: Vec<u8>) -> Vec<u8> {
    if b.capacity() > MAX_POOLED_BUF {
        Vec::new()
    } else {
        b
    }
}

/// The largest `matched_hint` honoured (a rule set matches at most a few
/// hundred rules; this only bounds a pathological hint).
const MAX_MATCHED_HINT: usize = 1024;

/// A cache that grew past this for one huge request is not kept.
const MAX_POOLED_BYTES: usize = 4 << 20;

thread_local! {
    static SCRATCH: std::cell::Cell<Option<Box<Scratch>>> = const { std::cell::Cell::new(None) };
}

/// Evaluates one request/response against a rule set.
pub struct Transaction<'r> {
    pub(crate) rs: &'r RuleSet,
    pub(crate) req: ReqVars,
    pub(crate) st: TxState,
    pub(crate) outcome: Outcome,
    /// Phases still to run are skipped once an interruption or `allow` says so.
    pub(crate) stop_request: bool,
    pub(crate) stop_all: bool,
    /// Transformed request values, prefilter scans and operator memo.
    pub(crate) cache: cache::ValueCache,
    /// Reused buffer for the values a link inspects.
    pub(crate) vbuf: Vec<collect::Val<'static>>,
    /// Reused buffer for the values of a prefilter union.
    pub(crate) ubuf: Vec<collect::Val<'static>>,
    /// A matching value's transformed form, on its way to MATCHED_VAR
    /// (swapped with it: neither buffer is reallocated per match).
    pub(crate) tbuf: Vec<u8>,
    /// Whether the literal prefilter gates operators (see [`Self::set_prefilter`]).
    pub(crate) prefilter: bool,
    /// The next phase may keep the value cache: the request variables have
    /// not changed since the last phase filled it.
    pub(crate) reuse_cache: bool,
    /// The number of matched rules, kept for the next transaction's
    /// allocation after `finish` hands the outcome out.
    matched_hint: usize,
    /// Reused buffers for expanded setvar values and keys and messages.
    pub(crate) xbuf: Vec<u8>,
    pub(crate) kbuf: Vec<u8>,
}

impl<'r> Transaction<'r> {
    pub fn new(rs: &'r RuleSet) -> Self {
        let n = TX_COUNTER.fetch_add(1, Ordering::Relaxed);
        let req = ReqVars {
            unique_id: format!("pw{n:016x}").into_bytes(),
            ..Default::default()
        };
        let scratch = SCRATCH
            .try_with(|s| s.take())
            .ok()
            .flatten()
            .unwrap_or_default();
        let Scratch {
            cache,
            mut tx,
            mut matched_vars,
            mut matched_var,
            tbuf,
            vbuf,
            ubuf,
            xbuf,
            kbuf,
            matched_hint,
        } = *scratch;
        tx.reset(&rs.tx_names);
        matched_vars.clear();
        matched_var.clear();
        Transaction {
            rs,
            req,
            st: TxState {
                tx,
                matched_vars,
                matched_var,
                ..TxState::default()
            },
            outcome: Outcome {
                matched: Vec::with_capacity(matched_hint.min(MAX_MATCHED_HINT)),
                ..Outcome::default()
            },
            matched_hint: 0,
            xbuf,
            kbuf,
            stop_request: false,
            stop_all: false,
            cache,
            vbuf,
            ubuf,
            tbuf,
            prefilter: true,
            reuse_cache: false,
        }
    }

    /// Turns the literal prefilter on (the default) or off. Outcomes are
    /// identical either way (tests/prefilter_equivalence.rs checks that);
    /// off is only slower.
    pub fn set_prefilter(&mut self, on: bool) {
        self.prefilter = on;
    }

    pub fn engine(&self) -> EngineMode {
        self.st.engine.unwrap_or(self.rs.config.engine)
    }

    /// Runs phases 1 and 2 (headers, then body).
    pub fn process_request(&mut self, r: &Request) {
        if self.engine() == EngineMode::Off {
            return;
        }
        self.req.load_request(r, self.rs.config.argument_separator);
        self.run_phase(1);
        if self.engine() == EngineMode::Off {
            return;
        }
        if self
            .st
            .request_body_access
            .unwrap_or(self.rs.config.request_body_access)
        {
            // An empty body that no processor parses leaves every request
            // variable exactly as phase 1 saw it (nothing is reallocated),
            // except that REQUEST_BODY may appear, empty (CRS 901340 forces
            // the variable for every request without a processor): phase 2
            // may then keep phase 1's transformed values and scans.
            let untouched = r.body.is_empty()
                && self.req.body.is_empty()
                && self
                    .st
                    .body_processor
                    .or(self.req.default_processor)
                    .is_none();
            self.process_body(r);
            if untouched {
                // Its collection union was built over no value.
                self.cache.forget_unions(VarKind::RequestBody);
            }
            self.reuse_cache = untouched;
        } else {
            self.reuse_cache = true;
        }
        self.run_phase(2);
    }

    /// Runs phases 3 and 4 (response headers, then body).
    pub fn process_response(&mut self, r: &Response) {
        if self.engine() == EngineMode::Off {
            return;
        }
        let cfg = &self.rs.config;
        let ct = r
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        let mime = ct.split(';').next().unwrap_or("").trim().to_string();
        let body_ok = cfg.response_body_access && cfg.response_mime_types.contains(&mime);
        let limit = cfg.response_body_limit;
        self.req.load_response(r, body_ok, limit);
        self.run_phase(3);
        self.run_phase(4);
    }

    /// Runs phase 5 and returns what happened.
    pub fn finish(mut self) -> Outcome {
        if self.engine() != EngineMode::Off {
            // The logging phase always runs, even after an interruption.
            self.stop_all = false;
            self.stop_request = false;
            self.run_phase(5);
        }
        let score = |k: &str| {
            self.st
                .tx
                .get(k)
                .map(|v| crate::operator::atoi(v))
                .unwrap_or(0)
        };
        self.outcome.inbound_anomaly_score =
            score("blocking_inbound_anomaly_score").max(score("inbound_anomaly_score"));
        self.outcome.outbound_anomaly_score =
            score("blocking_outbound_anomaly_score").max(score("outbound_anomaly_score"));
        self.matched_hint = self.outcome.matched.len();
        std::mem::take(&mut self.outcome)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        if self.cache.retained_bytes() > MAX_POOLED_BYTES {
            return;
        }
        let scratch = Box::new(Scratch {
            cache: std::mem::take(&mut self.cache),
            tx: std::mem::take(&mut self.st.tx),
            matched_vars: std::mem::take(&mut self.st.matched_vars),
            matched_var: std::mem::take(&mut self.st.matched_var),
            tbuf: std::mem::take(&mut self.tbuf),
            vbuf: eval::recycle(std::mem::take(&mut self.vbuf)),
            ubuf: eval::recycle(std::mem::take(&mut self.ubuf)),
            matched_hint: self.matched_hint.max(self.outcome.matched.len()),
            xbuf: small_or_new(std::mem::take(&mut self.xbuf)),
            kbuf: small_or_new(std::mem::take(&mut self.kbuf)),
        });
        // During thread teardown the slot may be gone: then just free.
        let _ = SCRATCH.try_with(|s| s.set(Some(scratch)));
    }
}

impl RuleSet {
    /// Evaluates a request (and response, if given) in one call.
    pub fn evaluate(&self, req: &Request, resp: Option<&Response>) -> Outcome {
        let mut tx = Transaction::new(self);
        tx.process_request(req);
        if let Some(r) = resp {
            tx.process_response(r);
        }
        tx.finish()
    }
}

/// A small multiplicative hasher for the transformation cache: its keys are
/// addresses and lengths, so SipHash's DoS resistance buys nothing here.
#[derive(Default, Clone, Copy)]
pub(crate) struct BuildFx;

#[derive(Default)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut it = bytes.chunks_exact(8);
        for c in &mut it {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let r = it.remainder();
        w[..r.len()].copy_from_slice(r);
        self.write_u64(u64::from_le_bytes(w) ^ ((r.len() as u64) << 59));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
}

impl std::hash::BuildHasher for BuildFx {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx(0)
    }
}
