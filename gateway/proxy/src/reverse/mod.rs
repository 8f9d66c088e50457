//! The reverse proxy: TLS termination with per-SNI certificates and client certificates, facility
//! authorization by route, upstream pools (round-robin / least-connections, health checks,
//! retries for idempotent requests), then the same pipeline as the forward proxy.

use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use sekisho_core::{
    split_host_port, DestinationInfo, Evidence, Finding, RequestHead, Severity, TlsMode,
};
use tokio::net::TcpStream;

use crate::canon;
use crate::clientauth::{self, wildcard, PeerCert};
use crate::config::ClientAuth;
use crate::conn::ConnInfo;
use crate::driver::{inspect_and_send, Dest, Exchange};
use crate::flowstate::{FinishGuard, FlowState, HttpFacts};
use crate::pages::{Page, Reason};
use crate::serve::{serve_decrypted, RawHead};
use crate::shared::Shared;
use crate::upstream::ProxyBody;
use crate::wire::{self as h, bad_target, text_response};

mod pool;
pub(crate) mod state;

pub(crate) use pool::health_loop;
use pool::Dispatch;
use state::Route;
pub(crate) use state::{build_all, Members, ReverseState};

/// A terminated client connection's facts, shared by its requests.
struct ReverseConn {
    state: Arc<ReverseState>,
    peer: Option<Arc<PeerCert>>,
    sni: Option<String>,
    tls_version: Option<u16>,
}

/// Serves one client connection of a reverse listener.
pub(crate) async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, conn: Arc<ConnInfo>) {
    let Some(state) = shared.reverse_state(conn.index) else {
        return;
    };
    let m = &shared.metrics;
    let (tls_cfg, recording) = match state.connection_tls() {
        Ok(Some(x)) => x,
        Ok(None) => return serve_plain(shared, tcp, conn, state).await,
        Err(e) => {
            tracing::error!(listener = %conn.listener, error = %e, "cannot build the TLS configuration");
            return;
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_cfg);
    let started = Instant::now();
    let tls = match tokio::time::timeout(shared.limits.handshake_timeout, acceptor.accept(tcp))
        .await
    {
        Err(_) => {
            m.tls_handshakes.with_label_values(&["timeout"]).inc();
            tracing::info!(listener = %conn.listener, client = %conn.client, "client TLS handshake timed out: closed");
            let detail = format!(
                "TLS handshake not done within {:?}",
                shared.limits.handshake_timeout
            );
            crate::shed::report(&shared, &conn, crate::shed::Attack::SlowTls, &detail).await;
            return;
        }
        Ok(Err(e)) => {
            m.tls_handshakes.with_label_values(&["error"]).inc();
            let refusal = recording.as_ref().and_then(|r| r.take());
            let reason = e.to_string();
            let missing = refusal.is_none()
                && matches!(
                    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
                    Some(rustls::Error::NoCertificatesPresented)
                );
            if let Some(r) = refusal {
                m.client_cert_refused
                    .with_label_values(&[&conn.listener, r.code])
                    .inc();
                tracing::warn!(listener = %conn.listener, client = %conn.client, reason = %r.reason,
                    subject = r.cert.as_ref().map(|c| c.subject.as_str()).unwrap_or("?"),
                    serial = r.cert.as_ref().map(|c| c.serial.as_str()).unwrap_or("?"),
                    issuer = r.cert.as_ref().map(|c| c.issuer.as_str()).unwrap_or("?"),
                    "client certificate refused");
                refused_event(&shared, &conn, &r).await;
            } else if missing {
                m.client_cert_refused
                    .with_label_values(&[&conn.listener, "missing"])
                    .inc();
                tracing::info!(listener = %conn.listener, client = %conn.client, "no client certificate: refused in the handshake");
            } else {
                tracing::info!(listener = %conn.listener, client = %conn.client, error = %reason, "client TLS handshake failed");
            }
            return;
        }
        Ok(Ok(t)) => t,
    };
    m.tls_handshakes.with_label_values(&["ok"]).inc();
    m.tls_handshake_seconds
        .observe(started.elapsed().as_secs_f64());
    let (_, session) = tls.get_ref();
    let sni = session.server_name().map(str::to_string);
    let tls_version = session.protocol_version().map(u16::from);
    let h2 = session.alpn_protocol() == Some(b"h2");
    if let Some(r) = resumed_revocation(&state, session) {
        m.client_cert_refused
            .with_label_values(&[&conn.listener, r.code])
            .inc();
        tracing::warn!(listener = %conn.listener, client = %conn.client, reason = %r.reason,
            "resumed session refused: the client certificate's revocation status changed");
        refused_event(&shared, &conn, &r).await;
        return;
    }
    let peer = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| {
            PeerCert::from_der(
                leaf.clone().into_owned(),
                state.facility_rule.as_ref(),
                state.role_rule.as_ref(),
            )
        })
        .map(Arc::new);
    let rc = Arc::new(ReverseConn {
        state,
        peer,
        sni,
        tls_version,
    });
    serve_requests(shared, conn, rc, tls, h2).await;
}

