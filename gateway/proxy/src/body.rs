//! The body wrapper that drives the pipeline: frames pass straight through while every verdict is
//! Allow/Alert; `Hold` keeps them in a per-flow buffer bounded per flow and globally (a byte
//! semaphore) until `resolve` decides; `Block` ends the body with a [`Blocked`] error (the proxy
//! turns that into a block page before response headers, or a stream reset after).
//! Backpressure is natural: the next frame is not polled until the pipeline has answered.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use sekisho_core::{BoxFuture, Direction, HeldBody, Timer, Verdict};
use tokio::sync::OwnedSemaphorePermit;

use crate::fault::{self, Fault};
use crate::flowstate::{FinishGuard, FlowState};
use crate::upstream::{BoxError, ProxyBody};

/// The error a body ends with when the pipeline blocked it.
#[derive(Debug)]
pub struct Blocked(pub Option<uuid::Uuid>);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "blocked by the security gateway (event {id})"),
            None => f.write_str("blocked by the security gateway"),
        }
    }
}

impl std::error::Error for Blocked {}

/// True when `err` (or a cause) is a [`Blocked`].
pub fn is_blocked(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<Blocked>() {
            return true;
        }
        cur = e.source();
    }
    false
}

struct Held {
    body: HeldBody,
    permit: Option<OwnedSemaphorePermit>,
    state: Arc<FlowState>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.state
            .shared
            .metrics
            .hold_bytes
            .sub(self.body.len() as i64);
        drop(self.permit.take());
    }
}

/// Stage deadlines on tokio's clock.
pub(crate) struct TokioTimer;

impl Timer for TokioTimer {
    fn sleep(&self, after: std::time::Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(after))
    }
}

struct St<B> {
    body: B,
    dir: Direction,
    state: Arc<FlowState>,
    queue: VecDeque<Frame<Bytes>>,
    held: Option<Held>,
    /// Bytes of the held body already released before the verdict (`release_percent`).
    released: usize,
    trailers: Option<http::HeaderMap>,
    ended: bool,
    done: bool,
    _guard: Option<FinishGuard>,
}

impl<B> Drop for St<B> {
    /// A body dropped while stages still held it (the client went away, or the upstream answered
    /// before reading it): nothing held was forwarded; the communication log says so.
    fn drop(&mut self) {
        if !self.done && self.held.is_some() {
            self.state.set_error(format!(
                "{} body abandoned while held for inspection: none of the held bytes were forwarded",
                self.dir.as_str()
            ));
        }
    }
}

enum Step {
    Continue,
    Fail(BoxError),
    /// The upstream's response body failed (reset, truncated): the same, and a fault event.
    UpstreamFailed(BoxError),
}

