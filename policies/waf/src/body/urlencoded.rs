//! `application/x-www-form-urlencoded` and query strings, decoded as ModSecurity does.

use super::Pair;
use crate::transform::url_decode;

/// Parses `a=1&b=2`; returns the pairs and whether any `%` escape was invalid.
pub fn parse(s: &[u8], sep: u8) -> (Vec<Pair>, bool) {
    let mut out = Vec::new();
    let mut invalid = false;
    for part in s.split(|&c| c == sep) {
        if part.is_empty() {
            continue;
        }
        let (n, v) = match part.iter().position(|&c| c == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        invalid |=
            crate::operator::invalid_url_encoding(n) || crate::operator::invalid_url_encoding(v);
        let name = String::from_utf8_lossy(&url_decode(n, false)).into_owned();
        out.push((name, url_decode(v, false)));
    }
    (out, invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs() {
        let (p, bad) = parse(b"a=1&b=x+y%21&c&&d=%zz", b'&');
        assert_eq!(p.len(), 4);
        assert_eq!(p[1], ("b".to_string(), b"x y!".to_vec()));
        assert_eq!(p[2], ("c".to_string(), Vec::new()));
        assert!(bad);
    }
}
