//! Rule-level literal prefilter.
//!
//! At load, each link whose operator can only match when one of a finite set
//! of literals occurs in the (transformed) value gets a slot in the filter of
//! its transformation chain. At run time one pass over a
//! transformed value tells which slots' literals occur; a link whose slot is
//! not set cannot match that value, so its operator is not run.
//!
//! Soundness: the literal sets are *necessary* conditions (a match implies
//! that some literal occurs, ASCII case-insensitively), so skipping is exact.
//! Only non-negated operators without `multiMatch` get a slot, and only on
//! the value transformed by the link's own chain — the filter of chain `c`
//! is only ever run on values transformed by `c`.

use crate::model::{Item, Link};
use crate::operator::OpKind;
use crate::regex_compat::CompiledRegex;
use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};
use regex_syntax::hir::{
    Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind, Repetition,
};
use std::collections::HashMap;

/// Regex-derived sets larger than this are not worth a slot.
const MAX_RX_LITERALS: usize = 400;

/// One literal index over the literals of every gated link.
///
/// A scan of a value sets the slots of all links having a literal in it;
/// a link consults the bitset of the value *transformed by its own chain*,
/// so one index serves every chain (and a value that several chains
/// leave unchanged is scanned once).
///
/// The scan keeps the last bytes of the value in one rolling word and does
/// three table lookups per byte; only the pair lookup branches, and it
/// rarely hits:
///
/// - literals of one byte (`=`, `/`, `p`, …) are bits of a word that the
///   byte's table entry is OR-ed into (branch-free: a quarter of the bytes
///   of a request are such literals);
/// - literals of two bytes (`on`, `/*`, …) are looked up by the last two
///   bytes in a pair table;
/// - longer literals are indexed by their first three bytes: a 64 Kibit
///   filter over a hash of the last three bytes rejects almost every
///   position, and the few left compare the literals of their bucket. This
///   costs a fraction of an overlapping Aho-Corasick search (which stops at
///   each of the frequent matches and follows failure links), and it finds
///   every occurrence of every literal: a literal starting at `i` has its
///   bucket checked once the scan has passed `i + 2`.
///
/// The tables take every ASCII case of their bytes, and the hash is of the
/// three bytes with bit 5 set in each (`A` and `a` hash alike; so do `@`
/// and `` ` ``, which the bucket's exact comparison then tells apart), so
/// the loop needs no case folding.
#[derive(Debug)]
pub struct ChainFilter {
    /// Bit `hash3(k)` set for the first three bytes `k` of each long literal.
    filter3: Box<[u64; FILTER3_WORDS]>,
    /// Bucket `hash3(k) >> BUCKET_SHIFT` → its range in `long`.
    starts: Vec<u32>,
    /// Long literals by bucket.
    long: Vec<LongLit>,
    /// Per entry of `long`: the literal's bytes past the eighth
    /// (lower-case; empty for literals of up to eight bytes).
    tails: Vec<Box<[u8]>>,
    /// Byte → the bit of its one-byte literal in the scan's `seen1` word:
    /// bits 0..63 for the first 63 such literals, bit 63 for any further
    /// one (looked up in `over1` after the scan).
    byte1: Box<[u64; 256]>,
    /// Literal of bit `b` of `seen1` (`b` < 63).
    bit_lits: Vec<u32>,
    /// Byte → 1 + its one-byte literal past the 63rd (0: none).
    over1: Box<[u32; 256]>,
    /// Byte pair `(a << 8) | b` → its two-byte literal's bit in the scan's
    /// seen-set (0: no literal, `PAIR_OVER`: a literal past the
    /// `PAIR_OVER - 1`th, looked up in `over2`).
    byte2: Box<[u16; 1 << 16]>,
    /// Bit `b` of the seen-set → its two-byte literal (`b` in `1..PAIR_OVER`).
    pair_lits: Vec<u32>,
    /// Lower-cased pair → its literal, for pairs past the `PAIR_OVER - 1`th.
    over2: HashMap<u16, u32>,
    /// For each literal, the slots it enables.
    lit_slots: Vec<Vec<u32>>,
    slots: u32,
}

/// Bits of the scan's on-stack seen-set of two-byte literals (16 words):
/// bit 0 is unused, bits `1..PAIR_OVER` stand for one literal each, bit
/// `PAIR_OVER` for all the others (found again after the scan).
const PAIR_OVER: u16 = 1023;

