//! `podwarden-proxy init`: the pod's interception rules (iptables/ip6tables).
//!
//! Rules are generated as text by pure functions ([`rules`], [`script`]) and
//! applied with `iptables-restore --noflush` / `ip6tables-restore --noflush`,
//! one atomic transaction per table. Everything lives in chains named
//! `PODWARDEN_*` plus one jump per built-in chain, which is what `--cleanup`
//! removes and what a second run replaces.
//!
//! Not covered by netfilter: AF_PACKET sockets bypass it entirely, so the app
//! container must not have CAP_NET_RAW (the sidecar injection drops it).

pub mod config;
pub mod iptables;
pub mod rules;
pub mod script;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use config::{InboundPorts, OutboundCidrs, PortSpec, RuleConfig};
use iptables::{Backend, Tools};
use rules::Family;

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// UID the proxy runs as: its traffic is neither redirected nor dropped.
    #[arg(long, default_value_t = 1337)]
    pub proxy_uid: u32,
    /// Also exempt traffic of this GID (istio exempts its proxy's GID too).
    #[arg(long)]
    pub proxy_gid: Option<u32>,
    /// Port of the proxy's outbound listener (app TCP out is redirected here).
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    /// Port of the proxy's inbound listener (TCP into the pod is redirected here).
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    /// Port of the proxy's DNS listener (UDP and TCP).
    #[arg(long, default_value_t = 15053)]
    pub dns_port: u16,
    /// Port of the proxy's admin server; never redirected, so it stays reachable.
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// A DNS server the pod uses (repeatable). DNS (udp and tcp 53) to it from
    /// anyone but the proxy goes to the proxy's DNS listener; all other UDP is dropped.
    #[arg(long = "dns-resolver", value_name = "IP")]
    pub dns_resolvers: Vec<IpAddr>,
    /// Also take DNS servers from the `nameserver` lines of this file (e.g. /etc/resolv.conf).
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// Inbound ports redirected to the proxy: `*` (all, default), a list like
    /// `80,8000:8100`, or empty for none.
    #[arg(long, value_name = "PORTS", default_value = "*")]
    pub include_inbound_ports: InboundPorts,
    /// Inbound ports that reach the app directly (comma-separated, ranges `a:b`).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<PortSpec>,
    /// Outbound destination ports that bypass the proxy (TCP only; other
    /// protocols stay dropped).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<PortSpec>,
    /// Outbound destinations redirected to the proxy: `*` (all, default) or CIDRs.
    #[arg(long, value_name = "CIDRS", default_value = "*")]
    pub include_outbound_cidrs: OutboundCidrs,
    /// Outbound destinations that bypass the proxy (TCP only), comma-separated CIDRs.
    #[arg(long, value_name = "CIDRS", value_delimiter = ',', value_parser = config::parse_cidr)]
    pub exclude_outbound_cidrs: Vec<ipnet::IpNet>,
    /// Which iptables to run: whatever `iptables-restore` is (auto), or force nft/legacy.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Write IPv4 rules only (IPv6 is also skipped when the kernel has no IPv6).
    #[arg(long)]
    pub no_ipv6: bool,
    /// Print the rules (or, with --cleanup, what would be removed) instead of applying them.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove every chain and jump rule init added, and nothing else.
    #[arg(long)]
    pub cleanup: bool,
}

