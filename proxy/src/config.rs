//! The proxy's configuration: one typed struct, defaults in one place
//! ([`Config::default`]), loaded from an optional YAML file and overridden by
//! command-line flags, then validated with errors that name the field.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Config {
    /// Address the traffic listeners bind; `::` is dual-stack (IPv4 too).
    pub listen_ip: IpAddr,
    /// Port the app's redirected outbound TCP arrives on.
    pub outbound_port: u16,
    /// Port redirected inbound TCP arrives on.
    pub inbound_port: u16,
    /// Admin server (`/healthz`, `/ready`, `/flows`, `/metrics`).
    pub admin_addr: SocketAddr,
    /// The UID the proxy runs as; `init` excludes it from redirection.
    pub proxy_uid: u32,
    /// How long detection waits for the client's first bytes before treating
    /// the stream as opaque (server-first protocols such as SMTP or MySQL).
    pub detect_timeout_ms: u64,
    /// Upstream connect timeout.
    pub connect_timeout_ms: u64,
    /// Workload and pod names, copied into events and logs.
    pub workload: String,
    pub pod: String,
    /// Flow records kept in memory for `/flows`.
    pub flow_ring_size: usize,
    /// Capacity of the channel feeding the learner; overflow is counted.
    pub flow_channel_capacity: usize,
    /// Idle upstream HTTP/1 connections kept per original destination.
    pub pool_max_idle_per_dst: usize,
    /// How long an idle upstream HTTP connection is kept.
    pub pool_idle_timeout_ms: u64,
    /// Tokio worker threads for the data path. 1 (the default) runs it on a
    /// current-thread runtime: the fewest context switches and no more CPU
    /// per request on a sidecar's one or two CPUs (benches/RESULTS.md);
    /// more workers pay off when the pod gives the proxy CPUs of its own.
    pub worker_threads: usize,
    /// Policy file (consumed by the policy engine once wired in).
    pub policy_file: Option<PathBuf>,
    /// OWASP CRS directory (`rules/` + `crs-setup.conf[.example]`) the WAF
    /// loads when a policy turns it on.
    pub waf_rules_dir: PathBuf,
    /// DNS listener port (UDP and TCP) that `init` redirects the pod's DNS
    /// to; 0 disables it.
    pub dns_port: u16,
    /// Resolvers DNS queries are forwarded to; empty = the `nameserver`
    /// lines of /etc/resolv.conf.
    pub dns_upstreams: Vec<SocketAddr>,
    /// Send every connection to this address instead of its original
    /// destination. For benchmarks and local runs without iptables only.
    pub fixed_dst: Option<SocketAddr>,
    /// Root of the on-disk flow log (a directory per workload); unset = off.
    pub flow_log_dir: Option<PathBuf>,
    /// Byte budget of one workload's flow log; the oldest segments go first.
    pub flow_log_max_bytes: u64,
    /// Flow-log segments last written longer ago than this are deleted.
    pub flow_log_max_age_secs: u64,
    /// Start-up modes, in force until a policy document (file, restored or
    /// pushed with `PUT /policy`) brings its own `spec.mode`/`features`.
    pub mode: podwarden_policy::Mode,
    pub waf_mode: Option<podwarden_policy::Mode>,
    pub dlp_mode: Option<podwarden_policy::Mode>,
    /// Learning state and the last pushed policy live here (see `learning`).
    pub state_dir: PathBuf,
    /// Hex SHA-256 of the bearer token `/baseline`, `/status` and
    /// `PUT /policy` require; unset = those routes refuse everyone.
    pub admin_token_sha256: Option<String>,
    /// YAML list of security event sinks (see `events::sinks_file`);
    /// unset = stdout.
    pub event_sinks_file: Option<PathBuf>,
    /// Relay for opaque TCP and TLS passthrough without stream inspection:
    /// `sockmap` (in the kernel, see `sockmap`), `auto` (sockmap when it
    /// loads, else splice) or `off` (the user-space splice relay).
    pub opaque_offload: crate::sockmap::OffloadMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            outbound_port: 15001,
            inbound_port: 15006,
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 15000)),
            proxy_uid: 1337,
            detect_timeout_ms: 300,
            connect_timeout_ms: 5000,
            workload: String::new(),
            pod: String::new(),
            flow_ring_size: 4096,
            flow_channel_capacity: 4096,
            pool_max_idle_per_dst: 32,
            pool_idle_timeout_ms: 60_000,
            worker_threads: 1,
            policy_file: None,
            waf_rules_dir: PathBuf::from("/etc/podwarden/crs"),
            fixed_dst: None,
            flow_log_dir: None,
            flow_log_max_bytes: 256 << 20,
            flow_log_max_age_secs: 7 * 24 * 3600,
            dns_port: 15053,
            dns_upstreams: Vec::new(),
            mode: podwarden_policy::Mode::Learn,
            waf_mode: None,
            dlp_mode: None,
            state_dir: PathBuf::from("/var/lib/podwarden"),
            admin_token_sha256: None,
            event_sinks_file: None,
            opaque_offload: crate::sockmap::OffloadMode::default(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("invalid config: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// Parses a YAML document; unknown keys are errors (typos must not pass).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_yaml(&text, path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.outbound_port != 0 && self.outbound_port == self.inbound_port {
            return Err(invalid("inbound_port", "must differ from outbound_port"));
        }
        let admin = self.admin_addr.port();
        if admin != 0 && (admin == self.outbound_port || admin == self.inbound_port) {
            return Err(invalid(
                "admin_addr",
                "port must differ from the traffic listener ports",
            ));
        }
        let d = self.dns_port;
        if d != 0 && (d == self.outbound_port || d == self.inbound_port || d == admin) {
            return Err(invalid(
                "dns_port",
                "must differ from the listener and admin ports",
            ));
        }
        if !(10..=10_000).contains(&self.detect_timeout_ms) {
            return Err(invalid("detect_timeout_ms", "must be between 10 and 10000"));
        }
        if !(1..=120_000).contains(&self.connect_timeout_ms) {
            return Err(invalid(
                "connect_timeout_ms",
                "must be between 1 and 120000",
            ));
        }
        if !(1..=1_000_000).contains(&self.flow_ring_size) {
            return Err(invalid("flow_ring_size", "must be between 1 and 1000000"));
        }
        if !(1..=1_000_000).contains(&self.flow_channel_capacity) {
            return Err(invalid(
                "flow_channel_capacity",
                "must be between 1 and 1000000",
            ));
        }
        if !(1..=64).contains(&self.worker_threads) {
            return Err(invalid("worker_threads", "must be between 1 and 64"));
        }
        if self.pool_max_idle_per_dst > 10_000 {
            return Err(invalid("pool_max_idle_per_dst", "must be at most 10000"));
        }
        if !((64 << 10)..=(1 << 40)).contains(&self.flow_log_max_bytes) {
            return Err(invalid(
                "flow_log_max_bytes",
                "must be between 65536 (64 KiB) and 1 TiB",
            ));
        }
        if !(60..=366 * 24 * 3600).contains(&self.flow_log_max_age_secs) {
            return Err(invalid(
                "flow_log_max_age_secs",
                "must be between 1 minute and 366 days",
            ));
        }
        if let Some(h) = &self.admin_token_sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "admin_token_sha256",
                    "must be 64 hex digits (the SHA-256 of the admin token)",
                ));
            }
        }
        Ok(())
    }

    pub fn detect_timeout(&self) -> Duration {
        Duration::from_millis(self.detect_timeout_ms)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn pool_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.pool_idle_timeout_ms)
    }
}

