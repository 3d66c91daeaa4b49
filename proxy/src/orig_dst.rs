//! Where the client meant to go. With iptables REDIRECT the kernel keeps the
//! original destination in conntrack (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST,
//! both option 80 at SOL_IP / SOL_IPV6); with TPROXY it is simply the
//! accepted socket's local address. Behind a trait so tests can point flows
//! at loopback servers.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;

pub trait OriginalDst: Send + Sync + 'static {
    fn original_dst(&self, stream: &TcpStream) -> io::Result<SocketAddr>;
}

/// The kernel's answer: SO_ORIGINAL_DST for IPv4 (including v4-mapped peers
/// on a dual-stack socket), IP6T_SO_ORIGINAL_DST for IPv6, falling back to
/// the local address when there is no NAT entry (TPROXY, or no redirect).
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelOriginalDst;

impl OriginalDst for KernelOriginalDst {
    fn original_dst(&self, stream: &TcpStream) -> io::Result<SocketAddr> {
        let local = normalize(stream.local_addr()?);
        let sock = SockRef::from(stream);
        let nat = if local.is_ipv4() {
            sock.original_dst_v4()
        } else {
            sock.original_dst_v6()
        };
        match nat.ok().and_then(|a| a.as_socket()) {
            Some(a) => Ok(normalize(a)),
            None => Ok(local),
        }
    }
}

/// A fixed destination, for tests and for running in front of one upstream.
#[derive(Debug, Clone, Copy)]
pub struct FixedOriginalDst(pub SocketAddr);

impl OriginalDst for FixedOriginalDst {
    fn original_dst(&self, _stream: &TcpStream) -> io::Result<SocketAddr> {
        Ok(self.0)
    }
}

/// `::ffff:a.b.c.d` → `a.b.c.d`, so records and policies see plain IPv4.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// True when dialing `dst` would connect back to one of our own listeners:
/// the connection would loop through the proxy forever.
pub fn is_loop(dst: SocketAddr, accepted_local: SocketAddr, listener_ports: &[u16]) -> bool {
    if dst == accepted_local {
        return true;
    }
    let ip = dst.ip();
    listener_ports.contains(&dst.port())
        && (ip.is_loopback() || ip.is_unspecified() || ip == accepted_local.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_mapped() {
        let a: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
        assert_eq!(normalize(a), "192.0.2.1:80".parse().unwrap());
        let b: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert_eq!(normalize(b), b);
    }

    #[test]
    fn loop_guard() {
        let local: SocketAddr = "192.0.2.2:15001".parse().unwrap();
        assert!(is_loop(local, local, &[15001, 15006]));
        assert!(is_loop(
            "127.0.0.1:15006".parse().unwrap(),
            local,
            &[15001, 15006]
        ));
        assert!(is_loop(
            "192.0.2.2:15006".parse().unwrap(),
            local,
            &[15001, 15006]
        ));
        assert!(!is_loop(
            "198.51.100.7:15001".parse().unwrap(),
            local,
            &[15001, 15006]
        ));
        assert!(!is_loop(
            "192.0.2.2:8080".parse().unwrap(),
            local,
            &[15001, 15006]
        ));
    }

    #[tokio::test]
    async fn kernel_falls_back_to_local_addr_without_nat() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert_eq!(KernelOriginalDst.original_dst(&s).unwrap(), addr);
    }
}
