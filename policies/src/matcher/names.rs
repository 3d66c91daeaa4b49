//! DNS name patterns (`api.example`, `*.example`) and name normalisation.

use std::borrow::Cow;

/// Lower-case, without a trailing dot. Allocates only when needed.
#[inline]
pub fn normalise(name: &str) -> Cow<'_, str> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// A compiled name pattern; matched against normalised names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern {
    Exact(String),
    /// `*.example` stored as `example`: matches names with at least one more
    /// label (`a.example`, `a.b.example`), never `example` or `badexample`.
    Suffix(String),
}

impl NamePattern {
    pub fn new(pattern: &str) -> NamePattern {
        let p = normalise(pattern);
        match p.strip_prefix("*.") {
            Some(s) => NamePattern::Suffix(s.to_string()),
            None => NamePattern::Exact(p.into_owned()),
        }
    }

    /// `name` must be normalised.
    #[inline]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(e) => e == name,
            NamePattern::Suffix(s) => is_strict_subdomain(name, s),
        }
    }
}

#[inline]
pub fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// The proper suffixes of a name at label boundaries: `a.b.example` gives
/// `b.example`, `example`.
#[inline]
pub fn parent_suffixes(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices()
        .filter(|(_, c)| *c == '.')
        .map(move |(i, _)| &name[i + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_needs_a_label_boundary() {
        let p = NamePattern::new("*.example");
        for (name, want) in [
            ("a.example", true),
            ("a.b.example", true),
            ("example", false),
            ("badexample", false),
            (".example", false),
            ("a.example.evil", false),
        ] {
            assert_eq!(p.matches(name), want, "{name}");
        }
        assert!(NamePattern::new("API.Example.").matches("api.example"));
        assert_eq!(normalise("A.B."), "a.b");
        assert_eq!(
            parent_suffixes("a.b.c").collect::<Vec<_>>(),
            vec!["b.c", "c"]
        );
    }
}
