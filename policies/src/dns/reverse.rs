//! Reverse-lookup names (`7.2.0.192.in-addr.arpa`, the 32-nibble
//! `….ip6.arpa`) back to the address they ask about, so a PTR query can be
//! judged by the address like a connection would be. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address a full reverse name asks about; `None` for any other name,
/// including partial reverse names (`2.0.192.in-addr.arpa`, zone lookups),
/// which name a network rather than an address. Case and a trailing dot are
/// ignored.
pub fn reverse_name_addr(name: &str) -> Option<IpAddr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let lower = name.to_ascii_lowercase();
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        // Labels are least significant first.
        for (i, l) in labels.iter().rev().enumerate() {
            // `u8::from_str` accepts "+1" and leading zeros; a reverse
            // name never has either, so only plain decimal is taken.
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if l.len() > 1 && l.starts_with('0') {
                return None;
            }
            octets[i] = l.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = lower.strip_suffix(".ip6.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 32 {
            return None;
        }
        let mut bits: u128 = 0;
        for l in labels.iter().rev() {
            let &[c] = l.as_bytes() else { return None };
            let nibble = (c as char).to_digit(16)?;
            bits = (bits << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bits)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_reverse_names_only() {
        let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        for (name, want) in [
            ("7.2.0.192.in-addr.arpa", Some("192.0.2.7")),
            ("7.2.0.192.IN-ADDR.ARPA.", Some("192.0.2.7")),
            ("255.113.0.203.in-addr.arpa", Some("203.0.113.255")),
            (v6, Some("2001:db8::1")),
            // Partial names, bad octets, wrong lengths, other zones.
            ("2.0.192.in-addr.arpa", None),
            ("1.7.2.0.192.in-addr.arpa", None),
            ("256.2.0.192.in-addr.arpa", None),
            ("07.2.0.192.in-addr.arpa", None),
            ("+7.2.0.192.in-addr.arpa", None),
            ("x.2.0.192.in-addr.arpa", None),
            ("..0.192.in-addr.arpa", None),
            ("in-addr.arpa", None),
            ("8.b.d.0.1.0.0.2.ip6.arpa", None),
            ("7.2.0.192.in-addr.arpa.example", None),
            ("api.example", None),
            ("", None),
        ] {
            let want: Option<IpAddr> = want.map(|w| w.parse().unwrap());
            assert_eq!(reverse_name_addr(name), want, "{name}");
        }
        let bad_nibble = v6.replacen('1', "g", 1);
        assert_eq!(reverse_name_addr(&bad_nibble), None);
        let two_chars = v6.replacen("1.", "10.", 1);
        assert_eq!(reverse_name_addr(&two_chars), None);
    }

    fn reverse_name(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(a) => {
                let [a, b, c, d] = a.octets();
                format!("{d}.{c}.{b}.{a}.in-addr.arpa")
            }
            IpAddr::V6(a) => {
                let hex = format!("{:032x}", u128::from(a));
                let mut labels: Vec<String> = hex.chars().map(String::from).collect();
                labels.reverse();
                format!("{}.ip6.arpa", labels.join("."))
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn every_address_round_trips(v4 in proptest::prelude::any::<u32>(), v6 in proptest::prelude::any::<u128>()) {
            for ip in [IpAddr::V4(Ipv4Addr::from(v4)), IpAddr::V6(Ipv6Addr::from(v6))] {
                proptest::prop_assert_eq!(reverse_name_addr(&reverse_name(ip)), Some(ip));
            }
        }

        #[test]
        fn arbitrary_names_never_panic(name in "\\PC{0,80}(\\.in-addr\\.arpa|\\.ip6\\.arpa)?") {
            let _ = reverse_name_addr(&name);
        }
    }
}
