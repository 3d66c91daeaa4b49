//! The DNS listener: `init` redirects the pod's DNS (to the resolvers it
//! names) here. Each query is judged against the policy in force — only the
//! policy's resolvers (`spec.dns.resolvers`) are forwarded to, and
//! tunnelling-shaped queries are refused in protect when the policy says so
//! (`spec.dns.blockTunneling`), and with `spec.dns.allowedNames: listed` a
//! name the policy does not list is answered NXDOMAIN here in protect, never
//! forwarded (the query itself would carry data to the name's authoritative
//! server) — then forwarded, recorded, and the A/AAAA
//! answers are remembered so later flows to those IPs carry the names
//! (`Flow::peer_names`). The remembered names can be saved to and restored
//! from a file, so FQDN rules keep working across a proxy restart.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podwarden_policy::dns::{
    assess_query, negative_answer, parse_message, DnsMessage, DnsNameVerdict, NameTable,
    NameTableConfig, RecordType, TunnelThresholds, NAME_NOT_IN_POLICY, RCODE_NXDOMAIN,
    RCODE_REFUSED,
};
use podwarden_policy::events::{EventAction, EventKind, SecurityEvent};
use podwarden_policy::matcher::DnsVerdict;
use podwarden_policy::{
    Action, AppProtocol, CompiledPolicy, Decision, Direction, DnsQueryInfo, Flow, FlowRecord, Mode,
    RecordKind,
};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tracing::{debug, info, warn};

use crate::events::EventBus;
use crate::policy_reload::{PolicyReloader, PolicyWatch};
use crate::proxy::Shared;
use crate::records::now_ms;

const MAX_UDP: usize = 4096;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);
/// A TCP client that sends nothing for this long is dropped.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Address → names the resolver returned for it (the policy crate's
/// [`NameTable`]), shared by the listener (writer) and the data path
/// (reader, once per connection).
pub struct NameCache {
    table: RwLock<NameTable>,
    dirty: AtomicBool,
}

impl Default for NameCache {
    fn default() -> Self {
        NameCache {
            table: RwLock::new(NameTable::new(NameTableConfig::default())),
            dirty: AtomicBool::new(false),
        }
    }
}

/// One saved binding; `expires_unix_ms` is wall-clock so it survives restarts.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct SavedName {
    name: String,
    ip: IpAddr,
    expires_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedNames {
    names: Vec<SavedName>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl NameCache {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, NameTable> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, NameTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, ip: IpAddr, name: &str, ttl: u32) {
        self.write().record(
            name,
            ip,
            Duration::from_secs(u64::from(ttl)),
            Instant::now(),
        );
        self.dirty.store(true, Ordering::Release);
    }

    /// Remembers every address a response leads to from its question
    /// (through CNAME chains). Returns how many bindings it held.
    pub fn record_response(&self, msg: &DnsMessage) -> usize {
        let resolutions = msg.resolutions();
        if resolutions.is_empty() {
            return 0;
        }
        let now = Instant::now();
        let mut t = self.write();
        for r in &resolutions {
            t.record_resolution(r, now);
        }
        self.dirty.store(true, Ordering::Release);
        resolutions.len()
    }

    /// Names still within their TTL for `ip`, sorted.
    pub fn names_for(&self, ip: IpAddr) -> Vec<String> {
        let mut out = self.read().names_for(ip, Instant::now());
        out.sort();
        out
    }

    /// Writes the live bindings to `path` (atomically: temp file + rename).
    pub fn save(&self, path: &Path) -> std::io::Result<usize> {
        self.dirty.store(false, Ordering::Release);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let names: Vec<SavedName> = self
            .read()
            .live_entries(now)
            .into_iter()
            .map(|(name, ip, left)| SavedName {
                name,
                ip,
                expires_unix_ms: unix_ms(wall + left),
            })
            .collect();
        let n = names.len();
        let text = serde_json::to_vec(&SavedNames { names }).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        Ok(n)
    }

    /// Loads bindings saved by [`NameCache::save`]; expired ones are skipped.
    pub fn restore(&self, path: &Path) -> std::io::Result<usize> {
        let text = std::fs::read(path)?;
        let saved: SavedNames = serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let (now, wall) = (Instant::now(), unix_ms(SystemTime::now()));
        let mut t = self.write();
        let mut n = 0;
        for s in saved.names {
            let left = Duration::from_millis(s.expires_unix_ms.saturating_sub(wall));
            if !left.is_zero() {
                t.restore(&s.name, s.ip, left, now);
                n += 1;
            }
        }
        Ok(n)
    }

    fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::AcqRel)
    }
}

