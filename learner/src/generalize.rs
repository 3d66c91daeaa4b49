//! Generalisation rules: what is incidental in a flow and is collapsed.
//!
//! Every function here narrows or keeps; none may produce "any". Ephemeral
//! client ports are dropped by keying on [`Flow::service_port`]; the many IPs
//! behind one DNS name collapse to the resolver's name; ids in HTTP paths
//! become `{id}`; inbound clients of one subnet may collapse to that subnet,
//! but never to a prefix shorter than configured.
//!
//! [`Flow::service_port`]: podwarden_policy::Flow::service_port

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use podwarden_policy::model::validate_fqdn_pattern;

/// The placeholder an id-like path segment becomes.
pub const ID_SEGMENT: &str = "{id}";

/// `/users/123/orders/9f1c...` → `/users/{id}/orders/{id}`. Literal
/// segments are kept; the query string, if any slipped through, is dropped.
pub fn path_template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    path_template_into(path, &mut out);
    out
}

/// [`path_template`] written into `out` (cleared first), so a hot loop can
/// reuse one buffer instead of allocating a template per record.
pub fn path_template_into(path: &str, out: &mut String) {
    out.clear();
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.is_empty() {
        out.push('/');
        return;
    }
    // A path without a leading slash still gets one; every segment after
    // the first is preceded by the slash that split it off.
    if !path.starts_with('/') {
        out.push('/');
    }
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id_like(seg) || has_pattern_syntax(seg) {
            out.push_str(ID_SEGMENT);
        } else {
            out.push_str(seg);
        }
    }
}

/// A literal segment containing policy pattern syntax (`*`, `{`, `}`) would
/// change meaning inside a template, so it is treated as a parameter: still
/// one segment, never a prefix.
fn has_pattern_syntax(seg: &str) -> bool {
    seg.bytes().any(|b| matches!(b, b'*' | b'{' | b'}'))
}

/// Numeric, UUID, hex of 8 or more with a digit, or a long token of the
/// base64 alphabet mixing letters and digits.
pub fn is_id_like(seg: &str) -> bool {
    let b = seg.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    if is_uuid(b) {
        return true;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    if b.len() >= 8 && has_digit && b.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    let has_alpha = b.iter().any(u8::is_ascii_alphabetic);
    b.len() >= 20
        && has_digit
        && has_alpha
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'='))
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Lower-case, without trailing dot, valid as an exact policy name.
pub fn normalize_name(name: &str) -> Option<String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.starts_with("*.") || validate_fqdn_pattern(&n).is_err() {
        return None;
    }
    Some(n)
}

/// The name a rule is learned for: the most specific valid resolver name
/// (most labels, then longest, then alphabetical for determinism).
pub fn best_name<'a>(names: impl IntoIterator<Item = &'a String>) -> Option<String> {
    names
        .into_iter()
        .filter_map(|n| normalize_name(n))
        .max_by(|a, b| {
            let la = a.split('.').count();
            let lb = b.split('.').count();
            la.cmp(&lb).then(a.len().cmp(&b.len())).then(b.cmp(a))
        })
}

/// [`best_name`] without allocating: the chosen name as it appears in
/// `names`, trailing dots trimmed but case kept (it is ASCII, being valid).
/// `best_name(names) == best_name_ref(names).map(str::to_ascii_lowercase)`.
pub fn best_name_ref<'a>(names: impl IntoIterator<Item = &'a String>) -> Option<&'a str> {
    let mut best: Option<&'a str> = None;
    for n in names {
        let t = n.trim_end_matches('.');
        // Validity does not depend on case, so the raw name is checked as is.
        if t.starts_with("*.") || validate_fqdn_pattern(t).is_err() {
            continue;
        }
        let better = match best {
            None => true,
            Some(b) => name_rank(t, b) == std::cmp::Ordering::Greater,
        };
        if better {
            best = Some(t);
        }
    }
    best
}

/// [`best_name`]'s order on case-folded names: more labels, then longer,
/// then alphabetically first.
fn name_rank(a: &str, b: &str) -> std::cmp::Ordering {
    let la = a.split('.').count();
    let lb = b.split('.').count();
    la.cmp(&lb).then(a.len().cmp(&b.len())).then_with(|| {
        b.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(a.bytes().map(|c| c.to_ascii_lowercase()))
    })
}

