//! The decoding transformations (HTML, JavaScript, CSS, C escapes, comments),
//! following ModSecurity's byte-level behaviour.

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn x2c(a: u8, b: u8) -> u8 {
    (hexval(a).unwrap_or(0) << 4) | hexval(b).unwrap_or(0)
}

/// `&#xHH;`, `&#DDD;` (low byte kept) and the named entities ModSecurity knows;
/// the trailing `;` is optional.
pub fn html_entity_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'&' {
            o.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        if rest.first() == Some(&b'#') {
            let (hex, start) = match rest.get(1) {
                Some(b'x') | Some(b'X') => (true, 2),
                _ => (false, 1),
            };
            let digits = rest[start..]
                .iter()
                .take_while(|c| {
                    if hex {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_digit()
                    }
                })
                .count();
            if digits > 0 {
                let txt = std::str::from_utf8(&rest[start..start + digits]).unwrap_or("0");
                let v = u64::from_str_radix(txt, if hex { 16 } else { 10 }).unwrap_or(0);
                o.push(v as u8);
                let mut consumed = 1 + start + digits;
                if rest.get(start + digits) == Some(&b';') {
                    consumed += 1;
                }
                i += consumed;
                continue;
            }
        } else {
            let name_len = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            let name = rest[..name_len].to_ascii_lowercase();
            let rep = match name.as_slice() {
                b"quot" => Some(b'"'),
                b"amp" => Some(b'&'),
                b"lt" => Some(b'<'),
                b"gt" => Some(b'>'),
                b"nbsp" => Some(0xa0),
                _ => None,
            };
            if let Some(r) = rep {
                o.push(r);
                let mut consumed = 1 + name_len;
                if rest.get(name_len) == Some(&b';') {
                    consumed += 1;
                }
                i += consumed;
                continue;
            }
        }
        o.push(b'&');
        i += 1;
    }
    o
}

fn fullwidth(hi: (u8, u8), lo: u8) -> u8 {
    if lo > 0x00 && lo < 0x5f && (hi.0 == b'f' || hi.0 == b'F') && (hi.1 == b'f' || hi.1 == b'F') {
        lo + 0x20
    } else {
        lo
    }
}

pub fn js_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' || i + 1 >= s.len() {
            o.push(s[i]);
            i += 1;
            continue;
        }
        let n = s[i + 1];
        if (n == b'u' || n == b'U')
            && i + 5 < s.len()
            && s[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit())
        {
            o.push(fullwidth((s[i + 2], s[i + 3]), x2c(s[i + 4], s[i + 5])));
            i += 6;
        } else if let Some((byte, next)) = hex_or_octal_escape(s, i) {
            o.push(byte);
            i = next;
        } else {
            o.push(match n {
                b'a' => 7,
                b'b' => 8,
                b'f' => 12,
                b'n' => 10,
                b'r' => 13,
                b't' => 9,
                b'v' => 11,
                c => c,
            });
            i += 2;
        }
    }
    o
}

pub fn css_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            o.push(s[i]);
            i += 1;
            continue;
        }
        if i + 1 >= s.len() {
            i += 1;
            continue;
        }
        let hex = s[i + 1..]
            .iter()
            .take(6)
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        if hex > 0 {
            let d = &s[i + 1..i + 1 + hex];
            let v = match hex {
                1 => hexval(d[0]).unwrap_or(0),
                2 => x2c(d[0], d[1]),
                _ => {
                    let lo = x2c(d[hex - 2], d[hex - 1]);
                    if hex >= 4 {
                        fullwidth((d[hex - 4], d[hex - 3]), lo)
                    } else {
                        lo
                    }
                }
            };
            o.push(v);
            i += 1 + hex;
            if i < s.len()
                && (s[i] == b' ' || s[i] == b'\t' || s[i] == b'\n' || s[i] == b'\r' || s[i] == 0x0c)
            {
                i += 1;
            }
        } else if s[i + 1] == b'\n' {
            i += 2;
        } else {
            o.push(s[i + 1]);
            i += 2;
        }
    }
    o
}

