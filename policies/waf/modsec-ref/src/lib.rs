//! Test-only reference: libmodsecurity v3 loaded with the same CRS, setup and
//! settings as `podwarden_waf::crs::load_crs`, evaluating the same
//! [`Request`]s, so differential tests and benchmarks compare the two engines
//! in one process.
//!
//! The library is `dlopen`ed at run time ([`ffi::Api::get`]): the workspace
//! builds without it, and callers skip with [`Error::NotInstalled`]'s message.

pub mod bench_requests;
pub mod ffi;
pub mod ftw;

use ffi::{Api, Intervention};
use podwarden_waf::crs::{CrsOptions, BASE_CONFIG};
use podwarden_waf::{Request, Response};
use std::collections::BTreeSet;
use std::ffi::{c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("libmodsecurity not installed ({0})")]
    NotInstalled(String),
    #[error("libmodsecurity rejected {file}: {msg}")]
    Load { file: String, msg: String },
    #[error("{0}")]
    Setup(String),
}

/// Logs both anomaly score variables in the logging phase, so the score is
/// read back through the log callback (the C API exposes no TX access).
const SCORE_RULE_ID: u64 = 9_990_001;
const SCORE_TAG: &str = "pw-ref-score";

/// What libmodsecurity decided for one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefOutcome {
    /// Ids of rules that logged a message (the logging rule excluded).
    pub logged_ids: BTreeSet<u64>,
    /// max(blocking_inbound_anomaly_score, inbound_anomaly_score), as
    /// `podwarden_waf::Outcome::inbound_anomaly_score`.
    pub inbound_anomaly_score: i64,
    /// (rule id, HTTP status) of the intervention, when the engine is On.
    pub interruption: Option<(u64, u16)>,
}

/// A request (and optional response) turned into the C strings the API takes,
/// so a benchmark times libmodsecurity and not the conversion.
pub struct Prepared {
    client: CString,
    client_port: i32,
    server_port: i32,
    uri: CString,
    method: CString,
    version: CString,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    response: Option<PreparedResponse>,
}

struct PreparedResponse {
    status: i32,
    protocol: CString,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// C strings end at the first NUL, as they would in a C connector.
fn cstring(s: &str) -> CString {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).unwrap_or_default()
}

impl Prepared {
    pub fn new(req: &Request, resp: Option<&Response>) -> Prepared {
        // The connectors pass the version without "HTTP/" (nginx: "1.1").
        let version = req.protocol.strip_prefix("HTTP/").unwrap_or(&req.protocol);
        Prepared {
            client: cstring(&req.remote_addr),
            client_port: req.remote_port.into(),
            server_port: req.server_port.into(),
            uri: cstring(&req.uri),
            method: cstring(&req.method),
            version: cstring(version),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
            body: req.body.clone(),
            response: resp.map(|r| PreparedResponse {
                status: r.status.into(),
                protocol: cstring(&r.protocol),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                    .collect(),
                body: r.body.clone(),
            }),
        }
    }
}

/// libmodsecurity's rule parser is not known to be thread-safe: loads are
/// serialised.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

/// One ModSecurity instance with one loaded rule set. Not `Send`: use it from
/// the thread that loaded it.
pub struct ModSec {
    api: &'static Api,
    ms: *mut ffi::ModSecurity,
    rules: *mut ffi::RulesSet,
}

unsafe extern "C" fn log_cb(data: *mut c_void, msg: *const c_void) {
    if data.is_null() || msg.is_null() {
        return;
    }
    // SAFETY: `data` is the `Vec<String>` that `evaluate_prepared` passed to
    // msc_new_transaction and keeps alive for the transaction's lifetime;
    // `msg` is a NUL-terminated string (the default text log property).
    let (sink, text) = unsafe {
        (
            &mut *(data as *mut Vec<String>),
            CStr::from_ptr(msg as *const std::ffi::c_char),
        )
    };
    sink.push(text.to_string_lossy().into_owned());
}

/// The `setvar`s `podwarden_waf::crs::load_crs` derives from the options.
fn setvars(o: &CrsOptions) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(p) = o.blocking_paranoia {
        v.push(format!("setvar:tx.blocking_paranoia_level={p}"));
    }
    if let Some(p) = o.detection_paranoia {
        v.push(format!("setvar:tx.detection_paranoia_level={p}"));
    }
    if let Some(t) = o.inbound_threshold {
        v.push(format!("setvar:tx.inbound_anomaly_score_threshold={t}"));
    }
    if let Some(t) = o.outbound_threshold {
        v.push(format!("setvar:tx.outbound_anomaly_score_threshold={t}"));
    }
    for (k, val) in &o.tx_settings {
        v.push(format!("setvar:'tx.{k}={val}'"));
    }
    v
}