/// `podwarden-proxy run` flags. Each one overrides the config file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RunArgs {
    /// YAML config file (keys as in the Config struct, snake_case).
    #[arg(long, short = 'c', env = "PODWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address for the traffic listeners ("::" = dual-stack) [default: ::]
    #[arg(long)]
    pub listen_ip: Option<IpAddr>,
    /// Outbound listener port [default: 15001]
    #[arg(long)]
    pub outbound_port: Option<u16>,
    /// Inbound listener port [default: 15006]
    #[arg(long)]
    pub inbound_port: Option<u16>,
    /// Admin server address [default: 127.0.0.1:15000]
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// UID the proxy runs as [default: 1337]
    #[arg(long)]
    pub proxy_uid: Option<u32>,
    /// Protocol detection timeout in milliseconds [default: 300]
    #[arg(long)]
    pub detect_timeout_ms: Option<u64>,
    /// Upstream connect timeout in milliseconds [default: 5000]
    #[arg(long)]
    pub connect_timeout_ms: Option<u64>,
    /// Workload name for events and logs
    #[arg(long, env = "PODWARDEN_WORKLOAD")]
    pub workload: Option<String>,
    /// Pod name for events and logs
    #[arg(long, env = "POD_NAME")]
    pub pod: Option<String>,
    /// Flow records kept for /flows [default: 4096]
    #[arg(long)]
    pub flow_ring_size: Option<usize>,
    /// Data-path worker threads; 1 is a single-threaded runtime [default: 1]
    #[arg(long)]
    pub worker_threads: Option<usize>,
    /// Policy file (reserved for the policy engine)
    #[arg(long)]
    pub policy_file: Option<PathBuf>,
    /// OWASP CRS directory for the WAF [default: /etc/podwarden/crs]
    #[arg(long, env = "PODWARDEN_WAF_RULES_DIR")]
    pub waf_rules_dir: Option<PathBuf>,
    /// DNS listener port, 0 to disable [default: 15053]
    #[arg(long)]
    pub dns_port: Option<u16>,
    /// Resolver to forward DNS to, IP or IP:PORT (repeatable) [default: /etc/resolv.conf]
    #[arg(long = "dns-upstream", value_name = "ADDR", value_parser = parse_dns_upstream)]
    pub dns_upstreams: Vec<SocketAddr>,
    /// Testing only: relay every connection to this address instead of its
    /// original destination (benchmarks without iptables)
    #[arg(long)]
    pub fixed_dst: Option<SocketAddr>,
    /// Record every flow to a rotating on-disk log under this directory
    /// (for `podwarden policy replay`) [default: off]
    #[arg(long, env = "PODWARDEN_FLOW_LOG_DIR")]
    pub flow_log_dir: Option<PathBuf>,
    /// Byte budget of the workload's flow log [default: 268435456]
    #[arg(long)]
    pub flow_log_max_bytes: Option<u64>,
    /// Age after which flow-log segments are deleted, e.g. 7d, 12h [default: 7d]
    #[arg(long, value_parser = humantime::parse_duration)]
    pub flow_log_max_age: Option<Duration>,
    /// Admin server port on all addresses (kubelet probes and the operator
    /// reach it on the pod IP); --admin-addr wins when both are given
    #[arg(long)]
    pub admin_port: Option<u16>,
    /// Start-up mode (learn, monitor, protect) until a policy says otherwise [default: learn]
    #[arg(long, env = "PODWARDEN_MODE", value_parser = parse_mode)]
    pub mode: Option<podwarden_policy::Mode>,
    /// Start-up WAF mode [default: the mode]
    #[arg(long, env = "PODWARDEN_WAF_MODE", value_parser = parse_mode)]
    pub waf_mode: Option<podwarden_policy::Mode>,
    /// Start-up DLP mode [default: the mode]
    #[arg(long, env = "PODWARDEN_DLP_MODE", value_parser = parse_mode)]
    pub dlp_mode: Option<podwarden_policy::Mode>,
    /// Directory for learning state and the last pushed policy [default: /var/lib/podwarden]
    #[arg(long, env = "PODWARDEN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Hex SHA-256 of the admin API bearer token
    #[arg(long, env = "PODWARDEN_ADMIN_TOKEN_SHA256", hide_env_values = true)]
    pub admin_token_sha256: Option<String>,
    /// YAML list of security event sinks (stdout, file, syslog, http(s) webhook) [default: stdout]
    #[arg(
        long = "event-sinks",
        env = "PODWARDEN_EVENT_SINKS",
        value_name = "FILE"
    )]
    pub event_sinks_file: Option<PathBuf>,
    /// Opaque TCP relay: sockmap (kernel; needs CAP_BPF and CAP_NET_ADMIN at
    /// start-up, dropped after loading), auto (sockmap if it loads, else
    /// splice), off (user-space splice) [default: off]
    #[arg(long, env = "PODWARDEN_OPAQUE_OFFLOAD", value_enum)]
    pub opaque_offload: Option<crate::sockmap::OffloadMode>,
}