/// Nameserver addresses of a resolv.conf; lines that are not `nameserver <ip>` are skipped.
pub fn parse_resolv_conf(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            match (t.next(), t.next()) {
                // Zone ids (fe80::1%eth0) cannot be matched by iptables; skip them.
                (Some("nameserver"), Some(ip)) => ip.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

impl InitArgs {
    fn rule_config(&self) -> anyhow::Result<RuleConfig> {
        let mut dns_resolvers = self.dns_resolvers.clone();
        if let Some(path) = &self.resolv_conf {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --resolv-conf {}", path.display()))?;
            dns_resolvers.extend(parse_resolv_conf(&text));
        }
        dns_resolvers.sort();
        dns_resolvers.dedup();
        let cfg = RuleConfig {
            proxy_uid: self.proxy_uid,
            proxy_gid: self.proxy_gid,
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            dns_port: self.dns_port,
            admin_port: self.admin_port,
            dns_resolvers,
            include_inbound: self.include_inbound_ports.clone(),
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            include_outbound: self.include_outbound_cidrs.clone(),
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn families(&self) -> Vec<Family> {
        let mut f = vec![Family::V4];
        if self.no_ipv6 {
            return f;
        }
        // Dry runs show both families whatever this machine has.
        if self.dry_run || kernel_has_ipv6() {
            f.push(Family::V6);
        } else {
            tracing::warn!("kernel has no IPv6 (/proc/net/if_inet6 missing): skipping ip6tables");
        }
        f
    }
}

fn kernel_has_ipv6() -> bool {
    Path::new("/proc/net/if_inet6").exists()
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let cfg = args.rule_config()?;
    if cfg.dns_resolvers.is_empty() && !args.cleanup {
        tracing::warn!(
            "no --dns-resolver given: the pod's UDP DNS will be dropped like all other UDP"
        );
    }
    let families = args.families();

    if args.dry_run && !args.cleanup {
        for f in families {
            print!("{}", rules::desired(&cfg, f).render());
        }
        return Ok(());
    }

    for f in families {
        let tools = Tools::locate(f, args.backend)?;
        let saved = script::parse_save(&tools.save()?);
        let text = if args.cleanup {
            script::cleanup_script(&saved)
        } else {
            script::apply_script(&saved, &rules::desired(&cfg, f))
        };
        if args.dry_run {
            println!(
                "# {} (would be fed to {} --noflush)",
                f.name(),
                tools.restore.display()
            );
            print!("{text}");
            continue;
        }
        if text.is_empty() {
            println!("podwarden init: {}: nothing of ours to remove", f.name());
            continue;
        }
        tools
            .restore(&text)
            .with_context(|| format!("applying podwarden's {} rules", f.name()))?;
        let what = if args.cleanup { "removed" } else { "applied" };
        println!(
            "podwarden init: {what} {} rules with {}",
            f.name(),
            tools.restore.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }

    fn parse(args: &[&str]) -> Result<InitArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("init").chain(args.iter().copied())).map(|c| c.init)
    }

    #[test]
    fn defaults_are_istio_like() {
        let cfg = parse(&[]).unwrap().rule_config().unwrap();
        assert_eq!(cfg, RuleConfig::default());
    }

    #[test]
    fn flags_reach_the_rule_config() {
        let a = parse(&[
            "--proxy-uid",
            "2000",
            "--dns-resolver",
            "192.0.2.53",
            "--dns-resolver",
            "2001:db8::53",
            "--exclude-inbound-ports",
            "22,9000:9010",
            "--exclude-outbound-cidrs",
            "198.51.100.0/24,2001:db8:1::/48",
            "--include-inbound-ports",
            "",
            "--backend",
            "legacy",
        ])
        .unwrap();
        assert_eq!(a.backend, Backend::Legacy);
        let cfg = a.rule_config().unwrap();
        assert_eq!(cfg.proxy_uid, 2000);
        assert_eq!(cfg.dns_resolvers.len(), 2);
        assert_eq!(cfg.exclude_inbound_ports.len(), 2);
        assert_eq!(cfg.exclude_outbound_cidrs.len(), 2);
        assert_eq!(cfg.include_inbound, InboundPorts::Only(vec![]));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let e = parse(&["--exclude-inbound-ports", "22,http"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid port \"http\""), "{e}");
        let e = parse(&["--exclude-outbound-cidrs", "10.0.0.0/40"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("invalid CIDR"), "{e}");
        let e = parse(&["--dns-resolver", "dns.example"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("dns.example"), "{e}");
        let clash = parse(&["--dns-port", "15006"]).unwrap().rule_config();
        assert!(clash.unwrap_err().to_string().contains("inbound and dns"));
    }

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let text = "# k8s\nsearch default.svc.cluster.local\nnameserver 192.0.2.10\nnameserver 2001:db8::10\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.10".parse::<IpAddr>().unwrap(),
                "2001:db8::10".parse().unwrap()
            ]
        );
    }
}
