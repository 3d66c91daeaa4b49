//! The policy file: what a security team approves and what the learner
//! proposes. One format for both, so approval is promotion, not translation.
//!
//! ```yaml
//! apiVersion: podwarden.io/v1alpha1
//! kind: WorkloadPolicy          # or Baseline for a learned proposal
//! metadata:
//!   workload: shop/checkout     # namespace/name of the owning workload
//!   version: 3
//! spec:
//!   mode: protect               # learn | monitor | protect
//!   features: { waf: monitor }  # per-feature overrides: network, waf, dlp
//!   rules:
//!     - id: out-payments
//!       note: checkout calls the payments API
//!       direction: outbound
//!       peer: { fqdn: api.payments.example }
//!       ports: ["443"]
//!       protocols: [tls]
//!       processes: [/usr/local/bin/checkout]
//! ```

use std::collections::BTreeMap;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::flow::{AppProtocol, Direction, Mode};

pub const API_VERSION: &str = "podwarden.io/v1alpha1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    /// Format version; only `podwarden.io/v1alpha1` exists today.
    pub api_version: String,
    pub kind: DocumentKind,
    pub metadata: Metadata,
    pub spec: PolicySpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DocumentKind {
    /// An approved allowlist.
    WorkloadPolicy,
    /// A learned proposal awaiting review (same spec, rules carry evidence).
    Baseline,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// `namespace/name` of the workload this policy governs.
    pub workload: String,
    /// Monotonic policy version; bumped by every approval.
    #[serde(default)]
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// RFC 3339 time of approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// Workload-wide mode.
    #[serde(default)]
    pub mode: Mode,
    /// Per-feature overrides of `mode`.
    #[serde(default)]
    pub features: FeatureModes,
    #[serde(default)]
    pub dns: DnsSettings,
    /// The allowlist. Anything not matched is denied in `protect`.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Executables allowed to open connections at all. Empty = not enforced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<WafSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp: Option<DlpSettings>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeatureModes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waf: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dlp: Option<Mode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    Network,
    Waf,
    Dlp,
}

impl PolicySpec {
    /// The effective mode of one feature: its override, else the workload mode.
    pub fn mode_of(&self, feature: Feature) -> Mode {
        let o = match feature {
            Feature::Network => self.features.network,
            Feature::Waf => self.features.waf,
            Feature::Dlp => self.features.dlp,
        };
        o.unwrap_or(self.mode)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSettings {
    /// Resolvers the pod may query (through the proxy's DNS listener).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<std::net::IpAddr>,
    /// Refuse tunnelling-shaped queries (long random labels, TXT floods) in protect.
    #[serde(default)]
    pub block_tunneling: bool,
    /// Which names the pod may resolve. `any` (the default, so that policies
    /// written before this setting and CIDR-only policies keep working) lets
    /// every query through; `listed` answers NXDOMAIN in protect, without
    /// forwarding, to a name that matches no outbound FQDN rule and no
    /// `allowNames` entry: a query for `<secret>.attacker.example` reaches the
    /// attacker's authoritative server even when the connection that would
    /// follow is blocked.
    #[serde(default, skip_serializing_if = "AllowedNames::is_any")]
    pub allowed_names: AllowedNames,
    /// Names (exact or `*.suffix`) the pod may resolve without an FQDN rule:
    /// names it resolves but never connects to by name, e.g. `*.cluster.local`
    /// for in-cluster services reached through CIDR rules. Used with
    /// `allowedNames: listed`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "fqdn_patterns"
    )]
    pub allow_names: Vec<String>,
    /// Why the learner proposes each `allowNames` entry (baselines): the
    /// queries behind it. Review material only; never read by enforcement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned_names: Vec<LearnedName>,
}

/// One name (or `*.zone`) the pod resolved while learning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LearnedName {
    /// The `allowNames` entry it supports.
    pub name: String,
    /// How it was learned, e.g. "generalised from 7 names under example.com".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Which DNS names the pod may resolve (`spec.dns.allowedNames`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AllowedNames {
    /// Every name is forwarded (subject to `blockTunneling`).
    #[default]
    Any,
    /// Only names of outbound FQDN rules and `allowNames` (with their SRV
    /// `_service._proto.` forms), and reverse lookups of addresses the
    /// outbound rules cover.
    Listed,
}

impl AllowedNames {
    pub fn is_any(&self) -> bool {
        *self == AllowedNames::Any
    }
}

/// A list of FQDN patterns, each checked like an FQDN peer so that a typo is
/// a located load error instead of a name that silently never matches.
fn fqdn_patterns<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for n in &names {
        validate_fqdn_pattern(n).map_err(serde::de::Error::custom)?;
    }
    Ok(names)
}

/// One allowlist entry. Every field narrows; an absent field matches anything
/// *of that kind* but a rule always names a direction and a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Unique within the document; named in decisions, events and 403s.
    pub id: String,
    /// Why this flow is allowed, for the humans who review it.
    #[serde(default)]
    pub note: String,
    pub direction: Direction,
    pub peer: Peer,
    /// Server ports: `"443"` or `"8000-8100"`. Empty = any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Empty = any protocol.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<AppProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMatch>,
    /// Executable paths allowed to make this flow. Empty = any process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<String>,
    /// Learned evidence (baselines); kept on promotion for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Who is on the other side. Written `any`, `{cidr: 192.0.2.0/24}` or
