//! Resolves targets to the values rules inspect, and expands macros.

use super::request::ReqVars;
use super::TxState;
use crate::body::Pair;
use crate::model::{MacroPart, MacroString, Selector, Target, VarKind};
use std::borrow::Cow;

/// One value a rule inspects: `ARGS:foo` → kind ARGS, key "foo".
#[derive(Debug, Clone)]
pub struct Val<'a> {
    pub kind: VarKind,
    pub key: Cow<'a, str>,
    pub value: Cow<'a, [u8]>,
}

impl Val<'_> {
    /// `KIND:key`, or `KIND` for a keyless value (MATCHED_VAR_NAME's form),
    /// written into `out` to reuse its allocation.
    pub fn write_full_name(&self, out: &mut String) {
        out.clear();
        out.push_str(self.kind.name());
        if !self.key.is_empty() {
            out.push(':');
            out.push_str(&self.key);
        }
    }
}

fn pairs<'a>(kind: VarKind, p: &'a [Pair], names: bool, sel: &Selector, out: &mut Vec<Val<'a>>) {
    for (k, v) in p {
        if sel.matches(k) {
            let value: Cow<'a, [u8]> = if names {
                Cow::Borrowed(k.as_bytes())
            } else {
                Cow::Borrowed(v)
            };
            out.push(Val {
                kind,
                key: Cow::Borrowed(k),
                value,
            });
        }
    }
}

fn scalar<'a>(kind: VarKind, v: &'a [u8], out: &mut Vec<Val<'a>>) {
    out.push(Val {
        kind,
        key: Cow::Borrowed(""),
        value: Cow::Borrowed(v),
    });
}

fn owned<'a>(kind: VarKind, v: Vec<u8>, out: &mut Vec<Val<'a>>) {
    out.push(Val {
        kind,
        key: Cow::Borrowed(""),
        value: Cow::Owned(v),
    });
}

fn flag(b: bool) -> Vec<u8> {
    if b {
        b"1".to_vec()
    } else {
        b"0".to_vec()
    }
}

fn map<'a>(
    kind: VarKind,
    m: impl Iterator<Item = (&'a String, &'a Vec<u8>)>,
    sel: &Selector,
    out: &mut Vec<Val<'static>>,
) {
    for (k, v) in m {
        if sel.matches(k) {
            out.push(Val {
                kind,
                key: Cow::Owned(k.clone()),
                value: Cow::Owned(v.clone()),
            });
        }
    }
}

