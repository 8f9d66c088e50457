//! A stream wrapper that records the last read/write time, so an idle connection or tunnel can be
//! closed by a watchdog whatever protocol runs over it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::h2meter::{Alarm, H2Meter};
use crate::shed::Attack;

/// Shared activity clock of one connection.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
    /// Bytes read from this stream.
    pub read: AtomicU64,
    /// Bytes written to this stream.
    pub written: AtomicU64,
    /// Exchanges waiting on their upstream ([`Activity::busy`]): the stream is not idle then.
    busy: AtomicU64,
}

/// Marks a connection busy while an exchange waits on its upstream; dropping it counts as
/// activity.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    /// A clock starting now.
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        })
    }

    /// The connection is busy (a request waits for its response head, a response body waits
    /// for its next chunk from the upstream) until the guard drops: the upstream's own timeouts
    /// bound that wait, not the client connection's idle timeout. A client that does not read
    /// what it is sent is not busy and stays bounded by the idle timeout.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(self))
    }

    /// Notes activity now.
    pub(crate) fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Time since the last read or write.
    pub fn idle_for(&self) -> Duration {
        let now = self.origin.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Resolves once the stream has seen no activity for `limit` and is not [`Activity::busy`].
    pub async fn idle(self: &Arc<Self>, limit: Duration) {
        loop {
            if self.busy.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(limit).await;
                continue;
            }
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle + Duration::from_millis(5)).await;
        }
    }
}

/// A stream whose reads and writes touch an [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    tap: Option<crate::headtap::Tap>,
    meter: Option<Metered>,
    /// Bytes read and rewritten (a request target percent-encoded) that did not fit the
    /// caller's buffer: given before anything else is read. At most twice a request line.
    pending: Vec<u8>,
}

/// An h2 frame meter and where its alarms go, a flood's included (dropped when the receiver
/// lags: one event per window is all the shedder reports anyway).
struct Metered {
    meter: H2Meter,
    alarms: tokio::sync::mpsc::Sender<Alarm>,
    /// Cut for a flood: every later read fails at once (one alarm, one count).
    cut: bool,
}

impl<S> Tracked<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked {
            inner,
            activity,
            tap: None,
            meter: None,
            pending: Vec::new(),
        }
    }

    /// Also meters the h2 frames read (see [`crate::h2meter`]); a flood fails the read.
    pub(crate) fn with_meter(
        mut self,
        meter: Option<(H2Meter, tokio::sync::mpsc::Sender<Alarm>)>,
    ) -> Self {
        self.meter = meter.map(|(meter, alarms)| Metered {
            meter,
            alarms,
            cut: false,
        });
        self
    }

    /// Also feeds every byte read to `tap`, which keeps HTTP/1 request heads as sent.
    pub fn with_tap(mut self, tap: Option<crate::headtap::Tap>) -> Self {
        self.tap = tap;
        self
    }
}

impl<S> Tracked<S> {
    /// Percent-encodes the bytes at `marks` (offsets from `before`) of what was just read into
    /// `buf`; what no longer fits waits in `pending`.
    fn encode_marked(&mut self, buf: &mut ReadBuf<'_>, before: usize, marks: &[usize]) {
        let read = buf.filled()[before..].to_vec();
        let mut out = Vec::with_capacity(read.len() + 2 * marks.len());
        let mut next = marks.iter().peekable();
        for (i, &b) in read.iter().enumerate() {
            if next.next_if(|&&m| m == i).is_some() {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                out.push(b);
            }
        }
        buf.set_filled(before);
        let k = out.len().min(buf.remaining());
        buf.put_slice(&out[..k]);
        self.pending.extend_from_slice(&out[k..]);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.meter.as_ref().is_some_and(|m| m.cut) {
            return Poll::Ready(Err(io::Error::other("h2 connection cut for a flood")));
        }
        if !self.pending.is_empty() {
            let k = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..k]);
            self.pending.drain(..k);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            self.activity.read.fetch_add(n as u64, Ordering::Relaxed);
            let marks = match self.tap.as_ref().map(|t| t.lock()) {
                Some(Ok(mut t)) => t.feed_marking(&buf.filled()[before..]),
                _ => Vec::new(),
            };
            if !marks.is_empty() {
                self.encode_marked(buf, before, &marks);
            }
            let written = self.activity.written.load(Ordering::Relaxed);
            if let Some(m) = &mut self.meter {
                let alarms = &m.alarms;
                let fed =
                    m.meter
                        .feed(&buf.filled()[before..], written, Instant::now(), &mut |a| {
                            let _ = alarms.try_send(a);
                        });
                if let Err(flood) = fed {
                    // h2 keeps only the message of an io error: the alarm says what it was.
                    m.cut = true;
                    let detail = flood.to_string();
                    let _ = m.alarms.try_send(Alarm {
                        attack: Attack::H2Flood,
                        detail: detail.clone(),
                    });
                    return Poll::Ready(Err(io::Error::other(detail)));
                }
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, b);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.touch();
                self.activity.written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.touch();
                self.activity.written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
