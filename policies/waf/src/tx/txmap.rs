//! The TX collection, kept from one transaction to the next on a thread.
//!
//! CRS sets and reads the same ~150 TX variables on every request (setvar,
//! targets, macros). A name is hashed once per access instead of compared
//! along an ordered tree, and names and value buffers stay allocated across
//! transactions: a cleared entry is only marked absent. Absent entries are
//! invisible to every accessor, so the collection behaves exactly like a
//! fresh map.

use super::BuildFx;
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
}

impl TxMap {
    /// Empties the collection for a new transaction.
    pub fn reset(&mut self) {
        if self.vals.len() > MAX_KEPT {
            *self = TxMap::default();
            return;
        }
        for (present, v) in &mut self.vals {
            *present = false;
            v.clear();
        }
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
                self.vals.len() - 1
            }
        };
        let (present, v) = &mut self.vals[i];
        let had = std::mem::replace(present, true);
        (v, had)
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
        m.reset();
        assert_eq!(m.get("b"), None);
        assert_eq!(m.iter().count(), 0);
        let (v, had) = m.slot("b");
        assert!(!had);
        assert!(v.is_empty());
    }
}
