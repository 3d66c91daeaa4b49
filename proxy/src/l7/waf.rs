//! The OWASP CRS WAF on inbound HTTP, as an [`HttpInspector`].
//!
//! The CRS is compiled once per policy load (with the policy's paranoia
//! level, thresholds, removed rules, custom rules and extra SecLang) into an
//! immutable `RuleSet` shared by all connections. Per request the inspector
//! collects the head and body (up to the engine's body limit) and evaluates
//! phases 1-2 when the body is complete, which for bodies the relay buffers
//! (the usual case) is before anything reaches the app. Responses whose
//! content type the engine inspects (`SecResponseBodyMimeType`) are
//! evaluated again with the response (phases 3-4, the RESPONSE-95x rules)
//! when their body ends; a block there resets the stream.
//!
//! In `learn`/`monitor` the engine runs as `DetectionOnly`; in `protect` as
//! `On`. Either way every request the engine blocks (or would block) raises
//! a `waf_hit` event with the matched rule ids and the anomaly score.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use podwarden_policy::events::{EventAction, EventKind};
use podwarden_policy::model::{WafLocation, WafSettings};
use podwarden_policy::{Direction, Flow, Mode};
use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf::model::Disruptive;
use podwarden_waf::{Outcome, Request, Response, RuleSet};

use super::report::{FlowSummary, Reporter};
use super::L7Error;
use crate::inspect::{Block, HttpInspector, RequestInspection, Verdict};

/// What a compiled WAF depends on; an unchanged key reuses the rule set.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheKey {
    pub settings: WafSettings,
    pub mode: Mode,
    pub dir: PathBuf,
}

pub struct CachedWaf {
    pub key: CacheKey,
    pub rules: Arc<RuleSet>,
}

/// Compiles the CRS in `dir` with the policy's settings. `Ok(None)`: no CRS
/// there and the mode is `learn` (nothing to enforce, so the policy still
/// loads, with a warning). In `monitor`/`protect` a missing or broken CRS is
/// an error: the WAF is never silently off.
pub fn compile(
    settings: &WafSettings,
    mode: Mode,
    dir: &Path,
) -> Result<Option<Arc<RuleSet>>, L7Error> {
    if !dir.join("rules").is_dir() {
        let msg = format!(
            "no CRS rules directory at {} (set --waf-rules-dir to a directory holding rules/ and crs-setup.conf[.example])",
            dir.join("rules").display()
        );
        if mode == Mode::Learn {
            tracing::warn!("{msg}: WAF in learn mode is off");
            return Ok(None);
        }
        return Err(L7Error::Waf(format!(
            "{msg}; the WAF is in {} mode",
            mode.as_str()
        )));
    }
    let opts = crs_options(settings, mode)?;
    let started = Instant::now();
    let rules = load_crs(dir, &opts).map_err(|e| {
        let mut lines: Vec<String> = e.0.iter().take(5).map(|l| l.to_string()).collect();
        if e.0.len() > 5 {
            lines.push(format!("... and {} more", e.0.len() - 5));
        }
        L7Error::Waf(format!(
            "cannot load the CRS from {}: {}",
            dir.display(),
            lines.join("; ")
        ))
    })?;
    tracing::info!(
        dir = %dir.display(),
        rules = rules.rule_count,
        paranoia = settings.paranoia,
        mode = mode.as_str(),
        took_ms = started.elapsed().as_millis() as u64,
        "WAF compiled"
    );
    Ok(Some(rules.shared()))
}

