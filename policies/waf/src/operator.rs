//! Operators (`@rx`, `@pm`, ...): parsed and compiled once at load.

use crate::macros::parse_macro;
use crate::model::MacroString;
use crate::phrase::PhraseMatcher;
use crate::regex_compat::CompiledRegex;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Operator {
    pub kind: OpKind,
    pub negated: bool,
    pub name: &'static str,
    pub param: String,
}

#[derive(Debug, Clone)]
pub enum OpKind {
    Rx(Arc<CompiledRegex>),
    Pm(Arc<PhraseMatcher>),
    Streq(MacroString),
    Contains(MacroString),
    ContainsWord(MacroString),
    BeginsWith(MacroString),
    EndsWith(MacroString),
    Within(MacroString),
    StrMatch(Vec<u8>),
    Eq(MacroString),
    Ge(MacroString),
    Gt(MacroString),
    Le(MacroString),
    Lt(MacroString),
    IpMatch(Arc<Vec<IpNet>>),
    ValidateByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    DetectSqli,
    DetectXss,
    UnconditionalMatch,
    NoMatch,
}

/// Parses `[!]@name param` (no `@` means `@rx`). `dir` resolves `@pmFromFile` paths.
pub fn parse_operator(s: &str, dir: &Path) -> Result<Operator, String> {
    let mut rest = s.trim_start();
    let mut negated = false;
    if let Some(r) = rest.strip_prefix('!') {
        negated = true;
        rest = r.trim_start();
    }
    let (name, param) = if let Some(r) = rest.strip_prefix('@') {
        match r.find(|c: char| c.is_whitespace()) {
            Some(i) => (&r[..i], r[i..].trim_start()),
            None => (r, ""),
        }
    } else {
        ("rx", rest)
    };
    let ms = || parse_macro(param);
    let (canon, kind): (&'static str, OpKind) = match name.to_ascii_lowercase().as_str() {
        "rx" => ("rx", OpKind::Rx(Arc::new(CompiledRegex::new(param)?))),
        "pm" => (
            "pm",
            OpKind::Pm(Arc::new(build_pm(
                param.split_whitespace().map(str::to_string).collect(),
            )?)),
        ),
        "pmfromfile" | "pmf" => (
            "pmFromFile",
            OpKind::Pm(Arc::new(build_pm(read_pm_files(param, dir)?)?)),
        ),
        "streq" => ("streq", OpKind::Streq(ms()?)),
        "contains" => ("contains", OpKind::Contains(ms()?)),
        "containsword" => ("containsWord", OpKind::ContainsWord(ms()?)),
        "beginswith" => ("beginsWith", OpKind::BeginsWith(ms()?)),
        "endswith" => ("endsWith", OpKind::EndsWith(ms()?)),
        "within" => ("within", OpKind::Within(ms()?)),
        "strmatch" => ("strmatch", OpKind::StrMatch(param.as_bytes().to_vec())),
        "eq" => ("eq", OpKind::Eq(ms()?)),
        "ge" => ("ge", OpKind::Ge(ms()?)),
        "gt" => ("gt", OpKind::Gt(ms()?)),
        "le" => ("le", OpKind::Le(ms()?)),
        "lt" => ("lt", OpKind::Lt(ms()?)),
        "ipmatch" => (
            "ipMatch",
            OpKind::IpMatch(Arc::new(parse_ips(
                param.split(',').map(str::to_string).collect(),
            )?)),
        ),
        "ipmatchfromfile" | "ipmatchf" => (
            "ipMatchFromFile",
            OpKind::IpMatch(Arc::new(parse_ips(read_pm_files(param, dir)?)?)),
        ),
        "validatebyterange" => (
            "validateByteRange",
            OpKind::ValidateByteRange(parse_byte_range(param)?),
        ),
        "validateurlencoding" => ("validateUrlEncoding", OpKind::ValidateUrlEncoding),
        "validateutf8encoding" => ("validateUtf8Encoding", OpKind::ValidateUtf8Encoding),
        "detectsqli" => ("detectSQLi", OpKind::DetectSqli),
        "detectxss" => ("detectXSS", OpKind::DetectXss),
        "unconditionalmatch" => ("unconditionalMatch", OpKind::UnconditionalMatch),
        "nomatch" => ("noMatch", OpKind::NoMatch),
        "rbl" | "geolookup" | "gsblookup" | "inspectfile" | "verifycc" | "verifycpf"
        | "verifyssn" | "verifysvnr" | "fuzzyhash" | "rsub" => {
            return Err(format!("operator @{name} is not supported by this engine"))
        }
        _ => return Err(format!("unknown operator @{name}")),
    };
    Ok(Operator {
        kind,
        negated,
        name: canon,
        param: param.to_string(),
    })
}

