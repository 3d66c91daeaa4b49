//! Semantic checks that the types alone cannot express.

use std::collections::HashMap;

use crate::flow::{AppProtocol, Direction};
use crate::matcher::path::PathPattern;
use crate::model::{validate_fqdn_pattern, Peer, PolicyDocument, API_VERSION};

/// One semantic problem: where (field path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

fn problem(out: &mut Vec<Problem>, path: String, message: impl Into<String>) {
    out.push(Problem {
        path,
        message: message.into(),
    });
}

/// Every semantic problem of `doc`, in document order. Empty = valid.
pub fn validate(doc: &PolicyDocument) -> Vec<Problem> {
    let mut out = Vec::new();
    if doc.api_version != API_VERSION {
        problem(
            &mut out,
            "apiVersion".into(),
            format!(
                "unsupported apiVersion {:?}: expected {API_VERSION:?}",
                doc.api_version
            ),
        );
    }
    let w = &doc.metadata.workload;
    let bad_workload = w.trim().is_empty()
        || w.split('/').count() > 2
        || w.split('/')
            .any(|p| p.is_empty() || p.chars().any(|c| c.is_whitespace()));
    if bad_workload {
        problem(
            &mut out,
            "metadata.workload".into(),
            format!("invalid workload {w:?}: expected `namespace/name` (or `name`)"),
        );
    }

    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, rule) in doc.spec.rules.iter().enumerate() {
        let at = |f: &str| {
            if f.is_empty() {
                format!("spec.rules[{i}]")
            } else {
                format!("spec.rules[{i}].{f}")
            }
        };
        if rule.id.trim().is_empty() {
            problem(&mut out, at("id"), "rule id must not be empty");
        } else if rule.id.len() > 128
            || rule.id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            problem(
                &mut out,
                at("id"),
                format!(
                    "invalid rule id {:?}: at most 128 characters, no spaces",
                    rule.id
                ),
            );
        } else if let Some(first) = ids.insert(rule.id.as_str(), i) {
            ids.insert(rule.id.as_str(), first);
            problem(
                &mut out,
                at("id"),
                format!(
                    "duplicate rule id {:?} (first used by spec.rules[{first}])",
                    rule.id
                ),
            );
        }

        match &rule.peer {
            Peer::Fqdn(name) if rule.direction == Direction::Inbound => problem(
                &mut out,
                at("peer"),
                format!(
                    "inbound rules name clients by cidr or `any`, not fqdn ({name:?}): a client's name cannot be proven"
                ),
            ),
            Peer::Fqdn(name) => {
                if let Err(e) = validate_fqdn_pattern(name) {
                    problem(&mut out, at("peer.fqdn"), e);
                }
            }
            Peer::Cidr(net) if net.trunc() != *net => problem(
                &mut out,
                at("peer.cidr"),
                format!("cidr {net} has host bits set; did you mean {}?", net.trunc()),
            ),
            _ => {}
        }

        if let Some(http) = &rule.http {
            let http_only = rule
                .protocols
                .iter()
                .all(|p| matches!(p, AppProtocol::Http | AppProtocol::Http2));
            if !http_only {
                problem(
                    &mut out,
                    at("http"),
                    "an http section needs protocols limited to http/http2 (or no protocols, which then means http and http2)",
                );
            }
            for (j, h) in http.hosts.iter().enumerate() {
                if let Err(e) = validate_fqdn_pattern(h) {
                    problem(&mut out, at(&format!("http.hosts[{j}]")), e);
                }
            }
            for (j, m) in http.methods.iter().enumerate() {
                let ok = !m.is_empty()
                    && m.len() <= 32
                    && m.bytes()
                        .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
                if !ok {
                    problem(
                        &mut out,
                        at(&format!("http.methods[{j}]")),
                        format!("invalid method {m:?}: expected an upper-case token like GET"),
                    );
                }
            }
            for (j, p) in http.paths.iter().enumerate() {
                if let Err(e) = PathPattern::parse(p) {
                    problem(&mut out, at(&format!("http.paths[{j}]")), e);
                }
            }
        }
        for (j, exe) in rule.processes.iter().enumerate() {
            if let Err(e) = check_exe(exe) {
                problem(&mut out, at(&format!("processes[{j}]")), e);
            }
        }
    }

    let mut exes: HashMap<&str, usize> = HashMap::new();
    for (i, p) in doc.spec.processes.iter().enumerate() {
        let path = format!("spec.processes[{i}].exe");
        if let Err(e) = check_exe(&p.exe) {
            problem(&mut out, path, e);
        } else if let Some(first) = exes.insert(p.exe.as_str(), i) {
            exes.insert(p.exe.as_str(), first);
            problem(
                &mut out,
                path,
                format!(
                    "duplicate process {:?} (first at spec.processes[{first}])",
                    p.exe
                ),
            );
        }
    }
    out
}

fn check_exe(exe: &str) -> Result<(), String> {
    if !exe.starts_with('/') || exe.contains('\0') || exe.ends_with('/') {
        return Err(format!(
            "invalid executable {exe:?}: expected an absolute path like /usr/bin/curl"
        ));
    }
    Ok(())
}