/// The policy's WAF settings as CRS options and SecLang.
pub fn crs_options(s: &WafSettings, mode: Mode) -> Result<CrsOptions, L7Error> {
    if !(1..=4).contains(&s.paranoia) {
        return Err(L7Error::Waf(format!(
            "paranoia must be 1-4, not {}",
            s.paranoia
        )));
    }
    if s.inbound_threshold == 0 || s.outbound_threshold == 0 {
        return Err(L7Error::Waf("anomaly thresholds must be at least 1".into()));
    }
    let mut after = String::new();
    if !s.disabled_rules.is_empty() {
        let ids: Vec<String> = s.disabled_rules.iter().map(u32::to_string).collect();
        after.push_str(&format!("SecRuleRemoveById {}\n", ids.join(" ")));
    }
    for r in &s.custom_rules {
        after.push_str(&custom_rule(r)?);
        after.push('\n');
    }
    if !s.extra_seclang.is_empty() {
        after.push_str(&s.extra_seclang);
        after.push('\n');
    }
    // Last, so that extra SecLang cannot turn enforcement on in monitor.
    after.push_str(match mode {
        Mode::Protect => "SecRuleEngine On\n",
        Mode::Learn | Mode::Monitor => "SecRuleEngine DetectionOnly\n",
    });
    Ok(CrsOptions {
        blocking_paranoia: Some(s.paranoia),
        detection_paranoia: Some(s.paranoia),
        inbound_threshold: Some(s.inbound_threshold),
        outbound_threshold: Some(s.outbound_threshold),
        extra_after_rules: Some(after),
        ..Default::default()
    })
}

/// A NeuVector-style rule (a regex on the URL, a header or the body) as a
/// SecLang rule that denies on match.
pub fn custom_rule(r: &podwarden_policy::model::WafCustomRule) -> Result<String, L7Error> {
    let bad = |why: &str| L7Error::Waf(format!("custom rule {}: {why}", r.id));
    if r.pattern.is_empty() {
        return Err(bad("empty pattern"));
    }
    if r.pattern.contains(['\n', '\r']) || r.pattern.ends_with('\\') {
        return Err(bad("pattern must be one line and not end with a backslash"));
    }
    let target = match r.location {
        WafLocation::Url => "REQUEST_URI".to_string(),
        WafLocation::Body => "REQUEST_BODY|ARGS_POST".to_string(),
        WafLocation::Header => {
            let h = r.header.as_deref().unwrap_or("");
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(bad(
                    "location header needs a header name (letters, digits, - and _)",
                ));
            }
            format!("REQUEST_HEADERS:{h}")
        }
    };
    let pattern = r.pattern.replace('"', "\\\"");
    Ok(format!(
        "SecRule {target} \"@rx {pattern}\" \"id:{},phase:2,deny,status:403,log,t:none,msg:'podwarden custom rule',tag:'podwarden-custom'\"",
        r.id
    ))
}

/// The WAF inspector; one per policy load.
pub struct WafInspector {
    rules: Arc<RuleSet>,
    mode: Mode,
    reporter: Reporter,
}

impl WafInspector {
    pub fn new(rules: Arc<RuleSet>, mode: Mode, reporter: Reporter) -> Self {
        WafInspector {
            rules,
            mode,
            reporter,
        }
    }
}

static LOCAL_IDS: AtomicU64 = AtomicU64::new(1);

/// An id for events of requests started without one (embedders' own relays).
pub(crate) fn local_id() -> String {
    format!("l7-{:x}", LOCAL_IDS.fetch_add(1, Ordering::Relaxed))
}

impl HttpInspector for WafInspector {
    fn begin(&self, flow: &Flow) -> Option<Box<dyn RequestInspection>> {
        self.begin_with_id(flow, &local_id())
    }

    fn begin_with_id(&self, flow: &Flow, event_id: &str) -> Option<Box<dyn RequestInspection>> {
        if flow.direction != Direction::Inbound {
            return None;
        }
        let req = Request {
            remote_addr: flow.peer.ip().to_string(),
            remote_port: flow.peer.port(),
            server_port: flow.local.port(),
            ..Default::default()
        };
        let body_cap = body_cap(&self.rules.config, false);
        Some(Box::new(WafRequest {
            rules: self.rules.clone(),
            mode: self.mode,
            reporter: self.reporter.clone(),
            id: event_id.to_string(),
            flow: FlowSummary::of(flow),
            req,
            body_cap,
            evaluated: false,
            resp: None,
        }))
    }
}

