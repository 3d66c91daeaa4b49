//! `@pm`/`@pmFromFile` phrase matching: the Aho-Corasick automaton behind a
//! start filter.
//!
//! Most values a phrase set is run on contain none of its phrases, and the
//! automaton's search costs ~400 instructions even on a 20-byte value (call
//! set-up, then the NFA's transitions byte by byte). The filter answers
//! "no phrase can start anywhere in this value" in a few instructions a
//! byte: each phrase's first three bytes (or all of a shorter phrase) set a
//! bit under a hash of their bytes with bit 5 set (`A` and `a` alike, so a
//! value byte equal to a phrase byte ASCII case-insensitively has the same
//! folded form). A value none of whose positions hits a bit cannot match;
//! any hit (a real start or a collision) runs the automaton on the whole
//! value as before, so the result — and the reported match — is the
//! automaton's.

use aho_corasick::{AhoCorasick, Match};

/// A compiled `@pm` phrase set.
#[derive(Debug)]
pub struct PhraseMatcher {
    ac: AhoCorasick,
    /// Bit per hash of a folded 3-byte phrase start.
    start3: Box<[u64]>,
    /// `start3` has `1 << bits` bits.
    bits: u32,
    /// Folded byte → a phrase of one byte is that byte.
    one: Box<[bool; 256]>,
    /// Folded byte pair `(a << 8) | b` → a phrase of two bytes is that pair.
    two: Box<[u64]>,
    /// Whether `one` or `two` hold anything (the scan skips them otherwise).
    short: bool,
}

/// ASCII case folding that is a function of the byte alone: bit 5 set.
#[inline(always)]
fn fold(c: u8) -> u32 {
    u32::from(c | 0x20)
}

#[inline(always)]
fn hash3(key: u32, bits: u32) -> usize {
    (key.wrapping_mul(0x9E37_79B1) >> (32 - bits)) as usize
}

#[inline(always)]
fn test(set: &[u64], i: usize) -> bool {
    set[i >> 6] & (1 << (i & 63)) != 0
}

fn set(set: &mut [u64], i: usize) {
    set[i >> 6] |= 1 << (i & 63);
}

impl PhraseMatcher {
    /// Builds the ASCII case-insensitive automaton and the filter of
    /// `phrases` (none may be empty).
    pub fn new(phrases: &[String]) -> Result<PhraseMatcher, String> {
        if phrases.is_empty() {
            return Err("@pm needs at least one phrase".into());
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(phrases)
            .map_err(|e| format!("cannot build phrase matcher: {e}"))?;
        // ~64 bits per phrase start keeps collisions rare (≤ 1/64 a
        // position) and small sets' tables small.
        let bits = (phrases.len() * 64)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(9, 16);
        let mut start3 = vec![0u64; (1usize << bits) / 64].into_boxed_slice();
        let mut one = Box::new([false; 256]);
        let mut two = vec![0u64; (1 << 16) / 64].into_boxed_slice();
        let mut short = false;
        for p in phrases {
            match p.as_bytes() {
                [] => return Err("@pm phrase is empty".into()),
                [a] => {
                    one[fold(*a) as usize] = true;
                    short = true;
                }
                [a, b] => {
                    set(&mut two, (fold(*a) << 8 | fold(*b)) as usize);
                    short = true;
                }
                [a, b, c, ..] => {
                    let key = fold(*a) << 16 | fold(*b) << 8 | fold(*c);
                    set(&mut start3, hash3(key, bits));
                }
            }
        }
        Ok(PhraseMatcher {
            ac,
            start3,
            bits,
            one,
            two,
            short,
        })
    }

    /// The automaton's first match in `v` (standard semantics), as
    /// `AhoCorasick::find`.
    pub fn find(&self, v: &[u8]) -> Option<Match> {
        if !self.may_match(v) {
            return None;
        }
        self.ac.find(v)
    }

    /// False only when no phrase starts at any position of `v`.
    fn may_match(&self, v: &[u8]) -> bool {
        // The rolling key holds the last three folded bytes; before the
        // third byte its missing bytes are zero, which no folded phrase byte
        // is, so those positions can only hit by collision (harmless).
        let mut key: u32 = 0;
        if self.short {
            for &c in v {
                let f = fold(c);
                key = (key << 8 | f) & 0xFF_FFFF;
                if self.one[f as usize]
                    || test(&self.two, (key & 0xFFFF) as usize)
                    || test(&self.start3, hash3(key, self.bits))
                {
                    return true;
                }
            }
        } else {
            for &c in v {
                key = (key << 8 | fold(c)) & 0xFF_FFFF;
                if test(&self.start3, hash3(key, self.bits)) {
                    return true;
                }
            }
        }
        // A phrase of three bytes or more starting in the last two bytes
        // cannot fit; shorter phrases there were checked above.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn matcher(ps: &[&str]) -> PhraseMatcher {
        PhraseMatcher::new(&ps.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn finds_phrases_case_insensitively_and_rejects_others() {
        let m = matcher(&["etc/passwd", "/bin/sh", "ab", "x"]);
        let hit = m.find(b"GET /ETC/Passwd").unwrap();
        assert_eq!((hit.start(), hit.end()), (5, 15));
        assert!(m.find(b"cat /BIN/SH now").is_some());
        assert!(m.find(b"zAB").is_some());
        assert!(m.find(b"X").is_some());
        assert!(m.find(b"etc/passw").is_none());
        assert!(m.find(b"").is_none());
        assert!(matcher(&["passwd"]).find(b"pass").is_none());
        assert!(PhraseMatcher::new(&[]).is_err());
        assert!(PhraseMatcher::new(&["a".into(), String::new()]).is_err());
    }

    fn phrase() -> impl Strategy<Value = String> {
        // Letters in both cases and bytes whose bit 5 differs from a
        // letter's (`@`, `[`, `` ` ``), so folding collisions are exercised.
        proptest::string::string_regex("[aAbB@`\\[{/.é]{1,5}").unwrap()
    }

    proptest! {
        #[test]
        fn filtered_find_is_the_automatons_find(
            phrases in proptest::collection::vec(phrase(), 1..20),
            value in proptest::string::string_regex("[aAbB@`\\[{/. é]{0,40}").unwrap(),
        ) {
            let m = PhraseMatcher::new(&phrases).unwrap();
            let plain = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&phrases)
                .unwrap();
            prop_assert_eq!(m.find(value.as_bytes()), plain.find(value.as_bytes()));
        }
    }
}
