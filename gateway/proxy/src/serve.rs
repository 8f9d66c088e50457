//! Serving HTTP on a client connection (HTTP/1.1, or h2 by ALPN after TLS) with the read, idle
//! and header limits, and each HTTP/1 request's raw head as the client sent it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::conn::ConnInfo;
use crate::h2meter::{Alarm, H2Meter};
use crate::headtap;
use crate::io::{Activity, Tracked};
use crate::shared::Shared;
use crate::shed;
use crate::upstream::{error_chain, ProxyBody};

/// The raw bytes of a request head, as the client sent them, and the notes the connection's
/// tap makes on its body when chunked (HTTP/1 only).
#[derive(Clone)]
pub(crate) struct RawHead(pub Bytes, pub Option<Arc<sekisho_core::WireNotes>>);

impl RawHead {
    /// Fills a stage head's raw form and wire notes from the request's extensions.
    pub(crate) fn fill(ext: &http::Extensions, head: &mut sekisho_core::RequestHead) {
        if let Some(r) = ext.get::<RawHead>() {
            head.raw = Some(r.0.clone());
            head.wire = r.1.clone();
        }
    }
}

/// The client connection's activity clock, in each request's extensions.
#[derive(Clone)]
pub(crate) struct ClientActivity(pub Arc<Activity>);

/// Takes the request's raw head from the connection's tap into its extensions.
pub(crate) fn attach_raw_head(tap: &headtap::Tap, req: &mut Request<Incoming>) {
    let target = match req.uri().path_and_query() {
        Some(pq) if req.uri().scheme().is_none() => pq.as_str().to_string(),
        _ => req.uri().to_string(),
    };
    let raw = tap
        .lock()
        .ok()
        .and_then(|mut t| t.next_head(req.method().as_str(), &target));
    if let Some((raw, wire)) = raw {
        req.extensions_mut().insert(RawHead(raw, wire));
    }
}

/// Serves HTTP on a decrypted client connection (h2 or HTTP/1.1 by ALPN) with the read, idle
/// and header limits: each request gets its raw head (HTTP/1.1), is counted, and goes to
/// `handler`. A head hyper refuses goes to the stages all the same ([`crate::refused`]),
/// as a request of `scheme`. Returns the bytes read from and written to the client.
pub(crate) async fn serve_decrypted<IO, H, Fut>(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    tls: IO,
    (h2, scheme): (bool, &'static str),
    handler: H,
) -> (u64, u64)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let activity = Activity::new();
    let tap = (!h2).then(|| headtap::tap(shared.limits.max_header_bytes));
    let (alarm_tx, mut alarms) = tokio::sync::mpsc::channel(8);
    let meter = h2.then(|| {
        let m = H2Meter::new(shared.limits.max_header_bytes, Instant::now());
        (m, alarm_tx)
    });
    let refused_tap = tap.clone();
    let io = TokioIo::new(
        Tracked::new(tls, Arc::clone(&activity))
            .with_tap(tap.clone())
            .with_meter(meter),
    );
    let metrics = Arc::clone(&shared.metrics);
    let listener = Arc::clone(&conn.listener);
    let svc_activity = Arc::clone(&activity);
    let svc = service_fn(move |mut req: Request<Incoming>| {
        if let Some(tap) = &tap {
            attach_raw_head(tap, &mut req);
        }
        req.extensions_mut()
            .insert(ClientActivity(Arc::clone(&svc_activity)));
        let proto = if req.version() == Version::HTTP_2 {
            "h2"
        } else {
            "http1"
        };
        metrics
            .requests
            .with_label_values(&[&listener, proto])
            .inc();
        let fut = handler(req);
        async move { Ok::<_, Infallible>(fut.await) }
    });
    let limits = shared.limits_of(conn.index);
    let mut alarmed = false;
    let result = if h2 {
        let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .initial_stream_window_size(crate::upstream::H2_STREAM_WINDOW)
            .initial_connection_window_size(crate::upstream::H2_CONN_WINDOW)
            .max_frame_size(crate::upstream::H2_MAX_FRAME)
            .keep_alive_interval(Some(limits.idle_timeout))
            .serve_connection(io, svc);
        let served = crate::health::until_drained!(shared, served);
        let r = tokio::select! {
            r = served => r,
            _ = activity.idle(limits.idle_timeout) => Ok(()),
            _ = report_alarms(shared, conn, &mut alarms, &mut alarmed) => Ok(()),
        };
        // A flood cut ends `served` with its alarm still queued.
        while let Ok(a) = alarms.try_recv() {
            alarmed = true;
            shed::report(shared, conn, a.attack, &a.detail).await;
        }
        r
    } else {
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .serve_connection(io, svc)
            .with_upgrades();
        let served = crate::health::until_drained!(shared, served);
        tokio::select! {
            r = served => r,
            _ = activity.idle(limits.idle_timeout) => Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %error_chain(&e), "decrypted connection ended");
        // An alarm already stood for this connection's attack (an HPACK bomb that the h2
        // library then also cut as excessive): one attack, one event.
        let attack = shed::classify(&e).filter(|_| !alarmed);
        if let Some(attack) = attack {
            shed::report(shared, conn, attack, &error_chain(&e)).await;
        }
        if let Some(why) = crate::refused::Unserved::of(&e) {
            let raw = refused_tap.and_then(|t| t.lock().ok().and_then(|mut t| t.refused_head()));
            if let Some(raw) = raw {
                crate::refused::judge(shared, conn, raw, scheme, why).await;
            }
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    (activity.read.load(Relaxed), activity.written.load(Relaxed))
}

/// Reports the frame meter's alarms as they come (never returns while the connection lives).
async fn report_alarms(
    shared: &Shared,
    conn: &ConnInfo,
    alarms: &mut tokio::sync::mpsc::Receiver<Alarm>,
    alarmed: &mut bool,
) {
    while let Some(a) = alarms.recv().await {
        *alarmed = true;
        shed::report(shared, conn, a.attack, &a.detail).await;
    }
    std::future::pending::<()>().await;
}
