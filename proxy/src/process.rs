//! Process attribution on the data path: which executable in the pod owns
//! the app side of a connection, via the learner's resolver (netlink
//! `sock_diag` by exact 4-tuple for the socket inode, then a cached inode →
//! process index over /proc; a miss costs one targeted rescan).
//!
//! * Outbound: the app's connecting socket is exactly (app source, original
//!   destination) — the redirect does not change the app's own socket.
//! * Inbound: the app has no socket for this connection yet (the proxy
//!   opens it later), so the lookup names (original destination, client);
//!   the kernel's exact lookup falls back to the socket *listening* on the
//!   destination, i.e. the server process that will handle the request.
//!
//! Off until a resolver is installed ([`Attribution::install`]); a disabled
//! or failing lookup leaves `Flow.process` empty, and the policy then judges
//! the flow by its rules only.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use podwarden_learner::process::{ProcessResolver, SocketTuple};
use podwarden_policy::{Direction, ProcessInfo};

#[derive(Default)]
pub struct Attribution {
    resolver: OnceLock<Arc<dyn ProcessResolver>>,
}

impl Attribution {
    /// Turns attribution on (once; later calls are ignored).
    pub fn install(&self, r: Arc<dyn ProcessResolver>) {
        let _ = self.resolver.set(r);
    }

    pub fn enabled(&self) -> bool {
        self.resolver.get().is_some()
    }

    /// The process owning the app side of a connection. `client` is the
    /// connecting side, `dst` the original destination.
    pub fn attribute(
        &self,
        dir: Direction,
        client: SocketAddr,
        dst: SocketAddr,
    ) -> Option<ProcessInfo> {
        let r = self.resolver.get()?;
        r.resolve(&tuple(dir, client, dst))
    }
}

/// The tuple as the owning socket sees it (see the module docs).
pub fn tuple(dir: Direction, client: SocketAddr, dst: SocketAddr) -> SocketTuple {
    match dir {
        Direction::Outbound => SocketTuple {
            local: client,
            remote: dst,
        },
        Direction::Inbound => SocketTuple {
            local: dst,
            remote: client,
        },
    }
}

/// Notices executables that start in the pod without (yet) opening a
/// connection: every `every`, pids not seen before are looked up in /proc
/// and an executable the pod was never seen running is reported once. The
/// first scan only records what was already running (the pod's start).
pub struct ExeWatcher {
    proc_root: std::path::PathBuf,
    seen_pids: std::collections::HashSet<u32>,
    seeded: bool,
}

impl ExeWatcher {
    pub fn new(proc_root: std::path::PathBuf) -> Self {
        ExeWatcher {
            proc_root,
            seen_pids: Default::default(),
            seeded: false,
        }
    }

    /// One scan: (pid, exe) of processes started since the last scan whose
    /// executable `is_new` says the pod has not run before.
    pub fn scan(&mut self, mut is_new: impl FnMut(&str) -> bool) -> Vec<(u32, String)> {
        use podwarden_learner::process::procfs;
        let Ok(pids) = procfs::list_pids(&self.proc_root) else {
            return Vec::new();
        };
        let me = std::process::id();
        let alive: std::collections::HashSet<u32> = pids.iter().copied().collect();
        self.seen_pids.retain(|p| alive.contains(p));
        let mut out = Vec::new();
        for pid in pids {
            if pid == me || !self.seen_pids.insert(pid) {
                continue;
            }
            // Unreadable (another uid without the capabilities, or gone):
            // nothing to report, and it is not retried.
            let Some(exe) = procfs::read_exe(&self.proc_root, pid) else {
                continue;
            };
            if is_new(&exe) && self.seeded {
                out.push((pid, exe));
            }
        }
        self.seeded = true;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exe_watcher_reports_new_executables_once_after_the_first_scan() {
        let d = tempfile::tempdir().unwrap();
        let mk = |pid: u32, exe: &str| {
            let base = d.path().join(pid.to_string());
            std::fs::create_dir_all(&base).unwrap();
            std::os::unix::fs::symlink(exe, base.join("exe")).unwrap();
        };
        mk(10, "/usr/bin/app");
        let mut known = std::collections::HashSet::new();
        let mut w = ExeWatcher::new(d.path().to_path_buf());
        let mut is_new = |e: &str| known.insert(e.to_string());
        assert!(w.scan(&mut is_new).is_empty(), "the first scan only seeds");
        mk(11, "/usr/bin/app");
        mk(12, "/tmp/xmrig");
        assert_eq!(w.scan(&mut is_new), vec![(12, "/tmp/xmrig".to_string())]);
        // the same exe again, in a new process: already known
        mk(13, "/tmp/xmrig");
        assert!(w.scan(&mut is_new).is_empty());
        assert!(w.scan(&mut is_new).is_empty());
    }

    use podwarden_learner::process::{ProcfsResolver, StaticResolver};
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn disabled_until_installed_then_resolves_by_direction() {
        let a = Attribution::default();
        let client: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let dst: SocketAddr = "192.0.2.10:443".parse().unwrap();
        assert!(!a.enabled());
        assert_eq!(a.attribute(Direction::Outbound, client, dst), None);
        let p = ProcessInfo {
            pid: 7,
            exe: "/usr/bin/app".into(),
            cmdline: vec![],
            uid: 1000,
        };
        let mut m = std::collections::HashMap::new();
        m.insert(
            SocketTuple {
                local: client,
                remote: dst,
            },
            p.clone(),
        );
        a.install(Arc::new(StaticResolver(m)));
        assert_eq!(a.attribute(Direction::Outbound, client, dst), Some(p));
        // inbound names the tuple the other way round
        assert_eq!(a.attribute(Direction::Inbound, client, dst), None);
    }

    /// Inbound: before the proxy connects to the app, the only socket of the
    /// app on the destination is its listener; the exact lookup finds it.
    #[test]
    fn inbound_lookup_finds_the_listening_server() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let a = Attribution::default();
        a.install(Arc::new(ProcfsResolver::new()));
        let client: SocketAddr = "127.0.0.1:40999".parse().unwrap();
        let p = a
            .attribute(Direction::Inbound, client, dst)
            .expect("listener found");
        assert_eq!(p.pid, std::process::id());
        // outbound: the connecting socket itself
        let c = TcpStream::connect(dst).unwrap();
        let p = a
            .attribute(Direction::Outbound, c.local_addr().unwrap(), dst)
            .expect("client socket found");
        assert_eq!(p.pid, std::process::id());
    }
}
