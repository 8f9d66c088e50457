//! The explicit forward proxy: absolute-form HTTP/1.1 and CONNECT, with TLS interception or
//! splicing decided from the peeked ClientHello.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sekisho_core::{split_host_port, DestinationInfo, RequestHead, TlsMode, Verdict};
use tokio::net::TcpStream;

use crate::config::TlsBlockPage;
use crate::conn::ConnInfo;
use crate::dial::{connect_checked, take_refused};
use crate::driver::{blocked_page, inspect_and_send, refusal, refuse_destination, Dest, Exchange};
use crate::flowstate::{FinishGuard, FlowState, HttpFacts};
use crate::guard::Refused;
use crate::headtap;
use crate::io::{Activity, Tracked};
use crate::pages::Page;
use crate::serve::{attach_raw_head, serve_decrypted, ClientActivity, RawHead};
use crate::shared::Shared;
use crate::shed::{self, Attack};
use crate::tlspeek::{peek_client_hello, Peeked, Rewind};
use crate::upstream::{error_chain, ProxyBody};
use crate::wire::{
    authority, bad_target, empty, host_from_authority, is_loop, new_meta, text_response,
};

/// A decrypted CONNECT tunnel's facts.
pub(crate) struct TunnelCtx {
    host: String,
    port: u16,
    sni: Option<String>,
    /// The tunnel was refused by policy (at CONNECT or at its ClientHello): every request gets
    /// this page.
    blocked: Option<Page>,
    /// The TLS version negotiated with the client.
    tls_version: Option<u16>,
    /// Cleartext HTTP inside the tunnel (no TLS): requests go upstream as `http`.
    plain: bool,
}

