//! Answers the DNS listener gives itself instead of forwarding a query.
//! Pure: bytes in, bytes out.

/// NXDOMAIN: the name does not exist.
pub const RCODE_NXDOMAIN: u8 = 3;
/// REFUSED: the server will not answer this query.
pub const RCODE_REFUSED: u8 = 5;

/// A response to `query` with no records and the given RCODE: the header
/// (same id, opcode, RD and CD; QR and RA set) and the one question echoed,
/// with the additional section (EDNS OPT, cookies, TSIG) left out, since
/// echoing it would claim things this listener does not do. `None` when
/// `query` is not a well-formed query with exactly one uncompressed
/// question: there is nothing sane to answer then.
pub fn negative_answer(query: &[u8], rcode: u8) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let is_response = header[2] & 0x80 != 0;
    let qdcount = u16::from_be_bytes([header[4], header[5]]);
    if is_response || qdcount != 1 {
        return None;
    }
    let question_end = question_end(query, 12)?;
    let mut out = Vec::with_capacity(question_end);
    out.extend_from_slice(&header[..2]);
    // QR=1, opcode and RD as asked; AA and TC clear.
    out.push(0x80 | (header[2] & 0x79));
    // RA=1, CD as asked, Z and AD clear.
    out.push(0x80 | (header[3] & 0x10) | (rcode & 0x0F));
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    Some(out)
}

/// Offset just past the question (name, type, class) starting at `at`.
/// Compression pointers are rejected: the first name of a message has
/// nothing before it to point to.
fn question_end(msg: &[u8], mut at: usize) -> Option<usize> {
    let mut name_len = 0usize;
    loop {
        let len = usize::from(*msg.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        name_len += len + 1;
        if name_len > 255 {
            return None;
        }
        at += len;
    }
    let end = at.checked_add(4)?;
    (end <= msg.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{parse_message, RecordType};

    /// `api.example` A with RD, CD and an EDNS OPT record in additional.
    fn query() -> Vec<u8> {
        let mut m = vec![0xAB, 0xCD, 0x01, 0x10, 0, 1, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(b"\x03api\x07example\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
        m
    }

    #[test]
    fn nxdomain_echoes_the_question_only() {
        let q = query();
        let r = negative_answer(&q, RCODE_NXDOMAIN).unwrap();
        assert_eq!(&r[..2], &[0xAB, 0xCD], "same id");
        assert_eq!(r[2], 0x81, "QR and RD");
        assert_eq!(r[3], 0x80 | 0x10 | 3, "RA, CD, NXDOMAIN");
        assert_eq!(&r[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        let m = parse_message(&r).unwrap();
        assert!(m.is_response);
        assert_eq!(m.questions.len(), 1);
        assert_eq!(m.questions[0].name, "api.example");
        assert_eq!(m.questions[0].qtype, RecordType::A);
        assert_eq!(r.len(), q.len() - 11, "OPT record dropped");
        let refused = negative_answer(&q, RCODE_REFUSED).unwrap();
        assert_eq!(refused[3] & 0x0F, 5);
    }

    #[test]
    fn malformed_queries_get_none() {
        let q = query();
        // Truncated header, truncated question, a response, two questions,
        // a compression pointer, an over-long label.
        assert!(negative_answer(&q[..11], RCODE_NXDOMAIN).is_none());
        assert!(negative_answer(&q[..20], RCODE_NXDOMAIN).is_none());
        assert!(negative_answer(&q[..27], RCODE_NXDOMAIN).is_none());
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(negative_answer(&resp, RCODE_NXDOMAIN).is_none());
        let mut two = q.clone();
        two[5] = 2;
        assert!(negative_answer(&two, RCODE_NXDOMAIN).is_none());
        let mut ptr = q[..12].to_vec();
        ptr.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
        assert!(negative_answer(&ptr, RCODE_NXDOMAIN).is_none());
        let mut long = q[..12].to_vec();
        long.push(64);
        long.extend_from_slice(&[b'a'; 64]);
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(negative_answer(&long, RCODE_NXDOMAIN).is_none());
        assert!(negative_answer(&[], RCODE_NXDOMAIN).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = negative_answer(&bytes, RCODE_NXDOMAIN);
        }

        #[test]
        fn the_question_survives(
            labels in proptest::collection::vec("[a-z0-9_][a-z0-9_-]{0,19}", 1..6),
            qtype in proptest::sample::select(vec![1u16, 28, 5, 16, 12, 33, 15, 65]),
        ) {
            let name = labels.join(".");
            let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            for l in &labels {
                q.push(l.len() as u8);
                q.extend_from_slice(l.as_bytes());
            }
            q.push(0);
            q.extend_from_slice(&qtype.to_be_bytes());
            q.extend_from_slice(&[0, 1]);
            let r = negative_answer(&q, RCODE_NXDOMAIN).unwrap();
            let m = parse_message(&r).unwrap();
            proptest::prop_assert!(m.is_response);
            proptest::prop_assert_eq!(m.questions.len(), 1);
            proptest::prop_assert_eq!(&m.questions[0].name, &name);
            proptest::prop_assert_eq!(m.questions[0].qtype, RecordType::from_code(qtype));
        }
    }
}
