//! `multipart/form-data` with ModSecurity's strict checks: each anomaly sets
//! a flag that CRS (rule 922/920 and the 20000x base rules) inspects.

use super::Pair;

#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub invalid_header_folding: bool,
    pub lf_line: bool,
    pub crlf_line: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub unmatched_boundary: bool,
    pub file_limit_exceeded: bool,
}

impl Flags {
    pub fn strict_error(&self) -> bool {
        self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.invalid_header_folding
            || (self.lf_line && self.crlf_line)
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.file_limit_exceeded
    }
}

#[derive(Debug, Default, Clone)]
pub struct Parsed {
    pub args: Vec<Pair>,
    /// (field name, file name, size)
    pub files: Vec<(String, Vec<u8>, usize)>,
    /// (field name, header line)
    pub part_headers: Vec<Pair>,
    pub flags: Flags,
}

/// Finds the boundary in a Content-Type header value.
pub fn boundary(content_type: &[u8], flags: &mut Flags) -> Option<Vec<u8>> {
    let lower = content_type.to_ascii_lowercase();
    let pos = crate::operator::find(&lower, b"boundary")?;
    let mut rest = &content_type[pos + 8..];
    while rest.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
        flags.boundary_whitespace = true;
        rest = &rest[1..];
    }
    rest = rest.strip_prefix(b"=")?;
    if rest.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
        flags.boundary_whitespace = true;
        rest = &rest[1..];
    }
    let b: Vec<u8> = if let Some(q) = rest.strip_prefix(b"\"") {
        flags.boundary_quoted = true;
        let end = q.iter().position(|&c| c == b'"')?;
        q[..end].to_vec()
    } else {
        rest.iter()
            .copied()
            .take_while(|&c| c != b';' && c != b',')
            .collect()
    };
    let b: Vec<u8> = b.trim_ascii_end().to_vec();
    if b.is_empty() || b.iter().any(|&c| !(0x20..=0x7e).contains(&c)) {
        return None;
    }
    if b.contains(&b' ') {
        flags.boundary_whitespace = true;
    }
    Some(b)
}

/// Parses a multipart body; `Err` carries the REQBODY_ERROR message.
pub fn parse(body: &[u8], content_type: &[u8]) -> Result<Parsed, (String, Parsed)> {
    let mut p = Parsed::default();
    let Some(bnd) = boundary(content_type, &mut p.flags) else {
        return Err(("Multipart: boundary not found in Content-Type".into(), p));
    };
    let mut delim = b"--".to_vec();
    delim.extend_from_slice(&bnd);
    // Lines keep knowledge of their terminator to detect LF-only lines.
    let mut lines: Vec<(&[u8], bool)> = Vec::new();
    let mut start = 0;
    for (i, &c) in body.iter().enumerate() {
        if c == b'\n' {
            let mut l = &body[start..i];
            let crlf = l.last() == Some(&b'\r');
            if crlf {
                l = &l[..l.len() - 1];
            }
            lines.push((l, crlf));
            start = i + 1;
        }
    }
    let tail = &body[start..];
    let mut has_tail = !tail.is_empty();
    if has_tail {
        lines.push((tail, true));
    }
    #[derive(PartialEq)]
    enum St {
        Preamble,
        Headers,
        Content,
        Done,
    }
    let mut st = St::Preamble;
    let mut headers: Vec<Vec<u8>> = Vec::new();
    let mut content: Vec<u8> = Vec::new();
    let mut content_started = false;
    let mut prev_crlf = true;
    let mut finished = false;
    for (idx, (line, crlf)) in lines.iter().enumerate() {
        let is_last_tail = has_tail && idx == lines.len() - 1;
        let (line, crlf) = (*line, *crlf);
        if st != St::Done && line.starts_with(&delim) {
            let after = &line[delim.len()..];
            let closing = after.starts_with(b"--");
            let rest = if closing { &after[2..] } else { after };
            if rest.iter().all(|c| *c == b' ' || *c == b'\t') {
                if !is_last_tail {
                    if crlf {
                        p.flags.crlf_line = true;
                    } else {
                        p.flags.lf_line = true;
                    }
                }
                if st == St::Content || st == St::Headers {
                    finish_part(&mut p, &headers, &content, st == St::Content);
                }
                headers.clear();
                content.clear();
                content_started = false;
                if closing {
                    st = St::Done;
                    finished = true;
                } else {
                    st = St::Headers;
                }
                continue;
            }
            p.flags.unmatched_boundary = true;
        } else if st != St::Done
            && line.starts_with(b"--")
            && st == St::Content
            && line.len() > 2
            && !line.starts_with(&delim)
        {
            // A line that looks like a boundary but is not ours.
            if line[2..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(c))
                && line.len() >= delim.len()
            {
                p.flags.unmatched_boundary = true;
            }
        }
        match st {
            St::Preamble => {
                if !line.is_empty() {
                    p.flags.data_before = true;
                }
            }
            St::Headers => {
                if !is_last_tail {
                    if crlf {
                        p.flags.crlf_line = true;
                    } else {
                        p.flags.lf_line = true;
                    }
                }
                if line.is_empty() {
                    st = St::Content;
                } else if line[0] == b' ' || line[0] == b'\t' {
                    p.flags.header_folding = true;
                    match headers.last_mut() {
                        Some(h) => h.extend_from_slice(line.trim_ascii()),
                        None => p.flags.invalid_header_folding = true,
                    }
                } else {
                    headers.push(line.to_vec());
                }
            }
            St::Content => {
                if content_started {
                    // Keep the line ending as sent: an LF-only line is one byte.
                    content.extend_from_slice(if prev_crlf { b"\r\n" } else { b"\n" });
                }
                content.extend_from_slice(line);
                content_started = true;
                prev_crlf = crlf;
                if is_last_tail {
                    has_tail = false;
                }
            }
            St::Done => {
                if !line.iter().all(|c| c.is_ascii_whitespace()) {
                    p.flags.data_after = true;
                }
            }
        }
    }
    if !finished {
        p.flags.invalid_part = true;
        if st == St::Content {
            finish_part(&mut p, &headers, &content, true);
        }
        return Err(("Multipart: final boundary missing".into(), p));
    }
    let _ = has_tail;
    Ok(p)
}

