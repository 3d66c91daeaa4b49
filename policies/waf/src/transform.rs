//! Transformation functions (`t:`), byte-exact to ModSecurity's C versions
//! where CRS depends on the details (full-width `%uFFxx`, `cmdLine`, ...).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    CmdLine,
    CompressWhitespace,
    CssDecode,
    EscapeSeqDecode,
    HexDecode,
    HexEncode,
    HtmlEntityDecode,
    JsDecode,
    Length,
    Lowercase,
    Md5,
    NormalizePath,
    NormalizePathWin,
    ParityEven7bit,
    ParityOdd7bit,
    ParityZero7bit,
    RemoveComments,
    RemoveCommentsChar,
    RemoveNulls,
    RemoveWhitespace,
    ReplaceComments,
    ReplaceNulls,
    Sha1,
    SqlHexDecode,
    Trim,
    TrimLeft,
    TrimRight,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    Utf8ToUnicode,
}

/// What `t:NAME` denotes: `none` resets the inherited list.
#[derive(Debug, Clone, Copy)]
pub enum TransformName {
    None,
    T(Transform),
}

pub fn from_name(name: &str) -> Option<TransformName> {
    use Transform::*;
    let t = match name.to_ascii_lowercase().as_str() {
        "none" => return Some(TransformName::None),
        "base64decode" => Base64Decode,
        "base64decodeext" => Base64DecodeExt,
        "base64encode" => Base64Encode,
        "cmdline" => CmdLine,
        "compresswhitespace" => CompressWhitespace,
        "cssdecode" => CssDecode,
        "escapeseqdecode" => EscapeSeqDecode,
        "hexdecode" => HexDecode,
        "hexencode" => HexEncode,
        "htmlentitydecode" => HtmlEntityDecode,
        "jsdecode" => JsDecode,
        "length" => Length,
        "lowercase" => Lowercase,
        "md5" => Md5,
        "normalisepath" | "normalizepath" => NormalizePath,
        "normalisepathwin" | "normalizepathwin" => NormalizePathWin,
        "parityeven7bit" => ParityEven7bit,
        "parityodd7bit" => ParityOdd7bit,
        "parityzero7bit" => ParityZero7bit,
        "removecomments" => RemoveComments,
        "removecommentschar" => RemoveCommentsChar,
        "removenulls" => RemoveNulls,
        "removewhitespace" => RemoveWhitespace,
        "replacecomments" => ReplaceComments,
        "replacenulls" => ReplaceNulls,
        "sha1" => Sha1,
        "sqlhexdecode" => SqlHexDecode,
        "trim" => Trim,
        "trimleft" => TrimLeft,
        "trimright" => TrimRight,
        "uppercase" => Uppercase,
        "urldecode" => UrlDecode,
        "urldecodeuni" => UrlDecodeUni,
        "urlencode" => UrlEncode,
        "utf8tounicode" => Utf8ToUnicode,
        _ => return None,
    };
    Some(TransformName::T(t))
}

