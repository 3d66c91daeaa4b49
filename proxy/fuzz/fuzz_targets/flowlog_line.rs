//! One flow-log line as read back from disk (possibly truncated or
//! corrupted): a record or an error, never a panic; a record re-encodes to a
//! line that decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_proxy::flowlog::format::{decode, encode};

fuzz_target!(|bytes: &[u8]| {
    if let Ok(rec) = decode(bytes) {
        let line = encode(&rec).expect("a decoded record encodes");
        let again =
            decode(line.strip_suffix(b"\n").unwrap_or(&line)).expect("our own line decodes");
        assert_eq!(again, rec);
    }
});