fn finish_part(p: &mut Parsed, headers: &[Vec<u8>], content: &[u8], had_body: bool) {
    let mut name: Option<String> = None;
    let mut filename: Option<Vec<u8>> = None;
    let mut saw_cd = false;
    for h in headers {
        let Some(colon) = h.iter().position(|&c| c == b':') else {
            p.flags.invalid_part = true;
            continue;
        };
        let hname = &h[..colon];
        let value = h[colon + 1..].trim_ascii();
        if hname.eq_ignore_ascii_case(b"content-disposition") {
            saw_cd = true;
            match parse_disposition(value, &mut p.flags) {
                Some((n, f)) => {
                    name = n;
                    filename = f;
                }
                None => p.flags.invalid_part = true,
            }
        }
    }
    if !saw_cd || !had_body {
        p.flags.invalid_part = true;
    }
    let Some(name) = name else {
        p.flags.invalid_part = true;
        return;
    };
    for h in headers {
        p.part_headers.push((name.clone(), h.clone()));
    }
    match filename {
        Some(f) => p.files.push((name, f, content.len())),
        None => p.args.push((name, content.to_vec())),
    }
}

/// `form-data; name="a"; filename="b"` → (name, filename).
fn parse_disposition(v: &[u8], flags: &mut Flags) -> Option<(Option<String>, Option<Vec<u8>>)> {
    let rest = v.strip_prefix(b"form-data").or_else(|| {
        if v.len() >= 9 && v[..9].eq_ignore_ascii_case(b"form-data") {
            Some(&v[9..])
        } else {
            None
        }
    })?;
    let mut name = None;
    let mut filename = None;
    let mut i = 0;
    let s = rest;
    loop {
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        if s[i] != b';' {
            flags.missing_semicolon = true;
        } else {
            i += 1;
        }
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        let ks = i;
        while i < s.len() && s[i] != b'=' && s[i] != b';' {
            i += 1;
        }
        let key = s[ks..i].trim_ascii().to_ascii_lowercase();
        if i >= s.len() || s[i] != b'=' {
            if key.is_empty() {
                continue;
            }
            return None;
        }
        i += 1;
        while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        let mut val = Vec::new();
        if i < s.len() && s[i] == b'"' {
            i += 1;
            let mut closed = false;
            while i < s.len() {
                if s[i] == b'\\' && i + 1 < s.len() && (s[i + 1] == b'"' || s[i + 1] == b'\\') {
                    flags.invalid_quoting = true;
                    val.push(s[i + 1]);
                    i += 2;
                } else if s[i] == b'"' {
                    closed = true;
                    i += 1;
                    break;
                } else {
                    val.push(s[i]);
                    i += 1;
                }
            }
            if !closed {
                flags.invalid_quoting = true;
            }
        } else {
            let vs = i;
            while i < s.len() && s[i] != b';' && s[i] != b' ' {
                i += 1;
            }
            val = s[vs..i].to_vec();
            if val.contains(&b'\'') || val.contains(&b'"') {
                flags.invalid_quoting = true;
            }
        }
        match key.as_slice() {
            b"name" => name = Some(String::from_utf8_lossy(&val).into_owned()),
            b"filename" | b"filename*" => filename = Some(val),
            _ => {}
        }
    }
    Some((name, filename))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &[u8] = b"multipart/form-data; boundary=XyZ";

    #[test]
    fn parses_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XyZ--\r\n";
        let p = parse(body, CT).unwrap();
        assert_eq!(p.args, vec![("a".to_string(), b"hello".to_vec())]);
        assert_eq!(p.files[0].1, b"x.php");
        assert_eq!(p.part_headers.len(), 3);
        assert!(!p.flags.strict_error(), "{:?}", p.flags);
    }

    #[test]
    fn strict_flags() {
        let body = b"junk\r\n--XyZ\r\nContent-Disposition: form-data name=\"a\"\r\n\r\nv\r\n--XyZ--\r\nafter";
        let p = parse(body, CT).unwrap();
        assert!(p.flags.data_before && p.flags.data_after && p.flags.missing_semicolon);
        assert!(parse(
            b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv",
            CT
        )
        .is_err());
        let mut f = Flags::default();
        assert_eq!(
            boundary(b"multipart/form-data; boundary=\"q q\"", &mut f),
            Some(b"q q".to_vec())
        );
        assert!(f.boundary_quoted && f.boundary_whitespace);
    }
}
