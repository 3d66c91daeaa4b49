//! HTTP path patterns: exact (`/healthz`), prefix (`/static/*`) and
//! templates with `{param}` segments (`/users/{id}/orders`, which may also end
//! in `/*`).
//!
//! Request paths that could mean something else to the server than to us —
//! dot segments, encoded slashes or dots, backslashes, empty segments — never
//! match a pattern: `/static/../admin` must not pass as `/static/*`.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    /// The segments after the leading `/` (without a final `/*`), joined by
    /// `/`, every parameter written `{}`; empty for `/` and `/*`. One string
    /// read in place when matching: with thousands of HTTP rules a vector of
    /// segment strings cost a cache miss per segment.
    body: Box<str>,
    /// Ends in `/*`: anything (including nothing) may follow.
    prefix: bool,
}

const PARAM: &str = "{}";

impl PathPattern {
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        let err = |why: &str| Err(format!("invalid path {pattern:?}: {why}"));
        let Some(rest) = pattern.strip_prefix('/') else {
            return err("must start with `/`");
        };
        if pattern.contains(['?', '#']) {
            return err("no query or fragment; paths are matched without the query string");
        }
        let (body, prefix) = match rest.strip_suffix('*') {
            Some(b) if b.is_empty() || b.ends_with('/') => (b.trim_end_matches('/'), true),
            Some(_) => return err("`*` is only allowed as the last segment, as in `/static/*`"),
            None => (rest, false),
        };
        let mut segments: Vec<&str> = Vec::new();
        if !body.is_empty() {
            for seg in body.split('/') {
                if seg.is_empty() {
                    return err("empty segment (`//`)");
                }
                if seg == "." || seg == ".." {
                    return err("dot segments are not allowed");
                }
                if seg.contains('*') {
                    return err("`*` is only allowed as the last segment, as in `/static/*`");
                }
                if let Some(name) = seg.strip_prefix('{') {
                    let Some(name) = name.strip_suffix('}') else {
                        return err("a `{param}` must be a whole segment");
                    };
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return err("parameter names are letters, digits and `_`");
                    }
                    segments.push(PARAM);
                } else if seg.contains(['{', '}']) {
                    return err("a `{param}` must be a whole segment");
                } else {
                    segments.push(seg);
                }
            }
        }
        // `/` alone is an exact match for the root.
        Ok(PathPattern {
            body: segments.join("/").into_boxed_str(),
            prefix,
        })
    }

    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        if is_ambiguous(rest) {
            return false;
        }
        let mut parts = if rest.is_empty() {
            None
        } else {
            Some(rest.split('/'))
        };
        let wants = (!self.body.is_empty()).then(|| self.body.split('/'));
        for want in wants.into_iter().flatten() {
            let Some(got) = parts.as_mut().and_then(|p| p.next()) else {
                return false;
            };
            // Literals never contain `{` (parse refuses it), so `{}` is
            // always a parameter.
            let ok = if want == PARAM {
                !got.is_empty()
            } else {
                want == got
            };
            if !ok {
                return false;
            }
        }
        let remaining = parts.and_then(|mut p| p.next());
        match remaining {
            None => true,
            // A trailing slash (`/static/`) is the directory itself.
            Some("") => self.prefix || self.body.is_empty(),
            Some(_) => self.prefix,
        }
    }
}

