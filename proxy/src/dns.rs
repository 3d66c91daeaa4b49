//! The DNS listener: `init` redirects the pod's DNS (to the resolvers it
//! names) here. Queries are forwarded to the configured upstream resolvers,
//! decided like any flow, recorded, and the A/AAAA answers are remembered
//! so later flows to those IPs carry the names (`Flow::peer_names`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use podwarden_policy::{AppProtocol, Direction, Flow, FlowRecord, RecordKind};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::debug;

use crate::proxy::Shared;
use crate::records::now_ms;

const MAX_UDP: usize = 4096;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CACHE: usize = 16_384;

/// IP → names the resolver returned for it, with their expiry.
#[derive(Default)]
pub struct NameCache {
    map: Mutex<HashMap<IpAddr, Vec<(String, Instant)>>>,
}

impl NameCache {
    pub fn insert(&self, ip: IpAddr, name: &str, ttl: u32) {
        let expiry = Instant::now() + Duration::from_secs(u64::from(ttl.clamp(1, 86_400)));
        let mut map = match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if map.len() >= MAX_CACHE && !map.contains_key(&ip) {
            let now = Instant::now();
            map.retain(|_, v| {
                v.retain(|(_, e)| *e > now);
                !v.is_empty()
            });
            if map.len() >= MAX_CACHE {
                return;
            }
        }
        let names = map.entry(ip).or_default();
        match names.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = entry.1.max(expiry),
            None => names.push((name.to_owned(), expiry)),
        }
    }

    /// Names still within their TTL for `ip`, sorted.
    pub fn names_for(&self, ip: IpAddr) -> Vec<String> {
        let map = match self.map.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now = Instant::now();
        let mut out: Vec<String> = map
            .get(&ip)
            .map(|v| {
                v.iter()
                    .filter(|(_, e)| *e > now)
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// Reads a (possibly compressed) name at `pos`; returns it and the offset
/// just past it in the original position. Bounded: no loops, no panics.
fn read_name(msg: &[u8], mut pos: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..64 {
        let len = *msg.get(pos)? as usize;
        if len & 0xC0 == 0xC0 {
            let ptr = ((len & 0x3F) << 8) | *msg.get(pos + 1)? as usize;
            end.get_or_insert(pos + 2);
            if ptr >= pos {
                return None; // pointers must go backwards
            }
            pos = ptr;
            continue;
        }
        if len == 0 {
            let after = end.unwrap_or(pos + 1);
            return Some((name.to_ascii_lowercase(), after));
        }
        let label = msg.get(pos + 1..pos + 1 + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        pos += 1 + len;
    }
    None
}

/// A/AAAA answers of a DNS response: (name, ip, ttl). The question name is
/// reported too for every address, so CNAME chains map back to what the app
/// asked for.
pub fn parse_answers(msg: &[u8]) -> Vec<(String, IpAddr, u32)> {
    let mut out = Vec::new();
    if msg.len() < 12 || msg[2] & 0x80 == 0 {
        return out; // not a response
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]) as usize;
    let an = u16::from_be_bytes([msg[6], msg[7]]) as usize;
    let mut pos = 12;
    let mut qname = None;
    for _ in 0..qd {
        let Some((n, p)) = read_name(msg, pos) else {
            return out;
        };
        qname.get_or_insert(n);
        pos = p + 4;
    }
    for _ in 0..an {
        let Some((owner, p)) = read_name(msg, pos) else {
            return out;
        };
        let Some(fixed) = msg.get(p..p + 10) else {
            return out;
        };
        let typ = u16::from_be_bytes([fixed[0], fixed[1]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let Some(rdata) = msg.get(p + 10..p + 10 + rdlen) else {
            return out;
        };
        let ip = match (typ, rdata.len()) {
            (1, 4) => Some(IpAddr::V4(Ipv4Addr::new(
                rdata[0], rdata[1], rdata[2], rdata[3],
            ))),
            (28, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(rdata);
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            }
            _ => None,
        };
        if let Some(ip) = ip {
            if let Some(q) = &qname {
                if *q != owner {
                    out.push((q.clone(), ip, ttl));
                }
            }
            out.push((owner, ip, ttl));
        }
        pos = p + 10 + rdlen;
    }
    out
}

/// REFUSED answer for a denied query: the query with QR set and RCODE 5.
pub fn refused(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut r = query.to_vec();
    r[2] |= 0x80;
    r[3] = (r[3] & 0xF0) | 5;
    Some(r)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

fn record(
    shared: &Shared,
    client: SocketAddr,
    upstream: SocketAddr,
    sent: u64,
    received: u64,
    started: Instant,
) {
    let start_ms = now_ms().saturating_sub(started.elapsed().as_millis() as u64);
    let mut flow = Flow::connection(Direction::Outbound, upstream, client);
    flow.protocol = AppProtocol::Dns;
    let decision = shared.hook.decide(&flow);
    shared.flows.record(FlowRecord {
        id: shared.flows.next_id(start_ms),
        start_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        flow,
        bytes_sent: sent,
        bytes_received: received,
        decision,
        kind: RecordKind::Connection,
        status: None,
    });
}

/// Starts UDP and TCP DNS listeners on `listen`, forwarding to `upstreams`
/// (first one answers; the rest are tried in order on failure).
/// Returns the bound UDP address.
pub async fn start(
    shared: Arc<Shared>,
    listen: SocketAddr,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<SocketAddr> {
    let udp = Arc::new(match bind_udp(listen) {
        Ok(s) => s,
        Err(_) if listen.is_ipv6() => {
            bind_udp(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), listen.port()))?
        }
        Err(e) => return Err(e),
    });
    let tcp = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(_) if listen.is_ipv6() => {
            TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), listen.port())).await?
        }
        Err(e) => return Err(e),
    };
    let bound = udp.local_addr()?;
    let upstreams = Arc::new(upstreams);
    let (s, u, ups) = (shared.clone(), udp.clone(), upstreams.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_UDP];
        loop {
            let (n, client) = match u.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "dns recv");
                    continue;
                }
            };
            let query = buf[..n].to_vec();
            tokio::spawn(udp_query(s.clone(), u.clone(), ups.clone(), client, query));
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, client)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(tcp_query(shared.clone(), upstreams.clone(), stream, client));
        }
    });
    Ok(bound)
}