/// The `seen1` bit standing for every one-byte literal past the 63rd.
const OVER1: u64 = 1 << 63;

/// A long literal in its bucket: its first (up to) eight bytes as a word,
/// compared with the value's folded next eight bytes under `mask`.
#[derive(Debug, Clone, Copy)]
struct LongLit {
    head: u64,
    mask: u64,
    len: u32,
    /// Index in `ChainFilter::lit_slots`.
    id: u32,
}

/// Up to eight bytes of `v`, ASCII lower-cased, little-endian (missing
/// bytes are zero).
fn head8(v: &[u8]) -> u64 {
    if let Some(w) = v.first_chunk::<8>() {
        return fold8(u64::from_le_bytes(*w));
    }
    let mut w = [0u8; 8];
    for (d, &c) in w.iter_mut().zip(v) {
        *d = LOWER[c as usize];
    }
    u64::from_le_bytes(w)
}

/// ASCII lower-casing of the eight bytes of `x` at once: bit 5 is set in
/// each byte in `A..=Z` (bytes ≥ 0x80 and the rest stay as they are).
fn fold8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Without the high bits no byte carries into the next one.
    let h = x & (0x7f * ONES);
    let upper = (h + 0x3f * ONES) & !(h + 0x25 * ONES) & !x & (0x80 * ONES);
    x | (upper >> 2)
}

const FILTER3_WORDS: usize = 1024;
/// 16-bit hash → 4096 buckets.
const BUCKET_SHIFT: u32 = 4;

