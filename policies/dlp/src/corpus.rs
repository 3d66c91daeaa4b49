//! A labelled corpus generated from a fixed seed: synthetic values only,
//! computed to pass their checksums (never real data), embedded in the
//! containers traffic carries (JSON, forms, CSV, multipart, logs, HTML, raw
//! HTTP) and in encoded variants (URL, base64, gzip+base64, JSON escapes,
//! chunked framing, gzip content coding), plus hard negatives that look
//! like secrets but are not. Used by the precision/recall test and the
//! benchmarks.

use std::io::Write;

use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::validate::{base62_crc6, luhn};

/// Deterministic PRNG (SplitMix64): the corpus is the same on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64 - 1) as usize]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.range(0, items.len() as u64 - 1) as usize]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    pub fn string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

const DIGITS: &[u8] = b"0123456789";
const UPPER_DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const BASE32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One labelled document.
#[derive(Debug, Clone)]
pub struct Sample {
    /// How it was built, e.g. `credit_card/json/base64`.
    pub label: String,
    pub data: Vec<u8>,
    /// Sensors that must fire, one entry per embedded value.
    pub expected: Vec<&'static str>,
}

/// A secret value and the sensor that owns it.
#[derive(Debug, Clone)]
pub struct Value {
    pub sensor: &'static str,
    pub text: String,
    /// Field name a person would give it (`card_number`, `token`…).
    pub field: &'static str,
}

// ---------------------------------------------------------------- values

fn luhn_complete(rng: &mut Rng, prefix: &str, len: usize) -> String {
    let mut s = prefix.to_owned();
    s.push_str(&rng.string(DIGITS, len - prefix.len() - 1));
    for d in b'0'..=b'9' {
        let mut t = s.clone();
        t.push(d as char);
        if luhn(t.as_bytes()) {
            return t;
        }
    }
    unreachable!("one check digit always fits")
}

/// Card number digits for a random brand.
pub fn card_digits(rng: &mut Rng) -> (String, &'static [usize]) {
    let (prefix, len, layout): (String, usize, &'static [usize]) = match rng.range(0, 11) {
        0 => ("4".into(), 16, &[4, 4, 4, 4]),
        1 => ("4".into(), *rng.pick(&[13, 19]), &[]),
        2 => (format!("5{}", rng.range(1, 5)), 16, &[4, 4, 4, 4]),
        3 => (rng.range(2221, 2720).to_string(), 16, &[4, 4, 4, 4]),
        4 => (rng.pick(&["34", "37"]).to_string(), 15, &[4, 6, 5]),
        5 => (
            rng.pick(&["6011", "65", "644", "649"]).to_string(),
            16,
            &[4, 4, 4, 4],
        ),
        6 => (rng.range(3528, 3589).to_string(), 16, &[4, 4, 4, 4]),
        7 => (
            rng.pick(&["300", "305", "36", "38"]).to_string(),
            14,
            &[4, 6, 4],
        ),
        8 => ("62".into(), *rng.pick(&[16, 19]), &[4, 4, 4, 4]),
        9 => (
            rng.pick(&["5018", "5020", "6304", "6759", "6763"])
                .to_string(),
            *rng.pick(&[12, 16, 19]),
            &[],
        ),
        10 => ("36".into(), 14, &[4, 6, 4]),
        _ => ("4".into(), 16, &[4, 4, 4, 4]),
    };
    let layout = if layout.iter().sum::<usize>() == len {
        layout
    } else {
        &[]
    };
    (luhn_complete(rng, &prefix, len), layout)
}

fn group(digits: &str, layout: &[usize], sep: char) -> String {
    let mut out = String::new();
    let mut i = 0;
    for (k, &n) in layout.iter().enumerate() {
        if k > 0 {
            out.push(sep);
        }
        out.push_str(&digits[i..i + n]);
        i += n;
    }
    out
}

