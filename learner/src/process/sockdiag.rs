//! Exact socket lookup with netlink `sock_diag` (`INET_DIAG_REQ_V2` without
//! `NLM_F_DUMP`): one request, one answer, no table walk.

use std::io;
use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use netlink_sys::{Socket, SocketAddr as NlAddr};

/// What the kernel says about one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    pub inode: u64,
    pub uid: u32,
}

/// A connected `NETLINK_SOCK_DIAG` socket; not shared between threads.
pub struct SockDiag {
    sock: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    pub fn new() -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&NlAddr::new(0, 0))?;
        Ok(SockDiag {
            sock,
            buf: vec![0; 8192],
            seq: 0,
        })
    }

    /// The TCP socket with exactly this (local, remote) tuple, if any. An
    /// IPv4 tuple is also tried as v4-mapped on AF_INET6 sockets (dual-stack
    /// listeners accept IPv4 clients on IPv6 sockets).
    pub fn find_tcp(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> io::Result<Option<SocketOwner>> {
        if let Some(o) = self.query(local, remote)? {
            return Ok(Some(o));
        }
        if let (IpAddr::V4(l), IpAddr::V4(r)) = (local.ip(), remote.ip()) {
            let l6 = SocketAddr::new(IpAddr::V6(l.to_ipv6_mapped()), local.port());
            let r6 = SocketAddr::new(IpAddr::V6(r.to_ipv6_mapped()), remote.port());
            return self.query(l6, r6);
        }
        Ok(None)
    }

    fn query(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SocketOwner>> {
        let family = match (local.ip(), remote.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
            (IpAddr::V6(_), IpAddr::V6(_)) => AF_INET6,
            _ => return Ok(None),
        };
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST;
        hdr.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(
            hdr,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::all(),
                socket_id: SocketId {
                    source_port: local.port(),
                    destination_port: remote.port(),
                    source_address: local.ip(),
                    destination_address: remote.ip(),
                    interface_id: 0,
                    // INET_DIAG_NOCOOKIE: match by tuple only.
                    cookie: [0xff; 8],
                },
            })
            .into(),
        );
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.sock.send(&out, 0)?;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let rx = NetlinkMessage::<SockDiagMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = rx.header.length as usize;
                let stale = rx.header.sequence_number != self.seq;
                match rx.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) if !stale => {
                        return Ok(Some(SocketOwner {
                            inode: u64::from(r.header.inode),
                            uid: r.header.uid,
                        }));
                    }
                    // ENOENT (no such socket) and other errors: not found.
                    NetlinkPayload::Error(_) if !stale => return Ok(None),
                    NetlinkPayload::Done(_) if !stale => return Ok(None),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += len;
            }
        }
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, for comparing addresses across families.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
