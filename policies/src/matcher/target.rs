//! The authority an HTTP request names itself: a CONNECT target
//! (`host:port`) or an absolute-form URI (`http://host[:port]/path`).

use std::net::IpAddr;

use super::names::normalise;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Ip(IpAddr),
    /// Normalised DNS name.
    Name(String),
}

impl std::fmt::Display for TargetHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetHost::Ip(ip) => write!(f, "{ip}"),
            TargetHost::Name(n) => f.write_str(n),
        }
    }
}

/// Parses a target into host and port. `None` for anything malformed or
/// ambiguous (a CONNECT without a port, userinfo tricks, bad characters):
/// such targets are denied.
pub fn parse_target(target: &str, is_connect: bool) -> Option<(TargetHost, u16)> {
    let (scheme, rest) = match target.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, target),
    };
    let default_port = match scheme.as_deref() {
        None => None,
        Some("http") | Some("ws") => Some(80),
        Some("https") | Some("wss") => Some(443),
        Some(_) => return None,
    };
    if is_connect && scheme.is_some() {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // `http://allowed.example@evil.example/` names evil.example; rather than
    // guessing how the proxy reads it, refuse userinfo altogether.
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']')?;
        let ip: IpAddr = addr.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return None,
        };
        (TargetHost::Ip(ip), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.is_empty() || h.contains(':') {
            return None;
        }
        let host = match h.parse::<IpAddr>() {
            Ok(ip) => TargetHost::Ip(ip),
            Err(_) => {
                let n = normalise(h);
                let ok = n.len() <= 253
                    && n.split('.').all(|l| {
                        !l.is_empty()
                            && l.len() <= 63
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if !ok {
                    return None;
                }
                TargetHost::Name(n.into_owned())
            }
        };
        (host, p)
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0)?,
        None => default_port?,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let name = |n: &str| Some(TargetHost::Name(n.into()));
        type Case<'a> = (&'a str, bool, Option<(Option<TargetHost>, u16)>);
        let cases: &[Case] = &[
            ("api.example:443", true, Some((name("api.example"), 443))),
            ("API.Example.:443", true, Some((name("api.example"), 443))),
            ("api.example", true, None),
            ("http://api.example/x", true, None),
            (
                "http://api.example/x?y",
                false,
                Some((name("api.example"), 80)),
            ),
            (
                "https://api.example:8443",
                false,
                Some((name("api.example"), 8443)),
            ),
            ("http://a.example@evil.example/", false, None),
            ("ftp://a.example/", false, None),
            (
                "[2001:db8::1]:443",
                true,
                Some((Some(TargetHost::Ip("2001:db8::1".parse().unwrap())), 443)),
            ),
            (
                "192.0.2.1:22",
                true,
                Some((Some(TargetHost::Ip("192.0.2.1".parse().unwrap())), 22)),
            ),
            ("2001:db8::1:443", true, None),
            ("a.example:0", true, None),
            ("a.example:99999", true, None),
            ("a..example:1", true, None),
            ("a b:1", true, None),
            ("", true, None),
            (":80", false, None),
        ];
        for (t, connect, want) in cases {
            let got = parse_target(t, *connect);
            let want = want.as_ref().map(|(h, p)| (h.clone().unwrap(), *p));
            assert_eq!(got, want, "{t}");
        }
    }
}
