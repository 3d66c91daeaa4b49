//! What the interception rules are made of: ports, UIDs, resolvers, exclusions.
//! Parsed and validated once from the command line so rule generation is pure.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Errors in `init`'s own inputs (flags). Each names the offending value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid port {0:?}: expected 1-65535")]
    Port(String),
    #[error("invalid port range {0:?}: expected LOW:HIGH with LOW <= HIGH, both 1-65535")]
    PortRange(String),
    #[error("invalid CIDR {0:?}: expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or 2001:db8::/32")]
    Cidr(String),
    #[error("the proxy ports must differ: {0}")]
    PortClash(String),
}

/// One destination port or an inclusive range, as iptables writes it (`80`, `8000:8100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub low: u16,
    pub high: u16,
}

impl PortSpec {
    pub fn single(port: u16) -> Self {
        Self {
            low: port,
            high: port,
        }
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}:{}", self.low, self.high)
        }
    }
}

fn parse_port(s: &str) -> Result<u16, ConfigError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(ConfigError::Port(s.to_string())),
    }
}

impl FromStr for PortSpec {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        // Accept both iptables' `a:b` and the more common `a-b`.
        match s.split_once([':', '-']) {
            None => Ok(PortSpec::single(parse_port(s)?)),
            Some((lo, hi)) => {
                let range_err = || ConfigError::PortRange(s.to_string());
                let low = parse_port(lo).map_err(|_| range_err())?;
                let high = parse_port(hi).map_err(|_| range_err())?;
                if low > high {
                    return Err(range_err());
                }
                Ok(PortSpec { low, high })
            }
        }
    }
}

/// Parses a comma-separated port list; empty items are ignored so `""` is the empty list.
pub fn parse_port_list(s: &str) -> Result<Vec<PortSpec>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(PortSpec::from_str)
        .collect()
}

/// Parses a CIDR; a bare address means that host (/32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, ConfigError> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        // iptables rejects host bits set in some versions; normalise like it would print.
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ConfigError::Cidr(s.to_string()))
}

/// Parses a comma-separated CIDR list; empty items are ignored.
pub fn parse_cidr_list(s: &str) -> Result<Vec<IpNet>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_cidr)
        .collect()
}

/// Which inbound ports go through the proxy (istio's `*`, empty, or a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundPorts {
    All,
    Only(Vec<PortSpec>),
}

impl FromStr for InboundPorts {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "*" {
            Ok(InboundPorts::All)
        } else {
            parse_port_list(s).map(InboundPorts::Only)
        }
    }
}

/// Which outbound destinations go through the proxy (`*`, empty, or a CIDR list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundCidrs {
    All,
    Only(Vec<IpNet>),
}

impl FromStr for OutboundCidrs {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "*" {
            Ok(OutboundCidrs::All)
        } else {
            parse_cidr_list(s).map(OutboundCidrs::Only)
        }
    }
}

/// Everything rule generation needs, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConfig {
    /// The proxy's UID: its traffic is neither redirected nor dropped.
    pub proxy_uid: u32,
    /// Optionally also exempt a GID (istio exempts both).
    pub proxy_gid: Option<u32>,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    pub admin_port: u16,
    /// DNS servers the pod is configured with; DNS to them goes to the proxy's listener.
    pub dns_resolvers: Vec<IpAddr>,
    pub include_inbound: InboundPorts,
    pub exclude_inbound_ports: Vec<PortSpec>,
    pub exclude_outbound_ports: Vec<PortSpec>,
    pub include_outbound: OutboundCidrs,
    pub exclude_outbound_cidrs: Vec<IpNet>,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            proxy_uid: 1337,
            proxy_gid: None,
            outbound_port: 15001,
            inbound_port: 15006,
            dns_port: 15053,
            admin_port: 15000,
            dns_resolvers: Vec::new(),
            include_inbound: InboundPorts::All,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            include_outbound: OutboundCidrs::All,
            exclude_outbound_cidrs: Vec::new(),
        }
    }
}

impl RuleConfig {
    /// Checks what clap cannot: the proxy's listener ports must be distinct and non-zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ports = [
            ("outbound", self.outbound_port),
            ("inbound", self.inbound_port),
            ("dns", self.dns_port),
            ("admin", self.admin_port),
        ];
        for (name, port) in ports {
            if port == 0 {
                return Err(ConfigError::Port(format!("{name} port 0")));
            }
        }
        for (i, (a, pa)) in ports.iter().enumerate() {
            for (b, pb) in &ports[i + 1..] {
                if pa == pb {
                    return Err(ConfigError::PortClash(format!(
                        "{a} and {b} ports are both {pa}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs_parse_singles_and_ranges() {
        assert_eq!("80".parse::<PortSpec>(), Ok(PortSpec::single(80)));
        assert_eq!(
            "8000:8100".parse::<PortSpec>(),
            Ok(PortSpec {
                low: 8000,
                high: 8100
            })
        );
        assert_eq!(
            " 8000-8100 ".parse::<PortSpec>().map(|p| p.to_string()),
            Ok("8000:8100".to_string())
        );
    }

    #[test]
    fn bad_ports_are_errors_not_panics() {
        for bad in ["0", "65536", "http", "-1", "10:5", "1:", ":", ""] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn port_lists_ignore_empty_items() {
        assert_eq!(parse_port_list(""), Ok(vec![]));
        assert_eq!(
            parse_port_list("22, 8080,"),
            Ok(vec![PortSpec::single(22), PortSpec::single(8080)])
        );
        assert!(parse_port_list("22,x").is_err());
    }

    #[test]
    fn cidrs_accept_bare_addresses_and_truncate_host_bits() {
        assert_eq!(
            parse_cidr("192.0.2.7").map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            parse_cidr("2001:db8::1").map(|n| n.to_string()),
            Ok("2001:db8::1/128".into())
        );
        assert_eq!(
            parse_cidr("192.0.2.7/24").map(|n| n.to_string()),
            Ok("192.0.2.0/24".into())
        );
        assert!(parse_cidr("192.0.2.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn selections_understand_star_and_empty() {
        assert_eq!("*".parse::<InboundPorts>(), Ok(InboundPorts::All));
        assert_eq!("".parse::<InboundPorts>(), Ok(InboundPorts::Only(vec![])));
        assert_eq!("*".parse::<OutboundCidrs>(), Ok(OutboundCidrs::All));
        assert_eq!(
            "10.0.0.0/8".parse::<OutboundCidrs>(),
            Ok(OutboundCidrs::Only(vec!["10.0.0.0/8".parse().unwrap()]))
        );
    }

    #[test]
    fn clashing_ports_are_rejected() {
        let ok = RuleConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let clash = RuleConfig {
            dns_port: 15001,
            ..RuleConfig::default()
        };
        assert!(matches!(clash.validate(), Err(ConfigError::PortClash(_))));
    }
}
