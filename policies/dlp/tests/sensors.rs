//! Each sensor on hand-written positives and the look-alikes that must not
//! fire; decoders and their bounds; custom sensors from configuration.

use std::io::Write;

use base64::Engine as _;
use podwarden_dlp::{Compression, Config, CustomSensor, FindingKind, Scanner, StreamOptions};

fn scanner() -> Scanner {
    Scanner::new(&Config::default()).unwrap()
}

fn sensors(data: &[u8]) -> Vec<String> {
    scanner().scan(data).into_iter().map(|f| f.sensor).collect()
}

fn gh_token(prefix: &str, body: &str) -> String {
    let sum = podwarden_dlp::validate::base62_crc6(crc32fast::hash(body.as_bytes()));
    format!("{prefix}{body}{}", String::from_utf8_lossy(&sum))
}

#[test]
fn positives_fire_with_masked_excerpts() {
    let gh = gh_token("ghp_", "Zq3Xk9LmN2pR7tV5wY8aB1cD4eF6gH");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "pay 4111-1111-1111-1111 now".into(),
            "credit_card",
            "4111-****-****-1111",
        ),
        (
            "amex 3782 822463 10005".into(),
            "credit_card",
            "3782 ****** *0005",
        ),
        (
            "mc 2221000000000009".into(),
            "credit_card",
            "2221********0009",
        ),
        ("ssn 536-22-5412".into(), "ssn", "***-**-5412"),
        (
            "IBAN GB82 WEST 1234 5698 7654 32".into(),
            "iban",
            "GB82 **** **** **** **54 32",
        ),
        (
            "id=AKIA2E0A8F3B244C9986".into(),
            "aws_access_key_id",
            "AKIA************9986",
        ),
        (format!("GITHUB_TOKEN={gh}"), "github_token", ""),
        (
            "xoxb-2093847561-1029384756102-Q7fKz2LmW9xRt4NpB8cYv1Hs".into(),
            "slack_token",
            "",
        ),
        (
            "https://hooks.slack.com/services/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".into(),
            "slack_webhook",
            "",
        ),
        (
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc".into(),
            "stripe_key",
            "sk_live_********************p7dc",
        ),
        (
            "key=AIzaSyA1b2C3d4E5f6G7h8I9j0K_lMnOpQrStUv".into(),
            "google_api_key",
            "",
        ),
    ];
    for (text, sensor, masked) in cases {
        let found = scanner().scan(text.as_bytes());
        assert_eq!(found.len(), 1, "{text}: {found:?}");
        assert_eq!(found[0].sensor, sensor, "{text}");
        if !masked.is_empty() {
            assert_eq!(found[0].masked, masked, "{text}");
        }
        let shown = format!(
            "{:?} {} {}",
            found[0],
            found[0],
            serde_json::to_string(&found[0]).unwrap()
        );
        let secret_core = &text[text.len() - 12..text.len() - 4];
        assert!(!shown.contains(secret_core), "{shown} leaks {secret_core}");
    }
}

