//! Sensors from the policy file: a regex, an optional checksum, context
//! words that must be near, and an entropy floor.

use regex::bytes::Regex;

use crate::config::CustomSensor;
use crate::engine::{has_word, Block};
use crate::error::ConfigError;
use crate::finding::mask_token;
use crate::sensors::SensorRef;
use crate::validate;

#[derive(Debug, Clone, Copy)]
enum Validator {
    Luhn,
    Mod97,
}

pub(crate) struct CompiledCustom {
    pub name: String,
    re: Regex,
    validator: Option<Validator>,
    context: Vec<String>,
    window: usize,
    min_entropy: Option<f64>,
}

impl CompiledCustom {
    pub fn new(c: &CustomSensor) -> Result<Self, ConfigError> {
        let re = regex::bytes::RegexBuilder::new(&c.pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| ConfigError::Pattern {
                name: c.name.clone(),
                source: Box::new(e),
            })?;
        let validator = match c.validator.as_deref() {
            None | Some("none") | Some("") => None,
            Some("luhn") => Some(Validator::Luhn),
            Some("mod97") => Some(Validator::Mod97),
            Some(other) => {
                return Err(ConfigError::Validator {
                    name: c.name.clone(),
                    validator: other.to_owned(),
                })
            }
        };
        Ok(CompiledCustom {
            name: c.name.clone(),
            re,
            validator,
            context: c.context.clone(),
            window: c.context_window.min(crate::engine::LOOKAHEAD),
            min_entropy: c.min_entropy,
        })
    }

    pub fn scan(&self, blk: &mut Block<'_>, id: u16, max: usize) {
        let buf = blk.buf;
        let ctx: Vec<&str> = self.context.iter().map(String::as_str).collect();
        for m in self.re.find_iter(buf) {
            let (s, e) = (m.start(), m.end());
            if e == s || e - s >= max || blk.cut(s) {
                continue;
            }
            // A match running into the buffer end might grow; one needing
            // context after it waits for that too.
            let needs = if ctx.is_empty() {
                e + 1
            } else {
                e + self.window
            };
            if !blk.ready(s, needs) {
                return;
            }
            let v = &buf[s..e];
            let valid = match self.validator {
                None => true,
                Some(Validator::Luhn) => validate::luhn(v),
                Some(Validator::Mod97) => {
                    let compact: Vec<u8> = v
                        .iter()
                        .copied()
                        .filter(u8::is_ascii_alphanumeric)
                        .collect();
                    validate::mod97(&compact)
                }
            };
            if !valid || self.min_entropy.is_some_and(|m| validate::entropy(v) < m) {
                continue;
            }
            if !ctx.is_empty()
                && !has_word(blk.window_before(s, self.window), &ctx)
                && !has_word(blk.window_after(e, self.window), &ctx)
            {
                continue;
            }
            let keep = if v.len() >= 16 { 4 } else { 0 };
            blk.hit(
                SensorRef::Custom(id),
                s,
                e,
                needs,
                mask_token(v, keep, keep),
            );
        }
    }
}
