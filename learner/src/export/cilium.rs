use podwarden_policy::model::{Peer, PolicyDocument};
use podwarden_policy::Direction;
use serde_json::{json, Value};

use super::{header, l4_protocols, ns_name, to_yaml};
use crate::error::LearnerError;

/// A `cilium.io/v2` CiliumNetworkPolicy: names as `toFQDNs` (with the DNS
/// visibility rule Cilium needs to learn name→IP), HTTP methods, paths and
/// hosts as L7 rules. Processes and TLS SNI cannot be expressed.
pub fn cilium(doc: &PolicyDocument) -> Result<String, LearnerError> {
    let (ns, name) = ns_name(doc)?;
    let mut notes = Vec::new();
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    let mut fqdn_selectors = Vec::new();
    for r in &doc.spec.rules {
        let mut entry = serde_json::Map::new();
        let inbound = r.direction == Direction::Inbound;
        match &r.peer {
            Peer::Any => {
                entry.insert(
                    if inbound {
                        "fromEntities"
                    } else {
                        "toEntities"
                    }
                    .into(),
                    json!(["all"]),
                );
            }
            Peer::Cidr(n) => {
                entry.insert(
                    if inbound { "fromCIDR" } else { "toCIDR" }.into(),
                    json!([n.to_string()]),
                );
            }
            Peer::Fqdn(f) => {
                if inbound {
                    notes.push(format!(
                        "{}: NOT EXPORTED: inbound peers cannot be DNS names in Cilium",
                        r.id
                    ));
                    continue;
                }
                let sel = match f.strip_prefix("*.") {
                    Some(_) => json!({"matchPattern": f}),
                    None => json!({"matchName": f}),
                };
                fqdn_selectors.push(sel.clone());
                entry.insert("toFQDNs".into(), json!([sel]));
            }
        }
        if !r.ports.is_empty() {
            let mut ports = Vec::new();
            for l4 in l4_protocols(&r.protocols) {
                for p in &r.ports {
                    let mut pv = json!({"port": p.first.to_string(), "protocol": l4});
                    if p.last != p.first {
                        pv["endPort"] = json!(p.last);
                    }
                    ports.push(pv);
                }
            }
            let mut tp = json!({"ports": ports});
            if let Some(h) = &r.http {
                let rules = http_rules(&h.methods, &h.paths, &h.hosts);
                if !rules.is_empty() {
                    tp["rules"] = json!({"http": rules});
                }
            }
            entry.insert("toPorts".into(), json!([tp]));
        } else if r.http.is_some() {
            notes.push(format!(
                "{}: HTTP rules need ports in Cilium; exported as L3 only",
                r.id
            ));
        }
        if !r.processes.is_empty() {
            notes.push(format!(
                "{}: processes [{}] not expressible",
                r.id,
                r.processes.join(", ")
            ));
        }
        if r.note.contains("SNI seen") {
            notes.push(format!(
                "{}: TLS SNI is not checked by Cilium without TLS interception",
                r.id
            ));
        }
        if inbound {
            ingress.push(Value::Object(entry));
        } else {
            egress.push(Value::Object(entry));
        }
    }
    if !fqdn_selectors.is_empty() {
        // toFQDNs only works when Cilium's DNS proxy sees the lookups.
        egress.push(json!({
            "toEndpoints": [{"matchLabels": {
                "k8s:io.kubernetes.pod.namespace": "kube-system",
                "k8s:k8s-app": "kube-dns"
            }}],
            "toPorts": [{
                "ports": [{"port": "53", "protocol": "ANY"}],
                "rules": {"dns": fqdn_selectors}
            }]
        }));
        notes.push("the last egress rule lets the pod resolve exactly the allowed names through kube-dns (required by toFQDNs)".into());
    }
    if !doc.spec.processes.is_empty() {
        notes.push(format!(
            "process baseline ({} executables) is not expressible in Cilium",
            doc.spec.processes.len()
        ));
    }
    let cnp = json!({
        "apiVersion": "cilium.io/v2",
        "kind": "CiliumNetworkPolicy",
        "metadata": {"name": format!("podwarden-{name}"), "namespace": ns},
        "spec": {
            "endpointSelector": {"matchLabels": {"app": name}},
            "ingress": ingress,
            "egress": egress,
        }
    });
    let mut out = header(doc, "CiliumNetworkPolicy");
    for n in &notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(&to_yaml(&cnp)?);
    Ok(out)
}

/// One Cilium HTTP rule per (method, path); empty lists mean "any".
fn http_rules(methods: &[String], paths: &[String], hosts: &[String]) -> Vec<Value> {
    let ms: Vec<Option<&String>> = if methods.is_empty() {
        vec![None]
    } else {
        methods.iter().map(Some).collect()
    };
    let ps: Vec<Option<String>> = if paths.is_empty() {
        vec![None]
    } else {
        paths.iter().map(|p| Some(path_regex(p))).collect()
    };
    let hs: Vec<Option<String>> = if hosts.is_empty() {
        vec![None]
    } else {
        hosts.iter().map(|h| Some(host_regex(h))).collect()
    };
    let mut out = Vec::new();
    for m in &ms {
        for p in &ps {
            for h in &hs {
                let mut v = serde_json::Map::new();
                if let Some(m) = m {
                    v.insert("method".into(), json!(m));
                }
                if let Some(p) = p {
                    v.insert("path".into(), json!(p));
                }
                if let Some(h) = h {
                    v.insert("host".into(), json!(h));
                }
                if !v.is_empty() {
                    out.push(Value::Object(v));
                }
            }
        }
    }
    out
}

/// Policy path pattern → the POSIX extended regex Cilium matches paths with.
pub fn path_regex(p: &str) -> String {
    let (body, prefix) = match p.strip_suffix('*') {
        Some(b) => (b, true),
        None => (p, false),
    };
    let mut out = String::new();
    for (i, seg) in body.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if seg.starts_with('{') && seg.ends_with('}') {
            out.push_str("[^/]+");
        } else {
            out.push_str(&regex_escape(seg));
        }
    }
    if prefix {
        out.push_str(".*");
    }
    out
}

fn host_regex(h: &str) -> String {
    match h.strip_prefix("*.") {
        Some(s) => format!("^.+\\.{}$", regex_escape(s)),
        None => format!("^{}$", regex_escape(h)),
    }
}

fn regex_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            o.push('\\');
        }
        o.push(c);
    }
    o
}
