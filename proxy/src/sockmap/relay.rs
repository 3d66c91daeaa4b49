//! One offloaded connection: pair the two sockets in the maps, wait for the
//! ends, pass each half-close on only after every byte before it reached
//! the other socket, and unpair.
//!
//! Ends are watched with a private epoll instance per connection in which
//! the sockets are registered for EPOLLRDHUP only (ERR and HUP always come
//! along). Why not tokio's registration: it asks for EPOLLIN too, and the
//! kernel calls the socket's data_ready after every redirected batch, so
//! the proxy would wake for every message it no longer handles. Readiness
//! wake-ups carry an EPOLLIN/EPOLLOUT key that the private epoll filters
//! out; FIN and errors (state change, error report) do not. Tokio watches
//! the private epoll fd itself (AsyncFd), so no thread is spent per pair.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::net::TcpStream;

use super::{bpf, sock, Offload};

/// Longest pause between two checks of a pending drain barrier.
const MAX_BARRIER_PAUSE: Duration = Duration::from_millis(20);

/// Bytes that went each way, from the sockets' own counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes the client sent (all of them, including those detection read).
    pub from_client: u64,
    /// Bytes queued to the client.
    pub to_client: u64,
}

/// Why pairing did not happen; the streams come back for the user-space relay.
pub struct Declined {
    pub client: TcpStream,
    pub upstream: TcpStream,
    pub reason: io::Error,
}

/// The two sockets sit in the maps; the kernel relays between them.
pub struct Pair {
    offload: &'static Offload,
    client: std::net::TcpStream,
    upstream: std::net::TcpStream,
    keys: [u64; 2],
    verdicts: usize,
    /// `queued` of client and upstream when paired, less the bytes we had
    /// written ourselves (the replayed prefix): what is not payload (the
    /// connecting side's SYN).
    queued_base: [u64; 2],
}

