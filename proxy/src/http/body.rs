//! A body wrapper that counts bytes, runs an inspection phase on each chunk,
//! and (for responses) records the request's flow record when it is done.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::http::upstream::BoxError;
use crate::inspect::{Block, RequestChain, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

/// What one request/response exchange's bodies share with its handler, in
/// one allocation per request: bytes each way, and why an inspector stopped
/// a body (so the handler can tell "blocked" from "upstream failed").
#[derive(Default)]
pub struct Exchange {
    /// From the client (request body).
    pub sent: AtomicU64,
    /// Towards the client (response body).
    pub received: AtomicU64,
    pub blocked: Mutex<Option<Block>>,
}

impl Exchange {
    fn counter(&self, phase: Phase) -> &AtomicU64 {
        match phase {
            Phase::Request => &self.sent,
            Phase::Response => &self.received,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("blocked by inspector: {0}")]
pub struct Blocked(pub String);

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Runs the chain's phase for one chunk.
pub fn inspect(chain: &Mutex<RequestChain>, phase: Phase, chunk: &[u8], end: bool) -> Verdict {
    let mut c = lock(chain);
    match phase {
        Phase::Request => c.request_body(chunk, end),
        Phase::Response => c.response_body(chunk, end),
    }
}

pub struct TapBody<B> {
    inner: B,
    phase: Phase,
    chain: Option<Arc<Mutex<RequestChain>>>,
    exchange: Arc<Exchange>,
    ended: bool,
    /// Dropped with the body: records the flow once the exchange is over.
    _on_drop: Option<Box<dyn Send + Sync>>,
}

impl<B> TapBody<B> {
    pub fn new(
        inner: B,
        phase: Phase,
        chain: Option<Arc<Mutex<RequestChain>>>,
        exchange: Arc<Exchange>,
        on_drop: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        TapBody {
            inner,
            phase,
            chain,
            exchange,
            ended: false,
            _on_drop: on_drop,
        }
    }

    /// Marks the end phase as already run (empty bodies are inspected by the
    /// handler before the body is handed over).
    pub fn already_ended(mut self) -> Self {
        self.ended = true;
        self
    }

    fn block(&mut self, b: Block) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let msg = format!("{}: {}", b.rule, b.reason);
        *lock(&self.exchange.blocked) = Some(b);
        self.ended = true;
        Poll::Ready(Some(Err(Box::new(Blocked(msg)))))
    }
}

impl<B> Body for TapBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended && this.chain.is_some() && lock(&this.exchange.blocked).is_some() {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.exchange
                        .counter(this.phase)
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Some(chain) = &this.chain {
                        let end = this.inner.is_end_stream();
                        let v = inspect(chain, this.phase, data, end);
                        if end {
                            this.ended = true;
                        }
                        if let Verdict::Block(b) = v {
                            return this.block(b);
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => {
                if !this.ended {
                    this.ended = true;
                    if let Some(chain) = &this.chain {
                        if let Verdict::Block(b) = inspect(chain, this.phase, &[], true) {
                            return this.block(b);
                        }
                    }
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
