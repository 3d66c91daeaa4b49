// This module includes the SQL keyword data (generated upstream by build.rs
// from libinjection's sqlparse_data.json; the vendored copy always uses the
// committed generated_data.rs).
include!("generated_data.rs");

// Additional helper functions can be added here
impl CharType {
    pub fn is_white(&self) -> bool {
        matches!(self, CharType::White)
    }
    
    pub fn is_word(&self) -> bool {
        matches!(self, CharType::Word | CharType::BWord)
    }
    
    pub fn is_string_start(&self) -> bool {
        matches!(self, CharType::String | CharType::BString | CharType::EString | 
                      CharType::NQString | CharType::QString | 
                      CharType::UString | CharType::XString)
    }
    
    pub fn is_operator(&self) -> bool {
        matches!(self, CharType::Op1 | CharType::Op2 | CharType::Unary)
    }
    
    pub fn is_number(&self) -> bool {
        matches!(self, CharType::Number)
    }
}

// Helper for getting character type
pub fn get_char_type(ch: u8) -> CharType {
    CHAR_MAP[ch as usize]
}

// podwarden patch: a hash lookup of SQL_KEYWORDS replaces the binary search
// over ~9 300 `str`s on an upper-cased heap copy of every word, which took
// about half of libinjection's time on ordinary request values. Same answer
// as `lookup_word_reference` for every input (tested below): a word matches
// an entry when its ASCII upper-cased form equals the entry exactly.

/// Longest keyword; longer words are barewords without hashing.
const MAX_KEYWORD_LEN: usize = 32;
/// Open-addressing table size (power of two, ~3.5× the keyword count).
const TABLE_BITS: u32 = 15;

#[cfg(feature = "std")]
fn hash_upper(word: &[u8]) -> u32 {
    // FNV-1a over the upper-cased bytes: case-insensitive by construction.
    let mut h: u32 = 0x811c_9dc5;
    for &b in word {
        h ^= u32::from(b.to_ascii_uppercase());
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Slot → 1 + index in SQL_KEYWORDS (0: empty), built on first use.
#[cfg(feature = "std")]
fn table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mask = (1usize << TABLE_BITS) - 1;
        let mut t = vec![0u16; 1 << TABLE_BITS];
        for (i, k) in SQL_KEYWORDS.iter().enumerate() {
            let w = k.word.as_bytes();
            // An entry with a lower-case letter can never equal an
            // upper-cased word: the reference lookup never finds it either.
            if w.iter().any(|b| b.is_ascii_lowercase()) || w.len() > MAX_KEYWORD_LEN {
                continue;
            }
            let mut s = hash_upper(w) as usize & mask;
            while t[s] != 0 {
                s = (s + 1) & mask;
            }
            // 9 352 entries fit in u16.
            t[s] = (i + 1) as u16;
        }
        t
    })
}

/// Keyword type of `word` (ASCII case-insensitive), `Bareword` if none.
#[cfg(feature = "std")]
pub fn lookup_word_bytes(word: &[u8]) -> TokenType {
    if word.len() > MAX_KEYWORD_LEN {
        return TokenType::Bareword;
    }
    let t = table();
    let mask = t.len() - 1;
    let mut s = hash_upper(word) as usize & mask;
    loop {
        let e = t[s] as usize;
        if e == 0 {
            return TokenType::Bareword;
        }
        let k = &SQL_KEYWORDS[e - 1];
        let kw = k.word.as_bytes();
        if kw.len() == word.len()
            && kw
                .iter()
                .zip(word)
                .all(|(a, b)| *a == b.to_ascii_uppercase())
        {
            return keyword_type(k.token_type);
        }
        s = (s + 1) & mask;
    }
}

#[cfg(feature = "std")]
pub fn lookup_word(word: &str) -> TokenType {
    lookup_word_bytes(word.as_bytes())
}

#[cfg(not(feature = "std"))]
pub fn lookup_word(word: &str) -> TokenType {
    lookup_word_reference(word)
}

#[cfg(all(test, feature = "std"))]
mod lookup_tests {
    use super::*;

    fn check(w: &str) {
        assert_eq!(lookup_word(w), lookup_word_reference(w), "word {w:?}");
    }

    #[test]
    fn every_keyword_in_three_cases() {
        for k in SQL_KEYWORDS {
            check(k.word);
            check(&k.word.to_ascii_lowercase());
            let mixed: String = k
                .word
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { c.to_ascii_lowercase() } else { c })
                .collect();
            check(&mixed);
        }
    }

    #[test]
    fn non_keywords_and_edge_cases() {
        for w in [
            "", "a", "Mozilla", "blue", "shoes", "SELEC", "SELECTX", "union all", "UNION ALL",
            "0sn", "0SN", "é", "sélect", "\u{0}", "select\u{0}",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            check(w);
        }
        // Every prefix and one-byte variation of some keywords.
        for k in SQL_KEYWORDS.iter().step_by(37) {
            for i in 0..k.word.len() {
                if k.word.is_char_boundary(i) {
                    check(&k.word[..i]);
                    check(&format!("{}x", &k.word[..i]));
                }
            }
        }
    }
}

#[cfg(not(feature = "std"))]
pub fn lookup_word_bytes(word: &[u8]) -> TokenType {
    match core::str::from_utf8(word) {
        Ok(w) => lookup_word_reference(w),
        Err(_) => TokenType::Bareword,
    }
}
