//! Kernel relay for opaque TCP: once a connection is allowed and nothing
//! needs to see its bytes, the client socket and the upstream socket are
//! spliced in the kernel with BPF SOCKHASH + an SK_SKB stream-verdict
//! program, so payload never enters the proxy (what Cilium and Cloudflare
//! do). The user-space relays cost the proxy two wake-ups per message.
//!
//! Shape: two SOCKHASH maps keyed by socket cookie.
//! * `peers[cookie(X)] = Y` — where X's bytes go. No program: a socket in
//!   it only gets the psock the redirect needs.
//! * `verdict[cookie(X)] = X` — the program is attached to this map, so
//!   inserting X here is what starts redirecting X's bytes.
//!
//! Why two maps instead of one `map[cookie(A)] = B`: with one map, putting
//! B in the map attaches the program to B before A's entry exists, and B's
//! bytes arriving in between find no target and are dropped. With two, both
//! redirect targets exist before either program is attached.
//!
//! The per-connection part (pairing, end detection, the drain barrier
//! before a half-close, byte totals, the back-pressure governor) is in
//! [`relay`].
//!
//! What the kernel does not do (measured on 6.18, see the tests):
//! * push back: a redirected skb waits in the target socket's psock
//!   backlog, charged to no socket, while the source's TCP window stays
//!   open — with a stalled reader a writer got 256 MB (our cap) in. The
//!   relay's governor bounds it from user space by taking a source out of
//!   the verdict map while its backlog is large (a soft bound: 4 MB plus
//!   what arrives within one 10-200 ms check);
//! * order a FIN after the redirected bytes: the FIN is seen at once, the
//!   bytes move later from a workqueue, so the relay passes a half-close on
//!   only when the target's send queue holds every received byte;
//! * accept a bare FIN's empty skb as a redirect (it would set EPIPE on the
//!   target and stop its relay), so the program drops empty skbs.
//!
//! Startup: [`start`] loads once (needs CAP_BPF + CAP_NET_ADMIN), then
//! drops those capabilities; without them, `auto` logs once and the proxy
//! uses the user-space splice relay (`crate::splice`). Inserting sockets
//! later needs no capability (the map fd is the authority). Trade-off of
//! granting them: the sidecar starts with two powerful capabilities (BPF
//! programs, network administration in the pod's namespace) for the few
//! milliseconds before they are dropped; an exploit before that point, or
//! a bug in the dropping, would keep them. `off` is the default.

pub mod bpf;
pub mod caps;
pub mod relay;
pub mod sock;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use relay::{Declined, Pair, Totals};

/// `--opaque-offload`: which relay opaque TCP uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OffloadMode {
    /// The kernel relay when it loads, else the splice relay (logged once).
    Auto,
    /// The kernel relay or refuse to start.
    Sockmap,
    /// Always the user-space splice relay.
    #[default]
    Off,
}

/// Which relay opaque connections use in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveRelay {
    Sockmap,
    Splice,
}

impl ActiveRelay {
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveRelay::Sockmap => "sockmap",
            ActiveRelay::Splice => "splice",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("creating the {0} SOCKHASH: {1}")]
    Map(&'static str, io::Error),
    #[error("loading the stream-verdict program: {0}")]
    Load(io::Error),
    #[error("attaching the stream-verdict program: {0}")]
    Attach(io::Error),
    #[error("dropping CAP_BPF/CAP_NET_ADMIN after loading: {0}")]
    Caps(io::Error),
}

/// The loaded maps and program; process-wide, like the kernel objects.
pub struct Offload {
    pub(crate) verdict: OwnedFd,
    pub(crate) peers: OwnedFd,
    _prog: OwnedFd,
    /// Connections (pairs) the maps can hold; each takes two entries in each.
    pub(crate) max_pairs: u32,
    pub(crate) in_use: AtomicU32,
}

/// Default connection capacity of the maps (two entries per connection in
/// each map; a few MB of kernel memory at most).
pub const DEFAULT_MAX_PAIRS: u32 = 16_384;

