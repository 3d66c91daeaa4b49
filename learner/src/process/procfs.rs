//! Reading the pod's processes from /proc (the root is a parameter so tests
//! can point it at a fake tree).

use std::io;
use std::path::Path;

use podwarden_policy::ProcessInfo;

/// Numeric entries of `root`.
pub fn list_pids(root: &Path) -> io::Result<Vec<u32>> {
    let mut v: Vec<u32> = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// `socket:[12345]` → 12345.
pub fn parse_socket_link(link: &[u8]) -> Option<u64> {
    let inner = link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

/// Socket inodes held by `pid`, as (inode, fd). Processes that vanish or
/// deny access yield an empty list: attribution is best effort.
pub fn socket_fds(root: &Path, pid: u32) -> Vec<(u64, u32)> {
    let dir = root.join(pid.to_string()).join("fd");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(link) = std::fs::read_link(e.path()) {
            if let Some(inode) = parse_socket_link(link.as_os_str().as_encoded_bytes()) {
                out.push((inode, fd));
            }
        }
    }
    out
}

/// Whether `pid`'s fd still is the socket `inode` (one readlink).
pub fn fd_is_socket(root: &Path, pid: u32, fd: u32, inode: u64) -> bool {
    let p = root.join(pid.to_string()).join("fd").join(fd.to_string());
    std::fs::read_link(p)
        .ok()
        .and_then(|l| parse_socket_link(l.as_os_str().as_encoded_bytes()))
        == Some(inode)
}

pub fn read_exe(root: &Path, pid: u32) -> Option<String> {
    let l = std::fs::read_link(root.join(pid.to_string()).join("exe")).ok()?;
    Some(l.to_string_lossy().into_owned())
}

/// The real uid from `/proc/PID/status`.
pub fn parse_status_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|u| u.parse().ok())
}

/// `a\0b\0` → [a, b].
pub fn parse_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Everything the learner records about a process.
pub fn read_process(root: &Path, pid: u32) -> Option<ProcessInfo> {
    let base = root.join(pid.to_string());
    let exe = read_exe(root, pid)?;
    let cmdline = std::fs::read(base.join("cmdline"))
        .map(|r| parse_cmdline(&r))
        .unwrap_or_default();
    let uid = std::fs::read_to_string(base.join("status"))
        .ok()
        .and_then(|s| parse_status_uid(&s))?;
    Some(ProcessInfo {
        pid,
        exe,
        cmdline,
        uid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_formats() {
        assert_eq!(parse_socket_link(b"socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link(b"pipe:[4242]"), None);
        assert_eq!(parse_socket_link(b"socket:[x]"), None);
        assert_eq!(
            parse_status_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        assert_eq!(
            parse_cmdline(b"/bin/sh\0-c\0echo hi\0"),
            vec!["/bin/sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn reads_own_process() {
        let root = Path::new("/proc");
        let me = std::process::id();
        assert!(list_pids(root).unwrap().contains(&me));
        let p = read_process(root, me).unwrap();
        assert_eq!(p.pid, me);
        let exe = std::env::current_exe().unwrap();
        assert_eq!(Path::new(&p.exe), exe.canonicalize().unwrap());
    }
}