impl RunArgs {
    /// Defaults, then the file (if any), then flags; validated.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        over!(
            listen_ip,
            outbound_port,
            inbound_port,
            admin_addr,
            proxy_uid,
            detect_timeout_ms,
            connect_timeout_ms,
            workload,
            pod,
            flow_ring_size,
            worker_threads
        );
        if let Some(p) = self.dns_port {
            c.dns_port = p;
        }
        if !self.dns_upstreams.is_empty() {
            c.dns_upstreams = self.dns_upstreams.clone();
        }
        if let Some(d) = self.fixed_dst {
            c.fixed_dst = Some(d);
        }
        if let Some(p) = &self.policy_file {
            c.policy_file = Some(p.clone());
        }
        if let Some(d) = &self.flow_log_dir {
            c.flow_log_dir = Some(d.clone());
        }
        if let Some(b) = self.flow_log_max_bytes {
            c.flow_log_max_bytes = b;
        }
        if let Some(a) = self.flow_log_max_age {
            c.flow_log_max_age_secs = a.as_secs();
        }
        if let Some(d) = &self.waf_rules_dir {
            c.waf_rules_dir = d.clone();
        }
        if let (Some(port), None) = (self.admin_port, self.admin_addr) {
            c.admin_addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        }
        if let Some(m) = self.mode {
            c.mode = m;
        }
        if self.waf_mode.is_some() {
            c.waf_mode = self.waf_mode;
        }
        if self.dlp_mode.is_some() {
            c.dlp_mode = self.dlp_mode;
        }
        if let Some(d) = &self.state_dir {
            c.state_dir = d.clone();
        }
        if let Some(f) = &self.event_sinks_file {
            c.event_sinks_file = Some(f.clone());
        }
        if let Some(h) = &self.admin_token_sha256 {
            c.admin_token_sha256 = Some(h.trim().to_ascii_lowercase());
        }
        if let Some(o) = self.opaque_offload {
            c.opaque_offload = o;
        }
        c.validate()?;
        Ok(c)
    }
}