/// A resumed session skips certificate verification: the CRLs fetched since it began
/// (`crl_refresh`) are checked here; CRL files change only on reload, which drops every session.
fn resumed_revocation(
    state: &ReverseState,
    session: &rustls::ServerConnection,
) -> Option<clientauth::Refusal> {
    let fetch = state.crl_fetch.as_ref()?;
    if session.handshake_kind() != Some(rustls::HandshakeKind::Resumed) {
        return None;
    }
    let chain = session.peer_certificates()?;
    let leaf = chain.first()?;
    let e = fetch.check_chain(chain).err()?;
    Some(clientauth::Refusal {
        code: clientauth::refusal_code(&e),
        reason: clientauth::reason_text(&e),
        cert: PeerCert::from_der(leaf.clone().into_owned(), None, None).map(|p| p.facts),
    })
}

/// Serves one client connection of a plain-HTTP reverse listener (no `cert`: LAN services,
/// tests): no TLS, no client certificate.
async fn serve_plain(
    shared: Arc<Shared>,
    tcp: TcpStream,
    conn: Arc<ConnInfo>,
    state: Arc<ReverseState>,
) {
    let rc = Arc::new(ReverseConn {
        state,
        peer: None,
        sni: None,
        tls_version: None,
    });
    serve_requests(shared, conn, rc, tcp, false).await;
}

/// Serves the requests of one client connection (TLS or plain) through [`reverse_flow`].
async fn serve_requests<IO>(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    rc: Arc<ReverseConn>,
    io: IO,
    h2: bool,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let scheme = if rc.tls_version.is_some() {
        "https"
    } else {
        "http"
    };
    let svc_shared = Arc::clone(&shared);
    let handler_conn = Arc::clone(&conn);
    let handler = move |req| {
        reverse_flow(
            Arc::clone(&svc_shared),
            Arc::clone(&handler_conn),
            Arc::clone(&rc),
            req,
        )
    };
    serve_decrypted(&shared, &conn, io, (h2, scheme), handler).await;
}

/// A threat event (and a communication-log line) for a client certificate refused in the
/// handshake: who presented what, and why it was refused.
async fn refused_event(shared: &Arc<Shared>, conn: &ConnInfo, r: &clientauth::Refusal) {
    let mut meta = h::new_meta(shared, conn, "", conn.local.port());
    meta.target_host = None;
    meta.tls = TlsMode::Decrypted;
    meta.client_cert = r.cert.clone();
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(
        Arc::clone(shared),
        flow,
        HttpFacts::default(),
        DestinationInfo::default(),
    );
    let _guard = FinishGuard(Arc::clone(&state));
    let mut f = Finding::new(
        "tls",
        format!("client-certificate-{}", r.code.replace('_', "-")),
        format!(
            "client certificate refused: {} (subject {})",
            r.reason,
            r.cert
                .as_ref()
                .map(|c| c.subject.as_str())
                .unwrap_or("unreadable")
        ),
        Severity::Medium,
        "tls-client-certificate",
        Evidence::new("tls.client.certificate", &r.reason),
    );
    f.stage = "tls";
    f.action = sekisho_core::Action::Blocked;
    state.set_error(format!("client certificate refused: {}", r.reason));
    state.emit_own(f).await;
}

