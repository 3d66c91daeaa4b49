//! Rule evaluation with ModSecurity's semantics: per-match actions on each
//! chain link, whole-chain match for logging and disruption, skipAfter.

use super::collect::{collect, collect_target, excluded, expand, expand_into, Val, NO_POS};
use super::{Interruption, MatchedRule, ReqVars, Transaction, TxState};
use crate::model::{
    AllowScope, Ctl, Disruptive, EngineMode, Item, Link, MacroPart, MacroString, Rule, RunAction,
    Selector, SetVarOp, Target, VarKind, NO_SLOT,
};
use crate::operator::{atoi, contains_word, find, invalid_url_encoding, ip_match, OpKind};
use crate::transform;
use std::borrow::Cow;

impl Transaction<'_> {
    pub(crate) fn run_phase(&mut self, phase: u8) {
        if self.stop_all || (phase <= 2 && self.stop_request) {
            return;
        }
        // The request variables are fixed during a phase: taking them out lets
        // rules borrow values while actions mutate the transaction state.
        let req = std::mem::take(&mut self.req);
        if !std::mem::take(&mut self.reuse_cache) {
            self.cache.clear(self.rs.prefilter.chain_count);
        }
        self.run_phase_with(&req, phase);
        self.req = req;
    }

    fn run_phase_with(&mut self, req: &ReqVars, phase: u8) {
        let rs = self.rs;
        let p = &rs.phases[phase as usize - 1];
        let mut i = 0;
        let mut skip = 0u32;
        while i < p.items.len() {
            let Item::Rule(rule) = &p.items[i] else {
                i += 1;
                continue;
            };
            if skip > 0 {
                skip -= 1;
                i += 1;
                continue;
            }
            if self.rule_removed(rule) {
                i += 1;
                continue;
            }
            if !self.eval_rule(req, rule) {
                i += 1;
                continue;
            }
            let msg = rule.msg.as_ref().map(|m| self.expand_string(m, req));
            self.outcome.matched.push(MatchedRule {
                id: rule.id,
                phase,
                logged: rule.log,
                disruptive: rule.disruptive,
                msg,
                severity: rule.severity,
            });
            if self.engine() == EngineMode::Off {
                return;
            }
            if self.engine() == EngineMode::On {
                match rule.disruptive {
                    Disruptive::Deny
                    | Disruptive::Drop
                    | Disruptive::Redirect
                    | Disruptive::Proxy => {
                        self.outcome.interruption = Some(Interruption {
                            rule_id: rule.id,
                            status: rule.status.unwrap_or(403),
                            action: rule.disruptive,
                        });
                        self.stop_all = true;
                        return;
                    }
                    Disruptive::Allow(scope) => match scope {
                        AllowScope::Phase => return,
                        AllowScope::Request => {
                            self.stop_request = true;
                            return;
                        }
                        AllowScope::All => {
                            self.stop_all = true;
                            return;
                        }
                    },
                    Disruptive::Pass | Disruptive::Block => {}
                }
            }
            if let Some(j) = p.jumps[i] {
                i = j + 1;
                continue;
            }
            skip = rule.skip;
            i += 1;
        }
    }

    /// A macro expanded into a new `String` (lossy UTF-8, as before),
    /// built in the reused `xbuf`: one exact-size allocation, not a growing
    /// vector and a copy (CRS 980170's message has 25 TX macros).
    fn expand_string(&mut self, m: &MacroString, req: &ReqVars) -> String {
        if let Some(l) = m.literal() {
            return l.to_owned();
        }
        let mut b = std::mem::take(&mut self.xbuf);
        b.clear();
        expand_into(m, req, &self.st, &mut b);
        let s = String::from_utf8_lossy(&b).into_owned();
        self.xbuf = b;
        s
    }

    fn rule_removed(&self, rule: &Rule) -> bool {
        self.st
            .removed_ids
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&rule.id))
            || self
                .st
                .removed_tags
                .iter()
                .any(|t| rule.tags.iter().any(|rt| rt == t))
    }

    fn eval_rule(&mut self, req: &ReqVars, rule: &Rule) -> bool {
        self.st.matched_vars.clear();
        self.st.rule_id = rule.id;
        self.st.rule_severity = rule.severity;
        rule.links
            .iter()
            .all(|link| self.eval_link(req, rule, link))
    }

    fn runtime_exclusions<'a>(&'a self, rule: &Rule, out: &mut Vec<&'a Target>) {
        for (ranges, ts) in &self.st.removed_targets_by_id {
            if ranges.iter().any(|(a, b)| (*a..=*b).contains(&rule.id)) {
                out.extend(ts.iter());
            }
        }
        for (tag, ts) in &self.st.removed_targets_by_tag {
            if rule.tags.iter().any(|t| t == tag) {
                out.extend(ts.iter());
            }
        }
    }

    fn eval_link<'q>(&mut self, req: &'q ReqVars, rule: &Rule, link: &Link) -> bool {
        if link.targets.is_empty() {
            self.run_actions(req, link);
            return true;
        }
        if let Some((key, slot, count)) = self.single_tx_key(rule, link) {
            return self.eval_tx_link(req, link, key, slot, count);
        }
        if !self.link_may_match(req, link) {
            return false;
        }
        let mut values: Vec<Val<'q>> = recycle(std::mem::take(&mut self.vbuf));
        {
            let mut excl: Vec<&Target> = link.targets.iter().filter(|t| t.exclude).collect();
            self.runtime_exclusions(rule, &mut excl);
            for t in link.targets.iter().filter(|t| !t.exclude) {
                let start = values.len();
                collect_target(req, &self.st, &self.rs.tx_names, t, &mut values);
                if !excl.is_empty() {
                    let mut k = 0;
                    values.retain(|v| {
                        k += 1;
                        k <= start || !excluded(v, &excl)
                    });
                }
                if t.count {
                    let n = values.len() - start;
                    values.truncate(start);
                    values.push(Val {
                        kind: t.kind,
                        key: Cow::Borrowed(""),
                        value: Cow::Owned(n.to_string().into_bytes()),
                        pos: NO_POS,
                    });
                }
            }
        }
        let mut any = false;
        for v in &values {
            let stable = matches!(v.value, Cow::Borrowed(_));
            let (matched, caps) = self.check(req, link, &v.value, stable, v.pos);
            if !matched {
                continue;
            }
            any = true;
            self.value_matched(req, link, v, caps);
        }
        self.vbuf = recycle(values);
        any
    }

    /// MATCHED_VAR(S), captures and the link's actions for one matching
    /// value (its transformed form is in `tbuf`, left by the check).
    fn value_matched(
        &mut self,
        req: &ReqVars,
        link: &Link,
        v: &Val<'_>,
        caps: Option<Vec<Vec<u8>>>,
    ) {
        v.write_full_name(&mut self.st.matched_var_name);
        std::mem::swap(&mut self.st.matched_var, &mut self.tbuf);
        self.st
            .matched_vars
            .push(&self.st.matched_var_name, &self.st.matched_var);
        if link.capture {
            if let Some(c) = caps {
                for (i, g) in c.into_iter().enumerate() {
                    // TX:0-9 hold slots 0-9 (`txnames::CAPTURE_SLOTS`).
                    match CAPTURE_KEYS.get(i) {
                        Some(k) => self.st.tx.insert_at(k, i as u32, g),
                        None => self.st.tx.insert(&i.to_string(), g),
                    }
                }
            }
        }
        self.run_actions(req, link);
    }

    /// The key (and whether it is counted, `&TX:key`) when the link inspects
    /// exactly one TX variable and no run-time exclusion of the rule names a
    /// TX target (CRS's many `TX:detection_paranoia_level "@lt N"` skips,
    /// `&TX:x "@eq 0"` defaults and score checks): such a link needs no
    /// value list. (CRS 941010 removes REQUEST_FILENAME from some rules on
    /// nearly every request: exclusions of other collections cannot remove
    /// a TX value.)
    fn single_tx_key<'l>(&self, rule: &Rule, link: &'l Link) -> Option<(&'l str, u32, bool)> {
        match link.targets.as_slice() {
            [Target {
                kind: VarKind::Tx,
                selector: Selector::Key(k),
                count,
                exclude: false,
                slot,
            }] if !self.excludes_tx(rule) => Some((k, *slot, *count)),
            _ => None,
        }
    }

    /// Whether a run-time exclusion that applies to `rule` targets TX.
    fn excludes_tx(&self, rule: &Rule) -> bool {
        let tx = |ts: &[Target]| ts.iter().any(|t| t.kind == VarKind::Tx);
        self.st
            .removed_targets_by_id
            .iter()
            .any(|(ranges, ts)| tx(ts) && ranges.iter().any(|(a, b)| (*a..=*b).contains(&rule.id)))
            || self
                .st
                .removed_targets_by_tag
                .iter()
                .any(|(tag, ts)| tx(ts) && rule.tags.iter().any(|t| t == tag))
    }

    /// [`Self::eval_link`] for a single TX target: the same steps as the
    /// general path takes for a value not borrowed from the request, on the
    /// stored value itself instead of a copy.
    fn eval_tx_link(
        &mut self,
        req: &ReqVars,
        link: &Link,
        key: &str,
        slot: u32,
        count: bool,
    ) -> bool {
        let stored = self.st.tx.get_at(key, slot);
        let raw: &[u8] = match (stored, count) {
            (None, false) => return false,
            (Some(v), false) => v,
            // A key selects at most one entry.
            (Some(_), true) => b"1",
            (None, true) => b"0",
        };
        let (m, caps) = if link.multi_match {
            check_multi(req, &self.st, None, link, raw, &mut self.tbuf)
        } else {
            let v = transform::apply_all(&link.transforms, raw);
            let (m, c) = op(req, &self.st, link, &v);
            if m {
                set_buf(&mut self.tbuf, &v);
            }
            (m, c)
        };
        if !m {
            return false;
        }
        let v = Val {
            kind: VarKind::Tx,
            // A count is named after the collection alone (`TX`).
            key: Cow::Borrowed(if count { "" } else { key }),
            value: Cow::Borrowed(b""),
            pos: NO_POS,
        };
        self.value_matched(req, link, &v, caps);
        true
    }

    /// False when the prefilter proves that no value of the link's targets
    /// can match: its slot is set for none of the values of the whole
    /// collections it targets (selectors and exclusions only remove values).
    fn link_may_match(&mut self, req: &ReqVars, link: &Link) -> bool {
        if !self.prefilter {
            return true;
        }
        let (Some(slot), Some(cf)) = (link.prefilter, self.rs.prefilter.chain(link.tchain)) else {
            return true;
        };
        let included = || link.targets.iter().filter(|t| !t.exclude);
        if !included().all(|t| !t.count && from_request(t.kind)) {
            return true;
        }
        for t in included() {
            let off = match self.cache.union(t.kind, link.tchain) {
                Some(o) => o,
                None => {
                    let mut vals: Vec<Val<'_>> = recycle(std::mem::take(&mut self.ubuf));
                    if t.kind == VarKind::Xml {
                        // The selector picks text or attributes: take both
                        // (no XML body: no values, and no selector to build).
                        for &k in ["/*", "@"].iter().filter(|_| req.xml.is_some()) {
                            collect(req, &self.st, t.kind, &Selector::Key(k.into()), &mut vals);
                        }
                    } else {
                        collect(req, &self.st, t.kind, &Selector::All, &mut vals);
                    }
                    if vals.iter().any(|v| matches!(v.value, Cow::Owned(_))) {
                        self.ubuf = recycle(vals);
                        return true;
                    }
                    let kind = t.kind;
                    let off = self.cache.build_union(
                        kind,
                        link.tchain,
                        &link.transforms,
                        cf,
                        vals.iter().map(|v| (&*v.value, v.pos)),
                    );
                    self.ubuf = recycle(vals);
                    off
                }
            };
            if self.cache.union_has(off, slot) {
                return true;
            }
        }
        false
    }

    /// Runs the operator on the transformed value (each step with
    /// multiMatch); on a match the matched (transformed) value is left in
    /// `tbuf`. `pos`: the value's request position (`Val::pos`).
    fn check(
        &mut self,
        req: &ReqVars,
        link: &Link,
        value: &[u8],
        from_req: bool,
        pos: u32,
    ) -> (bool, Option<Vec<Vec<u8>>>) {
        if link.multi_match {
            let vid = from_req.then(|| self.cache.raw_vid(value, pos));
            let memo = vid.and_then(|v| self.cache.multi_memo_key(v, link));
            // A remembered miss is final; a remembered match runs again to
            // recover the matched (transformed) value — matches are rare.
            if let Some(false) = memo.and_then(|k| self.cache.memo_get(k)) {
                return (false, None);
            }
            let r = check_multi(
                req,
                &self.st,
                vid.map(|v| (&mut self.cache, v)),
                link,
                value,
                &mut self.tbuf,
            );
            if let Some(k) = memo {
                self.cache.memo_put(k, r.0);
            }
            return r;
        }
        if !from_req {
            let v = transform::apply_all(&link.transforms, value);
            let (m, c) = op(req, &self.st, link, &v);
            if m {
                set_buf(&mut self.tbuf, &v);
            }
            return (m, c);
        }
        // Values borrowed from the request are stable for the phase: cache
        // their transformed form, prefilter scan and pure operator results.
        let idx = self.cache.entry(value, pos, link.tchain, &link.transforms);
        if let Some(slot) = link.prefilter {
            if let Some(cf) = self.rs.prefilter.chain(link.tchain) {
                if self.prefilter && !self.cache.allows(idx, cf, slot, value) {
                    return (false, None);
                }
            }
        }
        let memo = self.cache.memo_key(idx, link);
        let v = self.cache.value(idx, value);
        match memo.and_then(|k| self.cache.memo_get(k)) {
            Some(false) => return (false, None),
            Some(true) if !link.capture => {
                set_buf(&mut self.tbuf, v);
                return (true, None);
            }
            _ => {}
        }
        let (m, c) = op(req, &self.st, link, v);
        if m {
            set_buf(&mut self.tbuf, v);
        }
        if let Some(k) = memo {
            self.cache.memo_put(k, m);
        }
        (m, c)
    }

    fn run_actions(&mut self, req: &ReqVars, link: &Link) {
        for a in &link.actions {
            match a {
                RunAction::SetVar(sv) if sv.collection == VarKind::Tx => {
                    // The hot path (every CRS rule scores into TX): no key
                    // copy for an existing lower-case key, values rewritten in place.
                    // `+%{tx.x}` / `-%{tx.x}` read the number without
                    // copying the value (it borrows the TX map being written);
                    // expanded values and keys go through reused buffers.
                    let mut vb = std::mem::take(&mut self.xbuf);
                    let mut kb = std::mem::take(&mut self.kbuf);
                    let arg = match sv.op {
                        SetVarOp::Add | SetVarOp::Sub => {
                            SetArg::Int(atoi(&expand_ref(&sv.value, req, &self.st)))
                        }
                        SetVarOp::Set | SetVarOp::Delete => match sv.value.literal() {
                            Some(l) => SetArg::Bytes(l.as_bytes()),
                            None => {
                                vb.clear();
                                expand_into(&sv.value, req, &self.st, &mut vb);
                                SetArg::Bytes(&vb)
                            }
                        },
                    };
                    match sv.key.literal() {
                        // Lower-cased at load (`parse_setvar`).
                        Some(k) => set_tx(&mut self.st.tx, k, sv.key_slot, sv.op, &arg),
                        None => {
                            kb.clear();
                            expand_into(&sv.key, req, &self.st, &mut kb);
                            let k = lower_key(&kb);
                            set_tx(&mut self.st.tx, &k, NO_SLOT, sv.op, &arg);
                        }
                    }
                    self.xbuf = vb;
                    self.kbuf = kb;
                }
                RunAction::SetVar(sv) => {
                    // IP/GLOBAL/SESSION/USER/RESOURCE (TX took the arm above).
                    let key = String::from_utf8_lossy(&expand(&sv.key, req, &self.st))
                        .to_ascii_lowercase();
                    let val = expand(&sv.value, req, &self.st);
                    let tag = sv.collection as u8;
                    let cur = self.st.other.get(&(tag, key.clone())).cloned();
                    match setvar_value(sv.op, cur.as_deref(), &val) {
                        Some(n) => self.st.other.insert((tag, key), n),
                        None => self.st.other.remove(&(tag, key)),
                    };
                }
                RunAction::SetEnv(k, v) => {
                    let k = String::from_utf8_lossy(&expand(k, req, &self.st)).into_owned();
                    let v = expand(v, req, &self.st).into_owned();
                    self.st.env.insert(k.to_ascii_lowercase(), v);
                }
                RunAction::Ctl(c) => self.ctl(c),
            }
        }
    }

    fn ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleRemoveById(r) => self.st.removed_ids.extend(r.iter().copied()),
            Ctl::RuleRemoveByTag(t) => self.st.removed_tags.push(t.clone()),
            Ctl::RuleRemoveByMsg(_) | Ctl::RuleRemoveTargetByMsg(..) => {}
            Ctl::RuleRemoveTargetById(r, t) => {
                self.st.removed_targets_by_id.push((r.clone(), t.clone()))
            }
            Ctl::RuleRemoveTargetByTag(tag, t) => self
                .st
                .removed_targets_by_tag
                .push((tag.clone(), t.clone())),
            Ctl::RuleEngine(m) => self.st.engine = Some(*m),
            Ctl::RequestBodyAccess(b) => self.st.request_body_access = Some(*b),
            Ctl::RequestBodyProcessor(p) => self.st.body_processor = Some(*p),
            Ctl::ForceRequestBodyVariable(b) => self.st.force_body_var = *b,
            Ctl::ResponseBodyAccess(_)
            | Ctl::AuditEngine
            | Ctl::AuditLogParts
            | Ctl::RequestBodyLimit(_)
            | Ctl::ParseXmlIntoArgs
            | Ctl::HashEngine
            | Ctl::Debug => {}
        }
    }
}