/// `rest` is the path after its leading `/`. One pass over the bytes: this
/// runs for every request an HTTP rule is checked against.
fn is_ambiguous(rest: &str) -> bool {
    let b = rest.as_bytes();
    let dot_segment = |s: &[u8]| s == b"." || s == b"..";
    let mut seg_start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'\\' => return true,
            b'/' => {
                // `//` (an empty segment) or a dot segment before this slash.
                if (i > 0 && b[i - 1] == b'/') || dot_segment(&b[seg_start..i]) {
                    return true;
                }
                seg_start = i + 1;
            }
            // Percent-encoded `.`, `/`, `\` and `%` itself (double encoding).
            b'%' => {
                if let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2)) {
                    if matches!(
                        (h.to_ascii_lowercase(), l.to_ascii_lowercase()),
                        (b'2', b'e') | (b'2', b'f') | (b'5', b'c') | (b'2', b'5')
                    ) {
                        return true;
                    }
                }
            }
            _ => {}
        }
    }
    dot_segment(&b[seg_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/healthz", "/healthz", true),
            ("/healthz", "/healthz/", false),
            ("/healthz", "/healthzz", false),
            ("/healthz", "/", false),
            ("/", "/", true),
            ("/", "/a", false),
            ("/*", "/", true),
            ("/*", "/anything/at/all", true),
            ("/static/*", "/static", true),
            ("/static/*", "/static/", true),
            ("/static/*", "/static/css/a.css", true),
            ("/static/*", "/staticx/a", false),
            ("/static/*", "/static/../admin", false),
            ("/static/*", "/static/%2e%2e/admin", false),
            ("/static/*", "/static/..%2Fadmin", false),
            ("/static/*", "/static//etc", false),
            ("/static/*", "/static\\..\\admin", false),
            ("/users/{id}/orders", "/users/42/orders", true),
            ("/users/{id}/orders", "/users/42/orders/", false),
            ("/users/{id}/orders", "/users//orders", false),
            ("/users/{id}/orders", "/users/42/43/orders", false),
            ("/users/{id}/orders", "/users/42", false),
            ("/users/{id}/*", "/users/42/anything/else", true),
            ("/users/{id}/*", "/users/42", true),
            ("/users/{id}/*", "/users", false),
            ("/a", "a", false),
            ("/a", "", false),
        ];
        for (pat, path, want) in cases {
            let p = PathPattern::parse(pat).unwrap();
            assert_eq!(p.matches(path), *want, "{pat} vs {path}");
        }
    }

    /// The checks as first written, one pass each.
    fn is_ambiguous_reference(rest: &str) -> bool {
        if rest.contains('\\') || rest.contains("//") {
            return true;
        }
        if rest.split('/').any(|s| s == "." || s == "..") {
            return true;
        }
        let b = rest.as_bytes();
        b.windows(3).any(|w| {
            w[0] == b'%'
                && matches!(
                    (w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()),
                    (b'2', b'e') | (b'2', b'f') | (b'5', b'c') | (b'2', b'5')
                )
        })
    }

    proptest::proptest! {
        #[test]
        fn one_pass_ambiguity_check_agrees_with_the_reference(
            rest in "[/.%25eEfFcCa\\\\]{0,12}"
        ) {
            proptest::prop_assert_eq!(is_ambiguous(&rest), is_ambiguous_reference(&rest), "{:?}", rest);
        }
    }

    #[test]
    fn ambiguity_cases() {
        for (rest, want) in [
            ("", false),
            ("a/b", false),
            ("a/./b", true),
            ("a/..", true),
            ("..", true),
            ("...", false),
            ("a//b", true),
            ("/a", false),
            ("a\\b", true),
            ("a%2Eb", true),
            ("a%2", false),
            ("a%25", true),
            ("a%41", false),
        ] {
            assert_eq!(is_ambiguous(rest), want, "{rest:?}");
            assert_eq!(is_ambiguous_reference(rest), want, "{rest:?}");
        }
    }

    #[test]
    fn parameters_are_equal_whatever_their_names() {
        let p = |s: &str| PathPattern::parse(s).unwrap();
        assert_eq!(p("/a/{id}/b"), p("/a/{x}/b"));
        assert_ne!(p("/a/{id}/b"), p("/a/{id}/c"));
        assert_ne!(p("/a/*"), p("/a"));
        assert_eq!(p("/*").body, p("/").body);
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "", "static", "/a*", "/a/*/b", "/a/{", "/a/{}", "/a/x{id}", "/a//b", "/a/../b",
            "/a?x=1", "/{a-b}",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
