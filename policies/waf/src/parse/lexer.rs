//! Splits a SecLang file into directives: comment removal, backslash line
//! continuation and Apache-style argument quoting (only `\"` inside double
//! quotes is an escape; every other backslash is kept for the operator).

/// One directive as written: its name, its arguments and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDirective {
    pub line: usize,
    pub name: String,
    pub args: Vec<String>,
}

/// Splits `text` into directives, or reports the first line that cannot be tokenised.
pub fn lex(text: &str) -> Result<Vec<RawDirective>, (usize, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0usize;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if logical.is_empty() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            start_line = line_no;
        }
        if let Some(body) = line.strip_suffix('\\') {
            logical.push_str(body);
            continue;
        }
        logical.push_str(line);
        let words = split_args(&logical).map_err(|m| (start_line, m))?;
        logical.clear();
        let mut it = words.into_iter();
        if let Some(name) = it.next() {
            out.push(RawDirective {
                line: start_line,
                name,
                args: it.collect(),
            });
        }
    }
    if !logical.is_empty() {
        let words = split_args(&logical).map_err(|m| (start_line, m))?;
        let mut it = words.into_iter();
        if let Some(name) = it.next() {
            out.push(RawDirective {
                line: start_line,
                name,
                args: it.collect(),
            });
        }
    }
    Ok(out)
}

/// Apache `ap_getword_conf` semantics: words separated by whitespace, a word
/// may be quoted with `"` or `'`, and inside quotes a backslash escapes only
/// the quote character itself.
pub fn split_args(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated quote {first}"));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err("text directly after a closing quote".into());
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_and_quotes() {
        let t = "# c\nSecRule ARGS \"@rx a\\\"b\" \\\n  \"id:1,\\\n  pass\"\n\nSecMarker END\n";
        let d = lex(t).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[0].args, vec!["ARGS", "@rx a\"b", "id:1,  pass"]);
        assert_eq!(d[1].name, "SecMarker");
        assert_eq!(d[1].line, 6);
    }

    #[test]
    fn backslashes_other_than_quote_are_kept() {
        let w = split_args(r#"SecRule ARGS "@rx \d+\\x""#).unwrap();
        assert_eq!(w[2], r"@rx \d+\\x");
    }

    #[test]
    fn unterminated_quote_is_error() {
        assert!(lex("SecRule ARGS \"@rx a").is_err());
    }
}
