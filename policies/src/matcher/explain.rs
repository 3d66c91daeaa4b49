//! Why a flow was allowed or denied, as data: the matching rule, or the
//! nearest rules and what each one did not match. Not on the hot path; it
//! scans every rule.

use std::fmt;
use std::sync::Arc;

use ipnet::IpNet;
use serde::Serialize;

use super::names::normalise;
use super::target::parse_target;
use super::{CompiledPolicy, CompiledRule, Verdict};
use crate::flow::{AppProtocol, Decide, Decision, Direction, Flow};
use crate::model::{Peer, PortSpec};

/// One condition of a rule the flow does not meet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Mismatch {
    Direction {
        rule: Direction,
    },
    PeerNotInCidr {
        cidr: IpNet,
    },
    /// The resolver never returned the peer IP for a name matching the rule.
    /// `claimed` is an SNI or Host that names it anyway (not proof).
    NameNotResolved {
        pattern: String,
        peer_names: Vec<String>,
        claimed: Option<String>,
    },
    Port {
        port: u16,
        allowed: Vec<PortSpec>,
    },
    Protocol {
        protocol: AppProtocol,
        allowed: Vec<AppProtocol>,
    },
    Process {
        exe: Option<String>,
        allowed: Vec<String>,
    },
    HttpHost {
        host: Option<String>,
    },
    HttpMethod {
        method: String,
    },
    HttpPath {
        path: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Direction { rule } => write!(f, "rule is for {} flows", dir(*rule)),
            Mismatch::PeerNotInCidr { cidr } => write!(f, "peer is outside {cidr}"),
            Mismatch::NameNotResolved {
                pattern,
                peer_names,
                claimed,
            } => {
                write!(f, "the resolver did not return this IP for {pattern}")?;
                if !peer_names.is_empty() {
                    write!(f, " (it did for {})", peer_names.join(", "))?;
                }
                if let Some(c) = claimed {
                    write!(f, "; SNI/Host {c:?} is a claim, not proof")?;
                }
                Ok(())
            }
            Mismatch::Port { port, allowed } => {
                let a: Vec<String> = allowed.iter().map(|p| p.to_string()).collect();
                write!(f, "port {port} is outside {}", a.join(", "))
            }
            Mismatch::Protocol { protocol, allowed } => {
                let a: Vec<&str> = allowed.iter().map(|p| p.as_str()).collect();
                write!(f, "protocol {} is not {}", protocol.as_str(), a.join("/"))
            }
            Mismatch::Process { exe, allowed } => write!(
                f,
                "process {} is not {}",
                exe.as_deref().unwrap_or("(unknown)"),
                allowed.join(", ")
            ),
            Mismatch::HttpHost { host } => {
                write!(
                    f,
                    "HTTP host {} is not allowed",
                    host.as_deref().unwrap_or("(none)")
                )
            }
            Mismatch::HttpMethod { method } => write!(f, "HTTP method {method} is not allowed"),
            Mismatch::HttpPath { path } => write!(f, "path {path} is outside the rule's paths"),
        }
    }
}

fn dir(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// A rule that came close, and why it did not match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearMiss {
    pub rule: String,
    pub reasons: Vec<Mismatch>,
}

/// Why the policy did not allow the flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// No rule allows the flow.
    NoRule,
    /// The executable is not in the workload's process baseline.
    ProcessNotInBaseline { exe: String },
    /// The connection is allowed by `rule`, but the request's own target
    /// (CONNECT / absolute-form) is not an allowed destination.
    TargetNotAllowed {
        rule: String,
        target: String,
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// The rule that allowed the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<Violation>,
    /// For a violation: the closest rules, fewest mismatches first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_misses: Vec<NearMiss>,
}

const NEAR_MISSES: usize = 5;

