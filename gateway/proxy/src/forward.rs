//! The explicit forward proxy: absolute-form HTTP/1.1 and CONNECT, with TLS interception or
//! splicing decided from the peeked ClientHello.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sekisho_core::{
    split_host_port, DestinationInfo, Direction, Evidence, Finding, FlowMeta, RequestHead, Respond,
    ResponseHead, Severity, TlsMode, Verdict,
};
use tokio::net::TcpStream;

use crate::blockpage::{self, BlockInfo};
use crate::body::{inspect, is_blocked, DrainOnDrop};
use crate::conn::ConnInfo;
use crate::flowstate::{FinishGuard, FlowState, HttpFacts};
use crate::headtap;
use crate::io::{Activity, Tracked};
use crate::tlspeek::{peek_client_hello, Peeked, Rewind};
use crate::upstream::{classify, error_chain, ProxyBody, UpstreamFailure};
use crate::Shared;

/// A decrypted CONNECT tunnel's facts.
pub(crate) struct TunnelCtx {
    host: String,
    port: u16,
    sni: Option<String>,
    /// The tunnel's ClientHello was refused by policy: every request gets the block page.
    blocked: Option<(Option<uuid::Uuid>, String)>,
    /// The TLS version negotiated with the client.
    tls_version: Option<u16>,
}

fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An empty body.
pub(crate) fn empty_body() -> ProxyBody {
    empty()
}

/// Where an inspected request goes.
pub(crate) enum Dest {
    /// The forward proxy's target: this URI; `drop_host` when the URI carries the client's
    /// authority (one `:authority` upstream, no Host).
    Direct { uri: Uri, drop_host: bool },
    /// A reverse-proxy route's pool.
    Pool(Box<crate::reverse::Dispatch>),
}

/// Why a request did not reach an upstream.
pub(crate) enum SendError {
    /// The client failed (connect, TLS, protocol).
    Upstream(hyper_util::client::legacy::Error),
    /// The pool had no member left to try.
    NoUpstream,
}

pub(crate) fn text_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

pub(crate) fn block_response(
    status: StatusCode,
    title: &str,
    reason: &str,
    host: &str,
    category: &str,
    event_id: Option<uuid::Uuid>,
) -> Response<ProxyBody> {
    blockpage::response(
        status,
        &BlockInfo {
            title,
            reason,
            host,
            category,
            event_id,
        },
    )
    .map(full)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy-specific ones.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and those named in `Connection`. Keeps `Upgrade` (and a
/// `Connection: upgrade`) when `keep_upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    let upgrade = headers.get(header::UPGRADE).cloned();
    for n in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        headers.remove(n);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::UPGRADE, u);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

fn add_via(headers: &mut HeaderMap, version: Version) {
    let v = match version {
        Version::HTTP_10 => "1.0 sekisho",
        Version::HTTP_2 => "2 sekisho",
        _ => "1.1 sekisho",
    };
    headers.append(header::VIA, HeaderValue::from_static(v));
}

pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn authority(host: &str, port: u16) -> String {
    format!("{}:{port}", bracket(host))
}

/// An IPv6 literal in brackets; other hosts as they are.
pub(crate) fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// h2 clients name the virtual host in `:authority`, not Host: stages and HTTP/1.1 upstreams
/// see it as Host either way.
pub(crate) fn host_from_authority(parts: &mut http::request::Parts) {
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
}

/// The raw bytes of a request head, as the client sent them (HTTP/1 only).
#[derive(Clone)]
pub(crate) struct RawHead(pub Bytes);

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
    if let Some(raw) = raw {
        req.extensions_mut().insert(RawHead(raw));
    }
}

