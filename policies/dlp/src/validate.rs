//! Checksums and structural checks that turn a pattern match into a finding.
//! Each validator is a pure function over the candidate's bytes.

/// Luhn (mod 10) over ASCII digits; non-digits are ignored.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    let mut n = 0;
    for &b in digits.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
        n += 1;
    }
    n > 1 && matches!(sum % 10, 0)
}

/// Card brand of a digit string (digits only), by IIN range and length.
pub fn card_brand(d: &[u8]) -> Option<&'static str> {
    let len = d.len();
    if !(12..=19).contains(&len) || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let p = |n: usize| -> u32 {
        d[..n]
            .iter()
            .fold(0u32, |a, &b| a * 10 + u32::from(b - b'0'))
    };
    let (p1, p2, p3, p4, p6) = (p(1), p(2), p(3), p(4), p(6));
    let brand = if p1 == 4 && matches!(len, 13 | 16 | 19) {
        "visa"
    } else if ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 {
        "mastercard"
    } else if (p2 == 34 || p2 == 37) && len == 15 {
        "amex"
    } else if (p4 == 6011
        || (644..=649).contains(&p3)
        || p2 == 65
        || (622126..=622925).contains(&p6))
        && (16..=19).contains(&len)
    {
        "discover"
    } else if (3528..=3589).contains(&p4) && (16..=19).contains(&len) {
        "jcb"
    } else if ((300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39)
        && (14..=19).contains(&len)
    {
        "diners"
    } else if p2 == 62 && (16..=19).contains(&len) {
        "unionpay"
    } else if matches!(
        p4,
        5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763
    ) && (12..=19).contains(&len)
    {
        "maestro"
    } else if (2200..=2204).contains(&p4) && (16..=19).contains(&len) {
        "mir"
    } else {
        return None;
    };
    Some(brand)
}

/// A syntactically valid, issuable US SSN (9 digits, no separators) that is
/// not a well-known sample or placeholder.
pub fn ssn(d: &[u8]) -> bool {
    if d.len() != 9 || !d.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num =
        |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, &b| a * 10 + u32::from(b - b'0'));
    let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
    if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
        return false;
    }
    const SAMPLES: [&[u8]; 6] = [
        b"078051120",
        b"219099999",
        b"123456789",
        b"457555462",
        b"987654320",
        b"111223333",
    ];
    if SAMPLES.contains(&d) {
        return false;
    }
    // Repeated digits (111-11-1111) are placeholders, not people.
    !d.iter().all(|&b| b == d[0])
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// Registered IBAN length for a country code.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| c.as_slice() == country)
        .map(|&(_, l)| l)
}

/// ISO 7064 mod 97-10 over an alphanumeric string in IBAN order
/// (the first four characters moved to the end); letters count as 10..35.
pub fn mod97(s: &[u8]) -> bool {
    if s.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &b in s[4..].iter().chain(&s[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            b'a'..=b'z' => u32::from(b - b'a') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

/// A compact IBAN (no spaces): country in the table, right length, check
/// digits 02..98, alphanumeric BBAN, mod-97 passes.
pub fn iban(s: &[u8]) -> bool {
    if s.len() < 15
        || !s[..2].iter().all(u8::is_ascii_uppercase)
        || !s[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    if iban_length(&s[..2]) != Some(s.len()) {
        return false;
    }
    s[4..]
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && mod97(s)
}

/// Shannon entropy in bits per byte.
pub fn entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Documentation placeholders and dummies: `…EXAMPLE`, `xxxx…`, long runs of
/// one character, counting sequences.
pub fn is_placeholder(s: &[u8]) -> bool {
    let lower: Vec<u8> = s.iter().map(u8::to_ascii_lowercase).collect();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if has(b"example") || has(b"xxxxxx") || has(b"0123456789") || has(b"abcdefghij") || has(b"your")
    {
        return true;
    }
    let mut run = 1;
    for w in s.windows(2) {
        run = if w[0] == w[1] { run + 1 } else { 1 };
        if run >= 8 {
            return true;
        }
    }
    false
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Base62 of a CRC32, left-padded to 6 characters (GitHub token checksum).
pub fn base62_crc6(n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    let mut v = n;
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(v % 62) as usize];
        v /= 62;
    }
    out
}

/// GitHub classic token (`ghp_` + 30 random + 6 checksum): the checksum is
/// the CRC32 of the random part in base62.
pub fn github_checksum(token: &[u8]) -> bool {
    if token.len() != 40 || token[3] != b'_' {
        return false;
    }
    let body = &token[4..34];
    let sum = &token[34..40];
    body.iter().all(u8::is_ascii_alphanumeric) && base62_crc6(crc32fast::hash(body)) == *sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_known_values() {
        assert!(luhn(b"4111111111111111"));
        assert!(luhn(b"4111 1111 1111 1111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"378282246310005"));
    }

    #[test]
    fn brands() {
        assert_eq!(card_brand(b"4111111111111111"), Some("visa"));
        assert_eq!(card_brand(b"2221000000000009"), Some("mastercard"));
        assert_eq!(card_brand(b"378282246310005"), Some("amex"));
        assert_eq!(card_brand(b"6011111111111117"), Some("discover"));
        assert_eq!(card_brand(b"3530111333300000"), Some("jcb"));
        assert_eq!(card_brand(b"30569309025904"), Some("diners"));
        assert_eq!(card_brand(b"6200000000000005"), Some("unionpay"));
        assert_eq!(card_brand(b"6759649826438453"), Some("maestro"));
        assert_eq!(card_brand(b"1700000000000"), None);
        assert_eq!(
            card_brand(b"411111111111111"),
            None,
            "visa is never 15 long"
        );
    }

    #[test]
    fn ssn_rules() {
        assert!(ssn(b"536225412"));
        for bad in [
            &b"000123456"[..],
            b"666123456",
            b"912345678",
            b"123001234",
            b"123450000",
            b"078051120",
            b"219099999",
            b"123456789",
            b"222222222",
        ] {
            assert!(!ssn(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn iban_checks() {
        assert!(iban(b"DE89370400440532013000"));
        assert!(iban(b"GB82WEST12345698765432"));
        assert!(!iban(b"GB82WEST12345698765433"));
        assert!(!iban(b"DE8937040044053201300"), "wrong length");
        assert!(!iban(b"ZZ89370400440532013000"), "unknown country");
    }

    #[test]
    fn github_checksum_roundtrip() {
        let body = b"aBcDeFgHiJkLmNoPqRsTuVwXyZ0123";
        let mut tok = b"ghp_".to_vec();
        tok.extend_from_slice(body);
        tok.extend_from_slice(&base62_crc6(crc32fast::hash(body)));
        assert!(github_checksum(&tok));
        let last = tok.len() - 1;
        tok[last] = if tok[last] == b'A' { b'B' } else { b'A' };
        assert!(!github_checksum(&tok));
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder(b"AKIAIOSFODNN7EXAMPLE"));
        assert!(is_placeholder(b"sk_live_xxxxxxxxxxxxxxxxxxxxxxxx"));
        assert!(!is_placeholder(b"AKIA2E0A8F3B244C9986"));
        assert!(entropy(b"aaaa") < 0.1 && entropy(b"abcd") > 1.9);
    }
}
