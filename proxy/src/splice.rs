//! Opaque relay on Linux: small messages through a user-space buffer, bulk
//! zero-copy (socket → pipe → socket with splice(2)). Half-close and
//! back-pressure as in `copy_bidirectional`: a direction that reads EOF
//! shuts down the other socket's write side; a full buffer or pipe stops
//! reading until it drains.
//!
//! Why both: for request/response traffic (a redis PING, an RPC) splice
//! costs three syscalls per message (in, out, and the EAGAIN that clears
//! readiness) and pins pages, while a plain read that comes back short
//! already proves the socket drained (tokio clears readiness on it), so a
//! message costs one read and one write. A direction switches to splice for
//! good once a read fills the whole buffer: that stream is bulk.
//!
//! Readiness discipline (why the loop looks the way it does): a splice
//! from a socket into a pipe returns EAGAIN both when the socket has no
//! data and when the pipe is full. Only an EAGAIN we can attribute to the
//! socket may clear tokio's readiness, so socket reads go through `try_io`
//! only while the pipe is empty; with data already in the pipe we read
//! opportunistically and leave readiness alone.

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// Default pipe capacity on Linux (16 pages), what a pipe keeps when it
/// cannot grow.
const PIPE_CAP: usize = 64 * 1024;

/// What a bulk direction's pipe is grown to: four times fewer splice calls
/// and wake-ups per byte than the default. Only directions that proved bulk
/// get a pipe at all; past the per-user limit (`fs.pipe-user-pages-soft`)
/// the kernel refuses to grow it and it stays at [`PIPE_CAP`].
const BULK_PIPE_CAP: usize = 256 * 1024;

/// User-space buffer per direction until the stream proves bulk. A read
/// that fills it switches the direction to splice.
const SMALL_BUF: usize = 16 * 1024;

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes the pipe holds at most.
    cap: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by us.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a pipe fd we own; F_SETPIPE_SZ takes an int size
        // and returns the capacity set, or -1 (EPERM past the per-user
        // limit), in which case the pipe keeps its default capacity.
        let grown = unsafe {
            libc::fcntl(
                w.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                BULK_PIPE_CAP as libc::c_int,
            )
        };
        let cap = usize::try_from(grown).unwrap_or(PIPE_CAP);
        Ok(Pipe { r, w, cap })
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on fds that the callers keep open for the call.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// One direction: `from` → `to`, counting into `bytes`; buffered until the
/// stream is bulk, then spliced.
async fn one_way(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    bytes: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; SMALL_BUF];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Propagate the half-close; the other direction keeps going.
            let _ = SockRef::from(to.as_ref()).shutdown(Shutdown::Write);
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        if n == buf.len() {
            break;
        }
    }
    drop(buf);
    splice_one_way(from.as_ref(), to.as_ref(), bytes).await
}

/// The bulk phase of [`one_way`]: zero-copy through a pipe.
async fn splice_one_way(from: &TcpStream, to: &TcpStream, bytes: &AtomicU64) -> io::Result<()> {
    let pipe = Pipe::new()?;
    let (ffd, tfd) = (from.as_raw_fd(), to.as_raw_fd());
    let mut in_pipe = 0usize;
    let mut eof = false;
    loop {
        if !eof {
            if in_pipe == 0 {
                from.readable().await?;
                match from.try_io(Interest::READABLE, || {
                    splice(ffd, pipe.w.as_raw_fd(), pipe.cap)
                }) {
                    Ok(0) => eof = true,
                    Ok(n) => in_pipe += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            } else if in_pipe < pipe.cap {
                match splice(ffd, pipe.w.as_raw_fd(), pipe.cap - in_pipe) {
                    Ok(0) => eof = true,
                    Ok(n) => in_pipe += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if in_pipe > 0 {
            to.writable().await?;
            match to.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_raw_fd(), tfd, in_pipe)
            }) {
                Ok(n) => {
                    in_pipe -= n;
                    bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if eof && in_pipe == 0 {
            // Propagate the half-close; the other direction keeps going.
            let _ = SockRef::from(to).shutdown(Shutdown::Write);
            return Ok(());
        }
    }
}

/// Relays both directions until both have seen EOF (or one fails).
/// `sent` counts client → upstream bytes, `received` the other way.
pub async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    sent: &AtomicU64,
    received: &AtomicU64,
) -> io::Result<()> {
    // Borrowed halves: no lock between the directions, and dropping them
    // does not send FIN (only EOF does, above).
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    tokio::try_join!(one_way(cr, uw, sent), one_way(ur, cw, received))?;
    Ok(())
}