/// Serves one client connection of a forward listener.
pub(crate) async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, conn: Arc<ConnInfo>) {
    let activity = Activity::new();
    let tap = headtap::tap(shared.limits.max_header_bytes);
    let refused_tap = Arc::clone(&tap);
    let io =
        TokioIo::new(Tracked::new(tcp, Arc::clone(&activity)).with_tap(Some(Arc::clone(&tap))));
    let svc_shared = Arc::clone(&shared);
    let svc_conn = Arc::clone(&conn);
    let svc_activity = Arc::clone(&activity);
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let shared = Arc::clone(&svc_shared);
        let conn = Arc::clone(&svc_conn);
        attach_raw_head(&tap, &mut req);
        req.extensions_mut()
            .insert(ClientActivity(Arc::clone(&svc_activity)));
        async move { Ok::<_, Infallible>(proxy_request(shared, conn, req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits_of(conn.index).read_timeout)
        .max_buf_size(shared.limits.max_header_bytes)
        .serve_connection(io, svc)
        .with_upgrades();
    let served = crate::health::until_drained!(shared, served);
    tokio::select! {
        r = served => {
            if let Err(e) = r {
                tracing::debug!(client = %conn.client, error = %error_chain(&e), "client connection ended");
                let attack = shed::classify(&e);
                if let Some(attack) = attack {
                    shed::report(&shared, &conn, attack, &error_chain(&e)).await;
                }
                // The stages judge the refused head too (the IPS names its anomalies).
                let raw = refused_tap.lock().ok().and_then(|mut t| t.refused_head());
                if let (Some(why), Some(raw)) = (crate::refused::Unserved::of(&e), raw) {
                    crate::refused::judge(&shared, &conn, raw, "http", why).await;
                }
            }
        }
        _ = activity.idle(shared.limits_of(conn.index).idle_timeout) => {
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

/// One HTTP transaction: plain (absolute-form) or inside a decrypted tunnel.
pub(crate) async fn http_flow(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    tunnel: Option<Arc<TunnelCtx>>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let client_upgrade = crate::wire::take_upgrade(&mut req, &shared);
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
                Some(a)
                    if split_host_port(&a, if t.plain { 80 } else { 443 })
                        == (t.host.clone(), t.port) =>
                {
                    drop_host = true;
                    a
                }
                _ => authority(&t.host, t.port),
            };
            let scheme = if t.plain { "http" } else { "https" };
            (scheme.to_string(), auth)
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
    RawHead::fill(&parts.extensions, &mut head);
    let mut meta = new_meta(&shared, &conn, &head.host, head.port);
    if let Some(t) = tunnel.as_ref().filter(|t| !t.plain) {
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
    state.set_accept_language(&parts.headers);
    let guard = FinishGuard(Arc::clone(&state));

    if is_loop(&parts.headers, &shared.via_node) {
        return refuse_destination(&state, &head.host, &Refused::Loop).await;
    }
    if let Some(page) = tunnel.as_ref().and_then(|t| t.blocked.clone()) {
        return state.page(StatusCode::FORBIDDEN, page);
    }

    let x = Exchange {
        shared,
        conn,
        state,
        head,
        dest: Dest::Direct {
            uri: up_uri,
            drop_host,
        },
        started,
    };
    inspect_and_send(x, guard, parts, body, client_upgrade).await
}

/// CONNECT: policy on the CONNECT host, then a tunnel classified by its ClientHello.
async fn connect(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
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
    RawHead::fill(req.extensions(), &mut head);
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
    state.set_accept_language(req.headers());
    let guard = FinishGuard(Arc::clone(&state));
    let blocked = match connect_allowed(&shared, &host, port) {
        // A port outside connect_ports is refused at CONNECT: the client may not speak TLS.
        Err(why @ Refused::Port(_)) => {
            shared.metrics.tunnels.with_label_values(&["blocked"]).inc();
            return refuse_destination(&state, &host, &why).await;
        }
        Err(why) => Some(refusal(&state, &host, &why).await),
        Ok(()) => {
            let mut flow = state.flow.lock().await;
            let v = flow.request_head(&head);
            state.emit(&mut flow).await;
            (v == Verdict::Block).then(|| blocked_page(&flow, &host))
        }
    };
    if let Some(page) = blocked {
        shared.metrics.tunnels.with_label_values(&["blocked"]).inc();
        if let Some(r) = refuse_connect(&shared, &conn, &state, &host, page.clone()).await {
            return r;
        }
        state.set_status(403);
        return open_tunnel(shared, conn, state, guard, req, host, port, Some(page));
    }
    state.set_status(200);
    open_tunnel(shared, conn, state, guard, req, host, port, None)
}

/// Answers the CONNECT with 200 and serves the tunnel once hyper hands the connection over.
#[allow(clippy::too_many_arguments)]
fn open_tunnel(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    guard: FinishGuard,
    mut req: Request<Incoming>,
    host: String,
    port: u16,
    blocked: Option<Page>,
) -> Response<ProxyBody> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _guard = guard;
        match on_upgrade.await {
            Ok(up) => tunnel(shared, conn, state, host, port, blocked, TokioIo::new(up)).await,
            Err(e) => state.set_error(format!("CONNECT upgrade failed: {e}")),
        }
    });
    Response::new(empty())
}

/// A blocked CONNECT: refused with a 403 (that browsers do not show) when `tls_block_page =
/// "refuse"` or the host is never decrypted, with an event saying the page could not be shown;
/// None when the page is to be shown inside the TLS session.
async fn refuse_connect(
    shared: &Shared,
    conn: &ConnInfo,
    state: &FlowState,
    host: &str,
    page: Page,
) -> Option<Response<ProxyBody>> {
    let never = never_decrypt(shared, conn, host);
    if shared.dest.load().tls_block_page == TlsBlockPage::Bump && never.is_none() {
        return None;
    }
    if let Some(why) = never {
        page_not_shown(state, host, &why, page.event_id).await;
    }
    Some(state.page(StatusCode::FORBIDDEN, page))
}

/// Why `host` must never be decrypted: `[tls] splice`, or a stage's splice category.
fn never_decrypt(shared: &Shared, conn: &ConnInfo, host: &str) -> Option<String> {
    if shared.splice.matches(host) {
        return Some("[tls] splice lists it".into());
    }
    shared.pipeline(conn.index).never_decrypt(host)
}

/// The event for a block whose page could not be shown (the host is never decrypted).
async fn page_not_shown(state: &FlowState, host: &str, why: &str, blocking: Option<uuid::Uuid>) {
    let detail = format!(
        "the block page for {host} could not be shown: it is never decrypted ({why}); the tunnel was refused{}",
        blocking.map(|id| format!(" (block event {id})")).unwrap_or_default()
    );
    let mut f = sekisho_core::Finding::new(
        "tls",
        "block-page-not-shown",
        detail,
        sekisho_core::Severity::Info,
        "policy",
        sekisho_core::Evidence::new("tls.block_page", why),
    );
    f.stage = "tls";
    f.action = sekisho_core::Action::Blocked;
    state.emit_own(f).await;
}

/// Dials the CONNECT target before the client is answered (`crate::preflight`): the splice its
/// first flight calls for, or `None` with the connection (or the error its dial met) held for
/// the tunnel's first request.
async fn preflight(
    shared: &Shared,
    conn: &ConnInfo,
    host: &str,
    port: u16,
) -> Option<crate::autosplice::Why> {
    use crate::autosplice::Why;
    use crate::upstream::{Outcome, UpstreamFailure};
    let limit = shared.limits.connect_timeout + shared.limits.handshake_timeout;
    let p = shared.client.preflight(host, port, limit).await?;
    let auto = &shared.autosplice;
    let outcome = p.outcome();
    let (label, splice) = match &outcome {
        Outcome::Ready => {
            auto.unremarkable(host, port);
            ("ready", None)
        }
        Outcome::AskedForCertificate => (
            "client_certificate",
            auto.asked_for_certificate(host, port)
                .then_some(Why::ClientCertificate),
        ),
        Outcome::Failed(UpstreamFailure::Tls(kind, _)) if kind.is_legacy() => (
            "legacy",
            shared
                .legacy_spliced(conn.index, host, port)
                .then_some(Why::Legacy),
        ),
        Outcome::Failed(_) => ("failed", None),
    };
    shared.metrics.preflights.with_label_values(&[label]).inc();
    if splice.is_none() {
        shared.client.hold(p, &outcome);
    }
    splice
}

/// A tunnel spliced because its server cannot be inspected: `tls.error`, the listener's
/// uninspected counter and an event (one a minute per host for client certificates; every time
/// for legacy TLS).
async fn uninspected(state: &FlowState, conn: &ConnInfo, host: &str, why: crate::autosplice::Why) {
    use crate::autosplice::Why;
    let words = match why {
        Why::ClientCertificate => {
            "the server asks for a client certificate: spliced, not inspected"
        }
        Why::Legacy => {
            "the server speaks only a legacy TLS version or cipher, or presents a legacy certificate: spliced, not inspected"
        }
    };
    state
        .shared
        .metrics
        .uninspected
        .with_label_values(&[&conn.listener])
        .inc();
    state.set_tls_error(why.code(), words).await;
    match why {
        Why::ClientCertificate => {
            crate::fault::on_flow(
                state,
                crate::fault::Fault::UninspectedClientCertificate,
                host,
                "the server asks for a client certificate",
            )
            .await
        }
        Why::Legacy => {
            let mut f = sekisho_core::Finding::new(
                "tls",
                why.code(),
                format!("uninspected: {host}: {words}"),
                sekisho_core::Severity::Low,
                "uninspected",
                sekisho_core::Evidence::new("upstream.tls", why.code()),
            );
            f.stage = "tls";
            f.action = sekisho_core::Action::Allowed;
            state.emit_own(f).await;
        }
    }
}

/// A client refused the certificate minted for `host` (`alert`): the flow's error, and one
/// event per host an hour saying what it means and whether the host is spliced from now on.
async fn minted_refused(
    shared: &Shared,
    state: &FlowState,
    host: &str,
    alert: rustls::AlertDescription,
) {
    let r = shared.pinning.refused(host, Instant::now());
    let next = if r.splice_next {
        "its tunnels are spliced for a day ([tls] pinning_splice)"
    } else {
        "list it in [tls] pinning_splice to splice it, or install the gateway CA on the client"
    };
    tracing::info!(host, alert = ?alert, spliced = r.splice_next, "the client refused the gateway's certificate");
    let words = format!("the client refused the gateway's certificate ({alert:?})");
    state
        .set_tls_error("client-refused-certificate", words.clone())
        .await;
    state.set_error(words);
    let Some(suppressed) = r.event_due else {
        return;
    };
    let more = if suppressed > 0 {
        format!(" ({suppressed} more in the previous hour)")
    } else {
        String::new()
    };
    let mut f = sekisho_core::Finding::new(
        "tls",
        "client-refused-certificate",
        format!(
            "a client refused the gateway's certificate for {host} ({alert:?}): certificate pinning, or a client without the gateway CA; {next}{more}"
        ),
        sekisho_core::Severity::Low,
        "tls-interception",
        sekisho_core::Evidence::new("tls.client.alert", &format!("{alert:?}")),
    );
    f.stage = "tls";
    // The gateway refused nothing: the client ended the handshake.
    f.action = sekisho_core::Action::Allowed;
    state.emit_own(f).await;
}

/// CONNECT's port, and its host when it is an address: refused before anything is dialled.
fn connect_allowed(shared: &Shared, host: &str, port: u16) -> Result<(), Refused> {
    let g = shared.dest.load();
    g.check_connect_port(port)?;
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => g.check(SocketAddr::new(ip, port)),
        Err(_) => Ok(()),
    }
}

async fn tunnel<S>(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    host: String,
    port: u16,
    refused: Option<Page>,
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
                let detail = format!(
                    "no TLS ClientHello within {:?}",
                    shared.limits.handshake_timeout
                );
                shed::report(&shared, &conn, Attack::SlowTls, &detail).await;
                state.set_error(detail);
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
        Peeked::Plain { why, bytes } => {
            let tunnel = Tunnel {
                shared,
                conn,
                state,
                host,
                port,
            };
            plain_tunnel(tunnel, refused, &why, bytes, io).await;
            return;
        }
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
    let refused_at_connect = refused.is_some();
    let blocked = match refused {
        Some(page) => {
            stage_splice = None;
            Some(page)
        }
        None => {
            let mut flow = state.flow.lock().await;
            let v = flow.tls_hello(&hello);
            state.emit(&mut flow).await;
            stage_splice = flow.splice_requested().map(str::to_string);
            (v == Verdict::Block).then(|| blocked_page(&flow, &host))
        }
    };
    // A blocked tunnel is decrypted only to show its page, and only where decryption is
    // allowed for both the CONNECT host and the SNI.
    if let Some(page) = &blocked {
        let never = never_decrypt(&shared, &conn, &host).or_else(|| {
            sni.as_deref()
                .and_then(|s| never_decrypt(&shared, &conn, s))
        });
        let refuse = shared.dest.load().tls_block_page == TlsBlockPage::Refuse;
        if never.is_some() || refuse {
            if !refused_at_connect {
                m.tunnels.with_label_values(&["blocked"]).inc();
            }
            if let Some(why) = never {
                page_not_shown(&state, &host, &why, page.event_id).await;
            }
            state.set_status(403);
            state.set_error("tunnel refused by policy: closed without a page");
            return;
        }
    }
    let cert_host = sni.clone().unwrap_or_else(|| host.clone());
    let pinned = shared.pinning.splice(&cert_host);
    let auto = shared
        .auto_splice(conn.index, &cert_host, port)
        .or_else(|| shared.auto_splice(conn.index, &host, port));
    let splice = blocked.is_none()
        && (shared.splice.matches(&host)
            || sni.as_deref().is_some_and(|s| shared.splice.matches(s))
            || stage_splice.is_some()
            || pinned
            || auto.is_some());
    if let (Some(why), true) = (auto, splice) {
        uninspected(&state, &conn, &cert_host, why).await;
    }
    if pinned && splice {
        tracing::debug!(host = %cert_host, "spliced: its clients refuse the minted certificate (pinning_splice)");
    }
    if let (true, Some(why)) = (splice, &stage_splice) {
        tracing::debug!(host = %host, reason = %why, "spliced at a stage's request");
    }
    if splice {
        state.update_meta(|meta| meta.tls = TlsMode::Spliced).await;
        m.tunnels.with_label_values(&["spliced"]).inc();
        splice_tunnel(&shared, &state, &host, port, io, bytes).await;
        return;
    }
    if blocked.is_none() && shared.autosplice.preflight_due(&host, port) {
        if let Some(why) = preflight(&shared, &conn, &host, port).await {
            uninspected(&state, &conn, &cert_host, why).await;
            state.update_meta(|meta| meta.tls = TlsMode::Spliced).await;
            m.tunnels.with_label_values(&["spliced"]).inc();
            splice_tunnel(&shared, &state, &host, port, io, bytes).await;
            return;
        }
    }
    if blocked.is_some() && !refused_at_connect {
        m.tunnels.with_label_values(&["blocked"]).inc();
    }
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
            let detail = format!(
                "client TLS handshake not done within {:?}",
                shared.limits.handshake_timeout
            );
            shed::report(&shared, &conn, Attack::SlowTls, &detail).await;
            state.set_error(detail);
            return;
        }
        Ok(Err(e)) => {
            if let Some(alert) = crate::pinning::refused_certificate(&e) {
                m.tls_handshakes
                    .with_label_values(&["refused_certificate"])
                    .inc();
                minted_refused(&shared, &state, &cert_host, alert).await;
                return;
            }
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
        plain: false,
    });
    let handler_conn = Arc::clone(&conn);
    let handler = move |req| {
        http_flow(
            Arc::clone(&shared),
            Arc::clone(&handler_conn),
            Some(Arc::clone(&ctx)),
            req,
        )
    };
    // The tunnel's own line counts the decrypted bytes received from and delivered to the
    // client; its requests' lines count what reached the servers.
    let (read, written) = serve_decrypted(&state.shared, &conn, tls, (h2, "https"), handler).await;
    use std::sync::atomic::Ordering::Relaxed;
    state.from_client.fetch_add(read, Relaxed);
    state.to_client.fetch_add(written, Relaxed);
}