/// Serves one client connection of a forward listener.
pub(crate) async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, conn: Arc<ConnInfo>) {
    let activity = Activity::new();
    let tap = headtap::tap(shared.limits.max_header_bytes);
    let io =
        TokioIo::new(Tracked::new(tcp, Arc::clone(&activity)).with_tap(Some(Arc::clone(&tap))));
    let svc_shared = Arc::clone(&shared);
    let svc_conn = Arc::clone(&conn);
    let svc = service_fn(move |mut req| {
        let shared = Arc::clone(&svc_shared);
        let conn = Arc::clone(&svc_conn);
        attach_raw_head(&tap, &mut req);
        async move { Ok::<_, Infallible>(proxy_request(shared, conn, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.read_timeout)
        .max_buf_size(shared.limits.max_header_bytes)
        .serve_connection(io, svc)
        .with_upgrades();
    tokio::select! {
        r = served => {
            if let Err(e) = r {
                tracing::debug!(client = %conn.client, error = %error_chain(&e), "client connection ended");
            }
        }
        _ = activity.idle(shared.limits.idle_timeout) => {
            tracing::debug!(client = %conn.client, "client connection idle: closed");
        }
    }
}

async fn proxy_request(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        shared
            .metrics
            .requests
            .with_label_values(&[&conn.listener, "connect"])
            .inc();
        return connect(shared, conn, req).await;
    }
    shared
        .metrics
        .requests
        .with_label_values(&[&conn.listener, "http1"])
        .inc();
    match (req.uri().scheme_str(), req.uri().authority()) {
        (Some("http") | Some("https"), Some(_)) => http_flow(shared, conn, None, req).await,
        _ => {
            shared
                .metrics
                .bad_requests
                .with_label_values(&[&conn.listener])
                .inc();
            tracing::info!(client = %conn.client, uri = %req.uri(), "not a proxy request");
            text_response(
                StatusCode::BAD_REQUEST,
                "Sekisho is a forward proxy: send absolute-form requests (http://host/path) or CONNECT host:port",
            )
        }
    }
}

pub(crate) fn new_meta(shared: &Shared, conn: &ConnInfo, host: &str, port: u16) -> FlowMeta {
    let mut meta = FlowMeta::new(
        shared.next_flow_id(),
        conn.listener.to_string(),
        conn.client,
        conn.local,
    );
    meta.conn_id = conn.id;
    meta.target_host = Some(host.to_string());
    meta.target_port = Some(port);
    meta
}

/// The counted 400 for a request whose upstream URI does not parse.
pub(crate) fn bad_target(
    shared: &Shared,
    conn: &ConnInfo,
    e: impl std::fmt::Display,
) -> Response<ProxyBody> {
    shared
        .metrics
        .bad_requests
        .with_label_values(&[&conn.listener])
        .inc();
    text_response(StatusCode::BAD_REQUEST, &format!("bad request target: {e}"))
}

/// One HTTP transaction: plain (absolute-form) or inside a decrypted tunnel.
pub(crate) async fn http_flow(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: Option<Arc<TunnelCtx>>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let client_upgrade = (req.version() == Version::HTTP_11 && wants_upgrade(req.headers()))
        .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    // Inside a tunnel the upstream is always the CONNECT target. When the client's own authority
    // (Host, or h2 :authority) names that same target, it becomes the upstream URI's authority and
    // the Host header is dropped, so an h2 upstream gets one :authority and an HTTP/1.1 upstream
    // one Host; a different virtual host keeps its Host header.
    let mut drop_host = false;
    let (scheme, auth) = match &tunnel {
        Some(t) => {
            let client_auth = parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()));
            let auth = match client_auth {
                Some(a) if split_host_port(&a, 443) == (t.host.clone(), t.port) => {
                    drop_host = true;
                    a
                }
                _ => authority(&t.host, t.port),
            };
            ("https".to_string(), auth)
        }
        None => (
            parts.uri.scheme_str().unwrap_or("http").to_string(),
            parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
        ),
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let up_uri: Uri = match format!("{scheme}://{auth}{path}").parse() {
        Ok(u) => u,
        Err(e) => return bad_target(&shared, &conn, e),
    };
    // h2 clients name the virtual host in :authority, not Host: stages and HTTP/1.1 upstreams
    // see it as Host either way.
    host_from_authority(&mut parts);
    let mut head = RequestHead::new(
        parts.method.clone(),
        up_uri.clone(),
        parts.version,
        parts.headers.clone(),
        default_port,
    );
    head.raw = parts.extensions.get::<RawHead>().map(|r| r.0.clone());
    let mut meta = new_meta(&shared, &conn, &head.host, head.port);
    if let Some(t) = &tunnel {
        meta.sni = t.sni.clone();
        meta.tls = TlsMode::Decrypted;
        meta.tls_version = t.tls_version;
    }
    let http = HttpFacts::of_request(&parts, &up_uri, &head.host, &path, None);
    let dest = DestinationInfo {
        ip: None,
        port: Some(head.port),
        domain: Some(head.host.clone()),
    };
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(Arc::clone(&shared), flow, http, dest);
    let guard = FinishGuard(Arc::clone(&state));

    if let Some((event_id, pattern)) = tunnel.as_ref().and_then(|t| t.blocked.clone()) {
        state.set_status(403);
        return block_response(
            StatusCode::FORBIDDEN,
            "Access blocked",
            &format!(
                "The site {} is not allowed by the gateway policy.",
                head.host
            ),
            &head.host,
            &pattern,
            event_id,
        );
    }

    inspect_and_send(
        shared,
        conn,
        state,
        guard,
        head,
        parts,
        body,
        client_upgrade,
        started,
        Dest::Direct {
            uri: up_uri,
            drop_host,
        },
    )
    .await
}

/// Runs the pipeline on a request, sends it to `dest`, and runs the pipeline on the response:
/// the part the forward and reverse proxies share.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn inspect_and_send(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    guard: FinishGuard,
    head: RequestHead,
    mut parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: Instant,
    dest: Dest,
) -> Response<ProxyBody> {
    let v = {
        let mut flow = state.flow.lock().await;
        let v = flow.request_head(&head);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            return request_blocked(&state, &flow, &head.host);
        }
        if let Some(answer) = flow.answer() {
            return stage_response(&state, &flow, &head.host, answer);
        }
        v
    };

    strip_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
    add_via(&mut parts.headers, parts.version);
    match &dest {
        Dest::Direct { uri, drop_host } => {
            if *drop_host {
                parts.headers.remove(header::HOST);
            }
            parts.uri = uri.clone();
            parts.version = Version::HTTP_11;
        }
        Dest::Pool(d) => d.prepare(&mut parts),
    }
    // A bodyless request ends here: the body phase (IPS stream rules) runs before it is sent.
    let v = if body.is_end_stream() && v != Verdict::Hold {
        let mut flow = state.flow.lock().await;
        let bv = flow.body(Direction::Request, &Bytes::new(), true);
        state.emit(&mut flow).await;
        if bv == Verdict::Block {
            return request_blocked(&state, &flow, &head.host);
        }
        v.max(bv)
    } else {
        v
    };
    let body = if body.is_end_stream() && v != Verdict::Hold {
        state.mark_request_sent();
        empty()
    } else {
        let stream = inspect(
            DrainOnDrop::new(body, shared.limits.read_timeout),
            Direction::Request,
            Arc::clone(&state),
            None,
        );
        if v == Verdict::Hold {
            // Request buffering: a held body is read and judged completely (bounded by the hold
            // limits) before anything goes upstream, so an upstream that answers early cannot cut
            // the inspection short and a block is a page.
            match buffer_request(stream).await {
                Ok(b) => b,
                Err(e) if is_blocked(e.as_ref()) => {
                    let flow = state.flow.lock().await;
                    return request_blocked(&state, &flow, &head.host);
                }
                Err(e) => {
                    state.set_error(format!("request body: {e}"));
                    state.set_status(400);
                    return text_response(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read",
                    );
                }
            }
        } else {
            stream
        }
    };
    let up_req = Request::from_parts(parts, body);

    // The response timeout starts once the request body is sent: a long upload is bounded by the
    // per-chunk read timeout instead.
    let response_timeout = match &dest {
        Dest::Pool(d) => d.response_timeout(shared.limits.response_timeout),
        Dest::Direct { .. } => shared.limits.response_timeout,
    };
    let deadline = async {
        state.request_sent().await;
        tokio::time::sleep(response_timeout).await;
    };
    let send = async {
        match &dest {
            Dest::Direct { .. } => shared
                .client
                .request(up_req)
                .await
                .map_err(SendError::Upstream),
            Dest::Pool(d) => d.send(&shared, &state, up_req).await,
        }
    };
    let resp = match tokio::select! {
        r = send => Ok(r),
        () = deadline => Err(()),
    } {
        Err(()) => {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
            state.set_error(format!("no response head within {response_timeout:?}"));
            state.set_status(504);
            return text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream server did not answer in time",
            );
        }
        Ok(Err(SendError::Upstream(e))) => {
            return upstream_failed(&shared, &state, &head.host, e).await
        }
        Ok(Err(SendError::NoUpstream)) => {
            state.set_error("no upstream in the pool");
            state.set_status(502);
            return text_response(StatusCode::BAD_GATEWAY, "no upstream server is available");
        }
        Ok(Ok(r)) => r,
    };
    let mut resp = resp;
    if let Some(info) = resp
        .extensions()
        .get::<hyper_util::client::legacy::connect::HttpInfo>()
    {
        state.set_dest_ip(Some(info.remote_addr().ip().to_string()));
        let remote = info.remote_addr();
        let certs = shared.upstream_certs.get(&head.host);
        state
            .update_meta(|meta| {
                meta.upstream = Some(remote);
                if let Some(c) = certs {
                    meta.upstream_certs = c;
                }
            })
            .await;
    }
    let server_upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && client_upgrade.is_some())
    .then(|| hyper::upgrade::on(&mut resp));
    let (mut rparts, rbody) = resp.into_parts();
    let rhead = ResponseHead {
        status: rparts.status,
        version: rparts.version,
        headers: rparts.headers.clone(),
    };
    let v = {
        let mut flow = state.flow.lock().await;
        let v = flow.response_head(&rhead);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            state.set_status(403);
            let event = flow.blocking_event();
            let category = flow_category(&state, &flow);
            return block_response(
                StatusCode::FORBIDDEN,
                "Response blocked",
                &format!(
                    "The response from {} was blocked by the gateway policy.",
                    head.host
                ),
                &head.host,
                &category,
                event,
            );
        }
        v
    };
    state.set_status(rparts.status.as_u16());

    if let (Some(client_up), Some(server_up)) = (client_upgrade, server_upgrade) {
        {
            drop(rbody);
            strip_hop_by_hop(&mut rparts.headers, true);
            add_via(&mut rparts.headers, Version::HTTP_11);
            let st = Arc::clone(&state);
            tokio::spawn(async move {
                let _guard = guard;
                match tokio::try_join!(client_up, server_up) {
                    Ok((c, s)) => {
                        let mut c = TokioIo::new(c);
                        let mut s = TokioIo::new(s);
                        match tokio::io::copy_bidirectional(&mut c, &mut s).await {
                            Ok((to_s, to_c)) => {
                                st.to_server
                                    .fetch_add(to_s, std::sync::atomic::Ordering::Relaxed);
                                st.to_client
                                    .fetch_add(to_c, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => st.set_error(format!("upgraded stream: {e}")),
                        }
                    }
                    Err(e) => st.set_error(format!("upgrade failed: {e}")),
                }
            });
            return Response::from_parts(rparts, empty());
        }
    }

    strip_hop_by_hop(&mut rparts.headers, false);
    add_via(&mut rparts.headers, rparts.version);
    if let Dest::Pool(d) = &dest {
        if let Ok(v) = HeaderValue::from_str(d.request_id()) {
            rparts.headers.insert("x-request-id", v);
        }
    }
    let mut body = inspect(rbody, Direction::Response, Arc::clone(&state), Some(guard));
    if v == Verdict::Hold {
        // The whole body is held and judged before the head goes out, so a block is a page.
        match body.frame().await {
            Some(Err(e)) if is_blocked(e.as_ref()) => {
                state.set_status(403);
                let flow = state.flow.lock().await;
                let category = flow_category(&state, &flow);
                return block_response(
                    StatusCode::FORBIDDEN,
                    "Download blocked",
                    &format!("The content from {} was blocked by the gateway.", head.host),
                    &head.host,
                    &category,
                    flow.blocking_event(),
                );
            }
            Some(Err(e)) => {
                state.set_status(502);
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream body failed: {e}"),
                );
            }
            Some(Ok(first)) => {
                let first =
                    futures_util::stream::once(
                        async move { Ok::<_, crate::upstream::BoxError>(first) },
                    );
                let rest = http_body_util::BodyStream::new(body);
                use futures_util::StreamExt;
                body = http_body_util::StreamBody::new(first.chain(rest)).boxed_unsync();
            }
            None => body = empty(),
        }
    }
    shared
        .metrics
        .request_seconds
        .with_label_values(&[&conn.listener])
        .observe(started.elapsed().as_secs_f64());
    Response::from_parts(rparts, body)
}

