//! Multipart bodies: the first line is the Content-Type, the rest the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&c| c == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"multipart/form-data; boundary=B"[..], data),
    };
    let _ = podwarden_waf::body::multipart::parse(body, ct);
});