/// The request's host (Host, or h2 :authority) without port, lower case.
fn request_host(parts: &http::request::Parts) -> String {
    let raw = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))
        .unwrap_or_default();
    split_host_port(&raw, 443).0.to_ascii_lowercase()
}

/// One reverse-proxy request: authorization by route, then the pipeline and the upstream pool.
async fn reverse_flow(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    rc: Arc<ReverseConn>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let client_upgrade = h::take_upgrade(&mut req, &shared);
    let (mut parts, body) = req.into_parts();
    let st = &rc.state;
    // A client never chooses its own facility or roles.
    let mut spoofed = Vec::new();
    for name in [&st.facility_header, &st.role_header] {
        if parts.headers.remove(name).is_some() {
            spoofed.push(name.as_str());
        }
    }
    // One canonical host and path decide the route, the facility policy, the stages and the
    // logs, and the same form goes upstream; a target with a second reading is refused below.
    let target = canon::target(&parts, st.forward_raw_path);
    let (host, path) = match &target {
        Ok(t) => (t.host.clone(), t.path.clone()),
        Err(_) => (
            request_host(&parts),
            parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string(),
        ),
    };
    h::host_from_authority(&mut parts);
    let opened = match open_flow(&shared, &conn, &rc, &parts, &host, &path) {
        Ok(o) => o,
        Err(r) => return *r,
    };
    if !spoofed.is_empty() {
        tracing::info!(listener = %conn.listener, client = %conn.client, headers = %spoofed.join(", "), "client sent identity headers: removed");
    }
    let (target, route) = match admit(&shared, &conn, &rc, &opened, target, &host, &path).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Opened {
        mut head,
        state,
        guard,
        request_id,
    } = opened;
    head.route = Some(Arc::clone(&route.name));
    let dispatch = Dispatch {
        route,
        request_id,
        client_ip: crate::conn::canonical_ip(conn.client.ip()),
        host,
        host_header: target.host_header,
        upstream_path: target.upstream,
        facility_header: st.facility_header.clone(),
        role_header: st.role_header.clone(),
        peer: rc.peer.clone(),
    };
    let x = Exchange {
        shared,
        conn,
        state,
        head,
        dest: Dest::Pool(Box::new(dispatch)),
        started,
    };
    inspect_and_send(x, guard, parts, body, client_upgrade).await
}

/// A reverse request's flow, opened before it is admitted (so a refusal has its events and
/// log line).
struct Opened {
    head: RequestHead,
    state: Arc<FlowState>,
    guard: FinishGuard,
    request_id: String,
}

/// Starts the pipeline flow of a request on the canonical `host` and `path`, with the
/// connection's TLS and client-certificate facts.
fn open_flow(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    rc: &ReverseConn,
    parts: &http::request::Parts,
    host: &str,
    path: &str,
) -> std::result::Result<Opened, Box<Response<ProxyBody>>> {
    let port = conn.local.port();
    let (scheme, default_port) = if rc.state.tls.is_some() {
        ("https", 443)
    } else {
        ("http", 80)
    };
    let authority = if port == default_port {
        h::bracket(host)
    } else {
        format!("{}:{port}", h::bracket(host))
    };
    let url: Uri = format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| Box::new(bad_target(shared, conn, e)))?;
    let request_id = uuid::Uuid::now_v7().to_string();
    let mut head = RequestHead::new(
        parts.method.clone(),
        url.clone(),
        parts.version,
        parts.headers.clone(),
        443,
    );
    RawHead::fill(&parts.extensions, &mut head);
    let mut meta = h::new_meta(shared, conn, &head.host, port);
    meta.sni = rc.sni.clone();
    meta.tls = if rc.state.tls.is_some() {
        TlsMode::Decrypted
    } else {
        TlsMode::None
    };
    meta.tls_version = rc.tls_version;
    meta.facility_id = rc.peer.as_ref().and_then(|p| p.facility.clone());
    meta.facility_roles = rc
        .peer
        .as_ref()
        .map(|p| p.roles.clone())
        .unwrap_or_default();
    meta.client_cert = rc.peer.as_ref().map(|p| p.facts.clone());
    meta.request_id = Some(request_id.clone());
    let http = HttpFacts::of_request(parts, &url, &head.host, path, Some(request_id.clone()));
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(Arc::clone(shared), flow, http, DestinationInfo::default());
    state.set_accept_language(&parts.headers);
    let guard = FinishGuard(Arc::clone(&state));
    Ok(Opened {
        head,
        state,
        guard,
        request_id,
    })
}

