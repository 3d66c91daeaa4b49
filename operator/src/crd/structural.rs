//! Makes the generated CRD schemas *structural* (what the API server
//! requires of CRDs). The policy model's hand-friendly spellings — a peer
//! that is `any` or `{cidr: …}`, a port that is `443` or `"8000-8100"`, an
//! IP network that is v4 or v6 — come out of schemars as `anyOf`/`oneOf`
//! unions without a `type`, which Kubernetes rejects. Each such node becomes
//! the closest structural form:
//! * integer-or-string → `x-kubernetes-int-or-string: true`;
//! * unions of strings → `type: string`;
//! * anything else (string-or-object) → `x-kubernetes-preserve-unknown-fields: true`.
//!
//! The API server then checks less for those few fields; the operator and
//! the sidecar parse every policy with the model's own (strict) serde rules
//! before using it, so a malformed value is refused there with its reason.

use serde_json::{Map, Value};

const UNIONS: [&str; 2] = ["anyOf", "oneOf"];

fn branch_kind(b: &Value) -> &'static str {
    let o = b.as_object();
    let get = |k: &str| o.and_then(|o| o.get(k));
    match get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => "int",
        Some("string") => "string",
        Some(_) => "other",
        None if get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("uint") || f.starts_with("int")) =>
        {
            "int"
        }
        None if get("minimum").is_some() || get("maximum").is_some() => "int",
        None if get("pattern").is_some() || get("maxLength").is_some() => "string",
        None => "other",
    }
}

fn fix_node(node: &mut Map<String, Value>) {
    let union_key = UNIONS.iter().find(|k| node.contains_key(**k)).copied();
    if let Some(key) = union_key {
        let kinds: Vec<&str> = node[key]
            .as_array()
            .map(|a| a.iter().map(branch_kind).collect())
            .unwrap_or_default();
        let has_type = node.contains_key("type");
        let all_strings = !kinds.is_empty() && kinds.iter().all(|k| *k == "string");
        let int_or_string =
            kinds.contains(&"int") && kinds.iter().all(|k| *k == "int" || *k == "string");
        let mixed_with_object = has_type && kinds.contains(&"string");
        if !has_type || mixed_with_object {
            node.remove(key);
            for k in ["title", "example", "format", "minimum", "maximum"] {
                node.remove(k);
            }
            if int_or_string {
                node.remove("type");
                node.insert("x-kubernetes-int-or-string".into(), Value::Bool(true));
            } else if all_strings {
                node.insert("type".into(), Value::String("string".into()));
            } else {
                for k in ["type", "properties", "required", "additionalProperties"] {
                    node.remove(k);
                }
                node.insert(
                    "x-kubernetes-preserve-unknown-fields".into(),
                    Value::Bool(true),
                );
            }
        }
    }
    for (k, v) in node.iter_mut() {
        match (k.as_str(), v) {
            ("properties", Value::Object(props)) => {
                for p in props.values_mut() {
                    if let Value::Object(p) = p {
                        fix_node(p);
                    }
                }
            }
            ("items" | "additionalProperties", Value::Object(o)) => fix_node(o),
            _ => {}
        }
    }
}

/// Rewrites every version's `openAPIV3Schema` of a CRD (as JSON) in place.
pub fn make_structural(crd: &mut Value) {
    if let Some(versions) = crd
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for v in versions {
            if let Some(Value::Object(s)) = v.pointer_mut("/schema/openAPIV3Schema") {
                fix_node(s);
            }
        }
    }
}

/// Violations of the structural-schema rules we can check offline: every
/// field has a `type` unless it is int-or-string or preserves unknown
/// fields, and no union remains. Empty = structural.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    fn walk(path: &str, n: &Value, out: &mut Vec<String>) {
        let Some(o) = n.as_object() else { return };
        let escape = o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !o.contains_key("type") && !escape {
            out.push(format!("{path}: no type"));
        }
        for u in UNIONS {
            if o.contains_key(u) {
                out.push(format!("{path}: {u} left"));
            }
        }
        if let Some(Value::Object(props)) = o.get("properties") {
            for (k, p) in props {
                walk(&format!("{path}.{k}"), p, out);
            }
        }
        if let Some(items) = o.get("items") {
            walk(&format!("{path}[]"), items, out);
        }
        if let Some(ap @ Value::Object(_)) = o.get("additionalProperties") {
            walk(&format!("{path}{{}}"), ap, out);
        }
    }
    let mut out = Vec::new();
    walk("", schema, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unions_become_structural_forms() {
        let mut crd = json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "peer": {"type": "object", "anyOf": [{"pattern": "^any$"}, {"required": ["cidr"]}],
                     "properties": {"cidr": {"oneOf": [{"pattern": "a", "maxLength": 18}, {"pattern": "b"}]}}},
            "ports": {"type": "array", "items": {"anyOf": [{"format": "uint16", "minimum": 1.0}, {"pattern": "^[0-9]+$"}]}},
            "plain": {"type": "string"}
        }}}}]}});
        make_structural(&mut crd);
        let s = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_eq!(
            s["properties"]["peer"],
            json!({"x-kubernetes-preserve-unknown-fields": true})
        );
        assert_eq!(
            s["properties"]["ports"]["items"],
            json!({"x-kubernetes-int-or-string": true})
        );
        assert_eq!(s["properties"]["plain"], json!({"type": "string"}));
        assert!(
            structural_violations(s).is_empty(),
            "{:?}",
            structural_violations(s)
        );
        let cidr = json!({"type": "object", "properties": {"c": {"oneOf": [{"pattern": "a"}, {"pattern": "b"}]}}});
        let mut crd = json!({"spec": {"versions": [{"schema": {"openAPIV3Schema": cidr}}]}});
        make_structural(&mut crd);
        assert_eq!(
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["c"],
            json!({"type": "string"})
        );
    }

    #[test]
    fn violations_are_found() {
        let bad = json!({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}, "b": {"type": "string"}}});
        let v = structural_violations(&bad);
        assert_eq!(
            v,
            vec![".a: no type".to_string(), ".a: anyOf left".to_string()]
        );
    }
}
