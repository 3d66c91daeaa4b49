//! Pure, bounded decoders. Each returns the decoded bytes and, where the
//! encoding allows it, a map from decoded positions back to encoded ones so a
//! finding inside decoded data points at the right bytes of the original.

use std::io::Read;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};

/// Maps positions in decoded output back to the encoded input.
#[derive(Debug, Clone)]
pub(crate) enum OffsetMap {
    /// Sorted `(decoded_pos, encoded_pos)` segment starts; inside a segment
    /// both advance together.
    Segments(Vec<(usize, usize)>),
    /// base64: encoded = start + decoded * 4 / 3.
    Base64 { start: usize, end: usize },
    /// Compressed data: every decoded byte maps to the whole encoded span.
    Whole { start: usize, end: usize },
}

impl OffsetMap {
    /// Encoded span `[start, end)` covering decoded `[ds, de)`.
    pub fn span(&self, ds: usize, de: usize) -> (usize, usize) {
        match self {
            OffsetMap::Segments(segs) => {
                let at = |d: usize| {
                    let i = segs.partition_point(|&(sd, _)| sd <= d).saturating_sub(1);
                    segs.get(i).map_or(d, |&(sd, sr)| sr + (d - sd))
                };
                let s = at(ds);
                (s, at(de.saturating_sub(1)).max(s) + 1)
            }
            OffsetMap::Base64 { start, end } => {
                let s = start + ds * 4 / 3;
                ((s).min(*end), (start + de.div_ceil(3) * 4).min(*end).max(s))
            }
            OffsetMap::Whole { start, end } => (*start, *end),
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding (RFC 3986) with the form rule `+` = space. Malformed
/// escapes pass through literally, as browsers and servers treat them.
pub(crate) fn percent(input: &[u8], base: usize) -> (Vec<u8>, OffsetMap) {
    let mut out = Vec::with_capacity(input.len());
    let mut segs = vec![(0, base)];
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                input.get(i + 1).and_then(|&c| hex_val(c)),
                input.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                segs.push((out.len(), base + i));
                out.push(h << 4 | l);
                i += 3;
                segs.push((out.len(), base + i));
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    (out, OffsetMap::Segments(segs))
}

/// JSON string-escape decoding (`\uXXXX` incl. surrogate pairs, `\/`, `\n`…).
/// Unknown or broken escapes pass through.
pub(crate) fn json_unescape(input: &[u8], base: usize) -> (Vec<u8>, OffsetMap) {
    let mut out = Vec::with_capacity(input.len());
    let mut segs = vec![(0, base)];
    let mut i = 0;
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        let simple = match input[i + 1] {
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'/' => Some(b'/'),
            b'\\' => Some(b'\\'),
            b'"' => Some(b'"'),
            _ => None,
        };
        segs.push((out.len(), base + i));
        if let Some(c) = simple {
            out.push(c);
            i += 2;
        } else if let Some(cp) = input.get(i + 1..i + 6).and_then(hex4) {
            let mut used = 6;
            let ch = if (0xD800..0xDC00).contains(&cp) {
                let low = input
                    .get(i + 6..i + 8)
                    .filter(|p| *p == b"\\u")
                    .and(input.get(i + 7..i + 12))
                    .and_then(hex4);
                match low {
                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                        used = 12;
                        char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00))
                    }
                    _ => None,
                }
            } else {
                char::from_u32(cp)
            };
            let ch = ch.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut tmp = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            i += used;
        } else {
            out.push(input[i]);
            i += 1;
        }
        segs.push((out.len(), base + i));
    }
    (out, OffsetMap::Segments(segs))
}

/// `uXXXX` → code point.
fn hex4(s: &[u8]) -> Option<u32> {
    if s.len() != 5 || s[0] != b'u' {
        return None;
    }
    s[1..]
        .iter()
        .try_fold(0u32, |a, &c| hex_val(c).map(|v| a << 4 | u32::from(v)))
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Decode a base64 run in whichever alphabet it uses (padding optional).
/// `None` when it mixes alphabets or is not a valid length.
pub(crate) fn base64(run: &[u8]) -> Option<Vec<u8>> {
    let url = run.iter().any(|&b| b == b'-' || b == b'_');
    let std = run.iter().any(|&b| b == b'+' || b == b'/');
    match (std, url) {
        (true, true) => None,
        (false, true) => URL.decode(run).ok(),
        _ => STD.decode(run).ok(),
    }
}

/// Compression formats the decoders know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    /// zlib-wrapped deflate (HTTP's `deflate`); raw deflate is tried as a fallback.
    Deflate,
}