fn lower_key(raw: &[u8]) -> Cow<'_, str> {
    let s = match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    };
    match s {
        Cow::Borrowed(k) if !k.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(k),
        k => Cow::Owned(k.to_ascii_lowercase()),
    }
}

/// A setvar's expanded value: the number for `+`/`-` (read before the TX
/// map is written), the bytes for `=`.
enum SetArg<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

/// TX names of capture groups (`capture` sets TX.0 to TX.9).
const CAPTURE_KEYS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// `setvar` on TX with the same results as [`setvar_value`], writing into
/// the variable's buffer.
fn set_tx(map: &mut super::txmap::TxMap, key: &str, key_slot: u32, op: SetVarOp, val: &SetArg<'_>) {
    if op == SetVarOp::Delete {
        map.remove_at(key, key_slot);
        return;
    }
    let (slot, had) = map.slot_at(key, key_slot);
    let cur = |slot: &[u8]| if had { atoi(slot) } else { 0 };
    let arg = |v: &SetArg<'_>| match v {
        SetArg::Int(n) => *n,
        SetArg::Bytes(b) => atoi(b),
    };
    let n = match op {
        SetVarOp::Add => cur(slot).saturating_add(arg(val)),
        SetVarOp::Sub => cur(slot).saturating_sub(arg(val)),
        SetVarOp::Set | SetVarOp::Delete => {
            slot.clear();
            match val {
                SetArg::Bytes(b) => slot.extend_from_slice(b),
                SetArg::Int(n) => push_int(slot, *n),
            }
            return;
        }
    };
    slot.clear();
    push_int(slot, n);
}

