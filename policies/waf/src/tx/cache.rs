//! Per-phase memo of request values: each distinct content gets a value id
//! (JSON names and values repeat per array element), each (value id,
//! transformation chain) is transformed and prefilter-scanned once, and pure
//! operator results on repeated contents are remembered.
//!
//! Only values borrowed from the request are cached: they are fixed while a
//! phase runs, so their position in the request variables (or else their
//! address and length) identifies them (the cache is cleared between
//! phases).

use super::collect::{NO_POS, POS_TAGS};
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
    /// Position tag → entry index → value id (`u32::MAX`: not yet); see
    /// `collect::Val::pos`. Filled on first sight, an array lookup after.
    by_pos: Vec<Vec<u32>>,
    /// Value ids of borrowed values without a position.
    by_addr: HashMap<(usize, usize), u32, BuildFx>,
    by_content: HashMap<Vec<u8>, u32, BuildFx>,
    /// Whether a value id was seen at more than one position (or address).
    dup: Vec<bool>,
    /// Per value id, bit `t as u32` set: transformation `t` leaves the raw
    /// value unchanged (its byte classes or `transform::apply` said so).
    raw_same: Vec<u64>,
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
    /// (case-folded content hash, length) of a transformed value → the
    /// entry whose scan it shares (see `bits_of`).
    scanned: HashMap<(u64, usize), u32, BuildFx>,
    /// Scratch list of bitset offsets for `build_union`.
    offs: Vec<u32>,
}

impl ValueCache {
    pub fn clear(&mut self, nchains: usize) {
        self.by_pos.resize_with(POS_TAGS, Vec::new);
        self.by_pos.iter_mut().for_each(Vec::clear);
        self.by_addr.clear();
        self.by_content.clear();
        self.dup.clear();
        self.raw_same.clear();
        self.vbits.clear();
        self.nchains = nchains;
        self.slots.clear();
        self.entries.clear();
        self.bits.clear();
        self.memo.clear();
        self.unions.clear();
        self.scanned.clear();
    }

    /// Roughly the heap bytes the cache keeps between transactions: a
    /// pooled cache that once served a huge request is dropped instead.
    pub fn retained_bytes(&self) -> usize {
        self.by_addr.capacity() * 24
            + self.by_pos.iter().map(|v| v.capacity() * 4).sum::<usize>()
            + self.by_content.capacity() * 32
            + self.slots.capacity() * 4
            + self.entries.capacity() * std::mem::size_of::<TEntry>()
            + self.bits.capacity() * 8
            + self.memo.capacity() * 24
    }