impl Drop for Pair {
    /// Out of the maps before the sockets close: verdict entries first so
    /// no program runs against a half-removed pair, then the peer entries.
    /// (Closing alone would unlink them too; this keeps the capacity count
    /// honest and the order explicit.)
    fn drop(&mut self) {
        let o = self.offload;
        for key in &self.keys[..self.verdicts] {
            let _ = bpf::remove(&o.verdict, *key);
        }
        for key in &self.keys {
            let _ = bpf::remove(&o.peers, *key);
        }
        o.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one direction is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leg {
    /// Bytes flow; no FIN seen yet.
    Open,
    /// The source sent FIN; waiting until the target has every byte.
    Draining,
    /// FIN passed on to the target.
    Done,
}

/// Whether a half-close may be passed on: the target socket has had every
/// byte the source received put into its send queue. `target_queued` may
/// include bytes we wrote ourselves before pairing (detection's replay);
/// those were received on the source too, so the comparison holds.
pub fn drained(source_received: u64, target_queued: u64) -> bool {
    target_queued >= source_received
}

impl Offload {
    /// Puts `client` and `upstream` in the maps. Declines (handing the
    /// streams back, nothing redirected yet) when the maps are full or an
    /// insert fails before any program is attached to either socket. An
    /// error after the first attachment is returned as such: the client's
    /// bytes may already be flowing in the kernel, so falling back to the
    /// user-space relay could reorder them — the caller resets instead.
    /// `replayed`: bytes already written to `upstream` (detection's prefix).
    pub fn pair(
        &'static self,
        client: TcpStream,
        upstream: TcpStream,
        replayed: u64,
    ) -> Result<Result<Pair, Declined>, io::Error> {
        let decline = |client, upstream, reason| {
            Ok(Err(Declined {
                client,
                upstream,
                reason,
            }))
        };
        let (cfd, ufd) = (client.as_raw_fd(), upstream.as_raw_fd());
        let keys = match (sock::cookie(cfd), sock::cookie(ufd)) {
            (Ok(c), Ok(u)) => [c, u],
            (Err(e), _) | (_, Err(e)) => return decline(client, upstream, e),
        };
        let queued_base = match (sock::tcp_counts(cfd), sock::tcp_counts(ufd)) {
            (Ok(c), Ok(u)) => [c.queued, u.queued.saturating_sub(replayed)],
            (Err(e), _) | (_, Err(e)) => return decline(client, upstream, e),
        };
        if self.in_use.fetch_add(1, Ordering::Relaxed) >= self.max_pairs {
            self.in_use.fetch_sub(1, Ordering::Relaxed);
            return decline(
                client,
                upstream,
                io::Error::new(io::ErrorKind::OutOfMemory, "offload maps full"),
            );
        }
        // Where each socket's bytes go: peers[client] = upstream and back.
        // A socket in `peers` gets a psock but no program, so nothing moves yet.
        let undo = |n: usize| {
            for key in &keys[..n] {
                let _ = bpf::remove(&self.peers, *key);
            }
            self.in_use.fetch_sub(1, Ordering::Relaxed);
        };
        if let Err(e) = bpf::insert(&self.peers, keys[0], ufd) {
            undo(0);
            return decline(client, upstream, e);
        }
        if let Err(e) = bpf::insert(&self.peers, keys[1], cfd) {
            undo(1);
            return decline(client, upstream, e);
        }
        // Attach the program to the client socket; its bytes now go to the
        // upstream in the kernel.
        if let Err(e) = bpf::insert(&self.verdict, keys[0], cfd) {
            undo(2);
            return decline(client, upstream, e);
        }
        // From here on the pair owns the cleanup (Drop), whatever happens.
        let (client, upstream) = match (client.into_std(), upstream.into_std()) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                // into_std only fails to deregister from the reactor; the
                // fds are gone with the tokio streams. Unpair and give up.
                for key in &keys[..1] {
                    let _ = bpf::remove(&self.verdict, *key);
                }
                undo(2);
                return Err(e);
            }
        };
        let mut pair = Pair {
            offload: self,
            client,
            upstream,
            keys,
            verdicts: 1,
            queued_base,
        };
        // Bytes that arrived before the program was attached.
        sock::kick(cfd)?;
        bpf::insert(&self.verdict, keys[1], ufd)?;
        pair.verdicts = 2;
        sock::kick(ufd)?;
        Ok(Ok(pair))
    }
}

impl Pair {
    /// Waits for both ends. Returns the byte totals (always, also after an
    /// error) and how it ended.
    pub async fn run(self) -> (Totals, io::Result<()>) {
        // legs[0]: client → upstream, legs[1]: upstream → client.
        let mut legs = [Leg::Open, Leg::Open];
        let r = self.wait_ends(&mut legs).await;
        let c = sock::tcp_counts(self.client.as_raw_fd()).unwrap_or_default();
        // FINs take a sequence number each: the client's (once its leg is no
        // longer open) and ours to the client (once that leg is done).
        let fin_in = u64::from(legs[0] != Leg::Open);
        let fin_out = u64::from(legs[1] == Leg::Done);
        let totals = Totals {
            from_client: c.received.saturating_sub(fin_in),
            to_client: c.queued.saturating_sub(self.queued_base[0] + fin_out),
        };
        (totals, r)
    }