/// Admits a request, in order: a target with one reading (else 400), a client certificate
/// where one is required (`missing_cert = "403"`), a route for the canonical host and path
/// (else 404), and the route's facility policy (else 403).
async fn admit(
    shared: &Shared,
    conn: &ConnInfo,
    rc: &ReverseConn,
    o: &Opened,
    target: std::result::Result<canon::Target, canon::Ambiguity>,
    host: &str,
    path: &str,
) -> std::result::Result<(canon::Target, Arc<Route>), Response<ProxyBody>> {
    let (state, request_id, st) = (&o.state, &o.request_id, &rc.state);
    let target = match target {
        Ok(t) => t,
        Err(a) => {
            shared
                .metrics
                .ambiguous
                .with_label_values(&[&conn.listener, a.rule])
                .inc();
            let d = Denial {
                status: StatusCode::BAD_REQUEST,
                rule: a.rule,
                message: format!("request refused: {}", a.message),
                category: "ambiguous-request",
                location: "http.request.target",
                evidence: &a.evidence,
                reason: Reason::BadRequest(
                    "the request's address has more than one reading".into(),
                ),
            };
            return Err(deny(state, d, host, request_id).await);
        }
    };
    if st.client_auth == ClientAuth::Required && rc.peer.is_none() {
        shared
            .metrics
            .client_cert_refused
            .with_label_values(&[&conn.listener, "missing"])
            .inc();
        let mut d = Denial::access(
            "client-certificate-missing",
            "no client certificate: this service requires one".to_string(),
            "tls.client.certificate",
            "none",
        );
        d.reason = Reason::NoCertificate;
        return Err(deny(state, d, host, request_id).await);
    }
    let Some(route) = st.route(host, path).cloned() else {
        state.set_status(404);
        state.set_error("no route for this host and path");
        return Err(text_response(
            StatusCode::NOT_FOUND,
            "no service at this address",
        ));
    };
    if let Some(refusal) = authorize(&route, rc.peer.as_deref()) {
        shared
            .metrics
            .access_denied
            .with_label_values(&[&conn.listener, &route.name])
            .inc();
        let d = access_denial(&refusal, &route, rc.peer.as_deref(), host, path);
        return Err(deny(state, d, host, request_id).await);
    }
    Ok((target, route))
}

/// The page and event of a request `route` refuses: the facility, its roles, the route and why.
fn access_denial<'a>(
    r: &'a Refusal,
    route: &Route,
    peer: Option<&PeerCert>,
    host: &str,
    path: &str,
) -> Denial<'a> {
    let who = peer
        .and_then(|p| p.facility.clone())
        .unwrap_or_else(|| "none".into());
    let roles = peer.map(|p| p.roles.join(", ")).unwrap_or_default();
    let roles = if roles.is_empty() {
        "none".into()
    } else {
        roles
    };
    let mut d = Denial::access(
        r.rule,
        format!(
            "facility {who} (roles: {roles}) may not reach route {} ({host}{}): {}",
            route.name, route.prefix, r.why
        ),
        r.location,
        &r.evidence,
    );
    d.reason = Reason::Facility {
        facility: who,
        roles,
        route: route.name.to_string(),
        path: path.to_string(),
    };
    d
}

/// Why a route refuses a client: the rule, the certificate field it concerns, what was found.
struct Refusal {
    rule: &'static str,
    location: &'static str,
    evidence: String,
    why: String,
}

impl Refusal {
    fn facility(evidence: &str, why: String) -> Refusal {
        Refusal {
            rule: "facility-denied",
            location: "tls.client.facility",
            evidence: evidence.to_string(),
            why,
        }
    }

    fn role(evidence: &str, why: String) -> Refusal {
        Refusal {
            rule: "role-denied",
            location: "tls.client.roles",
            evidence: evidence.to_string(),
            why,
        }
    }
}

