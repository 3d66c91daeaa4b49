//! HTTP path patterns: exact (`/healthz`), prefix (`/static/*`) and
//! templates with `{param}` segments (`/users/{id}/orders`, which may also end
//! in `/*`).
//!
//! Request paths that could mean something else to the server than to us —
//! dot segments, encoded slashes or dots, backslashes, empty segments — never
//! match a pattern: `/static/../admin` must not pass as `/static/*`.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// Ends in `/*`: anything (including nothing) may follow.
    prefix: bool,
}

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
        let mut segments = Vec::new();
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
                    segments.push(Segment::Param);
                } else if seg.contains(['{', '}']) {
                    return err("a `{param}` must be a whole segment");
                } else {
                    segments.push(Segment::Literal(seg.to_string()));
                }
            }
        }
        // `/` alone is an exact match for the root.
        Ok(PathPattern { segments, prefix })
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
        for want in &self.segments {
            let Some(got) = parts.as_mut().and_then(|p| p.next()) else {
                return false;
            };
            let ok = match want {
                Segment::Literal(l) => l == got,
                Segment::Param => !got.is_empty(),
            };
            if !ok {
                return false;
            }
        }
        let remaining = parts.and_then(|mut p| p.next());
        match remaining {
            None => true,
            // A trailing slash (`/static/`) is the directory itself.
            Some("") => self.prefix || self.segments.is_empty(),
            Some(_) => self.prefix,
        }
    }
}

fn is_ambiguous(rest: &str) -> bool {
    if rest.contains('\\') || rest.contains("//") {
        return true;
    }
    if rest.split('/').any(|s| s == "." || s == "..") {
        return true;
    }
    // Percent-encoded `.`, `/`, `\` and `%` itself (double encoding).
    let b = rest.as_bytes();
    b.windows(3).any(|w| {
        w[0] == b'%'
            && matches!(
                (w[1].to_ascii_lowercase(), w[2].to_ascii_lowercase()),
                (b'2', b'e') | (b'2', b'f') | (b'5', b'c') | (b'2', b'5')
            )
    })
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