pub fn card(rng: &mut Rng) -> Value {
    let (d, layout) = card_digits(rng);
    let text = match (layout.is_empty(), rng.range(0, 2)) {
        (true, _) | (_, 0) => d,
        (_, 1) => group(&d, layout, ' '),
        _ => group(&d, layout, '-'),
    };
    Value {
        sensor: "credit_card",
        text,
        field: rng.pick_str(&["card_number", "cc", "pan", "cardNumber", "payment_card"]),
    }
}

fn ssn_digits(rng: &mut Rng) -> String {
    loop {
        let area = rng.range(1, 899);
        if area == 666 {
            continue;
        }
        let s = format!("{area:03}{:02}{:04}", rng.range(1, 99), rng.range(1, 9999));
        if crate::validate::ssn(s.as_bytes()) {
            return s;
        }
    }
}

pub fn ssn(rng: &mut Rng) -> Value {
    let d = ssn_digits(rng);
    let text = if rng.chance(70) {
        format!("{}-{}-{}", &d[..3], &d[3..5], &d[5..])
    } else {
        d
    };
    Value {
        sensor: "ssn",
        text,
        field: rng.pick_str(&["ssn", "SSN", "social_security_number", "taxpayer_ssn"]),
    }
}

/// BBAN shapes: (country, letters at the start of the BBAN, total BBAN length).
const IBAN_SHAPES: &[(&str, usize, usize)] = &[
    ("DE", 0, 18),
    ("FR", 0, 23),
    ("GB", 4, 18),
    ("NL", 4, 14),
    ("ES", 0, 20),
    ("IT", 1, 23),
    ("BE", 0, 12),
    ("CH", 0, 17),
    ("PL", 0, 24),
    ("AT", 0, 16),
];