/// Reads an inspected request body to its end and returns it as a body of those frames.
async fn buffer_request(mut stream: ProxyBody) -> Result<ProxyBody, crate::upstream::BoxError> {
    let mut frames = Vec::new();
    while let Some(f) = stream.frame().await {
        frames.push(f?);
    }
    let it = futures_util::stream::iter(frames.into_iter().map(Ok::<_, crate::upstream::BoxError>));
    Ok(http_body_util::StreamBody::new(it).boxed_unsync())
}

/// The block page for a request the pipeline blocked (before anything went upstream): 403, or
/// the response the blocking stage chose (a warning page with its continue link, another status,
/// a redirect).
fn request_blocked(
    state: &FlowState,
    flow: &sekisho_core::Flow,
    host: &str,
) -> Response<ProxyBody> {
    if let Some(r) = flow.block_response() {
        return stage_response(state, flow, host, r);
    }
    state.set_status(403);
    block_response(
        StatusCode::FORBIDDEN,
        "Access blocked",
        &format!("The request to {host} was blocked by the gateway policy."),
        host,
        &flow_category(state, flow),
        flow.blocking_event(),
    )
}

/// A response a stage chose ([`Respond`]), for a block or as its own answer to the request.
pub(crate) fn stage_response(
    state: &FlowState,
    flow: &sekisho_core::Flow,
    host: &str,
    r: &Respond,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
    state.set_status(status.as_u16());
    match r {
        Respond::Warn { continue_url } => {
            let category = flow_category(state, flow);
            blockpage::warn_response(
                &BlockInfo {
                    title: "Warning",
                    reason: &format!(
                        "{host} is in the category {category} that your organisation's policy asks you to confirm."
                    ),
                    host,
                    category: &category,
                    event_id: flow.blocking_event(),
                },
                continue_url,
            )
            .map(full)
        }
        Respond::Redirect { location, .. } => {
            let mut resp = Response::new(empty());
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Respond::Status(_) => block_response(
            status,
            "Access blocked",
            &format!("The request to {host} was blocked by the gateway policy."),
            host,
            &flow_category(state, flow),
            flow.blocking_event(),
        ),
    }
}

fn flow_category(_state: &FlowState, flow: &sekisho_core::Flow) -> String {
    flow.blocking_finding()
        .map(|f| f.category.clone())
        .unwrap_or_else(|| "policy".to_string())
}

async fn upstream_failed(
    shared: &Shared,
    state: &Arc<FlowState>,
    host: &str,
    err: hyper_util::client::legacy::Error,
) -> Response<ProxyBody> {
    {
        let flow = state.flow.lock().await;
        if flow.verdict() == Verdict::Block || is_blocked(&err) {
            state.set_status(403);
            let category = flow_category(state, &flow);
            return block_response(
                StatusCode::FORBIDDEN,
                "Upload blocked",
                &format!("The request to {host} was blocked by the gateway."),
                host,
                &category,
                flow.blocking_event(),
            );
        }
    }
    let failure = classify(&err);
    shared
        .metrics
        .upstream_errors
        .with_label_values(&[failure.kind()])
        .inc();
    match failure {
        UpstreamFailure::Certificate(reason) => {
            let mut f = Finding::new(
                "tls",
                "upstream-certificate",
                format!("upstream {host} presented a certificate that does not verify: {reason}"),
                Severity::High,
                "tls-upstream-certificate",
                Evidence::new("upstream.certificate", &reason),
            );
            f.stage = "tls";
            f.action = sekisho_core::Action::Blocked;
            let id = f.event_id;
            state.set_error(reason.clone());
            state.set_status(502);
            state.emit_own(f).await;
            tracing::warn!(host, reason, event_id = %id, "upstream certificate rejected");
            block_response(
                StatusCode::BAD_GATEWAY,
                "Untrusted server certificate",
                &format!("The certificate of {host} could not be verified, so the connection was refused: {reason}"),
                host,
                "tls-upstream-certificate",
                Some(id),
            )
        }
        UpstreamFailure::Tls(reason)
        | UpstreamFailure::Connect(reason)
        | UpstreamFailure::Other(reason) => {
            tracing::info!(host, reason, "upstream failed");
            state.set_error(reason.clone());
            state.set_status(502);
            text_response(
                StatusCode::BAD_GATEWAY,
                &format!("upstream {host} failed: {reason}"),
            )
        }
    }
}

/// CONNECT: policy on the CONNECT host, then a tunnel classified by its ClientHello.
async fn connect(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(auth) = req.uri().authority().map(|a| a.as_str().to_string()) else {
        shared
            .metrics
            .bad_requests
            .with_label_values(&[&conn.listener])
            .inc();
        return text_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let (host, port) = split_host_port(&auth, 443);
    if host.is_empty() || port == 0 {
        shared
            .metrics
            .bad_requests
            .with_label_values(&[&conn.listener])
            .inc();
        return text_response(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    }
    let mut head = RequestHead::new(
        Method::CONNECT,
        req.uri().clone(),
        req.version(),
        req.headers().clone(),
        443,
    );
    head.raw = req.extensions().get::<RawHead>().map(|r| r.0.clone());
    let meta = new_meta(&shared, &conn, &host, port);
    let http = HttpFacts {
        method: Some("CONNECT".into()),
        url: Some(auth.clone()),
        host: Some(host.clone()),
        path: None,
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: None,
        request_id: None,
    };
    let dest = DestinationInfo {
        ip: None,
        port: Some(port),
        domain: Some(host.clone()),
    };
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(Arc::clone(&shared), flow, http, dest);
    let guard = FinishGuard(Arc::clone(&state));
    {
        let mut flow = state.flow.lock().await;
        let v = flow.request_head(&head);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            shared.metrics.tunnels.with_label_values(&["blocked"]).inc();
            state.set_status(403);
            let category = flow_category(&state, &flow);
            return block_response(
                StatusCode::FORBIDDEN,
                "Access blocked",
                &format!("The site {host} is not allowed by the gateway policy."),
                &host,
                &category,
                flow.blocking_event(),
            );
        }
    }
    state.set_status(200);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _guard = guard;
        match on_upgrade.await {
            Ok(up) => tunnel(shared, conn, state, host, port, TokioIo::new(up)).await,
            Err(e) => state.set_error(format!("CONNECT upgrade failed: {e}")),
        }
    });
    Response::new(empty())
}

