//! `podwarden waf ...`: lint a SecLang rule set, and evaluate raw HTTP
//! requests against it offline (no network).

use anyhow::{Context, Result};
use podwarden_waf::crs::{load_crs, CrsOptions};
use podwarden_waf::{LoadErrors, RuleSet};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Load a rule set (a CRS directory, a directory of .conf files, or one file)
    /// and report every problem with file and line. Exit 1 on problems.
    Lint {
        /// CRS directory (rules/ + crs-setup.conf[.example]), rules directory, or file.
        dir: PathBuf,
    },
    /// Evaluate raw HTTP/1.1 requests; prints one JSON line per request.
    Eval {
        /// Rule set: CRS directory, rules directory, or file.
        #[arg(long)]
        rules: PathBuf,
        /// CRS paranoia level (sets blocking and detection paranoia).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
        paranoia: Option<u8>,
        /// CRS inbound anomaly score threshold.
        #[arg(long)]
        threshold: Option<u32>,
        /// Request files; `-` reads one request from stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
}

pub fn run(args: Args) -> Result<i32> {
    match args.command {
        Command::Lint { dir } => lint(&dir),
        Command::Eval {
            rules,
            paranoia,
            threshold,
            files,
        } => eval(&rules, paranoia, threshold, &files),
    }
}

/// A CRS directory loads with its setup file; anything else loads as plain SecLang.
fn load(path: &Path, opts: &CrsOptions) -> Result<RuleSet, LoadErrors> {
    if path.join("rules").is_dir()
        && (path.join("crs-setup.conf").is_file() || path.join("crs-setup.conf.example").is_file())
    {
        return load_crs(path, opts);
    }
    let mut l = podwarden_waf::parse::Loader::new();
    if path.is_dir() {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect(),
            Err(e) => {
                return Err(LoadErrors(vec![podwarden_waf::LoadError::new(
                    &path.display().to_string(),
                    0,
                    format!("cannot read: {e}"),
                )]))
            }
        };
        files.sort();
        for f in files {
            l.load_file(&f);
        }
    } else {
        l.load_file(path);
    }
    l.finish()
}

fn lint(dir: &Path) -> Result<i32> {
    match load(dir, &CrsOptions::default()) {
        Ok(rs) => {
            println!("ok: {} rules loaded from {}", rs.rule_count, dir.display());
            Ok(0)
        }
        Err(errs) => {
            for e in &errs.0 {
                println!("{e}");
            }
            eprintln!("{} problem(s)", errs.0.len());
            Ok(1)
        }
    }
}

fn eval(
    rules: &Path,
    paranoia: Option<u8>,
    threshold: Option<u32>,
    files: &[String],
) -> Result<i32> {
    let (lines, code) = eval_lines(rules, paranoia, threshold, files)?;
    for l in lines {
        println!("{l}");
    }
    Ok(code)
}

/// One JSON value per input; exit code 1 if any input was not a valid request.
fn eval_lines(
    rules: &Path,
    paranoia: Option<u8>,
    threshold: Option<u32>,
    files: &[String],
) -> Result<(Vec<serde_json::Value>, i32)> {
    let opts = CrsOptions {
        blocking_paranoia: paranoia,
        detection_paranoia: paranoia,
        inbound_threshold: threshold,
        ..Default::default()
    };
    let rs = load(rules, &opts).map_err(|e| anyhow::anyhow!("cannot load rules:\n{e}"))?;
    let mut code = 0;
    let mut lines = Vec::new();
    for f in files {
        let raw = if f == "-" {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .context("reading stdin")?;
            b
        } else {
            std::fs::read(f).with_context(|| format!("reading {f}"))?
        };
        let line = match podwarden_waf::http::parse_request(&raw) {
            Ok(req) => {
                let out = rs.evaluate(&req, None);
                let decision = if out.interruption.is_some() || out.would_block() {
                    "block"
                } else {
                    "allow"
                };
                serde_json::json!({
                    "file": f,
                    "matched": out.matched.iter().filter(|m| m.logged).map(|m| m.id).collect::<Vec<_>>(),
                    "inbound_anomaly_score": out.inbound_anomaly_score,
                    "decision": decision,
                    "interrupted_by": out.interruption.as_ref().map(|i| i.rule_id),
                })
            }
            Err(e) => {
                code = 1;
                serde_json::json!({ "file": f, "error": e.to_string(), "decision": "error" })
            }
        };
        lines.push(line);
    }
    Ok((lines, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("podwarden-waf-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn lint_reports_problems_with_exit_1_and_clean_sets_with_0() {
        let d = tmp("lint");
        std::fs::write(
            d.join("a.conf"),
            "SecRule ARGS \"@rx x\" \"id:1,phase:2,deny\"\n",
        )
        .unwrap();
        assert_eq!(lint(&d).unwrap(), 0);
        std::fs::write(
            d.join("b.conf"),
            "SecBogus On\nSecRule NOPE \"@rx x\" \"id:2\"\n",
        )
        .unwrap();
        assert_eq!(lint(&d).unwrap(), 1);
        match load(&d, &CrsOptions::default()) {
            Err(e) => {
                assert_eq!(e.0.len(), 2);
                assert!(e.0[0].to_string().contains("b.conf:1:"));
                assert!(e.0[1].to_string().contains("b.conf:2:"));
            }
            Ok(_) => panic!("b.conf must not load"),
        }
    }

    #[test]
    fn eval_prints_matches_score_and_decision() {
        let d = tmp("eval");
        std::fs::write(
            d.join("r.conf"),
            "SecRuleEngine On\nSecRule ARGS \"@rx evil\" \"id:7,phase:2,deny,setvar:tx.inbound_anomaly_score=5\"\n",
        )
        .unwrap();
        let bad = d.join("bad.http");
        std::fs::write(&bad, "GET /?q=evil HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let good = d.join("good.http");
        std::fs::write(&good, "GET /?q=fine HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let junk = d.join("junk.http");
        std::fs::write(&junk, "").unwrap();
        let files: Vec<String> = [&bad, &good, &junk]
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let (lines, code) = eval_lines(&d.join("r.conf"), None, None, &files).unwrap();
        assert_eq!(code, 1, "the empty file is not a request");
        assert_eq!(lines[0]["matched"], serde_json::json!([7]));
        assert_eq!(lines[0]["decision"], "block");
        assert_eq!(lines[0]["inbound_anomaly_score"], 5);
        assert_eq!(lines[1]["decision"], "allow");
        assert_eq!(lines[2]["decision"], "error");
    }
}
