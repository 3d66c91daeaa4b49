//! Encoded regions: find them cheaply, decode them within bounds, and scan
//! the decoded bytes as a nested layer (depth-limited). Layers: base64 runs
//! (and gzip/zlib inside them), percent-encoding, JSON string escapes, and
//! HTTP/1 messages carried in raw streams (chunked framing, gzip/deflate
//! content coding).

use memchr::memmem;

use crate::classify::is_b64;
use crate::decode::{self, Compression, OffsetMap};
use crate::engine::{Block, Engine};
use crate::sensors::SensorRef;
use crate::tokens;

/// Handle the base64-alphabet run containing `p`; returns where to resume.
/// `end_hint` is the run's end when the caller's bitmaps already know it.
pub(crate) fn on_b64_run(
    eng: &Engine,
    blk: &mut Block<'_>,
    p: usize,
    end_hint: Option<usize>,
    depth: u8,
) -> usize {
    let buf = blk.buf;
    let max = eng.limits.max_candidate;
    let mut s = p;
    while s > 0 && is_b64(buf[s - 1]) && p - s < max {
        s -= 1;
    }
    let mut e = match end_hint {
        Some(h) if h <= buf.len() => h.min(s + max),
        _ => p,
    };
    while e < buf.len() && is_b64(buf[e]) && e - s < max {
        e += 1;
    }
    if blk.cut(s) || e - s >= max {
        return e;
    }
    // Up to two `=` of padding and one boundary byte decide the run.
    if !blk.ready(s, e + 3) {
        return buf.len();
    }
    tokens::aws_secret(eng, blk, s, e, e + 3);
    let mut pe = e;
    while pe < buf.len() && pe - e < 2 && buf[pe] == b'=' {
        pe += 1;
    }
    if depth < eng.limits.max_depth && plausible_base64(&buf[s..e]) {
        if let Some(decoded) = decode::base64(&buf[s..pe]) {
            let map = OffsetMap::Base64 { start: s, end: pe };
            decoded_layer(eng, blk, &decoded, &map, (s, pe), e + 3, "base64", depth);
        }
    }
    pe
}

/// Encoded data, not an identifier, a hex digest or a path: long enough,
/// mixed case, not only hex digits, one alphabet, a possible length.
fn plausible_base64(run: &[u8]) -> bool {
    let n = run.len();
    if n < 16 || n % 4 == 1 {
        return false;
    }
    let (mut upper, mut lower, mut beyond_hex) = (0usize, 0usize, false);
    for &c in run {
        upper += usize::from(c.is_ascii_uppercase());
        lower += usize::from(c.is_ascii_lowercase());
        beyond_hex |= !(c.is_ascii_hexdigit() || c == b'-');
    }
    upper >= 2 && lower >= 2 && beyond_hex
}

/// Decoded bytes worth scanning: text, or compressed data.
fn looks_textual(d: &[u8]) -> bool {
    if d.len() < 8 {
        return false;
    }
    let ok = d
        .iter()
        .filter(|&&c| c >= 0x20 || matches!(c, b'\n' | b'\r' | b'\t'))
        .count();
    ok * 100 >= d.len() * 90
}

/// Scan decoded bytes, inflating them first when they are compressed.
#[allow(clippy::too_many_arguments)]
fn decoded_layer(
    eng: &Engine,
    blk: &mut Block<'_>,
    decoded: &[u8],
    map: &OffsetMap,
    (start, end): (usize, usize),
    needs: usize,
    layer: &'static str,
    depth: u8,
) {
    if let Some(kind) = Compression::sniff(decoded) {
        inflate_and_scan(
            eng,
            blk,
            decoded,
            kind,
            (start, end),
            needs,
            &[layer],
            depth,
        );
    } else if looks_textual(decoded) {
        eng.nested(blk, decoded, map, start, needs, &[layer], depth);
    }
}

/// Inflate (bounded) and scan; a hit on the bound is a `decode_limit` finding.
#[allow(clippy::too_many_arguments)]
fn inflate_and_scan(
    eng: &Engine,
    blk: &mut Block<'_>,
    data: &[u8],
    kind: Compression,
    (start, end): (usize, usize),
    needs: usize,
    outer: &[&'static str],
    depth: u8,
) {
    let limit = eng.limits.max_decoded;
    let out = decode::inflate(data, kind, limit);
    let mut layers: Vec<&'static str> = outer.to_vec();
    layers.push(kind.name());
    if out.truncated {
        let masked = format!("{} output exceeds {limit} bytes", kind.name());
        blk.hits.push(crate::engine::Hit {
            sensor: SensorRef::DecodeLimit,
            start,
            end,
            needs,
            masked,
            layers: layers.clone(),
        });
    }
    eng.nested(
        blk,
        &out.data,
        &OffsetMap::Whole { start, end },
        start,
        end + 1,
        &layers,
        depth,
    );
}

fn pct_delim(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'<' | b'>' | b'&' | b'`')
}