fn parse_dns_upstream(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| format!("{s:?} is not an IP address or IP:PORT"))
}

fn parse_mode(s: &str) -> Result<podwarden_policy::Mode, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "learn" => Ok(podwarden_policy::Mode::Learn),
        "monitor" => Ok(podwarden_policy::Mode::Monitor),
        "protect" => Ok(podwarden_policy::Mode::Protect),
        _ => Err(format!("{s:?} is not a mode (learn, monitor, protect)")),
    }
}

/// `nameserver` addresses from resolv.conf text (port 53).
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The stub resolver's search list from resolv.conf text: the last
/// `search` or `domain` line wins, as in glibc and musl; lower-case,
/// without trailing dots.
pub fn resolv_conf_search(text: &str) -> Vec<String> {
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let keyword = words.next();
        if matches!(keyword, Some("search" | "domain")) {
            search = words
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect();
            if keyword == Some("domain") {
                search.truncate(1);
            }
        }
    }
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(
            (
                c.outbound_port,
                c.inbound_port,
                c.admin_addr.port(),
                c.proxy_uid
            ),
            (15001, 15006, 15000, 1337)
        );
    }

    #[test]
    fn yaml_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "outbound_port: 16001\nworkload: web\nadmin_addr: \"0.0.0.0:9901\"\n",
        )
        .unwrap();
        let args = RunArgs {
            config: Some(path),
            workload: Some("api".into()),
            ..Default::default()
        };
        let c = args.load().unwrap();
        assert_eq!(c.outbound_port, 16001);
        assert_eq!(c.workload, "api");
        assert_eq!(c.admin_addr, "0.0.0.0:9901".parse().unwrap());
        assert_eq!(c.inbound_port, 15006);
    }

    #[test]
    fn dns_upstreams_parse() {
        assert_eq!(
            parse_dns_upstream("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_dns_upstream("[2001:db8::53]:5353").unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        );
        assert!(parse_dns_upstream("dns.example").is_err());
        let r = resolv_conf_nameservers(
            "# c\nnameserver 10.96.0.10\nsearch x\nnameserver fe80::1%eth0\n",
        );
        assert_eq!(
            r,
            vec![
                "10.96.0.10:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        let k8s = "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local Cluster.Local.\noptions ndots:5\n";
        assert_eq!(
            resolv_conf_search(k8s),
            [
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(
            resolv_conf_search("search a.example\ndomain b.example c\n"),
            ["b.example"]
        );
        assert!(resolv_conf_search("nameserver 192.0.2.1\n").is_empty());
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::from_yaml("outbund_port: 1\n", Path::new("x.yaml")).unwrap_err();
        assert!(e.to_string().contains("outbund_port"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let c = Config {
            inbound_port: 15001,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("inbound_port"));
        let c = Config {
            detect_timeout_ms: 0,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("detect_timeout_ms"));
        let c = Config {
            worker_threads: 0,
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("worker_threads"));
    }
}
