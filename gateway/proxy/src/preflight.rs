//! Knowing the upstream before answering the client (`[tls] preflight`).
//!
//! For a tunnel that will be decrypted, the gateway dials the server and reads its first flight
//! (whether it asks for a client certificate, the version and cipher it speaks, its certificate)
//! before it completes the client's handshake. The tunnel can then still be spliced, the
//! client's own ClientHello replayed on a fresh connection, or blocked, on the same client
//! connection.
//!
//! The connection is not wasted: it waits in a [`Stash`] under `https://host:port` (five seconds
//! at most: a server may close a connection that carries no request), and the pool's connector
//! ([`StashConnector`]) hands it, or the error the dial met, to the next request that needs a new
//! connection to that server (normally the tunnel's first); from then on it is an ordinary
//! pooled connection. Every dial the pools make notes certificate requests too, so a TLS 1.2
//! server that ends the handshake after the gateway's empty certificate is named for what it
//! asked, not taken for a legacy cipher.
//! Servers whose first flight was unremarkable are remembered (`preflight_remember_secs`) and
//! their tunnels go straight to the pool: clients that open a new tunnel per request keep the
//! pool's reuse.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::Uri;
use tower_service::Service;

use crate::upstream::BoxError;

/// How long a dialled connection (or the error its dial met) waits for its first request.
const HOLD: Duration = Duration::from_secs(5);
/// Connections (and errors) waiting at once, over every server.
const STASH_MAX: usize = 1024;

tokio::task_local! {
    /// The pre-flight dial running in this task.
    static FLIGHT: Arc<AtomicBool>;
}

/// The upstream client's client-certificate "resolver": the gateway has no certificate to
/// present, and a pre-flight dial notes that the server asked for one.
#[derive(Debug)]
pub(crate) struct NoteCertificateRequest;

impl rustls::client::ResolvesClientCert for NoteCertificateRequest {
    fn resolve(
        &self,
        _issuers: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let _ = FLIGHT.try_with(|asked| asked.store(true, Ordering::Relaxed));
        None
    }

    fn has_certs(&self) -> bool {
        false
    }
}

/// What a request meets on a server that asked the pre-flight dial for a client certificate
/// while the operator blocks such servers.
#[derive(Debug, thiserror::Error)]
#[error("the server asks for a client certificate")]
pub struct CertificateRequested;

/// Runs `dial` noting whether the server asks for a client certificate.
pub(crate) async fn noting_certificate_request<F: Future>(dial: F) -> (F::Output, bool) {
    let asked = Arc::new(AtomicBool::new(false));
    let out = FLIGHT.scope(Arc::clone(&asked), dial).await;
    (out, asked.load(Ordering::Relaxed))
}

/// The stash key of a server: scheme, lower-case host and port (the default one filled in), so
/// `Example.org` and `example.org:443` meet.
pub(crate) fn key(uri: &Uri) -> Option<String> {
    let scheme = uri.scheme_str()?;
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Some(format!("{scheme}://{host}:{port}"))
}

/// Dialled connections (or dial errors) waiting for their first request, by server; bounded in
/// count and time.
pub(crate) struct Stash<T, E> {
    held: Mutex<Held<T, E>>,
    hold: Duration,
    /// Whether the sweeper runs (started by the first put).
    sweeping: AtomicBool,
}

/// One held entry: when it was put, and what the dial gave.
type Entry<T, E> = (Instant, Result<T, E>);

struct Held<T, E> {
    by_key: HashMap<String, Vec<Entry<T, E>>>,
    count: usize,
}

/// Drops expired entries every tenth of the hold time while the stash lives.
async fn sweep<T: Send + 'static, E: Send + 'static>(stash: std::sync::Weak<Stash<T, E>>) {
    loop {
        let Some(s) = stash.upgrade() else {
            return;
        };
        let every = (s.hold / 10).max(Duration::from_millis(10));
        s.expire();
        drop(s);
        tokio::time::sleep(every).await;
    }
}

impl<T: Send + 'static, E: Send + 'static> Stash<T, E> {
    /// An empty stash whose entries wait `hold` at most.
    pub(crate) fn new(hold: Duration) -> Arc<Self> {
        Arc::new(Stash {
            held: Mutex::new(Held {
                by_key: HashMap::new(),
                count: 0,
            }),
            hold,
            sweeping: AtomicBool::new(false),
        })
    }

    /// Holds `r` for the next request to `key`, for the stash's hold time at most; false (and
    /// `r` dropped) when the stash is full.
    pub(crate) fn put(self: &Arc<Self>, key: String, r: Result<T, E>) -> bool {
        {
            let Ok(mut h) = self.held.lock() else {
                return false;
            };
            if h.count >= STASH_MAX {
                return false;
            }
            h.count += 1;
            h.by_key.entry(key).or_default().push((Instant::now(), r));
        }
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
        true
    }

