//! Body processors and the raw HTTP parser never panic on arbitrary bytes.

use podwarden_waf::body::{json, multipart, urlencoded, xml};
use proptest::prelude::*;

proptest! {
    #[test]
    fn body_processors_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), ct in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = urlencoded::parse(&body, b'&');
        let _ = json::parse(&body, 16);
        let _ = xml::parse(&body);
        let _ = multipart::parse(&body, &ct);
        let _ = podwarden_waf::http::parse_request(&body);
    }

    #[test]
    fn multipart_shaped_bodies_never_panic(parts in prop::collection::vec("[-a-zA-Z0-9:;=\"\r\n ]{0,40}", 0..8)) {
        let body = format!("--B\r\n{}\r\n--B--\r\n", parts.join("\r\n--B\r\n"));
        let _ = multipart::parse(body.as_bytes(), b"multipart/form-data; boundary=B");
    }

    #[test]
    fn transformations_never_panic(v in prop::collection::vec(any::<u8>(), 0..256)) {
        use podwarden_waf::transform::{apply, Transform::*};
        for t in [Base64Decode, Base64DecodeExt, CmdLine, CompressWhitespace, CssDecode, EscapeSeqDecode, HexDecode,
                  HtmlEntityDecode, JsDecode, NormalizePath, NormalizePathWin, RemoveComments, RemoveCommentsChar,
                  ReplaceComments, SqlHexDecode, UrlDecode, UrlDecodeUni, Utf8ToUnicode, Trim, Length, Sha1] {
            let _ = apply(t, &v);
        }
    }
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(json::parse(deep.as_bytes(), 512).is_err());
}

// ---------------------------------------------------------------------------
// Structured inputs, as the cargo-fuzz targets in policies/waf/fuzz explore
// them on nightly: each processor must not only survive but keep its
// contract on well-formed input.

/// Any JSON value (bounded size), with strings that need escaping.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-z\"\\\\<>' \u{e9}\u{1f600}]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{1,5}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn leaves(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => a.iter().map(leaves).sum(),
        serde_json::Value::Object(m) => m.values().map(leaves).sum(),
        _ => 1,
    }
}

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `<tag a="v">text<child/>...</tag>` trees with their expected text/attributes.
#[derive(Debug, Clone)]
struct El {
    name: String,
    attr: Option<String>,
    text: String,
    kids: Vec<El>,
}

fn element() -> impl Strategy<Value = El> {
    let leaf = (
        "[a-z]{1,6}",
        prop::option::of("[a-z0-9 ]{0,6}"),
        "[a-z0-9 ]{0,8}",
    )
        .prop_map(|(name, attr, text)| El {
            name,
            attr,
            text,
            kids: vec![],
        });
    leaf.prop_recursive(5, 32, 4, |inner| {
        (
            "[a-z]{1,6}",
            prop::option::of("[a-z0-9 ]{0,6}"),
            "[a-z0-9 ]{0,8}",
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(name, attr, text, kids)| El {
                name,
                attr,
                text,
                kids,
            })
    })
}