/// Applies a chain of transformations.
pub fn apply_all<'a>(chain: &[Transform], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut cur: Cow<'a, [u8]> = Cow::Borrowed(input);
    for t in chain {
        if let Some(v) = apply(*t, &cur) {
            cur = Cow::Owned(v);
        }
    }
    cur
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hexval(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn x2c(a: u8, b: u8) -> u8 {
    (hexval(a).unwrap_or(0) << 4) | hexval(b).unwrap_or(0)
}

/// Byte classes of a value, one bit per class of byte that makes some
/// transformation rewrite (see [`classes`]).
mod class {
    pub const PCT_PLUS: u32 = 1 << 0;
    pub const AMP: u32 = 1 << 1;
    pub const BACKSLASH: u32 = 1 << 2;
    pub const HIGH: u32 = 1 << 3;
    pub const ZERO: u32 = 1 << 4;
    pub const X: u32 = 1 << 5;
    pub const SLASH: u32 = 1 << 6;
    pub const STAR: u32 = 1 << 7;
    pub const DASH_HASH: u32 = 1 << 8;
    pub const WS: u32 = 1 << 9;
    pub const NUL: u32 = 1 << 10;
    pub const UPPER: u32 = 1 << 11;
    pub const LOWER: u32 = 1 << 12;
    /// `"`, `'`, `^`, `,`, `;` (cmdLine's other triggers are WS or BACKSLASH).
    pub const CMD: u32 = 1 << 13;
    pub const DOT: u32 = 1 << 14;
    /// Derived: both ZERO and X (`0x` may occur).
    pub const ZERO_X: u32 = 1 << 15;
    /// Derived: both SLASH and STAR (`/*`, `*/` may occur).
    pub const SLASH_STAR: u32 = 1 << 16;
}

static CLASS: [u32; 256] = {
    use class::*;
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = match c {
            b'%' | b'+' => PCT_PLUS,
            b'&' => AMP,
            b'\\' => BACKSLASH,
            0x80..=0xff => HIGH,
            b'0' => ZERO,
            b'x' => X | LOWER,
            b'X' => X | UPPER,
            b'/' => SLASH,
            b'*' => STAR,
            b'-' | b'#' => DASH_HASH,
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => WS,
            0 => NUL,
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'"' | b'\'' | b'^' | b',' | b';' => CMD,
            b'.' => DOT,
            _ => 0,
        };
        i += 1;
    }
    t
};

/// The byte classes of `s`: one pass that answers, for most
/// transformations, whether they leave `s` unchanged (see [`unchanged_set`])
/// instead of one scan per transformation.
pub fn classes(s: &[u8]) -> u32 {
    use class::*;
    let mut m = s.iter().fold(0, |m, &c| m | CLASS[c as usize]);
    if m & (ZERO | X) == ZERO | X {
        m |= ZERO_X;
    }
    if m & (SLASH | STAR) == SLASH | STAR {
        m |= SLASH_STAR;
    }
    m
}

/// Marks a transformation the byte classes say nothing about (never a
/// class bit: `unchanged_set` sets it in every value's classes).
const NEVER: u32 = 1 << 31;

/// The classes whose absence proves that `t` leaves a value unchanged
/// (`NEVER`: the classes say nothing). Each mirrors `unchanged`'s test: a
/// transformation rewrites only where one of these bytes occurs.
const fn triggers(t: Transform) -> u32 {
    use class::*;
    use Transform::*;
    match t {
        UrlDecode | UrlDecodeUni => PCT_PLUS,
        HtmlEntityDecode => AMP,
        JsDecode | CssDecode | EscapeSeqDecode => BACKSLASH,
        Utf8ToUnicode => HIGH,
        SqlHexDecode => ZERO_X,
        ReplaceComments => SLASH_STAR,
        RemoveComments | RemoveCommentsChar => SLASH_STAR | DASH_HASH,
        // 0xa0 (no-break space) counts as whitespace here: it is HIGH.
        CompressWhitespace | RemoveWhitespace => WS | HIGH,
        Trim | TrimLeft | TrimRight => WS,
        ReplaceNulls | RemoveNulls => NUL,
        Lowercase => UPPER,
        Uppercase => LOWER,
        CmdLine => CMD | WS | BACKSLASH | UPPER,
        // Every rewrite needs a `.` or `/` (a `..` segment, `//`, ...).
        NormalizePath => SLASH | DOT,
        NormalizePathWin => SLASH | DOT | BACKSLASH,
        _ => NEVER,
    }
}

/// Every transformation.
pub(crate) const ALL: [Transform; 35] = {
    use Transform::*;
    [
        Base64Decode,
        Base64DecodeExt,
        Base64Encode,
        CmdLine,
        CompressWhitespace,
        CssDecode,
        EscapeSeqDecode,
        HexDecode,
        HexEncode,
        HtmlEntityDecode,
        JsDecode,
        Length,
        Lowercase,
        Md5,
        NormalizePath,
        NormalizePathWin,
        ParityEven7bit,
        ParityOdd7bit,
        ParityZero7bit,
        RemoveComments,
        RemoveCommentsChar,
        RemoveNulls,
        RemoveWhitespace,
        ReplaceComments,
        ReplaceNulls,
        Sha1,
        SqlHexDecode,
        Trim,
        TrimLeft,
        TrimRight,
        Uppercase,
        UrlDecode,
        UrlDecodeUni,
        UrlEncode,
        Utf8ToUnicode,
    ]
};

