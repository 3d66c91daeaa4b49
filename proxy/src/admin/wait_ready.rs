//! `podwarden-proxy wait-ready`: the postStart hook of a non-native sidecar
//! runs this so the kubelet holds the app's containers until the proxy
//! answers `/ready` (or the timeout passes; the pod then starts anyway and
//! the exit code says so in the events).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct WaitReadyArgs {
    /// Admin port on loopback [default: 15000]
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Full admin address instead of 127.0.0.1:<admin-port>
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// Give up (exit 1) after this many seconds
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
}

const POLL: Duration = Duration::from_millis(200);

/// Exit code: 0 once `/ready` answered 200, 1 at the deadline.
pub fn run(args: WaitReadyArgs) -> i32 {
    let addr = args
        .admin_addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], args.admin_port)));
    let timeout = Duration::from_secs(args.timeout_seconds);
    if wait(addr, timeout) {
        eprintln!("podwarden-proxy is ready ({addr})");
        0
    } else {
        eprintln!(
            "podwarden-proxy not ready at {addr} after {}s",
            args.timeout_seconds
        );
        1
    }
}

pub fn wait(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if probe(addr, left.min(Duration::from_secs(1))) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        std::thread::sleep(POLL.min(left));
    }
}

/// One `GET /ready`; true on a 200.
fn probe(addr: SocketAddr, budget: Duration) -> bool {
    if budget.is_zero() {
        return false;
    }
    let Ok(mut s) = TcpStream::connect_timeout(&addr, budget) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(budget));
    let _ = s.set_write_timeout(Some(budget));
    if s.write_all(b"GET /ready HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    status_is_ok(&head[..n])
}

fn status_is_ok(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split(' ');
    matches!(
        (parts.next(), parts.next()),
        (Some(v), Some("200")) if v.starts_with("HTTP/1.")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn status_line_parsing() {
        assert!(status_is_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_ok(b"HTTP/1.0 200 OK"));
        assert!(!status_is_ok(b"HTTP/1.1 503 Service Unavailable"));
        assert!(!status_is_ok(b""));
        assert!(!status_is_ok(b"SSH-2.0-x 200"));
    }

    #[test]
    fn times_out_when_nothing_listens_and_succeeds_once_ready() {
        // A port nobody listens on: refused fast, gives up at the deadline.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(!wait(addr, Duration::from_millis(300)));

        // A server that says 503 twice, then 200 until the test is done: a
        // probe that gave up (1 s budget) on a stalled machine is followed
        // by another that still gets its 200.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = done.clone();
        let server = std::thread::spawn(move || {
            let mut answered = 0;
            for c in l.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return answered;
                }
                let mut c = c.unwrap();
                let mut buf = [0u8; 256];
                let _ = c.read(&mut buf);
                let status = if answered < 2 {
                    "503 Not Ready"
                } else {
                    "200 OK"
                };
                let _ = write!(c, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                answered += 1;
            }
            answered
        });
        assert!(wait(addr, Duration::from_secs(60)));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(addr); // wakes the accept
        assert!(server.join().unwrap() >= 3, "ready before the 200");
    }
}