/// `{fqdn: "*.example"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "PeerRepr", into = "PeerRepr")]
pub enum Peer {
    /// Any address. Never produced by learning.
    Any,
    /// An address range (v4 or v6); a host is a /32 or /128.
    Cidr(IpNet),
    /// A DNS name, exact (`api.example`) or suffix (`*.example`). Matches only
    /// when the pod's resolver returned the destination IP for that name.
    Fqdn(String),
}

// YAML libraries disagree on how externally tagged enums look; this spelling
// (a bare word or a one-key map) is what people write by hand. Deserialised
// by hand so that a bad CIDR says so, instead of serde's untagged
// "data did not match any variant".
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
enum PeerRepr {
    /// `any`
    Word(#[schemars(pattern(r"^any$"))] String),
    Cidr {
        cidr: IpNet,
    },
    Fqdn {
        fqdn: String,
    },
}

impl<'de> Deserialize<'de> for PeerRepr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = PeerRepr;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`any`, `{cidr: ...}` or `{fqdn: ...}`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PeerRepr, E> {
                Ok(PeerRepr::Word(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<PeerRepr, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(
                        "empty peer: expected `{cidr: ...}` or `{fqdn: ...}`",
                    ));
                };
                let value: String = map.next_value()?;
                let repr = match key.as_str() {
                    "cidr" => PeerRepr::Cidr {
                        cidr: value.parse().map_err(|_| {
                            A::Error::custom(format!(
                                "invalid cidr {value:?}: expected an address/prefix like 192.0.2.0/24 or 2001:db8::/32"
                            ))
                        })?,
                    },
                    "fqdn" => PeerRepr::Fqdn { fqdn: value },
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown peer kind `{other}`: expected `cidr` or `fqdn`"
                        )))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(
                        "a peer has exactly one of `cidr` or `fqdn`",
                    ));
                }
                Ok(repr)
            }
        }
        d.deserialize_any(V)
    }
}

impl TryFrom<PeerRepr> for Peer {
    type Error = String;
    fn try_from(r: PeerRepr) -> Result<Self, String> {
        match r {
            PeerRepr::Word(w) if w == "any" => Ok(Peer::Any),
            PeerRepr::Word(w) => Err(format!(
                "invalid peer {w:?}: expected `any`, `{{cidr: ...}}` or `{{fqdn: ...}}`"
            )),
            PeerRepr::Cidr { cidr } => Ok(Peer::Cidr(cidr)),
            PeerRepr::Fqdn { fqdn } => validate_fqdn_pattern(&fqdn).map(|()| Peer::Fqdn(fqdn)),
        }
    }
}

impl From<Peer> for PeerRepr {
    fn from(p: Peer) -> Self {
        match p {
            Peer::Any => PeerRepr::Word("any".into()),
            Peer::Cidr(cidr) => PeerRepr::Cidr { cidr },
            Peer::Fqdn(fqdn) => PeerRepr::Fqdn { fqdn },
        }
    }
}

/// Accepts `name.example` and `*.example`; rejects empty labels, inner
/// wildcards and characters DNS names do not have.
pub fn validate_fqdn_pattern(s: &str) -> Result<(), String> {
    let name = s.strip_prefix("*.").unwrap_or(s);
    let ok_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.trim_end_matches('.').split('.').all(ok_label) {
        return Err(format!(
            "invalid fqdn {s:?}: expected a DNS name or `*.suffix`"
        ));
    }
    Ok(())
}

/// A port or inclusive port range, written `"443"` or `"8000-8100"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[schemars(with = "PortSpecSchema")]
pub struct PortSpec {
    pub first: u16,
    pub last: u16,
}

