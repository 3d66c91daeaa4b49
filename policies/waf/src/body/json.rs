//! JSON bodies flattened like ModSecurity: `{"a":{"b":[1,2]}}` gives
//! `json.a.b` = 1 and 2 (arrays repeat the parent name).

use super::Pair;
use serde_json::Value;

/// Flattens a JSON document, or returns the parse error message.
pub fn parse(body: &[u8], depth_limit: usize) -> Result<Vec<Pair>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("JSON parsing error: {e}"))?;
    let mut out = Vec::new();
    walk(&v, "json", 0, depth_limit, &mut out)?;
    Ok(out)
}

fn walk(
    v: &Value,
    prefix: &str,
    depth: usize,
    limit: usize,
    out: &mut Vec<Pair>,
) -> Result<(), String> {
    if depth > limit {
        return Err("JSON depth limit exceeded".into());
    }
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                walk(val, &format!("{prefix}.{k}"), depth + 1, limit, out)?;
            }
        }
        Value::Array(a) => {
            for val in a {
                walk(val, prefix, depth + 1, limit, out)?;
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.as_bytes().to_vec())),
        Value::Number(n) => out.push((prefix.to_string(), n.to_string().into_bytes())),
        Value::Bool(b) => out.push((
            prefix.to_string(),
            if *b {
                b"true".to_vec()
            } else {
                b"false".to_vec()
            },
        )),
        Value::Null => out.push((prefix.to_string(), Vec::new())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens() {
        let p = parse(br#"{"a":{"b":[1,"x"]},"c":null}"#, 10).unwrap();
        assert_eq!(p[0], ("json.a.b".to_string(), b"1".to_vec()));
        assert_eq!(p[1], ("json.a.b".to_string(), b"x".to_vec()));
        assert_eq!(p[2].0, "json.c");
        assert!(parse(b"{bad", 10).is_err());
        assert!(parse(b"[[[1]]]", 1).is_err());
    }
}