    /// The oldest entry held for `key` that is still fresh.
    pub(crate) fn take(&self, key: &str) -> Option<Result<T, E>> {
        let mut h = self.held.lock().ok()?;
        let list = h.by_key.get_mut(key)?;
        let (at, r) = list.remove(0);
        if list.is_empty() {
            h.by_key.remove(key);
        }
        h.count -= 1;
        (at.elapsed() < self.hold).then_some(r)
    }

    /// Drops the entries held longer than the hold time.
    fn expire(&self) {
        let Ok(mut h) = self.held.lock() else {
            return;
        };
        let hold = self.hold;
        let mut dropped = 0;
        h.by_key.retain(|_, list| {
            let before = list.len();
            list.retain(|(at, _)| at.elapsed() < hold);
            dropped += before - list.len();
            !list.is_empty()
        });
        h.count -= dropped;
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().map(|h| h.count).unwrap_or(0)
    }
}

/// A connector that first hands out what its [`Stash`] holds for the server asked for.
pub(crate) struct StashConnector<C: Service<Uri>> {
    inner: C,
    stash: Arc<Stash<C::Response, C::Error>>,
}

impl<C: Service<Uri> + Clone> Clone for StashConnector<C> {
    fn clone(&self) -> Self {
        StashConnector {
            inner: self.inner.clone(),
            stash: Arc::clone(&self.stash),
        }
    }
}

impl<C> StashConnector<C>
where
    C: Service<Uri> + Clone,
    C::Response: Send + 'static,
    C::Error: Send + 'static,
{
    /// Wraps `inner` with an empty stash.
    pub(crate) fn new(inner: C) -> Self {
        StashConnector {
            inner,
            stash: Stash::new(HOLD),
        }
    }

    /// Dials `uri` with the wrapped connector, bypassing the stash.
    pub(crate) fn dial(&self, uri: Uri) -> C::Future {
        self.inner.clone().call(uri)
    }

    /// The stash.
    pub(crate) fn stash(&self) -> &Arc<Stash<C::Response, C::Error>> {
        &self.stash
    }
}

impl<C> Service<Uri> for StashConnector<C>
where
    C: Service<Uri, Error = BoxError>,
    C::Future: Send + 'static,
    C::Response: Send + 'static,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    /// What the stash holds for the server, or a new dial that names a server ending the
    /// handshake after it asked for a client certificate.
    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some(held) = key(&uri).and_then(|k| self.stash.take(&k)) {
            return Box::pin(std::future::ready(held));
        }
        let dial = self.inner.call(uri);
        Box::pin(async move {
            match noting_certificate_request(dial).await {
                (Err(e), true) if crate::upstream::refused_after_request(e.as_ref()) => {
                    Err(Box::new(CertificateRequested) as BoxError)
                }
                (r, _) => r,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fill_in_the_default_port_and_fold_case() {
        let k = |s: &str| key(&s.parse().unwrap());
        assert_eq!(k("https://Example.ORG").unwrap(), "https://example.org:443");
        assert_eq!(
            k("https://example.org:443/x").unwrap(),
            "https://example.org:443"
        );
        assert_eq!(k("http://example.org").unwrap(), "http://example.org:80");
        assert_eq!(k("https://[::1]:8443").unwrap(), "https://[::1]:8443");
        assert_ne!(k("https://example.org:8443"), k("https://example.org"));
        assert!(k("/relative").is_none());
    }

    #[tokio::test]
    async fn the_oldest_entry_goes_first_and_the_stash_is_bounded() {
        let s: Arc<Stash<u32, ()>> = Stash::new(HOLD);
        assert!(s.put("a".into(), Ok(1)));
        assert!(s.put("a".into(), Err(())));
        assert!(s.put("b".into(), Ok(3)));
        assert_eq!(s.take("a"), Some(Ok(1)));
        assert_eq!(s.take("a"), Some(Err(())));
        assert_eq!(s.take("a"), None);
        assert_eq!(s.len(), 1);
        for i in 1..STASH_MAX {
            assert!(s.put(format!("k{i}"), Ok(0)), "{i}");
        }
        assert!(!s.put("over".into(), Ok(0)), "full");
        assert_eq!(s.take("b"), Some(Ok(3)));
        assert!(s.put("over".into(), Ok(0)), "room again");
    }

    #[tokio::test]
    async fn entries_expire() {
        let s: Arc<Stash<u32, ()>> = Stash::new(Duration::from_millis(20));
        assert!(s.put("a".into(), Ok(1)));
        assert_eq!(s.len(), 1);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.len(), 0);
        assert_eq!(s.take("a"), None);
    }

    #[tokio::test]
    async fn the_note_is_taken_only_inside_a_flight() {
        use rustls::client::ResolvesClientCert;
        assert!(NoteCertificateRequest.resolve(&[], &[]).is_none());
        let ((), asked) = noting_certificate_request(async {}).await;
        assert!(!asked);
        let (none, asked) =
            noting_certificate_request(async { NoteCertificateRequest.resolve(&[], &[]) }).await;
        assert!(none.is_none() && asked);
    }
}
