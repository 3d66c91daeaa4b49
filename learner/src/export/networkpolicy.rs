use podwarden_policy::model::{Peer, PolicyDocument, Rule};
use podwarden_policy::Direction;
use serde_json::{json, Value};

use super::{header, l4_protocols, ns_name, ports_text, to_yaml, ExportOptions};
use crate::error::LearnerError;

/// A `networking.k8s.io/v1` NetworkPolicy. It cannot express DNS names,
/// processes, HTTP methods/paths/hosts or app-protocol detection; rules
/// that need them are widened only where safe (L7 dropped → L4 allow, said
/// in a comment) and FQDN rules are left out unless `fqdn_addresses` asks
/// for the last-seen addresses.
pub fn networkpolicy(doc: &PolicyDocument, opts: &ExportOptions) -> Result<String, LearnerError> {
    let (ns, name) = ns_name(doc)?;
    let mut notes: Vec<String> = Vec::new();
    let mut ingress = Vec::new();
    let mut egress = Vec::new();
    for r in &doc.spec.rules {
        let peers: Option<Vec<Value>> = match &r.peer {
            Peer::Any => None,
            Peer::Cidr(n) => Some(vec![json!({"ipBlock": {"cidr": n.to_string()}})]),
            Peer::Fqdn(f) => match opts.fqdn_addresses.as_ref().and_then(|m| m.get(f)) {
                Some(ips) if !ips.is_empty() => {
                    notes.push(format!(
                        "{}: {f} as the addresses last seen behind it ({}); they go stale when the name moves",
                        r.id,
                        ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
                    ));
                    Some(
                        ips.iter()
                            .map(|ip| json!({"ipBlock": {"cidr": ipnet::IpNet::from(*ip).to_string()}}))
                            .collect(),
                    )
                }
                _ => {
                    notes.push(format!(
                        "{}: NOT EXPORTED: peer {f} is a DNS name, which NetworkPolicy cannot express (use --fqdn-ips for the last-seen addresses, or the Cilium export)",
                        r.id
                    ));
                    continue;
                }
            },
        };
        lost_detail(r, &mut notes);
        let mut entry = serde_json::Map::new();
        if let Some(p) = peers {
            let key = if r.direction == Direction::Inbound {
                "from"
            } else {
                "to"
            };
            entry.insert(key.into(), Value::Array(p));
        }
        if !r.ports.is_empty() {
            let mut ports = Vec::new();
            for l4 in l4_protocols(&r.protocols) {
                for p in &r.ports {
                    let mut pv = json!({"protocol": l4, "port": p.first});
                    if p.last != p.first {
                        pv["endPort"] = json!(p.last);
                    }
                    ports.push(pv);
                }
            }
            entry.insert("ports".into(), Value::Array(ports));
        }
        match r.direction {
            Direction::Inbound => ingress.push(Value::Object(entry)),
            Direction::Outbound => egress.push(Value::Object(entry)),
        }
    }
    if !doc.spec.processes.is_empty() {
        notes.push(format!(
            "process baseline ({} executables) is not expressible: any process may use the allowed flows",
            doc.spec.processes.len()
        ));
    }
    let np = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": format!("podwarden-{name}"), "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": {"app": name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        }
    });
    let mut out = header(doc, "NetworkPolicy");
    for n in &notes {
        out.push_str(&format!("# {n}\n"));
    }
    out.push_str(&to_yaml(&np)?);
    Ok(out)
}

fn lost_detail(r: &Rule, notes: &mut Vec<String>) {
    let mut lost = Vec::new();
    if !r.processes.is_empty() {
        lost.push(format!("processes [{}]", r.processes.join(", ")));
    }
    if let Some(h) = &r.http {
        if !h.methods.is_empty() || !h.paths.is_empty() || !h.hosts.is_empty() {
            lost.push("HTTP methods/paths/hosts".to_string());
        }
    }
    if !r.protocols.is_empty() {
        lost.push(format!(
            "app protocols [{}]",
            r.protocols
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !lost.is_empty() {
        notes.push(format!(
            "{}: exported as L4 only ({}); dropped: {}",
            r.id,
            ports_text(&r.ports),
            lost.join("; ")
        ));
    }
}
