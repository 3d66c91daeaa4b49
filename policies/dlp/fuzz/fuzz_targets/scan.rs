//! Whole-buffer scan of arbitrary bytes: every sensor and decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_dlp::{Config, Scanner};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Scanner::new(&Config::default()) {
        let _ = s.scan(data);
    }
});