fn iban_check(country: &str, bban: &str) -> String {
    let moved = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in moved.bytes() {
        let v = if c.is_ascii_digit() {
            u32::from(c - b'0')
        } else {
            u32::from(c - b'A') + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

pub fn iban_compact(rng: &mut Rng) -> String {
    let &(country, letters, len) = rng.pick(IBAN_SHAPES);
    let bban = format!(
        "{}{}",
        rng.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", letters),
        rng.string(DIGITS, len - letters)
    );
    iban_check(country, &bban)
}

pub fn iban(rng: &mut Rng) -> Value {
    let c = iban_compact(rng);
    let text = if rng.chance(50) {
        c.as_bytes()
            .chunks(4)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        c
    };
    Value {
        sensor: "iban",
        text,
        field: rng.pick_str(&["iban", "IBAN", "account_iban", "beneficiary"]),
    }
}

pub fn aws_key_id_text(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(&["AKIA", "ASIA"]), rng.string(BASE32, 16))
}

pub fn aws_key_id(rng: &mut Rng) -> Value {
    Value {
        sensor: "aws_access_key_id",
        text: aws_key_id_text(rng),
        field: rng.pick_str(&["aws_access_key_id", "AccessKeyId", "accessKey"]),
    }
}

pub fn aws_secret_text(rng: &mut Rng) -> String {
    loop {
        let s = rng.string(B64, 40);
        let b = s.as_bytes();
        if b.iter().any(u8::is_ascii_digit)
            && b.iter().any(u8::is_ascii_uppercase)
            && b.iter().any(u8::is_ascii_lowercase)
        {
            return s;
        }
    }
}

pub fn github(rng: &mut Rng) -> Value {
    let text = if rng.chance(75) {
        let body = rng.string(ALNUM, 30);
        let sum = base62_crc6(crc32fast::hash(body.as_bytes()));
        format!(
            "{}{body}{}",
            rng.pick(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]),
            String::from_utf8_lossy(&sum)
        )
    } else {
        format!(
            "github_pat_{}_{}",
            rng.string(ALNUM, 22),
            rng.string(ALNUM, 59)
        )
    };
    Value {
        sensor: "github_token",
        text,
        field: rng.pick_str(&["GITHUB_TOKEN", "token", "gh_token", "password"]),
    }
}

pub fn slack(rng: &mut Rng) -> Value {
    let d = |rng: &mut Rng| {
        let n = rng.range(10, 13) as usize;
        rng.string(DIGITS, n)
    };
    let text = match rng.range(0, 3) {
        0 => format!("xoxb-{}-{}-{}", d(rng), d(rng), rng.string(ALNUM, 24)),
        1 => format!(
            "xoxp-{}-{}-{}-{}",
            d(rng),
            d(rng),
            d(rng),
            rng.string(HEX, 32)
        ),
        2 => format!(
            "xapp-1-A{}-{}-{}",
            rng.string(UPPER_DIGITS, 10),
            d(rng),
            rng.string(HEX, 64)
        ),
        _ => format!(
            "xoxa-2-{}-{}-{}-{}",
            d(rng),
            d(rng),
            d(rng),
            rng.string(HEX, 32)
        ),
    };
    Value {
        sensor: "slack_token",
        text,
        field: rng.pick_str(&["SLACK_BOT_TOKEN", "slack_token", "token"]),
    }
}

pub fn slack_webhook(rng: &mut Rng) -> Value {
    let (nt, nb) = (8 + rng.range(0, 2) as usize, 8 + rng.range(0, 2) as usize);
    let text = format!(
        "https://hooks.slack.com/services/T{}/B{}/{}",
        rng.string(UPPER_DIGITS, nt),
        rng.string(UPPER_DIGITS, nb),
        rng.string(ALNUM, 24)
    );
    Value {
        sensor: "slack_webhook",
        text,
        field: rng.pick_str(&["webhook_url", "SLACK_WEBHOOK", "url"]),
    }
}

pub fn stripe(rng: &mut Rng) -> Value {
    let n = *rng.pick(&[24, 34, 99]);
    let text = format!(
        "{}{}",
        rng.pick(&["sk_live_", "rk_live_"]),
        rng.string(ALNUM, n)
    );
    Value {
        sensor: "stripe_key",
        text,
        field: rng.pick_str(&["STRIPE_SECRET_KEY", "stripe_key", "apiKey"]),
    }
}

pub fn google(rng: &mut Rng) -> Value {
    Value {
        sensor: "google_api_key",
        text: format!("AIza{}", rng.string(B64URL, 35)),
        field: rng.pick_str(&["key", "GOOGLE_API_KEY", "apiKey"]),
    }
}

fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

pub fn jwt(rng: &mut Rng) -> Value {
    let alg = *rng.pick(&["HS256", "RS256", "ES256"]);
    let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
    let payload = format!(
        r#"{{"sub":"{}","name":"user{}","iat":{},"exp":{},"scope":"read write"}}"#,
        rng.range(1000, 999_999),
        rng.range(1, 9999),
        rng.range(1_600_000_000, 1_800_000_000),
        rng.range(1_800_000_000, 1_900_000_000)
    );
    let sig_len = if alg == "HS256" { 32 } else { 64 };
    let text = format!(
        "{}.{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes()),
        b64url(&rng.bytes(sig_len))
    );
    Value {
        sensor: "jwt",
        text,
        field: rng.pick_str(&["access_token", "id_token", "Authorization", "jwt"]),
    }
}

fn der_blob(rng: &mut Rng, body_len: usize) -> Vec<u8> {
    let mut d = vec![0x30, 0x82, (body_len >> 8) as u8, body_len as u8];
    d.extend_from_slice(&[0x02, 0x01, 0x00]);
    d.extend(rng.bytes(body_len - 3));
    d
}

fn pem_wrap(label: &str, der: &[u8], newline: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----{newline}");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push_str(newline);
    }
    s.push_str(&format!("-----END {label}-----"));
    s
}