/// Restores the name table from `path` (if present) and saves it there
/// every second while it changes. Call before the listeners accept, so a
/// restarted proxy knows at once what the pod resolved before.
pub fn persist_names(shared: Arc<Shared>, path: PathBuf) {
    match shared.names.restore(&path) {
        Ok(n) => info!(file = %path.display(), restored = n, "DNS names restored"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(file = %path.display(), error = %e, "DNS names not restored"),
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if !shared.names.take_dirty() {
                continue;
            }
            let (s, p) = (shared.clone(), path.clone());
            let r = tokio::task::spawn_blocking(move || s.names.save(&p)).await;
            if let Ok(Err(e)) = r {
                warn!(file = %path.display(), error = %e, "saving DNS names");
            }
        }
    });
}

/// REFUSED answer for a denied query: the query with QR set and RCODE 5
/// (kept for queries [`negative_answer`] cannot answer: it echoes anything
/// with a header).
pub fn refused(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut r = query.to_vec();
    r[2] |= 0x80;
    r[3] = (r[3] & 0xF0) | 5;
    Some(r)
}

/// Why a query is answered REFUSED instead of forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a parseable query with one question (protect only).
    Malformed,
    /// Tunnelling-shaped and the policy blocks tunnelling (protect only).
    Tunnelling,
    /// None of the configured upstreams is a resolver the policy allows.
    ResolverNotAllowed,
    /// `allowedNames: listed` and the policy does not list the name
    /// (protect only). Answered NXDOMAIN, not REFUSED: a stub resolver
    /// takes NXDOMAIN as final for that name and moves on to its next
    /// search domain (so `api.example.ns.svc.cluster.local` failing does
    /// not keep `api.example` from resolving), while REFUSED makes glibc
    /// try every other nameserver and then stop the search list, and musl
    /// ignore the answer and wait for its timeout. NXDOMAIN without an SOA
    /// is not negatively cached (RFC 2308), so a policy that lists the name
    /// later takes effect at once. DNS firewalls (RPZ) answer the same way.
    NameNotInPolicy,
}

impl Refusal {
    /// The answer the pod gets instead of the resolver's.
    pub fn answer(self, query: &[u8]) -> Option<Vec<u8>> {
        let rcode = match self {
            Refusal::NameNotInPolicy => RCODE_NXDOMAIN,
            _ => RCODE_REFUSED,
        };
        negative_answer(query, rcode).or_else(|| refused(query))
    }
}

/// What the listener does with one query: pure, from the policy in force.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPlan {
    pub refuse: Option<Refusal>,
    /// Upstreams to try, in order.
    pub upstreams: Vec<SocketAddr>,
    /// Upstreams outside the policy's resolvers that monitor still uses.
    pub would_deny: Vec<SocketAddr>,
    /// The question, when the query parsed.
    pub question: Option<(String, RecordType)>,
    /// Set when the query looks like tunnelling (refused or not).
    pub tunnel: Option<DnsVerdict>,
    /// The question looks like tunnelling (assessed once per query, with or
    /// without a policy): its name is masked in the record.
    pub suspicious: bool,
    /// Set when the name is not in the policy and the mode cares (protect
    /// answers NXDOMAIN, monitor forwards and reports).
    pub name: Option<DnsNameVerdict>,
    /// The name is a listed name with one of the pod's search domains
    /// appended: the stub resolver's own try (`ndots:5` makes every name
    /// go through the search list first), answered as the name policy says
    /// but not reported — one lookup would otherwise raise an event per
    /// search domain. Only exact expansions of a listed name qualify, so
    /// they carry no data.
    pub search_expansion: bool,
    pub mode: Mode,
}

