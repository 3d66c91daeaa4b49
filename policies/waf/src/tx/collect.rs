//! Resolves targets to the values rules inspect, and expands macros.

use super::request::ReqVars;
use super::TxState;
use crate::body::Pair;
use crate::model::{MacroPart, MacroString, Selector, Target, VarKind};
use crate::txnames::TxNames;
use std::borrow::Cow;

/// One value a rule inspects: `ARGS:foo` → kind ARGS, key "foo".
#[derive(Debug, Clone)]
pub struct Val<'a> {
    pub kind: VarKind,
    pub key: Cow<'a, str>,
    pub value: Cow<'a, [u8]>,
    /// Where a value borrowed from the request lives ([`pos`]), or
    /// [`NO_POS`]: the value cache indexes its ids by position instead of
    /// hashing the value's address on every lookup.
    pub pos: u32,
}

/// No request position (a computed value, or an index too large to encode).
pub const NO_POS: u32 = u32::MAX;

// Position tags: each list of request values (names and values apart) and
// the scalars. A position is `tag << 24 | index`.
const ARGS_GET: u32 = 0;
const ARGS_POST: u32 = 2;
const HEADERS: u32 = 4;
const COOKIES: u32 = 6;
const PART_HEADERS: u32 = 8;
const RESP_HEADERS: u32 = 10;
const FILES: u32 = 12;
const FILES_NAMES: u32 = 13;
const XML_ATTRS: u32 = 14;
const SCALARS: u32 = 15;
/// Number of position tags.
pub const POS_TAGS: usize = 16;

/// The position of entry `i` of list `tag` (`NO_POS` past 2^24 entries).
fn pos(tag: u32, i: usize) -> u32 {
    if i < 1 << 24 {
        tag << 24 | i as u32
    } else {
        NO_POS
    }
}

/// Scalar request values (position `SCALARS`, index):
#[derive(Clone, Copy)]
enum Scalar {
    Uri,
    UriRaw,
    Filename,
    Basename,
    Line,
    Method,
    Protocol,
    Query,
    Body,
    FullRequest,
    MultipartFilename,
    MultipartName,
    XmlText,
    ReqbodyErrorMsg,
    ResponseBody,
    ResponseStatus,
    ResponseProtocol,
    ResponseContentType,
    ResponseContentLength,
    UniqueId,
    RemoteAddr,
    RemotePort,
    ServerPort,
    ServerName,
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

/// The entries of list `p` (position tag `tag`, names at `tag + 1`).
fn pairs<'a>(
    kind: VarKind,
    p: &'a [Pair],
    tag: u32,
    names: bool,
    sel: &Selector,
    out: &mut Vec<Val<'a>>,
) {
    // Most targets take the whole collection: no per-entry selector call.
    let all = matches!(sel, Selector::All);
    let tag = tag + names as u32;
    for (i, (k, v)) in p.iter().enumerate() {
        if all || sel.matches(k) {
            let value: Cow<'a, [u8]> = if names {
                Cow::Borrowed(k.as_bytes())
            } else {
                Cow::Borrowed(v)
            };
            out.push(Val {
                kind,
                key: Cow::Borrowed(k),
                value,
                pos: pos(tag, i),
            });
        }
    }
}

fn scalar<'a>(kind: VarKind, v: &'a [u8], at: Scalar, out: &mut Vec<Val<'a>>) {
    out.push(Val {
        kind,
        key: Cow::Borrowed(""),
        value: Cow::Borrowed(v),
        pos: pos(SCALARS, at as usize),
    });
}

fn owned<'a>(kind: VarKind, v: Vec<u8>, out: &mut Vec<Val<'a>>) {
    out.push(Val {
        kind,
        key: Cow::Borrowed(""),
        value: Cow::Owned(v),
        pos: NO_POS,
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
                pos: NO_POS,
            });
        }
    }
}

