//! `podwarden flows export`: recorded flow records of a time range, from a
//! flow-log directory or a proxy's admin API, as JSON lines (the input of
//! `baseline learn`, `policy replay` and `baseline status`).
//! Also `baseline status` (learning coverage), which reads the same input.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use podwarden_learner::coverage::{Coverage, CoverageConfig};
use podwarden_policy::FlowRecord;
use podwarden_proxy::flowlog::{self, reader, TimeRange};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Export recorded flows of a time range as JSON lines.
    Export {
        /// A flow-log directory (the proxy's --flow-log-dir, or one
        /// workload's directory in it), a segment, or a JSON-lines file.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        dir: Option<PathBuf>,
        /// A proxy's admin API, e.g. http://127.0.0.1:15000 (GET /flowlog).
        #[arg(long)]
        admin: Option<String>,
        /// Start of the range: unix ms, RFC 3339, or a duration ago (30d, 2h).
        #[arg(long)]
        since: Option<String>,
        /// End of the range, as --since.
        #[arg(long)]
        until: Option<String>,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `--since` / `--until` into a range (durations count back from now).
pub fn time_range(since: Option<&str>, until: Option<&str>) -> Result<TimeRange> {
    let now = now_ms();
    let parse = |s: Option<&str>, what: &str| -> Result<Option<u64>> {
        s.map(|s| flowlog::parse_time(s, now).map_err(|e| anyhow::anyhow!("--{what}: {e}")))
            .transpose()
    };
    let r = TimeRange {
        since: parse(since, "since")?,
        until: parse(until, "until")?,
    };
    if let (Some(s), Some(u)) = (r.since, r.until) {
        if s > u {
            bail!("--since is after --until");
        }
    }
    Ok(r)
}

/// Calls `f` for each record in `path` within `range`; warns on stderr
/// about damaged lines and segments (skipped, never fatal).
pub fn read_flows(
    path: &std::path::Path,
    range: TimeRange,
    f: impl FnMut(FlowRecord),
) -> Result<reader::ReadReport> {
    let rep = reader::for_each(path, range, f)?;
    if rep.bad_lines > 0 || rep.bad_files > 0 {
        eprintln!(
            "podwarden: warning: {}: skipped {} damaged line(s) and {} unreadable file(s)",
            path.display(),
            rep.bad_lines,
            rep.bad_files
        );
    }
    Ok(rep)
}

pub fn run(args: Args) -> Result<i32> {
    match args.command {
        Command::Export {
            dir,
            admin,
            since,
            until,
            output,
        } => {
            let mut out: Box<dyn Write> = match &output {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("{}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut n = 0u64;
            if let Some(url) = admin {
                let mut q = Vec::new();
                if let Some(s) = &since {
                    q.push(format!(
                        "since={}",
                        s.replace(':', "%3A").replace('+', "%2B")
                    ));
                }
                if let Some(u) = &until {
                    q.push(format!(
                        "until={}",
                        u.replace(':', "%3A").replace('+', "%2B")
                    ));
                }
                let path = if q.is_empty() {
                    "/flowlog".to_string()
                } else {
                    format!("/flowlog?{}", q.join("&"))
                };
                let body = flowlog::client::get(&url, &path)?;
                n = body.iter().filter(|b| **b == b'\n').count() as u64;
                out.write_all(&body)?;
            } else if let Some(dir) = dir {
                let range = time_range(since.as_deref(), until.as_deref())?;
                let mut err = None;
                read_flows(&dir, range, |rec| {
                    if err.is_some() {
                        return;
                    }
                    match serde_json::to_writer(&mut out, &rec) {
                        Ok(()) => {
                            n += 1;
                            if let Err(e) = out.write_all(b"\n") {
                                err = Some(anyhow::Error::from(e));
                            }
                        }
                        Err(e) => err = Some(e.into()),
                    }
                })?;
                if let Some(e) = err {
                    return Err(e.context("writing the export"));
                }
            }
            out.flush()?;
            eprintln!("exported {n} flow records");
            Ok(0)
        }
    }
}

/// `podwarden baseline status`: learning coverage of recorded flows.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Flow logs or JSON-lines files; with several, each is one replica
    /// (named after the file or directory).
    #[arg(long = "flows", required = true)]
    flows: Vec<PathBuf>,
    /// Only flows since (unix ms, RFC 3339, or a duration ago like 14d).
    #[arg(long)]
    since: Option<String>,
    /// Windows shorter than this cannot have seen daily jobs.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    min_window: std::time::Duration,
    /// Converging means no new flow for this long.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    quiet: std::time::Duration,
    #[arg(long)]
    json: bool,
}

/// Exit 0 when ready to approve, 1 when learning should go on.
pub fn status(a: StatusArgs) -> Result<i32> {
    let range = time_range(a.since.as_deref(), None)?;
    let mut cov = Coverage::new();
    let several = a.flows.len() > 1;
    for p in &a.flows {
        let replica = several.then(|| {
            p.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        });
        read_flows(p, range, |rec| cov.observe(replica.as_deref(), &rec))?;
    }
    let cfg = CoverageConfig {
        min_window_ms: a.min_window.as_millis() as u64,
        quiet_ms: a.quiet.as_millis() as u64,
        ..CoverageConfig::default()
    };
    let rep = cov.report(now_ms(), &cfg);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        print!("{}", rep.render_text());
    }
    Ok(if rep.ready { 0 } else { 1 })
}
