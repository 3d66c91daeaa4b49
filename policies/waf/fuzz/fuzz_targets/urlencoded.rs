//! Query strings and urlencoded bodies, with `&` and `;` separators.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podwarden_waf::body::urlencoded::parse(data, b'&');
    let _ = podwarden_waf::body::urlencoded::parse(data, b';');
});
