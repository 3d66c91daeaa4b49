//! The public entry points: a compiled [`Scanner`] (cheap to clone, shared by
//! all connections) and a per-stream [`StreamScanner`] fed as bytes flow.

use std::sync::Arc;

use crate::config::Config;
use crate::decode::Compression;
use crate::engine::{suppressed, Block, Decided, Engine, Hit, LOOKAHEAD, LOOKBEHIND};
use crate::error::ConfigError;
use crate::finding::{Finding, FindingKind, Severity};
use crate::sensors::SensorRef;
use crate::stream_decode::{Dechunker, Inflate, Inflater};

/// Compiled sensors and decoders. Clone freely: clones share one engine.
#[derive(Clone)]
pub struct Scanner {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("limits", &self.engine.limits)
            .finish_non_exhaustive()
    }
}

/// Framing of a stream known from its protocol (e.g. HTTP headers), decoded
/// before scanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Body uses HTTP/1.1 chunked transfer coding.
    pub chunked: bool,
    /// Body uses this content coding.
    pub content_encoding: Option<Compression>,
}

impl Scanner {
    /// Compile a configuration; errors name the offending sensor.
    pub fn new(config: &Config) -> Result<Scanner, ConfigError> {
        Ok(Scanner {
            engine: Arc::new(Engine::new(config)?),
        })
    }

    /// Scan a whole buffer. Same results as streaming it in any chunking.
    pub fn scan(&self, data: &[u8]) -> Vec<Finding> {
        let mut blk = Block::new(data, true, true);
        self.engine.scan_block(&mut blk, 0);
        let all: Vec<Decided> = blk.hits.iter().map(|h| Decided::of(h, 0)).collect();
        blk.hits
            .iter()
            .zip(&all)
            .filter(|(_, d)| !suppressed(d, &all))
            .map(|(h, _)| finding(&self.engine, h, 0, &[]))
            .collect()
    }

    /// A streaming scanner for one connection or body.
    pub fn stream(&self) -> StreamScanner {
        self.stream_with(StreamOptions::default())
    }

    /// A streaming scanner that first undoes the given framing.
    pub fn stream_with(&self, opts: StreamOptions) -> StreamScanner {
        let limit = self.engine.limits.max_decoded;
        StreamScanner {
            engine: self.engine.clone(),
            buf: Vec::new(),
            base: 0,
            decided: 0,
            finished: false,
            dechunk: opts.chunked.then(Dechunker::default),
            inflate: opts.content_encoding.map(|k| Inflater::new(k, limit)),
            bomb: None,
            scratch: Vec::new(),
            recent: Vec::new(),
        }
    }
}

/// Scans one stream incrementally. Memory is bounded by the carry-over
/// window (`limits.max_candidate` plus a little context), whatever the
/// stream's length; a value split across `push` calls is still found, once,
/// with its offset in the stream.
pub struct StreamScanner {
    engine: Arc<Engine>,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Candidates needing bytes only up to here have been decided.
    decided: u64,
    finished: bool,
    dechunk: Option<Dechunker>,
    inflate: Option<Inflater>,
    /// A decompression-bomb finding waiting to be returned.
    bomb: Option<Finding>,
    scratch: Vec<u8>,
    /// Hits decided in earlier rounds that may still overlap new ones.
    recent: Vec<Decided>,
}