async fn tunnel<S>(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    host: String,
    port: u16,
    mut io: S,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let m = &shared.metrics;
    let peeked =
        match tokio::time::timeout(shared.limits.handshake_timeout, peek_client_hello(&mut io))
            .await
        {
            Err(_) => {
                m.tunnels.with_label_values(&["failed"]).inc();
                state.set_error(format!(
                    "no TLS ClientHello within {:?}",
                    shared.limits.handshake_timeout
                ));
                return;
            }
            Ok(Err(e)) => {
                m.tunnels.with_label_values(&["failed"]).inc();
                state.set_error(format!("reading ClientHello: {e}"));
                return;
            }
            Ok(Ok(p)) => p,
        };
    let (hello, bytes) = match peeked {
        Peeked::NotTls(why) => {
            m.tunnels.with_label_values(&["not_tls"]).inc();
            tracing::info!(client = %conn.client, target = %authority(&host, port), reason = %why, "non-TLS bytes after CONNECT: closing");
            state.set_error(format!("not TLS: {why}"));
            return;
        }
        Peeked::Tls { hello, bytes } => (hello, bytes),
    };
    let sni = hello.sni.clone();
    state.update_meta(|meta| meta.sni = sni.clone()).await;
    let stage_splice;
    let blocked = {
        let mut flow = state.flow.lock().await;
        let v = flow.tls_hello(&hello);
        state.emit(&mut flow).await;
        stage_splice = flow.splice_requested().map(str::to_string);
        (v == Verdict::Block).then(|| (flow.blocking_event(), flow_category(&state, &flow)))
    };
    let splice = blocked.is_none()
        && (shared.splice.matches(&host)
            || sni.as_deref().is_some_and(|s| shared.splice.matches(s))
            || stage_splice.is_some());
    if let (true, Some(why)) = (splice, &stage_splice) {
        tracing::debug!(host = %host, reason = %why, "spliced at a stage's request");
    }
    if splice {
        state.update_meta(|meta| meta.tls = TlsMode::Spliced).await;
        m.tunnels.with_label_values(&["spliced"]).inc();
        splice_tunnel(&shared, &state, &host, port, io, bytes).await;
        return;
    }
    if blocked.is_some() {
        m.tunnels.with_label_values(&["blocked"]).inc();
    }
    let cert_host = sni.clone().unwrap_or_else(|| host.clone());
    let cert = match shared.minter.get(&cert_host).await {
        Ok(c) => c,
        Err(e) => {
            m.tunnels.with_label_values(&["failed"]).inc();
            tracing::warn!(host = %cert_host, error = %e, "cannot mint a leaf certificate");
            state.set_error(format!("minting a certificate for {cert_host}: {e}"));
            return;
        }
    };
    let acceptor = shared.tls_acceptor(cert);
    let hs_start = Instant::now();
    let tls = match tokio::time::timeout(
        shared.limits.handshake_timeout,
        acceptor.accept(Rewind::new(bytes, io)),
    )
    .await
    {
        Err(_) => {
            m.tls_handshakes.with_label_values(&["timeout"]).inc();
            state.set_error("client TLS handshake timed out");
            return;
        }
        Ok(Err(e)) => {
            m.tls_handshakes.with_label_values(&["error"]).inc();
            tracing::info!(client = %conn.client, host = %cert_host, error = %e, "client TLS handshake failed");
            state.set_error(format!("client TLS handshake: {e}"));
            return;
        }
        Ok(Ok(t)) => t,
    };
    m.tls_handshakes.with_label_values(&["ok"]).inc();
    m.tls_handshake_seconds
        .observe(hs_start.elapsed().as_secs_f64());
    if blocked.is_none() {
        m.tunnels.with_label_values(&["decrypted"]).inc();
    }
    state
        .update_meta(|meta| meta.tls = TlsMode::Decrypted)
        .await;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let tls_version = tls.get_ref().1.protocol_version().map(u16::from);
    let ctx = Arc::new(TunnelCtx {
        host,
        port,
        sni,
        blocked,
        tls_version,
    });
    let listener = Arc::clone(&conn.listener);
    let handler = move |req| {
        http_flow(
            Arc::clone(&shared),
            Arc::clone(&conn),
            Some(Arc::clone(&ctx)),
            req,
        )
    };
    let (read, written) = serve_decrypted(&state.shared, &listener, tls, h2, handler).await;
    state
        .to_server
        .fetch_add(read, std::sync::atomic::Ordering::Relaxed);
    state
        .to_client
        .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
}

