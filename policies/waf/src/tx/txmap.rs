//! The TX collection, kept from one transaction to the next on a thread.
//!
//! CRS sets and reads the same ~150 TX variables on every request (setvar,
//! targets, macros). A name is hashed once per access instead of compared
//! along an ordered tree, and names and value buffers stay allocated across
//! transactions: a cleared entry is only marked absent. Absent entries are
//! invisible to every accessor, so the collection behaves exactly like a
//! fresh map.
//!
//! The first entries are the rule set's literal TX names in slot order
//! ([`crate::txnames::TxNames`]): an access that carries a slot indexes
//! `vals` directly; every other access finds the same entries by name.

use super::BuildFx;
use crate::model::Selector;
use crate::txnames::TxNames;
use std::collections::HashMap;

/// Entries beyond this (names derived from request data, say) are not kept
/// for the next transaction.
const MAX_KEPT: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct TxMap {
    /// name → index in `vals`.
    idx: HashMap<String, u32, BuildFx>,
    /// (present, value); an absent entry keeps its buffer.
    vals: Vec<(bool, Vec<u8>)>,
    /// The name of each entry of `vals`.
    keys: Vec<String>,
    /// The [`TxNames::id`] whose names fill the first `seeded` entries.
    owner: u64,
    seeded: usize,
}

impl TxMap {
    /// Empties the collection for a new transaction of the rule set whose
    /// names are `names`.
    pub fn reset(&mut self, names: &TxNames) {
        if self.owner != names.id || self.vals.len() > self.seeded + MAX_KEPT {
            *self = TxMap::default();
            for n in &names.names {
                // Absent until written, like every entry after a reset.
                self.idx.insert(n.clone(), self.vals.len() as u32);
                self.vals.push((false, Vec::new()));
                self.keys.push(n.clone());
            }
            self.owner = names.id;
            self.seeded = self.vals.len();
            return;
        }
        for (present, v) in &mut self.vals {
            *present = false;
            v.clear();
        }
    }

    /// [`Self::get`] through `slot` when the rule set assigned one.
    #[inline]
    pub fn get_at(&self, key: &str, slot: u32) -> Option<&Vec<u8>> {
        match self.vals.get(slot as usize) {
            Some((present, v)) if (slot as usize) < self.seeded => present.then_some(v),
            _ => self.get(key),
        }
    }

    /// [`Self::slot`] through `slot` when the rule set assigned one.
    #[inline]
    pub fn slot_at(&mut self, key: &str, slot: u32) -> (&mut Vec<u8>, bool) {
        let i = slot as usize;
        // `seeded <= vals.len()` always; the second test only spares a panic path.
        if i < self.seeded && i < self.vals.len() {
            let (present, v) = &mut self.vals[i];
            let had = std::mem::replace(present, true);
            return (v, had);
        }
        self.slot(key)
    }

