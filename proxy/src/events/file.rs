//! A JSON-lines file that rotates by size: `events.log` → `events.log.1` →
//! ... → `events.log.N`, the oldest deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotatingFileConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this size.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn default_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_keep() -> usize {
    5
}

pub struct RotatingFile {
    config: RotatingFileConfig,
    out: BufWriter<File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(config: RotatingFileConfig) -> io::Result<RotatingFile> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            config,
            out: BufWriter::new(file),
            size,
        })
    }

    /// Appends one line (a newline is added), rotating first if needed.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.config.max_bytes {
            self.rotate()?;
        }
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let base = &self.config.path;
        if self.config.keep == 0 {
            std::fs::remove_file(base).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(numbered(base, self.config.keep)).or_else(ignore_missing)?;
            for i in (1..self.config.keep).rev() {
                std::fs::rename(numbered(base, i), numbered(base, i + 1))
                    .or_else(ignore_missing)?;
            }
            std::fs::rename(base, numbered(base, 1))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(base)?;
        self.out = BufWriter::new(file);
        self.size = 0;
        Ok(())
    }
}

fn numbered(base: &Path, i: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn ignore_missing(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("podwarden-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.log");
        let cfg = RotatingFileConfig {
            path: path.clone(),
            max_bytes: 30,
            keep: 2,
        };
        let mut f = RotatingFile::open(cfg.clone()).unwrap();
        for i in 0..10 {
            // 10 bytes per line: 3 lines per file.
            f.write_line(&format!("line-{i:04}")).unwrap();
        }
        f.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "line-0009\n");
        assert_eq!(
            read(&numbered(&path, 1)),
            "line-0006\nline-0007\nline-0008\n"
        );
        assert_eq!(
            read(&numbered(&path, 2)),
            "line-0003\nline-0004\nline-0005\n"
        );
        assert!(!numbered(&path, 3).exists());
        // Reopening appends and keeps counting the existing size.
        drop(f);
        let mut f = RotatingFile::open(cfg).unwrap();
        f.write_line("line-0010").unwrap();
        f.write_line("line-0011").unwrap();
        f.write_line("line-0012").unwrap();
        f.flush().unwrap();
        assert_eq!(read(&path), "line-0012\n");
        assert_eq!(
            read(&numbered(&path, 1)),
            "line-0009\nline-0010\nline-0011\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