/// A CONNECT tunnel and who asked for it.
struct Tunnel {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    host: String,
    port: u16,
}

/// Whether the first bytes of a tunnel are an HTTP/1 request line's start (a method token
/// and a space) or the HTTP/2 preface.
fn cleartext_http(bytes: &[u8]) -> Option<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let n = bytes.len().min(PREFACE.len());
    if bytes[..n] == PREFACE[..n] && n >= 4 {
        return Some(true);
    }
    let token = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
        .count();
    (token > 0 && token <= 32 && bytes.get(token) == Some(&b' ')).then_some(false)
}

/// A tunnel that does not start with TLS (`[policy] connect_non_tls`): cleartext HTTP/1, or
/// HTTP/2 with prior knowledge, is served and inspected like plain proxied requests to the
/// CONNECT target; anything else, or everything when the policy says `refuse`, is closed with
/// an event.
async fn plain_tunnel<S>(t: Tunnel, refused: Option<Page>, why: &str, bytes: Bytes, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Tunnel {
        shared,
        conn,
        state,
        host,
        port,
    } = t;
    let m = &shared.metrics;
    let inspect = shared.dest.load().connect_non_tls == crate::config::ConnectNonTls::Inspect;
    let Some(h2) = cleartext_http(&bytes).filter(|_| inspect) else {
        m.tunnels.with_label_values(&["not_tls"]).inc();
        let shown: String = bytes
            .iter()
            .take(32)
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let what = if inspect {
            "neither TLS nor HTTP"
        } else {
            "not TLS"
        };
        tracing::info!(client = %conn.client, target = %authority(&host, port), reason = %why, "non-TLS bytes after CONNECT: closing ({what})");
        let mut f = sekisho_core::Finding::new(
            "proxy",
            "connect-non-tls",
            format!(
                "CONNECT tunnel to {} refused: {what} ({why})",
                authority(&host, port)
            ),
            sekisho_core::Severity::Medium,
            "protocol-anomaly",
            sekisho_core::Evidence::new("tunnel", &shown),
        );
        f.stage = "http";
        f.action = sekisho_core::Action::Blocked;
        state.emit_own(f).await;
        state.set_error(format!("not TLS: {why}"));
        return;
    };
    m.tunnels.with_label_values(&["cleartext"]).inc();
    let ctx = Arc::new(TunnelCtx {
        host,
        port,
        sni: None,
        blocked: refused,
        tls_version: None,
        plain: true,
    });
    let handler_conn = Arc::clone(&conn);
    let handler_shared = Arc::clone(&shared);
    let handler = move |req| {
        http_flow(
            Arc::clone(&handler_shared),
            Arc::clone(&handler_conn),
            Some(Arc::clone(&ctx)),
            req,
        )
    };
    let io = Rewind::new(bytes, io);
    let (read, written) = serve_decrypted(&shared, &conn, io, (h2, "http"), handler).await;
    use std::sync::atomic::Ordering::Relaxed;
    state.from_client.fetch_add(read, Relaxed);
    state.to_client.fetch_add(written, Relaxed);
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
    let dialled = {
        let g = shared.dest.load_full();
        connect_checked(&g, host, port, limits.connect_timeout).await
    };
    let refusal = dialled.as_ref().err().and_then(|e| take_refused(e));
    if let Some(why) = refusal {
        // The client already has its 200: the event and the closed tunnel say why.
        drop(refuse_destination(state, host, &why).await);
        return;
    }
    let upstream = match dialled {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
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
        Err(e) => {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&["connect"])
                .inc();
            state.set_error(format!("connecting to {}: {e}", authority(host, port)));
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
    state.count_relayed(to_server, to_client);
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