pub fn escape_seq_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' || i + 1 >= s.len() {
            o.push(s[i]);
            i += 1;
            continue;
        }
        let n = s[i + 1];
        let simple = match n {
            b'a' => Some(7),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(10),
            b'r' => Some(13),
            b't' => Some(9),
            b'v' => Some(11),
            b'\\' => Some(b'\\'),
            b'?' => Some(b'?'),
            b'\'' => Some(b'\''),
            b'"' => Some(b'"'),
            _ => None,
        };
        if let Some(c) = simple {
            o.push(c);
            i += 2;
        } else if let Some((byte, next)) = hex_or_octal_escape(s, i) {
            o.push(byte);
            i = next;
        } else {
            o.push(s[i]);
            o.push(n);
            i += 2;
        }
    }
    o
}

/// Multi-byte UTF-8 sequences become `%uHHHH`; invalid bytes are kept.
pub fn utf8_to_unicode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c < 0x80 {
            o.push(c);
            i += 1;
            continue;
        }
        let len = match c {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 0,
        };
        if len > 0 && i + len <= s.len() {
            if let Ok(st) = std::str::from_utf8(&s[i..i + len]) {
                if let Some(ch) = st.chars().next() {
                    o.extend_from_slice(format!("%u{:04x}", ch as u32).as_bytes());
                    i += len;
                    continue;
                }
            }
        }
        o.push(c);
        i += 1;
    }
    o
}

pub fn sql_hex_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'0'
            && i + 3 < s.len()
            && (s[i + 1] == b'x' || s[i + 1] == b'X')
            && s[i + 2].is_ascii_hexdigit()
            && s[i + 3].is_ascii_hexdigit()
        {
            i += 2;
            while i + 1 < s.len() && s[i].is_ascii_hexdigit() && s[i + 1].is_ascii_hexdigit() {
                o.push(x2c(s[i], s[i + 1]));
                i += 2;
            }
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}

/// `/* ... */` becomes one space; an unterminated comment runs to the end.
pub fn replace_comments(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
            match find(&s[i + 2..], b"*/") {
                Some(p) => i = i + 2 + p + 2,
                None => i = s.len(),
            }
            o.push(b' ');
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}

pub fn remove_comments(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
            i = find(&s[i + 2..], b"*/").map_or(s.len(), |p| i + 2 + p + 2);
        } else if s[i..].starts_with(b"<!--") {
            i = find(&s[i + 4..], b"-->").map_or(s.len(), |p| i + 4 + p + 3);
        } else if s[i..].starts_with(b"--") || s[i] == b'#' {
            i = s.len();
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}

pub fn remove_comments_char(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let r = &s[i..];
        if r.starts_with(b"/*") || r.starts_with(b"*/") || r.starts_with(b"--") {
            i += 2;
        } else if r.starts_with(b"<!--") {
            i += 4;
        } else if r.starts_with(b"-->") {
            i += 3;
        } else if r[0] == b'#' {
            i += 1;
        } else {
            o.push(r[0]);
            i += 1;
        }
    }
    o
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// `\xHH` or `\NNN` (up to three octal digits) at `s[i] == b'\\'`, as both
/// jsDecode and escapeSeqDecode read them: the byte and the index after it.
fn hex_or_octal_escape(s: &[u8], i: usize) -> Option<(u8, usize)> {
    let n = *s.get(i + 1)?;
    if (n == b'x' || n == b'X')
        && i + 3 < s.len()
        && s[i + 2].is_ascii_hexdigit()
        && s[i + 3].is_ascii_hexdigit()
    {
        return Some((x2c(s[i + 2], s[i + 3]), i + 4));
    }
    if (b'0'..=b'7').contains(&n) {
        let mut j = i + 1;
        let mut v: u32 = 0;
        while j < s.len() && j < i + 4 && (b'0'..=b'7').contains(&s[j]) {
            v = v * 8 + (s[j] - b'0') as u32;
            j += 1;
        }
        return Some((v as u8, j));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_entities() {
        assert_eq!(
            html_entity_decode(b"&lt;a&#x3e;&#60&quot&bogus;"),
            b"<a><\"&bogus;"
        );
    }

    #[test]
    fn js_and_css() {
        assert_eq!(js_decode(b"\\x3cs\\u003e\\uff1c\\101"), b"<s><A");
        assert_eq!(css_decode(b"\\3c \\000073cript"), b"<script");
    }

    #[test]
    fn comments_and_utf8() {
        assert_eq!(replace_comments(b"a/*x*/b/*c"), b"a b ");
        assert_eq!(utf8_to_unicode("é".as_bytes()), b"%u00e9");
    }
}