/// Appends the decimal form of `n` (what `format!("{n}")` writes).
fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

fn setvar_value(op: SetVarOp, cur: Option<&[u8]>, val: &[u8]) -> Option<Vec<u8>> {
    match op {
        SetVarOp::Set => Some(val.to_vec()),
        SetVarOp::Delete => None,
        SetVarOp::Add => Some(
            // Saturating: a rule's arithmetic must not overflow (and panic).
            cur.map(atoi)
                .unwrap_or(0)
                .saturating_add(atoi(val))
                .to_string()
                .into_bytes(),
        ),
        SetVarOp::Sub => Some(
            cur.map(atoi)
                .unwrap_or(0)
                .saturating_sub(atoi(val))
                .to_string()
                .into_bytes(),
        ),
    }
}

/// multiMatch: the operator on the raw value, then after each
/// transformation that changed it. With `raw` (the value cache and the
/// value's id, for a value borrowed from the request), a transformation
/// known to leave the raw value unchanged is not run again.
fn check_multi(
    req: &ReqVars,
    st: &TxState,
    mut raw: Option<(&mut super::cache::ValueCache, u32)>,
    link: &Link,
    value: &[u8],
    out: &mut Vec<u8>,
) -> (bool, Option<Vec<Vec<u8>>>) {
    let mut cur: Cow<[u8]> = Cow::Borrowed(value);
    let (m, c) = op(req, st, link, &cur);
    if m {
        set_buf(out, &cur);
        return (true, c);
    }
    for &t in &link.transforms {
        let on_raw = matches!(cur, Cow::Borrowed(_));
        if let (true, Some((cache, vid))) = (on_raw, raw.as_mut()) {
            if cache.raw_unchanged(*vid, t) {
                continue;
            }
        }
        match transform::apply(t, &cur) {
            None => {
                if let (true, Some((cache, vid))) = (on_raw, raw.as_mut()) {
                    cache.note_raw_unchanged(*vid, t);
                }
            }
            Some(n) => {
                // The same bytes give the same answer (nothing runs between
                // these calls): only a changed value is worth another call.
                if n[..] == cur[..] {
                    continue;
                }
                cur = Cow::Owned(n);
                let (m, c) = op(req, st, link, &cur);
                if m {
                    set_buf(out, &cur);
                    return (true, c);
                }
            }
        }
    }
    (false, None)
}

