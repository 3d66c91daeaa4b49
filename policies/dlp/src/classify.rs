//! Byte classification into bitmaps (one bit per byte, 64 bytes per word),
//! so the scanner finds digit runs and base64-alphabet runs with a few word
//! operations instead of a branch per byte. SSE2 on x86_64 (always present
//! there), a scalar loop elsewhere.

/// Per-byte class bitmaps of one buffer.
#[derive(Default)]
pub(crate) struct Masks {
    /// `[0-9]`
    pub digit: Vec<u64>,
    /// `[A-Za-z0-9+/_-]`: the union of both base64 alphabets, no padding.
    pub b64: Vec<u64>,
}

impl Masks {
    pub fn compute(&mut self, buf: &[u8]) {
        let words = buf.len().div_ceil(64);
        self.digit.clear();
        self.b64.clear();
        self.digit.reserve(words + 1);
        self.b64.reserve(words + 1);
        let mut chunks = buf.chunks_exact(64);
        for c in &mut chunks {
            let Ok(block) = <&[u8; 64]>::try_from(c) else {
                break;
            };
            let (d, b) = classify64(block);
            self.digit.push(d);
            self.b64.push(b);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut block = [0u8; 64];
            block[..rest.len()].copy_from_slice(rest);
            let (d, b) = classify64(&block);
            // Zero padding is neither class, so no mask fix-up is needed.
            self.digit.push(d);
            self.b64.push(b);
        }
        // A trailing zero word lets callers read `w + 1` without a bound check.
        self.digit.push(0);
        self.b64.push(0);
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify64(block: &[u8; 64]) -> (u64, u64) {
    let mut d = 0u64;
    let mut b = 0u64;
    for i in 0..4 {
        let (dd, bb) = sse2::classify16(&block[i * 16..i * 16 + 16]);
        d |= u64::from(dd) << (i * 16);
        b |= u64::from(bb) << (i * 16);
    }
    (d, b)
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// Digit and base64-alphabet bits of 16 bytes.
    #[inline(always)]
    pub fn classify16(s: &[u8]) -> (u16, u16) {
        debug_assert_eq!(s.len(), 16);
        // SAFETY: SSE2 is part of the x86_64 baseline, and the load reads
        // exactly the 16 bytes of `s` (unaligned load).
        unsafe {
            let v = _mm_loadu_si128(s.as_ptr().cast());
            let in_range = |x: __m128i, span: i8| {
                let limit = _mm_set1_epi8(span);
                _mm_cmpeq_epi8(_mm_min_epu8(x, limit), x)
            };
            let digit = in_range(_mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8)), 9);
            let lower = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let alpha = in_range(_mm_sub_epi8(lower, _mm_set1_epi8(b'a' as i8)), 25);
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let special = _mm_or_si128(
                _mm_or_si128(eq(b'+'), eq(b'/')),
                _mm_or_si128(eq(b'-'), eq(b'_')),
            );
            let b64 = _mm_or_si128(_mm_or_si128(digit, alpha), special);
            (
                _mm_movemask_epi8(digit) as u16,
                _mm_movemask_epi8(b64) as u16,
            )
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn classify64(block: &[u8; 64]) -> (u64, u64) {
    let mut d = 0u64;
    let mut b = 0u64;
    for (i, &c) in block.iter().enumerate() {
        d |= u64::from(c.is_ascii_digit()) << i;
        b |= u64::from(is_b64(c)) << i;
    }
    (d, b)
}

/// Base64 alphabet byte (either alphabet, no padding).
pub(crate) fn is_b64(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'-' | b'_')
}

/// Positions (within word `w`'s 64 bits) where `MIN` consecutive set bits
/// begin, looking into the next word for runs that cross the boundary.
/// `MIN` is a power of two no greater than 32.
#[inline(always)]
pub(crate) fn run_starts<const MIN: u32>(words: &[u64], w: usize) -> u64 {
    let cur = words[w];
    if cur == 0 {
        return 0;
    }
    let next = words.get(w + 1).copied().unwrap_or(0);
    let mut r = u128::from(cur) | (u128::from(next) << 64);
    if MIN > 1 {
        r &= r >> 1;
    }
    if MIN > 2 {
        r &= r >> 2;
    }
    if MIN > 4 {
        r &= r >> 4;
    }
    if MIN > 8 {
        r &= r >> 8;
    }
    if MIN > 16 {
        r &= r >> 16;
    }
    r as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_the_scalar_definition() {
        let buf: Vec<u8> = (0..=255u8).chain(b"abc123+/-_=".iter().copied()).collect();
        let mut m = Masks::default();
        m.compute(&buf);
        for (i, &c) in buf.iter().enumerate() {
            let bit = |v: &Vec<u64>| v[i / 64] >> (i % 64) & 1 == 1;
            assert_eq!(bit(&m.digit), c.is_ascii_digit(), "digit {c}");
            assert_eq!(bit(&m.b64), is_b64(c), "b64 {c}");
        }
    }

    #[test]
    fn finds_runs_across_words() {
        let mut buf = vec![b' '; 128];
        buf[60..70].copy_from_slice(b"1234567890");
        let mut m = Masks::default();
        m.compute(&buf);
        let s = run_starts::<8>(&m.digit, 0);
        assert_eq!(s.trailing_zeros(), 60);
        assert_eq!(run_starts::<16>(&m.digit, 0), 0);
    }
}
