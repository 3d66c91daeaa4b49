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

#[cfg(test)]
mod tests {
    use super::*;
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