/// Wraps `body` so that every chunk passes the flow's pipeline in direction `dir`. `guard` (for
/// response bodies) writes the communication log when the body ends or is dropped.
pub(crate) fn inspect<B>(
    body: B,
    dir: Direction,
    state: Arc<FlowState>,
    guard: Option<FinishGuard>,
) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let st = St {
        body,
        dir,
        state,
        queue: VecDeque::new(),
        held: None,
        released: 0,
        trailers: None,
        ended: false,
        done: false,
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(f) = st.queue.pop_front() {
                delivered(&st.state, st.dir, &f);
                return Some((Ok(f), st));
            }
            if st.done {
                return st.trailers.take().map(|t| (Ok(Frame::trailers(t)), st));
            }
            let e = match next_step(&mut st).await {
                Step::Continue => continue,
                Step::Fail(e) => e,
                Step::UpstreamFailed(e) => {
                    let upstream = st.state.upstream_name();
                    let detail = format!("response body: {e}");
                    fault::on_flow(&st.state, Fault::UpstreamReset, &upstream, &detail).await;
                    e
                }
            };
            st.done = true;
            st.queue.clear();
            st.held = None;
            st.trailers = None;
            return Some((Err(e), st));
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

async fn next_step<B>(st: &mut St<B>) -> Step
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let shared = Arc::clone(&st.state.shared);
    let body_timeout = st.state.body_timeout();
    let (chunk, mut end) = if st.ended {
        (Bytes::new(), true)
    } else {
        // Waiting on the upstream's next chunk keeps the client connection from counting idle.
        let _busy = (st.dir == Direction::Response)
            .then(|| st.state.client_busy())
            .flatten();
        let polled = tokio::time::timeout(body_timeout, st.body.frame())
            .await
            .map(|f| f.map(|r| r.map_err(Into::<BoxError>::into)));
        match polled {
            Err(_) => {
                let msg = format!(
                    "{} body: no data for {}",
                    st.dir.as_str(),
                    crate::wire::secs(body_timeout)
                );
                st.state.set_error(msg.clone());
                return Step::Fail(msg.into());
            }
            Ok(None) => (Bytes::new(), true),
            Ok(Some(Err(e))) => {
                st.state.set_error(format!("{} body: {e}", st.dir.as_str()));
                if st.dir == Direction::Response {
                    st.state.note_response_framing();
                    judge_undelivered(st).await;
                    return Step::UpstreamFailed(e);
                }
                return Step::Fail(e);
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => (data, false),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        st.trailers = Some(t);
                    }
                    (Bytes::new(), true)
                }
            },
        }
    };
    if !end && st.body.is_end_stream() {
        end = true;
    }
    st.ended = end;
    if end && st.dir == Direction::Response {
        st.state.note_response_framing();
    }
    let received = match st.dir {
        Direction::Request => &st.state.from_client,
        Direction::Response => &st.state.from_server,
    };
    received.fetch_add(chunk.len() as u64, Ordering::Relaxed);

    let state = Arc::clone(&st.state);
    let dir = st.dir;
    let mut flow = state.flow.lock().await;
    let v = flow.body(dir, &chunk, end);
    st.state.emit(&mut flow).await;
    if v == Verdict::Block {
        return blocked_after_release(st, flow.blocking_event());
    }
    if flow.holding(dir) {
        let overflow = hold(st, chunk);
        if overflow.is_none() && end {
            let held_body = st.held.as_ref().map(|h| &h.body);
            let empty = HeldBody::new(dir);
            let held_body = held_body.unwrap_or(&empty);
            // Each holding stage decides within its own deadline; one that does not answer in
            // time gets its on_error inside `resolve`, so nothing is released on a timeout.
            let v = flow.resolve(dir, held_body, &TokioTimer).await;
            st.state.emit(&mut flow).await;
            if v == Verdict::Block {
                return blocked_after_release(st, flow.blocking_event());
            }
            release(st);
        } else {
            if let Some(h) = st
                .held
                .as_mut()
                .filter(|h| flow.hold_due(dir, h.body.len()))
            {
                // A stage has what it needs (a WAF at its body limit): it decides on this
                // prefix and the rest streams past it; other stages may still hold.
                h.body.set_prefix(true);
                let v = flow.resolve_due(dir, &h.body, &TokioTimer).await;
                h.body.set_prefix(false);
                st.state.emit(&mut flow).await;
                if v == Verdict::Block {
                    return blocked_after_release(st, flow.blocking_event());
                }
            }
            match overflow {
                Some((rest, reason)) => {
                    if flow.holding(dir) {
                        shared.metrics.hold_overflows.inc();
                        let v = flow.overflow(dir, &reason);
                        st.state.emit(&mut flow).await;
                        if v == Verdict::Block {
                            return Step::Fail(Box::new(Blocked(flow.blocking_event())));
                        }
                    }
                    release(st);
                    push_data(&mut st.queue, rest);
                }
                None if flow.holding(dir) => release_share(st, flow.release_share(dir)),
                None => release(st),
            }
        }
    } else {
        release(st);
        push_data(&mut st.queue, chunk);
    }
    if end {
        st.done = true;
        if st.dir == Direction::Request {
            st.state.mark_request_sent();
        }
    }
    Step::Continue
}

