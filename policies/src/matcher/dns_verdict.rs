//! What the DNS listener does with a query: refuse tunnelling-shaped ones
//! when the policy asks for it (`spec.dns.blockTunneling`), in the network
//! mode's terms (protect refuses, monitor reports, learn lets pass).

use std::net::IpAddr;

use serde::Serialize;

use super::CompiledPolicy;
use crate::dns::{assess_query, RecordType, TunnelAssessment, TunnelThresholds};
use crate::flow::{Action, Decision};

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
const QUERY_OK: &str = "dns-query";

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
            (!blocked_by_policy).then(|| QUERY_OK.to_string()),
        );
        DnsVerdict {
            refuse: d.action == Action::Deny,
            would_refuse: d.would_deny,
            assessment,
        }
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
}
