//! Lookup structures whose cost does not grow with the number of rules:
//! per-port tables (sorted single ports, elementary intervals for ranges)
//! and per-prefix-length hash maps for CIDRs. Tables are built with
//! `*Builder`s and then compiled into a compact form whose rule lists share
//! one pool: a lookup touches the hash bucket and that dense pool, not a
//! chain of small allocations (cache misses dominated decisions with 10k
//! rules).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::model::PortSpec;

/// Multiply-rotate hash (the FxHash scheme). Keys come from the policy, so
/// attacker-chosen lookups cannot degrade the table; speed matters more here
/// than SipHash's flooding resistance.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.add(i as u64);
        self.add((i >> 64) as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // Multiplication only carries upwards, so keys that differ only in
        // high bits (masked prefixes: low bits all zero) would share their
        // low bits, which pick the bucket. Fold the high bits back down
        // (murmur3's finaliser).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Rule indices (positions in the document).
pub type RuleIdx = u32;

/// More rule-list entries than a `u32` can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOverflow;

/// Where one list of rules sits in a [`RulePool`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    #[inline]
    fn is_empty(self) -> bool {
        self.len == 0
    }
}

/// Every rule list of one direction's index, back to back. Tables hold
/// [`Span`]s into it rather than a vector each: with thousands of rules a
/// separate allocation per list meant a cache miss per lookup, while this
/// array is dense (4 bytes per entry) and stays warm.
#[derive(Debug, Default, Clone)]
pub struct RulePool(Vec<RuleIdx>);

impl RulePool {
    fn push(&mut self, rules: &[RuleIdx]) -> Result<Span, IndexOverflow> {
        let start = u32::try_from(self.0.len()).map_err(|_| IndexOverflow)?;
        let len = u32::try_from(rules.len()).map_err(|_| IndexOverflow)?;
        start.checked_add(len).ok_or(IndexOverflow)?;
        self.0.extend_from_slice(rules);
        Ok(Span { start, len })
    }

    #[inline]
    pub fn get(&self, s: Span) -> &[RuleIdx] {
        let (start, end) = (s.start as usize, s.start as usize + s.len as usize);
        self.0.get(start..end).unwrap_or_default()
    }
}

/// Rules of one peer key by server port, while the policy is compiled.
#[derive(Debug, Default, Clone)]
pub struct PortTableBuilder {
    any: Vec<RuleIdx>,
    single: BTreeMap<u16, Vec<RuleIdx>>,
    ranges: Vec<(PortSpec, RuleIdx)>,
}

impl PortTableBuilder {
    /// Rules must be inserted in ascending order.
    pub fn insert(&mut self, ports: &[PortSpec], rule: RuleIdx) {
        if ports.is_empty() {
            self.any.push(rule);
        }
        for p in ports {
            if p.first == p.last {
                let v = self.single.entry(p.first).or_default();
                // A port listed twice by one rule is one candidate.
                if v.last() != Some(&rule) {
                    v.push(rule);
                }
            } else {
                self.ranges.push((*p, rule));
            }
        }
    }

    /// Copies the lists into `pool`. Range lookups are precomputed: the
    /// range bounds split 0..=65535 into intervals, each holding the rules
    /// whose ranges cover it.
    pub fn build(self, pool: &mut RulePool) -> Result<PortTable, IndexOverflow> {
        let any = pool.push(&self.any)?;
        let mut singles = Vec::with_capacity(self.single.len());
        for (port, rules) in &self.single {
            singles.push((*port, pool.push(rules)?));
        }
        let single = match singles.as_slice() {
            [] => Singles::None,
            [(port, span)] => Singles::One(*port, *span),
            _ => Singles::Many(singles.into_boxed_slice()),
        };
        let ranges = if self.ranges.is_empty() {
            None
        } else {
            Some(Box::new(Ranges::build(&self.ranges, pool)?))
        };
        Ok(PortTable {
            any,
            single,
            ranges,
        })
    }
}

