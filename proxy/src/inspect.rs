//! Inspection hooks the relays run, in the spirit of pingora's `ProxyHttp`
//! phases. WAF and DLP adapters implement these; the proxy only provides the
//! plumbing and the blocking semantics:
//!
//! * HTTP: `request_head` → `request_body(chunk, end)`… → `response_head` →
//!   `response_body(chunk, end)`…, each returning [`Verdict`]. A block before
//!   the response head answers 403 with an event id (the connection lives
//!   on); a block in the response body resets the stream.
//! * Opaque TCP: every chunk in either direction, then the end of each
//!   direction; a block resets both sides.
//!
//! An inspector is a factory: `begin` is called once per request (or
//! stream) and returns per-request state (e.g. a WAF transaction), or `None`
//! when it has nothing to look at, so uninterested inspectors cost nothing.

use std::sync::Arc;

use arc_swap::ArcSwap;
use podwarden_policy::Flow;

/// Why an inspector stopped a request or stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Rule identifier (e.g. a CRS rule id or a DLP sensor name).
    pub rule: String,
    /// Human-readable reason, safe to show to the client.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    Block(Block),
}

/// Per-request inspection state. All phases default to `Continue`.
pub trait RequestInspection: Send {
    fn request_head(&mut self, _head: &http::request::Parts) -> Verdict {
        Verdict::Continue
    }
    fn request_body(&mut self, _chunk: &[u8], _end: bool) -> Verdict {
        Verdict::Continue
    }
    fn response_head(&mut self, _head: &http::response::Parts) -> Verdict {
        Verdict::Continue
    }
    fn response_body(&mut self, _chunk: &[u8], _end: bool) -> Verdict {
        Verdict::Continue
    }
}

pub trait HttpInspector: Send + Sync {
    fn begin(&self, flow: &Flow) -> Option<Box<dyn RequestInspection>>;
    /// As `begin`, knowing the id of the request's flow record: the id a 403
    /// shows, which the inspector's security events carry too.
    fn begin_with_id(&self, flow: &Flow, _event_id: &str) -> Option<Box<dyn RequestInspection>> {
        self.begin(flow)
    }
}

/// Which way bytes travel on an opaque stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDir {
    /// From the connection's initiator to the peer it called.
    ClientToServer,
    ServerToClient,
}

pub trait StreamInspection: Send {
    fn on_data(&mut self, dir: StreamDir, chunk: &[u8]) -> Verdict;
    /// The sender half-closed `dir` (everything before was relayed). A
    /// block here resets both sides instead of passing the FIN on.
    fn on_end(&mut self, _dir: StreamDir) -> Verdict {
        Verdict::Continue
    }
}

pub trait StreamInspector: Send + Sync {
    fn begin(&self, flow: &Flow) -> Option<Box<dyn StreamInspection>>;
    /// As `begin`, knowing the id of the connection's flow record.
    fn begin_with_id(&self, flow: &Flow, _event_id: &str) -> Option<Box<dyn StreamInspection>> {
        self.begin(flow)
    }
}

/// The inspectors in force; swapped as a whole on reload.
#[derive(Default, Clone)]
pub struct InspectorSet {
    pub http: Vec<Arc<dyn HttpInspector>>,
    pub stream: Vec<Arc<dyn StreamInspector>>,
}

/// Hot-swappable holder shared by all connections.
#[derive(Clone, Default)]
pub struct Inspectors {
    current: Arc<ArcSwap<InspectorSet>>,
}

impl Inspectors {
    pub fn new(set: InspectorSet) -> Self {
        Inspectors {
            current: Arc::new(ArcSwap::from_pointee(set)),
        }
    }
    pub fn swap(&self, set: InspectorSet) {
        self.current.store(Arc::new(set));
    }
    pub fn load(&self) -> Arc<InspectorSet> {
        self.current.load_full()
    }
}

/// The per-request chain: runs every interested inspector in order and stops
/// at the first block.
pub struct RequestChain {
    stages: Vec<Box<dyn RequestInspection>>,
}

macro_rules! run_chain {
    ($self:ident, $m:ident ( $($a:expr),* )) => {{
        for s in $self.stages.iter_mut() {
            if let Verdict::Block(b) = s.$m($($a),*) {
                return Verdict::Block(b);
            }
        }
        Verdict::Continue
    }};
}

