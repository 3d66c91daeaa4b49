//! Streaming with framing decoders, split by the first byte; the findings of
//! a plain stream must equal the whole-buffer scan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podwarden_dlp::{Compression, Config, Scanner, StreamOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let Ok(s) = Scanner::new(&Config::default()) else { return };
    let step = usize::from(step).max(1);
    let key = |f: &podwarden_dlp::Finding| (f.offset, f.len, f.sensor.clone(), f.masked.clone());
    let mut st = s.stream();
    let mut got = Vec::new();
    for c in rest.chunks(step) {
        got.extend(st.push(c));
    }
    got.extend(st.finish());
    let mut a: Vec<_> = got.iter().map(key).collect();
    let mut b: Vec<_> = s.scan(rest).iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    for enc in [Some(Compression::Gzip), Some(Compression::Deflate), None] {
        let mut st = s.stream_with(StreamOptions { chunked: step % 2 == 0, content_encoding: enc });
        for c in rest.chunks(step) {
            let _ = st.push(c);
        }
        let _ = st.finish();
    }
});