/// Why `route` refuses this client, or None when it may pass: its facility AND one of its roles
/// must be allowed (an absent list allows any), then every `require` condition must hold.
fn authorize(route: &Route, peer: Option<&PeerCert>) -> Option<Refusal> {
    if let Some(allowed) = &route.facilities {
        let facility = peer.and_then(|p| p.facility.as_deref());
        match (facility, peer.and_then(|p| p.facility_error.as_deref())) {
            (_, Some(e)) => {
                return Some(Refusal::facility(
                    "unreadable",
                    format!("the facility ID cannot be read: {e}"),
                ))
            }
            (None, None) => {
                return Some(Refusal::facility(
                    "none",
                    "no facility ID in the client certificate".into(),
                ))
            }
            (Some(f), None) if !allowed.contains(f) => {
                return Some(Refusal::facility(f, "not in the route's facilities".into()))
            }
            (Some(_), None) => {}
        }
    }
    if let Some(allowed) = &route.roles {
        let roles = peer.map(|p| p.roles.as_slice()).unwrap_or_default();
        if let Some(e) = peer.and_then(|p| p.role_error.as_deref()) {
            return Some(Refusal::role(
                "unreadable",
                format!("the certificate's roles cannot be read: {e}"),
            ));
        }
        if roles.is_empty() {
            return Some(Refusal::role(
                "none",
                "no role in the client certificate".into(),
            ));
        }
        if !roles.iter().any(|r| allowed.iter().any(|p| wildcard(p, r))) {
            return Some(Refusal::role(
                &roles.join(", "),
                format!("none of its roles is allowed (the route allows {allowed:?})"),
            ));
        }
    }
    for (rule, key, pattern) in &route.require {
        let values = match peer.map(|p| p.attribute(rule)) {
            None => Vec::new(),
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Some(Refusal::facility(
                    "unreadable",
                    format!("{key} cannot be read: {e}"),
                ))
            }
        };
        if values.is_empty() {
            return Some(Refusal::facility(
                "none",
                format!("the certificate has no {key}"),
            ));
        }
        if !values.iter().any(|v| wildcard(pattern, v)) {
            return Some(Refusal::facility(
                &values.join(", "),
                format!("{key} is {values:?}, not {pattern:?}"),
            ));
        }
    }
    None
}

/// A refused request: its page and its event.
struct Denial<'a> {
    status: StatusCode,
    rule: &'a str,
    message: String,
    category: &'a str,
    location: &'a str,
    evidence: &'a str,
    /// What the page says.
    reason: Reason,
}

impl<'a> Denial<'a> {
    /// A 403 for a facility or certificate the route does not admit.
    fn access(rule: &'a str, message: String, location: &'a str, evidence: &'a str) -> Self {
        Denial {
            status: StatusCode::FORBIDDEN,
            rule,
            message,
            category: "access-denied",
            location,
            evidence,
            reason: Reason::Policy,
        }
    }
}

