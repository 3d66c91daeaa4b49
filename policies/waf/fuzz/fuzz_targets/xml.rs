//! XML bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = podwarden_waf::body::xml::parse(data);
});
