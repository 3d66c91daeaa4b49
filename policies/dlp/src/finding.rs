//! What a scan reports. A finding never holds the sensitive value: only a
//! masked excerpt is ever stored, so no Debug, Display or Serialize path can
//! leak it into logs, events or metrics.

use std::fmt;

use serde::Serialize;

/// How bad a finding is; lets an inspector decide per sensor class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
}

/// Whether the finding is sensitive data or a limit the decoders hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A sensor matched and validated.
    Sensitive,
    /// A decoder stopped at its depth or size bound (e.g. a decompression
    /// bomb): the content behind it was not fully inspected.
    DecodeLimit,
}

/// One match. `offset`/`len` are byte positions in the scanned stream (for
/// matches inside an encoded region, the span of that encoded region).
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    pub sensor: String,
    pub kind: FindingKind,
    pub severity: Severity,
    pub offset: u64,
    pub len: u64,
    /// Decoding layers the value was found under, outermost first
    /// (e.g. `["base64", "gzip"]`); empty when found as-is.
    pub layers: Vec<&'static str>,
    /// Masked excerpt, e.g. `4111 **** **** 1111`. Never the value itself.
    pub masked: String,
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("sensor", &self.sensor)
            .field("kind", &self.kind)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("layers", &self.layers)
            .field("masked", &self.masked)
            .finish()
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}+{}: {}",
            self.sensor, self.offset, self.len, self.masked
        )
    }
}

/// Mask a secret token: keep `keep_head` and `keep_tail` characters, star the
/// rest. Short values are starred entirely so the mask reveals little.
pub fn mask_token(value: &[u8], keep_head: usize, keep_tail: usize) -> String {
    let n = value.len();
    if n <= keep_head + keep_tail + 4 {
        return "*".repeat(n.min(64));
    }
    let mut s = String::with_capacity(n.min(80));
    push_printable(&mut s, &value[..keep_head]);
    let stars = (n - keep_head - keep_tail).min(48);
    s.extend(std::iter::repeat_n('*', stars));
    push_printable(&mut s, &value[n - keep_tail..]);
    s
}

/// Mask digits in a number-like value, keeping the first `keep_head` and last
/// `keep_tail` digits and the separators, so the excerpt keeps its shape
/// (`4111 **** **** 1111`, `***-**-6789`).
pub fn mask_digits(value: &[u8], keep_head: usize, keep_tail: usize) -> String {
    let total = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
    let mut seen = 0usize;
    let mut s = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii_alphanumeric() {
            let keep = seen < keep_head || seen + keep_tail >= total;
            seen += 1;
            s.push(if keep { b as char } else { '*' });
        } else {
            s.push(printable(b));
        }
    }
    s
}

fn push_printable(s: &mut String, bytes: &[u8]) {
    s.extend(bytes.iter().map(|&b| printable(b)));
}

fn printable(b: u8) -> char {
    if b.is_ascii_graphic() || b == b' ' {
        b as char
    } else {
        '.'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_card_keeping_shape() {
        assert_eq!(
            mask_digits(b"4111 1111 1111 1111", 4, 4),
            "4111 **** **** 1111"
        );
        assert_eq!(mask_digits(b"078051120", 0, 4), "*****1120");
    }

    #[test]
    fn masks_token() {
        assert_eq!(
            mask_token(b"AKIAABCDEFGHIJKLMNOP", 4, 4),
            "AKIA************MNOP"
        );
        assert_eq!(mask_token(b"short", 4, 4), "*****");
    }

    #[test]
    fn debug_display_serialize_never_show_more_than_mask() {
        let f = Finding {
            sensor: "aws_access_key_id".into(),
            kind: FindingKind::Sensitive,
            severity: Severity::High,
            offset: 3,
            len: 20,
            layers: vec![],
            masked: mask_token(b"AKIAZZZZQQQQWWWWEEEE", 4, 4),
        };
        for s in [
            format!("{f:?}"),
            format!("{f}"),
            serde_json::to_string(&f).unwrap(),
        ] {
            assert!(!s.contains("ZZZZQQQQWWWW"), "{s}");
            assert!(s.contains("AKIA************EEEE"), "{s}");
        }
    }
}
