//! Parses a rule's target list: `ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/re/|XML:/*`.

use crate::model::{Selector, Target, VarKind, NO_SLOT};

/// Splits on `|` outside `/regex/` and quoted keys, then parses each target.
pub fn parse_targets(s: &str) -> Result<Vec<Target>, String> {
    let mut out = Vec::new();
    for part in split_targets(s)? {
        out.push(parse_target(&part)?);
    }
    if out.is_empty() {
        return Err("empty target list".into());
    }
    Ok(out)
}

fn split_targets(s: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut in_regex = false;
    let mut in_quote = false;
    let mut after_colon = false;
    let mut prev = '\0';
    for c in s.chars() {
        if in_regex {
            cur.push(c);
            if c == '/' && prev != '\\' {
                in_regex = false;
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
            continue;
        }
        if in_quote {
            cur.push(c);
            if c == '\'' {
                in_quote = false;
            }
            prev = c;
            continue;
        }
        match c {
            '|' => {
                parts.push(std::mem::take(&mut cur));
                after_colon = false;
            }
            ':' if !after_colon => {
                after_colon = true;
                cur.push(c);
            }
            '/' if after_colon
                && prev == ':'
                && !cur
                    .trim_start_matches(['!', '&'])
                    .to_ascii_uppercase()
                    .starts_with("XML:") =>
            {
                in_regex = true;
                cur.push(c);
            }
            '\'' if after_colon && prev == ':' => {
                in_quote = true;
                cur.push(c);
            }
            _ => cur.push(c),
        }
        prev = c;
    }
    if in_regex {
        return Err(format!("unterminated regex key in {s:?}"));
    }
    if in_quote {
        return Err(format!("unterminated quoted key in {s:?}"));
    }
    parts.push(cur);
    Ok(parts.into_iter().map(|p| p.trim().to_string()).collect())
}

/// Parses one target such as `!REQUEST_HEADERS:User-Agent`.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let mut rest = s;
    let mut exclude = false;
    let mut count = false;
    if let Some(r) = rest.strip_prefix('!') {
        exclude = true;
        rest = r;
    }
    if let Some(r) = rest.strip_prefix('&') {
        count = true;
        rest = r;
    }
    let (name, key) = match rest.find(':') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let kind = VarKind::from_name(name).ok_or_else(|| format!("unknown variable {name:?}"))?;
    let selector = match key {
        None => Selector::All,
        Some(k) => parse_selector(kind, k)?,
    };
    if !kind.is_collection() && !matches!(selector, Selector::All) {
        return Err(format!("variable {name} takes no key"));
    }
    Ok(Target {
        kind,
        selector,
        count,
        exclude,
        slot: NO_SLOT,
    })
}

fn parse_selector(kind: VarKind, k: &str) -> Result<Selector, String> {
    if kind == VarKind::Xml {
        return Ok(Selector::Key(k.to_string()));
    }
    if k.len() >= 2 && k.starts_with('/') && k.ends_with('/') {
        let pat = &k[1..k.len() - 1];
        let re = regex::RegexBuilder::new(pat)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("bad regex key /{pat}/: {e}"))?;
        return Ok(Selector::Regex(re));
    }
    let k = k
        .strip_prefix('\'')
        .and_then(|k| k.strip_suffix('\''))
        .unwrap_or(k);
    if k.is_empty() {
        return Err("empty key".into());
    }
    Ok(Selector::Key(k.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list_with_regex_keys() {
        let t = parse_targets("ARGS|!REQUEST_COOKIES:/^_ga(?:_\\w+|x)?$/|&TX:foo|XML:/*").unwrap();
        assert_eq!(t.len(), 4);
        assert!(t[1].exclude);
        assert!(matches!(t[1].selector, Selector::Regex(_)));
        assert!(t[2].count);
        assert_eq!(t[3].kind, VarKind::Xml);
    }

    #[test]
    fn unknown_variable_is_error() {
        assert!(parse_targets("ARGZ").unwrap_err().contains("ARGZ"));
    }
}