    // The hit paths of `vid`, `entry` and `bits_of` run ~20 000 times per
    // 4 KiB JSON POST (every value of a collection, per chain): they are
    // inlined and the first-sight paths kept out of line, so the hits do not
    // pay the spills of a large function's prologue and epilogue.
    #[inline]
    fn vid(&mut self, v: &[u8], pos: u32) -> u32 {
        if pos != NO_POS {
            let (tag, i) = ((pos >> 24) as usize, (pos & 0xff_ffff) as usize);
            if let Some(&id) = self.by_pos.get(tag).and_then(|t| t.get(i)) {
                if id != u32::MAX {
                    return id;
                }
            }
            return self.new_pos_vid(v, tag, i);
        }
        let addr = (v.as_ptr() as usize, v.len());
        match self.by_addr.get(&addr) {
            Some(&id) => id,
            None => {
                let id = self.content_vid(v);
                self.by_addr.insert(addr, id);
                id
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn new_pos_vid(&mut self, v: &[u8], tag: usize, i: usize) -> u32 {
        let id = self.content_vid(v);
        if tag >= self.by_pos.len() {
            self.by_pos.resize_with(tag + 1, Vec::new);
        }
        let t = &mut self.by_pos[tag];
        if t.len() <= i {
            t.resize(i + 1, u32::MAX);
        }
        t[i] = id;
        id
    }

    /// The id of a value seen at a new position or address: the id of the
    /// same content seen before, or a new one.
    #[cold]
    #[inline(never)]
    fn content_vid(&mut self, v: &[u8]) -> u32 {
        match self.by_content.get(v) {
            Some(&id) => {
                self.dup[id as usize] = true;
                id
            }
            None => {
                let id = self.dup.len() as u32;
                self.dup.push(false);
                // One pass over the value proves most decoders no-ops on it.
                self.raw_same
                    .push(transform::unchanged_set(transform::classes(v)));
                self.vbits.push(None);
                self.by_content.insert(v.to_vec(), id);
                self.slots
                    .resize(self.slots.len() + self.nchains.max(1), u32::MAX);
                id
            }
        }
    }

    /// Index in `entries` of `value` (at request position `pos`)
    /// transformed by `chain`.
    #[inline]
    pub fn entry(&mut self, value: &[u8], pos: u32, chain: u32, transforms: &[Transform]) -> usize {
        let vid = self.vid(value, pos);
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

    #[inline(never)]
    fn push(&mut self, value: &[u8], transforms: &[Transform], vid: u32) -> usize {
        // `transform::apply_all`, except that whether a transformation leaves
        // the *raw* value unchanged is remembered per value: dozens of chains
        // start with the same few decoders, and on benign values they mostly
        // change nothing (each answer otherwise costs a scan of the value).
        let mut cur: Cow<[u8]> = Cow::Borrowed(value);
        for &t in transforms {
            if let Cow::Borrowed(raw) = cur {
                let bit = 1u64.checked_shl(t as u32).unwrap_or(0);
                let id = vid as usize;
                if self.raw_same[id] & bit != 0 {
                    continue;
                }
                match transform::apply(t, raw) {
                    None => self.raw_same[id] |= bit,
                    Some(n) => cur = Cow::Owned(n),
                }
            } else if let Some(n) = transform::apply(t, &cur) {
                cur = Cow::Owned(n);
            }
        }
        let (v, bits) = match cur {
            // A value the chain left unchanged shares the raw value's scan,
            // if there is one already (saves `scan_bits` a call per entry).
            Cow::Borrowed(_) => (None, self.vbits[vid as usize]),
            Cow::Owned(v) => (Some(v), None),
        };
        self.entries.push(TEntry {
            value: v,
            bits,
            vid,
        });
        self.entries.len() - 1
    }

    /// The transformed bytes of entry `i` (`raw` is the untransformed value).
    pub fn value<'a>(&'a self, i: usize, raw: &'a [u8]) -> &'a [u8] {
        self.entries[i].value.as_deref().unwrap_or(raw)
    }

    /// Offset in `bits` of entry `i`'s slot bitset (scanned on first use).
    #[inline]
    fn bits_of(&mut self, i: usize, cf: &ChainFilter, raw: &[u8]) -> usize {
        match self.entries[i].bits {
            Some(o) => o as usize,
            None => self.scan_bits(i, cf, raw),
        }
    }

    /// `bits_of` on first use of entry `i`.
    #[cold]
    #[inline(never)]
    fn scan_bits(&mut self, i: usize, cf: &ChainFilter, raw: &[u8]) -> usize {
        let vid = self.entries[i].vid as usize;
        // The automaton is ASCII case-insensitive: a chain that only changed
        // the case (t:lowercase on a header, say) sets the same slots as the
        // raw value, so it shares the raw value's scan.
        let as_raw = match &self.entries[i].value {
            None => true,
            Some(v) => v.eq_ignore_ascii_case(raw),
        };
        if as_raw {
            if let Some(o) = self.vbits[vid] {
                self.entries[i].bits = Some(o);
                return o as usize;
            }
        }
        // Different chains often turn a value into the same bytes (the
        // decoders change nothing but `+`, say): a transformed content is
        // scanned once, whatever chain produced it.
        let key = (!as_raw).then(|| {
            let v = self.entries[i].value.as_deref().unwrap_or(raw);
            (fold_hash(v), v.len())
        });
        if let Some(k) = key {
            if let Some(&j) = self.scanned.get(&k) {
                let (a, b) = (&self.entries[j as usize], &self.entries[i]);
                if let (Some(off), Some(x), Some(y)) = (a.bits, &a.value, &b.value) {
                    if x.eq_ignore_ascii_case(y) {
                        self.entries[i].bits = Some(off);
                        return off as usize;
                    }
                }
            }
        }
        let off = self.bits.len();
        self.bits.resize(off + cf.words(), 0);
        let v = self.entries[i].value.as_deref().unwrap_or(raw);
        cf.scan(v, &mut self.bits[off..]);
        self.entries[i].bits = Some(off as u32);
        if as_raw {
            self.vbits[vid] = Some(off as u32);
        }
        if let Some(k) = key {
            self.scanned.entry(k).or_insert(i as u32);
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
        values: impl Iterator<Item = (&'a [u8], u32)>,
    ) -> usize {
        let words = cf.words();
        // Scan first (scans append to `bits`), then OR into the union's words.
        let mut offs = std::mem::take(&mut self.offs);
        offs.clear();
        for (v, pos) in values {
            let i = self.entry(v, pos, chain, transforms);
            offs.push(self.bits_of(i, cf, v) as u32);
        }
        let off = self.bits.len();
        self.bits.resize(off + words, 0);
        for &o in &offs {
            for w in 0..words {
                let b = self.bits[o as usize + w];
                self.bits[off + w] |= b;
            }
        }
        self.offs = offs;
        self.unions.insert((kind as u8, chain), off as u32);
        off
    }

    /// Drops the union bitsets of `kind` (its values changed).
    pub fn forget_unions(&mut self, kind: VarKind) {
        self.unions.retain(|&(k, _), _| k != kind as u8);
    }

    pub fn union_has(&self, off: usize, slot: u32) -> bool {
        self.has(off, slot)
    }

    /// The memo key for the link's operator on entry `i`, when its result
    /// depends on the value only and the value repeats. (With `capture` only
    /// a remembered miss is usable: a match runs again for its captures.)
    pub fn memo_key(&self, i: usize, link: &Link) -> Option<(u32, usize)> {
        if !self.dup[self.entries[i].vid as usize] || !pure(&link.operator.kind) {
            return None;
        }
        Some((i as u32, link as *const Link as usize))
    }

    /// The memo key for a multiMatch link on a raw request value: its
    /// answer depends only on the raw content (the chain is fixed), so
    /// repeated contents (JSON array elements) run the operator steps once.
    pub fn multi_memo_key(&self, vid: u32, link: &Link) -> Option<(u32, usize)> {
        if !pure(&link.operator.kind) {
            return None;
        }
        Some((vid, link as *const Link as usize))
    }

    /// The id of a value borrowed from the request (at position `pos`).
    pub fn raw_vid(&mut self, raw: &[u8], pos: u32) -> u32 {
        self.vid(raw, pos)
    }

    /// Whether `t` is known to leave the raw value `vid` unchanged.
    pub fn raw_unchanged(&self, vid: u32, t: Transform) -> bool {
        let bit = 1u64.checked_shl(t as u32).unwrap_or(0);
        self.raw_same
            .get(vid as usize)
            .is_some_and(|b| b & bit != 0)
    }

    /// Records that `t` left the raw value `vid` unchanged.
    pub fn note_raw_unchanged(&mut self, vid: u32, t: Transform) {
        let bit = 1u64.checked_shl(t as u32).unwrap_or(0);
        if let Some(b) = self.raw_same.get_mut(vid as usize) {
            *b |= bit;
        }
    }

    pub fn memo_get(&self, k: (u32, usize)) -> Option<bool> {
        self.memo.get(&k).copied()
    }

    pub fn memo_put(&mut self, k: (u32, usize), m: bool) {
        self.memo.insert(k, m);
    }
}

/// A hash of `v` that ASCII case does not change (bit 0x20 of every byte
/// set): values equal but for case collide, as the scan needs.
fn fold_hash(v: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = super::Fx::default();
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h.write_u64(u64::from_le_bytes(w) | 0x2020_2020_2020_2020);
    }
    let mut w = [0u8; 8];
    let r = it.remainder();
    w[..r.len()].copy_from_slice(r);
    h.write_u64(u64::from_le_bytes(w) | 0x2020_2020_2020_2020);
    h.finish()
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
