//! JSON bodies, flattened with a small and a large depth limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podwarden_waf::body::json::parse(data, 8);
    let _ = podwarden_waf::body::json::parse(data, 10_000);
});