pub fn private_key(rng: &mut Rng) -> Value {
    let n = rng.range(300, 1200) as usize;
    let text = match rng.range(0, 3) {
        0 => pem_wrap("RSA PRIVATE KEY", &der_blob(rng, n + 300), "\n"),
        1 => pem_wrap("PRIVATE KEY", &der_blob(rng, n), "\n"),
        2 => pem_wrap("EC PRIVATE KEY", &der_blob(rng, 260), "\n"),
        _ => {
            let mut d = b"openssh-key-v1\0".to_vec();
            d.extend(rng.bytes(n));
            pem_wrap("OPENSSH PRIVATE KEY", &d, "\n")
        }
    };
    Value {
        sensor: "private_key",
        text,
        field: rng.pick_str(&["private_key", "ssh_key", "tls.key"]),
    }
}

/// A random positive value of any built-in sensor.
pub fn any_value(rng: &mut Rng) -> Vec<Value> {
    match rng.range(0, 13) {
        0 | 1 => vec![card(rng)],
        2 => vec![ssn(rng)],
        3 => vec![iban(rng)],
        4 => vec![aws_key_id(rng)],
        5 => {
            // A secret key travels with its id (credentials files, env).
            let id = aws_key_id(rng);
            let secret = Value {
                sensor: "aws_secret_key",
                text: aws_secret_text(rng),
                field: "aws_secret_access_key",
            };
            vec![id, secret]
        }
        6 => vec![github(rng)],
        7 => vec![slack(rng)],
        8 => vec![slack_webhook(rng)],
        9 => vec![stripe(rng)],
        10 => vec![google(rng)],
        11 => vec![jwt(rng)],
        12 => vec![private_key(rng)],
        _ => vec![card(rng)],
    }
}

// ------------------------------------------------------------ negatives

/// Hard negatives: look-alikes a bare regex would flag. Each is one field
/// value with a plausible field name.
pub fn negative(rng: &mut Rng) -> (&'static str, String) {
    match rng.range(0, 27) {
        0 => {
            // Card-shaped, right brand prefix, wrong check digit.
            let (d, _) = card_digits(rng);
            let last = d.as_bytes()[d.len() - 1] - b'0';
            let bad = format!(
                "{}{}",
                &d[..d.len() - 1],
                (last + rng.range(1, 9) as u8) % 10
            );
            ("card_number", bad)
        }
        1 => {
            let (d, _) = card_digits(rng);
            (
                "card_masked",
                format!("{} **** **** {}", &d[..4], &d[d.len() - 4..]),
            )
        }
        2 => {
            let (d, _) = card_digits(rng);
            (
                "card_last4",
                format!("{}{}", "*".repeat(d.len() - 4), &d[d.len() - 4..]),
            )
        }
        3 => {
            let (d, _) = card_digits(rng);
            (
                "masked_pan",
                format!("{}******{}", &d[..6], &d[d.len() - 4..]),
            )
        }
        4 => ("order_id", rng.string(DIGITS, 16)),
        5 => (
            "timestamp_ms",
            rng.range(1_500_000_000_000, 1_900_000_000_000).to_string(),
        ),
        6 => {
            let h = rng.string(HEX, 32);
            (
                "request_id",
                format!(
                    "{}-{}-{}-{}-{}",
                    &h[..8],
                    &h[8..12],
                    &h[12..16],
                    &h[16..20],
                    &h[20..]
                ),
            )
        }
        7 => ("commit", rng.string(HEX, 40)),
        8 => ("checksum", rng.string(HEX, 64)),
        9 => (
            "public_key",
            pem_wrap("PUBLIC KEY", &der_blob(rng, 290), "\n"),
        ),
        10 => (
            "certificate",
            pem_wrap("CERTIFICATE", &der_blob(rng, 900), "\n"),
        ),
        11 => (
            "ssh_public_key",
            format!(
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} user@host",
                rng.string(B64, 43)
            ),
        ),
        12 => ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE".into()),
        13 => (
            "aws_secret_access_key",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        ),
        14 => (
            "private_key",
            "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----".into(),
        ),
        15 => {
            let bad = rng.pick(&["000", "666", "900", "987"]).to_string();
            (
                "ssn",
                format!("{bad}-{:02}-{:04}", rng.range(1, 99), rng.range(1, 9999)),
            )
        }
        16 => (
            "ssn",
            rng.pick(&["078-05-1120", "219-09-9999", "123-45-6789"])
                .to_string(),
        ),
        17 => {
            // IBAN with broken check digits.
            let good = iban_compact(rng);
            let check: u32 = good[2..4].parse().unwrap_or(0);
            (
                "iban",
                format!("{}{:02}{}", &good[..2], (check + 1) % 97 + 2, &good[4..]),
            )
        }
        18 => (
            "token",
            format!(
                "eyJ{}.{}.{}",
                rng.string(B64URL, 30),
                rng.string(B64URL, 60),
                rng.string(B64URL, 43)
            ),
        ),
        19 => {
            // Random bytes in base64 (an image, a nonce): entropy but no name.
            let n = rng.range(16, 64) as usize;
            (
                "data",
                base64::engine::general_purpose::STANDARD.encode(rng.bytes(n)),
            )
        }
        20 => (
            "phone",
            format!(
                "+1 {}-{}-{}",
                rng.range(201, 989),
                rng.range(200, 999),
                rng.range(1000, 9999)
            ),
        ),
        21 => ("amount", format!("0.{}", rng.string(DIGITS, 16))),
        22 => ("routing_number", rng.string(DIGITS, 9)),
        23 => {
            // A classic GitHub token whose checksum is wrong.
            let body = rng.string(ALNUM, 30);
            (
                "GITHUB_TOKEN",
                format!("ghp_{body}{}", rng.string(ALNUM, 6)),
            )
        }
        24 => ("STRIPE_SECRET_KEY", format!("sk_live_{}", "x".repeat(24))),
        25 => ("SLACK_BOT_TOKEN", "xoxb-your-bot-token-here".into()),
        26 => (
            "id",
            format!(
                "{}",
                rng.range(1_000_000_000_000_000_000, 1_999_999_999_999_999_999)
            ),
        ),
        _ => (
            "version",
            format!(
                "{}.{}.{}",
                rng.range(0, 9),
                rng.range(0, 30),
                rng.range(0, 99)
            ),
        ),
    }
}