impl Compression {
    /// Recognise compressed data by its magic bytes.
    pub(crate) fn sniff(data: &[u8]) -> Option<Compression> {
        match data {
            [0x1f, 0x8b, 8, ..] => Some(Compression::Gzip),
            [0x78, 0x01 | 0x5e | 0x9c | 0xda, ..] => Some(Compression::Deflate),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Deflate => "deflate",
        }
    }
}

/// Result of a bounded decompression.
pub(crate) struct Inflated {
    pub data: Vec<u8>,
    /// Output was cut at the limit: the rest was not inspected.
    pub truncated: bool,
}

/// Decompress at most `limit` bytes. Corrupt input yields what decoded
/// before the damage.
pub(crate) fn inflate(data: &[u8], kind: Compression, limit: usize) -> Inflated {
    let mut out = Vec::new();
    let take = limit as u64 + 1;
    let res = match kind {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(data)
            .take(take)
            .read_to_end(&mut out),
        Compression::Deflate => {
            let r = flate2::read::ZlibDecoder::new(data)
                .take(take)
                .read_to_end(&mut out);
            if r.is_err() && out.is_empty() {
                flate2::read::DeflateDecoder::new(data)
                    .take(take)
                    .read_to_end(&mut out)
            } else {
                r
            }
        }
    };
    // A read error after partial output still leaves useful bytes in `out`.
    let _ = res;
    let truncated = out.len() > limit;
    out.truncate(limit);
    Inflated {
        data: out,
        truncated,
    }
}

/// Decode an HTTP/1.1 chunked body that starts at `data[0]`. Returns the
/// payload, its offset map (relative to `base`), and how many input bytes the
/// body used; `None` if the framing is broken or incomplete.
pub(crate) fn dechunk(
    data: &[u8],
    base: usize,
    limit: usize,
) -> Option<(Vec<u8>, OffsetMap, usize)> {
    let mut out = Vec::new();
    let mut segs = Vec::new();
    let mut i = 0;
    loop {
        let line_end = i + data
            .get(i..)?
            .windows(2)
            .take(64)
            .position(|w| w == b"\r\n")?;
        let size_field = data[i..line_end].split(|&b| b == b';').next()?;
        let size_field = size_field.trim_ascii();
        if size_field.is_empty() || size_field.len() > 8 {
            return None;
        }
        let size = size_field
            .iter()
            .try_fold(0usize, |a, &c| hex_val(c).map(|v| a << 4 | usize::from(v)))?;
        i = line_end + 2;
        if size == 0 {
            // Optional trailers end with an empty line.
            let end = i + data.get(i..)?.windows(2).position(|w| w == b"\r\n")? + 2;
            let mut j = i;
            let mut k = end;
            while k - j > 2 {
                j = k;
                k = j + data.get(j..)?.windows(2).position(|w| w == b"\r\n")? + 2;
            }
            return Some((out, OffsetMap::Segments(segs), k));
        }
        if out.len() + size > limit {
            return None;
        }
        let chunk = data.get(i..i + size)?;
        segs.push((out.len(), base + i));
        out.extend_from_slice(chunk);
        i += size;
        if data.get(i..i + 2)? != b"\r\n" {
            return None;
        }
        i += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn percent_and_plus() {
        let (d, m) = percent(b"a%41+b%zz", 10);
        assert_eq!(d, b"aA b%zz");
        assert_eq!(m.span(1, 2), (11, 12));
        assert_eq!(m.span(3, 4), (15, 16));
    }

    #[test]
    fn json_escapes() {
        let (d, _) = json_unescape(br#"\u0034\u0031 \/x \ud83d\ude00 \q"#, 0);
        assert_eq!(String::from_utf8(d).unwrap(), "41 /x \u{1F600} \\q");
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64(b"aGVsbG8gd29ybGQ").unwrap(), b"hello world");
        assert_eq!(base64(b"aGVsbG8gd29ybGQ=").unwrap(), b"hello world");
        assert_eq!(base64(b"-_-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        assert!(base64(b"+/-_").is_none());
    }

    #[test]
    fn inflate_is_bounded() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![b'a'; 10 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        let r = inflate(&bomb, Compression::Gzip, 1 << 16);
        assert!(r.truncated);
        assert_eq!(r.data.len(), 1 << 16);
        assert_eq!(Compression::sniff(&bomb), Some(Compression::Gzip));
    }

    #[test]
    fn chunked_body() {
        let body = b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\nNEXT";
        let (d, m, used) = dechunk(body, 100, 1 << 20).unwrap();
        assert_eq!(d, b"hello world");
        assert_eq!(&body[used..], b"NEXT");
        assert_eq!(m.span(5, 6), (100 + 17, 100 + 18));
        assert!(dechunk(b"5\r\nhel", 0, 100).is_none());
        assert!(dechunk(b"zz\r\n", 0, 100).is_none());
    }
}
