//! The caching resolver: netlink for the inode, an inode → (pid, fd) index
//! for the process.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podwarden_policy::ProcessInfo;

use super::procfs;
use super::sockdiag::SockDiag;

thread_local! {
    static DIAG: std::cell::RefCell<Option<SockDiag>> = const { std::cell::RefCell::new(None) };
}
use super::{ProcessResolver, SocketTuple};

/// Counters for metrics and the benchmark report.
#[derive(Debug, Default)]
pub struct ResolverStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub rescanned_pids: AtomicU64,
    pub not_found: AtomicU64,
}

#[derive(Default)]
struct Index {
    by_inode: HashMap<u64, (u32, u32)>,
    /// Pids in the order to try on a miss: most recent owners first.
    hot: Vec<u32>,
    known: HashSet<u32>,
    /// pid → (exe, info) so cmdline/status are read once per exec.
    info: HashMap<u32, ProcessInfo>,
    /// Inodes a rescan did not find, and when: not rescanned again soon.
    negative: HashMap<u64, Instant>,
}

pub struct ProcfsResolver {
    proc_root: PathBuf,
    index: Mutex<Index>,
    negative_ttl: Duration,
    pub stats: ResolverStats,
}

impl ProcfsResolver {
    pub fn new() -> Self {
        Self::with_root(PathBuf::from("/proc"))
    }

    pub fn with_root(proc_root: PathBuf) -> Self {
        ProcfsResolver {
            proc_root,
            index: Mutex::new(Index::default()),
            negative_ttl: Duration::from_millis(500),
            stats: ResolverStats::default(),
        }
    }

    /// Drops the index (the next lookup rescans); for benchmarks of misses.
    pub fn clear_cache(&self) {
        if let Ok(mut ix) = self.index.lock() {
            *ix = Index::default();
        }
    }

    /// The inode of the socket with this tuple, via netlink. Each thread
    /// keeps its own netlink socket, so data-path workers never queue
    /// behind one another for the kernel round trip.
    pub fn socket_inode(&self, t: &SocketTuple) -> Option<u64> {
        DIAG.with(|cell| {
            let mut g = cell.try_borrow_mut().ok()?;
            if g.is_none() {
                match SockDiag::new() {
                    Ok(d) => *g = Some(d),
                    Err(e) => {
                        tracing::warn!(error = %e, "sock_diag unavailable; process attribution off");
                        return None;
                    }
                }
            }
            let d = g.as_mut()?;
            match d.find_tcp(t.local, t.remote) {
                Ok(o) => o.map(|o| o.inode),
                Err(e) => {
                    tracing::debug!(error = %e, "sock_diag lookup failed");
                    // A broken socket is replaced on the next call.
                    *g = None;
                    None
                }
            }
        })
    }

    /// Process owning socket `inode`, from the index or a targeted rescan.
    pub fn process_of_inode(&self, inode: u64) -> Option<ProcessInfo> {
        let mut ix = self.index.lock().ok()?;
        if let Some(&(pid, fd)) = ix.by_inode.get(&inode) {
            if procfs::fd_is_socket(&self.proc_root, pid, fd, inode) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return self.info(&mut ix, pid);
            }
            ix.by_inode.remove(&inode);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(t) = ix.negative.get(&inode) {
            if t.elapsed() < self.negative_ttl {
                return None;
            }
        }
        let found = self.rescan_for(&mut ix, inode);
        match found {
            Some(pid) => {
                ix.negative.remove(&inode);
                ix.hot.retain(|p| *p != pid);
                ix.hot.insert(0, pid);
                self.info(&mut ix, pid)
            }
            None => {
                self.stats.not_found.fetch_add(1, Ordering::Relaxed);
                if ix.negative.len() > 4096 {
                    ix.negative.clear();
                }
                ix.negative.insert(inode, Instant::now());
                None
            }
        }
    }

