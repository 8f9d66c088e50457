//! Keeps the first bytes of each upstream HTTP/1 response as the upstream sent them (above
//! TLS), so that a response hyper refuses can still be judged ([`crate::respread`]) and a
//! response head's raw form is known.
//!
//! [`TapConnector`] wraps the upstream connector; every connection it makes carries a
//! [`RawTap`], handed to the request through hyper-util's connection extras (in the
//! response's extensions, or in the error's connection info when hyper refused the
//! response). A connection's tap starts over at the first read after a write (the next
//! request on a pooled connection), keeps at most [`RAW_CAP`] bytes per response, and is off
//! for h2 connections. Bytes past the cap, or read while the tap is off, are not copied.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use tower_service::Service;

/// Bytes kept per response: the head and the start of the body.
pub const RAW_CAP: usize = 64 << 10;
/// How long a judge waits for hyper to let go of a connection it refused a response on.
const ORPHAN_WAIT: std::time::Duration = std::time::Duration::from_millis(500);
/// Largest read copied through the tap at once.
const STEP: usize = 8 << 10;

/// A connection hyper let go of, kept so the rest of a refused response can be read.
type Orphan = Pin<Box<dyn Read + Send>>;

/// One upstream connection's recording (see the module documentation).
#[derive(Default)]
pub struct RawTap {
    buf: Mutex<Vec<u8>>,
    /// The connection, once hyper dropped it (it refused the response, or closed it); dropped
    /// with the tap, at the end of the flow that holds it, or once read.
    orphan: Mutex<Option<Orphan>>,
    /// Signalled when the connection is kept as an orphan.
    orphaned: tokio::sync::Notify,
    /// Responses recorded so far on the connection (the one being recorded is this number).
    generation: AtomicU64,
    wrote: AtomicBool,
    off: AtomicBool,
}

impl RawTap {
    /// The bytes read since the request went out (at most [`RAW_CAP`]).
    pub fn bytes(&self) -> Bytes {
        self.buf
            .lock()
            .map(|b| Bytes::copy_from_slice(&b))
            .unwrap_or_default()
    }

    /// The recorded head of the response with this `status` (interim 1xx heads before it
    /// skipped), as sent: status line to the blank line.
    pub fn head(&self, status: u16) -> Option<Bytes> {
        let b = self.buf.lock().ok()?;
        let (at, end) = head_span(&b, status)?;
        Some(Bytes::copy_from_slice(&b[at..end]))
    }

    /// Reads what was recorded after the head of the response with this `status` (the start
    /// of its body as sent) with `read`, in place.
    pub fn read_body<R>(&self, status: u16, read: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let b = self.buf.lock().ok()?;
        let (_, end) = head_span(&b, status)?;
        Some(read(&b[end..]))
    }

    /// Which response the recording is of (changes when the next request goes out).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Frees the recording of response `generation` (its exchange is over), unless the
    /// connection has moved on to another response.
    pub fn release(&self, generation: u64) {
        if let Ok(mut b) = self.buf.lock() {
            if self.generation() == generation {
                *b = Vec::new();
                drop(self.orphan.lock().map(|mut o| o.take()));
            }
        }
    }

