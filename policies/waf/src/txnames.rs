//! TX variable names resolved to slots when the rule set is built.
//!
//! CRS reads and writes the same ~150 TX variables by literal name on every
//! request (setvar keys, `TX:name` targets, `%{tx.name}` macros): some 250
//! name lookups per request, each a hash of the name and a compare. Every
//! name written literally in the rule set gets a dense slot here; the
//! transaction's TX collection lays its first entries out in slot order
//! (`tx::txmap`), so these accesses index an array. Names only known at run
//! time (macro-built keys, regex selectors, `ctl`) still go through the
//! name map of the same collection: both views are one set of entries.

use crate::model::{Item, MacroPart, MacroString, RunAction, Selector, SetVar, VarKind};
use crate::operator::OpKind;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Capture groups write TX:0 to TX:9: their slots are their numbers.
pub const CAPTURE_SLOTS: u32 = 10;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The rule set's TX names in slot order, and an id no other rule set
/// shares (a per-thread TX collection laid out for one rule set is laid out
/// again for another).
#[derive(Debug)]
pub struct TxNames {
    pub id: u64,
    pub names: Vec<String>,
    /// For each `TX:/regex/` target (its `slot` indexes this list): the
    /// slots of the names above that the regex matches, so a selection
    /// runs the regex only on names made at run time.
    pub selections: Vec<Vec<u32>>,
}

impl TxNames {
    /// Assigns a slot to every literal TX name in `phases`, writing it into
    /// the targets, setvars and macros that name it.
    pub fn assign(phases: &mut [Vec<Item>; 5]) -> TxNames {
        let mut a = Assigner::default();
        for i in 0..CAPTURE_SLOTS {
            a.slot(&i.to_string());
        }
        for items in phases.iter_mut() {
            for it in items.iter_mut() {
                let Item::Rule(r) = it else { continue };
                for m in r.msg.iter_mut().chain(r.logdata.iter_mut()) {
                    a.macro_string(m);
                }
                for l in &mut r.links {
                    for t in &mut l.targets {
                        if let (VarKind::Tx, Selector::Key(k), false) =
                            (t.kind, &t.selector, t.exclude)
                        {
                            t.slot = a.slot(k);
                        }
                    }
                    if let Some(m) = op_macro(&mut l.operator.kind) {
                        a.macro_string(m);
                    }
                    for act in &mut l.actions {
                        match act {
                            RunAction::SetVar(sv) => a.setvar(sv),
                            RunAction::SetEnv(k, v) => {
                                a.macro_string(k);
                                a.macro_string(v);
                            }
                            RunAction::Ctl(_) => {}
                        }
                    }
                }
            }
        }
        // Every name has its slot now: resolve the regex selectors.
        let mut selections = Vec::new();
        for items in phases.iter_mut() {
            for it in items.iter_mut() {
                let Item::Rule(r) = it else { continue };
                for t in r.links.iter_mut().flat_map(|l| l.targets.iter_mut()) {
                    if let (VarKind::Tx, Selector::Regex(re), false) =
                        (t.kind, &t.selector, t.exclude)
                    {
                        let pre = (0..a.names.len() as u32)
                            .filter(|&s| re.is_match(&a.names[s as usize]))
                            .collect();
                        t.slot = selections.len() as u32;
                        selections.push(pre);
                    }
                }
            }
        }
        TxNames {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            names: a.names,
            selections,
        }
    }
}

#[derive(Default)]
struct Assigner {
    names: Vec<String>,
    idx: HashMap<String, u32>,
}

impl Assigner {
    fn slot(&mut self, name: &str) -> u32 {
        if let Some(&s) = self.idx.get(name) {
            return s;
        }
        let s = self.names.len() as u32;
        self.names.push(name.to_string());
        self.idx.insert(name.to_string(), s);
        s
    }

    fn macro_string(&mut self, m: &mut MacroString) {
        for p in &mut m.parts {
            if let MacroPart::Var(VarKind::Tx, Some(k), slot) = p {
                *slot = self.slot(k);
            }
        }
    }

    fn setvar(&mut self, sv: &mut SetVar) {
        self.macro_string(&mut sv.key);
        self.macro_string(&mut sv.value);
        if sv.collection == VarKind::Tx {
            // Lower-cased at load (`parse_setvar`), as TX names are stored.
            if let Some(k) = sv.key.literal() {
                sv.key_slot = self.slot(k);
            }
        }
    }
}

fn op_macro(k: &mut OpKind) -> Option<&mut MacroString> {
    match k {
        OpKind::Streq(m)
        | OpKind::Contains(m)
        | OpKind::ContainsWord(m)
        | OpKind::BeginsWith(m)
        | OpKind::EndsWith(m)
        | OpKind::Within(m)
        | OpKind::Eq(m)
        | OpKind::Ge(m)
        | OpKind::Gt(m)
        | OpKind::Le(m)
        | OpKind::Lt(m) => Some(m),
        _ => None,
    }
}