/// Percent-encoded regions (`%XX` anywhere in a token).
pub(crate) fn scan_percent(eng: &Engine, blk: &mut Block<'_>, depth: u8) {
    let buf = blk.buf;
    let max = eng.limits.max_candidate;
    let mut resume = 0;
    for p in memchr::memchr_iter(b'%', buf) {
        if p < resume {
            continue;
        }
        let hex = |i: usize| buf.get(i).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(p + 1) && hex(p + 2)) {
            if p + 3 > buf.len() && !blk.ready(p, p + 3) {
                return;
            }
            continue;
        }
        let mut s = p;
        while s > 0 && p - s < 64 && !pct_delim(buf[s - 1]) && !matches!(buf[s - 1], b'=' | b'?') {
            s -= 1;
        }
        let mut e = p;
        while e < buf.len() && !pct_delim(buf[e]) && e - s < max {
            e += 1;
        }
        resume = e;
        if blk.cut(s) || e - s >= max {
            continue;
        }
        if !blk.ready(s, e + 1) {
            return;
        }
        let (decoded, map) = decode::percent(&buf[s..e], s);
        eng.nested(blk, &decoded, &map, s, e + 1, &["url"], depth);
    }
}

/// JSON strings with `\uXXXX` or `\/` escapes.
pub(crate) fn scan_json_escapes(eng: &Engine, blk: &mut Block<'_>, depth: u8) {
    let buf = blk.buf;
    let max = eng.limits.max_candidate;
    let mut resume = 0;
    for p in memchr::memchr_iter(b'\\', buf) {
        if p < resume {
            continue;
        }
        match buf.get(p + 1) {
            Some(b'u') | Some(b'/') => {}
            None => {
                if !blk.ready(p, p + 2) {
                    return;
                }
                continue;
            }
            _ => continue,
        }
        // The string starts after its opening quote, or at most 64 bytes back.
        let s = memchr::memrchr(b'"', &buf[p.saturating_sub(64)..p])
            .map_or(p.saturating_sub(64), |q| p.saturating_sub(64) + q + 1);
        let mut e = p;
        while e < buf.len() && buf[e] != b'"' && e - s < max {
            e += if buf[e] == b'\\' { 2 } else { 1 };
        }
        let e = e.min(buf.len());
        resume = e;
        if blk.cut(s) || e - s >= max {
            continue;
        }
        if !blk.ready(s, e + 1) {
            return;
        }
        let (decoded, map) = decode::json_unescape(&buf[s..e], s);
        eng.nested(blk, &decoded, &map, s, e + 1, &["json"], depth);
    }
}

/// An HTTP/1 message in a raw stream whose body is chunked or compressed:
/// decode the body so values split by chunk framing or hidden by gzip are
/// seen. Bodies that need neither are already covered by the raw scan.
pub(crate) fn http_message(eng: &Engine, blk: &mut Block<'_>, anchor: usize, depth: u8) {
    let buf = blk.buf;
    let max = eng.limits.max_candidate;
    let back = anchor.saturating_sub(crate::engine::LOOKBEHIND - 64);
    let line_start = memchr::memrchr(b'\n', &buf[back..anchor]).map_or(back, |q| back + q + 1);
    // `METHOD target HTTP/1.x\r\n` or `HTTP/1.x NNN reason\r\n`; anything else
    // (an access log quoting a request line) is not a message.
    let after = &buf[(anchor + 7).min(buf.len())..(anchor + 12).min(buf.len())];
    if after.len() < 3 && !blk.ready(anchor, anchor + 12) {
        return;
    }
    let request = blk.prev(anchor) == Some(b' ') && after.len() >= 3 && after[1..3] == *b"\r\n";
    let status = line_start == anchor
        && after.len() == 5
        && after[1] == b' '
        && after[2..5].iter().all(u8::is_ascii_digit);
    let start = if status {
        anchor
    } else if request {
        line_start
    } else {
        return;
    };
    if blk.cut(start) && start != anchor {
        return;
    }
    let head_window = &buf[start..(start + max).min(buf.len())];
    let Some(head_len) = memmem::find(head_window, b"\r\n\r\n") else {
        blk.ready(start, start + max + 1);
        return;
    };
    let head = &head_window[..head_len];
    let mut chunked = false;
    let mut coding = None;
    let mut length = None;
    for line in head.split(|&c| c == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .to_ascii_lowercase()
                .windows(7)
                .any(|w| w == b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-encoding") {
            let v = value.to_ascii_lowercase();
            coding = match v.as_slice() {
                b"gzip" | b"x-gzip" => Some(Compression::Gzip),
                b"deflate" => Some(Compression::Deflate),
                _ => None,
            };
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok());
        }
    }
    if !chunked && coding.is_none() {
        return;
    }
    let body_start = start + head_len + 4;
    let (body, map, body_end): (std::borrow::Cow<'_, [u8]>, OffsetMap, usize) = if chunked {
        let avail = &buf[body_start..(start + max).min(buf.len())];
        match decode::dechunk(avail, body_start, eng.limits.max_decoded) {
            Some((b, m, used)) => (b.into(), m, body_start + used),
            None => {
                blk.ready(start, start + max + 1);
                return;
            }
        }
    } else {
        let end = match length {
            Some(l) if body_start + l - start < max => body_start + l,
            Some(_) => return,
            None => (start + max).min(buf.len()),
        };
        if !blk.ready(start, end + 1) {
            return;
        }
        let end = end.min(buf.len());
        (
            buf[body_start..end].into(),
            OffsetMap::Segments(vec![(0, body_start)]),
            end,
        )
    };
    if !blk.ready(start, body_end + 1) {
        return;
    }
    let outer: &[&'static str] = if chunked { &["chunked"] } else { &[] };
    match coding {
        Some(kind) => inflate_and_scan(
            eng,
            blk,
            &body,
            kind,
            (start, body_end),
            body_end + 1,
            outer,
            depth,
        ),
        None => eng.nested(blk, &body, &map, body_start, body_end + 1, outer, depth),
    }
}
