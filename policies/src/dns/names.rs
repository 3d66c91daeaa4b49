//! What the pod's resolver answered: name → addresses with expiry, and the
//! reverse (address → names) that fills `Flow::peer_names`. Bounded: when
//! full, expired entries go first, then those closest to expiry.
//!
//! Time is passed in (`now: Instant`) so that tests need no clock.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::message::Resolution;
use crate::matcher::names::normalise;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameTableConfig {
    /// Most (name, address) pairs kept.
    pub max_entries: usize,
    /// TTLs below this are raised: clients connect right after a TTL-0 answer.
    pub min_ttl: Duration,
    /// TTLs above this are lowered, so stale answers age out.
    pub max_ttl: Duration,
}

impl Default for NameTableConfig {
    fn default() -> Self {
        NameTableConfig {
            max_entries: 65_536,
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug)]
pub struct NameTable {
    config: NameTableConfig,
    /// (name, ip) → (expiry, sequence number in `by_expiry`).
    entries: HashMap<(String, IpAddr), (Instant, u64)>,
    by_ip: HashMap<IpAddr, Vec<String>>,
    by_name: HashMap<String, Vec<IpAddr>>,
    by_expiry: BTreeSet<(Instant, u64, String, IpAddr)>,
    seq: u64,
    evicted: u64,
}

impl NameTable {
    pub fn new(config: NameTableConfig) -> NameTable {
        NameTable {
            config,
            entries: HashMap::new(),
            by_ip: HashMap::new(),
            by_name: HashMap::new(),
            by_expiry: BTreeSet::new(),
            seq: 0,
            evicted: 0,
        }
    }

    /// Number of (name, address) pairs held, expired ones included until purged.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Live entries removed to make room (for a metric).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records that the resolver returned `ip` for `name` with `ttl`.
    /// A repeated answer extends (or shortens) the expiry to the new TTL.
    pub fn record(&mut self, name: &str, ip: IpAddr, ttl: Duration, now: Instant) {
        if self.config.max_entries == 0 {
            return;
        }
        let name = normalise(name).into_owned();
        let ttl = ttl.clamp(
            self.config.min_ttl,
            self.config.max_ttl.max(self.config.min_ttl),
        );
        let expiry = now.checked_add(ttl).unwrap_or(now);
        let key = (name, ip);
        if let Some((old_expiry, old_seq)) = self.entries.get(&key).copied() {
            self.by_expiry
                .remove(&(old_expiry, old_seq, key.0.clone(), ip));
        } else {
            if self.entries.len() >= self.config.max_entries {
                self.purge_expired(now);
            }
            while self.entries.len() >= self.config.max_entries {
                let Some(first) = self.by_expiry.first().cloned() else {
                    break;
                };
                self.remove(&first.2, first.3, first.0, first.1);
                self.evicted += 1;
            }
            self.by_ip.entry(ip).or_default().push(key.0.clone());
            self.by_name.entry(key.0.clone()).or_default().push(ip);
        }
        self.seq += 1;
        self.by_expiry.insert((expiry, self.seq, key.0.clone(), ip));
        self.entries.insert(key, (expiry, self.seq));
    }

    /// Records every address of a parsed answer under every name of its chain.
    pub fn record_resolution(&mut self, r: &Resolution, now: Instant) {
        for name in &r.names {
            self.record(name, r.ip, Duration::from_secs(u64::from(r.ttl)), now);
        }
    }

    /// Names the resolver returned `ip` for, still within their TTL. This is
    /// what `Flow::peer_names` holds. IPv4-mapped IPv6 is looked up as IPv4.
    pub fn names_for(&self, ip: IpAddr, now: Instant) -> Vec<String> {
        let ip = canonical(ip);
        let Some(names) = self.by_ip.get(&ip) else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|n| self.live(n, ip, now))
            .cloned()
            .collect()
    }