/// Hash (16 bits) of the three bytes in the low 24 bits of `k` (`a << 16
/// | b << 8 | c` for the bytes `a b c`; higher bits ignored), bit 5 of
/// each set first: ASCII case does not change it.
#[inline(always)]
fn hash3(k: u64) -> u32 {
    (((k | 0x20_2020) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48) as u32
}

/// Three bytes as the scan's rolling word holds them.
fn key3(a: u8, b: u8, c: u8) -> u64 {
    (a as u64) << 16 | (b as u64) << 8 | c as u64
}

/// The byte and its other ASCII case, if it has one.
fn cases(c: u8) -> impl Iterator<Item = u8> {
    let other = if c.is_ascii_alphabetic() {
        Some(c ^ 0x20)
    } else {
        None
    };
    std::iter::once(c).chain(other)
}

impl ChainFilter {
    /// Builds the filter over `lits` (lower-case, non-empty, distinct), the
    /// slots of literal `i` being `lit_slots[i]`.
    fn new(lits: &[Vec<u8>], lit_slots: Vec<Vec<u32>>, slots: u32) -> Option<ChainFilter> {
        let mut byte1 = Box::new([0u64; 256]);
        let mut bit_lits = Vec::new();
        let mut over1 = Box::new([0u32; 256]);
        let mut byte2: Box<[u16; 1 << 16]> =
            vec![0u16; 1 << 16].into_boxed_slice().try_into().ok()?;
        // Bit 0 of the pair seen-set is never set.
        let mut pair_lits = vec![u32::MAX];
        let mut over2 = HashMap::new();
        let mut long_lits: Vec<(Vec<u8>, u32)> = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            let id = i as u32;
            match l.as_slice() {
                [a] => {
                    let a = a.to_ascii_lowercase();
                    // Distinct lower-case literals never share a byte; if
                    // they did, no filter is safer than a lost literal.
                    if over1[a as usize] != 0 {
                        return None;
                    }
                    let bit = if bit_lits.len() < 63 {
                        bit_lits.push(id);
                        1 << (bit_lits.len() - 1)
                    } else {
                        over1[a as usize] = id.checked_add(1)?;
                        OVER1
                    };
                    for x in cases(a) {
                        byte1[x as usize] |= bit;
                    }
                }
                [a, b] => {
                    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
                    let bit = if pair_lits.len() < PAIR_OVER as usize {
                        pair_lits.push(id);
                        (pair_lits.len() - 1) as u16
                    } else {
                        if over2.insert(u16::from(a) << 8 | u16::from(b), id).is_some() {
                            return None;
                        }
                        PAIR_OVER
                    };
                    for x in cases(a) {
                        for y in cases(b) {
                            let e = &mut byte2[(x as usize) << 8 | y as usize];
                            if *e != 0 {
                                return None;
                            }
                            *e = bit;
                        }
                    }
                }
                [] => return None,
                _ => long_lits.push((l.to_ascii_lowercase(), id)),
            }
        }
        let mut filter3 = Box::new([0u64; FILTER3_WORDS]);
        let nbuckets = 1usize << (16 - BUCKET_SHIFT);
        let mut by_bucket: Vec<Vec<(LongLit, Box<[u8]>)>> = vec![Vec::new(); nbuckets];
        for (l, id) in long_lits {
            let h = hash3(key3(l[0], l[1], l[2]));
            filter3[h as usize / 64] |= 1 << (h % 64);
            let n = l.len().min(8);
            let lit = LongLit {
                head: head8(&l),
                mask: u64::MAX >> (64 - 8 * n),
                len: u32::try_from(l.len()).ok()?,
                id,
            };
            by_bucket[(h >> BUCKET_SHIFT) as usize].push((lit, l[n..].into()));
        }
        let mut starts = Vec::with_capacity(nbuckets + 1);
        let mut long = Vec::new();
        let mut tails = Vec::new();
        for b in by_bucket {
            starts.push(u32::try_from(long.len()).ok()?);
            for (lit, tail) in b {
                long.push(lit);
                tails.push(tail);
            }
        }
        starts.push(u32::try_from(long.len()).ok()?);
        Some(ChainFilter {
            filter3,
            starts,
            long,
            tails,
            byte1,
            bit_lits,
            over1,
            byte2,
            pair_lits,
            over2,
            lit_slots,
            slots,
        })
    }

    /// Number of 64-bit words a slot bitset takes.
    pub fn words(&self) -> usize {
        (self.slots as usize).div_ceil(64)
    }

    fn set_slots(&self, lit: u32, bits: &mut [u64]) {
        for &s in &self.lit_slots[lit as usize] {
            bits[s as usize / 64] |= 1 << (s % 64);
        }
    }

    /// Sets, in `bits` (of `words()` length, zeroed), the slots whose
    /// literals occur in `value`.
    pub fn scan(&self, value: &[u8], bits: &mut [u64]) {
        let Some((&first, rest)) = value.split_first() else {
            return;
        };
        // Short literals are noted in `seen1`/`seen2`, then their slots set
        // once each (a literal repeats in a value far more often than it is
        // distinct). Positions passing the long-literal filter are listed
        // per 64 bytes and checked after each chunk: without a call or a
        // hard-to-predict branch in it, the loop keeps its state in
        // registers.
        let mut seen2 = [0u64; (PAIR_OVER as usize + 1) / 64];
        // The last bytes of the value, the newest lowest.
        let mut k = first as u64;
        let mut seen1 = self.byte1[first as usize];
        let (filter3, byte1, byte2) = (&*self.filter3, &*self.byte1, &*self.byte2);
        let mut hits = [0u8; 64];
        for (n, chunk) in rest.chunks(64).enumerate() {
            let mut nh = 0usize;
            for (j, &c) in chunk.iter().enumerate() {
                k = k << 8 | c as u64;
                seen1 |= byte1[c as usize];
                let e = byte2[(k & 0xffff) as usize] as usize;
                if e != 0 {
                    seen2[(e / 64) % seen2.len()] |= 1 << (e % 64);
                }
                let h = hash3(k) as usize;
                hits[nh % 64] = j as u8;
                nh += (filter3[h / 64] >> (h % 64)) as usize & 1;
            }
            if nh != 0 {
                self.check_hits(value, 1 + 64 * n, &hits[..nh.min(64)], bits);
            }
        }
        self.finish_short(value, seen1, &seen2, bits);
    }

    /// Sets the slots of the short literals a scan noted.
    fn finish_short(&self, value: &[u8], seen1: u64, seen2: &[u64], bits: &mut [u64]) {
        let mut word = seen1 & !OVER1;
        while word != 0 {
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            self.set_slots(self.bit_lits[b], bits);
        }
        if seen1 & OVER1 != 0 {
            self.finish_over1(value, bits);
        }
        let used = self.pair_lits.len().div_ceil(64);
        for (w, &word) in seen2.iter().enumerate().take(used) {
            let mut word = word;
            while word != 0 {
                let b = w * 64 + word.trailing_zeros() as usize;
                word &= word - 1;
                if let Some(&lit) = self.pair_lits.get(b) {
                    self.set_slots(lit, bits);
                }
            }
        }
        if seen2[PAIR_OVER as usize / 64] & 1 << (PAIR_OVER % 64) != 0 {
            self.finish_over2(value, bits);
        }
    }

    /// Sets the slots of the one-byte literals past the 63rd in `value`.
    #[cold]
    #[inline(never)]
    fn finish_over1(&self, value: &[u8], bits: &mut [u64]) {
        let mut done = [false; 256];
        for &c in value {
            let c = c.to_ascii_lowercase() as usize;
            let e = self.over1[c];
            if e != 0 && !done[c] {
                done[c] = true;
                self.set_slots(e - 1, bits);
            }
        }
    }

    /// Sets the slots of the two-byte literals past the `PAIR_OVER - 1`th in
    /// `value`.
    #[cold]
    #[inline(never)]
    fn finish_over2(&self, value: &[u8], bits: &mut [u64]) {
        for w in value.windows(2) {
            let pair =
                u16::from(w[0].to_ascii_lowercase()) << 8 | u16::from(w[1].to_ascii_lowercase());
            if let Some(&lit) = self.over2.get(&pair) {
                self.set_slots(lit, bits);
            }
        }
    }

    /// `check_long` at each of a chunk's positions that passed the filter
    /// (offsets `hits` from `base`): out of line, so that neither loop
    /// keeps the other's state in its registers.
    #[inline(never)]
    fn check_hits(&self, value: &[u8], base: usize, hits: &[u8], bits: &mut [u64]) {
        for &j in hits {
            // The byte at `j` of the chunk is the value's `base + j`: the
            // three bytes hashed end there.
            self.check_long(value, base + j as usize, bits);
        }
    }

    /// Sets the slots of the long literals that occur at `value[end - 2..]`
    /// (nothing when `end < 2`: the rolling word's bytes before the value's
    /// first are not the value's).
    #[inline(always)]
    fn check_long(&self, value: &[u8], end: usize, bits: &mut [u64]) {
        let (Some(at), Some(&c)) = (end.checked_sub(2), value.get(end)) else {
            return;
        };
        let h = hash3(key3(value[at], value[at + 1], c));
        let b = (h >> BUCKET_SHIFT) as usize;
        let (Some(&from), Some(&to)) = (self.starts.get(b), self.starts.get(b + 1)) else {
            return;
        };
        let range = from as usize..to as usize;
        let (Some(long), Some(tails)) = (self.long.get(range.clone()), self.tails.get(range))
        else {
            return;
        };
        let rest = &value[at..];
        let head = head8(rest);
        for (l, tail) in long.iter().zip(tails) {
            if head & l.mask != l.head || l.len as usize > rest.len() {
                continue;
            }
            if tail.is_empty() || rest[8..l.len as usize].eq_ignore_ascii_case(tail) {
                self.set_slots(l.id, bits);
            }
        }
    }
}

