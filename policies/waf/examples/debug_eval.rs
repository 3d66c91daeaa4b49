//! Prints every rule (logged or not) a raw request file matched: a tuning aid.
//! Usage: cargo run --example debug_eval -- CRS_DIR REQUEST_FILE [PARANOIA]

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: debug_eval CRS_DIR REQUEST_FILE [PARANOIA]");
        std::process::exit(2);
    }
    let pl = a.get(3).and_then(|p| p.parse().ok());
    let opts = podwarden_waf::crs::CrsOptions {
        blocking_paranoia: pl,
        ..Default::default()
    };
    let rs = match podwarden_waf::crs::load_crs(std::path::Path::new(&a[1]), &opts) {
        Ok(rs) => rs,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let raw = std::fs::read(&a[2]).unwrap_or_default();
    match podwarden_waf::http::parse_request(&raw) {
        Ok(req) => {
            let out = rs.evaluate(&req, None);
            for m in &out.matched {
                println!(
                    "{} phase {} logged {} {:?} {}",
                    m.id,
                    m.phase,
                    m.logged,
                    m.disruptive,
                    m.msg.as_deref().unwrap_or("")
                );
            }
            println!(
                "score {} interruption {:?}",
                out.inbound_anomaly_score, out.interruption
            );
        }
        Err(e) => eprintln!("{e}"),
    }
}