static TRIGGERS: [u32; 35] = {
    let mut a = [0u32; 35];
    let mut i = 0;
    while i < 35 {
        a[i] = triggers(ALL[i]);
        i += 1;
    }
    a
};

/// Bit `t as u32` set for each transformation that the byte classes `c`
/// (of a value, [`classes`]) prove leaves that value unchanged.
pub fn unchanged_set(c: u32) -> u64 {
    let c = c | NEVER;
    let mut set = 0u64;
    for (t, &m) in ALL.iter().zip(TRIGGERS.iter()) {
        if c & m == 0 {
            set |= 1 << (*t as u32);
        }
    }
    set
}

/// Returns `None` when the value is unchanged, saving a copy.
pub fn apply(t: Transform, s: &[u8]) -> Option<Vec<u8>> {
    if unchanged(t, s) {
        return None;
    }
    rewrite(t, s)
}

/// The transformation itself (`None`: unchanged).
fn rewrite(t: Transform, s: &[u8]) -> Option<Vec<u8>> {
    use Transform::*;
    let out = match t {
        Lowercase => {
            if !s.iter().any(|c| c.is_ascii_uppercase()) {
                return None;
            }
            s.to_ascii_lowercase()
        }
        Uppercase => s.to_ascii_uppercase(),
        RemoveNulls => {
            if !s.contains(&0) {
                return None;
            }
            s.iter().copied().filter(|&c| c != 0).collect()
        }
        ReplaceNulls => s.iter().map(|&c| if c == 0 { b' ' } else { c }).collect(),
        RemoveWhitespace => s
            .iter()
            .copied()
            .filter(|&c| !is_ws(c) && c != 0xa0)
            .collect(),
        CompressWhitespace => compress_whitespace(s),
        Trim => trim_right(trim_left(s)).to_vec(),
        TrimLeft => trim_left(s).to_vec(),
        TrimRight => trim_right(s).to_vec(),
        Length => s.len().to_string().into_bytes(),
        Sha1 => {
            use sha1::Digest;
            sha1::Sha1::digest(s).to_vec()
        }
        Md5 => {
            use md5::Digest;
            md5::Md5::digest(s).to_vec()
        }
        HexEncode => {
            let mut o = String::with_capacity(s.len() * 2);
            for c in s {
                o.push_str(&format!("{c:02x}"));
            }
            o.into_bytes()
        }
        HexDecode => hex_decode(s),
        Base64Encode => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(s)
                .into_bytes()
        }
        Base64Decode => base64_decode(s, false),
        Base64DecodeExt => base64_decode(s, true),
        UrlDecode => url_decode(s, false),
        UrlDecodeUni => url_decode(s, true),
        UrlEncode => url_encode(s),
        HtmlEntityDecode => crate::transform_decode::html_entity_decode(s),
        JsDecode => crate::transform_decode::js_decode(s),
        CssDecode => crate::transform_decode::css_decode(s),
        EscapeSeqDecode => crate::transform_decode::escape_seq_decode(s),
        Utf8ToUnicode => crate::transform_decode::utf8_to_unicode(s),
        SqlHexDecode => crate::transform_decode::sql_hex_decode(s),
        CmdLine => cmd_line(s),
        NormalizePath => normalize_path(s, false),
        NormalizePathWin => normalize_path(s, true),
        ReplaceComments => crate::transform_decode::replace_comments(s),
        RemoveComments => crate::transform_decode::remove_comments(s),
        RemoveCommentsChar => crate::transform_decode::remove_comments_char(s),
        ParityEven7bit => s.iter().map(|&c| parity(c, true)).collect(),
        ParityOdd7bit => s.iter().map(|&c| parity(c, false)).collect(),
        ParityZero7bit => s.iter().map(|&c| c & 0x7f).collect(),
    };
    Some(out)
}

