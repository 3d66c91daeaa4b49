//! Flow records: unique ids, a bounded in-memory ring for `/flows`, and an
//! optional bounded channel to a consumer (the learner). Recording never
//! blocks the data path: a full channel drops the record and counts it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use podwarden_policy::FlowRecord;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::mpsc;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Ids are `<start ms, hex>-<pid, hex>-<counter, hex>`: unique within a
/// process, ordered by time, and distinct across pods in practice.
pub struct IdGen {
    /// `-<pid, hex>-`, made once.
    pid_part: String,
    counter: AtomicU64,
}

impl Default for IdGen {
    fn default() -> Self {
        let mut pid_part = String::with_capacity(10);
        pid_part.push('-');
        push_hex(&mut pid_part, u64::from(std::process::id()));
        pid_part.push('-');
        IdGen {
            pid_part,
            counter: AtomicU64::new(0),
        }
    }
}

impl IdGen {
    pub fn next(&self, at_ms: u64) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // By hand: one id per request, and `format!` costs more than the
        // rest of making the record.
        let mut id = String::with_capacity(12 + self.pid_part.len() + 16);
        push_hex(&mut id, at_ms);
        id.push_str(&self.pid_part);
        push_hex(&mut id, n);
        id
    }
}

/// Appends `v` in lower-case hex without leading zeros (as `{:x}`).
fn push_hex(s: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // `| 1`: zero is one digit.
    let digits = (64 - (v | 1).leading_zeros()).div_ceil(4);
    for i in (0..digits).rev() {
        s.push(char::from(DIGITS[((v >> (i * 4)) & 0xf) as usize]));
    }
}

struct Ring {
    records: VecDeque<(u64, Arc<FlowRecord>)>,
    seq: u64,
}

/// A further consumer of every record (e.g. the on-disk flow log), called
/// on the data path right after the record is made: it must not block.
pub trait RecordTap: Send + Sync {
    fn offer(&self, rec: &Arc<FlowRecord>);
}

pub struct FlowLog {
    cap: usize,
    ring: Mutex<Ring>,
    subscriber: ArcSwapOption<mpsc::Sender<Arc<FlowRecord>>>,
    taps: ArcSwap<Vec<Arc<dyn RecordTap>>>,
    ids: IdGen,
    /// `podwarden_flow_records_total` for connections and requests,
    /// resolved once.
    recorded_by_kind: [IntCounter; 2],
    dropped: IntCounter,
}

