//! Protocol detection on the first bytes a client sends. Pure: it looks at a
//! byte slice and says "need more", or what the protocol is. The caller owns
//! reading, the timeout (server-first protocols send nothing) and replaying.

use crate::tls::{parse_client_hello, ClientHello, HelloError};

/// HTTP/2 connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest HTTP/1 request line we wait for before calling the stream opaque.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// What the first bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detected {
    Http1,
    Http2,
    Tls(ClientHello),
    Opaque,
}

/// Detection progress for the bytes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    NeedMore,
    Done(Detected),
}

/// Classifies `buf`, the bytes read so far from a fresh client connection.
pub fn detect(buf: &[u8]) -> Progress {
    if buf.is_empty() {
        return Progress::NeedMore;
    }
    if buf[0] == 0x16 {
        return match parse_client_hello(buf) {
            Ok(hello) => Progress::Done(Detected::Tls(hello)),
            Err(HelloError::Incomplete) => Progress::NeedMore,
            Err(_) => Progress::Done(Detected::Opaque),
        };
    }
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return if buf.len() >= H2_PREFACE.len() {
            Progress::Done(Detected::Http2)
        } else {
            Progress::NeedMore
        };
    }
    detect_http1(buf)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `METHOD SP request-target SP HTTP/1.x CRLF`.
fn detect_http1(buf: &[u8]) -> Progress {
    let line_end = buf.iter().position(|&b| b == b'\n');
    let line = match line_end {
        Some(i) => &buf[..i],
        None => {
            if buf.len() > MAX_REQUEST_LINE {
                return Progress::Done(Detected::Opaque);
            }
            buf
        }
    };
    // Method: tchars up to the first space; a partial line must still look like one.
    let sp = line.iter().position(|&b| b == b' ');
    let method = &line[..sp.unwrap_or(line.len())];
    if method.len() > 32 || !method.iter().all(|&b| is_tchar(b)) || method.is_empty() {
        return Progress::Done(Detected::Opaque);
    }
    let Some(sp) = sp else {
        return if line_end.is_some() {
            Progress::Done(Detected::Opaque)
        } else {
            Progress::NeedMore
        };
    };
    let rest = &line[sp + 1..];
    if rest.iter().any(|&b| b < 0x20 && b != b'\r' || b == 0x7f) {
        return Progress::Done(Detected::Opaque);
    }
    if line_end.is_none() {
        return Progress::NeedMore;
    }
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    match rest.iter().rposition(|&b| b == b' ') {
        Some(i) if i > 0 && matches!(&rest[i + 1..], b"HTTP/1.1" | b"HTTP/1.0") => {
            Progress::Done(Detected::Http1)
        }
        _ => Progress::Done(Detected::Opaque),
    }
}

/// Byte offset just past the end of the first HTTP/1 head (`\r\n\r\n`), if
/// the whole head is in `buf`.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn done(buf: &[u8]) -> Detected {
        match detect(buf) {
            Progress::Done(d) => d,
            Progress::NeedMore => panic!("needs more: {buf:?}"),
        }
    }

    #[test]
    fn http1_request_lines() {
        assert_eq!(done(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Detected::Http1);
        assert_eq!(done(b"POST /x?y=1 HTTP/1.0\r\n"), Detected::Http1);
        assert_eq!(
            done(b"CONNECT example.com:443 HTTP/1.1\r\n"),
            Detected::Http1
        );
        assert_eq!(done(b"GET http://other/ HTTP/1.1\n"), Detected::Http1);
    }

    #[test]
    fn http1_partial_waits() {
        for p in [&b"G"[..], b"GET", b"GET ", b"GET /index", b"GET / HTTP/1."] {
            assert_eq!(detect(p), Progress::NeedMore, "{p:?}");
        }
    }

    #[test]
    fn not_http1() {
        assert_eq!(done(b"*1\r\n$4\r\nPING\r\n"), Detected::Opaque); // redis
        assert_eq!(done(b"GET / HTTP/2.0\r\n"), Detected::Opaque);
        assert_eq!(done(b"GET /\r\n"), Detected::Opaque);
        assert_eq!(done(b"\x00\x01binary"), Detected::Opaque);
        assert_eq!(done(b"SSH-2.0-OpenSSH_9.2\r\n"), Detected::Opaque);
        let long = vec![b'A'; MAX_REQUEST_LINE + 1];
        assert_eq!(done(&long), Detected::Opaque);
    }

    #[test]
    fn h2_preface() {
        assert_eq!(done(H2_PREFACE), Detected::Http2);
        let mut with_frames = H2_PREFACE.to_vec();
        with_frames.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(done(&with_frames), Detected::Http2);
        assert_eq!(detect(&H2_PREFACE[..10]), Progress::NeedMore);
        // "PRI * HTTP/2.0" without the rest of the preface is not h2.
        assert_eq!(done(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"), Detected::Opaque);
    }

    #[test]
    fn finds_head_end() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = detect(&buf);
        }

        #[test]
        fn prefixes_of_http_need_more_or_http(n in 1usize..30) {
            let req = b"DELETE /a/b HTTP/1.1\r\nHost: x\r\n\r\n";
            let n = n.min(req.len());
            let p = detect(&req[..n]);
            prop_assert!(p == Progress::NeedMore || p == Progress::Done(Detected::Http1));
        }
    }
}
