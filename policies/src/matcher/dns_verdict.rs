//! What the DNS listener does with a query: refuse tunnelling-shaped ones
//! when the policy asks for it (`spec.dns.blockTunneling`), and answer
//! names the policy does not list itself (`spec.dns.allowedNames: listed`),
//! in the network mode's terms (protect refuses, monitor reports, learn
//! lets pass).

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use serde::Serialize;

use super::names::{normalise, parent_suffixes};
use super::CompiledPolicy;
use crate::dns::listing::{pattern_matches, service_stripped, DnsNameVerdict, NameListing};
use crate::dns::{assess_query, reverse_name_addr, RecordType, TunnelAssessment, TunnelThresholds};
use crate::flow::{Action, Decision, Direction};
use crate::model::{AllowedNames, Peer};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsVerdict {
    pub assessment: TunnelAssessment,
    /// Answer REFUSED instead of forwarding.
    pub refuse: bool,
    /// Monitor mode: forwarded, but protect would refuse it (raise an event).
    pub would_refuse: bool,
}

/// Stands in for a rule id when a query passes, so that mode semantics stay
/// in [`Decision::new`].
/// Shared so that judging a query allocates no id.
static QUERY_OK: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("dns-query"));

impl CompiledPolicy {
    /// Resolvers the pod may use (`spec.dns.resolvers`); empty = the pod's own.
    pub fn resolvers(&self) -> &[IpAddr] {
        &self.dns.resolvers
    }

    pub fn judge_dns_query(&self, name: &str, qtype: RecordType) -> DnsVerdict {
        let assessment = assess_query(name, qtype, &TunnelThresholds::default());
        let blocked_by_policy = self.dns.block_tunneling && assessment.suspicious;
        let d = Decision::new(
            self.mode(),
            (!blocked_by_policy).then(|| Arc::clone(&QUERY_OK)),
        );
        DnsVerdict {
            refuse: d.action == Action::Deny,
            would_refuse: d.would_deny,
            assessment,
        }
    }

    /// Whether the pod may resolve `name` at all (`spec.dns.allowedNames`),
    /// and what the mode makes of it. See [`crate::dns::listing`] for which
    /// names count as listed and why.
    pub fn judge_dns_name(&self, name: &str, qtype: RecordType) -> DnsNameVerdict {
        let listed = self.name_listing(name);
        let d = Decision::new(self.mode(), listed.as_ref().map(|_| Arc::clone(&QUERY_OK)));
        let reported = d.action == Action::Deny || d.would_deny;
        DnsNameVerdict {
            listed,
            deny: d.action == Action::Deny,
            would_deny: d.would_deny,
            assessment: if reported {
                assess_query(name, qtype, &TunnelThresholds::default())
            } else {
                TunnelAssessment::default()
            },
        }
    }

    /// Whether the policy lets the pod resolve `name` (a rule's FQDN, an
    /// `allowNames` pattern, a covered reverse name, or `allowedNames: any`).
    pub fn lists_dns_name(&self, name: &str) -> bool {
        self.name_listing(name).is_some()
    }

    fn name_listing(&self, name: &str) -> Option<NameListing> {
        if self.dns.allowed_names == AllowedNames::Any {
            return Some(NameListing::AnyName);
        }
        let name = normalise(name);
        for base in service_stripped(&name) {
            if let Some(p) = self.fqdn_rule_pattern(base) {
                return Some(NameListing::FqdnRule(p));
            }
            if let Some(p) = self
                .dns
                .allow_names
                .iter()
                .find(|p| pattern_matches(p, base))
            {
                return Some(NameListing::AllowNames(p.clone()));
            }
        }
        let addr = reverse_name_addr(&name)?;
        self.rule_covering(addr)
            .map(|id| NameListing::ReverseOfRule(id.to_string()))
    }