/// The name an outbound flow is learned for. One address often serves
/// several names (virtual hosts, a CDN), and the resolver's table then holds
/// all of them for the peer: the name the app itself asked for — HTTP Host,
/// else TLS SNI — wins when the resolver did return it for this peer (a
/// claim alone is never trusted); otherwise [`best_name`].
pub fn flow_name(flow: &podwarden_policy::Flow) -> Option<String> {
    // The claimed name only counts when resolved: with no resolver names
    // there is nothing to pick (and no host to normalise per request).
    if flow.peer_names.is_empty() {
        return None;
    }
    let resolved: Vec<String> = flow
        .peer_names
        .iter()
        .filter_map(|n| normalize_name(n))
        .collect();
    let claimed = flow
        .http
        .as_ref()
        .and_then(|h| h.host.as_deref())
        .or(flow.sni.as_deref())
        .and_then(normalize_host_cow);
    match claimed {
        Some(c) if resolved.iter().any(|r| *r == *c) => Some(c.into_owned()),
        _ => best_name(&resolved),
    }
}

/// Hosts and SNI are matched without a port and case-insensitively.
pub fn normalize_host(host: &str) -> Option<String> {
    normalize_host_cow(host).map(Cow::into_owned)
}

/// [`normalize_host`] borrowing `host` when it is already in normal form
/// (lower case, no port, no trailing dot): the learner looks every request's
/// host up in its sets and only needs a copy for a host it has not seen.
pub fn normalize_host_cow(host: &str) -> Option<Cow<'_, str>> {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or("")
    } else {
        h
    };
    let h = h.trim_end_matches('.');
    if h.is_empty() {
        None
    } else if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(h.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(h))
    }
}

/// The network of `ip` at `prefix` bits, clamped to the address length.
pub fn network_of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> IpNet {
    match ip {
        IpAddr::V4(a) => Ipv4Net::new(a, v4_prefix.min(32))
            .map(|n| IpNet::V4(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(ip)),
        IpAddr::V6(a) => Ipv6Net::new(a, v6_prefix.min(128))
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or_else(|_| IpNet::from(ip)),
    }
}

/// Whether an address is private/local (a cluster or loopback peer rather
/// than the Internet); used only for risk hints.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            a.is_private() || a.is_loopback() || a.is_link_local() || {
                // 100.64.0.0/10 carrier-grade NAT, common for pod/service ranges.
                let o = a.octets();
                o[0] == 100 && (o[1] & 0xc0) == 64
            }
        }
        IpAddr::V6(a) => {
            a.is_loopback()
                || (a.segments()[0] & 0xfe00) == 0xfc00
                || (a.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A slug for rule ids: `[a-z0-9.-]`, with whether anything was lost.
pub fn slug(s: &str) -> (String, bool) {
    let mut lossy = false;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
            out.push(c);
        } else {
            lossy = true;
            out.push('-');
        }
    }
    (out, lossy)
}