/// Appends the values target `t` denotes (its exclusion and count flags
/// aside): [`collect`], a `TX:name` with a slot found through it and a
/// `TX:/regex/` with a selection resolved at load through that.
pub fn collect_target<'a>(
    req: &'a ReqVars,
    st: &TxState,
    names: &TxNames,
    t: &Target,
    out: &mut Vec<Val<'a>>,
) {
    match (t.kind, &t.selector) {
        (VarKind::Tx, Selector::Key(k)) => {
            if let Some(v) = st.tx.get_at(k, t.slot) {
                out.push(Val {
                    kind: VarKind::Tx,
                    key: Cow::Owned(k.clone()),
                    value: Cow::Owned(v.clone()),
                    pos: NO_POS,
                });
            }
        }
        (VarKind::Tx, sel @ Selector::Regex(_)) => match names.selections.get(t.slot as usize) {
            Some(pre) if st.tx.laid_out_for(names) => {
                let mut kv = Vec::new();
                st.tx.select(pre, sel, &mut kv);
                push_sorted(kv, out);
            }
            _ => collect(req, st, t.kind, sel, out),
        },
        _ => collect(req, st, t.kind, &t.selector, out),
    }
}

/// TX entries as values, sorted by name: the order an ordered map gives.
fn push_sorted(mut kv: Vec<(&String, &Vec<u8>)>, out: &mut Vec<Val<'_>>) {
    kv.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (k, v) in kv {
        out.push(Val {
            kind: VarKind::Tx,
            key: Cow::Owned(k.clone()),
            value: Cow::Owned(v.clone()),
            pos: NO_POS,
        });
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
            pairs(Args, &req.args_get, ARGS_GET, false, sel, out);
            pairs(Args, &req.args_post, ARGS_POST, false, sel, out);
        }
        ArgsNames => {
            pairs(ArgsNames, &req.args_get, ARGS_GET, true, sel, out);
            pairs(ArgsNames, &req.args_post, ARGS_POST, true, sel, out);
        }
        ArgsGet => pairs(kind, &req.args_get, ARGS_GET, false, sel, out),
        ArgsGetNames => pairs(kind, &req.args_get, ARGS_GET, true, sel, out),
        ArgsPost => pairs(kind, &req.args_post, ARGS_POST, false, sel, out),
        ArgsPostNames => pairs(kind, &req.args_post, ARGS_POST, true, sel, out),
        ArgsCombinedSize => {
            let n: usize = req
                .args_get
                .iter()
                .chain(req.args_post.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum();
            owned(kind, n.to_string().into_bytes(), out)
        }
        RequestHeaders => pairs(kind, &req.headers, HEADERS, false, sel, out),
        RequestHeadersNames => pairs(kind, &req.headers, HEADERS, true, sel, out),
        RequestCookies => pairs(kind, &req.cookies, COOKIES, false, sel, out),
        RequestCookiesNames => pairs(kind, &req.cookies, COOKIES, true, sel, out),
        RequestUri => scalar(kind, &req.uri, Scalar::Uri, out),
        RequestUriRaw => scalar(kind, &req.uri_raw, Scalar::UriRaw, out),
        RequestFilename => scalar(kind, &req.filename, Scalar::Filename, out),
        RequestBasename => scalar(kind, &req.basename, Scalar::Basename, out),
        RequestLine => scalar(kind, &req.line, Scalar::Line, out),
        RequestMethod => scalar(kind, &req.method, Scalar::Method, out),
        RequestProtocol => scalar(kind, &req.protocol, Scalar::Protocol, out),
        QueryString => scalar(kind, &req.query, Scalar::Query, out),
        RequestBody => {
            if req.has_body_var {
                scalar(kind, &req.body, Scalar::Body, out)
            }
        }
        RequestBodyLength => owned(kind, req.body.len().to_string().into_bytes(), out),
        FullRequest => scalar(kind, &req.full_request, Scalar::FullRequest, out),
        FullRequestLength => owned(kind, req.full_request.len().to_string().into_bytes(), out),
        Files => {
            for (i, (n, f, _)) in req.files.iter().enumerate() {
                if sel.matches(n) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(n),
                        value: Cow::Borrowed(f),
                        pos: pos(FILES, i),
                    });
                }
            }
        }
        FilesNames => {
            for (i, (n, _, _)) in req.files.iter().enumerate() {
                if sel.matches(n) {
                    out.push(Val {
                        kind,
                        key: Cow::Borrowed(n),
                        value: Cow::Borrowed(n.as_bytes()),
                        pos: pos(FILES_NAMES, i),
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
                        pos: NO_POS,
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
        MultipartPartHeaders => pairs(kind, &req.part_headers, PART_HEADERS, false, sel, out),
        MultipartFilename => {
            if let Some((_, f, _)) = req.files.last() {
                scalar(kind, f, Scalar::MultipartFilename, out)
            }
        }
        MultipartName => {
            if let Some((n, _)) = req.args_post.last() {
                scalar(kind, n.as_bytes(), Scalar::MultipartName, out)
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
                for (i, a) in d.attrs.iter().enumerate() {
                    out.push(Val {
                        kind,
                        key: Cow::Owned(key.to_string()),
                        value: Cow::Borrowed(a),
                        pos: pos(XML_ATTRS, i),
                    });
                }
            } else {
                out.push(Val {
                    kind,
                    key: Cow::Owned(key.to_string()),
                    value: Cow::Borrowed(&d.text),
                    pos: pos(SCALARS, Scalar::XmlText as usize),
                });
            }
        }
        ReqbodyError | ReqbodyProcessorError => owned(kind, flag(req.reqbody_error), out),
        ReqbodyErrorMsg | ReqbodyProcessorErrorMsg => {
            scalar(kind, &req.reqbody_error_msg, Scalar::ReqbodyErrorMsg, out)
        }
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
                pos: NO_POS,
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
                        pos: NO_POS,
                    });
                }
                return;
            }
            // Select, then sort what was selected by name: the order an
            // ordered map gives, without sorting the whole collection.
            let sel_kv: Vec<(&String, &Vec<u8>)> =
                st.tx.iter().filter(|(k, _)| sel.matches(k)).collect();
            push_sorted(sel_kv, out);
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
                        pos: NO_POS,
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
                        pos: NO_POS,
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
                        pos: NO_POS,
                    });
                }
            }
        }
        ResponseBody => {
            if let Some(b) = &req.resp_body {
                scalar(kind, b, Scalar::ResponseBody, out)
            }
        }
        ResponseHeaders => pairs(kind, &req.resp_headers, RESP_HEADERS, false, sel, out),
        ResponseHeadersNames => pairs(kind, &req.resp_headers, RESP_HEADERS, true, sel, out),
        ResponseStatus => {
            if let Some(s) = &req.resp_status {
                scalar(kind, s, Scalar::ResponseStatus, out)
            }
        }
        ResponseProtocol => scalar(kind, &req.resp_protocol, Scalar::ResponseProtocol, out),
        ResponseContentType => {
            if let Some((_, v)) = req
                .resp_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            {
                scalar(kind, v, Scalar::ResponseContentType, out)
            }
        }
        ResponseContentLength => {
            if let Some((_, v)) = req
                .resp_headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            {
                scalar(kind, v, Scalar::ResponseContentLength, out)
            }
        }
        StatusLine => {}
        UniqueId => scalar(kind, &req.unique_id, Scalar::UniqueId, out),
        RemoteAddr | RemoteHost => scalar(kind, &req.remote_addr, Scalar::RemoteAddr, out),
        RemotePort => scalar(kind, &req.remote_port, Scalar::RemotePort, out),
        ServerPort => scalar(kind, &req.server_port, Scalar::ServerPort, out),
        ServerName => scalar(kind, &req.server_name, Scalar::ServerName, out),
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
            MacroPart::Var(kind, key, slot) => {
                if *kind == VarKind::Tx {
                    if let Some(k) = key {
                        if let Some(v) = st.tx.get_at(k, *slot) {
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
