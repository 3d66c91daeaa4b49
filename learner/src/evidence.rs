//! Evidence aggregation: counts and time bounds kept as integers while
//! learning, rendered as RFC 3339 only when a document is emitted.

use std::collections::BTreeSet;

use podwarden_policy::model::Evidence;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Evidence while learning (unix milliseconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceAgg {
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    pub example: String,
    #[serde(default)]
    pub replicas: BTreeSet<String>,
}

impl EvidenceAgg {
    /// Records one observation at `at_ms`; `example` is only built for the
    /// first observation so that the hot path does not format strings.
    pub fn observe(&mut self, at_ms: u64, example: impl FnOnce() -> String) {
        if self.count == 0 {
            self.first_ms = at_ms;
            self.last_ms = at_ms;
            self.example = example();
        } else {
            self.first_ms = self.first_ms.min(at_ms);
            self.last_ms = self.last_ms.max(at_ms);
        }
        self.count = self.count.saturating_add(1);
    }

    pub fn absorb(&mut self, other: &EvidenceAgg) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other.clone();
            return;
        }
        self.count = self.count.saturating_add(other.count);
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
        self.replicas.extend(other.replicas.iter().cloned());
    }

    pub fn to_evidence(&self) -> Evidence {
        Evidence {
            count: self.count,
            first_seen: rfc3339_ms(self.first_ms),
            last_seen: rfc3339_ms(self.last_ms),
            example: self.example.clone(),
            replicas: self.replicas.iter().cloned().collect(),
        }
    }
}

/// RFC 3339 (UTC, millisecond precision) of a unix time in milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Parses RFC 3339 into unix nanoseconds for ordering; `None` when invalid.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

/// Merges two document-level evidences (sum counts, min first, max last,
/// union replicas). Unparseable times lose to parseable ones.
pub fn merge_evidence(a: &Evidence, b: &Evidence) -> Evidence {
    let earlier = |x: &String, y: &String| match (parse_rfc3339(x), parse_rfc3339(y)) {
        (Some(px), Some(py)) => px <= py,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => x <= y,
    };
    let first_seen = if earlier(&a.first_seen, &b.first_seen) {
        &a.first_seen
    } else {
        &b.first_seen
    };
    let last_seen = if earlier(&a.last_seen, &b.last_seen) {
        &b.last_seen
    } else {
        &a.last_seen
    };
    let mut replicas: BTreeSet<String> = a.replicas.iter().cloned().collect();
    replicas.extend(b.replicas.iter().cloned());
    Evidence {
        count: a.count.saturating_add(b.count),
        first_seen: first_seen.clone(),
        last_seen: last_seen.clone(),
        example: if a.example.is_empty() {
            b.example.clone()
        } else {
            a.example.clone()
        },
        replicas: replicas.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_orders_times() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert!(parse_rfc3339(&rfc3339_ms(5)).is_some());
        assert!(parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn merge_takes_bounds_and_sums() {
        let a = Evidence {
            count: 2,
            first_seen: rfc3339_ms(1000),
            last_seen: rfc3339_ms(5000),
            example: "a".into(),
            replicas: vec!["p1".into()],
        };
        let b = Evidence {
            count: 3,
            first_seen: rfc3339_ms(500),
            last_seen: rfc3339_ms(4000),
            example: "b".into(),
            replicas: vec!["p2".into(), "p1".into()],
        };
        let m = merge_evidence(&a, &b);
        assert_eq!(m.count, 5);
        assert_eq!(m.first_seen, rfc3339_ms(500));
        assert_eq!(m.last_seen, rfc3339_ms(5000));
        assert_eq!(m.example, "a");
        assert_eq!(m.replicas, vec!["p1".to_string(), "p2".to_string()]);
    }
}
