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
