//! Pure HTTP header handling: what a request asks for (for the Flow),
//! ambiguity checks (request smuggling), and hop-by-hop stripping.

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Version};
use podwarden_policy::HttpRequestInfo;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Ambiguous {
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthAndTransferEncoding,
    #[error("more than one Content-Length")]
    DuplicateContentLength,
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("malformed request head: {0}")]
    Malformed(String),
}

/// Checks the raw bytes of a complete HTTP/1 request head. hyper resolves
/// CL+TE (Transfer-Encoding wins) and folds identical duplicate
/// Content-Length lines before we see the parsed headers, so the only place
/// to reject such requests is the raw head.
pub fn check_raw_head(head: &[u8]) -> Result<(), Ambiguous> {
    let mut hdrs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hdrs);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(()), // hyper will judge the rest
        Err(e) => return Err(Ambiguous::Malformed(e.to_string())),
    }
    let mut cl = 0;
    let mut te = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl += 1;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = true;
        }
    }
    verdict(cl, te)
}

fn verdict(content_lengths: usize, transfer_encoding: bool) -> Result<(), Ambiguous> {
    if content_lengths > 0 && transfer_encoding {
        return Err(Ambiguous::ContentLengthAndTransferEncoding);
    }
    if content_lengths > 1 {
        return Err(Ambiguous::DuplicateContentLength);
    }
    Ok(())
}

