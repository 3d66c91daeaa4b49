//! The SecLang loader: any text gives a rule set or errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = podwarden_waf::load_str(text, "fuzz.conf", std::path::Path::new("/nonexistent"));
    }
});