struct WafRequest {
    rules: Arc<RuleSet>,
    mode: Mode,
    reporter: Reporter,
    id: String,
    flow: FlowSummary,
    req: Request,
    body_cap: usize,
    evaluated: bool,
    /// A response the engine inspects, collected until its body ends.
    resp: Option<Response>,
}

/// Which half of the exchange a verdict is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafPhase {
    Request,
    Response,
}

impl WafPhase {
    fn as_str(self) -> &'static str {
        match self {
            WafPhase::Request => "request",
            WafPhase::Response => "response",
        }
    }
    fn covers(self, phase: u8) -> bool {
        match self {
            WafPhase::Request => phase <= 2,
            WafPhase::Response => (3..=4).contains(&phase),
        }
    }
}

/// The engine's outcome reduced to one half of the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WafFinding {
    /// Logged rules whose whole chain matched, in match order.
    pub rule_ids: Vec<u64>,
    /// The rule that blocks (or would block), if any.
    pub blocking_rule: Option<u64>,
    /// Inbound score for requests, outbound for responses.
    pub score: i64,
}

/// Pure: what an outcome says about `phase`. A response evaluation re-runs
/// the request phases, whose matches were reported with the request.
pub fn judge(out: &Outcome, phase: WafPhase) -> WafFinding {
    let in_phase = |id: u64| {
        out.matched
            .iter()
            .find(|m| m.id == id)
            .is_none_or(|m| phase.covers(m.phase))
    };
    let rule_ids: Vec<u64> = out
        .matched
        .iter()
        .filter(|m| m.logged && phase.covers(m.phase))
        .map(|m| m.id)
        .collect();
    let blocking_rule = match &out.interruption {
        // Rule 0: the engine's own body-limit rejection (phase 2).
        Some(i)
            if (i.rule_id == 0 && phase == WafPhase::Request)
                || (i.rule_id != 0 && in_phase(i.rule_id)) =>
        {
            Some(i.rule_id)
        }
        Some(_) => None,
        None => out
            .matched
            .iter()
            .find(|m| {
                phase.covers(m.phase) && matches!(m.disruptive, Disruptive::Deny | Disruptive::Drop)
            })
            .map(|m| m.id),
    };
    let score = match phase {
        WafPhase::Request => out.inbound_anomaly_score,
        WafPhase::Response => out.outbound_anomaly_score,
    };
    WafFinding {
        rule_ids,
        blocking_rule,
        score,
    }
}

impl WafRequest {
    fn evaluate_request(&mut self) -> Verdict {
        self.evaluated = true;
        let t = Instant::now();
        let out = self.rules.evaluate(&self.req, None);
        self.reporter.observe_waf("request", t.elapsed());
        self.act(judge(&out, WafPhase::Request), WafPhase::Request)
    }

    fn evaluate_response(&mut self) -> Verdict {
        let Some(resp) = self.resp.take() else {
            return Verdict::Continue;
        };
        let t = Instant::now();
        let out = self.rules.evaluate(&self.req, Some(&resp));
        self.reporter.observe_waf("response", t.elapsed());
        self.act(judge(&out, WafPhase::Response), WafPhase::Response)
    }