/// The same rules on parsed headers (HTTP/2, and HTTP/1 requests after the
/// first on a connection, as far as hyper leaves them visible).
pub fn check_headers(headers: &HeaderMap) -> Result<(), Ambiguous> {
    let cls = headers.get_all(header::CONTENT_LENGTH);
    let mut n = 0;
    for v in cls.iter() {
        n += 1;
        let ok = v
            .to_str()
            .ok()
            .map(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .unwrap_or(false);
        if !ok {
            return Err(Ambiguous::InvalidContentLength);
        }
    }
    verdict(n, headers.contains_key(header::TRANSFER_ENCODING))
}

/// `example.com:8080` → `example.com`, `[2001:db8::1]:80` → `2001:db8::1`.
/// Lower-cased, trailing dot removed: the form policies compare against.
pub fn host_without_port(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if a.bytes().filter(|&b| b == b':').count() == 1 {
        a.split(':').next().unwrap_or(a)
    } else {
        a
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// What the request asks for: method, Host/:authority, path, and the
/// authority it names itself (CONNECT target or absolute-form URI).
pub fn request_info<B>(req: &Request<B>) -> HttpRequestInfo {
    let uri = req.uri();
    let host_header = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let (host, target) = if req.version() == Version::HTTP_2 {
        // :authority is the HTTP/2 Host; only CONNECT names a separate target.
        let auth = uri.authority().map(|a| a.as_str()).or(host_header);
        let target = (req.method() == Method::CONNECT)
            .then(|| auth.map(str::to_owned))
            .flatten();
        (auth.map(host_without_port), target)
    } else {
        let target = uri.authority().map(|a| a.as_str().to_owned());
        let host = host_header
            .map(host_without_port)
            .or_else(|| target.as_deref().map(host_without_port));
        (host, target)
    };
    let path = if req.method() == Method::CONNECT {
        String::new()
    } else {
        uri.path().to_owned()
    };
    HttpRequestInfo {
        method: req.method().as_str().to_owned(),
        host,
        path,
        target,
    }
}

/// True for HTTP/1 requests that ask to switch protocols or tunnel.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    if req.version() != Version::HTTP_11 {
        return false;
    }
    req.method() == Method::CONNECT
        || (req.headers().contains_key(header::UPGRADE) && connection_has(req.headers(), "upgrade"))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// True when every `Connection` value is just `keep-alive` or `close`.
fn connection_names_nothing(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().all(|v| {
        let v = v.as_bytes().trim_ascii();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    })
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The headers that are always hop-by-hop, as bits of a presence mask.
const CONNECTION_BIT: u8 = 1;
const TE_BIT: u8 = 2;
const TRANSFER_ENCODING_BIT: u8 = 4;
const UPGRADE_BIT: u8 = 8;
const KEEP_ALIVE_BIT: u8 = 16;
const PROXY_CONNECTION_BIT: u8 = 32;

fn fixed_hop_by_hop_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        CONNECTION_BIT
    } else if name == header::TE {
        TE_BIT
    } else if name == header::TRANSFER_ENCODING {
        TRANSFER_ENCODING_BIT
    } else if name == header::UPGRADE {
        UPGRADE_BIT
    } else if name == KEEP_ALIVE {
        KEEP_ALIVE_BIT
    } else if name == PROXY_CONNECTION {
        PROXY_CONNECTION_BIT
    } else {
        0
    }
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): those named in
/// `Connection` and the fixed set. When forwarding an upgrade, `Connection:
/// upgrade` and `Upgrade` are end-to-end for this exchange and are kept.
/// Proxy-Authorization is kept: a transparent proxy is not the hop it is for.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which of the fixed set are present, so
    // the usual message (none, or just `Connection: keep-alive`) costs no
    // lookups of absent names and no allocation. Without `Connection`
    // nothing is named, so the fixed set is all there is to remove.
    let present = headers.keys().fold(0u8, |m, k| m | fixed_hop_by_hop_bit(k));
    if present == 0 && !keep_upgrade {
        return;
    }
    // The next most usual message: only `Connection: keep-alive` (or
    // `close`), which names no other header: drop it, nothing else to do.
    if present == CONNECTION_BIT && !keep_upgrade && connection_names_nothing(headers) {
        headers.remove(header::CONNECTION);
        return;
    }
    if present & CONNECTION_BIT != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // The usual token; the fixed set below removes that header anyway.
            .filter(|t| !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if keep_upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
    }
    let te_trailers = present & TE_BIT != 0
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
            });
    let fixed = [
        (CONNECTION_BIT, header::CONNECTION),
        (TE_BIT, header::TE),
        (TRANSFER_ENCODING_BIT, header::TRANSFER_ENCODING),
        (UPGRADE_BIT, header::UPGRADE),
        (KEEP_ALIVE_BIT, KEEP_ALIVE),
        (PROXY_CONNECTION_BIT, PROXY_CONNECTION),
    ];
    for (bit, name) in fixed {
        if present & bit == 0
            || (keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE))
        {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("upgrade"),
        );
    }
    if te_trailers {
        // "TE: trailers" is the one TE value allowed end to end (gRPC needs it).
        headers.insert(header::TE, header::HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_head_ambiguity() {
        let ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(check_raw_head(ok), Ok(()));
        let clte = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            check_raw_head(clte),
            Err(Ambiguous::ContentLengthAndTransferEncoding)
        );
        let tecl = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(
            check_raw_head(tecl),
            Err(Ambiguous::ContentLengthAndTransferEncoding)
        );
        let dup = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(check_raw_head(dup), Err(Ambiguous::DuplicateContentLength));
        let bad = b"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n";
        assert!(matches!(check_raw_head(bad), Err(Ambiguous::Malformed(_))));
        let space = b"GET / HTTP/1.1\r\nHost : a\r\n\r\n";
        assert!(matches!(
            check_raw_head(space),
            Err(Ambiguous::Malformed(_))
        ));
    }

    #[test]
    fn parsed_header_ambiguity() {
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, "3".parse().unwrap());
        assert_eq!(check_headers(&h), Ok(()));
        h.append(header::CONTENT_LENGTH, "4".parse().unwrap());
        assert_eq!(check_headers(&h), Err(Ambiguous::DuplicateContentLength));
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, "+3".parse().unwrap());
        assert_eq!(check_headers(&h), Err(Ambiguous::InvalidContentLength));
    }

    #[test]
    fn hosts() {
        assert_eq!(host_without_port("Example.COM:8080"), "example.com");
        assert_eq!(host_without_port("example.com."), "example.com");
        assert_eq!(host_without_port("[2001:db8::1]:80"), "2001:db8::1");
        assert_eq!(host_without_port("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn info_origin_absolute_connect_h2() {
        let r = Request::get("/a/b?q=1")
            .header("host", "api.example:8080")
            .body(())
            .unwrap();
        let i = request_info(&r);
        assert_eq!(
            (
                i.method.as_str(),
                i.host.as_deref(),
                i.path.as_str(),
                i.target
            ),
            ("GET", Some("api.example"), "/a/b", None)
        );

        let r = Request::get("http://other.example/x")
            .header("host", "api.example")
            .body(())
            .unwrap();
        let i = request_info(&r);
        assert_eq!(i.host.as_deref(), Some("api.example"));
        assert_eq!(i.target.as_deref(), Some("other.example"));

        let r = Request::connect("tunnel.example:443")
            .header("host", "tunnel.example:443")
            .body(())
            .unwrap();
        let i = request_info(&r);
        assert_eq!(i.target.as_deref(), Some("tunnel.example:443"));
        assert_eq!(i.path, "");

        let r = Request::get("http://h2.example/p")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let i = request_info(&r);
        assert_eq!((i.host.as_deref(), i.target), (Some("h2.example"), None));
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, X-Secret-Hop".parse().unwrap(),
        );
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers, deflate".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic eA==".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["proxy-authorization", "te", "x-app"]);
        assert_eq!(h[header::TE], "trailers");

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn each_fixed_hop_by_hop_header_goes_alone() {
        // Without `Connection` the fast path decides; it must still see each.
        for name in [
            "te",
            "transfer-encoding",
            "upgrade",
            "keep-alive",
            "proxy-connection",
            "connection",
        ] {
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), "x".parse().unwrap());
            h.insert("x-app", "kept".parse().unwrap());
            strip_hop_by_hop(&mut h, false);
            assert_eq!(
                h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                ["x-app"],
                "{name}"
            );
        }
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn connection_keep_alive_alone_takes_the_short_way_only_when_it_names_nothing() {
        for value in ["keep-alive", " Keep-Alive ", "close"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONNECTION, value.parse().unwrap());
            h.insert("x-app", "kept".parse().unwrap());
            strip_hop_by_hop(&mut h, false);
            assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);
        }
        // Two Connection lines, one naming a header: that header goes too.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, "keep-alive".parse().unwrap());
        h.append(header::CONNECTION, "x-hop".parse().unwrap());
        h.insert("x-hop", "1".parse().unwrap());
        h.insert("x-app", "kept".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-app"]);
    }

    #[test]
    fn upgrade_detection() {
        let r = Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(wants_upgrade(&r));
        let r = Request::get("/ws")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        assert!(!wants_upgrade(&r));
    }
}
