//! `podwarden dlp scan PATH...`: run the DLP sensors and decoders over files
//! (or `-` for stdin), streaming them in bounded memory, and print one JSON
//! line per finding. Exit 1 when anything is found, 0 when clean, 2 on error,
//! so it can gate CI pipelines like a secret scanner.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use podwarden_dlp::{Compression, Config, Finding, Scanner, StreamOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Scan files (or `-` for stdin) and print one JSON line per finding.
    /// Exit status: 1 when anything is found, 0 when clean, 2 on error.
    Scan(ScanArgs),
    /// List the built-in sensors.
    Sensors,
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Files to scan; `-` reads standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// DLP settings as JSON (disabledSensors, enabledSensors, customSensors, limits).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Turn a built-in sensor off (repeatable).
    #[arg(long = "disable", value_name = "SENSOR")]
    disable: Vec<String>,
    /// Turn an off-by-default sensor on, e.g. stripe_test_key (repeatable).
    #[arg(long = "enable", value_name = "SENSOR")]
    enable: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    match args.command {
        Command::Scan(a) => scan(a),
        Command::Sensors => {
            for s in podwarden_dlp::BUILTIN_SENSORS {
                println!("{s}");
            }
            Ok(0)
        }
    }
}

fn scan(args: ScanArgs) -> anyhow::Result<i32> {
    let mut config = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str::<Config>(&text)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => Config::default(),
    };
    config.disabled_sensors.extend(args.disable);
    config.enabled_sensors.extend(args.enable);
    let scanner = Scanner::new(&config).context("building the DLP scanner")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut found = false;
    let mut failed = false;
    for path in &args.paths {
        let shown = path.display().to_string();
        let result = if path == Path::new("-") {
            scan_reader(&scanner, std::io::stdin().lock(), &shown, &mut out)
        } else {
            std::fs::File::open(path)
                .with_context(|| format!("opening {shown}"))
                .and_then(|f| scan_reader(&scanner, f, &shown, &mut out))
        };
        match result {
            Ok(n) => found |= n > 0,
            Err(e) => {
                eprintln!("podwarden: error: {e:#}");
                failed = true;
            }
        }
    }
    out.flush()?;
    Ok(if failed {
        2
    } else if found {
        1
    } else {
        0
    })
}

/// Stream one input through the scanner in 64 KiB reads; a gzip file is
/// decompressed on the way (with the scanner's bomb guard).
fn scan_reader(
    scanner: &Scanner,
    mut r: impl Read,
    path: &str,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut buf = vec![0u8; 64 << 10];
    let mut stream = None;
    let mut count = 0;
    loop {
        let n = r
            .read(&mut buf)
            .with_context(|| format!("reading {path}"))?;
        let s = stream.get_or_insert_with(|| {
            let gz = buf[..n].starts_with(&[0x1f, 0x8b, 8]);
            scanner.stream_with(StreamOptions {
                chunked: false,
                content_encoding: gz.then_some(Compression::Gzip),
            })
        });
        let findings = if n == 0 {
            s.finish()
        } else {
            s.push(&buf[..n])
        };
        for f in &findings {
            emit(out, path, f)?;
        }
        count += findings.len();
        if n == 0 {
            return Ok(count);
        }
    }
}

fn emit(out: &mut impl Write, path: &str, f: &Finding) -> anyhow::Result<()> {
    let line = serde_json::json!({
        "path": path,
        "sensor": f.sensor,
        "kind": f.kind,
        "severity": f.severity,
        "offset": f.offset,
        "len": f.len,
        "layers": f.layers,
        "masked": f.masked,
    });
    writeln!(out, "{line}")?;
    Ok(())
}