    async fn wait_ends(&self, legs: &mut [Leg; 2]) -> io::Result<()> {
        let (cfd, ufd) = (self.client.as_raw_fd(), self.upstream.as_raw_fd());
        let watch = Watch::new(&[cfd, ufd])?;
        let ends = [(cfd, ufd), (ufd, cfd)];
        let mut gov = Governor::default();
        let mut barrier_pause = Duration::from_millis(1);
        loop {
            for i in 0..2 {
                if legs[i] == Leg::Done {
                    continue;
                }
                let (src, dst) = ends[i];
                let (s, d) = (sock::tcp_counts(src)?, sock::tcp_counts(dst)?);
                // Once the source's FIN arrived it is counted: one less.
                let received = s
                    .received
                    .saturating_sub(u64::from(legs[i] == Leg::Draining));
                let queued = d.queued.saturating_sub(self.queued_base[1 - i]);
                match gov.step(i, received, queued, d.outq) {
                    Some(Throttle::Pause) => bpf::remove(&self.offload.verdict, self.keys[i])?,
                    Some(Throttle::Resume) => {
                        bpf::insert(&self.offload.verdict, self.keys[i], src)?;
                        sock::kick(src)?;
                    }
                    None => {}
                }
                if legs[i] == Leg::Draining && !gov.paused[i] && drained(received, queued) {
                    // Every byte before the FIN is in the target's send
                    // queue, ahead of the FIN this queues.
                    let target = if i == 0 { &self.upstream } else { &self.client };
                    target.shutdown(Shutdown::Write)?;
                    legs[i] = Leg::Done;
                }
            }
            if *legs == [Leg::Done, Leg::Done] {
                return Ok(());
            }
            let mut wait = gov.next_tick();
            if legs.contains(&Leg::Draining) {
                // The psock backlog moves the last bytes from a workqueue;
                // poll its progress with backoff.
                wait = wait.min(barrier_pause);
                barrier_pause = (barrier_pause * 2).min(MAX_BARRIER_PAUSE);
            }
            let events = match tokio::time::timeout(wait, watch.wait()).await {
                Ok(r) => r?,
                Err(_) => continue,
            };
            for (fd, ev) in events {
                let i = if fd == cfd { 0 } else { 1 };
                if ev & (libc::EPOLLERR as u32) != 0 {
                    return Err(sock::take_error(fd));
                }
                if ev & (libc::EPOLLRDHUP as u32) != 0 && legs[i] == Leg::Open {
                    legs[i] = Leg::Draining;
                    barrier_pause = Duration::from_millis(1);
                } else if ev & (libc::EPOLLHUP as u32) != 0 && !legs_done_for(fd, cfd, legs) {
                    // Both directions of this socket are shut but we have
                    // not finished relaying: it was torn down under us.
                    return Err(sock::take_error(fd));
                }
            }
        }
    }
}

/// Payload redirected but not yet in the target's send queue above which
/// a direction is paused. Why a governor at all: the kernel does not push
/// back — redirected skbs wait in the target's psock backlog, charged to no
/// socket, and the source's TCP window stays open (measured: a writer gets
/// hundreds of MB in with a stalled reader). Pausing = taking the source
/// out of the verdict map: its bytes then stay in its own receive queue,
/// whose window closes as usual.
const BACKLOG_HIGH: u64 = 4 << 20;
/// A paused direction resumes once the target's send queue drained below
/// this: its reader is reading again.
const RESUME_OUTQ: u64 = 256 << 10;
/// Check cadence while bytes move; doubles up to [`IDLE_TICK`] while
/// nothing does (idle connections should not cost wake-ups). The backlog
/// can overshoot `BACKLOG_HIGH` by what arrives within one tick.
const ACTIVE_TICK: Duration = Duration::from_millis(10);
const IDLE_TICK: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Throttle {
    Pause,
    Resume,
}

/// Pure state of the back-pressure governor (both directions).
#[derive(Debug)]
struct Governor {
    paused: [bool; 2],
    last_received: [u64; 2],
    tick: Duration,
    moved: bool,
}

impl Default for Governor {
    fn default() -> Self {
        Governor {
            paused: [false; 2],
            last_received: [0; 2],
            tick: ACTIVE_TICK,
            moved: false,
        }
    }
}

impl Governor {
    /// One look at direction `i`: payload `received` on its source, `queued`
    /// on its target, `target_outq` still unacknowledged there.
    fn step(&mut self, i: usize, received: u64, queued: u64, target_outq: u64) -> Option<Throttle> {
        if received != self.last_received[i] {
            self.last_received[i] = received;
            self.moved = true;
        }
        if self.paused[i] {
            if target_outq < RESUME_OUTQ {
                self.paused[i] = false;
                return Some(Throttle::Resume);
            }
        } else if received.saturating_sub(queued) > BACKLOG_HIGH {
            self.paused[i] = true;
            return Some(Throttle::Pause);
        }
        None
    }