/// True when `t` would return `s` as it is: benign values mostly contain
/// nothing a decoder acts on, so most transformations then cost a scan
/// instead of a copy. Each test mirrors the function's only rewrite triggers.
fn unchanged(t: Transform, s: &[u8]) -> bool {
    use Transform::*;
    let has = |n: &[u8]| memchr::memmem::find(s, n).is_some();
    let any = |set: &[u8]| s.iter().any(|c| set.contains(c));
    match t {
        UrlDecode | UrlDecodeUni => memchr::memchr2(b'%', b'+', s).is_none(),
        HtmlEntityDecode => memchr::memchr(b'&', s).is_none(),
        JsDecode | CssDecode | EscapeSeqDecode => memchr::memchr(b'\\', s).is_none(),
        Utf8ToUnicode => s.is_ascii(),
        SqlHexDecode => !s
            .windows(2)
            .any(|w| w[0] == b'0' && (w[1] == b'x' || w[1] == b'X')),
        ReplaceComments => !has(b"/*"),
        RemoveComments => !has(b"/*") && !has(b"--") && memchr::memchr(b'#', s).is_none(),
        RemoveCommentsChar => {
            !has(b"/*") && !has(b"*/") && !has(b"--") && memchr::memchr(b'#', s).is_none()
        }
        CompressWhitespace | RemoveWhitespace => !s.iter().any(|&c| is_ws(c) || c == 0xa0),
        Trim => s.first().is_none_or(|&c| !is_ws(c)) && s.last().is_none_or(|&c| !is_ws(c)),
        TrimLeft => s.first().is_none_or(|&c| !is_ws(c)),
        TrimRight => s.last().is_none_or(|&c| !is_ws(c)),
        ReplaceNulls => memchr::memchr(0, s).is_none(),
        Uppercase => !s.iter().any(|c| c.is_ascii_lowercase()),
        CmdLine => !any(b"\"'\\^ ,;\t\r\n") && !s.iter().any(|c| c.is_ascii_uppercase()),
        // Only empty, `.` and `..` segments are rewritten (a leading and a
        // trailing slash are kept).
        NormalizePath => path_is_normal(s),
        NormalizePathWin => memchr::memchr(b'\\', s).is_none() && path_is_normal(s),
        _ => false,
    }
}

/// Whether `normalize_path` would return `s` unchanged (ignoring `\\`): no
/// empty segment inside, and no `.` or `..` segment anywhere.
fn path_is_normal(s: &[u8]) -> bool {
    let has = |n: &[u8]| memchr::memmem::find(s, n).is_some();
    !(has(b"//")
        || has(b"/./")
        || has(b"/../")
        || s.starts_with(b"./")
        || s.starts_with(b"../")
        || s.ends_with(b"/.")
        || s.ends_with(b"/..")
        || s == b"."
        || s == b"..")
}

fn parity(c: u8, even: bool) -> u8 {
    let x = c & 0x7f;
    let ones = x.count_ones();
    let set = if even {
        ones % 2 == 1
    } else {
        ones.is_multiple_of(2)
    };
    if set {
        x | 0x80
    } else {
        x
    }
}

fn trim_left(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| is_ws(c)).count();
    &s[n..]
}

fn trim_right(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&c| is_ws(c)).count();
    &s[..s.len() - n]
}

fn compress_whitespace(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut in_ws = false;
    for &c in s {
        if is_ws(c) || c == 0xa0 {
            if !in_ws {
                o.push(b' ');
                in_ws = true;
            }
        } else {
            in_ws = false;
            o.push(c);
        }
    }
    o
}

fn hex_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len() / 2);
    let mut i = 0;
    while i + 1 < s.len() {
        o.push(x2c(s[i], s[i + 1]));
        i += 2;
    }
    o
}

