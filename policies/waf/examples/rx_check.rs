//! Checks how a CRS `@rx` compiles and whether it matches: a tuning aid.
//! Usage: cargo run --example rx_check -- PATTERN INPUT
fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 3 {
        eprintln!("usage: rx_check PATTERN INPUT");
        std::process::exit(2);
    }
    match podwarden_waf::regex_compat::CompiledRegex::new(&a[1]) {
        Ok(r) => println!(
            "fancy={} match={}",
            r.is_fancy(),
            r.is_match(a[2].as_bytes())
        ),
        Err(e) => println!("error: {e}"),
    }
}