impl RequestChain {
    /// `None` when no inspector wants this request (the fast path).
    pub fn begin(set: &InspectorSet, flow: &Flow) -> Option<RequestChain> {
        if set.http.is_empty() {
            return None;
        }
        let stages: Vec<_> = set.http.iter().filter_map(|i| i.begin(flow)).collect();
        (!stages.is_empty()).then_some(RequestChain { stages })
    }
    /// As `begin`, passing the flow record's id to the inspectors.
    pub fn begin_with_id(set: &InspectorSet, flow: &Flow, event_id: &str) -> Option<RequestChain> {
        if set.http.is_empty() {
            return None;
        }
        let stages: Vec<_> = set
            .http
            .iter()
            .filter_map(|i| i.begin_with_id(flow, event_id))
            .collect();
        (!stages.is_empty()).then_some(RequestChain { stages })
    }
    pub fn request_head(&mut self, head: &http::request::Parts) -> Verdict {
        run_chain!(self, request_head(head))
    }
    pub fn request_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        run_chain!(self, request_body(chunk, end))
    }
    pub fn response_head(&mut self, head: &http::response::Parts) -> Verdict {
        run_chain!(self, response_head(head))
    }
    pub fn response_body(&mut self, chunk: &[u8], end: bool) -> Verdict {
        run_chain!(self, response_body(chunk, end))
    }
}

/// The per-stream chain for opaque TCP.
pub struct StreamChain {
    stages: Vec<Box<dyn StreamInspection>>,
}

impl StreamChain {
    pub fn begin(set: &InspectorSet, flow: &Flow) -> Option<StreamChain> {
        if set.stream.is_empty() {
            return None;
        }
        let stages: Vec<_> = set.stream.iter().filter_map(|i| i.begin(flow)).collect();
        (!stages.is_empty()).then_some(StreamChain { stages })
    }
    /// As `begin`, passing the flow record's id to the inspectors.
    pub fn begin_with_id(set: &InspectorSet, flow: &Flow, event_id: &str) -> Option<StreamChain> {
        if set.stream.is_empty() {
            return None;
        }
        let stages: Vec<_> = set
            .stream
            .iter()
            .filter_map(|i| i.begin_with_id(flow, event_id))
            .collect();
        (!stages.is_empty()).then_some(StreamChain { stages })
    }
    pub fn on_data(&mut self, dir: StreamDir, chunk: &[u8]) -> Verdict {
        run_chain!(self, on_data(dir, chunk))
    }
    pub fn on_end(&mut self, dir: StreamDir) -> Verdict {
        run_chain!(self, on_end(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podwarden_policy::Direction;

    struct BlockWord(&'static str);
    struct BlockWordState(&'static str);
    impl RequestInspection for BlockWordState {
        fn request_body(&mut self, chunk: &[u8], _end: bool) -> Verdict {
            if chunk.windows(self.0.len()).any(|w| w == self.0.as_bytes()) {
                Verdict::Block(Block {
                    rule: "word".into(),
                    reason: self.0.into(),
                })
            } else {
                Verdict::Continue
            }
        }
    }
    impl HttpInspector for BlockWord {
        fn begin(&self, _flow: &Flow) -> Option<Box<dyn RequestInspection>> {
            Some(Box::new(BlockWordState(self.0)))
        }
    }
    struct NotInterested;
    impl HttpInspector for NotInterested {
        fn begin(&self, _flow: &Flow) -> Option<Box<dyn RequestInspection>> {
            None
        }
    }

    fn flow() -> Flow {
        Flow::connection(
            Direction::Inbound,
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:80".parse().unwrap(),
        )
    }

    #[test]
    fn chain_runs_in_order_and_stops_at_block() {
        let set = InspectorSet {
            http: vec![
                Arc::new(NotInterested),
                Arc::new(BlockWord("secret")),
                Arc::new(BlockWord("other")),
            ],
            stream: vec![],
        };
        let mut chain = RequestChain::begin(&set, &flow()).unwrap();
        assert_eq!(chain.stages.len(), 2);
        assert_eq!(chain.request_body(b"hello", false), Verdict::Continue);
        match chain.request_body(b"a secret and other", true) {
            Verdict::Block(b) => assert_eq!(b.reason, "secret"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn no_inspectors_no_chain() {
        assert!(RequestChain::begin(&InspectorSet::default(), &flow()).is_none());
        let set = InspectorSet {
            http: vec![Arc::new(NotInterested)],
            stream: vec![],
        };
        assert!(RequestChain::begin(&set, &flow()).is_none());
    }
}