static ACTIVE: OnceLock<Offload> = OnceLock::new();

impl Offload {
    /// Creates the maps, loads and attaches the program.
    pub fn load(max_pairs: u32) -> Result<Offload, OffloadError> {
        let entries = max_pairs.saturating_mul(2).max(2);
        let peers =
            bpf::create_sockhash("pw_peers", entries).map_err(|e| OffloadError::Map("peers", e))?;
        let verdict = bpf::create_sockhash("pw_verdict", entries)
            .map_err(|e| OffloadError::Map("verdict", e))?;
        let prog = bpf::load_verdict(&peers).map_err(OffloadError::Load)?;
        bpf::attach_verdict(&verdict, &prog).map_err(OffloadError::Attach)?;
        Ok(Offload {
            verdict,
            peers,
            _prog: prog,
            max_pairs,
            in_use: AtomicU32::new(0),
        })
    }

    /// Connections currently relayed in the kernel.
    pub fn pairs(&self) -> u32 {
        self.in_use.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Loads the kernel relay according to `mode`, then gives up CAP_BPF and
/// CAP_NET_ADMIN (when not root). Call once, before the process starts
/// other threads (capabilities are per thread). Logs which relay is used.
pub fn start(mode: OffloadMode) -> Result<ActiveRelay, OffloadError> {
    let relay = match mode {
        OffloadMode::Off => ActiveRelay::Splice,
        OffloadMode::Auto | OffloadMode::Sockmap => match Offload::load(DEFAULT_MAX_PAIRS) {
            Ok(o) => {
                let _ = ACTIVE.set(o);
                ActiveRelay::Sockmap
            }
            Err(e) if mode == OffloadMode::Auto => {
                tracing::warn!(error = %e, "opaque relay: splice (the sockmap kernel relay is unavailable; it needs CAP_BPF and CAP_NET_ADMIN at start-up)");
                ActiveRelay::Splice
            }
            Err(e) => return Err(e),
        },
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        caps::drop_offload_caps().map_err(OffloadError::Caps)?;
    }
    metrics().active.with_label_values(&[relay.as_str()]).set(1);
    tracing::info!(relay = relay.as_str(), ?mode, "opaque TCP relay");
    Ok(relay)
}

/// Installs an already loaded offload (tests, embedding). First one wins.
pub fn install(o: Offload) -> bool {
    ACTIVE.set(o).is_ok()
}

/// The kernel relay, if loaded.
pub fn active() -> Option<&'static Offload> {
    ACTIVE.get()
}

/// Offload metrics: which relay runs, and how connections were relayed.
pub struct OffloadMetrics {
    /// `podwarden_opaque_relay_info{relay}` = 1 for the active relay.
    pub active: prometheus::IntGaugeVec,
    /// `podwarden_opaque_offload_total{outcome}`: offloaded, declined
    /// (fell back to splice), failed (reset after a partial pairing).
    pub outcomes: prometheus::IntCounterVec,
}

static METRICS: OnceLock<OffloadMetrics> = OnceLock::new();

pub fn metrics() -> &'static OffloadMetrics {
    METRICS.get_or_init(|| OffloadMetrics {
        active: prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "podwarden_opaque_relay_info",
                "The relay opaque TCP uses (sockmap: in the kernel; splice: user space)",
            ),
            &["relay"],
        )
        .unwrap_or_else(|_| unreachable!("static metric definition")),
        outcomes: prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "podwarden_opaque_offload_total",
                "Opaque connections by how they were relayed when the kernel relay is on",
            ),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable!("static metric definition")),
    })
}

/// Registers the offload metrics with a proxy's registry.
pub fn register(registry: &prometheus::Registry) -> prometheus::Result<()> {
    let m = metrics();
    registry.register(Box::new(m.active.clone()))?;
    registry.register(Box::new(m.outcomes.clone()))
}