/// ASCII lower-casing as a table (one load in the scan loop).
static LOWER: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).to_ascii_lowercase();
        i += 1;
    }
    t
};

/// The prefilter of a rule set.
#[derive(Debug, Default)]
pub struct Prefilter {
    filter: Option<ChainFilter>,
    /// Links that got a slot (for reporting).
    pub filtered_links: usize,
    pub total_links: usize,
    /// Number of transformation chain ids in use (max id + 1).
    pub chain_count: usize,
}

impl Prefilter {
    /// Assigns slots to the links of `phases` and builds the literal index.
    pub fn build(phases: &mut [Vec<Item>; 5]) -> Prefilter {
        let mut lits_ids: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut lit_slots: Vec<Vec<u32>> = Vec::new();
        let mut pf = Prefilter::default();
        let mut slots = 0u32;
        for items in phases.iter_mut() {
            for it in items.iter_mut() {
                let Item::Rule(r) = it else { continue };
                for link in r.links.iter_mut() {
                    pf.total_links += 1;
                    pf.chain_count = pf.chain_count.max(link.tchain as usize + 1);
                    link.prefilter = None;
                    let Some(lits) = link_literals(link) else {
                        continue;
                    };
                    let slot = slots;
                    slots += 1;
                    for l in lits {
                        let n = lits_ids.len();
                        let id = *lits_ids.entry(l).or_insert(n);
                        if id == lit_slots.len() {
                            lit_slots.push(Vec::new());
                        }
                        lit_slots[id].push(slot);
                    }
                    link.prefilter = Some(slot);
                    pf.filtered_links += 1;
                }
            }
        }
        let mut pats: Vec<(usize, Vec<u8>)> = lits_ids.into_iter().map(|(l, i)| (i, l)).collect();
        pats.sort();
        let lits: Vec<Vec<u8>> = pats.into_iter().map(|(_, l)| l).collect();
        match ChainFilter::new(&lits, lit_slots, slots) {
            Some(cf) if slots > 0 => pf.filter = Some(cf),
            _ => {
                // Without an index nothing is filtered: every link runs.
                for items in phases.iter_mut() {
                    for it in items.iter_mut() {
                        if let Item::Rule(r) = it {
                            r.links.iter_mut().for_each(|l| l.prefilter = None);
                        }
                    }
                }
                pf.filtered_links = 0;
            }
        }
        pf
    }

