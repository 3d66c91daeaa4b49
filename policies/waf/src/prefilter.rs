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
/// Literals of one or two bytes (`=`, `/`, `on`, …) occur in almost every
/// value: reported one by one by an automaton they cost more than the
/// bytes themselves. They are looked up in byte and byte-pair tables in one
/// pass instead.
///
/// Longer literals are indexed by their first three (case-folded) bytes:
/// at each position of a value a 64 Kibit filter over a hash of the three
/// bytes there rejects almost every position, and the few left compare the
/// literals of their bucket. On request values this costs a fraction of an
/// overlapping Aho-Corasick search (which stops at each of the frequent
/// matches and follows failure links), and it finds every occurrence of
/// every literal: a literal starting at `i` has its bucket checked at `i`.
#[derive(Debug)]
pub struct ChainFilter {
    /// Bit `hash3(k)` set for the first three bytes `k` of each long literal.
    filter3: Box<[u64; FILTER3_WORDS]>,
    /// Bucket `hash3(k) >> BUCKET_SHIFT` → its range in `long`.
    starts: Vec<u32>,
    /// Long literals by bucket.
    long: Vec<LongLit>,
    /// Long literal (lower-case) and its index in `lit_slots`.
    long_lits: Vec<(Box<[u8]>, u32)>,
    /// Byte → 1 + index in `short_lits` (0: no literal); both ASCII cases
    /// of a letter have the entry, so the scan needs no case folding.
    byte1: Box<[u16; 256]>,
    /// Byte pair `(a << 8) | b` → 1 + index in `short_lits`, every case
    /// combination filled; 256 extra zero entries past the end serve as the
    /// "no previous byte" row for a value's first byte.
    byte2: Vec<u16>,
    /// Short literal → index in `lit_slots` (at most `MAX_SHORT`).
    short_lits: Vec<u32>,
    /// For each literal, the slots it enables.
    lit_slots: Vec<Vec<u32>>,
    slots: u32,
}

/// Short literals tracked in the scan's on-stack seen-set (16 words); the
/// slots of any further ones are set at each occurrence.
const MAX_SHORT: usize = 1024;

/// A long literal in its bucket: its first (up to) eight bytes as a word,
/// compared with the value's folded next eight bytes under `mask`.
#[derive(Debug, Clone, Copy)]
struct LongLit {
    head: u64,
    mask: u64,
    len: u32,
    /// Index in `ChainFilter::long_lits`.
    lit: u32,
}

/// Up to eight bytes of `v`, ASCII lower-cased, little-endian (missing
/// bytes are zero).
fn head8(v: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (d, &c) in w.iter_mut().zip(v) {
        *d = LOWER[c as usize];
    }
    u64::from_le_bytes(w)
}

const FILTER3_WORDS: usize = 1024;
/// 16-bit hash → 4096 buckets.
const BUCKET_SHIFT: u32 = 4;

/// Hash (16 bits) of three folded bytes `k` (`a | b << 8 | c << 16`).
fn hash3(k: u32) -> u32 {
    k.wrapping_mul(0x9E37_79B1) >> 16
}

/// Three bytes, ASCII lower-cased, as `a | b << 8 | c << 16`.
fn key3(a: u8, b: u8, c: u8) -> u32 {
    a.to_ascii_lowercase() as u32
        | (b.to_ascii_lowercase() as u32) << 8
        | (c.to_ascii_lowercase() as u32) << 16
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
        let mut byte1 = Box::new([0u16; 256]);
        let mut byte2 = vec![0u16; (1 << 16) + 256];
        let mut short_lits = Vec::new();
        let mut long_lits: Vec<(Box<[u8]>, u32)> = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            let id = i as u32;
            match l.as_slice() {
                [a] => {
                    short_lits.push(id);
                    for x in cases(*a) {
                        byte1[x as usize] = short_lits.len() as u16;
                    }
                }
                [a, b] => {
                    short_lits.push(id);
                    for x in cases(*a) {
                        for y in cases(*b) {
                            byte2[(x as usize) << 8 | y as usize] = short_lits.len() as u16;
                        }
                    }
                }
                [] => return None,
                _ => long_lits.push((l.to_ascii_lowercase().into_boxed_slice(), id)),
            }
        }
        // At most 256 + 256² distinct short literals: u16 entries suffice.
        u16::try_from(short_lits.len()).ok()?;
        let mut filter3 = Box::new([0u64; FILTER3_WORDS]);
        let nbuckets = 1usize << (16 - BUCKET_SHIFT);
        let mut by_bucket: Vec<Vec<LongLit>> = vec![Vec::new(); nbuckets];
        for (li, (l, _)) in long_lits.iter().enumerate() {
            let h = hash3(key3(l[0], l[1], l[2]));
            filter3[h as usize / 64] |= 1 << (h % 64);
            let n = l.len().min(8);
            by_bucket[(h >> BUCKET_SHIFT) as usize].push(LongLit {
                head: head8(l),
                mask: u64::MAX >> (64 - 8 * n),
                len: u32::try_from(l.len()).ok()?,
                lit: li as u32,
            });
        }
        let mut starts = Vec::with_capacity(nbuckets + 1);
        let mut long = Vec::with_capacity(long_lits.len());
        for b in by_bucket {
            starts.push(long.len() as u32);
            long.extend(b);
        }
        starts.push(long.len() as u32);
        Some(ChainFilter {
            filter3,
            starts,
            long,
            long_lits,
            byte1,
            byte2,
            short_lits,
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
        // One pass: short literals are noted in `seen`, then their slots set
        // once each (a literal repeats in a value far more often than it is
        // distinct); long ones are checked where their first three bytes
        // pass the filter.
        let mut seen = [0u64; MAX_SHORT / 64];
        let mut prev = 256usize;
        let long = !self.long.is_empty();
        // The folded last three bytes, `value[i - 2] | .. << 8 | value[i] << 16`.
        let mut k = 0u32;
        for (i, &c) in value.iter().enumerate() {
            let c = c as usize;
            let e = self.byte1[c] as usize;
            let e2 = self.byte2[prev << 8 | c] as usize;
            if e | e2 != 0 {
                for e in [e, e2] {
                    if e != 0 {
                        let j = e - 1;
                        if j < MAX_SHORT {
                            seen[j / 64] |= 1 << (j % 64);
                        } else {
                            self.set_slots(self.short_lits[j], bits);
                        }
                    }
                }
            }
            prev = c;
            k = (k >> 8) | (LOWER[c] as u32) << 16;
            if i < 2 || !long {
                continue;
            }
            let h = hash3(k);
            if self.filter3[h as usize / 64] & (1 << (h % 64)) != 0 {
                self.check_bucket(value, i - 2, h, bits);
            }
        }
        for (w, &word) in seen.iter().enumerate() {
            let mut word = word;
            while word != 0 {
                let b = word.trailing_zeros() as usize;
                word &= word - 1;
                self.set_slots(self.short_lits[w * 64 + b], bits);
            }
        }
    }

    /// Sets the slots of the long literals of hash bucket `h` that occur
    /// at `value[at..]`.
    fn check_bucket(&self, value: &[u8], at: usize, h: u32, bits: &mut [u64]) {
        let b = (h >> BUCKET_SHIFT) as usize;
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let rest = &value[at..];
        let head = head8(rest);
        for l in &self.long[from..to] {
            if l.len as usize > rest.len() || head & l.mask != l.head {
                continue;
            }
            let (lit, id) = &self.long_lits[l.lit as usize];
            if lit.len() <= 8 || rest[8..lit.len()].eq_ignore_ascii_case(&lit[8..]) {
                self.set_slots(*id, bits);
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
}
