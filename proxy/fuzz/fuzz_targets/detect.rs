//! Protocol detection on a client's first bytes, fed whole and in every
//! prefix the way reads arrive: never a panic, and once a prefix is decided
//! the decision is the one the whole buffer gets as far as the kind goes
//! (more bytes never turn HTTP into TLS).
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_proxy::detect::{detect, head_end, Detected, Progress};

fn kind(d: &Detected) -> u8 {
    match d {
        Detected::Http1 => 1,
        Detected::Http2 => 2,
        Detected::Tls(_) => 3,
        Detected::Opaque => 4,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let whole = detect(bytes);
    let _ = head_end(bytes);
    let step = (bytes.len() / 64).max(1);
    let mut n = 0;
    while n < bytes.len() {
        if let Progress::Done(d) = detect(&bytes[..n]) {
            if let Progress::Done(w) = &whole {
                assert_eq!(kind(&d), kind(w), "prefix of {n} bytes decided differently");
            }
            break;
        }
        n += step;
    }
});