    /// The literal index gating links of transformation chain `tchain` (the
    /// same for every chain; the argument keeps callers chain-explicit).
    pub fn chain(&self, _tchain: u32) -> Option<&ChainFilter> {
        self.filter.as_ref()
    }
}

/// Lower-cased literals at least one of which occurs (ASCII
/// case-insensitively) in every value the link's operator matches; `None`
/// when no such finite set is known.
pub fn link_literals(link: &Link) -> Option<Vec<Vec<u8>>> {
    let op = &link.operator;
    if op.negated || link.multi_match {
        return None;
    }
    let lits = match &op.kind {
        OpKind::Rx(r) => rx_literals(r)?,
        OpKind::Pm(_) => pm_words(op.name, &op.param)?,
        OpKind::Streq(m)
        | OpKind::Contains(m)
        | OpKind::ContainsWord(m)
        | OpKind::BeginsWith(m)
        | OpKind::EndsWith(m) => vec![m.literal()?.as_bytes().to_vec()],
        OpKind::StrMatch(s) => vec![s.clone()],
        _ => return None,
    };
    let mut lits: Vec<Vec<u8>> = lits.into_iter().map(|l| l.to_ascii_lowercase()).collect();
    if lits.is_empty() || lits.iter().any(|l| l.is_empty()) {
        return None;
    }
    lits.sort();
    lits.dedup();
    Some(lits)
}

/// `@pm` words are its parameter; `@pmFromFile` phrases are not kept after
/// load, so those links always run (their automaton is the check anyway).
fn pm_words(name: &str, param: &str) -> Option<Vec<Vec<u8>>> {
    if name != "pm" {
        return None;
    }
    Some(
        param
            .split_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect(),
    )
}

fn rx_literals(r: &CompiledRegex) -> Option<Vec<Vec<u8>>> {
    let CompiledRegex::Fast(re) = r else {
        // fancy-regex matches a lossy UTF-8 copy with look-around: not analysed.
        return None;
    };
    // CompiledRegex tries byte mode first (on the \x{..}-rewritten pattern),
    // then Unicode mode (marked by a `(?u)` prefix): parse the text it
    // compiled with the same syntax settings.
    let text = re.as_str();
    let hir = match text.strip_prefix(crate::regex_compat::UNICODE_MARK) {
        Some(_) => regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(text)
            .ok()?,
        None => regex_syntax::ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(text)
            .ok()?,
    };
    let out = necessary(&lower(&hir))?;
    if out.is_empty() || out.len() > MAX_RX_LITERALS {
        return None;
    }
    Some(out)
}

