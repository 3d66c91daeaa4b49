//! Process attribution: which process in the pod owns a connection.
//!
//! The socket is found by its exact 4-tuple with netlink `sock_diag`
//! ([`sockdiag`]), which yields its inode; an index of socket inodes to
//! (pid, fd) built from `/proc/*/fd` ([`procfs`]) names the process. The
//! index is a cache: a hit is verified with one `readlink`, a miss costs a
//! targeted rescan (recently seen pids first, new pids next, stopping at the
//! first match) rate-limited per inode — never a /proc walk per connection.
//!
//! Requirements in Kubernetes: `shareProcessNamespace: true` on the pod (so
//! the sidecar sees the app's /proc), and either the same uid as the app or
//! both `CAP_DAC_READ_SEARCH` (listing another uid's `/proc/PID/fd`, a 0500
//! directory, is a plain permission check) and `CAP_SYS_PTRACE` (reading its
//! links and `/proc/PID/exe` is a ptrace-read access check); the README says
//! what that takes for a non-root sidecar. `sock_diag` needs no privilege for
//! the sockets of its own network namespace.

use std::net::SocketAddr;

use podwarden_policy::ProcessInfo;

pub mod procfs;
mod resolver;
pub mod sockdiag;

pub use resolver::{ProcfsResolver, ResolverStats};

/// A TCP connection as its owner sees it: `local` is the owning socket's
/// address, `remote` its peer. For an outbound flow through the proxy this
/// is (app's source, original destination); for an inbound flow it is
/// (app's listening address, the proxy's upstream source address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Finds the process owning a socket. Behind a trait so the data path can
/// be tested with a fake.
pub trait ProcessResolver: Send + Sync {
    fn resolve(&self, tuple: &SocketTuple) -> Option<ProcessInfo>;
}

/// A resolver that knows nothing (attribution disabled).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoResolver;

impl ProcessResolver for NoResolver {
    fn resolve(&self, _tuple: &SocketTuple) -> Option<ProcessInfo> {
        None
    }
}

/// A fixed answer per tuple, for tests of callers.
#[derive(Debug, Default, Clone)]
pub struct StaticResolver(pub std::collections::HashMap<SocketTuple, ProcessInfo>);

impl ProcessResolver for StaticResolver {
    fn resolve(&self, tuple: &SocketTuple) -> Option<ProcessInfo> {
        self.0.get(tuple).cloned()
    }
}