/// Serves HTTP on a decrypted client connection (h2 or HTTP/1.1 by ALPN) with the read, idle
/// and header limits: each request gets its raw head (HTTP/1.1), is counted, and goes to
/// `handler`. Returns the bytes read from and written to the client.
pub(crate) async fn serve_decrypted<IO, H, Fut>(
    shared: &Shared,
    listener: &Arc<str>,
    tls: IO,
    h2: bool,
    handler: H,
) -> (u64, u64)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let activity = Activity::new();
    let tap = (!h2).then(|| headtap::tap(shared.limits.max_header_bytes));
    let io = TokioIo::new(Tracked::new(tls, Arc::clone(&activity)).with_tap(tap.clone()));
    let metrics = Arc::clone(&shared.metrics);
    let listener = Arc::clone(listener);
    let svc = service_fn(move |mut req: Request<Incoming>| {
        if let Some(tap) = &tap {
            attach_raw_head(tap, &mut req);
        }
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
    let limits = &shared.limits;
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
        tokio::select! {
            r = served => r.map_err(|e| error_chain(&e)),
            _ = activity.idle(limits.idle_timeout) => Ok(()),
        }
    } else {
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .serve_connection(io, svc)
            .with_upgrades();
        tokio::select! {
            r = served => r.map_err(|e| error_chain(&e)),
            _ = activity.idle(limits.idle_timeout) => Ok(()),
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "decrypted connection ended");
    }
    use std::sync::atomic::Ordering::Relaxed;
    (activity.read.load(Relaxed), activity.written.load(Relaxed))
}