/// Maps every literal and class through ASCII lower-casing. If `s` matches
/// `h`, then lowercase(`s`) matches `lower(h)` (assertions ignored, which
/// literal extraction does anyway), so necessary literals of `lower(h)`
/// occur case-insensitively in any match of `h` — without the 2^n literal
/// blow-up that `(?i)` classes cause.
fn lower(h: &Hir) -> Hir {
    match h.kind() {
        HirKind::Empty => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0.to_ascii_lowercase()),
        HirKind::Class(Class::Bytes(c)) => {
            let mut set = [false; 256];
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[b.to_ascii_lowercase() as usize] = true;
                }
            }
            let mut ranges = Vec::new();
            let mut i = 0usize;
            while i < 256 {
                if set[i] {
                    let s = i;
                    while i + 1 < 256 && set[i + 1] {
                        i += 1;
                    }
                    ranges.push(ClassBytesRange::new(s as u8, i as u8));
                }
                i += 1;
            }
            Hir::class(Class::Bytes(ClassBytes::new(ranges)))
        }
        HirKind::Class(Class::Unicode(c)) => {
            let mut ranges = Vec::new();
            for r in c.ranges() {
                let (a, b) = (r.start(), r.end());
                // The parts outside 'A'..='Z' stay; the part inside moves down.
                if a < 'A' {
                    ranges.push(ClassUnicodeRange::new(a, b.min('@')));
                }
                if b > 'Z' {
                    ranges.push(ClassUnicodeRange::new(a.max('['), b));
                }
                let (ua, ub) = (a.max('A'), b.min('Z'));
                if ua <= ub {
                    ranges.push(ClassUnicodeRange::new(
                        ua.to_ascii_lowercase(),
                        ub.to_ascii_lowercase(),
                    ));
                }
            }
            Hir::class(Class::Unicode(ClassUnicode::new(ranges)))
        }
        HirKind::Look(l) => Hir::look(*l),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            min: r.min,
            max: r.max,
            greedy: r.greedy,
            sub: Box::new(lower(&r.sub)),
        }),
        HirKind::Capture(c) => lower(&c.sub),
        HirKind::Concat(xs) => Hir::concat(xs.iter().map(lower).collect()),
        HirKind::Alternation(xs) => Hir::alternation(xs.iter().map(lower).collect()),
    }
}

fn extractor() -> Extractor {
    let mut e = Extractor::new();
    e.kind(ExtractKind::Prefix)
        .limit_class(8)
        .limit_repeat(8)
        .limit_literal_len(24)
        .limit_total(256);
    e
}

/// A finite, non-empty set of non-empty literals from a prefix sequence.
fn seq_set(seq: &Seq) -> Option<Vec<Vec<u8>>> {
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.is_empty()) {
        return None;
    }
    Some(lits.iter().map(|l| l.as_bytes().to_vec()).collect())
}

/// Higher is a better filter: longer shortest literal, then fewer literals.
fn score(s: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    let min = s.iter().map(Vec::len).min().unwrap_or(0);
    (min.min(6), std::cmp::Reverse(s.len()))
}