/// [`expand`] without building a buffer when the macro is a literal or a
/// single `%{tx.key}` (most operator arguments, e.g. `@ge
/// %{tx.inbound_anomaly_score_threshold}`, and `+%{tx.x}` setvar values): an
/// absent variable expands to nothing, as in `expand`.
fn expand_ref<'a>(m: &'a MacroString, req: &ReqVars, st: &'a TxState) -> Cow<'a, [u8]> {
    if let [MacroPart::Var(VarKind::Tx, Some(k), slot)] = m.parts.as_slice() {
        return Cow::Borrowed(st.tx.get_at(k, *slot).map_or(&[][..], |v| &v[..]));
    }
    expand(m, req, st)
}

/// Replaces `buf`'s contents with `v`, keeping its allocation.
fn set_buf(buf: &mut Vec<u8>, v: &[u8]) {
    buf.clear();
    buf.extend_from_slice(v);
}

/// Runs a link's operator on an (already transformed) value.
fn op(req: &ReqVars, st: &TxState, link: &Link, v: &[u8]) -> (bool, Option<Vec<Vec<u8>>>) {
    let op = &link.operator;
    let mut caps = None;
    let m = match &op.kind {
        OpKind::Rx(r) => {
            let m = r.is_match(v);
            if m && link.capture && !op.negated {
                caps = r.captures(v);
            }
            m
        }
        OpKind::Pm(ac) => match ac.find(v) {
            Some(m) => {
                if link.capture {
                    caps = Some(vec![v[m.start()..m.end()].to_vec()]);
                }
                true
            }
            None => false,
        },
        OpKind::Streq(m) => expand_ref(m, req, st) == v,
        OpKind::Contains(m) => find(v, &expand_ref(m, req, st)).is_some(),
        OpKind::ContainsWord(m) => contains_word(v, &expand_ref(m, req, st)),
        OpKind::BeginsWith(m) => v.starts_with(&expand_ref(m, req, st)),
        OpKind::EndsWith(m) => v.ends_with(&expand_ref(m, req, st)),
        OpKind::Within(m) => find(&expand_ref(m, req, st), v).is_some(),
        OpKind::StrMatch(s) => find(v, s).is_some(),
        OpKind::Eq(m) => atoi(v) == atoi(&expand_ref(m, req, st)),
        OpKind::Ge(m) => atoi(v) >= atoi(&expand_ref(m, req, st)),
        OpKind::Gt(m) => atoi(v) > atoi(&expand_ref(m, req, st)),
        OpKind::Le(m) => atoi(v) <= atoi(&expand_ref(m, req, st)),
        OpKind::Lt(m) => atoi(v) < atoi(&expand_ref(m, req, st)),
        OpKind::IpMatch(nets) => ip_match(nets, v),
        OpKind::ValidateByteRange(allowed) => v.iter().any(|&b| !allowed[b as usize]),
        OpKind::ValidateUrlEncoding => invalid_url_encoding(v),
        OpKind::ValidateUtf8Encoding => std::str::from_utf8(v).is_err(),
        OpKind::DetectSqli => {
            // The verdict alone; the fingerprint (a second tokenization)
            // only for a capturing rule's match.
            let m = libinjectionrs::is_sqli(v);
            if m && link.capture {
                let r = libinjectionrs::detect_sqli(v);
                caps = Some(vec![r
                    .fingerprint
                    .as_ref()
                    .map(|f| f.to_string().into_bytes())
                    .unwrap_or_default()]);
            }
            m
        }
        OpKind::DetectXss => libinjectionrs::detect_xss(v).is_injection(),
        OpKind::UnconditionalMatch => true,
        OpKind::NoMatch => false,
    };
    (m != op.negated, caps)
}