pub fn plan_query(
    policy: Option<&CompiledPolicy>,
    upstreams: &[SocketAddr],
    search: &[String],
    query: &[u8],
) -> QueryPlan {
    let mode = policy.map_or(Mode::Learn, CompiledPolicy::mode);
    let question = parse_message(query)
        .ok()
        .filter(|m| !m.is_response && m.questions.len() == 1)
        .and_then(|m| m.questions.into_iter().next())
        .map(|q| (q.name, q.qtype));
    let mut plan = QueryPlan {
        refuse: None,
        upstreams: upstreams.to_vec(),
        would_deny: Vec::new(),
        question,
        tunnel: None,
        suspicious: false,
        name: None,
        search_expansion: false,
        mode,
    };
    let Some(policy) = policy else {
        if let Some((name, qtype)) = &plan.question {
            plan.suspicious = assess_query(name, *qtype, &TunnelThresholds::default()).suspicious;
        }
        return plan;
    };
    let Some((name, qtype)) = &plan.question else {
        if mode == Mode::Protect {
            plan.refuse = Some(Refusal::Malformed);
        }
        return plan;
    };
    let verdict = policy.judge_dns_query(name, *qtype);
    let refuse_tunnel = verdict.refuse;
    plan.suspicious = verdict.assessment.suspicious;
    if verdict.assessment.suspicious {
        plan.tunnel = Some(verdict);
    }
    if refuse_tunnel {
        plan.refuse = Some(Refusal::Tunnelling);
        return plan;
    }
    let names = policy.judge_dns_name(name, *qtype);
    if names.deny || names.would_deny {
        let deny = names.deny;
        plan.search_expansion = is_search_expansion(policy, name, search);
        if !plan.search_expansion {
            plan.name = Some(names);
        }
        if deny {
            plan.refuse = Some(Refusal::NameNotInPolicy);
            return plan;
        }
    }
    let allowed = policy.resolvers();
    if !allowed.is_empty() {
        let (ok, off): (Vec<SocketAddr>, Vec<SocketAddr>) = upstreams
            .iter()
            .partition(|u| allowed.contains(&crate::orig_dst::normalize(**u).ip()));
        // Mode semantics stay in `Decision::new`: an upstream outside the
        // list is a flow without a rule.
        match Decision::new(mode, None) {
            d if d.action == Action::Deny => {
                if ok.is_empty() {
                    plan.refuse = Some(Refusal::ResolverNotAllowed);
                }
                plan.upstreams = ok;
            }
            d if d.would_deny => {
                plan.upstreams = ok.into_iter().chain(off.iter().copied()).collect();
                plan.would_deny = off;
            }
            _ => {}
        }
    }
    plan
}

/// `name` (as parsed: lower-case, no trailing dot) is a name the policy
/// lists followed by one of `search`.
fn is_search_expansion(policy: &CompiledPolicy, name: &str, search: &[String]) -> bool {
    search.iter().any(|domain| {
        name.strip_suffix(domain.as_str())
            .and_then(|head| head.strip_suffix('.'))
            .is_some_and(|head| !head.is_empty() && policy.lists_dns_name(head))
    })
}

/// A query that is not forwarded: the flow and decision to record.
type Denied = Box<(Flow, Decision)>;

/// What the listeners share.
struct Ctx {
    shared: Arc<Shared>,
    upstreams: Vec<SocketAddr>,
    /// The pod's search domains (resolv.conf).
    search: Vec<String>,
    policy: Option<PolicyWatch>,
    events: Option<EventBus>,
    workload: String,
    pod: String,
}

impl Ctx {
    fn plan(&self, query: &[u8]) -> QueryPlan {
        let policy = self.policy.as_ref().map(|w| w.load_full());
        plan_query(
            policy.as_ref().and_then(|p| p.as_deref()),
            &self.upstreams,
            &self.search,
            query,
        )
    }

    fn upstream_flow(&self, client: SocketAddr, up: SocketAddr) -> Flow {
        let mut flow = Flow::connection(Direction::Outbound, up, client);
        flow.protocol = AppProtocol::Dns;
        flow
    }

