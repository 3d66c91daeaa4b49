//! The block scanner: one pass over a buffer that finds candidates cheaply
//! (an Aho-Corasick prefilter over literal anchors, bitmaps for digit and
//! base64 runs, memchr for `%` and `\`) and hands only candidates to the
//! sensors and decoders.
//!
//! Streaming needs every decision to depend only on bytes near the
//! candidate: each candidate says how far it must see (`needs`); when that
//! lies past the buffer end the candidate is *pending* and the stream keeps
//! its bytes for the next round. Runs touching the start of a buffer that is
//! not the stream start are longer than the carry-over window and ignored, in
//! whole-buffer scans too, so results do not depend on chunking.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::classify::{self, Masks};
use crate::config::{Config, Limits};
use crate::custom::CompiledCustom;
use crate::decode::OffsetMap;
use crate::error::ConfigError;
use crate::sensors::{Builtin, SensorRef, ALL};
use crate::{layers, numeric, pem, tokens};

/// Bytes before any undecided candidate that a buffer always still holds:
/// context words, IBAN starts and key ids are looked for within this.
pub(crate) const LOOKBEHIND: usize = 256;
/// Farthest a sensor looks past a candidate's end (an AWS secret's key id).
pub(crate) const LOOKAHEAD: usize = 160;

/// One validated match inside a buffer.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub sensor: SensorRef,
    pub start: usize,
    pub end: usize,
    /// Buffer position up to which bytes were needed to decide this hit.
    pub needs: usize,
    pub masked: String,
    pub layers: Vec<&'static str>,
}

/// A buffer being scanned and what the scan found in it.
pub(crate) struct Block<'a> {
    pub buf: &'a [u8],
    /// Nothing precedes `buf` in the stream.
    pub at_start: bool,
    /// Nothing follows `buf` in the stream.
    pub at_end: bool,
    /// Earliest start of a candidate that needs bytes not yet seen.
    pub pending: Option<usize>,
    pub hits: Vec<Hit>,
}

impl<'a> Block<'a> {
    pub fn new(buf: &'a [u8], at_start: bool, at_end: bool) -> Self {
        Block {
            buf,
            at_start,
            at_end,
            pending: None,
            hits: Vec::new(),
        }
    }

    /// Whether bytes up to `needs` are known; if not, remember `start` as
    /// pending so the stream keeps it.
    pub fn ready(&mut self, start: usize, needs: usize) -> bool {
        if needs <= self.buf.len() || self.at_end {
            return true;
        }
        self.pending = Some(self.pending.map_or(start, |p| p.min(start)));
        false
    }

    /// A run reaching back to position 0 of a buffer that is not the stream
    /// start began before the carry-over window: too long, ignored.
    pub fn cut(&self, start: usize) -> bool {
        start == 0 && !self.at_start
    }

    pub fn byte(&self, i: usize) -> Option<u8> {
        self.buf.get(i).copied()
    }

    /// The byte before `i`, or `None` at the buffer start.
    pub fn prev(&self, i: usize) -> Option<u8> {
        i.checked_sub(1).map(|j| self.buf[j])
    }

    pub fn window_before(&self, i: usize, n: usize) -> &'a [u8] {
        &self.buf[i.saturating_sub(n)..i]
    }

    pub fn window_after(&self, i: usize, n: usize) -> &'a [u8] {
        &self.buf[i.min(self.buf.len())..(i + n).min(self.buf.len())]
    }

    pub fn hit(
        &mut self,
        sensor: SensorRef,
        start: usize,
        end: usize,
        needs: usize,
        masked: String,
    ) {
        self.hits.push(Hit {
            sensor,
            start,
            end,
            needs,
            masked,
            layers: Vec::new(),
        });
    }
}

/// Which sensor family an Aho-Corasick anchor leads to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Anchor {
    AwsKeyId,
    GithubClassic,
    GithubFineGrained,
    Slack,
    SlackApp,
    SlackWebhook,
    Stripe,
    Google,
    Jwt,
    PrivateKey,
    Http,
}

const ANCHORS: &[(&str, Anchor)] = &[
    ("AKIA", Anchor::AwsKeyId),
    ("ASIA", Anchor::AwsKeyId),
    ("ghp_", Anchor::GithubClassic),
    ("gho_", Anchor::GithubClassic),
    ("ghu_", Anchor::GithubClassic),
    ("ghs_", Anchor::GithubClassic),
    ("ghr_", Anchor::GithubClassic),
    ("github_pat_", Anchor::GithubFineGrained),
    ("xoxb-", Anchor::Slack),
    ("xoxp-", Anchor::Slack),
    ("xoxa-", Anchor::Slack),
    ("xoxr-", Anchor::Slack),
    ("xapp-", Anchor::SlackApp),
    ("hooks.slack.com/services/", Anchor::SlackWebhook),
    ("sk_live_", Anchor::Stripe),
    ("rk_live_", Anchor::Stripe),
    ("sk_test_", Anchor::Stripe),
    ("rk_test_", Anchor::Stripe),
    ("AIza", Anchor::Google),
    ("eyJ", Anchor::Jwt),
    ("PRIVATE KEY-----", Anchor::PrivateKey),
    ("HTTP/1.", Anchor::Http),
];