    /// Live addresses of `name`.
    pub fn addresses_of(&self, name: &str, now: Instant) -> Vec<IpAddr> {
        let name = normalise(name);
        let Some(ips) = self.by_name.get(name.as_ref()) else {
            return Vec::new();
        };
        ips.iter()
            .copied()
            .filter(|ip| self.live(&name, *ip, now))
            .collect()
    }

    fn live(&self, name: &str, ip: IpAddr, now: Instant) -> bool {
        // Lookup by owned key; names are short and this is not per packet.
        self.entries
            .get(&(name.to_string(), ip))
            .is_some_and(|(expiry, _)| *expiry > now)
    }

    /// Live (name, address, time left) triples, soonest expiry first: what
    /// a restart needs to keep FQDN rules working without new queries.
    pub fn live_entries(&self, now: Instant) -> Vec<(String, IpAddr, Duration)> {
        self.by_expiry
            .iter()
            .filter(|(expiry, ..)| *expiry > now)
            .map(|(expiry, _, name, ip)| (name.clone(), *ip, *expiry - now))
            .collect()
    }

    /// Puts back an entry saved with [`NameTable::live_entries`]. Unlike
    /// [`NameTable::record`] the time left is not raised to `min_ttl`: a
    /// restored answer must not outlive what the resolver granted.
    pub fn restore(&mut self, name: &str, ip: IpAddr, left: Duration, now: Instant) {
        if left.is_zero() {
            return;
        }
        let min = self.config.min_ttl;
        self.config.min_ttl = Duration::ZERO;
        self.record(name, ip, left, now);
        self.config.min_ttl = min;
    }

    /// Drops expired entries; returns how many.
    pub fn purge_expired(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while let Some(first) = self.by_expiry.first().cloned() {
            if first.0 > now {
                break;
            }
            self.remove(&first.2, first.3, first.0, first.1);
            n += 1;
        }
        n
    }