    /// Records the query as a flow (a denied one raises a violation event
    /// through the record stream) and, for tunnelling-shaped queries, a
    /// `dns_tunneling` event naming the domain.
    ///
    /// `answer` is what the pod got (its RCODE is recorded with the
    /// question). A query the listener refused and reported itself (name not
    /// in the policy, tunnelling) is marked so, and the record stream raises
    /// no second, vaguer `default deny` violation for it: the listener's
    /// event names the query, the reason and the answer.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        plan: &QueryPlan,
        mut flow: Flow,
        decision: Decision,
        sent: u64,
        answer: Option<&[u8]>,
        started: Instant,
    ) {
        let start_ms = now_ms().saturating_sub(started.elapsed().as_millis() as u64);
        let id = self.shared.flows.next_id(start_ms);
        let received = answer.map_or(0, |a| a.len() as u64);
        let reported = self.events.is_some()
            && matches!(
                plan.refuse,
                Some(Refusal::NameNotInPolicy | Refusal::Tunnelling)
            );
        flow.dns = plan
            .question
            .as_ref()
            .map(|(name, qtype)| query_info(name, *qtype, plan.suspicious, answer, reported));
        if let (Some(v), Some(bus), Some((name, qtype))) =
            (&plan.tunnel, &self.events, &plan.question)
        {
            let kind = EventKind::DnsTunneling {
                query: mask_query_name(name),
                qtype: qtype.to_string(),
                refused: v.refuse,
            };
            let mut e = SecurityEvent::new(
                format!("{id}-dns"),
                SystemTime::now(),
                &self.workload,
                &self.pod,
                kind,
                plan.mode,
            );
            e.direction = Some(Direction::Outbound);
            e.peer = Some(flow.peer);
            e.action = if v.refuse {
                EventAction::Blocked
            } else {
                EventAction::WouldBlock
            };
            bus.emit(e);
        }
        if let (Some(v), Some(bus), Some((name, qtype))) =
            (&plan.name, &self.events, &plan.question)
        {
            bus.emit(name_event(
                format!("{id}-dns-name"),
                &self.workload,
                &self.pod,
                plan.mode,
                flow.peer,
                v,
                name,
                *qtype,
            ));
        }
        self.shared.flows.record(FlowRecord {
            id,
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

    /// Records a query that is not forwarded and returns the answer the
    /// pod gets instead (none when the query is too broken to answer).
    fn refuse(
        &self,
        plan: &QueryPlan,
        denied: Denied,
        query: &[u8],
        started: Instant,
    ) -> Option<Vec<u8>> {
        let (flow, decision) = *denied;
        let answer = answer_refusal(plan, query);
        self.record(
            plan,
            flow,
            decision,
            query.len() as u64,
            answer.as_deref(),
            started,
        );
        answer
    }

    /// Refuses per plan, or picks the first upstream the hook allows.
    /// `Err` carries the denial to record.
    fn choose(
        &self,
        plan: &QueryPlan,
        client: SocketAddr,
    ) -> Result<Vec<(SocketAddr, Decision)>, Denied> {
        let first = self.upstreams.first().copied().unwrap_or(client);
        if plan.refuse.is_some() {
            return Err(Box::new((
                self.upstream_flow(client, first),
                Decision::new(plan.mode, None),
            )));
        }
        let mut allowed = Vec::new();
        let mut denied = None;
        for &up in &plan.upstreams {
            let d = self.shared.hook.decide(&self.upstream_flow(client, up));
            if d.is_allowed() && plan.would_deny.contains(&up) {
                // Monitor: forwarded, but reported as outside the policy.
                allowed.push((up, Decision::new(plan.mode, None)));
            } else if d.is_allowed() {
                allowed.push((up, d));
            } else if denied.is_none() {
                denied = Some((self.upstream_flow(client, up), d));
            }
        }
        match (allowed.is_empty(), denied) {
            (true, Some(d)) => Err(Box::new(d)),
            _ => Ok(allowed),
        }
    }
}

/// The event for a name the policy does not list: a violation (protect,
/// answered NXDOMAIN) or would-block (monitor, forwarded), naming the name
/// and the reason as the rule. A name that also looks like tunnelling is
/// masked like a `dns_tunneling` one: its leading labels are the data.
#[allow(clippy::too_many_arguments)]
pub fn name_event(
    id: String,
    workload: &str,
    pod: &str,
    mode: Mode,
    resolver: SocketAddr,
    verdict: &DnsNameVerdict,
    name: &str,
    qtype: RecordType,
) -> SecurityEvent {
    let shown = if verdict.assessment.suspicious {
        mask_query_name(name)
    } else {
        name.trim_end_matches('.').to_string()
    };
    let (kind, action, answer) = if verdict.deny {
        (EventKind::Violation, EventAction::Blocked, "NXDOMAIN")
    } else {
        (EventKind::WouldBlock, EventAction::WouldBlock, "forwarded")
    };
    let mut e = SecurityEvent::new(id, SystemTime::now(), workload, pod, kind, mode);
    e.direction = Some(Direction::Outbound);
    e.peer = Some(resolver);
    e.names = vec![shown.clone()];
    e.rule = NAME_NOT_IN_POLICY.to_string();
    e.action = action;
    e.details.insert("reason".into(), NAME_NOT_IN_POLICY.into());
    e.details.insert("query".into(), shown);
    e.details.insert("qtype".into(), qtype.to_string());
    e.details.insert("protocol".into(), "dns".into());
    e.details.insert("answer".into(), answer.into());
    e
}

/// The question as the record carries it: the name lower-case without the
/// trailing dot (masked when `suspicious`, i.e. tunnelling-shaped: the flow
/// log must not keep the data it carries), the type, and the RCODE of
/// `answer`.
pub fn query_info(
    name: &str,
    qtype: RecordType,
    suspicious: bool,
    answer: Option<&[u8]>,
    reported: bool,
) -> DnsQueryInfo {
    let name = if suspicious {
        mask_query_name(name)
    } else {
        name.trim_end_matches('.').to_ascii_lowercase()
    };
    DnsQueryInfo {
        name,
        qtype: qtype.to_string(),
        rcode: answer
            .and_then(|a| a.get(3))
            .map(|b| DnsQueryInfo::rcode_name(b & 0x0F)),
        reported,
    }
}

/// Keeps the registered domain (last two labels) and masks the rest: the
/// leading labels of a tunnelling query are the data being carried out.
pub fn mask_query_name(name: &str) -> String {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    if labels.len() <= 2 {
        return name.to_string();
    }
    format!("***.{}", labels[labels.len() - 2..].join("."))
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

/// Starts UDP and TCP DNS listeners on `listen`, forwarding to `upstreams`
/// (first one answers; the rest are tried in order on failure), judged only
/// by the decision hook. Returns the bound UDP address.
pub async fn start(
    shared: Arc<Shared>,
    listen: SocketAddr,
    upstreams: Vec<SocketAddr>,
) -> std::io::Result<SocketAddr> {
    start_with_policy(shared, listen, upstreams, Vec::new(), None).await
}

/// [`start`], with the DNS settings of the policy `policy` keeps in force
/// (allowed resolvers, tunnelling) and its event bus for `dns_tunneling`;
/// `search` is the pod's search list (see [`QueryPlan::search_expansion`]).
pub async fn start_with_policy(
    shared: Arc<Shared>,
    listen: SocketAddr,
    upstreams: Vec<SocketAddr>,
    search: Vec<String>,
    policy: Option<Arc<PolicyReloader>>,
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
    let (workload, pod) = policy.as_ref().map(|p| p.identity()).unwrap_or_default();
    let ctx = Arc::new(Ctx {
        shared,
        upstreams,
        search,
        policy: policy.as_ref().map(|p| p.watch()),
        events: policy.as_ref().and_then(|p| p.events()),
        workload,
        pod,
    });
    let (c, u) = (ctx.clone(), udp.clone());
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
            tokio::spawn(udp_query(c.clone(), u.clone(), client, query));
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((stream, client)) = tcp.accept().await else {
                continue;
            };
            tokio::spawn(tcp_session(ctx.clone(), stream, client));
        }
    });
    Ok(bound)
}

