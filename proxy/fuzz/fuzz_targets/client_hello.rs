//! The TLS ClientHello parser (SNI and ALPN, fragmented records): any bytes
//! give a hello or an error, never a panic; a complete hello stays the same
//! with bytes after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_proxy::tls::parse_client_hello;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(hello) = parse_client_hello(bytes) {
        let mut more = bytes.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x01X");
        assert_eq!(parse_client_hello(&more).ok(), Some(hello));
    }
});