async fn udp_query(
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    ups: Arc<Vec<SocketAddr>>,
    client: SocketAddr,
    q: Vec<u8>,
) {
    let started = Instant::now();
    let Some(&first) = ups.first() else { return };
    let mut probe = Flow::connection(Direction::Outbound, first, client);
    probe.protocol = AppProtocol::Dns;
    if !shared.hook.decide(&probe).is_allowed() {
        if let Some(r) = refused(&q) {
            let _ = sock.send_to(&r, client).await;
        }
        record(&shared, client, first, q.len() as u64, 0, started);
        return;
    }
    for &up in ups.iter() {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = UdpSocket::bind(bind).await else {
            continue;
        };
        if s.connect(up).await.is_err() || s.send(&q).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; MAX_UDP];
        match tokio::time::timeout(UPSTREAM_TIMEOUT, s.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                for (name, ip, ttl) in parse_answers(&buf[..n]) {
                    shared.names.insert(ip, &name, ttl);
                }
                let _ = sock.send_to(&buf[..n], client).await;
                record(&shared, client, up, q.len() as u64, n as u64, started);
                return;
            }
            _ => continue,
        }
    }
    shared.metrics.error(Direction::Outbound, "dns_upstream");
}

async fn tcp_query(
    shared: Arc<Shared>,
    ups: Arc<Vec<SocketAddr>>,
    mut client: TcpStream,
    peer: SocketAddr,
) {
    let started = Instant::now();
    for &up in ups.iter() {
        let Ok(Ok(mut u)) = tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(up)).await
        else {
            continue;
        };
        let r = tokio::io::copy_bidirectional(&mut client, &mut u).await;
        let (sent, received) = r.unwrap_or((0, 0));
        record(
            &shared,
            crate::orig_dst::normalize(peer),
            up,
            sent,
            received,
            started,
        );
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Response for `www.example.com` → CNAME `edge.example.net` → A 192.0.2.7.
    fn response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        // CNAME: owner = pointer to question name (offset 12)
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
        let target = b"\x04edge\x07example\x03net\x00";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_off = m.len();
        m.extend_from_slice(target);
        // A: owner = pointer to the CNAME target
        m.extend_from_slice(&[
            0xC0,
            target_off as u8,
            0,
            1,
            0,
            1,
            0,
            0,
            1,
            0x2C,
            0,
            4,
            192,
            0,
            2,
            7,
        ]);
        m
    }

    #[test]
    fn parses_cname_chain_answers() {
        let a = parse_answers(&response());
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            a,
            vec![
                ("www.example.com".into(), ip, 300),
                ("edge.example.net".into(), ip, 300)
            ]
        );
    }

    #[test]
    fn truncated_and_looping_input_is_harmless() {
        let r = response();
        for n in 0..r.len() {
            let _ = parse_answers(&r[..n]);
        }
        let mut looped = vec![0, 0, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xC0, 12]);
        assert!(parse_answers(&looped).is_empty());
    }

    #[test]
    fn cache_respects_ttl() {
        let c = NameCache::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        c.insert(ip, "b.example", 60);
        c.insert(ip, "a.example", 60);
        c.insert(ip, "a.example", 60);
        assert_eq!(c.names_for(ip), vec!["a.example", "b.example"]);
        assert!(c.names_for("192.0.2.8".parse().unwrap()).is_empty());
    }

    #[test]
    fn refused_sets_rcode() {
        let q = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let r = refused(&q).unwrap();
        assert_eq!((r[2] & 0x80, r[3] & 0x0F), (0x80, 5));
        assert!(refused(&q[..5]).is_none());
    }
}