async fn splice_tunnel<S>(
    shared: &Shared,
    state: &FlowState,
    host: &str,
    port: u16,
    io: S,
    hello: Bytes,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let limits = &shared.limits;
    let upstream = match tokio::time::timeout(
        limits.connect_timeout,
        TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&["connect"])
                .inc();
            state.set_error(format!("connecting to {}: {e}", authority(host, port)));
            return;
        }
        Err(_) => {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
            state.set_error(format!(
                "connecting to {}: timed out",
                authority(host, port)
            ));
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    state.set_dest_ip(upstream.peer_addr().ok().map(|a| a.ip().to_string()));
    let activity = Activity::new();
    let mut up = Tracked::new(upstream, Arc::clone(&activity));
    let mut client = io;
    if let Err(e) = up.write_all(&hello).await {
        state.set_error(format!("replaying ClientHello: {e}"));
        return;
    }
    let copied = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut up) => Some(r),
        _ = activity.idle(limits.idle_timeout) => None,
    };
    if let Some(Err(e)) = copied {
        tracing::debug!(error = %e, "spliced tunnel ended");
    }
    use std::sync::atomic::Ordering::Relaxed;
    let to_server = activity.written.load(Relaxed);
    let to_client = activity.read.load(Relaxed);
    state.to_server.fetch_add(to_server, Relaxed);
    state.to_client.fetch_add(to_client, Relaxed);
    shared
        .metrics
        .bytes
        .with_label_values(&["to_server"])
        .inc_by(to_server);
    shared
        .metrics
        .bytes
        .with_label_values(&["to_client"])
        .inc_by(to_client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut a = h.clone();
        strip_hop_by_hop(&mut a, false);
        assert!(a.get("x-secret").is_none());
        assert!(a.get("keep-alive").is_none());
        assert!(a.get("proxy-authorization").is_none());
        assert!(a.get(header::UPGRADE).is_none());
        assert_eq!(a.get(header::TE).unwrap(), "trailers");
        assert_eq!(a.get("x-keep").unwrap(), "1");
        let mut b = h;
        strip_hop_by_hop(&mut b, true);
        assert_eq!(b.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(b.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