    /// Scans pids (hot ones first, then new ones, then the rest) until one
    /// holds `inode`, indexing every socket seen along the way.
    fn rescan_for(&self, ix: &mut Index, inode: u64) -> Option<u32> {
        let pids = procfs::list_pids(&self.proc_root).ok()?;
        let alive: HashSet<u32> = pids.iter().copied().collect();
        ix.hot.retain(|p| alive.contains(p));
        ix.known.retain(|p| alive.contains(p));
        ix.info.retain(|p, _| alive.contains(p));
        // Our own sockets go last unless we owned a recent hit: the proxy
        // holds one end of every connection, the app the other.
        let me = std::process::id();
        let mut order: Vec<u32> = ix.hot.clone();
        order.extend(pids.iter().filter(|p| !ix.known.contains(p) && **p != me));
        order.extend(
            pids.iter()
                .filter(|p| ix.known.contains(p) && !ix.hot.contains(p) && **p != me),
        );
        if !ix.hot.contains(&me) && alive.contains(&me) {
            order.push(me);
        }
        for pid in order {
            self.stats.rescanned_pids.fetch_add(1, Ordering::Relaxed);
            ix.known.insert(pid);
            let mut hit = false;
            for (ino, fd) in procfs::socket_fds(&self.proc_root, pid) {
                ix.by_inode.insert(ino, (pid, fd));
                hit |= ino == inode;
            }
            if hit {
                return Some(pid);
            }
        }
        None
    }

    fn info(&self, ix: &mut Index, pid: u32) -> Option<ProcessInfo> {
        // exec keeps fds: the exe is re-read so that an exec is noticed.
        let exe = procfs::read_exe(&self.proc_root, pid)?;
        if let Some(i) = ix.info.get(&pid) {
            if i.exe == exe {
                return Some(i.clone());
            }
        }
        let i = procfs::read_process(&self.proc_root, pid)?;
        ix.info.insert(pid, i.clone());
        Some(i)
    }
}

