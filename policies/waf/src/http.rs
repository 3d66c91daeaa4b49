//! Parses raw HTTP/1.1 request bytes (for `podwarden waf eval` and tests).

use crate::tx::Request;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("empty request")]
    Empty,
    #[error("bad request line {0:?}")]
    BadRequestLine(String),
    #[error("bad header line {0:?}")]
    BadHeader(String),
    #[error("bad chunked body")]
    BadChunked,
}

/// Parses one request; accepts LF or CRLF line ends; decodes chunked bodies.
pub fn parse_request(raw: &[u8]) -> Result<Request, HttpError> {
    // The head ends at the first blank line, whichever line ending it uses.
    let crlf = crate::operator::find(raw, b"\r\n\r\n").map(|i| (i, 4));
    let lf = crate::operator::find(raw, b"\n\n").map(|i| (i, 2));
    let split = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    let (head, body) = match split {
        Some((i, n)) => (&raw[..i], &raw[i + n..]),
        None => (raw, &b""[..]),
    };
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(HttpError::Empty)?;
    let first_s = String::from_utf8_lossy(first).into_owned();
    let parts: Vec<&str> = first_s.split(' ').filter(|p| !p.is_empty()).collect();
    let (method, uri, protocol) = match parts.as_slice() {
        [m, u, p] => (m.to_string(), u.to_string(), p.to_string()),
        [m, u] => (m.to_string(), u.to_string(), "HTTP/1.0".to_string()),
        _ => return Err(HttpError::BadRequestLine(first_s)),
    };
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        if (l[0] == b' ' || l[0] == b'\t') && !headers.is_empty() {
            if let Some(h) = headers.last_mut() {
                h.1.push(b' ');
                h.1.extend_from_slice(l.trim_ascii());
            }
            continue;
        }
        let colon = l
            .iter()
            .position(|&c| c == b':')
            .ok_or_else(|| HttpError::BadHeader(String::from_utf8_lossy(l).into_owned()))?;
        let name = String::from_utf8_lossy(l[..colon].trim_ascii()).into_owned();
        headers.push((name, l[colon + 1..].trim_ascii().to_vec()));
    }
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding")
            && v.to_ascii_lowercase().windows(7).any(|w| w == b"chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(Request {
        method,
        uri,
        protocol,
        headers,
        body,
        remote_addr: "127.0.0.1".into(),
        remote_port: 40000,
        server_port: 80,
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .iter()
            .position(|&c| c == b'\n')
            .ok_or(HttpError::BadChunked)?;
        let line = String::from_utf8_lossy(&b[..nl]);
        let size_s = line
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let size = usize::from_str_radix(&size_s, 16).map_err(|_| HttpError::BadChunked)?;
        b = &b[nl + 1..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size {
            return Err(HttpError::BadChunked);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size..];
        b = b
            .strip_prefix(b"\r\n")
            .or_else(|| b.strip_prefix(b"\n"))
            .unwrap_or(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_get_and_chunked_post() {
        let r = parse_request(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(
            (r.method.as_str(), r.uri.as_str(), r.headers.len()),
            ("GET", "/a?b=1", 1)
        );
        let r = parse_request(
            b"POST / HTTP/1.1\nTransfer-Encoding: chunked\n\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcd");
        assert!(matches!(parse_request(b""), Err(HttpError::Empty)));
        assert!(parse_request(b"GARBAGE\r\n\r\n").is_err());
    }
}
