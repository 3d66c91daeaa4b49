//! The check for ambiguous HTTP/1 request heads (CL+TE, duplicate CL, bad
//! header bytes) on any head: an answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_proxy::http::headers::check_raw_head;

fuzz_target!(|bytes: &[u8]| {
    let _ = check_raw_head(bytes);
});
