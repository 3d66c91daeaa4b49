//! Fills the request/response variables: URI parts, arguments, cookies and
//! the request body through the selected body processor.

use super::{Request, Response, Transaction};
use crate::body::{json, multipart, urlencoded, xml, Pair};
use crate::model::{BodyProcessor, Disruptive, EngineMode};
use crate::ruleset::BodyLimitAction;

/// Request and response variables; fixed while rules of a phase run.
#[derive(Debug, Default)]
pub struct ReqVars {
    pub method: Vec<u8>,
    pub uri: Vec<u8>,
    pub uri_raw: Vec<u8>,
    pub filename: Vec<u8>,
    pub basename: Vec<u8>,
    pub line: Vec<u8>,
    pub protocol: Vec<u8>,
    pub query: Vec<u8>,
    pub args_get: Vec<Pair>,
    pub args_post: Vec<Pair>,
    pub headers: Vec<Pair>,
    pub cookies: Vec<Pair>,
    pub body: Vec<u8>,
    pub has_body_var: bool,
    pub full_request: Vec<u8>,
    pub files: Vec<(String, Vec<u8>, usize)>,
    pub part_headers: Vec<Pair>,
    pub mp: Option<multipart::Flags>,
    pub xml: Option<xml::XmlDoc>,
    pub reqbody_error: bool,
    pub reqbody_error_msg: Vec<u8>,
    pub reqbody_processor: Option<&'static str>,
    /// The processor Content-Type selects, known from phase 1 on.
    pub default_processor: Option<BodyProcessor>,
    pub urlencoded_error: bool,
    pub inbound_data_error: bool,
    pub outbound_data_error: bool,
    pub remote_addr: Vec<u8>,
    pub remote_port: Vec<u8>,
    pub server_port: Vec<u8>,
    pub server_name: Vec<u8>,
    pub unique_id: Vec<u8>,
    pub resp_status: Option<Vec<u8>>,
    pub resp_protocol: Vec<u8>,
    pub resp_headers: Vec<Pair>,
    pub resp_body: Option<Vec<u8>>,
}

fn header<'a>(h: &'a [Pair], name: &str) -> Option<&'a [u8]> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

impl ReqVars {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header(&self.headers, name)
    }

    pub fn load_request(&mut self, r: &Request, sep: u8) {
        self.method = r.method.as_bytes().to_vec();
        self.protocol = r.protocol.as_bytes().to_vec();
        self.uri_raw = r.uri.as_bytes().to_vec();
        self.line = format!("{} {} {}", r.method, r.uri, r.protocol).into_bytes();
        // Absolute-form targets keep only path and query in REQUEST_URI.
        let mut target = r.uri.as_bytes();
        let absolute = target.first() != Some(&b'/')
            && crate::operator::find(target, b"://").is_some_and(|p| !target[..p].contains(&b'?'));
        if let Some(p) = crate::operator::find(target, b"://").filter(|_| absolute) {
            let after = &target[p + 3..];
            target = match after.iter().position(|&c| c == b'/' || c == b'?') {
                Some(i) => &after[i..],
                None => b"",
            };
        }
        self.uri = target.to_vec();
        let (path, query) = match target.iter().position(|&c| c == b'?') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (target, &b""[..]),
        };
        let path = match path.iter().position(|&c| c == b'#') {
            Some(i) => &path[..i],
            None => path,
        };
        self.filename = crate::transform::url_decode(path, false);
        // url_decode turns '+' into space, which REQUEST_FILENAME must keep.
        if path.contains(&b'+') {
            self.filename = percent_only(path);
        }
        self.basename = match self.filename.iter().rposition(|&c| c == b'/' || c == b'\\') {
            Some(i) => self.filename[i + 1..].to_vec(),
            None => self.filename.clone(),
        };
        self.query = query.to_vec();
        let (args, bad) = urlencoded::parse(query, sep);
        self.args_get = args;
        self.urlencoded_error |= bad;
        self.headers = r.headers.clone();
        let ct = self
            .header("content-type")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        self.default_processor = if ct.starts_with(b"application/x-www-form-urlencoded") {
            Some(BodyProcessor::UrlEncoded)
        } else if ct.starts_with(b"multipart/form-data") {
            Some(BodyProcessor::Multipart)
        } else {
            None
        };
        for (n, v) in &r.headers {
            if n.eq_ignore_ascii_case("cookie") {
                parse_cookies(v, &mut self.cookies);
            }
        }
        self.remote_addr = r.remote_addr.as_bytes().to_vec();
        self.remote_port = r.remote_port.to_string().into_bytes();
        self.server_port = r.server_port.to_string().into_bytes();
        self.server_name = self
            .header("host")
            .map(|h| h.split(|&c| c == b':').next().unwrap_or(h).to_vec())
            .unwrap_or_default();
        let mut full = self.line.clone();
        full.extend_from_slice(b"\r\n");
        for (n, v) in &r.headers {
            full.extend_from_slice(n.as_bytes());
            full.extend_from_slice(b": ");
            full.extend_from_slice(v);
            full.extend_from_slice(b"\r\n");
        }
        full.extend_from_slice(b"\r\n");
        self.full_request = full;
    }

    pub fn load_response(&mut self, r: &Response, body_ok: bool, limit: usize) {
        self.resp_status = Some(r.status.to_string().into_bytes());
        self.resp_protocol = r.protocol.as_bytes().to_vec();
        self.resp_headers = r.headers.clone();
        if body_ok {
            let n = r.body.len().min(limit);
            self.outbound_data_error = r.body.len() > limit;
            self.resp_body = Some(r.body[..n].to_vec());
        }
    }
}