/// Single-port lists: most peers have one, kept inline so the lookup reads
/// nothing beyond the table itself.
#[derive(Debug, Default, Clone)]
enum Singles {
    #[default]
    None,
    One(u16, Span),
    /// Sorted by port.
    Many(Box<[(u16, Span)]>),
}

#[derive(Debug, Clone)]
struct Ranges {
    /// Elementary intervals: `covering[i]` holds the rules whose ranges
    /// cover `bounds[i]..bounds[i + 1]`.
    bounds: Box<[u16]>,
    covering: Box<[Span]>,
}

impl Ranges {
    fn build(ranges: &[(PortSpec, RuleIdx)], pool: &mut RulePool) -> Result<Ranges, IndexOverflow> {
        let mut bounds: Vec<u16> = Vec::with_capacity(ranges.len() * 2 + 1);
        bounds.push(0);
        for (p, _) in ranges {
            bounds.push(p.first);
            if let Some(after) = p.last.checked_add(1) {
                bounds.push(after);
            }
        }
        bounds.sort_unstable();
        bounds.dedup();
        let mut covering = vec![Vec::new(); bounds.len()];
        for (p, rule) in ranges {
            let start = bounds.partition_point(|b| *b < p.first);
            for (i, b) in bounds.iter().enumerate().skip(start) {
                if *b > p.last {
                    break;
                }
                covering[i].push(*rule);
            }
        }
        let mut spans = Vec::with_capacity(covering.len());
        for mut c in covering {
            c.sort_unstable();
            c.dedup();
            spans.push(pool.push(&c)?);
        }
        Ok(Ranges {
            bounds: bounds.into_boxed_slice(),
            covering: spans.into_boxed_slice(),
        })
    }
}

/// Rules of one peer key by server port, compiled; the lists live in the
/// direction's [`RulePool`].
#[derive(Debug, Default, Clone)]
pub struct PortTable {
    any: Span,
    single: Singles,
    ranges: Option<Box<Ranges>>,
}

impl PortTable {
    /// Calls `f` with slices of the rules whose ports admit `port`. Each
    /// slice is in ascending rule order, so a caller looking for the first
    /// matching rule can stop early; a rule may appear in several slices.
    #[inline]
    pub fn for_each(&self, pool: &RulePool, port: u16, f: &mut impl FnMut(&[RuleIdx])) {
        if !self.any.is_empty() {
            f(pool.get(self.any));
        }
        match &self.single {
            Singles::None => {}
            Singles::One(p, s) => {
                if *p == port {
                    f(pool.get(*s));
                }
            }
            Singles::Many(v) => {
                if let Ok(i) = v.binary_search_by_key(&port, |(p, _)| *p) {
                    f(pool.get(v[i].1));
                }
            }
        }
        if let Some(r) = &self.ranges {
            let i = r.bounds.partition_point(|b| *b <= port);
            if let Some(s) = i.checked_sub(1).and_then(|i| r.covering.get(i)) {
                f(pool.get(*s));
            }
        }
    }
}

/// Compiles every table of a map into `pool`.
pub fn build_map<K: Eq + std::hash::Hash>(
    m: FastMap<K, PortTableBuilder>,
    pool: &mut RulePool,
) -> Result<FastMap<K, PortTable>, IndexOverflow> {
    let mut out = FastMap::with_capacity_and_hasher(m.len(), Default::default());
    for (k, t) in m {
        out.insert(k, t.build(pool)?);
    }
    Ok(out)
}

/// CIDR → rules, one hash map per prefix length present, for one address
/// family. A lookup probes every length present (at most 33 or 129, usually
/// a handful), so overlapping prefixes all contribute candidates.
#[derive(Debug, Default, Clone)]
pub struct PrefixIndexBuilder {
    /// (prefix length, network bits masked) → rules by port.
    by_len: Vec<(u8, FastMap<u128, PortTableBuilder>)>,
}

impl PrefixIndexBuilder {
    pub fn table(&mut self, bits: u128, len: u8, width: u8) -> &mut PortTableBuilder {
        let key = mask(bits, len, width);
        let i = match self.by_len.iter().position(|(l, _)| *l == len) {
            Some(i) => i,
            None => {
                self.by_len.push((len, FastMap::default()));
                self.by_len.len() - 1
            }
        };
        self.by_len[i].1.entry(key).or_default()
    }