/// The compiled, immutable part of a scanner; shared by all streams.
pub(crate) struct Engine {
    enabled: [bool; ALL.len()],
    ac: AhoCorasick,
    anchors: Vec<Anchor>,
    pub custom: Vec<CompiledCustom>,
    pub limits: Limits,
}

impl Engine {
    pub fn new(cfg: &Config) -> Result<Engine, ConfigError> {
        let mut enabled = ALL.map(Builtin::on_by_default);
        for name in &cfg.disabled_sensors {
            let b =
                Builtin::from_name(name).ok_or_else(|| ConfigError::UnknownSensor(name.clone()))?;
            enabled[b as usize] = false;
        }
        for name in &cfg.enabled_sensors {
            let b =
                Builtin::from_name(name).ok_or_else(|| ConfigError::UnknownSensor(name.clone()))?;
            enabled[b as usize] = true;
        }
        let l = cfg.limits;
        if l.max_candidate < 1024 || l.max_candidate > 1 << 24 || l.max_decoded < 1024 {
            return Err(ConfigError::Limits(
                "maxCandidate must be 1 KiB..16 MiB and maxDecoded at least 1 KiB",
            ));
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(ANCHORS.iter().map(|(p, _)| p))
            .map_err(|e| ConfigError::Prefilter(e.to_string()))?;
        let mut custom = Vec::new();
        for (i, c) in cfg.custom_sensors.iter().enumerate() {
            if c.name.is_empty()
                || Builtin::from_name(&c.name).is_some()
                || cfg.custom_sensors[..i].iter().any(|o| o.name == c.name)
            {
                return Err(ConfigError::Name(c.name.clone()));
            }
            custom.push(CompiledCustom::new(c)?);
        }
        Ok(Engine {
            enabled,
            ac,
            anchors: ANCHORS.iter().map(|&(_, a)| a).collect(),
            custom,
            limits: l,
        })
    }

    pub fn on(&self, b: Builtin) -> bool {
        self.enabled[b as usize]
    }

    pub fn sensor_name(&self, s: SensorRef) -> &str {
        match s {
            SensorRef::Builtin(b) => b.name(),
            SensorRef::Custom(i) => self
                .custom
                .get(usize::from(i))
                .map_or("custom", |c| c.name.as_str()),
            SensorRef::DecodeLimit => crate::sensors::DECODE_LIMIT,
        }
    }

    /// Scan one buffer: every sensor, every decoder, then de-duplicate.
    pub fn scan_block(&self, blk: &mut Block<'_>, depth: u8) {
        self.scan_anchors(blk, depth);
        self.scan_runs(blk, depth);
        if depth < self.limits.max_depth {
            layers::scan_percent(self, blk, depth);
            layers::scan_json_escapes(self, blk, depth);
        }
        for (i, c) in self.custom.iter().enumerate() {
            c.scan(blk, i as u16, self.limits.max_candidate);
        }
        dedupe_exact(&mut blk.hits);
    }

    fn scan_anchors(&self, blk: &mut Block<'_>, depth: u8) {
        for m in self.ac.find_iter(blk.buf) {
            let (s, e) = (m.start(), m.end());
            match self.anchors[m.pattern().as_usize()] {
                Anchor::AwsKeyId => tokens::aws_key_id(self, blk, s),
                Anchor::GithubClassic => tokens::github_classic(self, blk, s),
                Anchor::GithubFineGrained => tokens::github_fine_grained(self, blk, s),
                Anchor::Slack => tokens::slack(self, blk, s),
                Anchor::SlackApp => tokens::slack_app(self, blk, s),
                Anchor::SlackWebhook => tokens::slack_webhook(self, blk, s, e),
                Anchor::Stripe => tokens::stripe(self, blk, s),
                Anchor::Google => tokens::google(self, blk, s),
                Anchor::Jwt => tokens::jwt(self, blk, s),
                Anchor::PrivateKey => pem::private_key(self, blk, s, e),
                Anchor::Http => {
                    if depth < self.limits.max_depth {
                        layers::http_message(self, blk, s, depth)
                    }
                }
            }
        }
    }

    /// Walk the digit and base64 bitmaps 4 KiB at a time (no allocation).
    fn scan_runs(&self, blk: &mut Block<'_>, depth: u8) {
        const SEG_WORDS: usize = 64;
        let len = blk.buf.len();
        let mut masks = Masks::default();
        let mut digit_resume = 0usize;
        let mut b64_resume = 0usize;
        let mut seg = 0usize;
        while seg < len {
            // One extra word so runs crossing the segment end are seen.
            let end = (seg + (SEG_WORDS + 1) * 64).min(len);
            masks.compute(&blk.buf[seg..end]);
            for w in 0..SEG_WORDS {
                let base = seg + w * 64;
                if base >= len {
                    break;
                }
                let mut t = classify::run_starts::<4>(&masks.digit, w);
                t &= below_mask(digit_resume, base);
                while t != 0 {
                    let p = base + t.trailing_zeros() as usize;
                    digit_resume = numeric::on_digits(self, blk, p).max(p + 1);
                    t &= below_mask(digit_resume, base);
                }
                let mut t = classify::run_starts::<16>(&masks.b64, w);
                t &= below_mask(b64_resume, base);
                while t != 0 {
                    let p = base + t.trailing_zeros() as usize;
                    let hint = mask_run_end(&masks.b64, p - seg).map(|r| seg + r);
                    b64_resume = layers::on_b64_run(self, blk, p, hint, depth).max(p + 1);
                    t &= below_mask(b64_resume, base);
                }
            }
            seg += SEG_WORDS * 64;
        }
    }

    /// Scan decoded bytes as a nested layer and map its hits back onto the
    /// encoded region `[start, end)` of `blk`. A little raw context before the
    /// region is prepended so context words (a JSON key, a form field name)
    /// still count; hits inside that prefix are dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn nested(
        &self,
        blk: &mut Block<'_>,
        decoded: &[u8],
        map: &OffsetMap,
        start: usize,
        needs: usize,
        layer: &[&'static str],
        depth: u8,
    ) {
        let prefix = blk.window_before(start, 64);
        let mut buf = Vec::with_capacity(prefix.len() + decoded.len());
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(decoded);
        let plen = prefix.len();
        let mut inner = Block::new(&buf, true, true);
        self.scan_block(&mut inner, depth + 1);
        for h in inner.hits {
            if h.start < plen {
                continue;
            }
            let (s, e) = map.span(h.start - plen, h.end - plen);
            let mut layers = Vec::with_capacity(h.layers.len() + layer.len());
            layers.extend_from_slice(layer);
            layers.extend(h.layers);
            blk.hits.push(Hit {
                sensor: h.sensor,
                start: s,
                end: e,
                needs,
                masked: h.masked,
                layers,
            });
        }
    }
}

/// End of the run of set bits starting at bit `rel`, if it ends inside the
/// computed words (the last word is padding and never counts as an end).
fn mask_run_end(words: &[u64], rel: usize) -> Option<usize> {
    let (mut w, mut bit) = (rel / 64, rel % 64);
    let mut end = rel;
    while w + 1 < words.len() {
        let ones = (!(words[w] >> bit)).trailing_zeros() as usize;
        let avail = 64 - bit;
        if ones < avail {
            return Some(end + ones);
        }
        end += avail;
        w += 1;
        bit = 0;
    }
    None
}

/// Bits of the word at `base` at or after `resume`.
fn below_mask(resume: usize, base: usize) -> u64 {
    if resume <= base {
        u64::MAX
    } else if resume - base >= 64 {
        0
    } else {
        !((1u64 << (resume - base)) - 1)
    }
}

/// Drop exact repeats (the same bytes matched twice by one sensor).
fn dedupe_exact(hits: &mut Vec<Hit>) {
    hits.sort_by(|a, b| {
        (a.start, a.end, a.sensor, a.layers.len(), a.needs).cmp(&(
            b.start,
            b.end,
            b.sensor,
            b.layers.len(),
            b.needs,
        ))
    });
    hits.dedup_by(|b, a| {
        a.sensor == b.sensor && a.start == b.start && a.end == b.end && a.layers == b.layers
    });
}

/// A decided hit in stream coordinates, kept to de-duplicate across layers.
#[derive(Debug, Clone)]
pub(crate) struct Decided {
    pub sensor: SensorRef,
    pub start: u64,
    pub end: u64,
    pub needs: u64,
    pub raw: bool,
    pub masked: String,
    pub layers: usize,
}

impl Decided {
    pub fn of(h: &Hit, base: u64) -> Decided {
        Decided {
            sensor: h.sensor,
            start: base + h.start as u64,
            end: base + h.end as u64,
            needs: base + h.needs as u64,
            raw: h.layers.is_empty(),
            masked: h.masked.clone(),
            layers: h.layers.len(),
        }
    }

    fn key(&self) -> (u64, u64, u64, usize) {
        (self.needs, self.start, self.end, self.layers)
    }
}

/// One value reached twice is one finding: a decoded-layer hit is dropped
/// when the same sensor matched overlapping bytes as-is, or when another
/// layer decided earlier (or first in a fixed order) found the same masked
/// value there (a card in a gzip body whose stored block also shows it).
/// The rule only looks at hits decided no later than `h`, so a stream and a
/// whole-buffer scan drop the same ones.
pub(crate) fn suppressed<'a>(h: &Decided, others: impl IntoIterator<Item = &'a Decided>) -> bool {
    if h.raw {
        return false;
    }
    others.into_iter().any(|k| {
        k.sensor == h.sensor
            && k.start < h.end
            && h.start < k.end
            && (k.raw || (k.masked == h.masked && k.key() < h.key()))
    })
}

/// ASCII case-insensitive search for any of `words` in `hay`.
pub(crate) fn has_word(hay: &[u8], words: &[&str]) -> bool {
    words.iter().any(|w| {
        let w = w.as_bytes();
        w.len() <= hay.len() && hay.windows(w.len()).any(|x| x.eq_ignore_ascii_case(w))
    })
}