fn best(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A set of literals at least one of which occurs in every match of `h`
/// (as a substring of the matched text).
fn necessary(h: &Hir) -> Option<Vec<Vec<u8>>> {
    necessary_in(h, &extractor(), 0)
}

fn necessary_in(h: &Hir, ex: &Extractor, depth: usize) -> Option<Vec<Vec<u8>>> {
    if depth > 64 {
        return None;
    }
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => None,
        HirKind::Literal(_) | HirKind::Class(_) => seq_set(&ex.extract(h)),
        HirKind::Capture(c) => necessary_in(&c.sub, ex, depth + 1),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                None
            } else {
                necessary_in(&r.sub, ex, depth + 1)
            }
        }
        HirKind::Alternation(xs) => {
            let mut union = Vec::new();
            let mut ok = true;
            for x in xs {
                match necessary_in(x, ex, depth + 1) {
                    Some(s) => union.extend(s),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            let by_union = if ok { Some(union) } else { None };
            best(by_union, seq_set(&ex.extract(h)))
        }
        HirKind::Concat(xs) => {
            let mut b = None;
            // Every child is necessary; so is every suffix's prefix set.
            for (i, x) in xs.iter().enumerate().take(48) {
                b = best(b, necessary_in(x, ex, depth + 1));
                let suffix = Hir::concat(xs[i..].to_vec());
                b = best(b, seq_set(&ex.extract(&suffix)));
            }
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;
    use proptest::prelude::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        let r = CompiledRegex::new(p).unwrap();
        let mut v: Vec<String> = rx_literals(&r)?
            .into_iter()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .collect();
        v.sort();
        v.dedup();
        Some(v)
    }

    #[test]
    fn extracts_inner_literals_case_folded() {
        assert_eq!(
            lits(r"(?i)[\s\x0b]*union\s+select"),
            Some(vec!["select".into()])
        );
        let ev = lits(r"(?i)\b(?:onload|onerror)\s*=").unwrap();
        assert!(ev
            .iter()
            .all(|l| l.starts_with("onload") || l.starts_with("onerror")));
        assert_eq!(lits(r"^.*$"), None);
        assert_eq!(lits(r"a?b*"), None);
        assert_eq!(lits(r"[a-z]+"), None);
    }

    #[test]
    fn every_match_contains_a_literal() {
        let pats = [
            r"(?i)(?:\b(?:select|union)\b.{0,40}\bfrom)",
            r"<script[^>]*>",
            r"\x{bc}[^>\x{be}]*[>\x{be}]",
            r"(?i)%u[fF]{2}[0-9a-f]{2}",
            r#"["'`]\s*?(?:or|and)\s+\d"#,
        ];
        let inputs: [&[u8]; 6] = [
            b"1 UNION all SELECT a FROM t",
            b"<SCRIPT src=x>",
            b"\xbcscript\xbe",
            b"%UFF1c",
            b"' OR 1",
            b"nothing here",
        ];
        for p in pats {
            let r = CompiledRegex::new(p).unwrap();
            let Some(l) = rx_literals(&r) else { continue };
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&l)
                .unwrap();
            for i in inputs {
                if r.is_match(i) {
                    assert!(ac.is_match(i), "{p} matched {i:?} without any of {l:?}");
                }
            }
        }
    }

    /// The table + 3-byte index scan sets exactly the slots of the literals
    /// that occur ASCII case-insensitively (checked against a naive search).
    #[test]
    fn scan_sets_exactly_the_slots_of_occurring_literals() {
        let lits: Vec<Vec<u8>> = [
            &b"="[..],
            b"/",
            b"p",
            b"\xff",
            b"on",
            b"/*",
            b"a\x00",
            b"ab",
            b"abc",
            b"select",
            b"union all",
            b"xy",
            b"x",
            b"<script",
            b"\xbc\xbe",
            b"zz",
            b"zzz",
        ]
        .iter()
        .map(|l| l.to_vec())
        .collect();
        // Literal i enables slots i and (i + 1) % n: slots shared across literals.
        let n = lits.len() as u32;
        let lit_slots: Vec<Vec<u32>> = (0..n).map(|i| vec![i, (i + 1) % n]).collect();
        let cf = ChainFilter::new(&lits, lit_slots.clone(), n).unwrap();
        let alphabet = b"=/pPoOnN*aAbBcCxXyYzZ<sS \x00\xff\xbc\xbe";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40usize {
            for _ in 0..60 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_scan_exact(&cf, &lits, &lit_slots, &v);
            }
        }
    }

    /// `cf.scan(v)` against a naive search: every literal found anywhere
    /// in the lower-cased value sets its slots.
    fn assert_scan_exact(cf: &ChainFilter, lits: &[Vec<u8>], lit_slots: &[Vec<u32>], v: &[u8]) {
        let mut got = vec![0u64; cf.words()];
        cf.scan(v, &mut got);
        let lower = v.to_ascii_lowercase();
        let mut want = vec![0u64; cf.words()];
        for (l, slots) in lits.iter().zip(lit_slots) {
            if lower.windows(l.len()).any(|w| w == l.as_slice()) {
                for &s in slots {
                    want[s as usize / 64] |= 1 << (s % 64);
                }
            }
        }
        assert_eq!(got, want, "value {v:?}");
    }

    /// The same with thousands of literals: more short ones than the
    /// seen-set holds, long ones sharing first bytes and filter buckets.
    #[test]
    fn scan_is_exact_with_many_literals() {
        let alphabet = b"aAbBcC-/ \xff";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut set = std::collections::BTreeSet::new();
        // Every 1- and 2-byte literal over the bytes 0..=40: 1722 short
        // literals, more than the scan's seen-set holds (MAX_SHORT).
        for a in 0u8..=40 {
            set.insert(vec![a]);
            for b in 0u8..=40 {
                set.insert(vec![a, b]);
            }
        }
        while set.len() < 5000 {
            let len = 3 + (next() % 7) as usize;
            let l: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize].to_ascii_lowercase())
                .collect();
            set.insert(l);
        }
        let lits: Vec<Vec<u8>> = set.into_iter().collect();
        let n = lits.len() as u32;
        let lit_slots: Vec<Vec<u32>> = (0..n).map(|i| vec![i % 300]).collect();
        let cf = ChainFilter::new(&lits, lit_slots.clone(), 300).unwrap();
        let mut values_alphabet = alphabet.to_vec();
        values_alphabet.extend(0u8..=40);
        for len in 0..40usize {
            for _ in 0..10 {
                let v: Vec<u8> = (0..len)
                    .map(|_| values_alphabet[(next() % values_alphabet.len() as u64) as usize])
                    .collect();
                assert_scan_exact(&cf, &lits, &lit_slots, &v);
            }
        }
    }

    /// Bytes the property tests draw literals and values from: letters in
    /// both cases, the bytes bit 5 folds onto them (`@`, `[`, control
    /// bytes), NUL and non-ASCII.
    const PROP_ALPHABET: &[u8] = b"aAbBzZ@`[{\t)\x00 \xff\xbc-/";

    fn prop_lits() -> impl Strategy<Value = (Vec<Vec<u8>>, bool, bool)> {
        (
            proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(PROP_ALPHABET), 1..14),
                1..40,
            ),
            any::<bool>(),
            any::<bool>(),
        )
    }

    /// The literal set of a property case: the drawn literals, plus (when
    /// asked) every one-byte literal (more than the scan's `seen1` word
    /// holds) and every pair over 40 bytes (more than its pair seen-set
    /// holds), so that the overflow paths run too.
    fn literal_set(drawn: &[Vec<u8>], all1: bool, all2: bool) -> Vec<Vec<u8>> {
        let mut set: std::collections::BTreeSet<Vec<u8>> =
            drawn.iter().map(|l| l.to_ascii_lowercase()).collect();
        if all1 {
            set.extend((0..=255u8).map(|b| vec![b.to_ascii_lowercase()]));
        }
        if all2 {
            for a in 0u8..40 {
                set.extend((0u8..40).map(|b| vec![a, b]));
            }
        }
        set.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The scan against the naive search on values up to three 64-byte
        /// chunks long, with drawn literals planted (in random case) at the
        /// value's start and end and across the chunk boundaries.
        #[test]
        fn scan_finds_every_literal_occurrence(
            (drawn, all1, all2) in prop_lits(),
            body in proptest::collection::vec(proptest::sample::select(PROP_ALPHABET), 0..200),
            plant in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>(), any::<u64>()), 0..6),
        ) {
            let lits = literal_set(&drawn, all1, all2);
            let n = lits.len() as u32;
            let slots = n.min(150);
            let lit_slots: Vec<Vec<u32>> = (0..n).map(|i| vec![i % slots, (i * 7 + 3) % slots]).collect();
            let cf = ChainFilter::new(&lits, lit_slots.clone(), slots).unwrap();
            let mut v = body;
            let len = v.len();
            // Planting spots: the start, the end, and around each chunk
            // boundary (the scan's chunks start at byte 1 of the value).
            let spots = [0usize, len, 63, 64, 65, 127, 128, 129];
            for (which, spot, case) in plant {
                let lit = &drawn[which.index(drawn.len())];
                let at = spots[spot.index(spots.len())].min(v.len());
                let at = if at == len && at >= lit.len() { at - lit.len() } else { at };
                let cased: Vec<u8> = lit
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| if case >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                    .collect();
                let end = (at + cased.len()).min(v.len());
                v.splice(at..end, cased);
            }
            assert_scan_exact(&cf, &lits, &lit_slots, &v);
        }

        /// `fold8` is `to_ascii_lowercase` on each of the eight bytes.
        #[test]
        fn fold8_lower_cases_each_byte(x in any::<u64>(), ascii in any::<[u8; 8]>()) {
            for w in [x, u64::from_le_bytes(ascii.map(|b| b & 0x7f))] {
                let want = u64::from_le_bytes(w.to_le_bytes().map(|b| b.to_ascii_lowercase()));
                prop_assert_eq!(fold8(w), want);
            }
        }
    }
}