// ----------------------------------------------------------- containers

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn filler(rng: &mut Rng) -> String {
    let words = [
        "checkout", "session", "cart", "amount", "currency", "user", "status", "region", "item",
        "qty",
    ];
    (0..rng.range(2, 6))
        .map(|_| *rng.pick(&words))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Embed field/value pairs in one of the containers traffic carries.
pub fn contain(rng: &mut Rng, fields: &[(&str, String)]) -> (&'static str, Vec<u8>) {
    let kind = *rng.pick(&[
        "json",
        "form",
        "csv",
        "multipart",
        "log",
        "html",
        "yaml",
        "http",
    ]);
    let mut out = String::new();
    match kind {
        "json" => {
            out.push_str(&format!(
                "{{\"request_id\":\"{}\",\"ts\":{}",
                rng.string(HEX, 16),
                rng.range(1_600_000_000_000, 1_800_000_000_000)
            ));
            for (k, v) in fields {
                out.push_str(&format!(",{}:{}", json_str(k), json_str(v)));
            }
            out.push_str(&format!(
                ",\"note\":{},\"total\":{}.{:02}}}",
                json_str(&filler(rng)),
                rng.range(1, 999),
                rng.range(0, 99)
            ));
        }
        "form" => {
            let mut parts = vec![format!("session={}", rng.string(ALNUM, 20))];
            for (k, v) in fields {
                let enc: String = form_encode(v);
                parts.push(format!("{k}={enc}"));
            }
            parts.push(format!("qty={}", rng.range(1, 9)));
            out = parts.join("&");
        }
        "csv" => {
            out.push_str("id,name");
            for (k, _) in fields {
                out.push_str(&format!(",{k}"));
            }
            out.push_str(&format!(
                "\n{},customer{}",
                rng.range(1, 99999),
                rng.range(1, 999)
            ));
            for (_, v) in fields {
                out.push_str(&format!(",\"{}\"", v.replace('"', "\"\"")));
            }
            out.push('\n');
        }
        "multipart" => {
            let b = format!("----WebKitFormBoundary{}", rng.string(ALNUM, 16));
            for (k, v) in fields {
                out.push_str(&format!(
                    "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                ));
            }
            out.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n{}\r\n--{b}--\r\n", filler(rng)));
        }
        "log" => {
            for (k, v) in fields {
                out.push_str(&format!(
                    "2026-03-{:02}T{:02}:{:02}:{:02}.{:03}Z INFO  [worker-{}] processing {} {k}={v} latency_ms={}\n",
                    rng.range(1, 28),
                    rng.range(0, 23),
                    rng.range(0, 59),
                    rng.range(0, 59),
                    rng.range(0, 999),
                    rng.range(1, 16),
                    filler(rng),
                    rng.range(1, 900)
                ));
            }
        }
        "html" => {
            out.push_str("<html><body><form method=\"post\">");
            for (k, v) in fields {
                out.push_str(&format!(
                    "<label>{k}</label><input name=\"{k}\" value=\"{}\"/>",
                    v.replace('"', "&quot;")
                ));
            }
            out.push_str(&format!("<p>{}</p></form></body></html>", filler(rng)));
        }
        "yaml" => {
            out.push_str("apiVersion: v1\nkind: Secret\ndata:\n");
            for (k, v) in fields {
                if v.contains('\n') {
                    out.push_str(&format!("  {k}: |\n"));
                    for line in v.lines() {
                        out.push_str(&format!("    {line}\n"));
                    }
                } else {
                    out.push_str(&format!("  {k}: {v}\n"));
                }
            }
        }
        _ => {
            let body: String = fields.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
            out.push_str(&format!(
                "POST /api/v{}/{} HTTP/1.1\r\nHost: api.example.test\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                rng.range(1, 3),
                rng.pick(&["orders", "users", "upload"]),
                body.len()
            ));
        }
    }
    (kind, out.into_bytes())
}

fn form_encode(v: &str) -> String {
    v.split(' ')
        .map(|p| utf8_percent_encode(p, NON_ALPHANUMERIC).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

// ------------------------------------------------------------- encodings

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// JSON-escape everything a serializer may escape: digits and letters as
/// `\u00XX` at random, `/` as `\/`.
fn json_escape_heavy(rng: &mut Rng, v: &str) -> String {
    let mut s = String::new();
    for c in v.chars() {
        match c {
            '/' => s.push_str("\\/"),
            '\n' => s.push_str("\\n"),
            '"' => s.push_str("\\\""),
            c if c.is_ascii_alphanumeric() && rng.chance(50) => {
                s.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => s.push(c),
        }
    }
    s
}

/// Wrap a document in an encoding; returns the encoding's name.
pub fn encode(rng: &mut Rng, doc: Vec<u8>, values: &[Value]) -> (&'static str, Vec<u8>) {
    match rng.range(0, 9) {
        0..=2 => ("plain", doc),
        3 => {
            let b = base64::engine::general_purpose::STANDARD.encode(&doc);
            ("base64", format!("{{\"payload\":\"{b}\"}}").into_bytes())
        }
        4 => (
            "gzip+base64",
            format!(
                "data={}",
                base64::engine::general_purpose::STANDARD.encode(gzip(&doc))
            )
            .into_bytes(),
        ),
        5 => {
            // The values themselves percent-encoded in a query string.
            let q: Vec<String> = values
                .iter()
                .map(|v| {
                    format!(
                        "{}={}",
                        v.field,
                        utf8_percent_encode(&v.text, NON_ALPHANUMERIC)
                    )
                })
                .collect();
            (
                "url",
                format!(
                    "GET /callback?{}&state={} HTTP/1.1\r\nHost: app.example.test\r\n\r\n",
                    q.join("&"),
                    rng.string(ALNUM, 12)
                )
                .into_bytes(),
            )
        }
        6 => {
            let fields: Vec<String> = values
                .iter()
                .map(|v| format!("\"{}\":\"{}\"", v.field, json_escape_heavy(rng, &v.text)))
                .collect();
            (
                "json-escaped",
                format!("{{{},\"ok\":true}}", fields.join(",")).into_bytes(),
            )
        }
        7 => {
            // Chunked framing that splits the document at random points.
            let mut body = Vec::new();
            let mut i = 0;
            while i < doc.len() {
                let n = (rng.range(3, 40) as usize).min(doc.len() - i);
                body.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                body.extend_from_slice(&doc[i..i + n]);
                body.extend_from_slice(b"\r\n");
                i += n;
            }
            body.extend_from_slice(b"0\r\n\r\n");
            let mut m = b"POST /ingest HTTP/1.1\r\nHost: collector.example.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            m.extend(body);
            ("chunked", m)
        }
        _ => {
            let z = gzip(&doc);
            let mut m = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n", z.len()).into_bytes();
            m.extend(z);
            ("gzip-http", m)
        }
    }
}

/// The labelled corpus: `n_pos` documents with secrets, `n_neg` without.
pub fn generate(seed: u64, n_pos: usize, n_neg: usize) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n_pos + n_neg);
    for _ in 0..n_pos {
        let values = any_value(&mut rng);
        let mut fields: Vec<(&str, String)> =
            values.iter().map(|v| (v.field, v.text.clone())).collect();
        // Every positive document also carries a hard negative.
        let (nk, nv) = negative(&mut rng);
        fields.insert(rng.range(0, fields.len() as u64) as usize, (nk, nv));
        let (container, doc) = contain(&mut rng, &fields);
        let (encoding, data) = encode(&mut rng, doc, &values);
        out.push(Sample {
            label: format!("{}/{container}/{encoding}", values[values.len() - 1].sensor),
            data,
            expected: values.iter().map(|v| v.sensor).collect(),
        });
    }
    for _ in 0..n_neg {
        let fields: Vec<(&str, String)> =
            (0..rng.range(1, 3)).map(|_| negative(&mut rng)).collect();
        let (container, doc) = contain(&mut rng, &fields);
        let (encoding, data) = encode(&mut rng, doc, &[]);
        out.push(Sample {
            label: format!("negative/{container}/{encoding}"),
            data,
            expected: Vec::new(),
        });
    }
    out
}

/// Typical traffic without secrets, for throughput benchmarks: JSON API
/// bodies and access logs with ids, timestamps, amounts and prose.
pub fn typical_body(seed: u64, size: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(size + 512);
    while out.len() < size {
        let s = match rng.range(0, 2) {
            0 => format!(
                "{{\"id\":\"{}\",\"created\":{},\"customer\":{{\"name\":\"customer {}\",\"email\":\"user{}@example.test\"}},\"items\":[{{\"sku\":\"SKU-{}\",\"qty\":{},\"price\":{}.{:02}}}],\"status\":\"{}\",\"note\":\"{}\"}}\n",
                rng.string(HEX, 24),
                rng.range(1_600_000_000, 1_800_000_000),
                rng.range(1, 99999),
                rng.range(1, 99999),
                rng.range(1000, 9999),
                rng.range(1, 5),
                rng.range(1, 500),
                rng.range(0, 99),
                rng.pick(&["paid", "pending", "shipped"]),
                filler(&mut rng)
            ),
            1 => format!(
                "10.0.{}.{} - - [23/Nov/2026:12:{:02}:{:02} +0000] \"GET /api/v1/orders/{}?page={} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"\n",
                rng.range(0, 255),
                rng.range(0, 255),
                rng.range(0, 59),
                rng.range(0, 59),
                rng.range(1000, 999_999),
                rng.range(1, 20),
                rng.range(100, 99999)
            ),
            _ => format!("The quick brown fox jumps over the lazy dog; {} — lorem ipsum dolor sit amet.\n", filler(&mut rng)),
        };
        out.extend_from_slice(s.as_bytes());
    }
    out.truncate(size);
    out
}