    /// Reads what the upstream still sends on a connection hyper dropped (the rest of a
    /// response it refused), up to [`RAW_CAP`] recorded, the end of the stream, or `wait`.
    pub async fn read_rest(&self, wait: std::time::Duration) {
        let full = self
            .buf
            .lock()
            .map_or(true, |b| b.is_empty() || b.len() >= RAW_CAP);
        if full || self.off.load(Ordering::Relaxed) {
            return;
        }
        let _ = tokio::time::timeout(wait, async {
            // hyper drops the connection soon after it reports the error.
            let mut io = loop {
                let notified = self.orphaned.notified();
                if let Some(io) = self.orphan.lock().ok().and_then(|mut o| o.take()) {
                    break io;
                }
                if tokio::time::timeout(ORPHAN_WAIT, notified).await.is_err() {
                    return;
                }
            };
            let mut scratch = vec![0u8; STEP];
            loop {
                let room = RAW_CAP.saturating_sub(self.buf.lock().map_or(RAW_CAP, |b| b.len()));
                if room == 0 {
                    return;
                }
                let want = room.min(STEP);
                let got = std::future::poll_fn(|cx| {
                    let mut rb = ReadBuf::new(&mut scratch[..want]);
                    match io.as_mut().poll_read(cx, rb.unfilled()) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await;
                match got {
                    Ok(n) if n > 0 => self.record(&scratch[..n]),
                    _ => return,
                }
            }
        })
        .await;
    }

    /// Room left for this response, starting over after a write.
    fn room(&self) -> usize {
        if self.off.load(Ordering::Relaxed) {
            return 0;
        }
        let Ok(mut b) = self.buf.lock() else {
            return 0;
        };
        if self.wrote.swap(false, Ordering::Relaxed) {
            b.clear();
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        RAW_CAP.saturating_sub(b.len())
    }

    fn record(&self, data: &[u8]) {
        if let Ok(mut b) = self.buf.lock() {
            let n = data.len().min(RAW_CAP.saturating_sub(b.len()));
            b.extend_from_slice(&data[..n]);
        }
    }
}

/// Where the head of the response with this `status` is in a recording (interim 1xx heads
/// before it skipped): its first byte and just past its blank line.
fn head_span(b: &[u8], status: u16) -> Option<(usize, usize)> {
    let code = status.to_string();
    let mut at = 0;
    for _ in 0..8 {
        let rest = &b[at..];
        let end = crate::headtap::head_end(rest, 0)?;
        let line = &rest[..memchr::memchr(b'\n', rest)?];
        let mut words = line
            .split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty());
        let proto = words.next()?;
        if !proto.starts_with(b"HTTP/") {
            return None;
        }
        if words.next() == Some(code.as_bytes()) {
            return Some((at, at + end));
        }
        at += end;
    }
    None
}

impl std::fmt::Debug for RawTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawTap")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// A connection whose reads are recorded by its [`RawTap`].
pub struct Tapped<T: Read + Send + 'static> {
    /// Always `Some` until dropped.
    inner: Option<T>,
    tap: Arc<RawTap>,
    /// Where reads land while a response is recorded (freed once it is not).
    scratch: Vec<u8>,
}

impl<T: Read + Send + 'static> Drop for Tapped<T> {
    /// An HTTP/1 connection hyper lets go of while a response was being recorded is kept in
    /// the tap (see [`RawTap::read_rest`]).
    fn drop(&mut self) {
        let recording = !self.tap.off.load(Ordering::Relaxed)
            && self
                .tap
                .buf
                .lock()
                .is_ok_and(|b| !b.is_empty() && b.len() < RAW_CAP);
        if let (true, Some(inner)) = (recording, self.inner.take()) {
            if let Ok(mut o) = self.tap.orphan.lock() {
                *o = Some(Box::pin(inner));
            }
            self.tap.orphaned.notify_one();
        }
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "connection dropped")
}

