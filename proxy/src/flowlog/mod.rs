//! Recorded traffic: every flow record, appended to a bounded, rotating
//! on-disk log per workload, so a candidate policy can be replayed against
//! what the pod really did (`podwarden policy replay`).
//!
//! The data path only offers each record to a bounded queue (a full queue
//! drops the record and counts it); a dedicated thread encodes and writes.
//! Layout: `<dir>/<workload>/seg-<unix ms>-<seq>.log`, one checksummed JSON
//! line per record ([`format`]). Size and age limits bound the directory
//! ([`writer`]); damaged segments are skipped on read ([`reader`]).

pub mod client;
pub mod format;
pub mod reader;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use podwarden_policy::FlowRecord;
use prometheus::{IntCounter, IntGauge, Registry};
use tracing::{info, warn};

use crate::config::Config;
use crate::records::{FlowLog, RecordTap};
pub use reader::{ReadReport, TimeRange};
pub use writer::{Limits, SegmentWriter};

pub const SEGMENT_SUFFIX: &str = ".log";
/// Records waiting for the writer thread; beyond this they are dropped.
const QUEUE: usize = 8192;

/// The directory of one workload's segments under the flow-log root.
pub fn workload_dir(root: &Path, workload: &str) -> PathBuf {
    let name: String = workload
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(if name.is_empty() {
        "default".into()
    } else {
        name
    })
}

#[derive(Clone)]
struct Metrics {
    written: IntCounter,
    dropped: IntCounter,
    errors: IntCounter,
    bytes: IntGauge,
}

impl Metrics {
    fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let m = Metrics {
            written: IntCounter::new(
                "podwarden_flowlog_records_written_total",
                "Flow records appended to the on-disk flow log.",
            )?,
            dropped: IntCounter::new(
                "podwarden_flowlog_records_dropped_total",
                "Flow records not logged because the writer's queue was full.",
            )?,
            errors: IntCounter::new(
                "podwarden_flowlog_write_errors_total",
                "Flow records lost to write errors (disk full, permissions).",
            )?,
            bytes: IntGauge::new(
                "podwarden_flowlog_bytes",
                "Bytes in the workload's flow-log segments.",
            )?,
        };
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        Ok(m)
    }
}

/// The data path's side: a non-blocking offer into the writer's queue.
struct Tap {
    tx: SyncSender<Arc<FlowRecord>>,
    dropped: IntCounter,
}

impl RecordTap for Tap {
    fn offer(&self, rec: &Arc<FlowRecord>) {
        match self.tx.try_send(rec.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("flow log directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("flow log metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Starts logging every record of `flows` under `root` for `workload`.
/// The writer thread ends when the proxy drops its `FlowLog`.
pub fn start(
    root: &Path,
    workload: &str,
    limits: Limits,
    flows: &FlowLog,
    registry: &Registry,
) -> Result<JoinHandle<()>, StartError> {
    let dir = workload_dir(root, workload);
    let writer = SegmentWriter::open(&dir, limits.clone()).map_err(|source| StartError::Io {
        path: dir.clone(),
        source,
    })?;
    let metrics = Metrics::new(registry)?;
    let (tx, rx) = sync_channel(QUEUE);
    flows.add_tap(Arc::new(Tap {
        tx,
        dropped: metrics.dropped.clone(),
    }));
    info!(dir = %dir.display(), max_bytes = limits.max_bytes, max_age = ?limits.max_age, "flow log");
    std::thread::Builder::new()
        .name("podwarden-flowlog".into())
        .spawn(move || run(writer, rx, metrics))
        .map_err(|source| StartError::Io { path: dir, source })
}

fn run(mut w: SegmentWriter, rx: Receiver<Arc<FlowRecord>>, m: Metrics) {
    let mut errors_logged = 0u64;
    let mut report = |e: std::io::Error, m: &Metrics| {
        m.errors.inc();
        // The first error and then every 1000th: a full disk must not flood the log.
        if errors_logged.is_multiple_of(1000) {
            warn!(error = %e, lost = m.errors.get(), "flow log: write failed, record lost");
        }
        errors_logged += 1;
    };
    let mut last_upkeep = SystemTime::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(rec) => {
                let now = SystemTime::now();
                // Drain what is queued, then flush once: readers (`/flowlog`,
                // replay) see records within about a second.
                let mut next = Some(rec);
                while let Some(r) = next {
                    match w.append(&r, now) {
                        Ok(_) => m.written.inc(),
                        Err(e) => report(e, &m),
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(e) = w.flush() {
                    report(e, &m);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = SystemTime::now();
        if now.duration_since(last_upkeep).unwrap_or_default() >= Duration::from_secs(1) {
            last_upkeep = now;
            if let Err(e) = w.maintain(now) {
                warn!(error = %e, "flow log: upkeep failed");
            }
            m.bytes
                .set(i64::try_from(w.disk_bytes()).unwrap_or(i64::MAX));
        }
    }
    let _ = w.flush();
}

/// Starts the flow log when `--flow-log-dir` is set (a no-op otherwise).
pub fn start_configured(shared: &crate::Shared) -> Result<Option<JoinHandle<()>>, StartError> {
    let c = &shared.config;
    let Some(root) = &c.flow_log_dir else {
        return Ok(None);
    };
    let limits = Limits {
        max_bytes: c.flow_log_max_bytes,
        max_age: Duration::from_secs(c.flow_log_max_age_secs),
    };
    start(root, &c.workload, limits, &shared.flows, &shared.registry).map(Some)
}

/// Parses a time bound: unix milliseconds, RFC 3339, or a duration meaning
/// "that long before `now_ms`" (`30d`, `2h`, `15m`).
pub fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?}: number out of range"));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .map_err(|_| format!("{s:?} is before 1970"));
    }
    match humantime::parse_duration(s) {
        Ok(d) => Ok(now_ms.saturating_sub(d.as_millis() as u64)),
        Err(_) => Err(format!(
            "{s:?} is not a time (unix ms, RFC 3339 like 2026-01-02T03:04:05Z, or a duration ago like 30d, 2h)"
        )),
    }
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// `GET /flowlog?since=T&until=T`: the logged records in the range as JSON
/// lines (bare, no checksums), oldest first. Times as for [`parse_time`];
/// `%3A` is accepted for `:`.
pub fn admin_response(config: &Config, query: Option<&str>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    let Some(root) = &config.flow_log_dir else {
        return reply(
            StatusCode::NOT_FOUND,
            b"flow log not enabled (--flow-log-dir)\n".to_vec(),
            "text/plain",
        );
    };
    match export(root, config, query) {
        Ok(body) => reply(StatusCode::OK, body, "application/x-ndjson"),
        Err((status, msg)) => reply(status, format!("{msg}\n").into_bytes(), "text/plain"),
    }
}

/// `GET /coverage?since=T`: learning coverage of the logged flows (JSON;
/// see `podwarden_learner::coverage`).
pub fn coverage_response(config: &Config, query: Option<&str>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Vec<u8>, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(ctype),
        );
        r
    };
    let Some(root) = &config.flow_log_dir else {
        return reply(
            StatusCode::NOT_FOUND,
            b"flow log not enabled (--flow-log-dir)\n".to_vec(),
            "text/plain",
        );
    };
    let now = crate::records::now_ms();
    let since = match query_param(query, "since")
        .map(|v| parse_time(&unescape(v), now))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                format!("{e}\n").into_bytes(),
                "text/plain",
            )
        }
    };
    let mut cov = podwarden_learner::coverage::Coverage::new();
    let dir = workload_dir(root, &config.workload);
    if dir.exists() {
        let range = TimeRange { since, until: None };
        if let Err(e) = reader::for_each(&dir, range, |rec| cov.observe(None, &rec)) {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{e}\n").into_bytes(),
                "text/plain",
            );
        }
    }
    let report = cov.report(now, &podwarden_learner::coverage::CoverageConfig::default());
    match serde_json::to_vec_pretty(&report) {
        Ok(v) => reply(StatusCode::OK, v, "application/json"),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e}\n").into_bytes(),
            "text/plain",
        ),
    }
}