fn base64_decode(s: &[u8], ext: bool) -> Vec<u8> {
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let clean: Vec<u8> = if ext {
        s.iter().copied().filter(|&c| is_b64(c)).collect()
    } else {
        s.iter().copied().take_while(|&c| is_b64(c)).collect()
    };
    let mut o = Vec::with_capacity(clean.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in clean {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            _ => 63,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            o.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    o
}

/// ModSecurity `urlDecode`/`urlDecodeUni`: invalid escapes stay as written;
/// `%uXXXX` keeps the low byte, mapping full-width ASCII (`%uFF01`..`%uFF5E`) down.
pub fn url_decode(s: &[u8], uni: bool) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            if uni
                && i + 5 < s.len()
                && (s[i + 1] == b'u' || s[i + 1] == b'U')
                && s[i + 2..i + 6].iter().all(|c| c.is_ascii_hexdigit())
            {
                let mut b = x2c(s[i + 4], s[i + 5]);
                if b > 0x00 && b < 0x5f && s[i + 2..i + 4].eq_ignore_ascii_case(b"ff") {
                    b += 0x20;
                }
                o.push(b);
                i += 6;
                continue;
            }
            if i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit() {
                o.push(x2c(s[i + 1], s[i + 2]));
                i += 3;
                continue;
            }
            o.push(c);
            i += 1;
        } else if c == b'+' {
            o.push(b' ');
            i += 1;
        } else {
            o.push(c);
            i += 1;
        }
    }
    o
}

fn url_encode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    for &c in s {
        if c == b' ' {
            o.push(b'+');
        } else if c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'.' | b'_') {
            o.push(c);
        } else {
            o.extend_from_slice(format!("%{c:02x}").as_bytes());
        }
    }
    o
}

fn cmd_line(s: &[u8]) -> Vec<u8> {
    let mut o: Vec<u8> = Vec::with_capacity(s.len());
    let mut space = false;
    for &c in s {
        match c {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    o.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    o.pop();
                }
                space = false;
                o.push(c);
            }
            _ => {
                o.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    }
    o
}