    pub fn build(self, pool: &mut RulePool) -> Result<PrefixIndex, IndexOverflow> {
        let mut by_len = Vec::with_capacity(self.by_len.len());
        for (len, m) in self.by_len {
            by_len.push((len, build_map(m, pool)?));
        }
        by_len.sort_by_key(|(l, _)| std::cmp::Reverse(*l));
        Ok(PrefixIndex { by_len })
    }
}

/// [`PrefixIndexBuilder`] compiled.
#[derive(Debug, Default, Clone)]
pub struct PrefixIndex {
    by_len: Vec<(u8, FastMap<u128, PortTable>)>,
}

impl PrefixIndex {
    #[inline]
    pub fn for_each(
        &self,
        pool: &RulePool,
        bits: u128,
        width: u8,
        port: u16,
        f: &mut impl FnMut(&[RuleIdx]),
    ) {
        for (len, m) in &self.by_len {
            if let Some(t) = m.get(&mask(bits, *len, width)) {
                t.for_each(pool, port, f);
            }
        }
    }
}

#[inline]
fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let shift = u32::from(width - len.min(width));
        (bits >> shift) << shift
    }
}

/// An address as (bits, width) for the prefix index. IPv4-mapped IPv6
/// addresses are judged as the IPv4 address they carry.
#[inline]
pub fn ip_key(ip: IpAddr) -> (u128, u8, bool) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32, true),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (u128::from(u32::from(v4)), 32, true),
            None => (u128::from(a), 128, false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect((t, pool): &(PortTable, RulePool), port: u16) -> Vec<RuleIdx> {
        let mut v = Vec::new();
        t.for_each(pool, port, &mut |rs| v.extend_from_slice(rs));
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn port_table_ranges_and_singles() {
        let mut t = PortTableBuilder::default();
        let r = |s: &str| s.parse::<PortSpec>().unwrap();
        t.insert(&[r("443")], 0);
        t.insert(&[r("8000-8100")], 1);
        t.insert(&[r("8050-9000"), r("22")], 2);
        t.insert(&[], 3);
        t.insert(&[r("1-65535")], 4);
        let mut pool = RulePool::default();
        let t = (t.build(&mut pool).unwrap(), pool);
        assert_eq!(collect(&t, 443), vec![0, 3, 4]);
        assert_eq!(collect(&t, 7999), vec![3, 4]);
        assert_eq!(collect(&t, 8000), vec![1, 3, 4]);
        assert_eq!(collect(&t, 8050), vec![1, 2, 3, 4]);
        assert_eq!(collect(&t, 8100), vec![1, 2, 3, 4]);
        assert_eq!(collect(&t, 8101), vec![2, 3, 4]);
        assert_eq!(collect(&t, 9000), vec![2, 3, 4]);
        assert_eq!(collect(&t, 9001), vec![3, 4]);
        assert_eq!(collect(&t, 22), vec![2, 3, 4]);
        assert_eq!(collect(&t, 65535), vec![3, 4]);
        assert_eq!(collect(&t, 0), vec![3]);
    }

    #[test]
    fn masks() {
        assert_eq!(mask(0xC000_0201, 24, 32), 0xC000_0200);
        assert_eq!(mask(0xC000_0201, 32, 32), 0xC000_0201);
        assert_eq!(mask(u128::MAX, 0, 128), 0);
        assert_eq!(mask(u128::MAX, 128, 128), u128::MAX);
        assert_eq!(mask(u128::MAX, 1, 128), 1u128 << 127);
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn masked_prefixes_spread_over_buckets() {
        // /16 networks differ only in bits 16..32; their hashes must still
        // differ in the low bits that pick a bucket.
        let b = BuildHasherDefault::<FastHasher>::default();
        let low: std::collections::HashSet<u64> =
            (0u128..256).map(|i| b.hash_one(i << 16) & 0xff).collect();
        assert!(low.len() > 128, "only {} distinct low bytes", low.len());
    }
}