fn percent_only(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && s[i + 1].is_ascii_hexdigit()
            && s[i + 2].is_ascii_hexdigit()
        {
            let h = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            o.push(h(s[i + 1]) << 4 | h(s[i + 2]));
            i += 3;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}

/// Cookie header: `a=1; b=2` (version 0 format, as ModSecurity's default).
fn parse_cookies(v: &[u8], out: &mut Vec<Pair>) {
    for part in v.split(|&c| c == b';') {
        let part = part.trim_ascii();
        if part.is_empty() {
            continue;
        }
        let (n, val) = match part.iter().position(|&c| c == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        out.push((
            String::from_utf8_lossy(n.trim_ascii()).into_owned(),
            val.to_vec(),
        ));
    }
}

impl Transaction<'_> {
    pub(crate) fn process_body(&mut self, r: &Request) {
        let cfg = &self.rs.config;
        let ct = self
            .req
            .header("content-type")
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let proc = self.st.body_processor.or(self.req.default_processor);
        let mut body: &[u8] = &r.body;
        let limit = if proc == Some(BodyProcessor::Multipart) {
            cfg.request_body_limit
        } else {
            cfg.request_body_no_files_limit.min(cfg.request_body_limit)
        };
        if body.len() > limit {
            self.req.inbound_data_error = true;
            if cfg.request_body_limit_action == BodyLimitAction::Reject
                && self.engine() == EngineMode::On
            {
                self.outcome.interruption = Some(super::Interruption {
                    rule_id: 0,
                    status: 413,
                    action: Disruptive::Deny,
                });
                self.stop_request = true;
                return;
            }
            body = &body[..limit];
        }
        self.req.body = body.to_vec();
        // As ModSecurity v2 (and CRS's expectations): REQUEST_BODY exists for
        // urlencoded bodies or when a rule forces it (CRS 901340 does for
        // bodies no processor handles).
        self.req.has_body_var = proc == Some(BodyProcessor::UrlEncoded) || self.st.force_body_var;
        self.req.full_request.extend_from_slice(body);
        let Some(proc) = proc else { return };
        self.req.reqbody_processor = Some(proc.name());
        let err: Option<String> = match proc {
            BodyProcessor::UrlEncoded => {
                let (args, bad) = urlencoded::parse(body, cfg.argument_separator);
                self.req.args_post = args;
                self.req.urlencoded_error |= bad;
                None
            }
            BodyProcessor::Json => match json::parse(body, cfg.json_depth_limit) {
                Ok(a) => {
                    self.req.args_post = a;
                    None
                }
                Err(e) => Some(e),
            },
            BodyProcessor::Xml => match xml::parse(body) {
                Ok(d) => {
                    self.req.xml = Some(d);
                    None
                }
                Err(e) => Some(e),
            },
            BodyProcessor::Multipart => match multipart::parse(body, &ct) {
                Ok(p) => {
                    self.req.args_post = p.args;
                    self.req.files = p.files;
                    self.req.part_headers = p.part_headers;
                    self.req.mp = Some(p.flags);
                    None
                }
                Err((e, p)) => {
                    self.req.args_post = p.args;
                    self.req.files = p.files;
                    self.req.part_headers = p.part_headers;
                    self.req.mp = Some(p.flags);
                    Some(e)
                }
            },
        };
        if let Some(e) = err {
            self.req.reqbody_error = true;
            self.req.reqbody_error_msg = e.into_bytes();
        }
    }
}