/// FNV-1a, 32 bits: a stable short hash for ids (not for security).
pub fn short_hash(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_ids_and_keeps_literals() {
        assert_eq!(path_template("/users/123"), "/users/{id}");
        assert_eq!(
            path_template("/users/123/orders/42"),
            "/users/{id}/orders/{id}"
        );
        assert_eq!(
            path_template("/o/550e8400-e29b-41d4-a716-446655440000/x"),
            "/o/{id}/x"
        );
        assert_eq!(path_template("/blob/deadbeef1234"), "/blob/{id}");
        assert_eq!(path_template("/t/eyJhbGciOiJIUzI1NiJ9abc123"), "/t/{id}");
        // literal words, short hex-looking words, versions stay
        assert_eq!(path_template("/api/v1/accounts"), "/api/v1/accounts");
        assert_eq!(path_template("/cafe/facade"), "/cafe/facade");
        assert_eq!(path_template("/deadbeef"), "/deadbeef");
        assert_eq!(
            path_template("/a-very-long-literal-name-of-a-route"),
            "/a-very-long-literal-name-of-a-route"
        );
        assert_eq!(path_template("/healthz"), "/healthz");
        assert_eq!(path_template("/"), "/");
        assert_eq!(path_template(""), "/");
        assert_eq!(path_template("/static/"), "/static/");
        assert_eq!(path_template("/q?id=5"), "/q");
        // pattern syntax never turns into a prefix match
        assert_eq!(path_template("/files/*"), "/files/{id}");
    }

    /// `path_template` as first written (allocating, with an insert at 0).
    fn path_template_reference(path: &str) -> String {
        let path = path.split(['?', '#']).next().unwrap_or("");
        if path.is_empty() {
            return "/".to_string();
        }
        let mut out = String::with_capacity(path.len());
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            if is_id_like(seg) || has_pattern_syntax(seg) {
                out.push_str(ID_SEGMENT);
            } else {
                out.push_str(seg);
            }
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn template_into_a_reused_buffer_is_the_same(
            paths in proptest::collection::vec("[a-z0-9/?#*{}.-]{0,24}", 1..8)
        ) {
            let mut buf = String::from("stale");
            for p in &paths {
                path_template_into(p, &mut buf);
                proptest::prop_assert_eq!(&buf, &path_template_reference(p));
                proptest::prop_assert_eq!(path_template(p), path_template_reference(p));
            }
        }

        #[test]
        fn borrowed_best_name_folds_to_best_name(
            names in proptest::collection::vec("[a-cA-C*.]{0,3}(\\.[a-cA-C]{1,3}){0,2}\\.{0,2}", 0..5)
        ) {
            let got = best_name_ref(&names).map(str::to_ascii_lowercase);
            proptest::prop_assert_eq!(got, best_name(&names));
        }
    }

    #[test]
    fn picks_most_specific_valid_name() {
        let names = vec![
            "example.com.".to_string(),
            "API.eu.example.com".to_string(),
            "bad..name".to_string(),
            "cdn.example.com".to_string(),
        ];
        assert_eq!(best_name(&names).as_deref(), Some("api.eu.example.com"));
        assert_eq!(
            best_name(&["b.x".to_string(), "a.x".to_string()]).as_deref(),
            Some("a.x")
        );
        assert_eq!(best_name(&["*.x".to_string()]), None);
        assert_eq!(best_name(&Vec::new()), None);
    }

    #[test]
    fn flow_name_prefers_the_corroborated_host_or_sni() {
        use podwarden_policy::{Direction, Flow, HttpRequestInfo};
        let mut f = Flow::connection(
            Direction::Outbound,
            "198.51.100.10:443".parse().unwrap(),
            "10.0.0.2:40000".parse().unwrap(),
        );
        f.peer_names = vec![
            "api.example.test".into(),
            "cache.example.test".into(),
            "secure.example.test.".into(),
        ];
        // no claim: the deterministic best name
        assert_eq!(flow_name(&f).as_deref(), Some("secure.example.test"));
        f.sni = Some("API.example.test".into());
        assert_eq!(flow_name(&f).as_deref(), Some("api.example.test"));
        f.http = Some(HttpRequestInfo {
            method: "GET".into(),
            host: Some("cache.example.test:8000".into()),
            path: "/".into(),
            target: None,
        });
        assert_eq!(flow_name(&f).as_deref(), Some("cache.example.test"));
        // a claim the resolver never returned for this peer is ignored
        f.http = None;
        f.sni = Some("evil.example".into());
        assert_eq!(flow_name(&f).as_deref(), Some("secure.example.test"));
        f.peer_names.clear();
        assert_eq!(flow_name(&f), None);
    }

    #[test]
    fn hosts_lose_ports() {
        assert_eq!(
            normalize_host("Api.Example:8080").as_deref(),
            Some("api.example")
        );
        assert_eq!(
            normalize_host("[2001:db8::1]:443").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            normalize_host("2001:db8::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(normalize_host(""), None);
    }

    #[test]
    fn normal_hosts_are_borrowed_others_copied() {
        for h in [
            "api.example",
            "api.example:8080",
            "Api.Example.",
            "[2001:db8::1]:443",
            " x.test ",
            "",
        ] {
            assert_eq!(
                normalize_host_cow(h).map(Cow::into_owned),
                normalize_host(h),
                "{h:?}"
            );
        }
        assert!(matches!(
            normalize_host_cow("api.example:8080"),
            Some(Cow::Borrowed("api.example"))
        ));
        assert!(matches!(
            normalize_host_cow("Api.example"),
            Some(Cow::Owned(_))
        ));
    }

    #[test]
    fn networks_and_slugs() {
        let ip: IpAddr = "192.0.2.77".parse().unwrap();
        assert_eq!(network_of(ip, 24, 64).to_string(), "192.0.2.0/24");
        let ip6: IpAddr = "2001:db8:1:2:3::9".parse().unwrap();
        assert_eq!(network_of(ip6, 24, 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(slug("api.example"), ("api.example".to_string(), false));
        assert!(slug("2001:db8::1").1);
        assert_eq!(short_hash("a"), short_hash("a"));
        assert_ne!(short_hash("a"), short_hash("b"));
        assert!(is_internal("10.1.2.3".parse().unwrap()));
        assert!(!is_internal("203.0.113.9".parse().unwrap()));
    }
}
