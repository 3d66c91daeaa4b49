//! Per-phase memo of request values: each distinct content gets a value id
//! (JSON names and values repeat per array element), each (value id,
//! transformation chain) is transformed and prefilter-scanned once, and pure
//! operator results on repeated contents are remembered.
//!
//! Only values borrowed from the request are cached: they are fixed while a
//! phase runs, so their address and length identify them (the cache is
//! cleared between phases).

use super::BuildFx;
use crate::model::{Link, VarKind};
use crate::operator::OpKind;
use crate::prefilter::ChainFilter;
use crate::transform::{self, Transform};
use std::borrow::Cow;
use std::collections::HashMap;

/// One distinct value after one transformation chain.
pub(crate) struct TEntry {
    /// `None`: the chain left the value unchanged.
    pub value: Option<Vec<u8>>,
    /// Offset of its prefilter slot bitset in `ValueCache::bits`, once scanned.
    pub bits: Option<u32>,
    pub vid: u32,
}

#[derive(Default)]
pub(crate) struct ValueCache {
    by_addr: HashMap<(usize, usize), u32, BuildFx>,
    by_content: HashMap<Vec<u8>, u32, BuildFx>,
    /// Whether a value id was seen at more than one address.
    dup: Vec<bool>,
    /// Per value id: offset in `bits` of the scan of its raw content, shared
    /// by every chain that leaves the value unchanged.
    vbits: Vec<Option<u32>>,
    nchains: usize,
    /// `vid * nchains + chain` → index in `entries` (`u32::MAX`: not yet).
    slots: Vec<u32>,
    pub entries: Vec<TEntry>,
    bits: Vec<u64>,
    memo: HashMap<(u32, usize), bool, BuildFx>,
    /// (variable kind, chain) → offset in `bits` of the OR of the bitsets
    /// of every value of that collection.
    unions: HashMap<(u8, u32), u32, BuildFx>,
}

impl ValueCache {
    pub fn clear(&mut self, nchains: usize) {
        self.by_addr.clear();
        self.by_content.clear();
        self.dup.clear();
        self.vbits.clear();
        self.nchains = nchains;
        self.slots.clear();
        self.entries.clear();
        self.bits.clear();
        self.memo.clear();
        self.unions.clear();
    }

    fn vid(&mut self, v: &[u8]) -> u32 {
        let addr = (v.as_ptr() as usize, v.len());
        if let Some(&id) = self.by_addr.get(&addr) {
            return id;
        }
        let id = match self.by_content.get(v) {
            Some(&id) => {
                self.dup[id as usize] = true;
                id
            }
            None => {
                let id = self.dup.len() as u32;
                self.dup.push(false);
                self.vbits.push(None);
                self.by_content.insert(v.to_vec(), id);
                self.slots
                    .resize(self.slots.len() + self.nchains.max(1), u32::MAX);
                id
            }
        };
        self.by_addr.insert(addr, id);
        id
    }

    /// Index in `entries` of `value` transformed by `chain`.
    pub fn entry(&mut self, value: &[u8], chain: u32, transforms: &[Transform]) -> usize {
        let vid = self.vid(value);
        let s = vid as usize * self.nchains.max(1) + chain as usize;
        if chain as usize >= self.nchains.max(1) {
            // Unknown chain id (not counted at load): do not cache.
            return self.push(value, transforms, vid);
        }
        match self.slots[s] {
            u32::MAX => {
                let i = self.push(value, transforms, vid);
                self.slots[s] = i as u32;
                i
            }
            i => i as usize,
        }
    }

    fn push(&mut self, value: &[u8], transforms: &[Transform], vid: u32) -> usize {
        let v = match transform::apply_all(transforms, value) {
            Cow::Borrowed(_) => None,
            Cow::Owned(v) => Some(v),
        };
        self.entries.push(TEntry {
            value: v,
            bits: None,
            vid,
        });
        self.entries.len() - 1
    }

    /// The transformed bytes of entry `i` (`raw` is the untransformed value).
    pub fn value<'a>(&'a self, i: usize, raw: &'a [u8]) -> &'a [u8] {
        self.entries[i].value.as_deref().unwrap_or(raw)
    }

    /// Offset in `bits` of entry `i`'s slot bitset (scanned on first use).
    fn bits_of(&mut self, i: usize, cf: &ChainFilter, raw: &[u8]) -> usize {
        if let Some(o) = self.entries[i].bits {
            return o as usize;
        }
        let vid = self.entries[i].vid as usize;
        let unchanged = self.entries[i].value.is_none();
        if unchanged {
            if let Some(o) = self.vbits[vid] {
                self.entries[i].bits = Some(o);
                return o as usize;
            }
        }
        let off = self.bits.len();
        self.bits.resize(off + cf.words(), 0);
        let v = self.entries[i].value.as_deref().unwrap_or(raw);
        cf.scan(v, &mut self.bits[off..]);
        self.entries[i].bits = Some(off as u32);
        if unchanged {
            self.vbits[vid] = Some(off as u32);
        }
        off
    }

    fn has(&self, off: usize, slot: u32) -> bool {
        self.bits[off + slot as usize / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether the literals of prefilter `slot` occur in entry `i`.
    pub fn allows(&mut self, i: usize, cf: &ChainFilter, slot: u32, raw: &[u8]) -> bool {
        let off = self.bits_of(i, cf, raw);
        self.has(off, slot)
    }

    /// The union bitset of a whole collection for a chain, if already built.
    pub fn union(&self, kind: VarKind, chain: u32) -> Option<usize> {
        self.unions.get(&(kind as u8, chain)).map(|&o| o as usize)
    }

    /// Builds the union bitset of `values` (all of `kind`'s values, borrowed
    /// from the request) transformed by the chain.
    pub fn build_union<'a>(
        &mut self,
        kind: VarKind,
        chain: u32,
        transforms: &[Transform],
        cf: &ChainFilter,
        values: impl Iterator<Item = &'a [u8]>,
    ) -> usize {
        let words = cf.words();
        let mut acc = vec![0u64; words];
        for v in values {
            let i = self.entry(v, chain, transforms);
            let off = self.bits_of(i, cf, v);
            for (a, b) in acc.iter_mut().zip(&self.bits[off..off + words]) {
                *a |= *b;
            }
        }
        let off = self.bits.len();
        self.bits.extend_from_slice(&acc);
        self.unions.insert((kind as u8, chain), off as u32);
        off
    }

    pub fn union_has(&self, off: usize, slot: u32) -> bool {
        self.has(off, slot)
    }

    /// The memo key for the link's operator on entry `i`, when its result
    /// depends on the value only and the value repeats.
    pub fn memo_key(&self, i: usize, link: &Link) -> Option<(u32, usize)> {
        if link.capture || !self.dup[self.entries[i].vid as usize] || !pure(&link.operator.kind) {
            return None;
        }
        Some((i as u32, link as *const Link as usize))
    }

    pub fn memo_get(&self, k: (u32, usize)) -> Option<bool> {
        self.memo.get(&k).copied()
    }

    pub fn memo_put(&mut self, k: (u32, usize), m: bool) {
        self.memo.insert(k, m);
    }
}

/// Operators whose result depends only on the value (no macros, no state).
fn pure(k: &OpKind) -> bool {
    matches!(
        k,
        OpKind::Rx(_)
            | OpKind::Pm(_)
            | OpKind::StrMatch(_)
            | OpKind::IpMatch(_)
            | OpKind::ValidateByteRange(_)
            | OpKind::ValidateUrlEncoding
            | OpKind::ValidateUtf8Encoding
            | OpKind::DetectSqli
            | OpKind::DetectXss
    )
}