async fn udp_query(ctx: Arc<Ctx>, sock: Arc<UdpSocket>, client: SocketAddr, q: Vec<u8>) {
    let started = Instant::now();
    let client = crate::orig_dst::normalize(client);
    let plan = ctx.plan(&q);
    let candidates = match ctx.choose(&plan, client) {
        Ok(c) => c,
        Err(denied) => {
            if let Some(r) = ctx.refuse(&plan, denied, &q, started) {
                let _ = sock.send_to(&r, client).await;
            }
            return;
        }
    };
    for (up, decision) in candidates {
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
                if let Ok(m) = parse_message(&buf[..n]) {
                    ctx.shared.names.record_response(&m);
                }
                let _ = sock.send_to(&buf[..n], client).await;
                let flow = ctx.upstream_flow(client, up);
                ctx.record(
                    &plan,
                    flow,
                    decision,
                    q.len() as u64,
                    Some(&buf[..n]),
                    started,
                );
                return;
            }
            _ => continue,
        }
    }
    ctx.shared
        .metrics
        .error(Direction::Outbound, "dns_upstream");
}

/// What the pod gets for a query that is not forwarded. A query refused
/// by the hook (resolver flow denied) has no [`Refusal`]: REFUSED.
fn answer_refusal(plan: &QueryPlan, query: &[u8]) -> Option<Vec<u8>> {
    match plan.refuse {
        Some(r) => r.answer(query),
        None => refused(query),
    }
}

