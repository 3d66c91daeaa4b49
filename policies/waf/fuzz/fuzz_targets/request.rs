//! Rules and a request together: the input up to the first NUL is SecLang,
//! the rest a raw HTTP/1.1 request. Whatever loads must evaluate any request
//! without panicking (setvar arithmetic, macros, chains, ctl, skips).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(split) = data.iter().position(|&c| c == 0) else {
        return;
    };
    let Ok(rules) = std::str::from_utf8(&data[..split]) else {
        return;
    };
    let Ok(rs) = podwarden_waf::load_str(rules, "fuzz.conf", std::path::Path::new("/nonexistent"))
    else {
        return;
    };
    if let Ok(req) = podwarden_waf::http::parse_request(&data[split + 1..]) {
        let _ = rs.evaluate(&req, None);
    }
});
