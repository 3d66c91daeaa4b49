//! Opaque TCP relay (also TLS passthrough): bidirectional copy with
//! half-close and back-pressure, optionally through a stream inspector.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inspect::{StreamChain, StreamDir, Verdict};
use crate::io::{ByteCounts, Counted, Rewind};

/// Copy buffer per direction for the inspected relay (inspectors need the
/// bytes in user space; the plain relay splices instead).
const BUF: usize = 64 * 1024;

/// Most bytes relayed in user space before pairing for the kernel relay
/// (see `offload_relay`); a client still sending after that stays on splice.
const MAX_PRE_OFFLOAD_DRAIN: usize = 1 << 20;

/// Closes a socket with RST instead of FIN (SO_LINGER 0): the peer learns at
/// once that the connection was refused, not that it ended cleanly.
pub fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("relay i/o: {0}")]
    Io(#[from] io::Error),
    #[error("blocked by stream inspector: {rule}: {reason}")]
    Blocked { rule: String, reason: String },
}

/// Relays until both directions are done. Bytes are counted on `counts`
/// (read = from the client, written = to the client) even if it fails.
pub async fn relay(
    client: Rewind<TcpStream>,
    upstream: TcpStream,
    chain: Option<StreamChain>,
    counts: Arc<ByteCounts>,
) -> Result<(), RelayError> {
    match chain {
        None => {
            let (prefix, client) = client.into_parts();
            let mut upstream = upstream;
            if !prefix.is_empty() {
                // Bytes detection consumed go first, then zero-copy.
                upstream.write_all(&prefix).await?;
                counts
                    .read
                    .fetch_add(prefix.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            let replayed = prefix.len() as u64;
            let (mut client, mut upstream) = match crate::sockmap::active() {
                Some(offload) => {
                    match offload_relay(offload, client, upstream, replayed, &counts).await? {
                        Some(streams) => streams,
                        None => return Ok(()),
                    }
                }
                None => (client, upstream),
            };
            crate::splice::relay(&mut client, &mut upstream, &counts.read, &counts.written).await?;
            Ok(())
        }
        Some(chain) => relay_inspected(client, upstream, chain, counts).await,
    }
}

/// The kernel relay (see `crate::sockmap`). `Ok(None)`: relayed to the
/// end; `Ok(Some(..))`: declined before any byte moved in the kernel, the
/// streams go to the splice relay. Counts come from the client socket's
/// TCP counters at the end (the proxy never sees the bytes).
async fn offload_relay(
    offload: &'static crate::sockmap::Offload,
    client: TcpStream,
    upstream: TcpStream,
    replayed: u64,
    counts: &ByteCounts,
) -> Result<Option<(TcpStream, TcpStream)>, RelayError> {
    let outcomes = &crate::sockmap::metrics().outcomes;
    // The kernel hands the program whole skbs from the receive queue, also
    // one detection has partly read, whose read bytes would go out twice
    // (seen: 4096 duplicated bytes). So relay whatever is readable here
    // first; skbs arriving later are unread from their first byte.
    let (mut client, mut upstream, mut replayed) = (client, upstream, replayed);
    let mut buf = Vec::new();
    let mut drained = 0usize;
    loop {
        let waiting = crate::sockmap::sock::inq(client.as_raw_fd())?;
        if waiting == 0 {
            break;
        }
        if drained >= MAX_PRE_OFFLOAD_DRAIN {
            // A client that never pauses: this loop relays one way only,
            // so hand both directions to the splice relay instead.
            outcomes.with_label_values(&["declined"]).inc();
            return Ok(Some((client, upstream)));
        }
        buf.resize(waiting.min(BUF), 0);
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        upstream.write_all(&buf[..n]).await?;
        replayed += n as u64;
        drained += n;
        // Counted here in case pairing declines (the splice relay counts on).
        counts
            .read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let pair = match offload.pair(client, upstream, replayed) {
        Ok(Ok(pair)) => pair,
        Ok(Err(d)) => {
            outcomes.with_label_values(&["declined"]).inc();
            tracing::debug!(reason = %d.reason, "kernel relay declined; splice relay");
            return Ok(Some((d.client, d.upstream)));
        }
        Err(e) => {
            // Bytes may already have moved in the kernel: no fallback can
            // keep their order, so the connection fails (closed by drop).
            outcomes.with_label_values(&["failed"]).inc();
            return Err(e.into());
        }
    };
    outcomes.with_label_values(&["offloaded"]).inc();
    let (totals, r) = pair.run().await;
    use std::sync::atomic::Ordering::Relaxed;
    // `read` already holds the replayed prefix, which `from_client` includes.
    counts.read.store(totals.from_client, Relaxed);
    counts.written.store(totals.to_client, Relaxed);
    r?;
    Ok(None)
}

async fn relay_inspected(
    client: Rewind<TcpStream>,
    upstream: TcpStream,
    chain: StreamChain,
    counts: Arc<ByteCounts>,
) -> Result<(), RelayError> {
    let chain = Arc::new(Mutex::new(chain));
    let fds = [client.get_ref().as_raw_fd(), upstream.as_raw_fd()];
    let client = Counted::new(client, counts);
    let (cr, cw) = tokio::io::split(client);
    // Not `into_split`: its write half sends FIN on drop, which would turn
    // a blocking reset into a clean close for the server.
    let (ur, uw) = tokio::io::split(upstream);
    let up = pump(cr, uw, StreamDir::ClientToServer, chain.clone(), fds);
    let down = pump(ur, cw, StreamDir::ServerToClient, chain, fds);
    tokio::try_join!(up, down)?;
    Ok(())
}

async fn pump<R, W>(
    mut r: R,
    mut w: W,
    dir: StreamDir,
    chain: Arc<Mutex<StreamChain>>,
    fds: [RawFd; 2],
) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = r.read(&mut buf).await?;
        let v = match chain.lock() {
            // End of this direction: inspectors decide what they held back
            // for lookahead; a block turns the FIN into a reset.
            Ok(mut c) if n == 0 => c.on_end(dir),
            Err(p) if n == 0 => p.into_inner().on_end(dir),
            Ok(mut c) => c.on_data(dir, &buf[..n]),
            Err(p) => p.into_inner().on_data(dir, &buf[..n]),
        };
        if let Verdict::Block(b) = v {
            // `r` and `w` belong to the two different sockets, so both fds
            // are open while we hold them here.
            for fd in fds {
                // SAFETY: see above; the borrow ends before this function returns.
                let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                let _ = SockRef::from(&fd).set_linger(Some(Duration::ZERO));
            }
            return Err(RelayError::Blocked {
                rule: b.rule,
                reason: b.reason,
            });
        }
        if n == 0 {
            w.shutdown().await?;
            return Ok(());
        }
        w.write_all(&buf[..n]).await?;
    }
}
