//! The HTTP methods a rule lists, as a bit set for the usual ones: checking
//! a request then reads no string of the rule (with thousands of HTTP rules
//! the listed method strings were a cache miss each).

/// Methods with a bit, matched exactly (case-sensitive, like the list).
const KNOWN: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

#[inline]
fn bit(method: &str) -> Option<u16> {
    KNOWN.iter().position(|k| *k == method).map(|i| 1 << i)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct MethodSet {
    known: u16,
    /// Listed methods without a bit (extension methods, other spellings).
    other: Vec<String>,
}

impl MethodSet {
    pub(crate) fn new(methods: &[String]) -> MethodSet {
        let mut s = MethodSet::default();
        for m in methods {
            match bit(m) {
                Some(b) => s.known |= b,
                None => s.other.push(m.clone()),
            }
        }
        s
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.known == 0 && self.other.is_empty()
    }

    /// An empty list admits every method; otherwise `method` must be listed
    /// exactly.
    #[inline]
    pub(crate) fn admits(&self, method: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        match bit(method) {
            Some(b) => self.known & b != 0,
            None => self.other.iter().any(|m| m == method),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ms: &[&str]) -> MethodSet {
        MethodSet::new(&ms.iter().map(|m| m.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn admits_exactly_the_listed_methods() {
        let s = set(&["GET", "PROPFIND", "post"]);
        for (m, want) in [
            ("GET", true),
            ("get", false),
            ("POST", false),
            ("post", true),
            ("PROPFIND", true),
            ("PUT", false),
            ("", false),
        ] {
            assert_eq!(s.admits(m), want, "{m}");
        }
        assert!(set(&[]).admits("ANYTHING"));
        assert!(set(&[]).is_empty() && !set(&["GET"]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_the_list(
            list in proptest::collection::vec("(GET|POST|get|PUT|X|DELETE|TRACE|)", 0..4),
            m in "(GET|POST|get|PUT|X|DELETE|TRACE|HEAD|)",
        ) {
            let want = list.is_empty() || list.contains(&m);
            proptest::prop_assert_eq!(MethodSet::new(&list).admits(&m), want);
        }
    }
}