fn build_pm(words: Vec<String>) -> Result<PhraseMatcher, String> {
    PhraseMatcher::new(&words)
}

fn read_pm_files(param: &str, dir: &Path) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    for f in param.split_whitespace() {
        let p = dir.join(f);
        let text =
            std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        for l in text.lines() {
            let l = l.trim();
            if !l.is_empty() && !l.starts_with('#') {
                words.push(l.to_string());
            }
        }
    }
    Ok(words)
}

#[derive(Debug, Clone, Copy)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix as u32)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix as u32)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn parse_ips(items: Vec<String>) -> Result<Vec<IpNet>, String> {
    let mut out = Vec::new();
    for it in items {
        let it = it.trim();
        if it.is_empty() {
            continue;
        }
        let (a, p) = match it.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (it, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| format!("bad IP address {a:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&v| v <= max)
                .ok_or_else(|| format!("bad prefix {p:?}"))?,
            None => max,
        };
        out.push(IpNet { addr, prefix });
    }
    Ok(out)
}

fn parse_byte_range(param: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for part in param.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u8 = lo.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        let hi: u8 = hi.parse().map_err(|_| format!("bad byte range {part:?}"))?;
        if lo > hi {
            return Err(format!("bad byte range {part:?}"));
        }
        for b in lo..=hi {
            allowed[b as usize] = true;
        }
    }
    Ok(allowed)
}

/// C `atoi`-like parse used by the numeric operators.
pub fn atoi(s: &[u8]) -> i64 {
    // Fast path for what TX holds nearly always (scores, levels): an
    // optional '-' then at most 18 digits (no overflow possible), nothing else.
    plain_int(s).unwrap_or_else(|| atoi_general(s))
}

/// C-like `atoi` on the leading integer after whitespace; 0 when there is
/// none or it overflows.
fn atoi_general(s: &[u8]) -> i64 {
    let s = std::str::from_utf8(s).unwrap_or("").trim_start();
    let mut end = 0;
    let b = s.as_bytes();
    if end < b.len() && (b[end] == b'-' || b[end] == b'+') {
        end += 1;
    }
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    s[..end].parse().unwrap_or(0)
}

/// `s` as an integer when it is exactly `-?[0-9]{1,18}`.
fn plain_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(if neg { -n } else { n })
}

pub fn invalid_url_encoding(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if i + 2 >= s.len() || !s[i + 1].is_ascii_hexdigit() || !s[i + 2].is_ascii_hexdigit() {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

pub fn contains_word(h: &[u8], n: &[u8]) -> bool {
    if n.is_empty() {
        return true;
    }
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut start = 0;
    while let Some(p) = find(&h[start..], n) {
        let i = start + p;
        let before = i == 0 || !is_word(h[i - 1]);
        let after = i + n.len() >= h.len() || !is_word(h[i + n.len()]);
        if before && after {
            return true;
        }
        start = i + 1;
    }
    false
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() {
        return Some(0);
    }
    if n.len() > h.len() {
        return None;
    }
    memchr::memmem::find(h, n)
}

pub fn ip_match(nets: &[IpNet], value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    let Ok(ip) = s.trim().parse::<IpAddr>() else {
        return false;
    };
    nets.iter().any(|n| n.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_operators() {
        let d = Path::new(".");
        assert_eq!(parse_operator("!@rx ^a", d).unwrap().name, "rx");
        assert!(parse_operator("!@rx ^a", d).unwrap().negated);
        assert_eq!(parse_operator("foo", d).unwrap().name, "rx");
        assert!(parse_operator("@nosuch x", d)
            .unwrap_err()
            .contains("unknown operator"));
        assert!(parse_operator("@validateByteRange 1-300", d).is_err());
    }

    #[test]
    fn ip_and_words() {
        let nets = parse_ips(vec!["10.0.0.0/8".into(), "2001:db8::/32".into()]).unwrap();
        assert!(ip_match(&nets, b"10.1.2.3"));
        assert!(ip_match(&nets, b"2001:db8::1"));
        assert!(!ip_match(&nets, b"192.0.2.1"));
        assert!(contains_word(b"a select b", b"select"));
        assert!(!contains_word(b"selection", b"select"));
        assert_eq!(atoi(b" 12abc"), 12);
    }

    #[test]
    fn atoi_fast_path_agrees_with_the_general_parse() {
        for s in [
            "0",
            "-0",
            "7",
            "-7",
            "+7",
            "007",
            "-",
            "",
            " 5",
            "5 ",
            "12abc",
            "1e3",
            "٣",
            "999999999999999999",
            "-999999999999999999",
            "9999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
        ] {
            assert_eq!(atoi(s.as_bytes()), atoi_general(s.as_bytes()), "{s:?}");
        }
        assert_eq!(atoi(b"\xff1"), atoi_general(b"\xff1"));
    }
}