impl<T: Read + Send + Unpin + 'static> Read for Tapped<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        let room = this.tap.room();
        if room == 0 {
            // Not recording: hyper's buffer directly, and no scratch kept on an idle connection.
            this.scratch = Vec::new();
            return Pin::new(inner).poll_read(cx, buf);
        }
        // Reads as large as hyper asks (its adaptive buffer sizing and the chunk sizes it hands
        // on depend on it); only the recorded part is limited.
        let want = buf.remaining().min(RAW_CAP);
        if this.scratch.len() < want {
            this.scratch.resize(want, 0);
        }
        let mut rb = ReadBuf::new(&mut this.scratch[..want]);
        match Pin::new(inner).poll_read(cx, rb.unfilled()) {
            Poll::Ready(Ok(())) => {
                let got = rb.filled();
                this.tap.record(&got[..got.len().min(room)]);
                buf.put_slice(got);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<T: Read + Write + Send + Unpin + 'static> Write for Tapped<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.tap.wrote.store(true, Ordering::Relaxed);
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write(cx, buf),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.tap.wrote.store(true, Ordering::Relaxed);
        match this.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(gone())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(Write::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// What a connection knows of its TLS session, if it is TLS: the version and cipher suite
/// negotiated with the upstream, set on every response of the connection (static names: no
/// allocation per response).
pub(crate) trait TlsFacts {
    /// The negotiated version and cipher suite.
    fn tls_facts(&self) -> Option<sekisho_core::UpstreamTls>;
}

impl<T> TlsFacts for hyper_rustls::MaybeHttpsStream<T> {
    fn tls_facts(&self) -> Option<sekisho_core::UpstreamTls> {
        match self {
            hyper_rustls::MaybeHttpsStream::Http(_) => None,
            hyper_rustls::MaybeHttpsStream::Https(s) => {
                let (_, c) = s.inner().get_ref();
                Some(sekisho_core::UpstreamTls {
                    version: c
                        .protocol_version()
                        .map(|v| sekisho_core::UpstreamTls::version_name(u16::from(v))),
                    cipher: c
                        .negotiated_cipher_suite()
                        .and_then(|cs| cs.suite().as_str())
                        .map(Into::into),
                })
            }
        }
    }
}

impl<T: Connection + Read + Send + TlsFacts + 'static> Connection for Tapped<T> {
    fn connected(&self) -> Connected {
        let Some(inner) = self.inner.as_ref() else {
            return Connected::new();
        };
        let c = inner.connected();
        if c.is_negotiated_h2() {
            self.tap.off.store(true, Ordering::Relaxed);
        }
        let c = c.extra(Arc::clone(&self.tap));
        match inner.tls_facts() {
            Some(facts) => c.extra(facts),
            None => c,
        }
    }
}

/// Wraps a connector so that its connections are [`Tapped`].
#[derive(Clone)]
pub struct TapConnector<C> {
    inner: C,
}

impl<C> TapConnector<C> {
    /// Taps the connections `inner` makes.
    pub fn new(inner: C) -> Self {
        TapConnector { inner }
    }
}

impl<C> Service<Uri> for TapConnector<C>
where
    C: Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Read + Send + 'static,
{
    type Response = Tapped<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let fut = self.inner.call(uri);
        Box::pin(async move {
            let inner = fut.await?;
            Ok(Tapped {
                inner: Some(inner),
                tap: Arc::default(),
                scratch: Vec::new(),
            })
        })
    }
}

/// The tap of the connection a response came on (from its extensions).
pub(crate) fn of_response(ext: &http::Extensions) -> Option<Arc<RawTap>> {
    ext.get::<Arc<RawTap>>().cloned()
}

/// The tap of the connection a client error happened on.
pub(crate) fn of_error(err: &hyper_util::client::legacy::Error) -> Option<Arc<RawTap>> {
    let mut ext = http::Extensions::new();
    err.connect_info()?.get_extras(&mut ext);
    of_response(&ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_over_after_a_write_and_is_capped() {
        let t = RawTap::default();
        assert_eq!(t.room(), RAW_CAP);
        t.record(b"HTTP/1.1 200 OK\r\n");
        t.record(&vec![b'x'; RAW_CAP]);
        assert_eq!(t.bytes().len(), RAW_CAP);
        assert_eq!(t.room(), 0);
        t.wrote.store(true, Ordering::Relaxed);
        assert_eq!(t.room(), RAW_CAP);
        assert!(t.bytes().is_empty());
        t.record(b"abc");
        assert_eq!(&t.bytes()[..], b"abc");
        t.release(t.generation() - 1);
        assert_eq!(&t.bytes()[..], b"abc");
        t.release(t.generation());
        assert!(t.bytes().is_empty());
        t.wrote.store(true, Ordering::Relaxed);
        t.room();
        t.record(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 fine\r\nA:  b\r\n\r\nbody");
        assert_eq!(
            &t.head(200).unwrap()[..],
            b"HTTP/1.1 200 fine\r\nA:  b\r\n\r\n"
        );
        assert_eq!(&t.head(100).unwrap()[..], b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(t.head(404).is_none());
        t.off.store(true, Ordering::Relaxed);
        assert_eq!(t.room(), 0);
    }
}