fn unescape(v: &str) -> String {
    v.replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2B", "+")
        .replace("%2b", "+")
}

fn export(
    root: &Path,
    config: &Config,
    query: Option<&str>,
) -> Result<Vec<u8>, (StatusCode, String)> {
    let now = crate::records::now_ms();
    let bound = |key: &str| -> Result<Option<u64>, String> {
        query_param(query, key)
            .map(|v| parse_time(&unescape(v), now))
            .transpose()
    };
    let since = bound("since").map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let until = bound("until").map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let dir = workload_dir(root, &config.workload);
    let mut body = Vec::new();
    if !dir.exists() {
        return Ok(body);
    }
    reader::for_each(&dir, TimeRange { since, until }, |rec| {
        if let Ok(mut line) = serde_json::to_vec(&rec) {
            line.push(b'\n');
            body.extend(line);
        }
    })
    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds() {
        assert_eq!(parse_time("1700000000000", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert_eq!(parse_time("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_time("30d", 1000), Ok(0));
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("", 0).is_err());
    }

    #[test]
    fn workload_dirs_are_flat_names() {
        let r = Path::new("/x");
        assert_eq!(workload_dir(r, "shop/web"), Path::new("/x/shop_web"));
        assert_eq!(workload_dir(r, ""), Path::new("/x/default"));
        assert_eq!(workload_dir(r, "../../etc"), Path::new("/x/.._.._etc"));
    }

    #[test]
    fn records_reach_disk_through_the_tap() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::new();
        let flows = FlowLog::new(16, &reg).unwrap();
        let limits = Limits {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let handle = start(d.path(), "shop/web", limits, &flows, &reg).unwrap();
        for i in 0..10 {
            flows.record(format::tests::record(&format!("r{i}"), i));
        }
        drop(flows); // closes the queue: the writer drains and exits
        handle.join().unwrap();
        let (recs, rep) =
            reader::read_all(&d.path().join("shop_web"), TimeRange::default()).unwrap();
        assert_eq!(recs.len(), 10);
        assert_eq!(rep.bad_lines, 0);
    }

    #[test]
    fn admin_export_filters_by_time() {
        let d = tempfile::tempdir().unwrap();
        let config = Config {
            flow_log_dir: Some(d.path().to_path_buf()),
            workload: "w".into(),
            ..Config::default()
        };
        let mut w = SegmentWriter::open(
            &workload_dir(d.path(), "w"),
            Limits {
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(3600),
            },
        )
        .unwrap();
        for i in 1..=3 {
            w.append(
                &format::tests::record(&format!("r{i}"), i * 1000),
                SystemTime::now(),
            )
            .unwrap();
        }
        w.flush().unwrap();
        let q = Some("since=1970-01-01T00%3A00%3A02Z&until=3000");
        assert_eq!(admin_response(&config, q).status(), StatusCode::OK);
        let body = export(d.path(), &config, q).unwrap();
        let ids: Vec<String> = String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<FlowRecord>(l).unwrap().id)
            .collect();
        assert_eq!(ids, ["r2", "r3"]);
        let bad = admin_response(&config, Some("since=soon"));
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let off = admin_response(&Config::default(), None);
        assert_eq!(off.status(), StatusCode::NOT_FOUND);
    }
}
