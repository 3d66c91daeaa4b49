//! Credential sensors found through a literal anchor (`AKIA`, `ghp_`,
//! `xoxb-`, `sk_live_`, `AIza`, `eyJ`…). Each checks the exact shape, the
//! token boundaries, and whatever the format lets us verify: GitHub's CRC32
//! suffix, a JWT's JSON header and payload, placeholder values.

use crate::decode;
use crate::engine::{Block, Engine};
use crate::finding::mask_token;
use crate::sensors::{Builtin, SensorRef};
use crate::validate::{entropy, github_checksum, is_placeholder};

fn run_end(buf: &[u8], from: usize, max: usize, ok: impl Fn(u8) -> bool) -> usize {
    let lim = (from + max).min(buf.len());
    let mut i = from;
    while i < lim && ok(buf[i]) {
        i += 1;
    }
    i
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Common start checks: sensor on, left boundary visible and clean.
fn starts_clean(
    eng: &Engine,
    blk: &Block<'_>,
    b: Builtin,
    s: usize,
    glue: impl Fn(u8) -> bool,
) -> bool {
    eng.on(b) && !blk.cut(s) && !blk.prev(s).is_some_and(glue)
}

pub(crate) fn aws_key_id(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::AwsAccessKeyId, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s, 21, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit()
    });
    if !blk.ready(s, e + 1) || e - s != 20 || blk.byte(e).is_some_and(alnum) {
        return;
    }
    let v = &blk.buf[s..e];
    if is_placeholder(v) {
        return;
    }
    blk.hit(
        SensorRef::Builtin(Builtin::AwsAccessKeyId),
        s,
        e,
        e + 1,
        mask_token(v, 4, 4),
    );
}

/// Whether an AWS access key id appears in `hay`.
pub(crate) fn has_aws_key_id(hay: &[u8]) -> bool {
    hay.windows(20).any(|w| {
        (w.starts_with(b"AKIA") || w.starts_with(b"ASIA"))
            && w[4..]
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

pub(crate) fn github_classic(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::GithubToken, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s + 4, 37, alnum);
    if !blk.ready(s, e + 1) || e - s != 40 || blk.byte(e).is_some_and(word) {
        return;
    }
    let v = &blk.buf[s..e];
    if github_checksum(v) {
        blk.hit(
            SensorRef::Builtin(Builtin::GithubToken),
            s,
            e,
            e + 1,
            mask_token(v, 4, 4),
        );
    }
}

pub(crate) fn github_fine_grained(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::GithubToken, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s, 94, word);
    if !blk.ready(s, e + 1) || e - s != 93 {
        return;
    }
    let v = &blk.buf[s..e];
    let (id, secret) = (&v[11..33], &v[34..]);
    if v[33] == b'_'
        && id.iter().all(|&c| alnum(c))
        && secret.iter().all(|&c| alnum(c))
        && !is_placeholder(v)
        && entropy(secret) >= 3.5
    {
        blk.hit(
            SensorRef::Builtin(Builtin::GithubToken),
            s,
            e,
            e + 1,
            mask_token(v, 11, 4),
        );
    }
}

/// `xoxb-<team>-<user>-<secret>`, `xoxp-…-<hex32>`, `xoxa-2-…`, `xoxr-…`.
pub(crate) fn slack(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::SlackToken, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s, 256, |c| alnum(c) || c == b'-');
    if !blk.ready(s, e + 1) || e - s >= 256 || blk.byte(e).is_some_and(word) {
        return;
    }
    let v = &blk.buf[s..e];
    let parts: Vec<&[u8]> = v.split(|&c| c == b'-').collect();
    if parts.len() < 4 {
        return;
    }
    let (mid, last) = (&parts[1..parts.len() - 1], parts[parts.len() - 1]);
    let numeric = mid
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 14 && p.iter().all(u8::is_ascii_digit));
    let long_id = mid.iter().filter(|p| p.len() >= 8).count() >= 2;
    let secret_ok =
        (24..=64).contains(&last.len()) && entropy(last) >= 3.2 && !is_placeholder(last);
    if numeric && long_id && secret_ok {
        blk.hit(
            SensorRef::Builtin(Builtin::SlackToken),
            s,
            e,
            e + 1,
            mask_token(v, 5, 4),
        );
    }
}

