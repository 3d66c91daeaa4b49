//! Reading flow logs back: a segment file, a workload's directory of
//! segments, a whole flow-log root (one directory per workload), or a plain
//! file of JSON lines / a JSON array (`/flows`, exports).
//!
//! Damage is never fatal: a line that fails its checksum or does not parse
//! (a torn write, a truncated tail, bit rot) is skipped and counted, and an
//! unreadable segment is skipped with a warning.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use podwarden_policy::FlowRecord;
use thiserror::Error;
use tracing::warn;

use super::format::decode;
use super::SEGMENT_SUFFIX;

#[derive(Debug, Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a JSON array of flow records: {message}")]
    Array { path: PathBuf, message: String },
}

/// What a read skipped.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReadReport {
    pub files: usize,
    pub records: u64,
    /// Lines that failed their checksum or did not parse.
    pub bad_lines: u64,
    /// Files that could not be opened or read to the end.
    pub bad_files: usize,
}

/// Records whose `start_ms` lies in `[since, until]`; `None` = unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<u64>,
    pub until: Option<u64>,
}

impl TimeRange {
    pub fn contains(&self, ms: u64) -> bool {
        self.since.is_none_or(|s| ms >= s) && self.until.is_none_or(|u| ms <= u)
    }
}

/// The files `path` stands for, oldest first: itself when it is a file, else
/// the segments in it and in its subdirectories (one level: workloads).
pub fn files_of(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![(path.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if depth > 0 => {
                warn!(dir = %dir.display(), error = %e, "flow log: directory skipped");
                continue;
            }
            Err(e) => return Err(io(e)),
        };
        for entry in entries.flatten() {
            let p = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth == 0 => dirs.push((p, depth + 1)),
                Ok(t) if t.is_file() && is_segment(&p) => out.push(p),
                _ => {}
            }
        }
    }
    // Segment names start with the creation time, so name order is time
    // order within a workload; across workloads, order by name too.
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()).then(a.cmp(b)));
    Ok(out)
}

pub fn is_segment(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("seg-") && n.ends_with(SEGMENT_SUFFIX))
}

/// Calls `f` for each record in `path` (see [`files_of`]) within `range`.
/// Only an unreadable `path` itself is an error.
pub fn for_each(
    path: &Path,
    range: TimeRange,
    mut f: impl FnMut(FlowRecord),
) -> Result<ReadReport, ReadError> {
    let files = files_of(path)?;
    let single = files.len() == 1 && files[0] == path;
    let mut report = ReadReport::default();
    for file in &files {
        report.files += 1;
        if let Err(e) = read_file(file, range, &mut report, &mut f) {
            if single {
                return Err(e);
            }
            warn!(error = %e, "flow log: segment skipped");
            report.bad_files += 1;
        }
    }
    Ok(report)
}

/// Everything in `path` within `range`, in file order.
pub fn read_all(path: &Path, range: TimeRange) -> Result<(Vec<FlowRecord>, ReadReport), ReadError> {
    let mut v = Vec::new();
    let r = for_each(path, range, |rec| v.push(rec))?;
    Ok((v, r))
}