/// Removes `.`/`..` segments and repeated slashes, as ModSecurity's normalisePath.
fn normalize_path(s: &[u8], win: bool) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    let src: Vec<u8> = if win {
        s.iter()
            .map(|&c| if c == b'\\' { b'/' } else { c })
            .collect()
    } else {
        s.to_vec()
    };
    let absolute = src.first() == Some(&b'/');
    let trailing = src.last() == Some(&b'/')
        || src.ends_with(b"/.")
        || src.ends_with(b"/..")
        || src == b"."
        || src == b"..";
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in src.split(|&c| c == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                if segs.last().is_some_and(|l| *l != b"..") {
                    segs.pop();
                } else if !absolute {
                    segs.push(seg);
                }
            }
            _ => segs.push(seg),
        }
    }
    let mut o = Vec::with_capacity(src.len());
    if absolute {
        o.push(b'/');
    }
    o.extend_from_slice(&segs.join(&b'/'));
    if trailing && !segs.is_empty() {
        o.push(b'/');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// What the byte classes claim unchanged, `apply` leaves unchanged
        /// (bytes drawn mostly from the classes' triggers).
        #[test]
        fn unchanged_set_is_exact(v in proptest::collection::vec(
            prop_oneof![
                proptest::sample::select(b"%+&\\0xX/*-# \t\n\r\x0b\x0c\0Aa\"'^,;.\xa0\xc3u".to_vec()),
                any::<u8>(),
            ],
            0..12,
        )) {
            let set = unchanged_set(classes(&v));
            for t in ALL {
                if set & (1 << t as u32) != 0 {
                    prop_assert!(apply(t, &v).is_none_or(|n| n == v), "{t:?} on {v:?}");
                }
            }
        }
    }

    #[test]
    fn unchanged_set_covers_benign_values() {
        // A plain word: every decoder and normaliser is proven a no-op.
        let set = unchanged_set(classes(b"blue"));
        for t in [
            Transform::UrlDecodeUni,
            Transform::HtmlEntityDecode,
            Transform::JsDecode,
            Transform::Utf8ToUnicode,
            Transform::Lowercase,
            Transform::RemoveNulls,
            Transform::CmdLine,
            Transform::NormalizePath,
            Transform::ReplaceComments,
        ] {
            assert_ne!(set & (1 << t as u32), 0, "{t:?}");
        }
        // Triggers present: no claim.
        let set = unchanged_set(classes(b"A%2F/*x"));
        for t in [
            Transform::UrlDecode,
            Transform::Lowercase,
            Transform::ReplaceComments,
            Transform::Md5,
            Transform::Length,
        ] {
            assert_eq!(set & (1 << t as u32), 0, "{t:?}");
        }
        // Nothing is claimed for transformations that rewrite anything.
        assert_eq!(
            unchanged_set(classes(b"")) & (1 << Transform::Length as u32),
            0
        );
    }

    fn t(t: Transform, s: &str) -> String {
        String::from_utf8_lossy(&apply_all(&[t], s.as_bytes())).into_owned()
    }

    #[test]
    fn url_decode_uni_fullwidth_and_invalid() {
        assert_eq!(
            t(Transform::UrlDecodeUni, "%uff1cscript%3E+%zz"),
            "<script> %zz"
        );
        assert_eq!(t(Transform::UrlDecode, "a%2"), "a%2");
    }

    #[test]
    fn cmd_line_matches_modsecurity() {
        assert_eq!(
            t(Transform::CmdLine, "C^at ,\"/etc/pa\\sswd\""),
            "cat/etc/passwd"
        );
    }

    #[test]
    fn normalize_path() {
        assert_eq!(
            t(Transform::NormalizePath, "/a/./b/../../../etc//passwd"),
            "/etc/passwd"
        );
        assert_eq!(t(Transform::NormalizePathWin, "a\\..\\..\\x"), "../x");
    }

    #[test]
    fn unchanged_shortcut_agrees_with_the_functions() {
        use Transform::*;
        let all = [
            UrlDecode,
            UrlDecodeUni,
            HtmlEntityDecode,
            JsDecode,
            CssDecode,
            EscapeSeqDecode,
            Utf8ToUnicode,
            SqlHexDecode,
            ReplaceComments,
            RemoveComments,
            RemoveCommentsChar,
            CompressWhitespace,
            RemoveWhitespace,
            Trim,
            TrimLeft,
            TrimRight,
            ReplaceNulls,
            Uppercase,
            CmdLine,
            Lowercase,
            RemoveNulls,
            NormalizePath,
            NormalizePathWin,
        ];
        let inputs: [&[u8]; 27] = [
            b"/",
            b"//",
            b"/a/b/",
            b"/a//b",
            b"a/./b",
            b"./a",
            b"../a",
            b"a/..",
            b"a/.",
            b".",
            b"..",
            b"/catalog/search",
            b"a\\b",
            b"/a/.b/..c/",
            b"...",
            b"",
            b"plain",
            b"Mixed Case",
            b" pad ",
            b"a%41+b",
            b"&lt;x",
            b"a\\x41",
            b"0x41 0X",
            b"/* c */ -- #",
            b"x\0y",
            b"\xc3\xa9t\xe9",
            b"c^a\"t/etc,x;y",
        ];
        for t in all {
            for i in inputs {
                if unchanged(t, i) {
                    // The rewrite itself, bypassing the shortcut.
                    let full = rewrite(t, i).unwrap_or_else(|| i.to_vec());
                    assert_eq!(full, i, "{t:?} on {i:?}");
                }
            }
        }
    }

    #[test]
    fn base64_and_length() {
        assert_eq!(t(Transform::Base64Decode, "aGVsbG8=garbage"), "hello");
        assert_eq!(t(Transform::Length, "hello"), "5");
        assert_eq!(t(Transform::CompressWhitespace, "a  \t b"), "a b");
    }
}