/// Appends the values `kind`/`sel` denote.
pub fn collect<'a>(
    req: &'a ReqVars,
    st: &TxState,
    kind: VarKind,
    sel: &Selector,
    out: &mut Vec<Val<'a>>,
) {
    use VarKind::*;
    match kind {
        Args => {
            pairs(Args, &req.args_get, false, sel, out);
            pairs(Args, &req.args_post, false, sel, out);
        }
        ArgsNames => {
            pairs(ArgsNames, &req.args_get, true, sel, out);
            pairs(ArgsNames, &req.args_post, true, sel, out);
        }
        ArgsGet => pairs(kind, &req.args_get, false, sel, out),
        ArgsGetNames => pairs(kind, &req.args_get, true, sel, out),
        ArgsPost => pairs(kind, &req.args_post, false, sel, out),
        ArgsPostNames => pairs(kind, &req.args_post, true, sel, out),
        ArgsCombinedSize => {
            let n: usize = req
                .args_get
                .iter()
                .chain(req.args_post.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum();
            owned(kind, n.to_string().into_bytes(), out)
        }
        RequestHeaders => pairs(kind, &req.headers, false, sel, out),
        RequestHeadersNames => pairs(kind, &req.headers, true, sel, out),
        RequestCookies => pairs(kind, &req.cookies, false, sel, out),
        RequestCookiesNames => pairs(kind, &req.cookies, true, sel, out),
        RequestUri => scalar(kind, &req.uri, out),
        RequestUriRaw => scalar(kind, &req.uri_raw, out),
        RequestFilename => scalar(kind, &req.filename, out),
        RequestBasename => scalar(kind, &req.basename, out),
        RequestLine => scalar(kind, &req.line, out),
        RequestMethod => scalar(kind, &req.method, out),
        RequestProtocol => scalar(kind, &req.protocol, out),
        QueryString => scalar(kind, &req.query, out),
        RequestBody => {
            if req.has_body_var {
                scalar(kind, &req.body, out)
            }
        }
        RequestBodyLength => owned(kind, req.body.len().to_string().into_bytes(), out),
        FullRequest => scalar(kind, &req.full_request, out),
        FullRequestLength => owned(kind, req.full_request.len().to_string().into_bytes(), out),
        Files => {
            for (n, f, _) in &req.files {
                if sel.matches(n) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(n),
                        value: Cow::Borrowed(f),
                    });
                }
            }
        }
        FilesNames => {
            for (n, _, _) in &req.files {
                if sel.matches(n) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(n),
                        value: Cow::Borrowed(n.as_bytes()),
                    });
                }
            }
        }
        FilesSizes => {
            for (n, _, s) in &req.files {
                if sel.matches(n) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(n),
                        value: Cow::Owned(s.to_string().into_bytes()),
                    });
                }
            }
        }
        FilesTmpNames | FilesTmpContent => {}
        FilesCombinedSize => owned(
            kind,
            req.files
                .iter()
                .map(|f| f.2)
                .sum::<usize>()
                .to_string()
                .into_bytes(),
            out,
        ),
        MultipartPartHeaders => pairs(kind, &req.part_headers, false, sel, out),
        MultipartFilename => {
            if let Some((_, f, _)) = req.files.last() {
                scalar(kind, f, out)
            }
        }
        MultipartName => {
            if let Some((n, _)) = req.args_post.last() {
                scalar(kind, n.as_bytes(), out)
            }
        }
        MultipartStrictError
        | MultipartUnmatchedBoundary
        | MultipartBoundaryQuoted
        | MultipartBoundaryWhitespace
        | MultipartDataAfter
        | MultipartDataBefore
        | MultipartHeaderFolding
        | MultipartInvalidHeaderFolding
        | MultipartInvalidPart
        | MultipartInvalidQuoting
        | MultipartLfLine
        | MultipartMissingSemicolon
        | MultipartCrlfLfLines
        | MultipartFileLimitExceeded => {
            let Some(f) = &req.mp else { return };
            let v = match kind {
                MultipartStrictError => f.strict_error() || req.reqbody_error,
                MultipartUnmatchedBoundary => f.unmatched_boundary,
                MultipartBoundaryQuoted => f.boundary_quoted,
                MultipartBoundaryWhitespace => f.boundary_whitespace,
                MultipartDataAfter => f.data_after,
                MultipartDataBefore => f.data_before,
                MultipartHeaderFolding => f.header_folding,
                MultipartInvalidHeaderFolding => f.invalid_header_folding,
                MultipartInvalidPart => f.invalid_part,
                MultipartInvalidQuoting => f.invalid_quoting,
                MultipartLfLine => f.lf_line,
                MultipartMissingSemicolon => f.missing_semicolon,
                MultipartCrlfLfLines => f.lf_line && f.crlf_line,
                _ => f.file_limit_exceeded,
            };
            owned(kind, flag(v), out)
        }
        Xml => {
            let Some(d) = &req.xml else { return };
            let key = match sel {
                Selector::Key(k) => k.as_str(),
                _ => "/*",
            };
            if key.contains('@') {
                for a in &d.attrs {
                    out.push(Val {
                        kind,
                        key: Cow::Owned(key.to_string()),
                        value: Cow::Borrowed(a),
                    });
                }
            } else {
                out.push(Val {
                    kind,
                    key: Cow::Owned(key.to_string()),
                    value: Cow::Borrowed(&d.text),
                });
            }
        }
        ReqbodyError | ReqbodyProcessorError => owned(kind, flag(req.reqbody_error), out),
        ReqbodyErrorMsg | ReqbodyProcessorErrorMsg => scalar(kind, &req.reqbody_error_msg, out),
        ReqbodyProcessor => {
            let p = st
                .body_processor
                .or(req.default_processor)
                .map(|p| p.name())
                .unwrap_or("");
            out.push(Val {
                kind,
                key: Cow::Borrowed(""),
                value: Cow::Owned(p.as_bytes().to_vec()),
            });
        }
        InboundDataError => owned(kind, flag(req.inbound_data_error), out),
        OutboundDataError => owned(kind, flag(req.outbound_data_error), out),
        UrlencodedError => owned(kind, flag(req.urlencoded_error), out),
        Tx => {
            if let Selector::Key(k) = sel {
                if let Some(v) = st.tx.get(k.as_str()) {
                    out.push(Val {
                        kind,
                        key: Cow::Owned(k.clone()),
                        value: Cow::Owned(v.clone()),
                    });
                }
                return;
            }
            // Select, then sort what was selected by name: the order an
            // ordered map gives, without sorting the whole collection.
            let mut sel_kv: Vec<(&String, &Vec<u8>)> =
                st.tx.iter().filter(|(k, _)| sel.matches(k)).collect();
            sel_kv.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let mut tmp = Vec::new();
            map(kind, sel_kv.into_iter(), &Selector::All, &mut tmp);
            out.extend(tmp);
        }
        Env => {
            let mut tmp = Vec::new();
            map(kind, st.env.iter(), sel, &mut tmp);
            out.extend(tmp);
        }
        Ip | Global | Session | User | Resource => {
            let tag = kind as u8;
            for ((t, k), v) in &st.other {
                if *t == tag && sel.matches(k) {
                    out.push(Val {
                        kind,
                        key: Cow::Owned(k.clone()),
                        value: Cow::Owned(v.clone()),
                    });
                }
            }
        }
        Rule => {
            let items: [(&str, Vec<u8>); 2] = [
                ("id", st.rule_id.to_string().into_bytes()),
                (
                    "severity",
                    st.rule_severity
                        .map(|s| s.to_string())
                        .unwrap_or_default()
                        .into_bytes(),
                ),
            ];
            for (k, v) in items {
                if sel.matches(k) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(k),
                        value: Cow::Owned(v),
                    });
                }
            }
        }
        MatchedVar => owned(kind, st.matched_var.clone(), out),
        MatchedVarName => owned(kind, st.matched_var_name.clone().into_bytes(), out),
        MatchedVars | MatchedVarsNames => {
            for (n, v) in st.matched_vars.iter() {
                if sel.matches(n) {
                    let value = if kind == MatchedVars {
                        v.clone()
                    } else {
                        n.clone().into_bytes()
                    };
                    out.push(Val {
                        kind,
                        key: Cow::Owned(n.clone()),
                        value: Cow::Owned(value),
                    });
                }
            }
        }
        ResponseBody => {
            if let Some(b) = &req.resp_body {
                scalar(kind, b, out)
            }
        }
        ResponseHeaders => pairs(kind, &req.resp_headers, false, sel, out),
        ResponseHeadersNames => pairs(kind, &req.resp_headers, true, sel, out),
        ResponseStatus => {
            if let Some(s) = &req.resp_status {
                scalar(kind, s, out)
            }
        }
        ResponseProtocol => scalar(kind, &req.resp_protocol, out),
        ResponseContentType => {
            if let Some((_, v)) = req
                .resp_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                scalar(kind, v, out)
            }
        }
        ResponseContentLength => {
            if let Some((_, v)) = req
                .resp_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            {
                scalar(kind, v, out)
            }
        }
        StatusLine => {}
        UniqueId => scalar(kind, &req.unique_id, out),
        RemoteAddr | RemoteHost => scalar(kind, &req.remote_addr, out),
        RemotePort => scalar(kind, &req.remote_port, out),
        ServerPort => scalar(kind, &req.server_port, out),
        ServerName => scalar(kind, &req.server_name, out),
        ServerAddr => owned(kind, b"127.0.0.1".to_vec(), out),
        RemoteUser | AuthType | PathInfo | WebserverErrorLog => {}
        HighestSeverity => owned(kind, b"255".to_vec(), out),
        Duration => owned(kind, b"0".to_vec(), out),
        Time | TimeEpoch | TimeYear | TimeMon | TimeDay | TimeHour | TimeMin | TimeSec
        | TimeWday => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            owned(kind, secs.to_string().into_bytes(), out)
        }
    }
}