/// How a port is written: a number, or a string `"443"` / `"8000-8100"`.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // schema only
enum PortSpecSchema {
    Number(#[schemars(range(min = 1, max = 65535))] u16),
    Text(#[schemars(pattern(r"^[0-9]{1,5}(-[0-9]{1,5})?$"))] String),
}

impl PortSpec {
    pub fn single(p: u16) -> Self {
        PortSpec { first: p, last: p }
    }
    pub fn contains(&self, p: u16) -> bool {
        self.first <= p && p <= self.last
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parse = |x: &str| {
            x.trim()
                .parse::<u16>()
                .map_err(|_| format!("invalid port {x:?}: expected 1-65535"))
                .and_then(|p| {
                    if p == 0 {
                        Err("port 0 is not a port".to_string())
                    } else {
                        Ok(p)
                    }
                })
        };
        match s.split_once('-') {
            Some((a, b)) => {
                let (first, last) = (parse(a)?, parse(b)?);
                if first > last {
                    return Err(format!("invalid port range {s:?}: start is after end"));
                }
                Ok(PortSpec { first, last })
            }
            None => parse(s).map(PortSpec::single),
        }
    }
}

impl Serialize for PortSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Accept both `443` and `"443"`/`"8000-8100"` in YAML.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => u16::try_from(n)
                .map_err(|_| format!("invalid port {n}: expected 1-65535"))
                .and_then(|p| format!("{p}").parse())
                .map_err(serde::de::Error::custom),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// HTTP-level narrowing of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    /// Host / :authority values (exact or `*.suffix`). Empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Upper-case methods. Empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths: exact (`/healthz`), prefix (`/static/*`), or template with
    /// `{param}` segments (`/users/{id}/orders`). Empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

/// An executable allowed in the pod's process baseline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessRule {
    pub exe: String,
    #[serde(default)]
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Why the learner proposed a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Evidence {
    pub count: u64,
    /// RFC 3339.
    pub first_seen: String,
    /// RFC 3339.
    pub last_seen: String,
    /// One representative flow, human-readable.
    #[serde(default)]
    pub example: String,
    /// Replicas (pod names) the flow was seen from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// Inbound WAF settings (OWASP CRS). Owned by the WAF integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WafSettings {
    /// CRS paranoia level 1-4.
    #[serde(default = "default_paranoia")]
    pub paranoia: u8,
    #[serde(default = "default_inbound_threshold")]
    pub inbound_threshold: u32,
    #[serde(default = "default_outbound_threshold")]
    pub outbound_threshold: u32,
    /// Rule ids to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_rules: Vec<u32>,
    /// Extra SecLang appended after CRS (exclusions, custom rules).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extra_seclang: String,
    /// NeuVector-style simple rules compiled to the same engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_rules: Vec<WafCustomRule>,
}

fn default_paranoia() -> u8 {
    1
}
fn default_inbound_threshold() -> u32 {
    5
}
fn default_outbound_threshold() -> u32 {
    4
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WafCustomRule {
    pub id: u32,
    #[serde(default)]
    pub note: String,
    /// Where to look.
    pub location: WafLocation,
    /// Header name when `location: header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A regular expression.
    pub pattern: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WafLocation {
    Url,
    Header,
    Body,
}

/// DLP settings. Owned by the DLP integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DlpSettings {
    /// Built-in sensors to turn off (by name). Default: all on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disabled_sensors: Vec<String>,
    /// Directions scanned. Empty = outbound requests, raw streams and responses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directions: Vec<Direction>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_sensors: Vec<DlpCustomSensor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DlpCustomSensor {
    pub name: String,
    pub pattern: String,
    /// Optional validator: `luhn`, `mod97`, `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
    /// Words that must appear near a match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    /// Minimum Shannon entropy (bits per char) of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_entropy: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_example_document() {
        let y = r#"
apiVersion: podwarden.io/v1alpha1
kind: WorkloadPolicy
metadata: { workload: shop/checkout, version: 3 }
spec:
  mode: protect
  features: { waf: monitor }
  rules:
    - id: out-payments
      note: checkout calls the payments API
      direction: outbound
      peer: { fqdn: api.payments.example }
      ports: ["443", 8000-8100, 9000]
      protocols: [tls, http]
      processes: [/usr/local/bin/checkout]
    - id: in-any
      direction: inbound
      peer: any
    - id: bad-fqdn-is-tested-below
      direction: outbound
      peer: { fqdn: "*.ok.example" }
    - id: out-net6
      direction: outbound
      peer: { cidr: "2001:db8::/32" }
"#;
        let d: PolicyDocument = serde_yaml_ng::from_str(y).unwrap();
        assert_eq!(d.spec.rules.len(), 4);
        assert_eq!(
            d.spec.rules[0].ports[1],
            PortSpec {
                first: 8000,
                last: 8100
            }
        );
        assert_eq!(d.spec.rules[1].peer, Peer::Any);
        assert_eq!(d.spec.mode_of(Feature::Waf), Mode::Monitor);
        assert_eq!(d.spec.mode_of(Feature::Dlp), Mode::Protect);
        let back: PolicyDocument =
            serde_yaml_ng::from_str(&serde_yaml_ng::to_string(&d).unwrap()).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn rejects_bad_ports_and_unknown_fields() {
        for bad in ["\"0\"", "\"70000\"", "\"9-3\"", "abc"] {
            let y = format!("[{bad}]");
            assert!(
                serde_yaml_ng::from_str::<Vec<PortSpec>>(&y).is_err(),
                "{bad}"
            );
        }
        for bad in [
            "{fqdn: \"a..b\"}",
            "{fqdn: \"a.*.b\"}",
            "anything",
            "{cidr: 300.1.1.1/8}",
        ] {
            let y = format!("id: x\ndirection: outbound\npeer: {bad}\n");
            assert!(serde_yaml_ng::from_str::<Rule>(&y).is_err(), "{bad}");
        }
        let y = "id: x\ndirection: outbound\npeer: any\nportz: [1]\n";
        let e = serde_yaml_ng::from_str::<Rule>(y).unwrap_err().to_string();
        assert!(e.contains("portz"), "{e}");
    }
}