/// The page and its event for a refused request.
async fn deny(
    state: &Arc<FlowState>,
    d: Denial<'_>,
    host: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    let message = d.message;
    let mut f = Finding::new(
        "access",
        d.rule,
        message.clone(),
        Severity::Medium,
        d.category,
        Evidence::new(d.location, d.evidence),
    );
    f.stage = "access";
    f.action = sekisho_core::Action::Blocked;
    let id = f.event_id;
    state.set_error(message.clone());
    state.emit_own(f).await;
    tracing::info!(event_id = %id, "{message}");
    let mut r = state.page(d.status, Page::new(d.reason, host, Some(id)));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::state::{now_ms, prefix_matches, Member, Pool};
    use super::*;
    use crate::config::Balance;

    #[test]
    fn prefixes() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/claims", "/claims"));
        assert!(prefix_matches("/claims", "/claims/1"));
        assert!(prefix_matches("/claims", "/claims?x=1"));
        assert!(!prefix_matches("/claims", "/claimsx"));
        assert!(prefix_matches("/claims/", "/claims/x"));
        assert!(!prefix_matches("/claims/", "/claims"));
    }

    #[test]
    fn upstream_urls() {
        assert_eq!(
            crate::config::upstream_base("http://a.test").unwrap(),
            "http://a.test:80"
        );
        assert_eq!(
            crate::config::upstream_base("https://a.test/").unwrap(),
            "https://a.test:443"
        );
        assert_eq!(
            crate::config::upstream_base("http://[::1]:8080").unwrap(),
            "http://[::1]:8080"
        );
        for bad in [
            "ftp://a",
            "a.test:80",
            "http://a/x",
            "http://u@a",
            "http://a/?q",
        ] {
            assert!(crate::config::upstream_base(bad).is_err(), "{bad}");
        }
    }

    fn member(base: &str) -> Arc<Member> {
        Arc::new(Member {
            base: base.into(),
            healthy: AtomicBool::new(true),
            down_until: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            next_probe: AtomicU64::new(0),
        })
    }

    fn route(balance: Balance, n: usize) -> Route {
        Route {
            name: Arc::from("r"),
            host: None,
            host_text: None,
            prefix: "/".into(),
            pool: Pool {
                members: (0..n).map(|i| member(&format!("http://m{i}:80"))).collect(),
                balance,
                next: AtomicUsize::new(0),
            },
            facilities: None,
            roles: None,
            require: Vec::new(),
            retries: 1,
            fail_timeout: Duration::from_secs(10),
            timeout: None,
            preserve_host: false,
            health: None,
        }
    }

    #[test]
    fn round_robin_skips_down_members_and_least_connections_prefers_idle() {
        let r = route(Balance::RoundRobin, 3);
        let picks: Vec<usize> = (0..6).map(|_| r.pick(&[]).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        r.pool.members[1].healthy.store(false, Ordering::Relaxed);
        r.pool.members[2]
            .down_until
            .store(now_ms() + 60_000, Ordering::Relaxed);
        assert!((0..5).all(|_| r.pick(&[]) == Some(0)));
        // Nothing usable left after 0 was tried: the unusable ones are tried rather than none.
        assert!(matches!(r.pick(&[0]), Some(1) | Some(2)));
        assert_eq!(r.pick(&[0, 1, 2]), None);

        let lc = route(Balance::LeastConnections, 3);
        lc.pool.members[0].active.store(5, Ordering::Relaxed);
        lc.pool.members[1].active.store(1, Ordering::Relaxed);
        lc.pool.members[2].active.store(3, Ordering::Relaxed);
        assert!((0..4).all(|_| lc.pick(&[]) == Some(1)));
        assert_eq!(lc.pick(&[1]), Some(2));
    }

    fn peer(facility: Option<&str>, roles: &[&str], role_error: Option<&str>) -> PeerCert {
        PeerCert {
            facts: sekisho_core::ClientCert {
                subject: "CN=x".into(),
                issuer: "CN=ca".into(),
                serial: "01".into(),
            },
            facility: facility.map(str::to_string),
            facility_error: None,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            role_error: role_error.map(str::to_string),
            der: rustls_pki_types::CertificateDer::from(Vec::new()),
        }
    }

    #[test]
    fn authorization_by_facility_and_attributes() {
        let mut r = route(Balance::RoundRobin, 1);
        let f = |id: &str| peer(Some(id), &[], None);
        assert!(authorize(&r, None).is_none(), "no facilities = open");
        r.facilities = Some(crate::facilities::FacilitySet::new(["H-00*", "P-1"]));
        assert!(authorize(&r, Some(&f("H-0042"))).is_none());
        assert!(authorize(&r, Some(&f("P-1"))).is_none());
        assert!(authorize(&r, Some(&f("P-2"))).is_some());
        assert!(authorize(&r, None).is_some());
        r.facilities = Some(crate::facilities::FacilitySet::new(std::iter::empty()));
        assert!(
            authorize(&r, Some(&f("H-0042"))).is_some(),
            "empty list = nobody"
        );
    }

    #[test]
    fn authorization_needs_the_facility_and_one_role() {
        let mut r = route(Balance::RoundRobin, 1);
        r.facilities = Some(crate::facilities::FacilitySet::new(["H-*"]));
        r.roles = Some(vec!["Medical Doctor".into(), "Director of *".into()]);
        let ok = |p: PeerCert| authorize(&r, Some(&p)).map(|x| (x.rule, x.why));
        assert_eq!(
            ok(peer(Some("H-1"), &["Nurse", "Medical Doctor"], None)),
            None
        );
        assert_eq!(ok(peer(Some("H-1"), &["Director of Clinic"], None)), None);
        let (rule, why) = ok(peer(Some("H-1"), &["Pharmacist"], None)).unwrap();
        assert_eq!(rule, "role-denied");
        assert!(why.contains("none of its roles"), "{why}");
        let (rule, _) = ok(peer(Some("P-1"), &["Medical Doctor"], None)).unwrap();
        assert_eq!(rule, "facility-denied", "the facility is checked too");
        let (_, why) = ok(peer(Some("H-1"), &[], None)).unwrap();
        assert!(why.contains("no role"), "{why}");
        let (_, why) = ok(peer(Some("H-1"), &["Medical Doctor"], Some("bad hcRole"))).unwrap();
        assert!(why.contains("cannot be read: bad hcRole"), "{why}");
        r.roles = Some(Vec::new());
        let p = peer(Some("H-1"), &["Medical Doctor"], None);
        assert!(authorize(&r, Some(&p)).is_some(), "empty = nobody");
    }
}