    /// [`Self::remove`] through `slot` when the rule set assigned one.
    pub fn remove_at(&mut self, key: &str, slot: u32) {
        if (slot as usize) < self.seeded {
            if let Some((present, v)) = self.vals.get_mut(slot as usize) {
                *present = false;
                v.clear();
                return;
            }
        }
        self.remove(key)
    }

    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        match self.idx.get(key).and_then(|&i| self.vals.get(i as usize)) {
            Some((true, v)) => Some(v),
            _ => None,
        }
    }

    /// The value buffer of `key`, now present, and whether it was present
    /// before (an absent entry comes back empty).
    pub fn slot(&mut self, key: &str) -> (&mut Vec<u8>, bool) {
        let i = match self.idx.get(key) {
            Some(&i) => i as usize,
            None => {
                self.idx.insert(key.to_string(), self.vals.len() as u32);
                self.vals.push((false, Vec::new()));
                self.keys.push(key.to_string());
                self.vals.len() - 1
            }
        };
        let (present, v) = &mut self.vals[i];
        let had = std::mem::replace(present, true);
        (v, had)
    }

    /// [`Self::insert`] through `slot` when the rule set assigned one.
    pub fn insert_at(&mut self, key: &str, slot: u32, value: Vec<u8>) {
        let (v, _) = self.slot_at(key, slot);
        *v = value;
    }

    pub fn insert(&mut self, key: &str, value: Vec<u8>) {
        let (slot, _) = self.slot(key);
        *slot = value;
    }

    pub fn remove(&mut self, key: &str) {
        if let Some((present, v)) = self
            .idx
            .get(key)
            .and_then(|&i| self.vals.get_mut(i as usize))
        {
            *present = false;
            v.clear();
        }
    }

    /// Whether the first entries are laid out in the slot order of `names`.
    pub fn laid_out_for(&self, names: &TxNames) -> bool {
        self.owner == names.id && self.seeded == names.names.len()
    }

    /// Appends the present entries a regex selector picks: among the
    /// rule set's names, those of `pre` (the slots whose names the selector
    /// matches, found at load); among the others, those `sel` matches.
    /// Only valid when [`Self::laid_out_for`] the rule set of `pre`.
    pub fn select<'a>(
        &'a self,
        pre: &[u32],
        sel: &Selector,
        out: &mut Vec<(&'a String, &'a Vec<u8>)>,
    ) {
        for &s in pre {
            if let (Some((true, v)), Some(k)) =
                (self.vals.get(s as usize), self.keys.get(s as usize))
            {
                out.push((k, v));
            }
        }
        let rest = self.vals.iter().zip(&self.keys).skip(self.seeded);
        for ((present, v), k) in rest {
            if *present && sel.matches(k) {
                out.push((k, v));
            }
        }
    }

    /// Present entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<u8>)> {
        self.idx
            .iter()
            .filter_map(|(k, &i)| match self.vals.get(i as usize) {
                Some((true, v)) => Some((k, v)),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::TxMap;
    use crate::model::Selector;
    use crate::txnames::TxNames;

    #[test]
    fn behaves_like_a_fresh_map_after_reset() {
        let mut m = TxMap::default();
        m.insert("a", b"1".to_vec());
        let (v, had) = m.slot("b");
        assert!(!had);
        v.extend_from_slice(b"2");
        assert_eq!(m.get("b").map(|v| &v[..]), Some(&b"2"[..]));
        let (v, had) = m.slot("b");
        assert!(had);
        assert_eq!(&v[..], b"2");
        m.remove("a");
        assert_eq!(m.get("a"), None);
        assert_eq!(m.iter().count(), 1);
        m.reset(&TxNames {
            id: 0,
            names: Vec::new(),
            selections: Vec::new(),
        });
        assert_eq!(m.get("b"), None);
        assert_eq!(m.iter().count(), 0);
        let (v, had) = m.slot("b");
        assert!(!had);
        assert!(v.is_empty());
    }

    fn names(id: u64, n: &[&str]) -> TxNames {
        TxNames {
            id,
            names: n.iter().map(|s| s.to_string()).collect(),
            selections: Vec::new(),
        }
    }

    #[test]
    fn slots_and_names_are_one_collection() {
        let mut m = TxMap::default();
        let a = names(7, &["x", "y"]);
        m.reset(&a);
        // Seeded entries start absent.
        assert_eq!(m.get_at("x", 0), None);
        assert_eq!(m.get("y"), None);
        assert_eq!(m.iter().count(), 0);
        let (v, had) = m.slot_at("y", 1);
        assert!(!had);
        v.extend_from_slice(b"5");
        assert_eq!(m.get("y").map(|v| &v[..]), Some(&b"5"[..]));
        m.insert("x", b"1".to_vec());
        assert_eq!(m.get_at("x", 0).map(|v| &v[..]), Some(&b"1"[..]));
        // A name outside the seeded set, and a slot beyond it, go by name.
        m.insert_at("z", crate::model::NO_SLOT, b"2".to_vec());
        assert_eq!(m.get_at("z", 9).map(|v| &v[..]), Some(&b"2"[..]));
        let mut keys: Vec<&String> = m.iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(keys, ["x", "y", "z"]);
        m.remove_at("y", 1);
        assert_eq!(m.get("y"), None);
        m.remove("x");
        assert_eq!(m.get_at("x", 0), None);
        // Another rule set lays the names out again, all absent.
        let b = names(8, &["y", "x"]);
        m.insert("x", b"1".to_vec());
        m.reset(&b);
        assert_eq!(m.iter().count(), 0);
        m.insert_at("x", 1, b"3".to_vec());
        assert_eq!(m.get("x").map(|v| &v[..]), Some(&b"3"[..]));
        assert_eq!(m.get_at("y", 0), None);
    }

    #[test]
    fn select_takes_resolved_slots_and_matches_the_rest() {
        let mut m = TxMap::default();
        let a = names(9, &["p_1", "q", "p_2"]);
        m.reset(&a);
        assert!(m.laid_out_for(&a));
        assert!(!m.laid_out_for(&names(10, &["p_1", "q", "p_2"])));
        m.insert("p_1", b"1".to_vec());
        m.insert("q", b"2".to_vec());
        m.insert("p_run", b"3".to_vec());
        m.insert("other", b"4".to_vec());
        let sel = Selector::Regex(regex::Regex::new("^p_").unwrap());
        let mut out = Vec::new();
        // Slots 0 and 2 match the regex; slot 2 is absent.
        m.select(&[0, 2], &sel, &mut out);
        let mut got: Vec<(&str, &[u8])> = out.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
        got.sort();
        assert_eq!(got, [("p_1", &b"1"[..]), ("p_run", &b"3"[..])]);
        let mut all: Vec<(&String, &Vec<u8>)> = m.iter().filter(|(k, _)| sel.matches(k)).collect();
        all.sort();
        assert_eq!(all.len(), got.len());
    }
}
