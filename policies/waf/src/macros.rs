//! `%{collection.key}` macro strings in setvar, msg, logdata and operator arguments.

use crate::model::{MacroPart, MacroString, VarKind, NO_SLOT};

pub fn parse_macro(s: &str) -> Result<MacroString, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("%{") {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            lit.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (name, key) = match inner.split_once(['.', ':']) {
            Some((n, k)) => (n, Some(k.to_ascii_lowercase())),
            None => (inner, None),
        };
        let kind = VarKind::from_name(name)
            .ok_or_else(|| format!("unknown variable {name:?} in macro %{{{inner}}}"))?;
        if !lit.is_empty() {
            parts.push(MacroPart::Lit(std::mem::take(&mut lit)));
        }
        parts.push(MacroPart::Var(kind, key, NO_SLOT));
        rest = &after[end + 1..];
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(MacroPart::Lit(lit));
    }
    Ok(MacroString { parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_macros() {
        let m = parse_macro("+%{tx.critical_anomaly_score} x %{MATCHED_VAR}").unwrap();
        assert_eq!(m.parts.len(), 4);
        assert_eq!(
            m.parts[1],
            MacroPart::Var(VarKind::Tx, Some("critical_anomaly_score".into()), NO_SLOT)
        );
        assert_eq!(parse_macro("plain").unwrap().literal(), Some("plain"));
        assert!(parse_macro("%{nope.x}").is_err());
    }
}