/// `xapp-1-A…-<digits>-<hex64>` app-level tokens.
pub(crate) fn slack_app(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::SlackToken, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s, 160, |c| alnum(c) || c == b'-');
    if !blk.ready(s, e + 1) || e - s >= 160 || blk.byte(e).is_some_and(word) {
        return;
    }
    let v = &blk.buf[s..e];
    let p: Vec<&[u8]> = v.split(|&c| c == b'-').collect();
    let ok = p.len() == 5
        && !p[1].is_empty()
        && p[1].iter().all(u8::is_ascii_digit)
        && p[2].first() == Some(&b'A')
        && p[2].len() >= 8
        && p[2]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && p[3].len() >= 8
        && p[3].iter().all(u8::is_ascii_digit)
        && p[4].len() >= 32
        && p[4].iter().all(u8::is_ascii_hexdigit)
        && entropy(p[4]) >= 3.0;
    if ok {
        blk.hit(
            SensorRef::Builtin(Builtin::SlackToken),
            s,
            e,
            e + 1,
            mask_token(v, 5, 4),
        );
    }
}

/// `hooks.slack.com/services/T…/B…/<24 alnum>`.
pub(crate) fn slack_webhook(eng: &Engine, blk: &mut Block<'_>, s: usize, anchor_end: usize) {
    if !starts_clean(eng, blk, Builtin::SlackWebhook, s, |c| {
        alnum(c) || c == b'.' || c == b'-'
    }) {
        return;
    }
    let buf = blk.buf;
    let e = run_end(buf, anchor_end, 80, |c| alnum(c) || c == b'/');
    if !blk.ready(s, e + 1) || blk.byte(e).is_some_and(word) {
        return;
    }
    let path = &buf[anchor_end..e];
    let p: Vec<&[u8]> = path.split(|&c| c == b'/').collect();
    let id = |x: &[u8], lead: u8| {
        x.first() == Some(&lead)
            && (9..=13).contains(&x.len())
            && x.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    if p.len() == 3
        && id(p[0], b'T')
        && id(p[1], b'B')
        && p[2].len() == 24
        && p[2].iter().all(|&c| alnum(c))
        && !is_placeholder(p[2])
    {
        let start = if s >= 8 && &buf[s - 8..s] == b"https://" {
            s - 8
        } else {
            s
        };
        let masked = format!(
            "{}T********/B********/{}",
            String::from_utf8_lossy(&buf[start..anchor_end]),
            mask_token(p[2], 0, 0)
        );
        blk.hit(
            SensorRef::Builtin(Builtin::SlackWebhook),
            start,
            e,
            e + 1,
            masked,
        );
    }
}

/// `sk_live_` / `rk_live_` (and the opt-in `_test_` forms).
pub(crate) fn stripe(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    let test = blk.buf.get(s + 3..s + 7) == Some(b"test");
    let sensor = if test {
        Builtin::StripeTestKey
    } else {
        Builtin::StripeKey
    };
    if !starts_clean(eng, blk, sensor, s, alnum) {
        return;
    }
    let e = run_end(blk.buf, s + 8, 248, alnum);
    if !blk.ready(s, e + 1) || blk.byte(e).is_some_and(word) {
        return;
    }
    let secret = &blk.buf[s + 8..e];
    if (24..=247).contains(&secret.len()) && entropy(secret) >= 3.5 && !is_placeholder(secret) {
        let v = &blk.buf[s..e];
        blk.hit(SensorRef::Builtin(sensor), s, e, e + 1, mask_token(v, 8, 4));
    }
}

/// `AIza` + 35 characters of the URL-safe alphabet.
pub(crate) fn google(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::GoogleApiKey, s, b64url) {
        return;
    }
    let e = run_end(blk.buf, s, 40, b64url);
    if !blk.ready(s, e + 1) || e - s != 39 {
        return;
    }
    let v = &blk.buf[s..e];
    if !is_placeholder(v) && entropy(&v[4..]) >= 3.5 {
        blk.hit(
            SensorRef::Builtin(Builtin::GoogleApiKey),
            s,
            e,
            e + 1,
            mask_token(v, 4, 4),
        );
    }
}

