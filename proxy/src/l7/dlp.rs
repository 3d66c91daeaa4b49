//! DLP on data leaving the pod: outbound HTTP requests (query string and
//! body), responses the app sends to inbound clients, and opaque outbound
//! (or, for inbound connections, server-to-client) TCP streams.
//!
//! One compiled [`Scanner`] per policy load is shared by every connection;
//! each body or stream gets a [`StreamScanner`] that keeps a bounded
//! carry-over window, so a value split across TCP segments or body chunks
//! is still found. HTTP bodies are scanned after hyper removed the transfer
//! coding, with the declared `Content-Encoding` (gzip, deflate) undone.
//!
//! A finding in `protect` blocks: 403 while nothing was sent yet (query
//! string, buffered request bodies), otherwise the stream is reset. A
//! decoder hitting its bound (e.g. a decompression bomb) is reported but
//! never blocks on its own. Events carry the scanner's masked excerpt only.

use std::sync::Arc;

use podwarden_dlp::{
    Compression, Config, CustomSensor, Finding, FindingKind, Scanner, StreamOptions, StreamScanner,
};
use podwarden_policy::events::{EventAction, EventKind};
use podwarden_policy::model::DlpSettings;
use podwarden_policy::{AppProtocol, Direction, Flow, Mode};

use super::report::{FlowSummary, Reporter};
use super::waf::local_id;
use super::L7Error;
use crate::inspect::{
    Block, HttpInspector, RequestInspection, StreamDir, StreamInspection, StreamInspector, Verdict,
};

/// The compiled sensors plus what to do with their findings.
pub struct DlpEngine {
    scanner: Scanner,
    mode: Mode,
    reporter: Reporter,
    /// Scan data the app sends on its outbound connections.
    outbound: bool,
    /// Scan responses (and server-to-client bytes) on inbound connections.
    inbound: bool,
}

/// The policy's DLP section as a scanner configuration.
pub fn scanner_config(s: &DlpSettings) -> Config {
    Config {
        disabled_sensors: s.disabled_sensors.clone(),
        custom_sensors: s
            .custom_sensors
            .iter()
            .map(|c| CustomSensor {
                name: c.name.clone(),
                pattern: c.pattern.clone(),
                validator: c.validator.clone(),
                context: c.context.clone(),
                context_window: 64,
                min_entropy: c.min_entropy,
            })
            .collect(),
        ..Default::default()
    }
}

impl DlpEngine {
    pub fn compile(s: &DlpSettings, mode: Mode, reporter: Reporter) -> Result<DlpEngine, L7Error> {
        let scanner = Scanner::new(&scanner_config(s)).map_err(|e| L7Error::Dlp(e.to_string()))?;
        let all = s.directions.is_empty();
        Ok(DlpEngine {
            scanner,
            mode,
            reporter,
            outbound: all || s.directions.contains(&Direction::Outbound),
            inbound: all || s.directions.contains(&Direction::Inbound),
        })
    }

    fn scans(&self, d: Direction) -> bool {
        match d {
            Direction::Outbound => self.outbound,
            Direction::Inbound => self.inbound,
        }
    }

    /// Reports every finding; blocks on the first sensitive one in protect.
    fn act(&self, id: &str, flow: &FlowSummary, location: &str, found: Vec<Finding>) -> Verdict {
        let mut verdict = Verdict::Continue;
        for f in found {
            let sensitive = f.kind == FindingKind::Sensitive;
            let (action, label) = match (sensitive, self.mode) {
                (true, Mode::Protect) => (EventAction::Blocked, "blocked"),
                (true, _) => (EventAction::WouldBlock, "would_block"),
                (false, _) => (EventAction::Allowed, "allowed"),
            };
            self.reporter
                .metrics
                .dlp_findings
                .with_label_values(&[f.sensor.as_str(), flow.direction_label(), label])
                .inc();
            let kind = EventKind::DlpHit {
                sensor: f.sensor.clone(),
                // Already masked by the scanner (`4111 **** **** 1111`).
                sample: f.masked.clone(),
            };
            let mut e = self
                .reporter
                .event(id, kind, self.mode, action, f.sensor.clone(), flow);
            e.details.insert("location".into(), location.into());
            e.details.insert("offset".into(), f.offset.to_string());
            if !f.layers.is_empty() {
                e.details.insert("encoding".into(), f.layers.join("/"));
            }
            tracing::info!(event_id = %id, sensor = %f.sensor, location, action = label,
                           excerpt = %f.masked, "dlp");
            self.reporter.emit(e);
            if action == EventAction::Blocked && verdict == Verdict::Continue {
                verdict = Verdict::Block(Block {
                    rule: f.sensor.clone(),
                    reason: format!("sensitive data ({}) leaving the pod", f.sensor),
                });
            }
        }
        verdict
    }

    fn count_bytes(&self, flow: &FlowSummary, n: usize) {
        self.reporter
            .metrics
            .dlp_bytes
            .with_label_values(&[flow.direction_label()])
            .inc_by(n as u64);
    }
}