/// A response body hyper gave up on (malformed framing, cut short): the stages get the rest
/// as libhtp reads it from the recorded bytes, and the end of the body, so the IPS judges
/// what a lenient client would have taken. Nothing more reaches the client.
async fn judge_undelivered<B>(st: &mut St<B>) {
    let seen = st.state.from_server.load(Ordering::Relaxed);
    let Some(rest) = crate::respjudge::undelivered(&st.state, seen).await else {
        return;
    };
    let state = Arc::clone(&st.state);
    let mut flow = state.flow.lock().await;
    flow.body(st.dir, &rest, true);
    state.emit(&mut flow).await;
    if flow.holding(st.dir) {
        let mut held = st
            .held
            .take()
            .map_or_else(|| HeldBody::new(st.dir), |h| h.body.clone());
        held.push(rest);
        flow.resolve(st.dir, &held, &TokioTimer).await;
        state.emit(&mut flow).await;
    }
}

/// Holds `chunk` for the stages holding its direction, within the per-flow and the gateway's
/// hold limits. Returns what did not fit (a tail, or the whole chunk) and why.
fn hold<B>(st: &mut St<B>, chunk: Bytes) -> Option<(Bytes, String)> {
    let shared = Arc::clone(&st.state.shared);
    let held = st.held.get_or_insert_with(|| Held {
        body: HeldBody::new(st.dir),
        permit: None,
        state: Arc::clone(&st.state),
    });
    let room = shared.limits.hold_per_flow.saturating_sub(held.body.len());
    let (fits, rest) = if chunk.len() > room {
        (chunk.slice(..room), chunk.slice(room..))
    } else {
        (chunk.clone(), Bytes::new())
    };
    if !fits.is_empty() {
        match Arc::clone(&shared.hold).try_acquire_many_owned(fits.len() as u32) {
            Ok(p) => {
                match held.permit.as_mut() {
                    Some(all) => all.merge(p),
                    None => held.permit = Some(p),
                }
                shared.metrics.hold_bytes.add(fits.len() as i64);
                held.body.push(fits);
            }
            Err(_) => return Some((chunk, "the gateway's total hold limit is reached".into())),
        }
    }
    (!rest.is_empty()).then(|| {
        let why = format!(
            "too large to scan (over the per-flow hold limit of {} bytes)",
            shared.limits.hold_per_flow
        );
        (rest, why)
    })
}

/// Counts a frame passed on (to the upstream for requests, to the client for responses): the
/// communication log's `bytes_to_*` and `sekisho_bytes_total`.
fn delivered(state: &FlowState, dir: Direction, f: &Frame<Bytes>) {
    let n = f.data_ref().map_or(0, |d| d.len() as u64);
    let (counter, label) = match dir {
        Direction::Request => (&state.to_server, "to_server"),
        Direction::Response => (&state.to_client, "to_client"),
    };
    counter.fetch_add(n, Ordering::Relaxed);
    state
        .shared
        .metrics
        .bytes
        .with_label_values(&[label])
        .inc_by(n);
}

fn push_data(queue: &mut VecDeque<Frame<Bytes>>, chunk: Bytes) {
    if !chunk.is_empty() {
        queue.push_back(Frame::data(chunk));
    }
}

/// Moves every held chunk not yet released to the output queue.
fn release<B>(st: &mut St<B>) {
    if let Some(mut held) = st.held.take() {
        let len = held.body.len();
        let from = std::mem::take(&mut st.released);
        let chunks = held.body.take_chunks();
        for c in slice_range(&chunks, from, len) {
            st.queue.push_back(Frame::data(c));
        }
        st.state.shared.metrics.hold_bytes.sub(len as i64);
    }
}