/// `header.payload.signature`, each base64url; header and payload must be
/// JSON objects and the header must name its `alg`.
pub(crate) fn jwt(eng: &Engine, blk: &mut Block<'_>, s: usize) {
    if !starts_clean(eng, blk, Builtin::Jwt, s, |c| b64url(c) || c == b'.') {
        return;
    }
    let buf = blk.buf;
    let max = eng.limits.max_candidate;
    let h_end = run_end(buf, s, max, b64url);
    let mut ends = [h_end; 3];
    let mut i = h_end;
    for part in ends.iter_mut().skip(1) {
        if buf.get(i) != Some(&b'.') {
            if !blk.ready(s, i + 1) {
                return;
            }
            break;
        }
        i = run_end(buf, i + 1, max, b64url);
        *part = i;
    }
    let e = ends[2];
    if !blk.ready(s, e + 1)
        || buf.get(ends[1]) != Some(&b'.')
        || e - s >= max
        || blk.byte(e) == Some(b'.')
    {
        return;
    }
    let header = &buf[s..ends[0]];
    let payload = &buf[ends[0] + 1..ends[1]];
    let sig = &buf[ends[1] + 1..e];
    let Some(alg) =
        json_object(header).and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_owned))
    else {
        return;
    };
    if json_object(payload).is_none() || (sig.len() < 16 && alg != "none") {
        return;
    }
    let v = &buf[s..e];
    blk.hit(
        SensorRef::Builtin(Builtin::Jwt),
        s,
        e,
        e + 1,
        mask_token(v, 10, 4),
    );
}

fn json_object(part: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    if part.len() < 4 {
        return None;
    }
    let bytes = decode::base64(part)?;
    serde_json::from_slice(&bytes).ok()
}

/// An AWS secret access key: 40 characters of the standard base64 alphabet,
/// high entropy, and either named nearby (`aws_secret_access_key`,
/// `SecretAccessKey`…) or next to an access key id.
pub(crate) fn aws_secret(eng: &Engine, blk: &mut Block<'_>, s: usize, e: usize, min_needs: usize) {
    if !eng.on(Builtin::AwsSecretKey) || e - s != 40 {
        return;
    }
    let v = &blk.buf[s..e];
    let charset = v.iter().all(|&c| alnum(c) || c == b'+' || c == b'/');
    let mixed = v.iter().any(u8::is_ascii_uppercase)
        && v.iter().any(u8::is_ascii_lowercase)
        && v.iter().any(u8::is_ascii_digit);
    if !charset || !mixed || entropy(v) < 4.0 || is_placeholder(v) {
        return;
    }
    let before = blk.window_before(s, 128);
    let named = crate::engine::has_word(
        before,
        &[
            "secret_access_key",
            "secretaccesskey",
            "secret-access-key",
            "aws_secret",
            "aws secret",
        ],
    );
    let needs = if named {
        min_needs
    } else {
        (e + 128).max(min_needs)
    };
    if !blk.ready(s.saturating_sub(128), needs) {
        return;
    }
    if named || has_aws_key_id(before) || has_aws_key_id(blk.window_after(e, 128)) {
        blk.hit(
            SensorRef::Builtin(Builtin::AwsSecretKey),
            s,
            e,
            needs,
            mask_token(v, 4, 4),
        );
    }
}
