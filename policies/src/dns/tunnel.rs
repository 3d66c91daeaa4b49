//! Heuristics for queries shaped like DNS tunnelling (iodine, dnscat2,
//! exfiltration through subdomains): data encoded into long, random-looking
//! labels, many labels, and record types that carry payloads back (TXT,
//! NULL). Pure; the DNS listener refuses suspicious queries in protect mode
//! when the policy sets `dns.blockTunneling`.

use serde::Serialize;

use super::message::RecordType;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunnelThresholds {
    /// Whole names longer than this are suspicious (legit names rarely pass 100).
    pub max_name_len: usize,
    /// A single label longer than this is suspicious (the limit is 63).
    pub max_label_len: usize,
    /// Labels at least this long are checked for entropy.
    pub entropy_min_len: usize,
    /// Shannon entropy (bits per character) above which such a label looks random.
    pub entropy_bits: f64,
    /// More labels than this, together with a payload record type, is suspicious.
    pub max_labels: usize,
}

impl Default for TunnelThresholds {
    fn default() -> Self {
        TunnelThresholds {
            max_name_len: 120,
            max_label_len: 50,
            entropy_min_len: 24,
            entropy_bits: 3.5,
            max_labels: 8,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "sign", rename_all = "snake_case")]
pub enum TunnelSign {
    LongName { len: usize },
    LongLabel { len: usize },
    HighEntropyLabel { len: usize, bits_per_char: f64 },
    ManyLabels { count: usize },
    PayloadRecordType { qtype: RecordType },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TunnelAssessment {
    pub suspicious: bool,
    pub signs: Vec<TunnelSign>,
}

/// Judges one query. A payload record type alone (TXT for SPF, ACME) or
/// many labels alone (deep service names) is not enough; encoded data is.
pub fn assess_query(name: &str, qtype: RecordType, t: &TunnelThresholds) -> TunnelAssessment {
    let name = name.strip_suffix('.').unwrap_or(name);
    let mut signs = Vec::new();
    if name.len() > t.max_name_len {
        signs.push(TunnelSign::LongName { len: name.len() });
    }
    let labels: Vec<&str> = name.split('.').filter(|l| !l.is_empty()).collect();
    // Only the longest offending label is reported, once per kind.
    if let Some(l) = labels
        .iter()
        .filter(|l| l.len() > t.max_label_len)
        .max_by_key(|l| l.len())
    {
        signs.push(TunnelSign::LongLabel { len: l.len() });
    }
    let random = labels
        .iter()
        .filter(|l| l.len() >= t.entropy_min_len && looks_encoded(l))
        .map(|l| (l.len(), entropy(l)))
        .filter(|(_, bits)| *bits >= t.entropy_bits)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((len, bits)) = random {
        signs.push(TunnelSign::HighEntropyLabel {
            len,
            bits_per_char: (bits * 100.0).round() / 100.0,
        });
    }
    let many = labels.len() > t.max_labels;
    if many {
        signs.push(TunnelSign::ManyLabels {
            count: labels.len(),
        });
    }
    let payload = matches!(qtype, RecordType::Txt | RecordType::Null | RecordType::Any);
    // NULL records carry arbitrary bytes and have no ordinary use by apps.
    let null = qtype == RecordType::Null;
    if payload {
        signs.push(TunnelSign::PayloadRecordType { qtype });
    }
    let strong = signs.iter().any(|s| {
        matches!(
            s,
            TunnelSign::LongName { .. }
                | TunnelSign::LongLabel { .. }
                | TunnelSign::HighEntropyLabel { .. }
        )
    });
    TunnelAssessment {
        suspicious: strong || null || (many && payload),
        signs,
    }
}

/// Entropy alone cannot tell `internal-my-loadbalancer-1234567890` (4.4
/// bits) from base32 data (3.8 bits): encoded data has no word separators
/// and either few vowels (base32, base64) or many digits (hex).
fn looks_encoded(label: &str) -> bool {
    let hyphens = label.bytes().filter(|b| *b == b'-').count();
    let letters = label.bytes().filter(|b| b.is_ascii_alphabetic()).count();
    let vowels = label
        .bytes()
        .filter(|b| {
            matches!(
                b.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            )
        })
        .count();
    let digits = label.bytes().filter(|b| b.is_ascii_digit()).count();
    let few_vowels = letters > 0 && vowels * 4 < letters;
    let many_digits = digits * 10 >= label.len() * 3;
    hyphens <= 1 && (few_vowels || many_digits)
}

/// Shannon entropy in bits per character, case-insensitive (DNS is).
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[usize::from(b.to_ascii_lowercase())] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic base32 "exfiltrated data", as iodine/dnscat2 would send.
    fn base32_label(seed: u64, len: usize) -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ALPHA[(x % 32) as usize] as char
            })
            .collect()
    }

    #[test]
    fn table() {
        let t = TunnelThresholds::default();
        let exfil = format!(
            "{}.{}.t.evil.example",
            base32_label(1, 40),
            base32_label(2, 40)
        );
        let long = format!("{}.example", "a".repeat(56));
        let very_long = format!("{}.example", ["abc"; 40].join("."));
        let cases: Vec<(String, RecordType, bool)> = vec![
            ("api.payments.example".into(), RecordType::A, false),
            (
                "checkout.shop.svc.cluster.local".into(),
                RecordType::Aaaa,
                false,
            ),
            ("_acme-challenge.www.example".into(), RecordType::Txt, false),
            ("example".into(), RecordType::Txt, false),
            (
                "ip-10-0-0-1.eu-west-1.compute.internal".into(),
                RecordType::A,
                false,
            ),
            ("d1a2b3c4d5e6f7.cloudfront.net".into(), RecordType::A, false),
            (
                "internal-my-loadbalancer-1234567890.eu-west-1.elb.amazonaws.com".into(),
                RecordType::A,
                false,
            ),
            (
                "k8s-default-ingress-abcdef1234-1234567890.elb.example".into(),
                RecordType::A,
                false,
            ),
            (
                "my-service-name-production-canary.example".into(),
                RecordType::A,
                false,
            ),
            (
                "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6.dnscat.example".into(),
                RecordType::Cname,
                true,
            ),
            ("x.example".into(), RecordType::Null, true),
            ("a.b.c.d.e.f.g.h.i.j.example".into(), RecordType::A, false),
            ("a.b.c.d.e.f.g.h.i.j.example".into(), RecordType::Txt, true),
            (exfil.clone(), RecordType::A, true),
            (exfil, RecordType::Txt, true),
            (
                format!("{}.evil.example", base32_label(3, 30)),
                RecordType::Null,
                true,
            ),
            (long, RecordType::A, true),
            (very_long, RecordType::A, true),
        ];
        for (name, qtype, want) in cases {
            let a = assess_query(&name, qtype, &t);
            assert_eq!(a.suspicious, want, "{name} {qtype:?}: {:?}", a.signs);
        }
    }

    #[test]
    fn signs_say_why() {
        let t = TunnelThresholds::default();
        let a = assess_query(
            &format!("{}.x.example.", base32_label(9, 60)),
            RecordType::Txt,
            &t,
        );
        assert!(a
            .signs
            .iter()
            .any(|s| matches!(s, TunnelSign::LongLabel { len: 60 })));
        assert!(a
            .signs
            .iter()
            .any(|s| matches!(s, TunnelSign::HighEntropyLabel { len: 60, .. })));
        assert!(a.signs.contains(&TunnelSign::PayloadRecordType {
            qtype: RecordType::Txt
        }));
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("high_entropy_label"), "{json}");
    }

    #[test]
    fn entropy_values() {
        assert_eq!(entropy(""), 0.0);
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
        assert!((entropy("AbCd") - 2.0).abs() < 1e-9);
        assert!(entropy(&base32_label(5, 64)) > 4.4);
    }
}
