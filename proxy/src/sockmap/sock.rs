//! Socket facts the kernel relay is steered and judged by: the socket
//! cookie (the map key), TCP byte counters (the drain barrier and the flow
//! record's bytes), and the receive low-water mark (to wake a socket's
//! verdict program for bytes that arrived before it was attached).

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

fn getsockopt<T: Copy>(fd: RawFd, level: i32, name: i32, out: &mut T) -> io::Result<usize> {
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` is valid for `len` writable bytes; `fd` is open for the
    // duration of the call (callers hold the socket).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            out as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(len as usize)
}

/// The kernel's 64-bit id of a socket (SO_COOKIE), what the BPF program
/// reads with `bpf_get_socket_cookie`.
pub fn cookie(fd: RawFd) -> io::Result<u64> {
    let mut c: u64 = 0;
    getsockopt(fd, libc::SOL_SOCKET, libc::SO_COOKIE, &mut c)?;
    Ok(c)
}

/// Byte counters of one TCP socket, from TCP_INFO and SIOCOUTQ, raw: both
/// count sequence numbers, so control flags are in them too (checked by the
/// tests below): `received` includes the peer's FIN once it arrived,
/// `queued` includes our SYN on the connecting side and our FIN once we
/// shut the write side. `relay` corrects for those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpCounts {
    /// In-order sequence numbers that arrived from the peer
    /// (tcpi_bytes_received), whether or not anyone has read them yet.
    pub received: u64,
    /// Sequence numbers put into this socket's send queue so far:
    /// acknowledged by the peer (tcpi_bytes_acked) plus still queued
    /// (SIOCOUTQ).
    pub queued: u64,
    /// Of `queued`, what is still in the send queue (SIOCOUTQ): not yet
    /// acknowledged by the peer.
    pub outq: u64,
}

// Offsets in `struct tcp_info` (include/uapi/linux/tcp.h), in u64 words:
// tcpi_bytes_acked at byte 120, tcpi_bytes_received at byte 128.
const ACKED_WORD: usize = 15;
const RECEIVED_WORD: usize = 16;

/// Reads the counters. TCP_INFO first, then SIOCOUTQ: the acked count only
/// grows, so reading it first can only make `queued` come out low, never
/// high — the barrier then waits a little longer instead of cutting data.
pub fn tcp_counts(fd: RawFd) -> io::Result<TcpCounts> {
    let mut info = [0u64; 32];
    let len = getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut info)?;
    if len < (RECEIVED_WORD + 1) * 8 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("TCP_INFO is {len} bytes, too short for byte counters (kernel < 4.1?)"),
        ));
    }
    let mut outq: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int to the pointer; `fd` is open.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut outq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let outq = outq.max(0) as u64;
    Ok(TcpCounts {
        received: info[RECEIVED_WORD],
        queued: info[ACKED_WORD] + outq,
        outq,
    })
}

/// Bytes waiting in the receive queue (SIOCINQ), before the socket has a
/// psock (sockmap's ioctl answers for its own queue instead).
pub fn inq(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer; `fd` is open.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Sets SO_RCVLOWAT to 1. Why: the kernel re-checks readiness when the
/// low-water mark is set (tcp_set_rcvlowat → tcp_data_ready), which runs
/// the freshly attached verdict program over bytes that arrived while the
/// socket had none; without it they would wait for the next segment.
pub fn kick(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            &one as *const libc::c_int as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The pending error of a socket (SO_ERROR), as an io::Error.
pub fn take_error(fd: RawFd) -> io::Error {
    let mut e: libc::c_int = 0;
    match getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, &mut e) {
        Ok(_) if e != 0 => io::Error::from_raw_os_error(e),
        Ok(_) => io::Error::new(io::ErrorKind::ConnectionAborted, "connection closed"),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn cookies_differ_per_socket_and_stay_put() {
        let (a, b) = pair();
        let ca = cookie(a.as_raw_fd()).unwrap();
        assert_ne!(ca, cookie(b.as_raw_fd()).unwrap());
        assert_eq!(ca, cookie(a.as_raw_fd()).unwrap());
    }

    #[test]
    fn counters_count_the_syn_and_fin_as_relay_expects() {
        // `a` connected (its SYN is acked), `b` was accepted.
        let (mut a, mut b) = pair();
        assert_eq!(tcp_counts(a.as_raw_fd()).unwrap().queued, 1);
        assert_eq!(tcp_counts(b.as_raw_fd()).unwrap().queued, 0);
        a.write_all(&[7u8; 10_000]).unwrap();
        assert_eq!(tcp_counts(a.as_raw_fd()).unwrap().queued, 10_001);
        a.shutdown(Shutdown::Write).unwrap();
        assert_eq!(tcp_counts(a.as_raw_fd()).unwrap().queued, 10_002);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), 10_000);
        // Payload plus the FIN.
        assert_eq!(tcp_counts(b.as_raw_fd()).unwrap().received, 10_001);
    }

    #[test]
    fn kick_is_accepted_on_tcp() {
        let (a, _b) = pair();
        kick(a.as_raw_fd()).unwrap();
    }
}
