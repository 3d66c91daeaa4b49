//! `spec.dns.allowedNames: listed`: which names the pod may resolve at all.
//!
//! A query leaves the pod before any connection does: asking for
//! `<base32 secret>.attacker.example` hands the secret to whoever runs that
//! domain's authoritative server, even if the connection that would follow
//! is blocked. With `listed`, a name is forwarded only when the policy names
//! it (the verdict is [`crate::CompiledPolicy::judge_dns_name`]); these are
//! the pure pieces of that verdict.
//!
//! What real pods resolve, and how each is treated:
//! * Names of outbound FQDN rules (`api.example`, `*.example`): listed.
//! * Search-domain expansions (`api.example.shop.svc.cluster.local`, tried
//!   first by a stub resolver with `ndots:5`): not listed, answered NXDOMAIN
//!   (as the cluster DNS would), so the stub moves on to the next search
//!   domain and finally to the listed name. In-cluster services resolved by
//!   name need `allowNames: ["*.cluster.local"]` (the cluster DNS is
//!   authoritative for that zone, so those queries go nowhere else).
//! * SRV and other underscore names (`_http._tcp.api.example`,
//!   `_443._https.api.example` for HTTPS records): listed when stripping at
//!   most two leading `_` labels gives a listed name; they go to the same
//!   authoritative servers the listed name does.
//! * Reverse lookups (`7.2.0.192.in-addr.arpa`): listed when the address is
//!   covered by an outbound CIDR or `any` rule, since the pod may reach that
//!   address anyway; others need an `allowNames` entry (`*.in-addr.arpa`).

use serde::Serialize;

use super::tunnel::TunnelAssessment;

/// The reason named in events and logs for a name the policy does not list.
pub const NAME_NOT_IN_POLICY: &str = "dns: name not in policy";

/// Why a name may be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "camelCase")]
pub enum NameListing {
    /// `allowedNames: any` (the default).
    AnyName,
    /// The name pattern of an outbound FQDN rule (`api.example`, `*.example`).
    FqdnRule(String),
    /// A `dns.allowNames` entry.
    AllowNames(String),
    /// A reverse lookup of an address an outbound rule covers (its id).
    ReverseOfRule(String),
}

/// What the DNS listener does with a query's name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsNameVerdict {
    /// Why the name may be resolved; `None` = not in the policy.
    pub listed: Option<NameListing>,
    /// Protect: answer NXDOMAIN without forwarding.
    pub deny: bool,
    /// Monitor: forwarded, but protect would answer NXDOMAIN (raise an event).
    pub would_deny: bool,
    /// The tunnelling heuristics on the same name, so a report can mask the
    /// labels that look like carried data. Only run when the name is
    /// reported (`deny` or `would_deny`); a listed name gets the empty
    /// assessment here (the query's own verdict, `judge_dns_query`, has
    /// already judged it for tunnelling).
    pub assessment: TunnelAssessment,
}

/// `name` matched against `pattern` (exact or `*.suffix`), both compared
/// without case and without a trailing dot, without allocating. A suffix
/// pattern needs at least one more label: `*.example` matches `a.example`,
/// never `example` or `badexample`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let name = name.strip_suffix('.').unwrap_or(name);
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.len() > suffix.len() + 1
                && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                // Bytes, not `str` slicing: a name off the wire may hold
                // non-ASCII, and a char boundary is not guaranteed there.
                && name.as_bytes()[name.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        }
        None => name.eq_ignore_ascii_case(pattern),
    }
}

/// The name itself, then the name without one and two leading `_` labels
/// (SRV `_service._proto.`, `_port._https.`, `_acme-challenge.`), each only
/// when the stripped part is underscore labels and something remains.
pub fn service_stripped(name: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(name);
    let mut taken = 0;
    std::iter::from_fn(move || {
        let cur = next?;
        next = if taken < 2 && cur.starts_with('_') {
            cur.split_once('.')
                .map(|(_, rest)| rest)
                .filter(|r| !r.is_empty())
        } else {
            None
        };
        taken += 1;
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_exact_and_suffix() {
        for (p, n, want) in [
            ("api.example", "api.example", true),
            ("api.example", "API.Example.", true),
            ("api.example.", "api.example", true),
            ("api.example", "x.api.example", false),
            ("api.example", "api.example.evil", false),
            ("*.example", "a.example", true),
            ("*.example", "a.b.EXAMPLE", true),
            ("*.example", "example", false),
            ("*.example", "badexample", false),
            ("*.example", ".example", false),
            ("*.cluster.local", "api.shop.svc.cluster.local", true),
            ("*.example", "é.example", true),
            ("*.ample", "éxample", false),
        ] {
            assert_eq!(pattern_matches(p, n), want, "{p} {n}");
        }
    }

    #[test]
    fn strips_at_most_two_service_labels() {
        let all = |n| service_stripped(n).collect::<Vec<_>>();
        assert_eq!(
            all("_http._tcp.api.example"),
            vec!["_http._tcp.api.example", "_tcp.api.example", "api.example"]
        );
        assert_eq!(all("api.example"), vec!["api.example"]);
        assert_eq!(
            all("_a._b._c.example"),
            vec!["_a._b._c.example", "_b._c.example", "_c.example"]
        );
        // Data labels in front of an underscore label are not stripped.
        assert_eq!(all("secret._tcp.x"), vec!["secret._tcp.x"]);
        assert_eq!(all("_x"), vec!["_x"]);
        assert_eq!(all("_x."), vec!["_x."]);
    }
}