    /// How long until the next look.
    fn next_tick(&mut self) -> Duration {
        self.tick = if self.moved || self.paused.contains(&true) {
            ACTIVE_TICK
        } else {
            (self.tick * 2).min(IDLE_TICK)
        };
        self.moved = false;
        self.tick
    }
}

/// HUP is expected on a socket once it sent its FIN and we passed ours on.
fn legs_done_for(fd: RawFd, cfd: RawFd, legs: &[Leg; 2]) -> bool {
    let (own, other) = if fd == cfd { (0, 1) } else { (1, 0) };
    legs[own] != Leg::Open && legs[other] == Leg::Done
}

/// A private epoll instance watching sockets for FIN and errors only.
struct Watch {
    ep: AsyncFd<OwnedFd>,
}

impl Watch {
    fn new(fds: &[RawFd]) -> io::Result<Watch> {
        // SAFETY: plain syscall; the returned fd is owned right below.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 returned a new fd that nothing else owns.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        for &fd in fds {
            let mut ev = libc::epoll_event {
                // Edge-triggered: a FIN is reported once per state change,
                // not on every wait until we are done with the socket.
                events: (libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: fd as u64,
            };
            // SAFETY: both fds are open; `ev` is a valid epoll_event.
            let rc = unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: an OwnedFd stays open and keeps its fd until the AsyncFd
        // (which owns it) is dropped.
        let ep = unsafe { AsyncFd::register_with_interest(ep, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(Watch { ep })
    }

    /// Waits until at least one event, returns (fd, events) pairs.
    async fn wait(&self) -> io::Result<Vec<(RawFd, u32)>> {
        loop {
            let mut guard = self.ep.readable().await?;
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: `evs` has room for the 4 events we allow; timeout 0.
            let n =
                unsafe { libc::epoll_wait(self.ep.get_ref().as_raw_fd(), evs.as_mut_ptr(), 4, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                guard.clear_ready();
                continue;
            }
            return Ok(evs[..n as usize]
                .iter()
                .map(|e| (e.u64 as RawFd, e.events))
                .collect());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_waits_for_every_received_byte() {
        assert!(!drained(1000, 999));
        assert!(drained(1000, 1000));
        // Detection's replayed prefix counts on both sides.
        assert!(drained(0, 0));
    }

    #[test]
    fn governor_pauses_a_growing_backlog_and_resumes_when_the_reader_drains() {
        let mut g = Governor::default();
        assert_eq!(g.step(0, 1 << 20, 1 << 20, 0), None);
        assert_eq!(g.step(0, 10 << 20, 5 << 20, 4 << 20), Some(Throttle::Pause));
        // Still full: stays paused, and keeps looking often.
        assert_eq!(g.step(0, 10 << 20, 6 << 20, 4 << 20), None);
        assert_eq!(g.next_tick(), ACTIVE_TICK);
        assert_eq!(g.step(0, 10 << 20, 10 << 20, 1000), Some(Throttle::Resume));
        // The other direction is independent.
        assert_eq!(g.step(1, 0, 0, 0), None);
    }

    #[test]
    fn governor_backs_off_on_idle_connections() {
        let mut g = Governor::default();
        g.step(0, 5, 5, 0);
        assert_eq!(g.next_tick(), ACTIVE_TICK);
        let mut t = Duration::ZERO;
        for _ in 0..10 {
            g.step(0, 5, 5, 0);
            t = g.next_tick();
        }
        assert_eq!(t, IDLE_TICK);
        g.step(0, 6, 6, 0);
        assert_eq!(g.next_tick(), ACTIVE_TICK);
    }

    #[test]
    fn hup_is_an_error_until_both_ways_are_done() {
        let c = 3;
        assert!(!legs_done_for(c, c, &[Leg::Open, Leg::Done]));
        assert!(!legs_done_for(c, c, &[Leg::Draining, Leg::Open]));
        assert!(legs_done_for(c, c, &[Leg::Done, Leg::Done]));
        assert!(legs_done_for(4, c, &[Leg::Done, Leg::Draining]));
    }
}
