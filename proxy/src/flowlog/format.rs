//! One flow record per line: `<crc32 of the JSON, 8 hex digits> <JSON>\n`.
//!
//! Text keeps the log greppable and lets `tail -f | cut -d' ' -f2-` feed
//! other tools; the checksum catches torn writes and bit rot that would still
//! parse as JSON. Readers also accept bare JSON lines (exports, `/flows`
//! dumps), which carry no checksum.

use podwarden_policy::FlowRecord;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LineError {
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("malformed line: {0}")]
    Malformed(String),
    #[error("not a flow record: {0}")]
    Json(String),
}

/// The line for `rec`, newline included.
pub fn encode(rec: &FlowRecord) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(rec)?;
    let crc = crc32fast::hash(&json);
    let mut out = Vec::with_capacity(json.len() + 10);
    out.extend_from_slice(format!("{crc:08x} ").as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(out)
}

/// Parses one line (without its newline): checksummed or bare JSON.
pub fn decode(line: &[u8]) -> Result<FlowRecord, LineError> {
    let line = trim_ascii(line);
    let json = if line.first() == Some(&b'{') {
        line
    } else {
        let (hex, json) = match line.iter().position(|b| *b == b' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => return Err(LineError::Malformed("no checksum separator".into())),
        };
        let stored = std::str::from_utf8(hex)
            .ok()
            .filter(|h| h.len() == 8)
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| LineError::Malformed("bad checksum field".into()))?;
        let computed = crc32fast::hash(json);
        if stored != computed {
            return Err(LineError::Checksum { stored, computed });
        }
        json
    };
    serde_json::from_slice(json).map_err(|e| LineError::Json(e.to_string()))
}

fn trim_ascii(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use podwarden_policy::{Decision, Direction, Flow, HttpRequestInfo, RecordKind};
    use proptest::prelude::*;

    pub(crate) fn record(id: &str, start_ms: u64) -> FlowRecord {
        let mut flow = Flow::connection(
            Direction::Outbound,
            "198.51.100.10:8000".parse().unwrap(),
            "192.0.2.10:40000".parse().unwrap(),
        );
        flow.http = Some(HttpRequestInfo {
            method: "GET".into(),
            host: Some("api.example".into()),
            path: "/users/42".into(),
            target: None,
        });
        FlowRecord {
            id: id.into(),
            start_ms,
            duration_ms: 3,
            flow,
            bytes_sent: 10,
            bytes_received: 20,
            decision: Decision::allow_learning(),
            kind: RecordKind::Request,
            status: Some(200),
        }
    }

    #[test]
    fn roundtrip_and_bare_json() {
        let r = record("a", 7);
        let line = encode(&r).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(decode(&line).unwrap(), r);
        let bare = serde_json::to_vec(&r).unwrap();
        assert_eq!(decode(&bare).unwrap(), r);
    }

    #[test]
    fn flipped_byte_is_a_checksum_error() {
        let mut line = encode(&record("a", 7)).unwrap();
        // Change a digit inside the JSON: still valid JSON, wrong checksum.
        let pos = line.windows(4).position(|w| w == b"4000").unwrap();
        line[pos] = b'5';
        assert!(matches!(decode(&line), Err(LineError::Checksum { .. })));
    }

    #[test]
    fn truncated_line_is_an_error() {
        let line = encode(&record("a", 7)).unwrap();
        for cut in [0, 5, 9, 20, line.len() - 3] {
            assert!(decode(&line[..cut]).is_err(), "cut at {cut}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutations_never_yield_a_different_record(
            pos in 0usize..400, byte in any::<u8>(), start in 0u64..u64::MAX / 2
        ) {
            let r = record("x", start);
            let mut line = encode(&r).unwrap();
            let pos = pos % line.len();
            line[pos] = byte;
            // Either rejected, or (a no-op or whitespace change) the same record.
            if let Ok(back) = decode(&line) {
                prop_assert_eq!(back, r);
            }
        }
    }
}
