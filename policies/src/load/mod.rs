//! Reading a policy file: YAML → [`PolicyDocument`], then semantic checks,
//! every problem reported with file, line, column and field path.

mod source_map;
mod validate;

use std::path::Path;

pub use source_map::{Position, SourceMap};
pub use validate::{validate, Problem};

use crate::error::{Diagnostic, Diagnostics, PolicyError};
use crate::model::PolicyDocument;

/// Parses and validates a policy. `source_name` is used in messages.
pub fn load_policy_str(text: &str, source_name: &str) -> Result<PolicyDocument, PolicyError> {
    let doc = parse(text, source_name)?;
    let problems = validate(&doc);
    if problems.is_empty() {
        return Ok(doc);
    }
    let map = SourceMap::build(text);
    let diags = problems
        .into_iter()
        .map(|p| {
            let pos = map.locate(&p.path);
            Diagnostic {
                source_name: source_name.to_string(),
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                path: p.path,
                message: p.message,
            }
        })
        .collect();
    Err(PolicyError::Invalid(Diagnostics(diags)))
}

/// Reads, parses and validates a policy file.
pub fn load_policy_file(path: &Path) -> Result<PolicyDocument, PolicyError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: name.clone(),
        source,
    })?;
    load_policy_str(&text, &name)
}

fn parse(text: &str, source_name: &str) -> Result<PolicyDocument, PolicyError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, PolicyDocument>(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = e.inner();
        // Prefer the node the path names (serde's mark can be the enclosing
        // mapping), then serde's mark, then the nearest ancestor.
        let map = SourceMap::build(text);
        let pos = map
            .locate_exact(&path)
            .map(|p| (p.line, p.column))
            .or_else(|| inner.location().map(|l| (l.line(), l.column())))
            .or_else(|| map.locate(&path).map(|p| (p.line, p.column)));
        PolicyError::Syntax(Diagnostic {
            source_name: source_name.to_string(),
            line: pos.map(|p| p.0),
            column: pos.map(|p| p.1),
            message: bare_message(&inner.to_string(), &path),
            path,
        })
    })
}

/// serde_yaml_ng's message repeats the path and the position; we print both
/// separately, so strip them.
fn bare_message(full: &str, path: &str) -> String {
    let mut m = full;
    // serde_yaml_ng's own path may be shorter than ours (it stops at enums).
    if let Some((prefix, rest)) = m.split_once(": ") {
        if !prefix.is_empty() && !prefix.contains(' ') && path.starts_with(prefix) {
            m = rest;
        }
    }
    if let Some(i) = m.rfind(" at line ") {
        let tail = &m[i + " at line ".len()..];
        let looks_like_mark = tail.split_once(" column ").is_some_and(|(l, c)| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_digit())
                && !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
        });
        if looks_like_mark {
            m = &m[..i];
        }
    }
    m.to_string()
}

#[cfg(test)]
mod tests;
