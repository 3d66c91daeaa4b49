//! Properties: scanning never panics on arbitrary bytes or chunkings, and a
//! stream's findings are the same whatever the chunking (split invariance),
//! equal to scanning the whole buffer at once.

use std::sync::OnceLock;

use podwarden_dlp::{corpus, Compression, Config, Finding, Scanner, StreamOptions};
use proptest::prelude::*;

fn scanner() -> &'static Scanner {
    static S: OnceLock<Scanner> = OnceLock::new();
    S.get_or_init(|| Scanner::new(&Config::default()).unwrap())
}

fn samples() -> &'static Vec<corpus::Sample> {
    static C: OnceLock<Vec<corpus::Sample>> = OnceLock::new();
    C.get_or_init(|| corpus::generate(42, 300, 100))
}

fn key(f: &Finding) -> (u64, u64, String, String) {
    (f.offset, f.len, f.sensor.clone(), f.masked.clone())
}

fn streamed(data: &[u8], cuts: &[usize]) -> Vec<(u64, u64, String, String)> {
    let mut s = scanner().stream();
    let mut out = Vec::new();
    let mut prev = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    for c in cuts {
        out.extend(s.push(&data[prev..c]));
        prev = c;
    }
    out.extend(s.push(&data[prev..]));
    out.extend(s.finish());
    let mut k: Vec<_> = out.iter().map(key).collect();
    k.sort();
    k
}

fn whole(data: &[u8]) -> Vec<(u64, u64, String, String)> {
    let mut k: Vec<_> = scanner().scan(data).iter().map(key).collect();
    k.sort();
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..4096),
                                       cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let _ = scanner().scan(&data);
        let _ = streamed(&data, &cuts);
        for opts in [StreamOptions { chunked: true, content_encoding: None },
                     StreamOptions { chunked: true, content_encoding: Some(Compression::Gzip) },
                     StreamOptions { chunked: false, content_encoding: Some(Compression::Deflate) }] {
            let mut s = scanner().stream_with(opts);
            for c in data.chunks(97) {
                let _ = s.push(c);
            }
            let _ = s.finish();
        }
    }

    #[test]
    fn never_panics_on_secret_shaped_noise(parts in proptest::collection::vec(
        prop_oneof![
            Just("AKIA".to_string()), Just("ghp_".to_string()), Just("eyJ".to_string()), Just("%2".to_string()),
            Just("\\u00".to_string()), Just("-----BEGIN RSA PRIVATE KEY-----\n".to_string()), Just("HTTP/1.1 ".to_string()),
            Just("Transfer-Encoding: chunked\r\n\r\n".to_string()), Just("xoxb-".to_string()), Just("4111".to_string()),
            "[0-9 +-]{0,24}", "[A-Za-z0-9+/=_-]{0,60}", "[\\x00-\\x7f]{0,16}",
        ], 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..8)) {
        let data = parts.concat().into_bytes();
        prop_assert_eq!(streamed(&data, &cuts), whole(&data));
    }

    #[test]
    fn findings_do_not_depend_on_chunking(idx in 0usize..400, cuts in proptest::collection::vec(any::<usize>(), 0..12)) {
        let data = &samples()[idx % samples().len()].data;
        prop_assert_eq!(streamed(data, &cuts), whole(data));
    }
}

#[test]
fn byte_at_a_time_equals_whole() {
    for s in samples().iter().step_by(7) {
        let cuts: Vec<usize> = (1..s.data.len()).collect();
        assert_eq!(streamed(&s.data, &cuts), whole(&s.data), "{}", s.label);
    }
}

#[test]
fn long_stream_keeps_memory_bounded_and_offsets_right() {
    // 8 MiB of typical traffic with a card at a known far offset.
    let mut s = scanner().stream();
    let filler = corpus::typical_body(7, 64 << 10);
    let mut found = Vec::new();
    for _ in 0..128 {
        found.extend(s.push(&filler));
        // The carry-over is the context window, not the stream.
        assert!(s.buffered() <= 20 << 10, "buffered {}", s.buffered());
    }
    found.extend(s.push(b" pan=5555 5555 5555 4444 "));
    found.extend(s.finish());
    let cards: Vec<_> = found.iter().filter(|f| f.sensor == "credit_card").collect();
    assert_eq!(cards.len(), 1, "{found:?}");
    assert_eq!(cards[0].offset, 128 * (64 << 10) + 5);
}

#[test]
fn every_corpus_sample_is_split_invariant() {
    let mut rng = corpus::Rng::new(9);
    let all = corpus::generate(1234, 1500, 500);
    for s in &all {
        let expect = whole(&s.data);
        for _ in 0..3 {
            let step = rng.range(1, 300) as usize;
            let cuts: Vec<usize> = (step..s.data.len()).step_by(step).collect();
            assert_eq!(streamed(&s.data, &cuts), expect, "{} step {step}", s.label);
        }
    }
}