#[cfg(test)]
mod path_props {
    use super::state::prefix_matches;
    use proptest::prelude::*;

    /// Nested routes with different facility policies.
    const PREFIXES: &[&str] = &["/", "/api", "/api/admin", "/api/admin/keys", "/static/"];

    /// The route (longest matching prefix) for a path, as `ReverseState::route` picks it.
    fn route(path: &str) -> &'static str {
        PREFIXES
            .iter()
            .filter(|p| prefix_matches(p, path))
            .max_by_key(|p| p.len())
            .copied()
            .unwrap_or("")
    }

    /// What an upstream that normalises (Python's http.server: unquote every escape, then
    /// posixpath.normpath) makes of a path.
    fn upstream_view(path: &str) -> String {
        let bytes = path.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let esc = (bytes[i] == b'%')
                .then(|| std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok())
                .flatten()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match esc {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        let text = String::from_utf8_lossy(&out).into_owned();
        let mut segs: Vec<&str> = Vec::new();
        for s in text.split('/') {
            match s {
                "" | "." => {}
                ".." => {
                    segs.pop();
                }
                s => segs.push(s),
            }
        }
        let mut p = format!("/{}", segs.join("/"));
        if text.ends_with('/') && p != "/" {
            p.push('/');
        }
        p
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("api".to_string()),
            Just("admin".to_string()),
            Just("keys".to_string()),
            Just("static".to_string()),
            Just("x".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("".to_string()),
            Just("%2e%2e".to_string()),
            Just(".%2e".to_string()),
            Just("%2e".to_string()),
            Just("%61dmin".to_string()),
            Just("adm%69n".to_string()),
            Just("a%2fb".to_string()),
            Just("a%5cb".to_string()),
            Just("a\\b".to_string()),
            Just("..;".to_string()),
            Just("%00".to_string()),
            Just("%c0%af".to_string()),
            Just("%20".to_string()),
            Just("caf%C3%A9".to_string()),
            "[a-z%.;]{0,4}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// For any path: the route chosen on the canonical form is the route of the path the
        /// upstream receives (the canonical form, read by a normalising upstream); canonical
        /// forms are fixed points. (With `forward_raw_path` the client's bytes go upstream and
        /// this holds only for upstreams that normalise as RFC 3986 does: `/a/.` is `/a/` there,
        /// `/a` for Python's http.server.)
        #[test]
        fn the_route_decided_is_the_route_served(segs in proptest::collection::vec(segment(), 0..8)) {
            let raw = format!("/{}", segs.join("/"));
            if let Ok(c) = sekisho_core::canonical_path(&raw) {
                let again = sekisho_core::canonical_path(&c);
                prop_assert_eq!(again.as_deref(), Ok(c.as_str()));
                let chosen = route(&c);
                prop_assert_eq!(chosen, route(&upstream_view(&c)), "canonical {} served as {}", c, upstream_view(&c));
            }
        }
    }
}