/// True when an exclusion (`!VAR:key`) removes this value.
pub fn excluded(v: &Val<'_>, exclusions: &[&Target]) -> bool {
    exclusions
        .iter()
        .any(|t| t.kind == v.kind && t.selector.matches(&v.key))
}

/// Expands `%{...}` macros; a missing variable expands to nothing.
pub fn expand<'m>(m: &'m MacroString, req: &ReqVars, st: &TxState) -> Cow<'m, [u8]> {
    if let Some(l) = m.literal() {
        return Cow::Borrowed(l.as_bytes());
    }
    let mut o = Vec::new();
    expand_into(m, req, st, &mut o);
    Cow::Owned(o)
}

/// [`expand`] appending to `o` (a caller's reused buffer).
pub fn expand_into(m: &MacroString, req: &ReqVars, st: &TxState, o: &mut Vec<u8>) {
    for p in &m.parts {
        match p {
            MacroPart::Lit(s) => o.extend_from_slice(s.as_bytes()),
            MacroPart::Var(kind, key) => {
                if *kind == VarKind::Tx {
                    if let Some(k) = key {
                        if let Some(v) = st.tx.get(k) {
                            o.extend_from_slice(v);
                        }
                        continue;
                    }
                }
                let sel = match key {
                    Some(k) => Selector::Key(k.clone()),
                    None => Selector::All,
                };
                let mut vals = Vec::new();
                collect(req, st, *kind, &sel, &mut vals);
                if let Some(v) = vals.first() {
                    o.extend_from_slice(&v.value);
                }
            }
        }
    }
}
