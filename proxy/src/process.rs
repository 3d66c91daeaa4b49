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
//!
//! The lookup is a synchronous netlink round trip on the connection's worker
//! thread (tens of µs under load), so it is only made when something uses
//! its answer ([`Attribution::only_when`]): a rule or baseline of the policy
//! in force that names processes, or learning (which records them).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use podwarden_learner::process::{ProcessResolver, SocketTuple};
use podwarden_policy::{Direction, ProcessInfo};

use crate::policy_reload::PolicyWatch;

type Needed = Box<dyn Fn() -> bool + Send + Sync>;

#[derive(Default)]
pub struct Attribution {
    resolver: OnceLock<Arc<dyn ProcessResolver>>,
    /// Asked per connection; absent = always needed.
    needed: OnceLock<Needed>,
}

impl Attribution {
    /// Turns attribution on (once; later calls are ignored).
    pub fn install(&self, r: Arc<dyn ProcessResolver>) {
        let _ = self.resolver.set(r);
    }

    /// Looks processes up only while `needed` says so (set once; later
    /// calls are ignored). It is asked for every connection: keep it cheap.
    pub fn only_when(&self, needed: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.needed.set(Box::new(needed));
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
        if self.needed.get().is_some_and(|needed| !needed()) {
            return None;
        }
        r.resolve(&tuple(dir, client, dst))
    }
}

/// The usual gate: with learning on, always (the baseline records
/// processes); otherwise while the policy in force names processes, read
/// at each connection so a reload that adds or drops such rules takes
/// effect at once. No policy loaded yet: needed (nothing says otherwise).
pub fn needed_by(policy: PolicyWatch, learning: bool) -> impl Fn() -> bool + Send + Sync {
    move || learning || policy.load().as_ref().is_none_or(|p| p.uses_processes())
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

    #[test]
    fn lookups_follow_the_policy_in_force_unless_learning() {
        use podwarden_policy::{load_policy_str, CompiledPolicy};
        let client: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let dst: SocketAddr = "192.0.2.10:443".parse().unwrap();
        let p = ProcessInfo {
            pid: 7,
            exe: "/usr/bin/app".into(),
            cmdline: vec![],
            uid: 1000,
        };
        let resolver = || {
            let mut m = std::collections::HashMap::new();
            m.insert(
                SocketTuple {
                    local: client,
                    remote: dst,
                },
                p.clone(),
            );
            Arc::new(StaticResolver(m))
        };
        let compile = |processes: &str| {
            let y = format!(
                "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: ns/app }}\nspec:\n  mode: protect\n  rules:\n    - id: r\n      direction: outbound\n      peer: any\n{processes}"
            );
            Arc::new(CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap())
        };
        let watch: PolicyWatch = Default::default();
        let a = Attribution::default();
        a.install(resolver());
        a.only_when(needed_by(watch.clone(), false));
        // No policy yet: looked up.
        assert_eq!(
            a.attribute(Direction::Outbound, client, dst),
            Some(p.clone())
        );
        watch.store(Some(compile("")));
        assert_eq!(a.attribute(Direction::Outbound, client, dst), None);
        // A reload that names a process turns lookups back on.
        watch.store(Some(compile("      processes: [/usr/bin/app]\n")));
        assert_eq!(
            a.attribute(Direction::Outbound, client, dst),
            Some(p.clone())
        );
        // Learning needs them whatever the policy says.
        let learning = Attribution::default();
        learning.install(resolver());
        learning.only_when(needed_by(watch.clone(), true));
        watch.store(Some(compile("")));
        assert_eq!(
            learning.attribute(Direction::Outbound, client, dst),
            Some(p)
        );
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
