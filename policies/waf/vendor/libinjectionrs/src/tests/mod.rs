pub mod test_folding;
pub mod differential_tests;
pub mod test_html5_files;
pub mod test_tokens_files;
/// podwarden: `is_sqli` gives `detect_sqli`'s verdict on benign values,
/// injections in every quote context, comments (the MySQL reparse) and
/// edge cases.
#[test]
fn is_sqli_agrees_with_detect_sqli() {
    let inputs: &[&[u8]] = &[
        b"",
        b"blue shoes",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        b"session=3f9a1c2e7b; theme=dark",
        b"1' OR '1'='1",
        b"1\" OR \"1\"=\"1",
        b"1 UNION SELECT username,password FROM users--",
        b"1' UNION SELECT username,password FROM users--",
        b"admin'--",
        b"1 /*! union*/ select 1",
        b"1;DROP TABLE users",
        b"' or 1=1#",
        b"It's a \"quoted\" phrase",
        b"SELECT",
        b"1e1",
        b"-1 or 1=1 -- -",
        b"\x00\xff'\"",
    ];
    let mut hits = 0;
    for &i in inputs {
        let full = crate::detect_sqli(i).is_injection();
        assert_eq!(crate::is_sqli(i), full, "{:?}", String::from_utf8_lossy(i));
        hits += full as usize;
    }
    // Both verdicts occur in the sample.
    assert!(hits > 0 && hits < inputs.len());
}
