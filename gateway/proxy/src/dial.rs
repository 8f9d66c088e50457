//! Dialling upstreams under the destination guard: a resolver that drops denied addresses
//! before any connection is attempted, a connector that checks literal addresses before and the
//! dialled peer after connecting (the gateway's own listeners), and the same for spliced tunnels.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Uri;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::guard::{DestGuard, Refused};

/// The guard in force (swapped on reload); `None` for upstreams the operator configured
/// (reverse routes), which are not checked.
pub(crate) type Guard = Option<Arc<ArcSwap<DestGuard>>>;

fn refused(r: Refused) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, r)
}

/// An upstream name that did not resolve.
#[derive(Debug, thiserror::Error)]
#[error("{host} did not resolve: {source}")]
pub(crate) struct Unresolved {
    host: String,
    source: io::Error,
}

/// DNS through `getaddrinfo`, keeping only addresses the guard allows.
#[derive(Clone)]
pub(crate) struct GuardedResolver {
    inner: GaiResolver,
    guard: Guard,
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_string();
        let fut = self.inner.call(name);
        let guard = self.guard.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = fut
                .await
                .map_err(|source| {
                    io::Error::new(io::ErrorKind::NotFound, Unresolved { host, source })
                })?
                .collect();
            match &guard {
                Some(g) => allowed(&g.load(), addrs, |g, a| g.check_ip(a.ip())),
                None => Ok(addrs.into_iter()),
            }
        })
    }
}

/// The addresses `check` allows; an error naming the first refusal when none is left.
fn allowed(
    g: &DestGuard,
    addrs: Vec<SocketAddr>,
    check: impl Fn(&DestGuard, SocketAddr) -> Result<(), Refused>,
) -> io::Result<std::vec::IntoIter<SocketAddr>> {
    let mut first = None;
    let ok: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match check(g, *a) {
            Ok(()) => true,
            Err(r) => {
                first.get_or_insert(r);
                false
            }
        })
        .collect();
    match (ok.is_empty(), first) {
        (true, Some(r)) => Err(refused(r)),
        _ => Ok(ok.into_iter()),
    }
}

/// `HttpConnector` under the guard.
#[derive(Clone)]
pub(crate) struct GuardedConnector {
    http: HttpConnector<GuardedResolver>,
    guard: Guard,
}

impl GuardedConnector {
    /// TCP_NODELAY, keep-alive and a connect timeout, as every upstream connection gets.
    pub(crate) fn new(guard: Guard, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new_with_resolver(GuardedResolver {
            inner: GaiResolver::new(),
            guard: guard.clone(),
        });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        GuardedConnector { http, guard }
    }
}

/// The address of a URI whose host is an IP literal.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some(SocketAddr::new(ip, port))
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.http.poll_ready(cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let guard = self.guard.clone();
        if let (Some(g), Some(addr)) = (&guard, literal(&uri)) {
            if let Err(r) = g.load().check(addr) {
                return Box::pin(async move { Err(refused(r)) });
            }
        }
        let fut = self.http.call(uri);
        Box::pin(async move {
            let io = fut.await.map_err(|e| match take_refused(&e) {
                Some(r) => refused(r),
                None => io::Error::other(e),
            })?;
            if let (Some(g), Ok(peer)) = (&guard, io.inner().peer_addr()) {
                // A name may resolve to the gateway's own listener: no bytes were sent yet.
                g.load().check(peer).map_err(refused)?;
            }
            Ok(io)
        })
    }
}

/// An error and its causes, looking inside `io::Error`s (connectors nest them, and `io::Error`
/// hides its payload from `source()`).
pub(crate) fn causes<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

/// The refusal inside a connector error, if that is why it failed.
pub(crate) fn take_refused(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    causes(err).find_map(|e| e.downcast_ref::<Refused>().cloned())
}

/// Connects to `host:port` for a spliced tunnel: every resolved address checked before it is
/// tried, the peer checked after; addresses tried in order within `timeout` overall.
pub(crate) async fn connect_checked(
    guard: &DestGuard,
    host: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tokio::time::timeout(timeout, async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"));
        for a in allowed(guard, addrs, DestGuard::check)? {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}