#[test]
fn jwt_needs_json_header_with_alg_and_json_payload() {
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let good = format!(
        "Bearer {}.{}.{}",
        b(r#"{"alg":"HS256","typ":"JWT"}"#),
        b(r#"{"sub":"42"}"#),
        b("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(sensors(good.as_bytes()), ["jwt"]);
    let no_alg = format!(
        "Bearer {}.{}.{}",
        b(r#"{"typ":"JWT"}"#),
        b(r#"{"sub":"42"}"#),
        b("0123456789abcdef0123456789abcdef")
    );
    assert!(sensors(no_alg.as_bytes()).is_empty());
    let not_json = format!(
        "Bearer eyJhbGciOiJIUzI1NiJ.{}.{}",
        b("not json at all"),
        b("0123456789abcdef0123456789abcdef")
    );
    assert!(sensors(not_json.as_bytes()).is_empty());
}

#[test]
fn private_keys_need_key_material() {
    let mut der = vec![0x30, 0x82, 0x01, 0x00];
    der.extend((0..256u32).map(|i| (i * 7 + 3) as u8));
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    assert_eq!(sensors(pem.as_bytes()), ["private_key"]);
    // JSON-escaped newlines, as in a secret pasted into a JSON config.
    let escaped = pem.replace('\n', "\\n");
    assert_eq!(
        sensors(format!("{{\"key\":\"{escaped}\"}}").as_bytes()),
        ["private_key"]
    );
    for negative in [
        "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----".to_string(),
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAexample\n-----END RSA PRIVATE KEY-----"
            .to_string(),
        pem.replace("PRIVATE KEY", "PUBLIC KEY"),
        pem.replace("PRIVATE KEY", "CERTIFICATE"),
    ] {
        assert!(sensors(negative.as_bytes()).is_empty(), "{negative}");
    }
}

#[test]
fn look_alikes_do_not_fire() {
    for text in [
        "card 4111 1111 1111 1112",  // Luhn fails
        "card 4111 **** **** 1111",  // masked
        "pan ************1111",      // masked
        "order_id=4111111111111111", // an id that happens to pass Luhn
        "ts=1700000000000 ms",       // epoch milliseconds
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f786850e387550fdab836ed7d6dc881de23001b",
        "ssn 078-05-1120", // Woolworth sample
        "ssn 219-09-9999",
        "ssn 666-12-3456",
        "ssn 912-34-5678",
        "ssn 123-00-4567",
        "ssn 123-45-0000",
        "number 536225412", // 9 digits, no SSN context
        "AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "IBAN GB82 WEST 1234 5698 7654 33",         // mod-97 fails
        "ghp_Zq3Xk9LmN2pR7tV5wY8aB1cD4eF6gHaaaaaa", // checksum fails
        "sk_live_xxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "xoxb-your-token-here",
        "price 0.4111111111111111",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host",
    ] {
        assert!(
            sensors(text.as_bytes()).is_empty(),
            "fired on {text:?}: {:?}",
            scanner().scan(text.as_bytes())
        );
    }
}

#[test]
fn aws_secret_needs_context() {
    let secret = "Zq3Xk9LmN2pR7tV5wY8aB1cD4eF6gH/k+Jq0TzWr";
    assert_eq!(
        sensors(format!("aws_secret_access_key = {secret}").as_bytes()),
        ["aws_secret_key"]
    );
    assert_eq!(
        sensors(
            format!("{{\"AccessKeyId\":\"AKIA2E0A8F3B244C9986\",\"x\":\"{secret}\"}}").as_bytes()
        ),
        ["aws_access_key_id", "aws_secret_key"]
    );
    assert!(sensors(format!("nonce={secret}").as_bytes()).is_empty());
}

#[test]
fn decodes_layers() {
    let card = "card=4111 1111 1111 1111";
    let b64 = base64::engine::general_purpose::STANDARD.encode(card);
    let f = scanner().scan(format!("payload={b64}").as_bytes());
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].layers, ["base64"]);
    // The card starts 5 decoded bytes in: about 5 * 4/3 encoded bytes.
    assert_eq!(f[0].offset, 8 + 6);

    let url = "q=card%3D4111%201111%201111%201111";
    let f = scanner().scan(url.as_bytes());
    assert_eq!(
        (f[0].sensor.as_str(), f[0].layers.clone(), f[0].offset),
        ("credit_card", vec!["url"], 9)
    );

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(card.as_bytes()).unwrap();
    let wrapped = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    let f = scanner().scan(format!("{{\"blob\":\"{wrapped}\"}}").as_bytes());
    assert_eq!(f[0].layers, ["base64", "gzip"]);

    let json = r#"{"ssn":"\u0035\u0033\u0036-22-5412","u":"https:\/\/x"}"#;
    let f = scanner().scan(json.as_bytes());
    assert_eq!(f[0].sensor, "ssn");
    assert_eq!(f[0].layers, ["json"]);

    let chunked = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npan=411\r\n6\r\n1 1111\r\na\r\n 1111 1111\r\n0\r\n\r\n";
    let f = scanner().scan(chunked.as_bytes());
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].layers, ["chunked"]);
}

#[test]
fn decompression_bomb_is_a_finding_not_an_oom() {
    // 8 MiB of one byte: ~1000x, far past the 1 MiB decode limit.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&vec![0u8; 8 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    // base64-wrapped in a body…
    let wrapped = format!(
        "x={}",
        base64::engine::general_purpose::STANDARD.encode(&bomb)
    );
    let mut cfg = Config::default();
    cfg.limits.max_candidate = 64 << 10;
    let s = Scanner::new(&cfg).unwrap();
    let f = s.scan(wrapped.as_bytes());
    assert!(
        f.iter().any(|f| f.kind == FindingKind::DecodeLimit),
        "{f:?}"
    );
    // …and as a gzip-encoded stream.
    let mut st = scanner().stream_with(StreamOptions {
        chunked: false,
        content_encoding: Some(Compression::Gzip),
    });
    let mut found = Vec::new();
    for c in bomb.chunks(16 << 10) {
        found.extend(st.push(c));
        assert!(st.buffered() < 64 << 10);
    }
    found.extend(st.finish());
    assert_eq!(
        found
            .iter()
            .filter(|f| f.kind == FindingKind::DecodeLimit)
            .count(),
        1,
        "{found:?}"
    );
}

#[test]
fn gzip_and_chunked_streams_are_decoded() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"{\"iban\":\"DE89370400440532013000\"}")
        .unwrap();
    let z = gz.finish().unwrap();
    let mut framed = Vec::new();
    for c in z.chunks(7) {
        framed.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        framed.extend_from_slice(c);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    let mut st = scanner().stream_with(StreamOptions {
        chunked: true,
        content_encoding: Some(Compression::Gzip),
    });
    let mut found = Vec::new();
    for c in framed.chunks(5) {
        found.extend(st.push(c));
    }
    found.extend(st.finish());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].sensor.as_str(), found[0].offset), ("iban", 9));
}