    /// Mode semantics: an event when the engine blocks (or would block),
    /// enforced only in protect. Matches under the anomaly threshold are
    /// counted and logged at debug level only: rules such as 920350 (numeric
    /// Host, as every kubelet probe sends) would otherwise flood the events.
    fn act(&self, f: WafFinding, phase: WafPhase) -> Verdict {
        let m = &self.reporter.metrics.waf_requests;
        let blocks = f.blocking_rule.is_some();
        let enforce = blocks && self.mode == Mode::Protect;
        let (result, action) = match (blocks, enforce) {
            (true, true) => ("blocked", EventAction::Blocked),
            (true, false) => ("would_block", EventAction::WouldBlock),
            (false, _) if !f.rule_ids.is_empty() => ("detected", EventAction::Allowed),
            _ => ("pass", EventAction::Allowed),
        };
        if phase == WafPhase::Request || result != "pass" {
            m.with_label_values(&[result]).inc();
        }
        if !blocks {
            if result == "detected" {
                tracing::debug!(event_id = %self.id, phase = phase.as_str(), score = f.score,
                                rules = ?f.rule_ids, "waf matches under the threshold");
            }
            return Verdict::Continue;
        }
        let rule = match f.blocking_rule {
            // The engine's own rejection of a body over SecRequestBodyLimit.
            Some(0) => "request_body_limit".to_string(),
            Some(id) => id.to_string(),
            None => String::new(),
        };
        let kind = EventKind::WafHit {
            rule_ids: f.rule_ids.iter().map(u64::to_string).collect(),
            score: u32::try_from(f.score.max(0)).unwrap_or(u32::MAX),
        };
        let mut e =
            self.reporter
                .event(&self.id, kind, self.mode, action, rule.clone(), &self.flow);
        e.details.insert("phase".into(), phase.as_str().into());
        tracing::info!(event_id = %self.id, phase = phase.as_str(), result, rule = %rule,
                       score = f.score, rules = ?f.rule_ids, "waf");
        self.reporter.emit(e);
        if !enforce {
            return Verdict::Continue;
        }
        let reason = match phase {
            WafPhase::Request => format!("request blocked by the WAF (anomaly score {})", f.score),
            WafPhase::Response => {
                format!("response blocked by the WAF (anomaly score {})", f.score)
            }
        };
        Verdict::Block(Block { rule, reason })
    }
}

/// How much of a request body to keep: the engine's limit for its kind
/// (`SecRequestBodyLimit` for multipart, `SecRequestBodyNoFilesLimit`
/// otherwise) plus one byte, so the engine still sees that it was exceeded.
pub fn body_cap(cfg: &podwarden_waf::ruleset::Config, multipart: bool) -> usize {
    let limit = if multipart {
        cfg.request_body_limit
    } else {
        cfg.request_body_no_files_limit.min(cfg.request_body_limit)
    };
    limit.saturating_add(1)
}

fn headers_of(h: &http::HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect()
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

impl RequestInspection for WafRequest {
    fn request_head(&mut self, head: &http::request::Parts) -> Verdict {
        self.req.method = head.method.as_str().to_string();
        self.req.protocol = version_str(head.version).to_string();
        // HTTP/1 keeps the target as written; HTTP/2's pseudo-headers make
        // a full URI, of which the app sees the path and query.
        self.req.uri = if head.version == http::Version::HTTP_2 {
            head.uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string())
        } else {
            head.uri.to_string()
        };
        self.req.headers = headers_of(&head.headers);
        let multipart = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/")
            });
        self.body_cap = body_cap(&self.rules.config, multipart);
        if !head.headers.contains_key(http::header::HOST) {
            if let Some(a) = head.uri.authority() {
                self.req
                    .headers
                    .push(("Host".into(), a.as_str().as_bytes().to_vec()));
            }
        }
        Verdict::Continue
    }

    fn request_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        let room = self.body_cap.saturating_sub(self.req.body.len());
        self.req
            .body
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if end && !self.evaluated {
            return self.evaluate_request();
        }
        Verdict::Continue
    }

    fn response_head(&mut self, head: &http::response::Parts) -> Verdict {
        if !self.evaluated {
            // The request body never ended (e.g. the app answered early).
            if let Verdict::Block(b) = self.evaluate_request() {
                return Verdict::Block(b);
            }
        }
        let cfg = &self.rules.config;
        let mime = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if cfg.response_body_access && cfg.response_mime_types.contains(&mime) {
            self.resp = Some(Response {
                status: head.status.as_u16(),
                protocol: version_str(head.version).to_string(),
                headers: headers_of(&head.headers),
                body: Vec::new(),
            });
        }
        Verdict::Continue
    }

    fn response_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        let cap = self.rules.config.response_body_limit;
        if let Some(r) = self.resp.as_mut() {
            let room = cap.saturating_sub(r.body.len());
            r.body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        if end {
            return self.evaluate_response();
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests;