fn read_file(
    file: &Path,
    range: TimeRange,
    report: &mut ReadReport,
    f: &mut impl FnMut(FlowRecord),
) -> Result<(), ReadError> {
    let io = |source| ReadError::Io {
        path: file.to_path_buf(),
        source,
    };
    let mut r = BufReader::new(File::open(file).map_err(io)?);
    let first = r
        .fill_buf()
        .map_err(io)?
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .copied();
    if first == Some(b'[') {
        let mut text = Vec::new();
        r.read_to_end(&mut text).map_err(io)?;
        let recs: Vec<FlowRecord> =
            serde_json::from_slice(&text).map_err(|e| ReadError::Array {
                path: file.to_path_buf(),
                message: e.to_string(),
            })?;
        for rec in recs.into_iter().filter(|r| range.contains(r.start_ms)) {
            report.records += 1;
            f(rec);
        }
        return Ok(());
    }
    let mut line = Vec::with_capacity(1024);
    let mut bad_here = 0u64;
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).map_err(io)?;
        if n == 0 {
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match decode(&line) {
            Ok(rec) => {
                if range.contains(rec.start_ms) {
                    report.records += 1;
                    f(rec);
                }
            }
            Err(_) => bad_here += 1,
        }
    }
    if bad_here > 0 {
        warn!(
            file = %file.display(),
            lines = bad_here,
            "flow log: damaged lines skipped (torn write, truncation or corruption)"
        );
        report.bad_lines += bad_here;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::format::{encode, tests::record};
    use super::*;
    use proptest::prelude::*;

    fn segment(dir: &Path, name: &str, recs: &[FlowRecord]) -> PathBuf {
        let p = dir.join(name);
        let mut bytes = Vec::new();
        for r in recs {
            bytes.extend(encode(r).unwrap());
        }
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn truncated_tail_is_skipped_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let p = segment(d.path(), "seg-1.log", &[record("a", 1), record("b", 2)]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.truncate(bytes.len() - 15);
        std::fs::write(&p, &bytes).unwrap();
        let (recs, rep) = read_all(d.path(), TimeRange::default()).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(rep.bad_lines, 1);
    }

    #[test]
    fn corrupted_middle_line_and_garbage_segment() {
        let d = tempfile::tempdir().unwrap();
        let p = segment(
            d.path(),
            "seg-1.log",
            &[record("a", 1), record("b", 2), record("c", 3)],
        );
        let mut bytes = std::fs::read(&p).unwrap();
        let second = bytes.iter().position(|b| *b == b'\n').unwrap() + 20;
        bytes[second] ^= 0x01;
        std::fs::write(&p, &bytes).unwrap();
        std::fs::write(d.path().join("seg-2.log"), b"\x00\xff garbage\n\n{not json").unwrap();
        segment(d.path(), "seg-3.log", &[record("d", 4)]);
        std::fs::write(d.path().join("notes.txt"), "not a segment").unwrap();
        let (recs, rep) = read_all(d.path(), TimeRange::default()).unwrap();
        let ids: Vec<_> = recs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        assert_eq!(rep.bad_lines, 3);
        assert_eq!(rep.files, 3);
    }

    #[test]
    fn workload_subdirectories_and_time_range() {
        let d = tempfile::tempdir().unwrap();
        let w = d.path().join("shop_web");
        std::fs::create_dir(&w).unwrap();
        segment(
            &w,
            "seg-0000000000001-0000.log",
            &[record("a", 10), record("b", 20)],
        );
        segment(&w, "seg-0000000000030-0001.log", &[record("c", 30)]);
        let range = TimeRange {
            since: Some(15),
            until: Some(30),
        };
        let (recs, _) = read_all(d.path(), range).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["b", "c"]
        );
    }

    #[test]
    fn plain_files_json_lines_or_array() {
        let d = tempfile::tempdir().unwrap();
        let lines = d.path().join("flows.jsonl");
        let a = record("a", 1);
        std::fs::write(
            &lines,
            format!("{}\n\n", serde_json::to_string(&a).unwrap()),
        )
        .unwrap();
        assert_eq!(
            read_all(&lines, TimeRange::default()).unwrap().0,
            vec![a.clone()]
        );
        let arr = d.path().join("flows.json");
        std::fs::write(&arr, serde_json::to_string(&vec![&a, &a]).unwrap()).unwrap();
        assert_eq!(read_all(&arr, TimeRange::default()).unwrap().0.len(), 2);
        std::fs::write(&arr, "[{").unwrap();
        assert!(read_all(&arr, TimeRange::default()).is_err());
        assert!(read_all(&d.path().join("missing"), TimeRange::default()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any truncation or overwrite of a segment loses at most the
        /// damaged records and never yields a record that was not written.
        #[test]
        fn damaged_segments_yield_a_subset(cut in 0usize..2000, pos in 0usize..2000, byte in any::<u8>()) {
            let d = tempfile::tempdir().unwrap();
            let written: Vec<FlowRecord> = (0..5).map(|i| record(&format!("r{i}"), i)).collect();
            let p = segment(d.path(), "seg-1.log", &written);
            let mut bytes = std::fs::read(&p).unwrap();
            let len = bytes.len();
            bytes[pos % len] = byte;
            bytes.truncate(cut % (len + 1));
            std::fs::write(&p, &bytes).unwrap();
            let (recs, _) = read_all(d.path(), TimeRange::default()).unwrap();
            prop_assert!(recs.len() <= 5);
            for r in &recs {
                prop_assert!(written.contains(r));
            }
        }
    }
}