#[test]
fn custom_sensors_with_validator_context_and_entropy() {
    let mut cfg = Config::default();
    cfg.custom_sensors.push(CustomSensor {
        name: "employee_id".into(),
        pattern: r"\bEMP-[0-9]{6}\b".into(),
        validator: None,
        context: vec!["employee".into()],
        context_window: 32,
        min_entropy: None,
    });
    cfg.custom_sensors.push(CustomSensor {
        name: "loyalty_card".into(),
        pattern: r"\b8[0-9]{15}\b".into(),
        validator: Some("luhn".into()),
        context: vec![],
        context_window: 64,
        min_entropy: Some(2.0),
    });
    let s = Scanner::new(&cfg).unwrap();
    let names = |t: &str| {
        s.scan(t.as_bytes())
            .into_iter()
            .map(|f| f.sensor)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("employee record EMP-123456"), ["employee_id"]);
    assert!(names("ticket EMP-123456").is_empty(), "no context word");
    assert_eq!(
        names("loyalty 8000000000000002"),
        Vec::<String>::new(),
        "entropy floor"
    );
    let valid = (0..10)
        .map(|d| format!("871234567890123{d}"))
        .find(|n| podwarden_dlp::validate::luhn(n.as_bytes()))
        .unwrap();
    assert_eq!(names(&format!("loyalty {valid}")), ["loyalty_card"]);
    let last = valid.as_bytes()[15] - b'0';
    let invalid = format!("{}{}", &valid[..15], (last + 1) % 10);
    assert!(names(&format!("loyalty {invalid}")).is_empty(), "luhn");

    let mut bad = Config::default();
    bad.custom_sensors.push(CustomSensor {
        name: "x".into(),
        pattern: "(".into(),
        validator: None,
        context: vec![],
        context_window: 64,
        min_entropy: None,
    });
    assert!(Scanner::new(&bad)
        .unwrap_err()
        .to_string()
        .contains("invalid pattern"));
    let mut bad = Config::default();
    bad.disabled_sensors.push("nope".into());
    assert!(Scanner::new(&bad).is_err());
}

#[test]
fn disabled_sensor_stays_quiet() {
    let mut cfg = Config::default();
    cfg.disabled_sensors.push("credit_card".into());
    let s = Scanner::new(&cfg).unwrap();
    assert!(s.scan(b"4111 1111 1111 1111").is_empty());
}