    fn remove(&mut self, name: &str, ip: IpAddr, expiry: Instant, seq: u64) {
        self.by_expiry.remove(&(expiry, seq, name.to_string(), ip));
        self.entries.remove(&(name.to_string(), ip));
        if let Some(v) = self.by_ip.get_mut(&ip) {
            v.retain(|n| n != name);
            if v.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        if let Some(v) = self.by_name.get_mut(name) {
            v.retain(|i| *i != ip);
            if v.is_empty() {
                self.by_name.remove(name);
            }
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: usize) -> NameTableConfig {
        NameTableConfig {
            max_entries: max,
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn records_and_expires() {
        let t0 = Instant::now();
        let mut t = NameTable::new(cfg(100));
        t.record(
            "API.Example.",
            ip("198.51.100.1"),
            Duration::from_secs(60),
            t0,
        );
        t.record(
            "other.example",
            ip("198.51.100.1"),
            Duration::from_secs(10),
            t0,
        );
        t.record(
            "api.example",
            ip("2001:db8::1"),
            Duration::from_secs(60),
            t0,
        );
        assert_eq!(
            t.names_for(ip("198.51.100.1"), t0),
            vec!["api.example", "other.example"]
        );
        assert_eq!(t.names_for(ip("::ffff:198.51.100.1"), t0).len(), 2);
        assert_eq!(
            t.addresses_of("api.example", t0),
            vec![ip("198.51.100.1"), ip("2001:db8::1")]
        );
        let t11 = t0 + Duration::from_secs(11);
        assert_eq!(t.names_for(ip("198.51.100.1"), t11), vec!["api.example"]);
        assert!(t.names_for(ip("192.0.2.1"), t0).is_empty());
        assert_eq!(t.purge_expired(t11), 1);
        assert_eq!(t.len(), 2);
        assert!(t
            .names_for(ip("198.51.100.1"), t0 + Duration::from_secs(61))
            .is_empty());
    }

    #[test]
    fn ttl_is_clamped_and_refreshed() {
        let t0 = Instant::now();
        let mut t = NameTable::new(cfg(100));
        t.record("a.example", ip("192.0.2.1"), Duration::ZERO, t0);
        // TTL 0 is raised to min_ttl (5 s).
        assert_eq!(
            t.names_for(ip("192.0.2.1"), t0 + Duration::from_secs(4))
                .len(),
            1
        );
        assert!(t
            .names_for(ip("192.0.2.1"), t0 + Duration::from_secs(6))
            .is_empty());
        // Huge TTLs are capped at max_ttl.
        t.record(
            "b.example",
            ip("192.0.2.2"),
            Duration::from_secs(u64::MAX / 4),
            t0,
        );
        assert!(t
            .names_for(ip("192.0.2.2"), t0 + Duration::from_secs(3601))
            .is_empty());
        // A fresh answer extends the entry without duplicating it.
        t.record(
            "a.example",
            ip("192.0.2.1"),
            Duration::from_secs(100),
            t0 + Duration::from_secs(4),
        );
        assert_eq!(
            t.names_for(ip("192.0.2.1"), t0 + Duration::from_secs(50)),
            vec!["a.example"]
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn bounded_with_eviction_of_soonest_expiry() {
        let t0 = Instant::now();
        let mut t = NameTable::new(cfg(3));
        t.record("a.example", ip("192.0.2.1"), Duration::from_secs(100), t0);
        t.record("b.example", ip("192.0.2.2"), Duration::from_secs(10), t0);
        t.record("c.example", ip("192.0.2.3"), Duration::from_secs(200), t0);
        t.record("d.example", ip("192.0.2.4"), Duration::from_secs(300), t0);
        assert_eq!(t.len(), 3);
        assert_eq!(t.evicted(), 1);
        assert!(
            t.names_for(ip("192.0.2.2"), t0).is_empty(),
            "soonest expiry evicted"
        );
        // Expired entries are dropped before live ones are evicted.
        let later = t0 + Duration::from_secs(150);
        t.record(
            "e.example",
            ip("192.0.2.5"),
            Duration::from_secs(300),
            later,
        );
        assert_eq!(t.evicted(), 1);
        assert_eq!(t.names_for(ip("192.0.2.3"), later), vec!["c.example"]);
        assert_eq!(t.names_for(ip("192.0.2.5"), later), vec!["e.example"]);
    }

    #[test]
    fn live_entries_round_trip_without_extending_ttls() {
        let t0 = Instant::now();
        let mut t = NameTable::new(cfg(10));
        t.record("a.example", ip("192.0.2.1"), Duration::from_secs(100), t0);
        t.record("b.example", ip("2001:db8::1"), Duration::from_secs(10), t0);
        let later = t0 + Duration::from_secs(8);
        let saved = t.live_entries(later);
        assert_eq!(
            saved,
            vec![
                (
                    "b.example".into(),
                    ip("2001:db8::1"),
                    Duration::from_secs(2)
                ),
                ("a.example".into(), ip("192.0.2.1"), Duration::from_secs(92)),
            ]
        );
        let t1 = Instant::now();
        let mut back = NameTable::new(cfg(10));
        for (n, i, left) in &saved {
            back.restore(n, *i, *left, t1);
        }
        back.restore("gone.example", ip("192.0.2.9"), Duration::ZERO, t1);
        assert_eq!(back.len(), 2);
        assert_eq!(back.names_for(ip("192.0.2.1"), t1), vec!["a.example"]);
        // 2 s left stays 2 s (min_ttl is 5 s for fresh answers).
        assert!(back
            .names_for(ip("2001:db8::1"), t1 + Duration::from_secs(3))
            .is_empty());
    }

    #[test]
    fn records_whole_chains() {
        let t0 = Instant::now();
        let mut t = NameTable::new(cfg(10));
        let r = Resolution {
            ip: ip("198.51.100.9"),
            ttl: 60,
            names: vec!["api.example".into(), "edge.cdn.example".into()],
        };
        t.record_resolution(&r, t0);
        assert_eq!(
            t.names_for(ip("198.51.100.9"), t0),
            vec!["api.example", "edge.cdn.example"]
        );
    }
}