    /// The outbound FQDN pattern matching `name` (normalised), exact first,
    /// then the closest `*.suffix`: the same indexes and the same
    /// label-boundary rule the connection matcher uses.
    fn fqdn_rule_pattern(&self, name: &str) -> Option<String> {
        if self.outbound.fqdn_exact.contains_key(name) {
            return Some(name.to_string());
        }
        parent_suffixes(name)
            .find(|s| self.outbound.fqdn_suffix.contains_key(*s))
            .map(|s| format!("*.{s}"))
    }

    /// The first outbound rule whose peer covers `addr` (`any` or a CIDR).
    /// A scan, not an index: reverse lookups are rare next to connections.
    fn rule_covering(&self, addr: IpAddr) -> Option<&str> {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        self.rules
            .iter()
            .filter(|r| r.direction == Direction::Outbound)
            .find(|r| match &r.peer {
                Peer::Any => true,
                Peer::Cidr(net) => net.contains(&addr),
                Peer::Fqdn(_) => false,
            })
            .map(|r| &*r.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_policy_str;

    fn policy(mode: &str, block: bool) -> CompiledPolicy {
        let y = format!(
            "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  mode: {mode}\n  dns: {{ blockTunneling: {block}, resolvers: [\"10.96.0.10\"] }}\n"
        );
        CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
    }

    #[test]
    fn modes_and_setting() {
        let bad = "x.example";
        let good = "api.example";
        let cases = [
            ("protect", true, bad, true, false),
            ("protect", true, good, false, false),
            ("protect", false, bad, false, false),
            ("monitor", true, bad, false, true),
            ("monitor", true, good, false, false),
            ("learn", true, bad, false, false),
        ];
        for (mode, block, name, refuse, would) in cases {
            let p = policy(mode, block);
            let qtype = if name == bad {
                RecordType::Null
            } else {
                RecordType::A
            };
            let v = p.judge_dns_query(name, qtype);
            assert_eq!(
                (v.refuse, v.would_refuse),
                (refuse, would),
                "{mode} {block} {name}"
            );
            assert_eq!(v.assessment.suspicious, name == bad);
        }
        assert_eq!(
            policy("learn", false).resolvers(),
            &["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
    }

    /// A policy with `spec.dns` = `dns` and a few outbound rules.
    fn listed(mode: &str, dns: &str) -> CompiledPolicy {
        let y = format!(
            r#"apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: {{ workload: a/b }}
spec:
  mode: {mode}
  dns: {dns}
  rules:
    - {{ id: api, direction: outbound, peer: {{ fqdn: api.example }}, ports: ["443"] }}
    - {{ id: cdn, direction: outbound, peer: {{ fqdn: "*.cdn.example" }}, ports: ["443"] }}
    - {{ id: net, direction: outbound, peer: {{ cidr: 198.51.100.0/24 }} }}
    - {{ id: v6, direction: outbound, peer: {{ cidr: "2001:db8::/32" }} }}
    - {{ id: in-net, direction: inbound, peer: {{ cidr: 192.0.2.0/24 }} }}
"#
        );
        CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
    }

    const LISTED: &str =
        r#"{ allowedNames: listed, allowNames: ["*.cluster.local", "only.example"] }"#;

    #[test]
    fn which_names_are_listed() {
        let p = listed("protect", LISTED);
        let rule = |s: &str| Some(NameListing::FqdnRule(s.into()));
        let allow = |s: &str| Some(NameListing::AllowNames(s.into()));
        let rev = |s: &str| Some(NameListing::ReverseOfRule(s.into()));
        let v6_rev = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa";
        for (name, want) in [
            ("api.example", rule("api.example")),
            ("API.Example.", rule("api.example")),
            ("x.cdn.example", rule("*.cdn.example")),
            ("a.b.cdn.example", rule("*.cdn.example")),
            ("_https._tcp.api.example", rule("api.example")),
            ("_443._https.x.cdn.example", rule("*.cdn.example")),
            (
                "kubernetes.default.svc.cluster.local",
                allow("*.cluster.local"),
            ),
            (
                "api.example.shop.svc.cluster.local",
                allow("*.cluster.local"),
            ),
            ("only.example", allow("only.example")),
            ("7.100.51.198.in-addr.arpa", rev("net")),
            (v6_rev, rev("v6")),
            // Not listed: the exfiltration shape, neighbours of listed
            // names, the wildcard's own apex, data in front of an SRV
            // label, reverse names outside the outbound rules (192.0.2.0/24
            // is an inbound rule) or naming a network, not an address.
            ("mzxw6ytboi.attacker.example", None),
            ("x.api.example", None),
            ("api.example.evil", None),
            ("cdn.example", None),
            ("secret._tcp.api.example", None),
            ("_a._b._c.api.example", None),
            ("x.only.example", None),
            ("7.2.0.192.in-addr.arpa", None),
            ("100.51.198.in-addr.arpa", None),
            ("", None),
        ] {
            let v = p.judge_dns_name(name, RecordType::A);
            assert_eq!(v.listed, want, "{name}");
            assert_eq!(v.deny, want.is_none(), "{name}");
            assert!(!v.would_deny, "{name}");
        }
    }

    #[test]
    fn modes_and_default() {
        let exfil = "mzxw6ytboi.attacker.example";
        for (mode, deny, would) in [
            ("protect", true, false),
            ("monitor", false, true),
            ("learn", false, false),
        ] {
            let v = listed(mode, LISTED).judge_dns_name(exfil, RecordType::A);
            assert_eq!(
                (v.listed.is_none(), v.deny, v.would_deny),
                (true, deny, would),
                "{mode}"
            );
            let ok = listed(mode, LISTED).judge_dns_name("api.example", RecordType::Aaaa);
            assert_eq!((ok.deny, ok.would_deny), (false, false), "{mode}");
        }
        // Without the setting (and with `any`), every name passes: policies
        // written before it, CIDR-only ones included, keep resolving.
        for dns in ["{}", "{ allowedNames: any }"] {
            let v = listed("protect", dns).judge_dns_name(exfil, RecordType::A);
            assert_eq!(v.listed, Some(NameListing::AnyName), "{dns}");
            assert!(!v.deny);
        }
        // `listed` with no names at all: nothing resolves but reverse
        // lookups of covered addresses.
        let bare = listed("protect", "{ allowedNames: listed }");
        assert!(bare.judge_dns_name("x.cluster.local", RecordType::A).deny);
        assert!(!bare.judge_dns_name("api.example", RecordType::A).deny);
        // The tunnelling assessment rides along, for masking in reports.
        let v = bare.judge_dns_name(TUNNEL_NAME, RecordType::Txt);
        assert!(v.deny && v.assessment.suspicious);
    }

    const TUNNEL_NAME: &str = "aGVsbG8gd29ybGQgdGhpcyBpcyBleGZpbHRyYXRlZA.x7f3k9q2m8z1.t.example";

    #[test]
    fn any_rule_covers_every_reverse_name() {
        let y = r#"apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: a/b }
spec:
  mode: protect
  dns: { allowedNames: listed }
  rules: [ { id: all, direction: outbound, peer: any } ]
"#;
        let p = CompiledPolicy::compile(&load_policy_str(y, "t").unwrap()).unwrap();
        let v = p.judge_dns_name("7.2.0.192.in-addr.arpa", RecordType::Ptr);
        assert_eq!(v.listed, Some(NameListing::ReverseOfRule("all".into())));
        // `any` lets the pod connect anywhere, but it does not list names.
        assert!(p.judge_dns_name("x.example", RecordType::A).deny);
    }

    #[test]
    fn bad_allow_names_are_load_errors() {
        for bad in ["a..b", "*.a.*.b", "x y", ""] {
            let y = format!(
                "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  dns: {{ allowNames: [\"{bad}\"] }}\n"
            );
            let e = load_policy_str(&y, "t").unwrap_err().to_string();
            assert!(e.contains("invalid fqdn"), "{bad}: {e}");
        }
        let y = "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: { workload: a/b }\nspec:\n  dns: { allowedNames: some }\n";
        let e = load_policy_str(y, "t").unwrap_err().to_string();
        assert!(e.contains("some"), "{e}");
    }
}
