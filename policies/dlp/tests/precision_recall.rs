//! Precision and recall of the built-in sensors on the generated corpus
//! (fixed seed, synthetic values). Prints a per-sensor table and asserts the
//! project's targets: precision >= 0.99 and recall >= 0.97 overall.

use std::collections::BTreeMap;

use podwarden_dlp::{corpus, Config, FindingKind, Scanner};

#[derive(Default, Clone, Copy)]
struct Score {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Score {
    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fn_) as f64
        }
    }
}

fn rows(m: &BTreeMap<String, Score>) -> impl Iterator<Item = (&str, &Score)> {
    m.iter().map(|(k, v)| (k.as_str(), v))
}

fn print_table<'a>(title: &str, rows: impl Iterator<Item = (&'a str, &'a Score)>) {
    println!(
        "\n{:<20} {:>6} {:>5} {:>5} {:>9} {:>7}",
        title, "tp", "fp", "fn", "precision", "recall"
    );
    for (name, sc) in rows {
        println!(
            "{:<20} {:>6} {:>5} {:>5} {:>9.4} {:>7.4}",
            name,
            sc.tp,
            sc.fp,
            sc.fn_,
            sc.precision(),
            sc.recall()
        );
    }
}

#[test]
fn corpus_precision_and_recall_meet_targets() {
    let samples = corpus::generate(0x05ee_dd10, 3000, 2000);
    let scanner = Scanner::new(&Config::default()).unwrap();
    let mut per: BTreeMap<String, Score> = BTreeMap::new();
    let mut per_encoding: BTreeMap<String, Score> = BTreeMap::new();
    let mut shown = 0;
    for s in &samples {
        let found = scanner.scan(&s.data);
        let mut exp: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &s.expected {
            *exp.entry(e).or_default() += 1;
        }
        let mut got: BTreeMap<&str, usize> = BTreeMap::new();
        for f in found.iter().filter(|f| f.kind == FindingKind::Sensitive) {
            *got.entry(f.sensor.as_str()).or_default() += 1;
        }
        let encoding = s.label.rsplit('/').next().unwrap_or("?").to_owned();
        let names: std::collections::BTreeSet<&str> =
            exp.keys().chain(got.keys()).copied().collect();
        for name in names {
            let (e, g) = (
                exp.get(name).copied().unwrap_or(0),
                got.get(name).copied().unwrap_or(0),
            );
            let tp = e.min(g);
            let sc = Score {
                tp,
                fp: g - tp,
                fn_: e - tp,
            };
            for (map, key) in [
                (&mut per, name.to_owned()),
                (&mut per_encoding, encoding.clone()),
            ] {
                let x = map.entry(key).or_default();
                x.tp += sc.tp;
                x.fp += sc.fp;
                x.fn_ += sc.fn_;
            }
            if (sc.fp > 0 || sc.fn_ > 0) && shown < 40 {
                shown += 1;
                println!(
                    "MISS {} sensor={name} expected={e} found={g} findings={found:?}",
                    s.label
                );
                println!(
                    "     data: {}",
                    String::from_utf8_lossy(&s.data[..s.data.len().min(400)]).replace('\n', "\\n")
                );
            }
        }
    }
    let mut total = Score::default();
    for sc in per.values() {
        total.tp += sc.tp;
        total.fp += sc.fp;
        total.fn_ += sc.fn_;
    }
    print_table("sensor", rows(&per).chain([("OVERALL", &total)]));
    print_table("encoding", rows(&per_encoding));
    assert!(
        total.tp > 2500,
        "corpus too small to mean anything: {}",
        total.tp
    );
    assert!(
        total.precision() >= 0.99,
        "precision {:.4} < 0.99",
        total.precision()
    );
    assert!(
        total.recall() >= 0.97,
        "recall {:.4} < 0.97",
        total.recall()
    );
}
