//! The test world: a router namespace with four leaves — the pod, an allowed
//! server, an unknown host and an outside client — each on its own veth and
//! TEST-NET subnet. The router has only connected routes, so nothing can leave.
//!
//! ```text
//!   client 192.0.2.66/26 ─┐                ┌─ server  198.51.100.10/24
//!   2001:db8:4::10        ├── router ──────┤  2001:db8:2::10
//!   pod    192.0.2.2/26  ─┘   (forwarding) └─ unknown 203.0.113.10/24
//!   2001:db8:1::2                               2001:db8:3::10
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::netns::{unique_stem, Netns};

/// One leaf's addressing: the leaf's and the router's address on their link.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub v4: Ipv4Addr,
    pub v4_router: Ipv4Addr,
    pub v4_prefix: u8,
    pub v6: Ipv6Addr,
    pub v6_router: Ipv6Addr,
}

impl Link {
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 {
            IpAddr::V6(self.v6)
        } else {
            IpAddr::V4(self.v4)
        }
    }
}

const fn link(v4: [u8; 4], r4: [u8; 4], prefix: u8, v6: u16) -> Link {
    Link {
        v4: Ipv4Addr::new(v4[0], v4[1], v4[2], v4[3]),
        v4_router: Ipv4Addr::new(r4[0], r4[1], r4[2], r4[3]),
        v4_prefix: prefix,
        v6: Ipv6Addr::new(0x2001, 0xdb8, v6, 0, 0, 0, 0, 0x10),
        v6_router: Ipv6Addr::new(0x2001, 0xdb8, v6, 0, 0, 0, 0, 1),
    }
}

pub const POD: Link = link([192, 0, 2, 10], [192, 0, 2, 1], 26, 1);
pub const CLIENT: Link = link([192, 0, 2, 74], [192, 0, 2, 65], 26, 4);
pub const SERVER: Link = link([198, 51, 100, 10], [198, 51, 100, 1], 24, 2);
pub const UNKNOWN: Link = link([203, 0, 113, 10], [203, 0, 113, 1], 24, 3);

/// A per-test scratch directory (logs, certificates, web roots), removed on
/// drop unless `PODWARDEN_E2E_KEEP=1`.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(stem: &str) -> Result<Scratch> {
        let p = std::env::temp_dir().join(format!("{stem}-e2e"));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        // Servers run as other UIDs and must read files here.
        std::process::Command::new("chmod")
            .args(["0755", &p.display().to_string()])
            .status()?;
        Ok(Scratch(p))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> Result<PathBuf> {
        let p = self.path(name);
        std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var("PODWARDEN_E2E_KEEP").as_deref() != Ok("1") {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Fields drop in order: leaves, then the router, then the scratch directory.
pub struct Topology {
    pub pod: Netns,
    pub server: Netns,
    pub unknown: Netns,
    pub client: Netns,
    pub router: Netns,
    pub scratch: Scratch,
}

fn attach(router: &Netns, leaf: &Netns, rif: &str, l: &Link) -> Result<()> {
    router.exec(&[
        "ip",
        "link",
        "add",
        rif,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        leaf.name(),
    ])?;
    let v4 = |a: Ipv4Addr| format!("{a}/{}", l.v4_prefix);
    let v6 = |a: Ipv6Addr| format!("{a}/64");
    router.exec(&["ip", "addr", "add", &v4(l.v4_router), "dev", rif])?;
    router.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        &v6(l.v6_router),
        "dev",
        rif,
        "nodad",
    ])?;
    router.exec(&["ip", "link", "set", rif, "up"])?;
    leaf.exec(&["ip", "addr", "add", &v4(l.v4), "dev", "eth0"])?;
    leaf.exec(&["ip", "-6", "addr", "add", &v6(l.v6), "dev", "eth0", "nodad"])?;
    leaf.exec(&["ip", "link", "set", "eth0", "up"])?;
    leaf.exec(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        &l.v4_router.to_string(),
    ])?;
    leaf.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        &l.v6_router.to_string(),
    ])?;
    Ok(())
}

impl Topology {
    pub fn new() -> Result<Topology> {
        let stem = unique_stem();
        let scratch = Scratch::new(&stem)?;
        let dir = scratch.0.clone();
        let router = Netns::create(&stem, "router", &dir)?;
        let topo = Topology {
            pod: Netns::create(&stem, "pod", &dir)?,
            server: Netns::create(&stem, "server", &dir)?,
            unknown: Netns::create(&stem, "unknown", &dir)?,
            client: Netns::create(&stem, "client", &dir)?,
            router,
            scratch,
        };
        topo.router
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        topo.router
            .exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        attach(&topo.router, &topo.pod, "r-pod", &POD)?;
        attach(&topo.router, &topo.server, "r-server", &SERVER)?;
        attach(&topo.router, &topo.unknown, "r-unknown", &UNKNOWN)?;
        attach(&topo.router, &topo.client, "r-client", &CLIENT)?;
        topo.wait_ready()?;
        // Lets the unprivileged app open ICMP echo sockets, so "the app cannot
        // ping out" is tested against a ping that would otherwise work.
        topo.pod
            .exec(&["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])?;
        Ok(topo)
    }

    /// Waits for IPv6 duplicate address detection to finish and each leaf to
    /// reach the router over both families, so that a test's first packet is
    /// not lost to a link or neighbour entry still coming up.
    fn wait_ready(&self) -> Result<()> {
        let leaves = [
            (&self.pod, &POD),
            (&self.server, &SERVER),
            (&self.unknown, &UNKNOWN),
            (&self.client, &CLIENT),
        ];
        let deadline = Instant::now() + crate::netns::READY;
        for ns in leaves.iter().map(|(n, _)| *n).chain([&self.router]) {
            while !ns
                .exec(&["ip", "-6", "addr", "show", "tentative"])?
                .trim()
                .is_empty()
            {
                if Instant::now() > deadline {
                    bail!("IPv6 addresses still tentative in {}", ns.name());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for (ns, link) in leaves {
            for router in [link.v4_router.to_string(), link.v6_router.to_string()] {
                while !ns
                    .output(None, &["ping", "-c", "1", "-W", "1", &router])?
                    .status
                    .success()
                {
                    if Instant::now() > deadline {
                        bail!("{} cannot reach its router {router}", ns.name());
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs of every process in every namespace, for failure messages.
    pub fn logs(&self) -> String {
        [
            &self.pod,
            &self.server,
            &self.unknown,
            &self.client,
            &self.router,
        ]
        .iter()
        .map(|n| n.all_logs())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
    }
}
