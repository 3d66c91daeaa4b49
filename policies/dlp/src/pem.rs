//! PEM and OpenSSH private keys: the `BEGIN … PRIVATE KEY` header is not
//! enough (documentation is full of headers), so the body must be base64
//! that decodes to key material of a plausible shape: DER starting with a
//! SEQUENCE whose length matches, the `openssh-key-v1` magic, or (legacy
//! encrypted PEM) enough cipher blocks.

use crate::decode;
use crate::engine::{Block, Engine};
use crate::sensors::{Builtin, SensorRef};

const KINDS: &[&[u8]] = &[b"", b"RSA ", b"EC ", b"DSA ", b"OPENSSH ", b"ENCRYPTED "];

pub(crate) fn private_key(eng: &Engine, blk: &mut Block<'_>, s: usize, anchor_end: usize) {
    if !eng.on(Builtin::PrivateKey) {
        return;
    }
    let buf = blk.buf;
    let Some((begin, kind)) = KINDS.iter().find_map(|k| {
        let b = s.checked_sub(11 + k.len())?;
        (buf[b..b + 11] == *b"-----BEGIN " && buf[b + 11..s] == **k).then_some((b, *k))
    }) else {
        return;
    };
    if blk.cut(begin) {
        return;
    }
    let max = eng.limits.max_candidate;
    let mut b64 = Vec::with_capacity(2048);
    let mut i = anchor_end;
    let mut has_headers = false;
    let mut end = None;
    let mut line_start = true;
    while i < buf.len() && i - begin < max {
        let c = buf[i];
        if c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=' {
            if line_start {
                // A `Name: value` header line (legacy encrypted PEM) is skipped whole.
                let line = &buf[i..(i + 128).min(buf.len())];
                let line_len = line
                    .iter()
                    .position(|&x| x == b'\n' || x == b'\\')
                    .unwrap_or(line.len());
                if line[..line_len].contains(&b':') {
                    has_headers = true;
                    i += line_len;
                    continue;
                }
            }
            line_start = false;
            b64.push(c);
            i += 1;
        } else if matches!(c, b'\n' | b'\r' | b' ' | b'\t') {
            line_start |= c == b'\n';
            i += 1;
        } else if c == b'\\' && matches!(buf.get(i + 1), Some(b'n' | b'r')) {
            line_start = true;
            i += 2; // JSON- or shell-escaped newline
        } else if i + 9 >= buf.len() && (b"-----END ".starts_with(&buf[i..]) || buf[i..] == *b"\\")
        {
            // An END line or escape cut by the buffer end: decide with more bytes.
            if !blk.ready(begin, i + 64) {
                return;
            }
            break;
        } else if buf[i..].starts_with(b"-----END ") {
            let close = buf[i + 9..]
                .iter()
                .take(40)
                .position(|&x| x == b'-')
                .map(|p| i + 9 + p);
            if close.is_none() && !blk.ready(begin, i + 50) {
                return;
            }
            end = close.map(|p| {
                let mut q = p;
                while q < buf.len() && buf[q] == b'-' && q - p < 5 {
                    q += 1;
                }
                q
            });
            break;
        } else {
            break;
        }
    }
    let stop = end.unwrap_or(i);
    if stop - begin >= max || !blk.ready(begin, stop + 1) {
        return;
    }
    let Some(key) = decode::base64(&b64) else {
        return;
    };
    let plausible = if kind == b"OPENSSH " {
        key.starts_with(b"openssh-key-v1\0") && key.len() >= 64
    } else if has_headers {
        key.len() >= 64 && key.len() % 8 == 0
    } else {
        der_sequence(&key, end.is_some())
    };
    if !plausible {
        return;
    }
    let header = String::from_utf8_lossy(&buf[begin..anchor_end]).into_owned();
    let shown: String = b64.iter().take(4).map(|&c| c as char).collect();
    let masked = format!("{header}{shown}{}", "*".repeat(16));
    blk.hit(
        SensorRef::Builtin(Builtin::PrivateKey),
        begin,
        stop,
        stop + 1,
        masked,
    );
}

/// A DER SEQUENCE whose encoded length matches the data (or exceeds it, for
/// a truncated key without its END line).
fn der_sequence(d: &[u8], complete: bool) -> bool {
    if d.len() < 32 || d[0] != 0x30 {
        return false;
    }
    let (len, hdr) = match d[1] {
        n @ 0..=0x7f => (usize::from(n), 2),
        0x81 => (usize::from(d[2]), 3),
        0x82 => (usize::from(d[2]) << 8 | usize::from(d[3]), 4),
        _ => return false,
    };
    let total = len + hdr;
    if complete {
        total == d.len()
    } else {
        total >= d.len()
    }
}