impl CompiledPolicy {
    /// Explains the decision for `flow`; agrees with [`Decide::decide`].
    pub fn explain(&self, flow: &Flow) -> Explanation {
        let decision = self.decide(flow);
        let verdict = self.verdict(flow);
        let violation = match verdict {
            Verdict::Allowed(_) => None,
            Verdict::NoRule => Some(Violation::NoRule),
            Verdict::ProcessNotInBaseline => Some(Violation::ProcessNotInBaseline {
                exe: flow
                    .process
                    .as_ref()
                    .map(|p| p.exe.clone())
                    .unwrap_or_default(),
            }),
            Verdict::TargetDenied { outer } => {
                let target = flow
                    .http
                    .as_ref()
                    .and_then(|h| h.target.clone())
                    .unwrap_or_default();
                let connect = flow
                    .http
                    .as_ref()
                    .is_some_and(|h| h.method.eq_ignore_ascii_case("CONNECT"));
                let why = match parse_target(&target, connect) {
                    None => "the target is malformed or ambiguous".to_string(),
                    Some((host, port)) => format!(
                        "no outbound rule allows {host} port {port} (a name must match an fqdn rule, an IP a cidr rule)"
                    ),
                };
                Some(Violation::TargetNotAllowed {
                    rule: self.rule_id(outer).to_string(),
                    target,
                    why,
                })
            }
        };
        let matched = match verdict {
            Verdict::Allowed(r) => Some(Arc::clone(self.rule_id(r))),
            _ => None,
        };
        let near_misses = if matches!(verdict, Verdict::NoRule) {
            let mut all: Vec<(usize, NearMiss)> = self
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        i,
                        NearMiss {
                            rule: r.id.to_string(),
                            reasons: r.mismatches(flow),
                        },
                    )
                })
                .filter(|(_, n)| !n.reasons.is_empty())
                .collect();
            all.sort_by_key(|(i, n)| (n.reasons.len(), *i));
            all.into_iter().take(NEAR_MISSES).map(|(_, n)| n).collect()
        } else {
            Vec::new()
        };
        Explanation {
            decision,
            matched,
            violation,
            near_misses,
        }
    }
}

impl CompiledRule {
    /// Every condition of this rule that `flow` does not meet.
    pub(crate) fn mismatches(&self, flow: &Flow) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if self.direction != flow.direction {
            out.push(Mismatch::Direction {
                rule: self.direction,
            });
        }
        match &self.peer {
            Peer::Any => {}
            Peer::Cidr(net) => {
                let ip = match flow.peer_ip() {
                    std::net::IpAddr::V6(a) => a
                        .to_ipv4_mapped()
                        .map(std::net::IpAddr::V4)
                        .unwrap_or(flow.peer_ip()),
                    v4 => v4,
                };
                if !net.contains(&ip) {
                    out.push(Mismatch::PeerNotInCidr { cidr: *net });
                }
            }
            Peer::Fqdn(pattern) => {
                let pat = self.peer_name.as_ref();
                let resolved = flow.direction == Direction::Outbound
                    && flow
                        .peer_names
                        .iter()
                        .any(|n| pat.is_some_and(|p| p.matches(&normalise(n))));
                if !resolved {
                    let claims = flow
                        .sni
                        .iter()
                        .chain(flow.http.as_ref().and_then(|h| h.host.as_ref()))
                        .find(|c| pat.is_some_and(|p| p.matches(&normalise(c))));
                    out.push(Mismatch::NameNotResolved {
                        pattern: pattern.clone(),
                        peer_names: flow.peer_names.clone(),
                        claimed: claims.cloned(),
                    });
                }
            }
        }
        let port = flow.service_port();
        if !self.ports.is_empty() && !self.ports.iter().any(|p| p.contains(port)) {
            out.push(Mismatch::Port {
                port,
                allowed: self.ports.clone(),
            });
        }
        if !self.admits_protocol(flow.protocol) {
            let allowed = [
                AppProtocol::Http,
                AppProtocol::Http2,
                AppProtocol::Tls,
                AppProtocol::Dns,
                AppProtocol::Opaque,
            ]
            .into_iter()
            .filter(|p| self.admits_protocol(*p))
            .collect();
            out.push(Mismatch::Protocol {
                protocol: flow.protocol,
                allowed,
            });
        }
        if !self.admits_process(flow) {
            out.push(Mismatch::Process {
                exe: flow.process.as_ref().map(|p| p.exe.clone()),
                allowed: self.processes.clone(),
            });
        }
        if let (Some(h), Some(req)) = (&self.http, &flow.http) {
            if !h.admits_host(req.host.as_deref()) {
                out.push(Mismatch::HttpHost {
                    host: req.host.clone(),
                });
            }
            if !h.admits_method(&req.method) {
                out.push(Mismatch::HttpMethod {
                    method: req.method.clone(),
                });
            }
            if !h.admits_path(&req.path) {
                out.push(Mismatch::HttpPath {
                    path: req.path.clone(),
                });
            }
        }
        out
    }
}