/// Kinds whose values are all borrowed from the request (fixed during a
/// phase), so their whole collection can be prefilter-scanned once.
fn from_request(k: VarKind) -> bool {
    use VarKind::*;
    matches!(
        k,
        Args | ArgsNames
            | ArgsGet
            | ArgsGetNames
            | ArgsPost
            | ArgsPostNames
            | RequestHeaders
            | RequestHeadersNames
            | RequestCookies
            | RequestCookiesNames
            | RequestUri
            | RequestUriRaw
            | RequestFilename
            | RequestBasename
            | RequestLine
            | RequestMethod
            | RequestProtocol
            | QueryString
            | RequestBody
            | FullRequest
            | Files
            | FilesNames
            | MultipartPartHeaders
            | MultipartFilename
            | MultipartName
            | Xml
            | ResponseBody
            | ResponseHeaders
            | ResponseHeadersNames
    )
}

/// An empty vector with `v`'s allocation, for values of another lifetime
/// (the per-link value list is reused instead of allocated per rule).
pub(crate) fn recycle<'b>(mut v: Vec<Val<'_>>) -> Vec<Val<'b>> {
    v.clear();
    // In-place collection keeps the allocation: same element layout. (The
    // lint's `.filter` could not change the element lifetime.)
    #[allow(clippy::unnecessary_filter_map)]
    v.into_iter().filter_map(|_| None).collect()
}

#[cfg(test)]
mod tests {
    use super::push_int;

    #[test]
    fn push_int_writes_what_format_writes() {
        for n in [0, 1, -1, 9, 10, -10, 12345, i64::MAX, i64::MIN, -999_999] {
            let mut out = b"x".to_vec();
            push_int(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}