/// Body framing from the headers hyper leaves in place (it already removed
/// the transfer coding).
pub fn stream_options(h: &http::HeaderMap) -> StreamOptions {
    let content_encoding = h
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Compression::Gzip),
            "deflate" => Some(Compression::Deflate),
            _ => None,
        });
    StreamOptions {
        chunked: false,
        content_encoding,
    }
}

pub struct DlpHttpInspector(pub Arc<DlpEngine>);

impl HttpInspector for DlpHttpInspector {
    fn begin(&self, flow: &Flow) -> Option<Box<dyn RequestInspection>> {
        self.begin_with_id(flow, &local_id())
    }

    fn begin_with_id(&self, flow: &Flow, event_id: &str) -> Option<Box<dyn RequestInspection>> {
        if !self.0.scans(flow.direction) {
            return None;
        }
        Some(Box::new(DlpExchange {
            engine: self.0.clone(),
            id: event_id.to_string(),
            flow: FlowSummary::of(flow),
            body: None,
        }))
    }
}

/// One HTTP exchange: the request (outbound) or the response (inbound) is
/// what leaves the pod.
struct DlpExchange {
    engine: Arc<DlpEngine>,
    id: String,
    flow: FlowSummary,
    body: Option<StreamScanner>,
}

impl DlpExchange {
    fn outbound(&self) -> bool {
        self.flow.direction == Direction::Outbound
    }

    fn body_chunk(&mut self, chunk: &[u8], end: bool, location: &str) -> Verdict {
        let Some(s) = self.body.as_mut() else {
            return Verdict::Continue;
        };
        let mut found = s.push(chunk);
        if end {
            found.extend(s.finish());
            self.body = None;
        }
        self.engine.count_bytes(&self.flow, chunk.len());
        if found.is_empty() {
            return Verdict::Continue;
        }
        self.engine.act(&self.id, &self.flow, location, found)
    }
}

impl RequestInspection for DlpExchange {
    fn request_head(&mut self, head: &http::request::Parts) -> Verdict {
        if !self.outbound() {
            return Verdict::Continue;
        }
        self.body = Some(
            self.engine
                .scanner
                .stream_with(stream_options(&head.headers)),
        );
        if let Some(q) = head.uri.query() {
            let found = self.engine.scanner.scan(q.as_bytes());
            if !found.is_empty() {
                return self.engine.act(&self.id, &self.flow, "query", found);
            }
        }
        Verdict::Continue
    }

    fn request_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        if !self.outbound() {
            return Verdict::Continue;
        }
        self.body_chunk(chunk, end, "request_body")
    }

    fn response_head(&mut self, head: &http::response::Parts) -> Verdict {
        if self.outbound() {
            return Verdict::Continue;
        }
        self.body = Some(
            self.engine
                .scanner
                .stream_with(stream_options(&head.headers)),
        );
        Verdict::Continue
    }

    fn response_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        if self.outbound() {
            return Verdict::Continue;
        }
        self.body_chunk(chunk, end, "response_body")
    }
}

pub struct DlpStreamInspector(pub Arc<DlpEngine>);

impl StreamInspector for DlpStreamInspector {
    fn begin(&self, flow: &Flow) -> Option<Box<dyn StreamInspection>> {
        self.begin_with_id(flow, &local_id())
    }

    fn begin_with_id(&self, flow: &Flow, event_id: &str) -> Option<Box<dyn StreamInspection>> {
        // TLS passes through encrypted: nothing to read, and inspecting it
        // would only cost the zero-copy relay.
        if flow.protocol != AppProtocol::Opaque || !self.0.scans(flow.direction) {
            return None;
        }
        let leaving = match flow.direction {
            Direction::Outbound => StreamDir::ClientToServer,
            Direction::Inbound => StreamDir::ServerToClient,
        };
        Some(Box::new(DlpStream {
            engine: self.0.clone(),
            id: event_id.to_string(),
            flow: FlowSummary::of(flow),
            leaving,
            scanner: self.0.scanner.stream(),
        }))
    }
}

struct DlpStream {
    engine: Arc<DlpEngine>,
    id: String,
    flow: FlowSummary,
    /// The direction in which bytes leave the pod.
    leaving: StreamDir,
    scanner: StreamScanner,
}

impl StreamInspection for DlpStream {
    fn on_data(&mut self, dir: StreamDir, chunk: &[u8]) -> Verdict {
        if dir != self.leaving {
            return Verdict::Continue;
        }
        self.engine.count_bytes(&self.flow, chunk.len());
        let found = self.scanner.push(chunk);
        if found.is_empty() {
            return Verdict::Continue;
        }
        self.engine.act(&self.id, &self.flow, "stream", found)
    }

    /// A value right before the end needs no more lookahead: decide it.
    fn on_end(&mut self, dir: StreamDir) -> Verdict {
        if dir != self.leaving {
            return Verdict::Continue;
        }
        let found = self.scanner.finish();
        if found.is_empty() {
            return Verdict::Continue;
        }
        self.engine.act(&self.id, &self.flow, "stream", found)
    }
}

#[cfg(test)]
mod tests;
