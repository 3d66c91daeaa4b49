//! The JSON Schema of the policy file, generated from the Rust types so that
//! editors validate what the loader accepts. The checked-in copy is
//! `policies/schema/podwarden-policy.schema.json`; a test keeps it current.

use crate::model::PolicyDocument;

/// Where editors and `yaml-language-server` find the schema in the repo.
pub const SCHEMA_PATH: &str = "policies/schema/podwarden-policy.schema.json";

pub fn policy_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(PolicyDocument);
    let obj = schema.as_object_mut();
    if let Some(obj) = obj {
        obj.insert("title".into(), "podwarden WorkloadPolicy / Baseline".into());
    }
    schema.to_value()
}

/// The schema as pretty JSON with a trailing newline (the checked-in form).
pub fn policy_schema_json() -> String {
    let mut s = serde_json::to_string_pretty(&policy_schema()).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/schema/podwarden-policy.schema.json"
        );
        let generated = policy_schema_json();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
            return;
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{SCHEMA_PATH} is out of date with the Rust types; regenerate it with \
             `UPDATE_SCHEMA=1 cargo test -p podwarden-policy checked_in_schema_is_current` \
             (or `podwarden policy schema > {SCHEMA_PATH}`)"
        );
    }

    #[test]
    fn schema_describes_the_document() {
        let s = policy_schema();
        let props = &s["properties"];
        for field in ["apiVersion", "kind", "metadata", "spec"] {
            assert!(props.get(field).is_some(), "missing {field}");
        }
        let text = s.to_string();
        // Peer spellings and port strings are described.
        assert!(text.contains("cidr") && text.contains("fqdn"), "{text}");
        assert!(text.contains("8000-8100"), "port spec pattern");
    }
}