impl El {
    fn xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        if let Some(a) = &self.attr {
            out.push_str(&format!(" a=\"{a}\""));
        }
        out.push('>');
        out.push_str(&self.text);
        for k in &self.kids {
            k.xml(out);
        }
        out.push_str(&format!("</{}>", self.name));
    }
    fn text(&self, out: &mut String) {
        out.push_str(&self.text);
        for k in &self.kids {
            k.text(out);
        }
    }
    fn attrs(&self, out: &mut Vec<Vec<u8>>) {
        if let Some(a) = &self.attr {
            out.push(a.as_bytes().to_vec());
        }
        for k in &self.kids {
            k.attrs(out);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn json_flattens_every_leaf(v in json_value()) {
        let body = serde_json::to_vec(&v).unwrap();
        match json::parse(&body, 64) {
            Ok(pairs) => {
                prop_assert_eq!(pairs.len(), leaves(&v));
                for (name, _) in &pairs {
                    prop_assert!(name == "json" || name.starts_with("json."), "{}", name);
                }
            }
            Err(e) => prop_assert!(false, "valid JSON rejected: {e}"),
        }
        // A depth limit below the document's depth is an error, not a truncation.
        let d = depth(&v);
        if d >= 2 {
            prop_assert!(json::parse(&body, d - 2).is_err());
        }
    }

    #[test]
    fn json_mutations_never_panic(v in json_value(), cut in any::<prop::sample::Index>(), b in any::<u8>()) {
        let mut body = serde_json::to_vec(&v).unwrap();
        let i = cut.index(body.len().max(1)).min(body.len().saturating_sub(1));
        if !body.is_empty() {
            body[i] = b;
        }
        let _ = json::parse(&body, 16);
        let _ = json::parse(&body[..i], 16);
    }

    #[test]
    fn xml_trees_give_their_text_and_attributes(root in element()) {
        let mut doc = String::from("<?xml version=\"1.0\"?>");
        root.xml(&mut doc);
        let parsed = xml::parse(doc.as_bytes());
        prop_assert!(parsed.is_ok(), "{doc}: {:?}", parsed.err());
        let parsed = parsed.unwrap();
        let (mut text, mut attrs) = (String::new(), Vec::new());
        root.text(&mut text);
        root.attrs(&mut attrs);
        prop_assert_eq!(String::from_utf8_lossy(&parsed.text), text);
        prop_assert_eq!(parsed.attrs, attrs);
        // Cutting the document anywhere inside the root makes it an error.
        let start = doc.find('<').unwrap() + "<?xml version=\"1.0\"?>".len() + 1;
        if doc.len() > start + 1 {
            prop_assert!(xml::parse(&doc.as_bytes()[..doc.len() - 1]).is_err());
        }
    }

    #[test]
    fn deep_xml_never_panics(depth in 1usize..3000, close in any::<bool>()) {
        let mut doc = "<a>".repeat(depth);
        if close {
            doc.push_str(&"</a>".repeat(depth));
        }
        let r = xml::parse(doc.as_bytes());
        prop_assert_eq!(r.is_ok(), close);
    }

    #[test]
    fn urlencoded_pairs_match_their_input(
        pairs in prop::collection::vec(("[a-zA-Z0-9_]{1,8}", "[a-zA-Z0-9 !*()'~.-]{0,12}"), 0..12),
    ) {
        fn enc(s: &str) -> String {
            s.bytes().map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else if b == b' ' { "+".into() } else { format!("%{b:02X}") }).collect()
        }
        let q = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&");
        let (got, invalid) = urlencoded::parse(q.as_bytes(), b'&');
        prop_assert!(!invalid);
        let want: Vec<(String, Vec<u8>)> = pairs.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn multipart_fields_and_files_round_trip(
        fields in prop::collection::vec(("[a-z]{1,8}", "[a-zA-Z0-9 ]{0,20}"), 0..5),
        files in prop::collection::vec(("[a-z]{1,8}", "[a-z]{1,8}\\.txt", prop::collection::vec(any::<u8>(), 0..64)), 0..3),
        boundary in "[A-Za-z0-9'+_.-]{1,40}",
    ) {
        let mut body = Vec::new();
        for (n, v) in &fields {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n").as_bytes());
        }
        for (n, f, data) in &files {
            body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{n}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        // A file's bytes may contain the delimiter by chance: skip those cases.
        let delim = format!("\r\n--{boundary}");
        prop_assume!(!files.iter().any(|(_, _, d)| d.windows(delim.len()).any(|w| w == delim.as_bytes()) || d.windows(boundary.len() + 2).any(|w| w.starts_with(b"--") && &w[2..] == boundary.as_bytes())));
        let parsed = multipart::parse(&body, ct.as_bytes());
        prop_assert!(parsed.is_ok(), "{:?}", parsed.as_ref().err().map(|e| &e.0));
        let p = parsed.unwrap();
        prop_assert!(!p.flags.strict_error(), "{:?}", p.flags);
        for (n, v) in &fields {
            prop_assert!(p.args.iter().any(|(k, x)| k == n && x == v.as_bytes()), "field {} missing", n);
        }
        prop_assert_eq!(p.files.len(), files.len());
        for ((n, f, data), (pn, pf, size)) in files.iter().zip(&p.files) {
            prop_assert_eq!(n, pn);
            prop_assert_eq!(f.as_bytes(), &pf[..]);
            prop_assert_eq!(*size, data.len());
        }
    }

    #[test]
    fn multipart_hostile_shapes_never_panic(
        boundary in "[ -~]{0,80}",
        lines in prop::collection::vec(prop_oneof![
            Just("--B".to_string()), Just("--B--".to_string()), Just("".to_string()),
            Just("Content-Disposition: form-data; name=\"a\"; filename=\"x\"".to_string()),
            Just(" folded".to_string()), Just("\tfolded".to_string()),
            "[ -~]{0,40}",
        ], 0..24),
        lf_only in any::<bool>(),
    ) {
        let eol = if lf_only { "\n" } else { "\r\n" };
        let body = lines.join(eol);
        let _ = multipart::parse(body.as_bytes(), format!("multipart/form-data; boundary={boundary}").as_bytes());
        let _ = multipart::parse(body.as_bytes(), b"multipart/form-data; boundary=B");
        let _ = multipart::parse(body.as_bytes(), b"multipart/form-data; boundary=\"B\"");
    }
}
