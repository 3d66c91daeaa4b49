//! The full CRS v4 (setup + rules) must load without a single error.

use std::path::PathBuf;

pub fn crs_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/crs/v4.28.0");
    if d.join("rules").is_dir() {
        Some(d)
    } else {
        println!("skipped: CRS not found at {}", d.display());
        None
    }
}

#[test]
fn full_crs_loads() {
    let Some(dir) = crs_dir() else { return };
    let mut l = podwarden_waf::parse::Loader::new();
    l.load_file(&dir.join("crs-setup.conf.example"));
    let mut files: Vec<_> = std::fs::read_dir(dir.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    for f in files {
        l.load_file(&f);
    }
    let rs = match l.finish() {
        Ok(rs) => rs,
        Err(e) => panic!("{} errors:\n{e}", e.0.len()),
    };
    assert!(rs.rule_count > 600, "only {} rules", rs.rule_count);
}

#[test]
fn reports_regex_engines() {
    use podwarden_waf::model::Item;
    use podwarden_waf::operator::OpKind;
    let Some(dir) = crs_dir() else { return };
    let rs = podwarden_waf::crs::load_crs(&dir, &Default::default()).unwrap();
    let (mut fast, mut fancy) = (0, 0);
    for p in &rs.phases {
        for it in &p.items {
            let Item::Rule(r) = it else { continue };
            for l in &r.links {
                if let OpKind::Rx(re) = &l.operator.kind {
                    if re.is_fancy() {
                        fancy += 1;
                        println!("fancy-regex: rule {}", r.id);
                    } else {
                        fast += 1;
                    }
                }
            }
        }
    }
    println!("@rx: {fast} on the regex crate, {fancy} on fancy-regex");
    assert!(fast > 250);
}