impl Default for ProcfsResolver {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessResolver for ProcfsResolver {
    fn resolve(&self, t: &SocketTuple) -> Option<ProcessInfo> {
        let inode = self.socket_inode(t)?;
        self.process_of_inode(inode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn resolves_own_loopback_connection_to_this_test_binary() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let r = ProcfsResolver::new();
        let me = std::process::id();
        let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
        for t in [
            SocketTuple {
                local: c.local_addr().unwrap(),
                remote: c.peer_addr().unwrap(),
            },
            SocketTuple {
                local: s.local_addr().unwrap(),
                remote: s.peer_addr().unwrap(),
            },
        ] {
            let p = r
                .resolve(&t)
                .unwrap_or_else(|| panic!("not resolved: {t:?}"));
            assert_eq!(p.pid, me);
            assert_eq!(std::path::Path::new(&p.exe), exe);
            assert!(!p.cmdline.is_empty());
        }
        // first lookup missed and rescanned; the second was already indexed
        assert_eq!(r.stats.misses.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats.hits.load(Ordering::Relaxed), 1);
        // a tuple nobody owns
        let nobody = SocketTuple {
            local: "127.0.0.1:1".parse().unwrap(),
            remote: "127.0.0.1:2".parse().unwrap(),
        };
        assert_eq!(r.resolve(&nobody), None);
    }

    /// A fake /proc: pid → [(fd, link target)], exe, uid.
    type FakeProc<'a> = (u32, &'a [(u32, &'a str)], &'a str);

    fn fake_proc(procs: &[FakeProc]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (pid, fds, exe) in procs {
            let base = d.path().join(pid.to_string());
            std::fs::create_dir_all(base.join("fd")).unwrap();
            for (fd, target) in fds.iter() {
                std::os::unix::fs::symlink(target, base.join("fd").join(fd.to_string())).unwrap();
            }
            std::os::unix::fs::symlink(exe, base.join("exe")).unwrap();
            std::fs::write(base.join("cmdline"), format!("{exe}\0--flag\0")).unwrap();
            std::fs::write(
                base.join("status"),
                "Name:\tx\nUid:\t1001\t1001\t1001\t1001\n",
            )
            .unwrap();
        }
        d
    }

    #[test]
    fn index_is_verified_and_misses_rescan_hot_pids_first() {
        let d = fake_proc(&[
            (10, &[(0, "/dev/null"), (3, "socket:[100]")], "/usr/bin/app"),
            (
                20,
                &[(4, "socket:[200]"), (5, "pipe:[7]")],
                "/usr/bin/worker",
            ),
            (30, &[], "/bin/sh"),
        ]);
        let r = ProcfsResolver::with_root(d.path().to_path_buf());
        let p = r.process_of_inode(200).unwrap();
        assert_eq!(
            (p.pid, p.exe.as_str(), p.uid),
            (20, "/usr/bin/worker", 1001)
        );
        assert_eq!(p.cmdline, vec!["/usr/bin/worker", "--flag"]);
        let scanned = r.stats.rescanned_pids.load(Ordering::Relaxed);
        // already indexed by the first scan: a hit, no rescan
        assert_eq!(r.process_of_inode(100).unwrap().pid, 10);
        assert_eq!(r.stats.hits.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats.rescanned_pids.load(Ordering::Relaxed), scanned);
        // a new socket in the hot process: found by scanning one pid
        std::os::unix::fs::symlink("socket:[201]", d.path().join("20/fd/6")).unwrap();
        assert_eq!(r.process_of_inode(201).unwrap().pid, 20);
        assert_eq!(r.stats.rescanned_pids.load(Ordering::Relaxed), scanned + 1);
        // fd reused for another socket: the stale entry is refused
        std::fs::remove_file(d.path().join("10/fd/3")).unwrap();
        std::os::unix::fs::symlink("socket:[999]", d.path().join("10/fd/3")).unwrap();
        assert_eq!(r.process_of_inode(100), None);
        // not found: negative-cached, no second rescan right away
        let before = r.stats.rescanned_pids.load(Ordering::Relaxed);
        assert_eq!(r.process_of_inode(100), None);
        assert_eq!(r.stats.rescanned_pids.load(Ordering::Relaxed), before);
        // exec keeps fds: a changed exe is noticed
        std::fs::remove_file(d.path().join("20/exe")).unwrap();
        std::os::unix::fs::symlink("/usr/bin/nc", d.path().join("20/exe")).unwrap();
        assert_eq!(r.process_of_inode(200).unwrap().exe, "/usr/bin/nc");
    }

    #[test]
    fn dual_stack_listener_is_found_via_v4_mapped() {
        let Ok(l) = TcpListener::bind("[::]:0") else {
            println!("skipped: no IPv6 on this host");
            return;
        };
        let port = l.local_addr().unwrap().port();
        let Ok(c) = TcpStream::connect(("127.0.0.1", port)) else {
            println!("skipped: dual-stack sockets disabled");
            return;
        };
        let (s, _) = l.accept().unwrap();
        let _ = s;
        let r = ProcfsResolver::new();
        // the server side as the proxy would name it: plain IPv4
        let t = SocketTuple {
            local: format!("127.0.0.1:{port}").parse().unwrap(),
            remote: c.local_addr().unwrap(),
        };
        assert_eq!(r.resolve(&t).map(|p| p.pid), Some(std::process::id()));
    }

    #[test]
    fn closed_socket_is_not_attributed_from_a_stale_index() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let r = ProcfsResolver::new();
        let t = SocketTuple {
            local: c.local_addr().unwrap(),
            remote: c.peer_addr().unwrap(),
        };
        let inode = r.socket_inode(&t).unwrap();
        assert!(r.process_of_inode(inode).is_some());
        drop(c);
        // the fd is gone: the verified index refuses the stale entry
        assert_eq!(r.process_of_inode(inode), None);
    }
}
