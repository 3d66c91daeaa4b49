//! `@rx` compilation: the fast `regex` crate (byte mode, no Unicode classes,
//! like PCRE without UTF) and `fancy-regex` only for patterns that need
//! backtracking features (look-around, back-references, atomic groups).

#[derive(Debug)]
pub enum CompiledRegex {
    Fast(regex::bytes::Regex),
    Fancy(fancy_regex::Regex),
}

/// Prefix of `as_str()` of a `Fast` regex compiled in Unicode mode.
pub(crate) const UNICODE_MARK: &str = "(?u)";

/// PCRE without UTF reads `\x{bc}` as the byte 0xBC; the regex crate in
/// byte mode does so only for `\xbc`, so rewrite the braced form.
fn byte_escapes(pat: &str) -> String {
    let mut out = String::with_capacity(pat.len());
    let mut it = pat.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let rest = &pat[i + 1..];
        if let Some(inner) = rest
            .strip_prefix("x{")
            .and_then(|r| r.split_once('}'))
            .map(|(h, _)| h)
        {
            if !inner.is_empty() && inner.len() <= 2 && inner.chars().all(|h| h.is_ascii_hexdigit())
            {
                out.push_str(&format!("\\x{inner:0>2}"));
                for _ in 0..inner.len() + 3 {
                    it.next();
                }
                continue;
            }
        }
        out.push('\\');
        if let Some((_, n)) = it.next() {
            out.push(n);
        }
    }
    out
}

impl CompiledRegex {
    pub fn new(pat: &str) -> Result<CompiledRegex, String> {
        let pcre_bytes = byte_escapes(pat);
        match regex::bytes::RegexBuilder::new(&pcre_bytes)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
        {
            Ok(r) => Ok(CompiledRegex::Fast(r)),
            Err(fast_err) => {
                // Byte-mode rejected it: Unicode literals or PCRE-only syntax.
                // The `(?u)` prefix (already the default here) marks the mode
                // in `as_str()` for the prefilter's literal analysis.
                if let Ok(r) = regex::bytes::RegexBuilder::new(&format!("{UNICODE_MARK}{pat}"))
                    .size_limit(64 << 20)
                    .build()
                {
                    return Ok(CompiledRegex::Fast(r));
                }
                fancy_regex::RegexBuilder::new(pat)
                    .backtrack_limit(1_000_000)
                    .build()
                    .map(CompiledRegex::Fancy)
                    .map_err(|e| format!("bad regex {pat:?}: {e} (regex crate: {fast_err})"))
            }
        }
    }

    pub fn is_fancy(&self) -> bool {
        matches!(self, CompiledRegex::Fancy(_))
    }

    pub fn is_match(&self, v: &[u8]) -> bool {
        match self {
            CompiledRegex::Fast(r) => r.is_match(v),
            CompiledRegex::Fancy(r) => r.is_match(&String::from_utf8_lossy(v)).unwrap_or(false),
        }
    }

    /// The whole match and up to nine groups, for `capture`.
    pub fn captures(&self, v: &[u8]) -> Option<Vec<Vec<u8>>> {
        match self {
            CompiledRegex::Fast(r) => r.captures(v).map(|c| {
                (0..c.len().min(10))
                    .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()).unwrap_or_default())
                    .collect()
            }),
            CompiledRegex::Fancy(r) => {
                let s = String::from_utf8_lossy(v);
                match r.captures(&s) {
                    Ok(Some(c)) => Some(
                        (0..c.len().min(10))
                            .map(|i| {
                                c.get(i)
                                    .map(|m| m.as_str().as_bytes().to_vec())
                                    .unwrap_or_default()
                            })
                            .collect(),
                    ),
                    _ => None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_semantics_like_pcre_without_utf() {
        let r = CompiledRegex::new(r"\x{bc}[^>\x{be}]*[>\x{be}]|<[^\x{be}]*\x{be}").unwrap();
        assert!(!r.is_fancy());
        assert!(r.is_match(b"\xbcscript\xbealert"));
        assert_eq!(
            byte_escapes(r"\\x{bc}\x{e2}\x{2028}"),
            r"\\x{bc}\xe2\x{2028}"
        );
        let r = CompiledRegex::new(r"(?i)^a.c$").unwrap();
        assert!(r.is_match(b"A\xffC"));
    }
}
