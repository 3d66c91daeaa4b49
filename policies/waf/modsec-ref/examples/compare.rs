//! Shows both engines' logged rules for one CRS regression stage, with
//! libmodsecurity's messages: `cargo run -p podwarden-waf-modsec-ref
//! --example compare -- 'REQUEST-920-PROTOCOL-ENFORCEMENT/920120.yaml#1/0'`.

use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf_modsec_ref::{ftw, ModSec};

fn main() -> Result<(), String> {
    let keys: Vec<String> = std::env::args().skip(1).collect();
    if keys.is_empty() {
        return Err("usage: compare FILE#TEST/STAGE...".into());
    }
    let dir = ftw::crs_dir().ok_or("CRS not found")?;
    let opts = CrsOptions {
        extra_before_rules: Some(ftw::TEST_CONFIG.into()),
        ..Default::default()
    };
    let theirs = ModSec::load_crs(&dir, &opts).map_err(|e| e.to_string())?;
    let ours = load_crs(&dir, &opts).map_err(|e| e.to_string())?;
    let stages = ftw::stages(&dir.join("tests/regression/tests"))?;
    for key in keys {
        let st = stages
            .iter()
            .find(|s| s.key() == key)
            .ok_or("no such stage")?;
        println!("== {key}");
        let req = ftw::build_request(&st.input)?;
        let resp = ftw::backend_response(&req);
        println!(
            "{} {} {:?}",
            req.method,
            req.uri,
            req.headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
        );
        println!(
            "body: {:?}",
            String::from_utf8_lossy(&req.body[..req.body.len().min(300)])
        );
        let o = ours.evaluate(&req, Some(&resp));
        let (t, msgs) = theirs.evaluate_verbose(&req, Some(&resp));
        println!(
            "podwarden:      {:?} score {}",
            o.logged_ids(),
            o.inbound_anomaly_score
        );
        println!(
            "libmodsecurity: {:?} score {}",
            t.logged_ids, t.inbound_anomaly_score
        );
        for m in msgs {
            let short: String = m.chars().take(700).collect();
            println!("  {short}");
        }
    }
    Ok(())
}
