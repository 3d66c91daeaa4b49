//! RFC 5424 syslog over UDP (one message per datagram) or TCP (octet-counted
//! framing, RFC 6587 §3.4.1), reconnecting with backoff.

use std::sync::Arc;
use std::time::Duration;

use podwarden_policy::events::{EventKind, SecurityEvent};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the collector.
    pub address: String,
    pub transport: SyslogTransport,
    /// Syslog facility number; default 10 (authpriv: security messages).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// HOSTNAME field; default the event's pod.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Delivery attempts per batch (TCP reconnects between them).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_facility() -> u8 {
    10
}
fn default_attempts() -> u32 {
    3
}

/// Documentation enterprise number (RFC 5612) for our structured data id.
const SD_ID: &str = "podwarden@32473";

fn severity(kind: &EventKind) -> u8 {
    match kind {
        EventKind::PolicyReload { error: Some(_), .. } => 3, // err
        EventKind::Violation | EventKind::WafHit { .. } | EventKind::DlpHit { .. } => 4, // warning
        EventKind::DnsTunneling { .. } | EventKind::EventsDropped { .. } => 4,
        EventKind::WouldBlock | EventKind::NewProcess | EventKind::ModeChange { .. } => 5, // notice
        EventKind::PolicyReload { .. } => 6,                                               // info
    }
}

/// `"`, `\` and `]` must be escaped in structured-data values.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Header fields are printable US-ASCII without spaces, bounded in length.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// One RFC 5424 message: header, structured data with the fields a SIEM
/// indexes, and the whole event as JSON for the message body.
pub fn format_rfc5424(
    e: &SecurityEvent,
    facility: u8,
    hostname: Option<&str>,
    procid: u32,
) -> String {
    let pri = u16::from(facility.min(23)) * 8 + u16::from(severity(&e.kind));
    let host = header_field(hostname.unwrap_or(&e.pod), 255);
    let msgid = header_field(e.kind.name(), 32);
    format!(
        "<{pri}>1 {time} {host} podwarden {procid} {msgid} [{SD_ID} id=\"{id}\" workload=\"{w}\" rule=\"{rule}\" mode=\"{mode}\"] {json}",
        time = header_field(&e.time, 64),
        id = sd_escape(&e.id),
        w = sd_escape(&e.workload),
        rule = sd_escape(&e.rule),
        mode = e.mode.as_str(),
        json = e.to_json_line(),
    )
}

pub(crate) struct SyslogSender {
    config: SyslogConfig,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
}

impl SyslogSender {
    pub(crate) fn new(config: SyslogConfig) -> SyslogSender {
        SyslogSender {
            config,
            tcp: None,
            udp: None,
        }
    }

    pub(crate) async fn send(&mut self, batch: &[Arc<SecurityEvent>]) -> Result<(), String> {
        let pid = std::process::id();
        let msgs: Vec<String> = batch
            .iter()
            .map(|e| {
                format_rfc5424(
                    e,
                    self.config.facility,
                    self.config.hostname.as_deref(),
                    pid,
                )
            })
            .collect();
        let mut last = String::new();
        for attempt in 0..self.config.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(super::backoff(
                    attempt,
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                ))
                .await;
            }
            match self.try_send(&msgs).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    // Drop the connection so the next attempt reconnects.
                    self.tcp = None;
                    self.udp = None;
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn try_send(&mut self, msgs: &[String]) -> Result<(), String> {
        match self.config.transport {
            SyslogTransport::Tcp => {
                if self.tcp.is_none() {
                    self.tcp = Some(
                        TcpStream::connect(&self.config.address)
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                let Some(s) = self.tcp.as_mut() else {
                    return Err("no connection".into());
                };
                let mut buf = Vec::new();
                for m in msgs {
                    buf.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
                }
                s.write_all(&buf).await.map_err(|e| e.to_string())?;
                s.flush().await.map_err(|e| e.to_string())
            }
            SyslogTransport::Udp => {
                if self.udp.is_none() {
                    let target = tokio::net::lookup_host(&self.config.address)
                        .await
                        .map_err(|e| e.to_string())?
                        .next()
                        .ok_or("address resolved to nothing")?;
                    let bind = if target.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
                    sock.connect(target).await.map_err(|e| e.to_string())?;
                    self.udp = Some(sock);
                }
                let Some(s) = self.udp.as_ref() else {
                    return Err("no socket".into());
                };
                for m in msgs {
                    s.send(m.as_bytes()).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::Mode;
    use std::time::SystemTime;

    fn event() -> SecurityEvent {
        let mut e = SecurityEvent::new(
            "ev-1".into(),
            SystemTime::UNIX_EPOCH,
            "shop/checkout",
            "checkout-1",
            EventKind::Violation,
            Mode::Protect,
        );
        e.rule = "weird\"rule]".into();
        e
    }

    #[test]
    fn formats_rfc5424() {
        let m = format_rfc5424(&event(), 10, None, 77);
        // authpriv (10) * 8 + warning (4) = 84.
        assert!(
            m.starts_with("<84>1 1970-01-01T00:00:00.000Z checkout-1 podwarden 77 violation [podwarden@32473 id=\"ev-1\" workload=\"shop/checkout\" rule=\"weird\\\"rule\\]\" mode=\"protect\"] {"),
            "{m}"
        );
        assert!(m.ends_with('}'));
        assert!(!m.contains('\n'));
        let m = format_rfc5424(&event(), 4, Some("has space"), 1);
        assert!(m.contains(" hasspace podwarden "), "{m}");
    }

    #[tokio::test]
    async fn delivers_over_udp_and_tcp() {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = SyslogConfig {
            address: udp.local_addr().unwrap().to_string(),
            transport: SyslogTransport::Udp,
            facility: 10,
            hostname: None,
            attempts: 1,
        };
        let mut s = SyslogSender::new(cfg);
        s.send(&[Arc::new(event())]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = udp.recv(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("<84>1 "));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = SyslogConfig {
            address: listener.local_addr().unwrap().to_string(),
            transport: SyslogTransport::Tcp,
            facility: 10,
            hostname: None,
            attempts: 2,
        };
        let mut s = SyslogSender::new(cfg);
        s.send(&[Arc::new(event()), Arc::new(event())])
            .await
            .unwrap();
        let (mut conn, _) = listener.accept().await.unwrap();
        drop(s);
        let mut got = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut got)
            .await
            .unwrap();
        let text = String::from_utf8(got).unwrap();
        // Octet counting: "LEN SP MSG" twice.
        let (len, rest) = text.split_once(' ').unwrap();
        let len: usize = len.parse().unwrap();
        assert!(rest[..len].starts_with("<84>1 "));
        let (len2, rest2) = rest[len..].split_once(' ').unwrap();
        assert_eq!(rest2.len(), len2.parse::<usize>().unwrap());
    }
}