impl ModSec {
    /// Loads CRS from `dir` the way `podwarden_waf::crs::load_crs` does:
    /// base config, setup file, settings, extra rules, `rules/*.conf` sorted.
    pub fn load_crs(dir: &Path, opts: &CrsOptions) -> Result<ModSec, Error> {
        let api = Api::get().map_err(Error::NotInstalled)?;
        let _g = LOAD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: plain constructors of the C API.
        let ms = unsafe { (api.init)() };
        let rules = unsafe { (api.create_rules_set)() };
        if ms.is_null() || rules.is_null() {
            return Err(Error::Setup("msc_init/msc_create_rules_set failed".into()));
        }
        let m = ModSec { api, ms, rules };
        let conn = cstring("podwarden-waf-modsec-ref");
        // SAFETY: `ms` is live; the callback matches ModSecLogCb.
        unsafe {
            (api.set_connector_info)(ms, conn.as_ptr());
            (api.set_log_cb)(ms, log_cb);
        }
        m.add_text(BASE_CONFIG, "<base config>")?;
        let setup = ["crs-setup.conf", "crs-setup.conf.example"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Setup(format!("no crs-setup.conf in {}", dir.display())))?;
        m.add_file(&setup)?;
        let sv = setvars(opts);
        if !sv.is_empty() {
            m.add_text(
                &format!(
                    "SecAction \"id:899100,phase:1,pass,nolog,{}\"\n",
                    sv.join(",")
                ),
                "<settings>",
            )?;
        }
        if let Some(x) = &opts.extra_before_rules {
            m.add_text(x, "<extra before rules>")?;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
            .map_err(|e| Error::Setup(format!("{}/rules: {e}", dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for f in &files {
            m.add_file(f)?;
        }
        if let Some(x) = &opts.extra_after_rules {
            m.add_text(x, "<extra after rules>")?;
        }
        m.add_text(
            &format!(
                "SecAction \"id:{SCORE_RULE_ID},phase:5,pass,log,t:none,msg:'{SCORE_TAG} %{{tx.blocking_inbound_anomaly_score}} %{{tx.inbound_anomaly_score}}'\"\n"
            ),
            "<score probe>",
        )?;
        Ok(m)
    }

    fn add_text(&self, text: &str, name: &str) -> Result<(), Error> {
        let c = CString::new(text).map_err(|e| Error::Setup(format!("{name}: {e}")))?;
        let mut err: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: `rules` is live, `c` outlives the call, `err` is an out-param.
        let r = unsafe { (self.api.rules_add)(self.rules, c.as_ptr(), &mut err) };
        check(r, err, name)
    }

    fn add_file(&self, path: &Path) -> Result<(), Error> {
        let name = path.display().to_string();
        let c = CString::new(name.clone()).map_err(|e| Error::Setup(format!("{name}: {e}")))?;
        let mut err: *const std::ffi::c_char = std::ptr::null();
        // SAFETY: as in `add_text`.
        let r = unsafe { (self.api.rules_add_file)(self.rules, c.as_ptr(), &mut err) };
        check(r, err, &name)
    }

    pub fn evaluate(&self, req: &Request, resp: Option<&Response>) -> RefOutcome {
        self.evaluate_prepared(&Prepared::new(req, resp))
    }

    /// As [`ModSec::evaluate`], also returning libmodsecurity's log messages.
    pub fn evaluate_verbose(
        &self,
        req: &Request,
        resp: Option<&Response>,
    ) -> (RefOutcome, Vec<String>) {
        let mut msgs = Vec::new();
        let o = self.run(&Prepared::new(req, resp), &mut msgs);
        (o, msgs)
    }

    /// Drives one transaction as a connector does: connection, URI, headers
    /// (phase 1), body (phase 2), response (phases 3-4) and logging (phase
    /// 5), stopping at the first intervention.
    pub fn evaluate_prepared(&self, p: &Prepared) -> RefOutcome {
        self.run(p, &mut Vec::new())
    }

    fn run(&self, p: &Prepared, msgs: &mut Vec<String>) -> RefOutcome {
        let api = self.api;
        let mut out = RefOutcome::default();
        // SAFETY: `ms`/`rules` are live for `self`; `msgs` outlives the
        // transaction (cleaned up below); every pointer passed is valid for
        // its call and lengths match their buffers.
        unsafe {
            let t =
                (api.new_transaction)(self.ms, self.rules, msgs as *mut Vec<String> as *mut c_void);
            if t.is_null() {
                return out;
            }
            let server = c"127.0.0.1";
            (api.process_connection)(
                t,
                p.client.as_ptr(),
                p.client_port,
                server.as_ptr(),
                p.server_port,
            );
            let mut stopped = self.intervened(t, &mut out, msgs);
            if !stopped {
                (api.process_uri)(t, p.uri.as_ptr(), p.method.as_ptr(), p.version.as_ptr());
                for (k, v) in &p.headers {
                    (api.add_n_request_header)(t, k.as_ptr(), k.len(), v.as_ptr(), v.len());
                }
                (api.process_request_headers)(t);
                stopped = self.intervened(t, &mut out, msgs);
            }
            if !stopped {
                if !p.body.is_empty() {
                    (api.append_request_body)(t, p.body.as_ptr(), p.body.len());
                }
                (api.process_request_body)(t);
                stopped = self.intervened(t, &mut out, msgs);
            }
            if let (false, Some(r)) = (stopped, &p.response) {
                for (k, v) in &r.headers {
                    (api.add_n_response_header)(t, k.as_ptr(), k.len(), v.as_ptr(), v.len());
                }
                (api.process_response_headers)(t, r.status, r.protocol.as_ptr());
                if !self.intervened(t, &mut out, msgs) {
                    if !r.body.is_empty() {
                        (api.append_response_body)(t, r.body.as_ptr(), r.body.len());
                    }
                    (api.process_response_body)(t);
                    self.intervened(t, &mut out, msgs);
                }
            }
            (api.process_logging)(t);
            (api.transaction_cleanup)(t);
        }
        for m in msgs.iter() {
            if let Some(rest) = m.find(SCORE_TAG).map(|i| &m[i + SCORE_TAG.len()..]) {
                out.inbound_anomaly_score = rest
                    .split([' ', '"'])
                    .filter(|s| !s.is_empty())
                    .take(2)
                    .map(|s| s.parse::<i64>().unwrap_or(0))
                    .max()
                    .unwrap_or(0);
                continue;
            }
            if let Some(id) = rule_id(m) {
                out.logged_ids.insert(id);
            }
        }
        out
    }

    /// Collects an intervention, if any; true when processing must stop.
    unsafe fn intervened(
        &self,
        t: *mut ffi::Transaction,
        out: &mut RefOutcome,
        msgs: &mut Vec<String>,
    ) -> bool {
        let mut it = Intervention::default();
        // SAFETY: `t` is live; `it` is a valid out-param whose strings we free.
        let r = unsafe { (self.api.intervention)(t, &mut it) };
        let mut log = String::new();
        unsafe {
            if !it.log.is_null() {
                log = CStr::from_ptr(it.log).to_string_lossy().into_owned();
                ffi::free(it.log as *mut c_void);
            }
            if !it.url.is_null() {
                ffi::free(it.url as *mut c_void);
            }
        }
        if r == 0 || it.disruptive == 0 {
            return false;
        }
        let id = rule_id(&log).unwrap_or(0);
        // Its id is collected with the log callback's messages.
        msgs.push(log);
        out.interruption = Some((id, u16::try_from(it.status).unwrap_or(0)));
        true
    }
}

fn check(r: i32, err: *const std::ffi::c_char, name: &str) -> Result<(), Error> {
    if r >= 0 {
        return Ok(());
    }
    let msg = if err.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: libmodsecurity sets `err` to a NUL-terminated string.
        unsafe { CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned()
    };
    Err(Error::Load {
        file: name.to_string(),
        msg,
    })
}

/// The rule id in a ModSecurity log line: `[id "942100"]`.
pub fn rule_id(msg: &str) -> Option<u64> {
    let i = msg.find("[id \"")? + 5;
    let rest = &msg[i..];
    let end = rest.find('"')?;
    rest[..end].parse().ok()
}

impl Drop for ModSec {
    fn drop(&mut self) {
        // SAFETY: both were created in `load_crs` and are freed once.
        unsafe {
            (self.api.rules_cleanup)(self.rules);
            (self.api.cleanup)(self.ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rule_ids_from_log_lines() {
        let m = r#"ModSecurity: Warning. detected SQLi [file "/x.conf"] [line "46"] [id "942100"] [rev ""]"#;
        assert_eq!(rule_id(m), Some(942100));
        assert_eq!(rule_id("no id here"), None);
        assert_eq!(rule_id(r#"[id "abc"]"#), None);
    }

    #[test]
    fn prepared_strips_http_prefix_and_nul() {
        let r = Request {
            method: "GET".into(),
            uri: "/a\0b".into(),
            protocol: "HTTP/1.1".into(),
            ..Default::default()
        };
        let p = Prepared::new(&r, None);
        assert_eq!(p.version.to_str().unwrap(), "1.1");
        assert_eq!(p.uri.to_str().unwrap(), "/a");
    }
}
