//! `@rx` compilation: the fast `regex` crate (byte mode, no Unicode classes,
//! like PCRE without UTF) and `fancy-regex` only for patterns that need
//! backtracking features (look-around, back-references, atomic groups).

#[derive(Debug)]
pub enum CompiledRegex {
    Fast(regex::bytes::Regex),
    Fancy(fancy_regex::Regex),
}

impl CompiledRegex {
    pub fn new(pat: &str) -> Result<CompiledRegex, String> {
        match regex::bytes::RegexBuilder::new(pat)
            .unicode(false)
            .size_limit(64 << 20)
            .dfa_size_limit(64 << 20)
            .build()
        {
            Ok(r) => Ok(CompiledRegex::Fast(r)),
            Err(fast_err) => {
                // Byte-mode rejected it: Unicode literals or PCRE-only syntax.
                if let Ok(r) = regex::bytes::RegexBuilder::new(pat)
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