/// Reads one length-prefixed DNS message (RFC 1035 §4.2.2).
async fn read_msg(s: &mut TcpStream) -> Option<Vec<u8>> {
    let len = tokio::time::timeout(TCP_IDLE, s.read_u16())
        .await
        .ok()?
        .ok()?;
    let mut buf = vec![0u8; usize::from(len)];
    tokio::time::timeout(UPSTREAM_TIMEOUT, s.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

async fn write_msg(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).map_err(std::io::Error::other)?;
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await
}

/// DNS over TCP: every message is judged like a UDP query; upstream
/// connections are opened per upstream and reused within the session.
async fn tcp_session(ctx: Arc<Ctx>, mut client: TcpStream, peer: SocketAddr) {
    let peer = crate::orig_dst::normalize(peer);
    let mut conns: HashMap<SocketAddr, TcpStream> = HashMap::new();
    while let Some(q) = read_msg(&mut client).await {
        let started = Instant::now();
        let plan = ctx.plan(&q);
        let candidates = match ctx.choose(&plan, peer) {
            Ok(c) => c,
            Err(denied) => match ctx.refuse(&plan, denied, &q, started) {
                Some(r) if write_msg(&mut client, &r).await.is_ok() => continue,
                _ => return,
            },
        };
        let mut answered = false;
        for (up, decision) in candidates {
            let resp = async {
                let u = match conns.entry(up) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => v.insert(
                        tokio::time::timeout(UPSTREAM_TIMEOUT, TcpStream::connect(up))
                            .await
                            .ok()?
                            .ok()?,
                    ),
                };
                write_msg(u, &q).await.ok()?;
                read_msg(u).await
            }
            .await;
            let Some(resp) = resp else {
                conns.remove(&up);
                continue;
            };
            if let Ok(m) = parse_message(&resp) {
                ctx.shared.names.record_response(&m);
            }
            let flow = ctx.upstream_flow(peer, up);
            ctx.record(
                &plan,
                flow,
                decision,
                q.len() as u64,
                Some(resp.as_slice()),
                started,
            );
            if write_msg(&mut client, &resp).await.is_err() {
                return;
            }
            answered = true;
            break;
        }
        if !answered {
            ctx.shared
                .metrics
                .error(Direction::Outbound, "dns_upstream");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::load_policy_str;

    /// A query for `name` with type `qtype`.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    /// Response for `www.example.com` → CNAME `edge.example.net` → A 192.0.2.7.
    fn response() -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        m.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        m.extend_from_slice(&[0xC0, 12, 0, 5, 0, 1, 0, 0, 0, 60]);
        let target = b"\x04edge\x07example\x03net\x00";
        m.extend_from_slice(&(target.len() as u16).to_be_bytes());
        let target_off = m.len();
        m.extend_from_slice(target);
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

    fn policy(mode: &str, dns: &str) -> CompiledPolicy {
        let y = format!(
            "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  mode: {mode}\n  dns: {dns}\n"
        );
        CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
    }

    const TUNNEL: &str = "aGVsbG8gd29ybGQgdGhpcyBpcyBleGZpbHRyYXRlZA.x7f3k9q2m8z1.t.example";

    #[test]
    fn cache_learns_chains_from_responses_and_respects_ttl() {
        let c = NameCache::default();
        let n = c.record_response(&parse_message(&response()).unwrap());
        assert_eq!(n, 1);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(c.names_for(ip), vec!["edge.example.net", "www.example.com"]);
        assert!(c.names_for("192.0.2.8".parse().unwrap()).is_empty());
    }

    #[test]
    fn names_survive_save_and_restore() {
        let dir = std::env::temp_dir().join(format!("pw-dns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("names.json");
        let c = NameCache::default();
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        c.insert(ip, "api.example", 300);
        assert!(c.take_dirty());
        assert_eq!(c.save(&path).unwrap(), 1);
        let back = NameCache::default();
        assert_eq!(back.restore(&path).unwrap(), 1);
        assert_eq!(back.names_for(ip), vec!["api.example"]);
        // Expired bindings are not restored; garbage is an error, not a panic.
        std::fs::write(
            &path,
            r#"{"names":[{"name":"old.example","ip":"192.0.2.1","expires_unix_ms":1}]}"#,
        )
        .unwrap();
        assert_eq!(NameCache::default().restore(&path).unwrap(), 0);
        std::fs::write(&path, "{not json").unwrap();
        assert!(NameCache::default().restore(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn plan_follows_mode_resolvers_and_tunnelling() {
        let good: SocketAddr = "198.51.100.53:53".parse().unwrap();
        let other: SocketAddr = "203.0.113.53:53".parse().unwrap();
        let ups = [other, good];
        let dns = r#"{ blockTunneling: true, resolvers: ["198.51.100.53"] }"#;
        let q = query("api.example", 1);

        // No policy: everything forwarded as configured.
        let p = plan_query(None, &ups, &[], &q);
        assert_eq!((p.refuse, p.upstreams.clone()), (None, ups.to_vec()));

        let protect = policy("protect", dns);
        let p = plan_query(Some(&protect), &ups, &[], &q);
        assert_eq!(p.refuse, None);
        assert_eq!(p.upstreams, vec![good], "only the policy's resolver");
        assert_eq!(p.question, Some(("api.example".into(), RecordType::A)));
        let p = plan_query(Some(&protect), &[other], &[], &q);
        assert_eq!(p.refuse, Some(Refusal::ResolverNotAllowed));
        let p = plan_query(Some(&protect), &ups, &[], &query(TUNNEL, 16));
        assert_eq!(p.refuse, Some(Refusal::Tunnelling));
        assert!(p.tunnel.as_ref().unwrap().refuse);
        let p = plan_query(Some(&protect), &ups, &[], &q[..7]);
        assert_eq!(p.refuse, Some(Refusal::Malformed));

        let monitor = policy("monitor", dns);
        let p = plan_query(Some(&monitor), &ups, &[], &query(TUNNEL, 16));
        assert_eq!(p.refuse, None);
        assert!(p.tunnel.as_ref().unwrap().would_refuse);
        assert_eq!(p.upstreams, vec![good, other]);
        assert_eq!(p.would_deny, vec![other]);

        let learn = policy("learn", dns);
        let p = plan_query(Some(&learn), &ups, &[], &query(TUNNEL, 16));
        assert_eq!((p.refuse, p.upstreams.clone()), (None, ups.to_vec()));

        // blockTunneling off: protect forwards it (to the allowed resolver).
        let lax = policy("protect", r#"{ blockTunneling: false }"#);
        let p = plan_query(Some(&lax), &ups, &[], &query(TUNNEL, 16));
        assert_eq!((p.refuse, p.upstreams.clone()), (None, ups.to_vec()));
    }

    #[test]
    fn plan_answers_unlisted_names_in_protect_only() {
        let ups: [SocketAddr; 1] = ["198.51.100.53:53".parse().unwrap()];
        let dns = r#"{ allowedNames: listed, allowNames: ["*.cluster.local"] }"#;
        let with_rules = |mode: &str, dns: &str| {
            let y = format!(
                "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  mode: {mode}\n  dns: {dns}\n  rules: [ {{ id: api, direction: outbound, peer: {{ fqdn: api.example }} }} ]\n"
            );
            CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
        };
        let leak = query("mzxw6ytboi.attacker.example", 1);

        let protect = with_rules("protect", dns);
        let p = plan_query(Some(&protect), &ups, &[], &leak);
        assert_eq!(p.refuse, Some(Refusal::NameNotInPolicy));
        assert!(p.name.as_ref().unwrap().deny);
        let r = Refusal::NameNotInPolicy.answer(&leak).unwrap();
        assert_eq!(r[3] & 0x0F, 3, "NXDOMAIN");
        assert_eq!(&r[..2], &leak[..2]);
        for ok in [
            "api.example",
            "_http._tcp.api.example",
            "kube-dns.kube-system.svc.cluster.local",
        ] {
            let p = plan_query(Some(&protect), &ups, &[], &query(ok, 1));
            assert_eq!((p.refuse, p.name.is_none()), (None, true), "{ok}");
        }

        let monitor = with_rules("monitor", dns);
        let p = plan_query(Some(&monitor), &ups, &[], &leak);
        assert_eq!((p.refuse, p.upstreams.clone()), (None, ups.to_vec()));
        assert!(p.name.as_ref().unwrap().would_deny);

        let learn = with_rules("learn", dns);
        let p = plan_query(Some(&learn), &ups, &[], &leak);
        assert_eq!((p.refuse, p.name.is_none()), (None, true));

        // The default: names are not judged.
        let any = with_rules("protect", "{}");
        let p = plan_query(Some(&any), &ups, &[], &leak);
        assert_eq!((p.refuse, p.name.is_none()), (None, true));

        // Tunnelling is judged first and keeps its REFUSED.
        let both = with_rules(
            "protect",
            r#"{ allowedNames: listed, blockTunneling: true }"#,
        );
        let p = plan_query(Some(&both), &ups, &[], &query(TUNNEL, 16));
        assert_eq!(p.refuse, Some(Refusal::Tunnelling));
        let r = Refusal::Tunnelling.answer(&query(TUNNEL, 16)).unwrap();
        assert_eq!(r[3] & 0x0F, 5, "REFUSED");
    }

    #[test]
    fn search_path_tries_of_listed_names_are_answered_but_not_reported() {
        let ups: [SocketAddr; 1] = ["198.51.100.53:53".parse().unwrap()];
        let search: Vec<String> = [
            "shop.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .map(String::from)
        .to_vec();
        let policy = |mode: &str| {
            let y = format!(
                "apiVersion: podwarden.io/v1alpha1\nkind: WorkloadPolicy\nmetadata: {{ workload: a/b }}\nspec:\n  mode: {mode}\n  dns: {{ allowedNames: listed }}\n  rules: [ {{ id: api, direction: outbound, peer: {{ fqdn: api.example }} }} ]\n"
            );
            CompiledPolicy::compile(&load_policy_str(&y, "t").unwrap()).unwrap()
        };
        let protect = policy("protect");
        for tried in [
            "api.example.shop.svc.cluster.local",
            "API.Example.svc.cluster.local",
            "api.example.cluster.local",
        ] {
            let p = plan_query(Some(&protect), &ups, &search, &query(tried, 1));
            // NXDOMAIN as the cluster resolver would say, never forwarded…
            assert_eq!(p.refuse, Some(Refusal::NameNotInPolicy), "{tried}");
            // …and no event for the stub's own try.
            assert!(p.search_expansion && p.name.is_none(), "{tried}");
        }
        // Not expansions: an unlisted head, a bare search domain, a name
        // merely ending like one, or no search list.
        for (name, search) in [
            ("leak.attacker.example.shop.svc.cluster.local", &search[..]),
            ("svc.cluster.local", &search[..]),
            ("xapi.example.cluster.local", &search[..]),
            ("api.example.cluster.local", &[][..]),
        ] {
            let p = plan_query(Some(&protect), &ups, search, &query(name, 1));
            assert_eq!(p.refuse, Some(Refusal::NameNotInPolicy), "{name}");
            assert!(!p.search_expansion && p.name.is_some(), "{name}");
        }
        // Monitor forwards the try, also without a report.
        let monitor = policy("monitor");
        let p = plan_query(
            Some(&monitor),
            &ups,
            &search,
            &query("api.example.svc.cluster.local", 1),
        );
        assert_eq!((p.refuse, p.upstreams.clone()), (None, ups.to_vec()));
        assert!(p.search_expansion && p.name.is_none());
    }

    #[test]
    fn name_event_names_the_name_and_masks_tunnels() {
        let p = policy("protect", "{ allowedNames: listed }");
        let resolver: SocketAddr = "198.51.100.53:53".parse().unwrap();
        let v = p.judge_dns_name("leak.attacker.example.", RecordType::A);
        let e = name_event(
            "r1-dns-name".into(),
            "a/b",
            "p",
            Mode::Protect,
            resolver,
            &v,
            "leak.attacker.example.",
            RecordType::Aaaa,
        );
        let j: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
        // The record's spelling, not Rust's `Aaaa`.
        assert_eq!(j["details"]["qtype"], "AAAA");
        assert_eq!(j["kind"], "violation");
        assert_eq!(j["action"], "blocked");
        assert_eq!(j["rule"], NAME_NOT_IN_POLICY);
        assert_eq!(j["names"][0], "leak.attacker.example");
        assert_eq!(j["details"]["reason"], NAME_NOT_IN_POLICY);
        assert_eq!(j["details"]["answer"], "NXDOMAIN");
        assert_eq!(j["peer"], "198.51.100.53:53");

        let m = policy("monitor", "{ allowedNames: listed }");
        let v = m.judge_dns_name(TUNNEL, RecordType::Txt);
        let e = name_event(
            "r2-dns-name".into(),
            "a/b",
            "p",
            Mode::Monitor,
            resolver,
            &v,
            TUNNEL,
            RecordType::Txt,
        );
        assert_eq!(e.kind, EventKind::WouldBlock);
        assert_eq!(e.names, vec!["***.t.example".to_string()]);
        assert!(!e.to_json_line().contains("aGVsbG8"), "carried data masked");
    }

    #[test]
    fn record_question_names_the_query_and_its_answer() {
        let nx = Refusal::NameNotInPolicy
            .answer(&query("Leak.Attacker.Example", 28))
            .unwrap();
        let q = query_info(
            "Leak.Attacker.Example.",
            RecordType::Aaaa,
            false,
            Some(&nx),
            true,
        );
        assert_eq!(q.name, "leak.attacker.example");
        assert_eq!(
            (q.qtype.as_str(), q.rcode.as_deref(), q.reported),
            ("AAAA", Some("NXDOMAIN"), true)
        );
        let q = query_info(
            "api.example",
            RecordType::A,
            false,
            Some(&response()),
            false,
        );
        assert_eq!(q.rcode.as_deref(), Some("NOERROR"));
        let q = query_info("api.example", RecordType::Other(65), false, None, false);
        assert_eq!((q.qtype.as_str(), q.rcode), ("TYPE65", None));
        // The data a tunnelling query carries does not reach the flow log.
        let q = query_info(TUNNEL, RecordType::Txt, true, None, false);
        assert_eq!(q.name, "***.t.example");
    }

    #[test]
    fn plan_says_whether_the_question_is_tunnelling_shaped() {
        let up = ["192.0.2.53:53".parse().unwrap()];
        // Without a policy (learning) the default thresholds decide.
        let plan = plan_query(None, &up, &[], &query(TUNNEL, 16));
        assert!(plan.suspicious);
        assert!(plan.refuse.is_none());
        let plan = plan_query(None, &up, &[], &query("api.example", 1));
        assert!(!plan.suspicious);
    }

    #[test]
    fn masks_the_carried_labels() {
        assert_eq!(mask_query_name(TUNNEL), "***.t.example");
        assert_eq!(mask_query_name("example.com"), "example.com");
    }

    #[test]
    fn refused_sets_rcode() {
        let q = [0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        let r = refused(&q).unwrap();
        assert_eq!((r[2] & 0x80, r[3] & 0x0F), (0x80, 5));
        assert!(refused(&q[..5]).is_none());
    }
}
