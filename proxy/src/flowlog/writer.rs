//! The segment writer: appends encoded records to the current segment,
//! rotates it by size and age, and deletes the oldest segments beyond the
//! byte budget or the age limit. Synchronous file I/O; it runs on its own
//! thread (see [`super::start`]), never on the data path.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use podwarden_policy::FlowRecord;

use super::format::encode;
use super::reader::is_segment;
use super::SEGMENT_SUFFIX;

/// Limits of one workload's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// All segments together stay within this (the current one included,
    /// give or take one record).
    pub max_bytes: u64,
    /// Segments last written longer ago than this are deleted.
    pub max_age: Duration,
}

impl Limits {
    /// A segment is an eighth of the budget (at least 4 KiB), so deleting
    /// the oldest frees space without dropping most of the history at once.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).max(4096)
    }
    /// Segments also roll by time so that age-based deletion is gradual.
    fn segment_age(&self) -> Duration {
        (self.max_age / 8).clamp(Duration::from_secs(1), Duration::from_secs(3600))
    }
}

struct Current {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
    opened: SystemTime,
}

pub struct SegmentWriter {
    dir: PathBuf,
    limits: Limits,
    current: Option<Current>,
    seq: u64,
}

impl SegmentWriter {
    /// Creates `dir` if needed; existing segments count against the limits.
    pub fn open(dir: &Path, limits: Limits) -> std::io::Result<SegmentWriter> {
        std::fs::create_dir_all(dir)?;
        let mut w = SegmentWriter {
            dir: dir.to_path_buf(),
            limits,
            current: None,
            seq: 0,
        };
        w.enforce_retention(SystemTime::now())?;
        Ok(w)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record; returns the bytes written. Records that cannot be
    /// encoded are reported as an error and not written.
    pub fn append(&mut self, rec: &FlowRecord, now: SystemTime) -> std::io::Result<u64> {
        let line = encode(rec).map_err(std::io::Error::other)?;
        let rotate = match &self.current {
            None => true,
            Some(c) => {
                c.bytes + line.len() as u64 > self.limits.segment_bytes()
                    || now.duration_since(c.opened).unwrap_or_default() >= self.limits.segment_age()
            }
        };
        if rotate {
            self.rotate(now)?;
        }
        let Some(c) = self.current.as_mut() else {
            return Err(std::io::Error::other("no open segment"));
        };
        c.out.write_all(&line)?;
        c.bytes += line.len() as u64;
        Ok(line.len() as u64)
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self.current.as_mut() {
            Some(c) => c.out.flush(),
            None => Ok(()),
        }
    }

    /// Periodic upkeep while idle: roll an old segment, apply retention.
    pub fn maintain(&mut self, now: SystemTime) -> std::io::Result<()> {
        self.flush()?;
        let old = self.current.as_ref().is_some_and(|c| {
            now.duration_since(c.opened).unwrap_or_default() >= self.limits.segment_age()
        });
        if old {
            self.close_current()?;
        }
        self.enforce_retention(now)
    }

    fn close_current(&mut self) -> std::io::Result<()> {
        if let Some(mut c) = self.current.take() {
            c.out.flush()?;
        }
        Ok(())
    }

    fn rotate(&mut self, now: SystemTime) -> std::io::Result<()> {
        self.close_current()?;
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        // The sequence keeps names unique and ordered within one millisecond.
        let mut path;
        loop {
            path = self.dir.join(format!(
                "seg-{ms:013}-{:06}{SEGMENT_SUFFIX}",
                self.seq % 1_000_000
            ));
            self.seq += 1;
            if !path.exists() {
                break;
            }
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        self.current = Some(Current {
            path,
            out: BufWriter::with_capacity(64 * 1024, file),
            bytes: 0,
            opened: now,
        });
        self.enforce_retention(now)
    }

    /// Deletes closed segments, oldest first, while the total exceeds the
    /// budget, and every closed segment last written before `now - max_age`.
    fn enforce_retention(&mut self, now: SystemTime) -> std::io::Result<()> {
        let current = self.current.as_ref().map(|c| c.path.clone());
        let current_bytes = self.current.as_ref().map_or(0, |c| c.bytes);
        let mut segs: Vec<(PathBuf, u64, SystemTime)> = std::fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_segment(p) && Some(p) != current.as_ref())
            .filter_map(|p| {
                let m = std::fs::metadata(&p).ok()?;
                Some((p, m.len(), m.modified().unwrap_or(now)))
            })
            .collect();
        segs.sort_by(|a, b| a.0.file_name().cmp(&b.0.file_name()));
        let mut total: u64 = current_bytes + segs.iter().map(|s| s.1).sum::<u64>();
        let cutoff = now.checked_sub(self.limits.max_age);
        for (path, len, modified) in segs {
            let too_old = cutoff.is_some_and(|c| modified < c);
            if total > self.limits.max_bytes || too_old {
                match std::fs::remove_file(&path) {
                    Ok(()) => total = total.saturating_sub(len),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        total = total.saturating_sub(len)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Bytes currently on disk in segments (for the gauge).
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| is_segment(&e.path()))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::tests::record;
    use super::super::reader::{read_all, TimeRange};
    use super::*;

    #[test]
    fn stays_within_the_byte_budget_and_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 32 * 1024,
            max_age: Duration::from_secs(3600),
        };
        let mut w = SegmentWriter::open(d.path(), limits).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..2000u64 {
            w.append(&record(&format!("r{i}"), i), t0).unwrap();
        }
        w.flush().unwrap();
        let on_disk = w.disk_bytes();
        assert!(on_disk <= 32 * 1024 + 4096, "{on_disk}");
        let (recs, rep) = read_all(d.path(), TimeRange::default()).unwrap();
        assert_eq!(rep.bad_lines, 0);
        assert!(recs.len() > 50, "{}", recs.len());
        // The newest records survive, contiguous up to the last one.
        assert_eq!(recs.last().unwrap().id, "r1999");
        let first: u64 = recs[0].id[1..].parse().unwrap();
        assert_eq!(recs.len() as u64, 2000 - first);
    }

    #[test]
    fn old_segments_age_out() {
        let d = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(8),
        };
        let mut w = SegmentWriter::open(d.path(), limits).unwrap();
        let now = SystemTime::now();
        w.append(&record("old", 1), now).unwrap();
        // Rolls (segment age is 1 s) and starts a second segment.
        w.append(&record("new", 2), now + Duration::from_secs(2))
            .unwrap();
        w.flush().unwrap();
        assert_eq!(read_all(d.path(), TimeRange::default()).unwrap().0.len(), 2);
        // Well past max_age of the first segment's mtime (written "now").
        w.maintain(now + Duration::from_secs(60)).unwrap();
        let (recs, _) = read_all(d.path(), TimeRange::default()).unwrap();
        assert!(recs.is_empty(), "{recs:?}");
    }

    #[test]
    fn reopening_appends_a_new_segment() {
        let d = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        {
            let mut w = SegmentWriter::open(d.path(), limits.clone()).unwrap();
            w.append(&record("a", 1), now).unwrap();
        }
        {
            let mut w = SegmentWriter::open(d.path(), limits).unwrap();
            w.append(&record("b", 2), now).unwrap();
        }
        let (recs, _) = read_all(d.path(), TimeRange::default()).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
