//! TLS ClientHello parsing: SNI and ALPN, across fragmented records.
//! Pure and defensive: every length is checked, nothing panics, and
//! "not enough bytes yet" is distinguished from "not a ClientHello".

use thiserror::Error;

/// Largest ClientHello we are willing to buffer (post-quantum key shares make
/// hellos of a few KiB common; 64 KiB leaves ample room).
pub const MAX_HELLO: usize = 64 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("need more bytes")]
    Incomplete,
    #[error("not a TLS handshake record")]
    NotHandshake,
    #[error("not a ClientHello")]
    NotClientHello,
    #[error("ClientHello larger than {MAX_HELLO} bytes")]
    TooLarge,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

/// Parses the ClientHello at the start of `buf` (one or more TLS records).
pub fn parse_client_hello(buf: &[u8]) -> Result<ClientHello, HelloError> {
    let msg = reassemble_handshake(buf)?;
    parse_hello_body(msg.as_slice())
}

/// Concatenates handshake record fragments until the first handshake message
/// is complete; returns that message body (after its 4-byte header).
fn reassemble_handshake(buf: &[u8]) -> Result<Vec<u8>, HelloError> {
    let mut hs = Vec::new();
    let mut rest = buf;
    loop {
        if rest.len() < 5 {
            return Err(HelloError::Incomplete);
        }
        if rest[0] != 0x16 {
            return Err(HelloError::NotHandshake);
        }
        if rest[1] != 3 {
            return Err(HelloError::NotHandshake);
        }
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len == 0 || len > 16384 + 2048 {
            return Err(HelloError::Malformed("record length"));
        }
        if hs.is_empty() && rest.len() > 5 && rest[5] != 1 {
            return Err(HelloError::NotClientHello);
        }
        let avail = &rest[5..];
        let take = avail.len().min(len);
        hs.extend_from_slice(&avail[..take]);
        if hs.len() >= 4 {
            if hs[0] != 1 {
                return Err(HelloError::NotClientHello);
            }
            let msg_len = u32::from_be_bytes([0, hs[1], hs[2], hs[3]]) as usize;
            if msg_len > MAX_HELLO {
                return Err(HelloError::TooLarge);
            }
            if hs.len() >= 4 + msg_len {
                hs.truncate(4 + msg_len);
                hs.drain(..4);
                return Ok(hs);
            }
        }
        if take < len {
            return Err(HelloError::Incomplete);
        }
        rest = &rest[5 + len..];
    }
}

/// A bounds-checked cursor over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, HelloError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, HelloError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], HelloError> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }
}

fn parse_hello_body(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut r = Reader(body);
    r.take(2, "client version")?;
    r.take(32, "random")?;
    r.vec8("session id")?;
    r.vec16("cipher suites")?;
    r.vec8("compression methods")?;
    let mut hello = ClientHello::default();
    if r.0.is_empty() {
        return Ok(hello); // no extensions at all (TLS 1.0-era clients)
    }
    let mut exts = Reader(r.vec16("extensions")?);
    while !exts.0.is_empty() {
        let typ = exts.u16("extension type")?;
        let data = exts.vec16("extension data")?;
        match typ {
            0 => hello.sni = parse_sni(data)?,
            16 => hello.alpn = parse_alpn(data)?,
            _ => {}
        }
    }
    Ok(hello)
}

fn parse_sni(data: &[u8]) -> Result<Option<String>, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("server name list")?);
    while !list.0.is_empty() {
        let typ = list.u8("server name type")?;
        let name = list.vec16("server name")?;
        if typ == 0 {
            let name = std::str::from_utf8(name)
                .map_err(|_| HelloError::Malformed("server name utf-8"))?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(HelloError::Malformed("server name characters"));
            }
            return Ok(Some(name.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, HelloError> {
    let mut r = Reader(data);
    let mut list = Reader(r.vec16("alpn list")?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        let proto = list.vec8("alpn protocol")?;
        out.push(String::from_utf8_lossy(proto).into_owned());
    }
    Ok(out)
}

/// Builds a syntactically valid ClientHello record for tests and benches.
pub fn build_client_hello(sni: Option<&str>, alpn: &[&str]) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let n = name.as_bytes();
        let mut e = Vec::new();
        e.extend_from_slice(&((n.len() + 3) as u16).to_be_bytes());
        e.push(0);
        e.extend_from_slice(&(n.len() as u16).to_be_bytes());
        e.extend_from_slice(n);
        exts.extend_from_slice(&0u16.to_be_bytes());
        exts.extend_from_slice(&(e.len() as u16).to_be_bytes());
        exts.extend_from_slice(&e);
    }
    if !alpn.is_empty() {
        let mut l = Vec::new();
        for p in alpn {
            l.push(p.len() as u8);
            l.extend_from_slice(p.as_bytes());
        }
        exts.extend_from_slice(&16u16.to_be_bytes());
        exts.extend_from_slice(&((l.len() + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(l.len() as u16).to_be_bytes());
        exts.extend_from_slice(&l);
    }
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sni_and_alpn() {
        let rec = build_client_hello(Some("Api.Example.com"), &["h2", "http/1.1"]);
        let h = parse_client_hello(&rec).unwrap();
        assert_eq!(h.sni.as_deref(), Some("api.example.com"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    }

    #[test]
    fn no_extensions() {
        let rec = build_client_hello(None, &[]);
        assert_eq!(parse_client_hello(&rec).unwrap(), ClientHello::default());
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let rec = build_client_hello(Some("example.com"), &["h2"]);
        for n in 0..rec.len() {
            assert_eq!(
                parse_client_hello(&rec[..n]),
                Err(HelloError::Incomplete),
                "n={n}"
            );
        }
    }

    #[test]
    fn fragmented_across_records() {
        let rec = build_client_hello(Some("frag.example"), &["http/1.1"]);
        let hs = &rec[5..];
        let mut split = Vec::new();
        for chunk in hs.chunks(7) {
            split.extend_from_slice(&[0x16, 3, 1]);
            split.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
            split.extend_from_slice(chunk);
        }
        let h = parse_client_hello(&split).unwrap();
        assert_eq!(h.sni.as_deref(), Some("frag.example"));
        assert_eq!(
            parse_client_hello(&split[..split.len() - 1]),
            Err(HelloError::Incomplete)
        );
    }

    #[test]
    fn rejects_non_hello() {
        assert_eq!(
            parse_client_hello(&[0x17, 3, 3, 0, 1, 0]),
            Err(HelloError::NotHandshake)
        );
        assert_eq!(
            parse_client_hello(&[0x16, 3, 3, 0, 4, 2, 0, 0, 0]),
            Err(HelloError::NotClientHello)
        );
        // handshake length claims more than the body holds: malformed inside.
        let mut rec = build_client_hello(Some("x.example"), &[]);
        rec[5 + 4 + 2 + 32] = 200; // session id length beyond the message
        assert!(matches!(
            parse_client_hello(&rec),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn captured_openssl_hello() {
        // `openssl s_client -servername captured.example -alpn h2,http/1.1`
        // ClientHello (340 bytes), captured with a raw listener.
        let rec = include_bytes!("../testdata/openssl_client_hello.bin");
        let h = parse_client_hello(rec).unwrap();
        assert_eq!(h.sni.as_deref(), Some("captured.example"));
        assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    }

    proptest! {
        #[test]
        fn never_panics(mut buf in proptest::collection::vec(any::<u8>(), 0..400)) {
            if !buf.is_empty() { buf[0] = 0x16; }
            if buf.len() > 1 { buf[1] = 3; }
            let _ = parse_client_hello(&buf);
        }
    }
}