impl FlowLog {
    pub fn new(cap: usize, registry: &Registry) -> Result<Self, prometheus::Error> {
        let recorded = IntCounterVec::new(
            Opts::new(
                "podwarden_flow_records_total",
                "Flow records produced, by kind.",
            ),
            &["kind"],
        )?;
        let dropped = IntCounter::new(
            "podwarden_flow_records_dropped_total",
            "Flow records not delivered to the subscriber because its queue was full.",
        )?;
        registry.register(Box::new(recorded.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(FlowLog {
            cap: cap.max(1),
            ring: Mutex::new(Ring {
                records: VecDeque::with_capacity(cap.clamp(1, 1024)),
                seq: 0,
            }),
            subscriber: ArcSwapOption::empty(),
            taps: ArcSwap::from_pointee(Vec::new()),
            ids: IdGen::default(),
            recorded_by_kind: ["connection", "request"].map(|k| recorded.with_label_values(&[k])),
            dropped,
        })
    }

    pub fn next_id(&self, at_ms: u64) -> String {
        self.ids.next(at_ms)
    }

    /// Starts delivering every later record to a bounded channel (replacing
    /// any previous subscriber). Records are shared, not copied: the ring,
    /// the taps and the subscriber all hold the same allocation.
    pub fn subscribe(&self, capacity: usize) -> mpsc::Receiver<Arc<FlowRecord>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.subscriber.store(Some(Arc::new(tx)));
        rx
    }

    /// Adds a consumer alongside the subscriber (taps are never replaced).
    pub fn add_tap(&self, tap: Arc<dyn RecordTap>) {
        self.taps.rcu(|v| {
            let mut v = Vec::clone(v);
            v.push(tap.clone());
            v
        });
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    pub fn record(&self, rec: FlowRecord) {
        let kind = match rec.kind {
            podwarden_policy::RecordKind::Connection => 0,
            podwarden_policy::RecordKind::Request => 1,
        };
        self.recorded_by_kind[kind].inc();
        let rec = Arc::new(rec);
        if let Some(tx) = self.subscriber.load().as_ref() {
            if tx.try_send(rec.clone()).is_err() {
                self.dropped.inc();
            }
        }
        for tap in self.taps.load().iter() {
            tap.offer(&rec);
        }
        let mut ring = match self.ring.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        ring.seq += 1;
        let seq = ring.seq;
        if ring.records.len() == self.cap {
            ring.records.pop_front();
        }
        ring.records.push_back((seq, rec));
    }

    /// Records in the order they completed, oldest first. `since` is either a
    /// record id (records completed after it; all if it has left the ring)
    /// or a unix time in ms (records that ended at or after it).
    pub fn snapshot(&self, since: Option<&str>) -> Vec<Arc<FlowRecord>> {
        let ring = match self.ring.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        match since {
            None => ring.records.iter().map(|(_, r)| r.clone()).collect(),
            Some(s) => match s.parse::<u64>() {
                Ok(ms) => ring
                    .records
                    .iter()
                    .filter(|(_, r)| r.start_ms + r.duration_ms >= ms)
                    .map(|(_, r)| r.clone())
                    .collect(),
                Err(_) => {
                    let start = ring
                        .records
                        .iter()
                        .position(|(_, r)| r.id == s)
                        .map(|i| i + 1)
                        .unwrap_or(0);
                    ring.records
                        .iter()
                        .skip(start)
                        .map(|(_, r)| r.clone())
                        .collect()
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::{Decision, Direction, Flow, RecordKind};

    fn rec(log: &FlowLog, start: u64) -> FlowRecord {
        FlowRecord {
            id: log.next_id(start),
            start_ms: start,
            duration_ms: 1,
            flow: Flow::connection(
                Direction::Outbound,
                "192.0.2.1:80".parse().unwrap(),
                "192.0.2.2:1".parse().unwrap(),
            ),
            bytes_sent: 0,
            bytes_received: 0,
            decision: Decision::allow_learning(),
            kind: RecordKind::Connection,
            status: None,
        }
    }

    #[test]
    fn ring_is_bounded_newest_last() {
        let log = FlowLog::new(3, &Registry::new()).unwrap();
        for t in 1..=5 {
            log.record(rec(&log, t));
        }
        let s = log.snapshot(None);
        assert_eq!(
            s.iter().map(|r| r.start_ms).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        let after = log.snapshot(Some(&s[0].id));
        assert_eq!(
            after.iter().map(|r| r.start_ms).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(log.snapshot(Some("5")).len(), 2); // ended at >= 5 ms: 4+1, 5+1
    }

    #[test]
    fn ids_are_hex_like_format() {
        let ids = IdGen::default();
        for at in [0u64, 1, 0xf, 0x10, 0x18c2f5e1a3b, u64::MAX] {
            let id = ids.next(at);
            let n = ids.counter.load(Ordering::Relaxed) - 1;
            assert_eq!(id, format!("{at:x}-{:x}-{n:x}", std::process::id()));
        }
    }

    #[test]
    fn ids_are_unique() {
        let ids = IdGen::default();
        let a: std::collections::HashSet<_> = (0..1000).map(|_| ids.next(42)).collect();
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn full_subscriber_counts_drops() {
        let log = FlowLog::new(10, &Registry::new()).unwrap();
        let mut rx = log.subscribe(2);
        for t in 0..5 {
            log.record(rec(&log, t));
        }
        assert_eq!(log.dropped(), 3);
        assert_eq!(rx.try_recv().unwrap().start_ms, 0);
        assert_eq!(log.snapshot(None).len(), 5);
    }

    #[test]
    fn subscriber_and_ring_share_one_record() {
        let log = FlowLog::new(10, &Registry::new()).unwrap();
        let mut rx = log.subscribe(4);
        log.record(rec(&log, 7));
        let got = rx.try_recv().unwrap();
        let ring = log.snapshot(None);
        assert!(Arc::ptr_eq(&got, &ring[0]), "one allocation, no deep copy");
    }
}