impl std::fmt::Debug for StreamScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamScanner")
            .field("position", &self.position())
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl StreamScanner {
    /// Feed the next bytes; returns the findings decided so far.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Finding> {
        if self.finished {
            return Vec::new();
        }
        let mut decoded = std::mem::take(&mut self.scratch);
        decoded.clear();
        let data: &[u8] = match &mut self.dechunk {
            Some(d) => {
                d.feed(chunk, &mut decoded);
                &decoded
            }
            None => chunk,
        };
        let mut out = Vec::new();
        if self.inflate.is_some() {
            let owned = data.to_vec();
            self.inflate_into(&owned, &mut out);
        } else {
            self.feed(data, false, &mut out);
        }
        self.scratch = decoded;
        out
    }

    /// End of stream: decide everything still pending.
    pub fn finish(&mut self) -> Vec<Finding> {
        if self.finished {
            return Vec::new();
        }
        let mut out = Vec::new();
        if let Some(mut inf) = self.inflate.take() {
            let mut pieces = Vec::new();
            inf.finish(|o| pieces.extend_from_slice(o));
            self.inflate = Some(inf);
            for p in pieces.chunks(64 << 10) {
                self.feed(p, false, &mut out);
            }
        }
        self.feed(&[], true, &mut out);
        self.finished = true;
        out
    }

    /// Bytes held for the carry-over window (bounded by the limits).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of (decoded) stream seen so far.
    pub fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn inflate_into(&mut self, data: &[u8], out: &mut Vec<Finding>) {
        let Some(mut inf) = self.inflate.take() else {
            return;
        };
        let mut pending: Vec<u8> = Vec::new();
        let status = inf.feed(data, |o| pending.extend_from_slice(o));
        for p in pending.chunks(64 << 10) {
            self.feed(p, false, out);
        }
        if let Inflate::Bomb = status {
            if self.bomb.is_none() {
                let at = self.position();
                let f = Finding {
                    sensor: crate::sensors::DECODE_LIMIT.to_owned(),
                    kind: FindingKind::DecodeLimit,
                    severity: Severity::Info,
                    offset: at,
                    len: 0,
                    layers: vec![inf.kind().name()],
                    masked: format!(
                        "{} stream inflates past {} bytes at over 100x",
                        inf.kind().name(),
                        self.engine.limits.max_decoded
                    ),
                };
                out.push(f.clone());
                self.bomb = Some(f);
            }
        }
        self.inflate = Some(inf);
    }

    fn feed(&mut self, data: &[u8], last: bool, out: &mut Vec<Finding>) {
        self.buf.extend_from_slice(data);
        let mut blk = Block::new(&self.buf, self.base == 0, last);
        self.engine.scan_block(&mut blk, 0);
        let layers: &[&'static str] = match &self.inflate {
            Some(i) => std::slice::from_ref(match i.kind() {
                Compression::Gzip => &"gzip",
                Compression::Deflate => &"deflate",
            }),
            None => &[],
        };
        let all: Vec<Decided> = blk.hits.iter().map(|h| Decided::of(h, self.base)).collect();
        let mut now = Vec::new();
        for (h, d) in blk.hits.iter().zip(&all) {
            if d.needs > self.decided {
                if !suppressed(d, all.iter().chain(&self.recent)) {
                    out.push(finding(&self.engine, h, self.base, layers));
                }
                now.push(d.clone());
            }
        }
        self.recent.extend(now);
        let len = self.buf.len();
        self.decided = self.base + len as u64;
        let pending = blk.pending;
        if last {
            self.base += len as u64;
            self.buf.clear();
            return;
        }
        let limits = self.engine.limits;
        let mut keep_from = len.saturating_sub(LOOKBEHIND + 128);
        if let Some(p) = pending {
            keep_from = keep_from.min(p.saturating_sub(LOOKBEHIND));
        }
        keep_from =
            keep_from.max(len.saturating_sub(limits.max_candidate + LOOKBEHIND + LOOKAHEAD + 64));
        self.buf.drain(..keep_from);
        self.base += keep_from as u64;
        let base = self.base;
        self.recent.retain(|d| d.end > base);
    }
}

fn finding(engine: &Engine, h: &Hit, base: u64, outer: &[&'static str]) -> Finding {
    let (kind, severity) = match h.sensor {
        SensorRef::Builtin(b) => (FindingKind::Sensitive, b.severity()),
        SensorRef::Custom(_) => (FindingKind::Sensitive, Severity::High),
        SensorRef::DecodeLimit => (FindingKind::DecodeLimit, Severity::Info),
    };
    let mut layers = outer.to_vec();
    layers.extend_from_slice(&h.layers);
    Finding {
        sensor: engine.sensor_name(h.sensor).to_owned(),
        kind,
        severity,
        offset: base + h.start as u64,
        len: (h.end - h.start) as u64,
        layers,
        masked: h.masked.clone(),
    }
}