/// Client comforting: releases up to `share` percent of what is held so far (still held whole
/// for the verdict).
fn release_share<B>(st: &mut St<B>, share: u8) {
    let Some(held) = st.held.as_ref() else { return };
    let allowed = held.body.len() * usize::from(share) / 100;
    if allowed <= st.released {
        return;
    }
    for c in slice_range(held.body.chunks(), st.released, allowed) {
        st.queue.push_back(Frame::data(c));
    }
    st.released = allowed;
}

/// A block after part of the body went out early: the transfer is cut (the client sees a reset,
/// not a clean end) and the flow line says how much had been released.
fn blocked_after_release<B>(st: &mut St<B>, event: Option<uuid::Uuid>) -> Step {
    if st.released > 0 {
        st.state.set_error(format!(
            "{} body blocked after {} bytes were released before the verdict: transfer reset",
            st.dir.as_str(),
            st.released
        ));
    }
    Step::Fail(Box::new(Blocked(event)))
}

/// The bytes `[from, to)` of `chunks`, as slices of them.
fn slice_range(chunks: &[Bytes], from: usize, to: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    for c in chunks {
        let (start, end) = (at, at + c.len());
        at = end;
        if end <= from || start >= to {
            continue;
        }
        let lo = from.saturating_sub(start);
        let hi = (to - start).min(c.len());
        if lo < hi {
            out.push(c.slice(lo..hi));
        }
    }
    out
}

/// How much of an abandoned request body is read and discarded.
const DRAIN_BYTES: u64 = 8 << 20;

/// A request body that, when dropped before its end (the upstream answered without reading all
/// of it), keeps reading and discarding what the client still sends (bounded in bytes and by a
/// per-frame timeout) instead of resetting the client's stream while the response is in flight.
pub(crate) struct DrainOnDrop<B: Body<Data = Bytes> + Send + Unpin + 'static> {
    inner: Option<B>,
    frame_timeout: std::time::Duration,
    /// Drain only once this is set (an `Expect: 100-continue` body the origin never asked for
    /// is not read: reading it would make hyper send the client `100 Continue`).
    armed: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> DrainOnDrop<B> {
    pub(crate) fn new(inner: B, frame_timeout: std::time::Duration) -> Self {
        DrainOnDrop {
            inner: Some(inner),
            frame_timeout,
            armed: None,
        }
    }

    /// Drains on drop only once `armed` is set.
    pub(crate) fn armed(mut self, armed: Option<Arc<std::sync::atomic::AtomicBool>>) -> Self {
        self.armed = armed;
        self
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Body for DrainOnDrop<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.inner.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}

impl<B: Body<Data = Bytes> + Send + Unpin + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.inner.take() else {
            return;
        };
        let unarmed = self
            .armed
            .as_ref()
            .is_some_and(|a| !a.load(Ordering::Acquire));
        if body.is_end_stream() || unarmed {
            return;
        }
        let timeout = self.frame_timeout;
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let mut seen = 0u64;
                while seen < DRAIN_BYTES {
                    match tokio::time::timeout(timeout, body.frame()).await {
                        Ok(Some(Ok(f))) => {
                            seen += f.data_ref().map_or(0, |d| d.len() as u64);
                        }
                        _ => break,
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_exactly_the_range_across_chunks() {
        let chunks: Vec<Bytes> = ["abc", "defg", "h", "ijkl"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let cat = |v: Vec<Bytes>| v.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        assert_eq!(cat(slice_range(&chunks, 0, 12)), b"abcdefghijkl");
        assert_eq!(cat(slice_range(&chunks, 2, 9)), b"cdefghi");
        assert_eq!(cat(slice_range(&chunks, 3, 7)), b"defg");
        assert_eq!(cat(slice_range(&chunks, 7, 8)), b"h");
        assert!(slice_range(&chunks, 5, 5).is_empty());
        assert!(slice_range(&chunks, 12, 20).is_empty());
        for cut in 0..=12 {
            let mut both = cat(slice_range(&chunks, 0, cut));
            both.extend(cat(slice_range(&chunks, cut, 12)));
            assert_eq!(both, b"abcdefghijkl", "cut at {cut}");
        }
    }
}
