//! The reverse proxy: TLS termination with per-SNI certificates and client certificates, facility
//! authorization by route, upstream pools (round-robin / least-connections, health checks,
//! retries for idempotent requests), then the same pipeline as the forward proxy.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;
use sekisho_core::{
    split_host_port, DestinationInfo, Evidence, Finding, RequestHead, Severity, TlsMode,
};
use tokio::net::TcpStream;

use crate::canon;
use crate::clientauth::{self, wildcard, AttrRule, PeerCert, Recording};
use crate::config::{Balance, ClientAuth, Config, ListenerKind, MissingCert};
use crate::conn::ConnInfo;
use crate::error::{ProxyError, Result};
use crate::flowstate::{FinishGuard, FlowState, HttpFacts};
use crate::forward::{self, Dest, SendError};
use crate::hostmatch::HostMatcher;
use crate::upstream::ProxyBody;
use crate::Shared;

/// Server certificates of a listener: by SNI (exact or wildcard SAN), else the default.
#[derive(Debug)]
struct SniCerts {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(Arc::clone(&self.default));
        };
        if let Some(c) = self.exact.get(&name) {
            return Some(Arc::clone(c));
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Some(Arc::clone(c));
            }
        }
        Some(Arc::clone(&self.default))
    }
}

fn cert_err(path: &Path, message: impl Into<String>) -> ProxyError {
    ProxyError::Cert {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Loads a certificate chain and its key; returns the key pair and the leaf's DNS names.
fn load_pair(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, Vec<String>)> {
    let chain = clientauth::read_pem_certs(cert)?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(cert, "no CERTIFICATE in PEM file"));
    };
    let names = {
        use x509_parser::prelude::*;
        let (_, x) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| cert_err(cert, format!("not an X.509 certificate: {e}")))?;
        let mut names: Vec<String> = match x.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            if let Some(cn) = x.subject().iter_common_name().next() {
                if let Ok(cn) = cn.as_str() {
                    names.push(cn.to_ascii_lowercase());
                }
            }
        }
        names
    };
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| cert_err(key, format!("no usable private key: {e}")))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| cert_err(key, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| cert_err(key, format!("does not match {}: {e}", cert.display())))?;
    Ok((Arc::new(ck), names))
}

/// One upstream of a pool; its health survives reloads (kept by URL in [`Members`]).
#[derive(Debug)]
pub(crate) struct Member {
    /// `scheme://authority`.
    base: String,
    /// Active probe result (true until a probe fails).
    healthy: AtomicBool,
    /// Skipped until this instant (ms since the gateway started) after a connect failure.
    down_until: AtomicU64,
    /// Requests in flight.
    active: AtomicUsize,
    /// Next probe due (ms since start).
    next_probe: AtomicU64,
}

/// Every pool member by URL, shared across reloads.
pub(crate) type Members = Mutex<HashMap<String, Arc<Member>>>;

/// A pool of upstreams.
#[derive(Debug)]
struct Pool {
    members: Vec<Arc<Member>>,
    balance: Balance,
    next: AtomicUsize,
}

/// A compiled `[[route]]`.
#[derive(Debug)]
pub(crate) struct Route {
    name: Arc<str>,
    host: Option<HostMatcher>,
    host_text: Option<String>,
    prefix: String,
    pool: Pool,
    facilities: Option<Vec<String>>,
    require: Vec<(AttrRule, String, String)>,
    retries: u32,
    fail_timeout: Duration,
    /// The route's response-head timeout (`timeout_secs`), else `[limits]`'s.
    timeout: Option<Duration>,
    preserve_host: bool,
    health: Option<(String, Duration)>,
}

/// What a reverse listener runs with; swapped whole on reload.
pub(crate) struct ReverseState {
    tls: Arc<rustls::ServerConfig>,
    resolver: Arc<SniCerts>,
    verifier: Arc<dyn ClientCertVerifier>,
    client_auth: ClientAuth,
    facility_rule: Option<AttrRule>,
    facility_rule_text: Option<String>,
    facility_header: HeaderName,
    /// `forward_raw_path`: the client's path goes upstream instead of the canonical one.
    forward_raw_path: bool,
    routes: Vec<Arc<Route>>,
    session_storage: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

/// Milliseconds since the first call (a monotonic clock for member state).
fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl ReverseState {
    /// Builds listener `index`'s state from config (reads certificates, CAs and CRLs).
    pub(crate) fn build(cfg: &Config, index: usize, members: &Members) -> Result<ReverseState> {
        let l = &cfg.listeners[index];
        let name = cfg.listener_name(index);
        let mut pairs: Vec<(Arc<CertifiedKey>, Vec<String>)> = Vec::new();
        if let (Some(c), Some(k)) = (&l.cert, &l.key) {
            pairs.push(load_pair(c, k)?);
        }
        for p in &l.certificates {
            pairs.push(load_pair(&p.cert, &p.key)?);
        }
        let Some(default) = pairs.first().map(|(c, _)| Arc::clone(c)) else {
            return Err(ProxyError::Config {
                file: cfg.path.clone(),
                message: format!("listener {name}: a reverse listener needs cert and key"),
            });
        };
        let (mut exact, mut wild) = (HashMap::new(), HashMap::new());
        // Later certificates do not take a name an earlier one serves.
        for (ck, names) in &pairs {
            for n in names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wild.entry(suffix.to_string()),
                    None => exact.entry(n.clone()),
                }
                .or_insert_with(|| Arc::clone(ck));
            }
        }
        let resolver = Arc::new(SniCerts {
            default,
            exact,
            wildcard: wild,
        });
        let mandatory = l.client_auth == ClientAuth::Required && l.missing_cert == MissingCert::Tls;
        let verifier = clientauth::verifier(l.client_auth, mandatory, &l.client_ca, &l.crl)?;
        let session_storage: Arc<dyn rustls::server::StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(20_000);
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = Arc::new(server_config(
            &provider,
            Arc::clone(&verifier),
            Arc::clone(&resolver),
            Arc::clone(&session_storage),
            Arc::clone(&ticketer),
        )?);
        let facility_rule = l
            .facility_id
            .as_deref()
            .map(AttrRule::parse)
            .transpose()
            .map_err(|e| ProxyError::Config {
                file: cfg.path.clone(),
                message: format!("listener {name}: facility_id: {e}"),
            })?;
        let facility_header =
            HeaderName::from_bytes(l.facility_header_name().as_bytes()).map_err(|e| {
                ProxyError::Config {
                    file: cfg.path.clone(),
                    message: format!("listener {name}: facility_header: {e}"),
                }
            })?;
        let mut routes = Vec::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.listener != name {
                continue;
            }
            let rname = cfg.route_name(i);
            let err = |m: String| ProxyError::Config {
                file: cfg.path.clone(),
                message: format!("route[{i}] ({rname}): {m}"),
            };
            let host = r
                .host
                .as_ref()
                .map(|h| HostMatcher::new(std::slice::from_ref(h)))
                .transpose()
                .map_err(|e| err(format!("host: {e}")))?;
            let mut pool_members = Vec::new();
            for u in &r.upstreams {
                let base = upstream_base(u).map_err(|e| err(format!("upstreams: {e}")))?;
                let m = {
                    let mut reg = members.lock().unwrap_or_else(|p| p.into_inner());
                    Arc::clone(reg.entry(base.clone()).or_insert_with(|| {
                        Arc::new(Member {
                            base,
                            healthy: AtomicBool::new(true),
                            down_until: AtomicU64::new(0),
                            active: AtomicUsize::new(0),
                            next_probe: AtomicU64::new(0),
                        })
                    }))
                };
                pool_members.push(m);
            }
            if pool_members.is_empty() {
                return Err(err(
                    "upstreams: at least one upstream URL is required".into()
                ));
            }
            let mut require = Vec::new();
            for (k, v) in &r.require {
                let rule = AttrRule::parse(k).map_err(|e| err(format!("require: {e}")))?;
                require.push((rule, k.clone(), v.clone()));
            }
            routes.push(Arc::new(Route {
                name: Arc::from(rname.as_str()),
                host,
                host_text: r.host.clone(),
                prefix: r.path_prefix.clone(),
                pool: Pool {
                    members: pool_members,
                    balance: r.balance,
                    next: AtomicUsize::new(0),
                },
                facilities: r.facilities.clone(),
                require,
                retries: r.retries,
                fail_timeout: Duration::from_secs(r.fail_timeout_secs),
                timeout: r.timeout_secs.map(Duration::from_secs),
                preserve_host: r.preserve_host,
                health: r
                    .health_check
                    .clone()
                    .map(|p| (p, Duration::from_secs(r.health_interval_secs))),
            }));
        }
        Ok(ReverseState {
            tls,
            resolver,
            verifier,
            client_auth: l.client_auth,
            facility_rule,
            facility_rule_text: l.facility_id.clone(),
            facility_header,
            forward_raw_path: l.forward_raw_path,
            routes,
            session_storage,
            ticketer,
            provider,
        })
    }

    /// One line for `check-config`: certificates, client authentication, routes.
    pub(crate) fn describe(&self) -> String {
        let mut names = self
            .resolver
            .exact
            .keys()
            .map(String::as_str)
            .map(str::to_string)
            .chain(self.resolver.wildcard.keys().map(|w| format!("*.{w}")))
            .collect::<Vec<String>>();
        names.sort_unstable();
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{} {}{} -> {} upstream(s){}{}",
                    r.name,
                    r.host_text.as_deref().unwrap_or("*"),
                    r.prefix,
                    r.pool.members.len(),
                    match &r.facilities {
                        Some(f) => format!(", facilities {f:?}"),
                        None => String::new(),
                    },
                    match r.timeout {
                        Some(t) => format!(", timeout {}s", t.as_secs()),
                        None => String::new(),
                    }
                )
            })
            .collect();
        format!(
            "certificates for {:?}; client_auth {:?}; facility_id {}; routes: {}",
            names,
            self.client_auth,
            self.facility_rule_text.as_deref().unwrap_or("none"),
            routes.join("; ")
        )
    }

    /// The route for `host` and `path`: among routes whose host matches, the longest prefix.
    fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| r.host.as_ref().is_none_or(|h| h.matches(host)))
            .filter(|r| prefix_matches(&r.prefix, path))
            .max_by_key(|r| r.prefix.len())
    }

    /// A TLS config for one connection whose verifier records a refused certificate.
    fn connection_tls(&self) -> Result<(Arc<rustls::ServerConfig>, Option<Arc<Recording>>)> {
        if self.client_auth == ClientAuth::None {
            return Ok((Arc::clone(&self.tls), None));
        }
        let rec = Recording::new(Arc::clone(&self.verifier));
        let cfg = server_config(
            &self.provider,
            rec.clone(),
            Arc::clone(&self.resolver),
            Arc::clone(&self.session_storage),
            Arc::clone(&self.ticketer),
        )?;
        Ok((Arc::new(cfg), Some(rec)))
    }
}

fn server_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Arc<SniCerts>,
    session_storage: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = session_storage;
    cfg.ticketer = ticketer;
    Ok(cfg)
}

/// `/claims` matches `/claims`, `/claims/…` and `/claims?…`, not `/claimsx`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

/// Checks an upstream URL and returns its `scheme://authority` (default ports made explicit).
pub(crate) fn upstream_base(u: &str) -> std::result::Result<String, String> {
    let uri: Uri = u.parse().map_err(|e| format!("{u:?}: {e}"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s,
        _ => return Err(format!("{u:?}: the scheme must be http or https")),
    };
    let Some(auth) = uri.authority() else {
        return Err(format!("{u:?}: no host"));
    };
    if auth.as_str().contains('@') {
        return Err(format!("{u:?}: user information is not allowed"));
    }
    if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
        return Err(format!(
            "{u:?}: give scheme://host:port only (requests keep their path)"
        ));
    }
    let port = auth
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = auth.host();
    Ok(format!("{scheme}://{host}:{port}"))
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Counts a request in flight on a member until dropped.
struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Route {
    fn usable(m: &Member, now: u64) -> bool {
        m.healthy.load(Ordering::Relaxed) && m.down_until.load(Ordering::Relaxed) <= now
    }

    /// Picks a member not in `tried`: usable ones first; when none is usable, any.
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        let ms = &self.pool.members;
        let now = now_ms();
        let fresh: Vec<usize> = (0..ms.len()).filter(|i| !tried.contains(i)).collect();
        let usable: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| Self::usable(&ms[i], now))
            .collect();
        let cands = if usable.is_empty() { fresh } else { usable };
        if cands.is_empty() {
            return None;
        }
        let start = self.pool.next.fetch_add(1, Ordering::Relaxed);
        match self.pool.balance {
            Balance::RoundRobin => Some(cands[start % cands.len()]),
            Balance::LeastConnections => (0..cands.len())
                .map(|k| cands[(start + k) % cands.len()])
                .min_by_key(|&i| ms[i].active.load(Ordering::Relaxed)),
        }
    }
}

/// How one reverse-proxy request goes upstream (built per request, used by the pipeline driver).
pub(crate) struct Dispatch {
    route: Arc<Route>,
    request_id: String,
    client_ip: std::net::IpAddr,
    /// The canonical host (X-Forwarded-Host, Forwarded).
    host: String,
    /// The Host a `preserve_host` route sends upstream: the canonical host and port.
    host_header: String,
    /// The canonical path and query (or the client's, with `forward_raw_path`).
    upstream_path: String,
    facility_header: HeaderName,
    facility: Option<String>,
}

impl Dispatch {
    /// How long the upstream may take to send its response head: the route's `timeout_secs`,
    /// else `default` (`[limits] response_timeout_secs`).
    pub(crate) fn response_timeout(&self, default: Duration) -> Duration {
        self.route.timeout.unwrap_or(default)
    }

    /// Sets the forwarding headers on a request about to go upstream.
    pub(crate) fn prepare(&self, parts: &mut http::request::Parts) {
        let h = &mut parts.headers;
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            h.remove(n);
        }
        let ip = self.client_ip.to_string();
        if let Ok(v) = HeaderValue::from_str(&ip) {
            h.insert("x-forwarded-for", v);
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        if let Ok(v) = HeaderValue::from_str(&self.host) {
            h.insert("x-forwarded-host", v);
        }
        let for_ = if self.client_ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip
        };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "for={for_};proto=https;host=\"{}\"",
            self.host.replace(['"', '\\'], "")
        )) {
            h.insert(header::FORWARDED, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("x-request-id", v);
        }
        h.remove(&self.facility_header);
        if let Some(v) = self
            .facility
            .as_deref()
            .and_then(|f| HeaderValue::from_str(f).ok())
        {
            h.insert(self.facility_header.clone(), v);
        }
        if self.route.preserve_host {
            if let Ok(v) = HeaderValue::from_str(&self.host_header) {
                h.insert(header::HOST, v);
            }
        } else {
            h.remove(header::HOST);
        }
        // The path the route was chosen on is the path the upstream gets.
        if let Ok(u) = self.upstream_path.parse::<Uri>() {
            parts.uri = u;
        }
        parts.version = Version::HTTP_11;
    }

    /// The request id (also returned to the client).
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Sends `req` to a pool member; a connect failure marks the member down for
    /// `fail_timeout_secs` and, for an idempotent request without a body, tries another (up to
    /// `retries` more). The in-flight count is held by `state` until the flow ends.
    pub(crate) async fn send(
        &self,
        shared: &Shared,
        state: &FlowState,
        req: Request<ProxyBody>,
    ) -> std::result::Result<Response<Incoming>, SendError> {
        let (parts, body) = req.into_parts();
        let replayable = idempotent(&parts.method) && body.is_end_stream();
        let mut parts = Some(parts);
        let path = parts
            .as_ref()
            .and_then(|p| p.uri.path_and_query())
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut tried = Vec::new();
        let mut body = Some(body);
        loop {
            // A pool has at least one member (checked when the config is built).
            let Some(i) = self.route.pick(&tried) else {
                return Err(SendError::NoUpstream);
            };
            tried.push(i);
            let member = Arc::clone(&self.route.pool.members[i]);
            // The head is copied only while another attempt may follow.
            let last = !replayable
                || tried.len() as u32 > self.route.retries
                || tried.len() >= self.route.pool.members.len();
            let mut p = if last {
                match parts.take() {
                    Some(p) => p,
                    None => return Err(SendError::NoUpstream),
                }
            } else {
                match parts.as_ref() {
                    Some(p) => p.clone(),
                    None => return Err(SendError::NoUpstream),
                }
            };
            p.uri = match format!("{}{path}", member.base).parse() {
                Ok(u) => u,
                Err(_) => p.uri,
            };
            let b = match body.take() {
                Some(b) => b,
                None => crate::forward::empty_body(),
            };
            member.active.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(Arc::clone(&member));
            match shared.client.request(Request::from_parts(p, b)).await {
                Ok(r) => {
                    if let Some((host, port)) = member
                        .base
                        .split_once("://")
                        .and_then(|(_, a)| a.rsplit_once(':'))
                    {
                        state.set_dest_name(host, port.parse().unwrap_or(0));
                    }
                    state.hold_until_done(Box::new(guard));
                    return Ok(r);
                }
                Err(e) => {
                    drop(guard);
                    if e.is_connect() {
                        let until = now_ms() + self.route.fail_timeout.as_millis() as u64;
                        member.down_until.store(until, Ordering::Relaxed);
                        tracing::warn!(route = %self.route.name, upstream = %member.base, error = %crate::upstream::error_chain(&e), "upstream unreachable: skipped for {:?}", self.route.fail_timeout);
                    }
                    if last || !e.is_connect() {
                        return Err(SendError::Upstream(e));
                    }
                    shared
                        .metrics
                        .upstream_retries
                        .with_label_values(&[&self.route.name])
                        .inc();
                }
            }
        }
    }
}

/// A terminated client connection's facts, shared by its requests.
struct ReverseConn {
    state: Arc<ReverseState>,
    peer: Option<Arc<PeerCert>>,
    sni: Option<String>,
    tls_version: Option<u16>,
}

/// The metric reason for a refused client certificate.
fn refusal_reason(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("unknownissuer") || r.contains("unknown issuer") || r.contains("badsignature") {
        "unknown_ca"
    } else if r.contains("revoked") {
        "revoked"
    } else if r.contains("notvalidyet") || r.contains("not valid yet") {
        "not_yet_valid"
    } else if r.contains("expired") {
        "expired"
    } else if r.contains("no certificate")
        || r.contains("nocertificates")
        || r.contains("certificate required")
    {
        "missing"
    } else {
        "other"
    }
}

/// Serves one client connection of a reverse listener.
pub(crate) async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, conn: Arc<ConnInfo>) {
    let Some(state) = shared.reverse_state(conn.index) else {
        return;
    };
    let m = &shared.metrics;
    let (tls_cfg, recording) = match state.connection_tls() {
        Ok(x) => x,
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
                    .with_label_values(&[&conn.listener, refusal_reason(&r.reason)])
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
    let peer = session
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|leaf| {
            PeerCert::from_der(leaf.clone().into_owned(), state.facility_rule.as_ref())
        })
        .map(Arc::new);
    let rc = Arc::new(ReverseConn {
        state,
        peer,
        sni,
        tls_version,
    });
    let listener = Arc::clone(&conn.listener);
    let svc_shared = Arc::clone(&shared);
    let handler = move |req| {
        reverse_flow(
            Arc::clone(&svc_shared),
            Arc::clone(&conn),
            Arc::clone(&rc),
            req,
        )
    };
    forward::serve_decrypted(&shared, &listener, tls, h2, handler).await;
}

/// A threat event (and a communication-log line) for a client certificate refused in the
/// handshake: who presented what, and why it was refused.
async fn refused_event(shared: &Arc<Shared>, conn: &ConnInfo, r: &clientauth::Refusal) {
    let mut meta = forward::new_meta(shared, conn, "", conn.local.port());
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
        format!(
            "client-certificate-{}",
            refusal_reason(&r.reason).replace('_', "-")
        ),
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
    let client_upgrade = (req.version() == Version::HTTP_11
        && forward::wants_upgrade(req.headers()))
    .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let st = &rc.state;
    // A client never chooses its own facility.
    let spoofed = parts.headers.contains_key(&st.facility_header);
    parts.headers.remove(&st.facility_header);
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
    forward::host_from_authority(&mut parts);
    let port = conn.local.port();
    let authority = if port == 443 {
        forward::bracket(&host)
    } else {
        format!("{}:{port}", forward::bracket(&host))
    };
    let url: Uri = match format!("https://{authority}{path}").parse() {
        Ok(u) => u,
        Err(e) => return forward::bad_target(&shared, &conn, e),
    };
    let request_id = uuid::Uuid::now_v7().to_string();
    let facility = rc.peer.as_ref().and_then(|p| p.facility.clone());
    let mut head = RequestHead::new(
        parts.method.clone(),
        url.clone(),
        parts.version,
        parts.headers.clone(),
        443,
    );
    head.raw = parts
        .extensions
        .get::<forward::RawHead>()
        .map(|r| r.0.clone());
    let mut meta = forward::new_meta(&shared, &conn, &head.host, port);
    meta.sni = rc.sni.clone();
    meta.tls = TlsMode::Decrypted;
    meta.tls_version = rc.tls_version;
    meta.facility_id = facility.clone();
    meta.client_cert = rc.peer.as_ref().map(|p| p.facts.clone());
    meta.request_id = Some(request_id.clone());
    let http = HttpFacts::of_request(&parts, &url, &head.host, &path, Some(request_id.clone()));
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(Arc::clone(&shared), flow, http, DestinationInfo::default());
    let guard = FinishGuard(Arc::clone(&state));
    if spoofed {
        tracing::info!(listener = %conn.listener, client = %conn.client, header = %st.facility_header, "client sent the facility header: removed");
    }

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
                title: "Bad request",
                text: "The request's address has more than one reading, so the gateway refuses it."
                    .into(),
            };
            return deny(&state, d, &host, &request_id).await;
        }
    };

    // No certificate where one is required (missing_cert = "403").
    if st.client_auth == ClientAuth::Required && rc.peer.is_none() {
        shared
            .metrics
            .client_cert_refused
            .with_label_values(&[&conn.listener, "missing"])
            .inc();
        let d = Denial::access(
            "client-certificate-missing",
            "no client certificate: this service requires one".to_string(),
            "tls.client.certificate",
            "none",
            &host,
        );
        return deny(&state, d, &host, &request_id).await;
    }
    let Some(route) = st.route(&host, &path).cloned() else {
        state.set_status(404);
        state.set_error("no route for this host and path");
        return forward::text_response(StatusCode::NOT_FOUND, "no service at this address");
    };
    if let Some(why) = authorize(&route, rc.peer.as_deref(), facility.as_deref()) {
        shared
            .metrics
            .access_denied
            .with_label_values(&[&conn.listener, &route.name])
            .inc();
        let who = facility.clone().unwrap_or_else(|| "none".into());
        let d = Denial::access(
            "facility-denied",
            format!(
                "facility {who} may not reach route {} ({host}{}): {why}",
                route.name, route.prefix
            ),
            "tls.client.facility",
            &who,
            &host,
        );
        return deny(&state, d, &host, &request_id).await;
    }
    let dispatch = Dispatch {
        route,
        request_id,
        client_ip: crate::canonical_ip(conn.client.ip()),
        host: host.clone(),
        host_header: target.host_header,
        upstream_path: target.upstream,
        facility_header: st.facility_header.clone(),
        facility,
    };
    forward::inspect_and_send(
        shared,
        conn,
        state,
        guard,
        head,
        parts,
        body,
        client_upgrade,
        started,
        Dest::Pool(Box::new(dispatch)),
    )
    .await
}

/// Why `route` refuses this client, or None when it may pass.
fn authorize(route: &Route, peer: Option<&PeerCert>, facility: Option<&str>) -> Option<String> {
    if let Some(allowed) = &route.facilities {
        match facility {
            None => return Some("no facility ID in the client certificate".into()),
            Some(f) if !allowed.iter().any(|p| wildcard(p, f)) => {
                return Some("not in the route's facilities".into())
            }
            Some(_) => {}
        }
    }
    for (rule, key, pattern) in &route.require {
        match peer.and_then(|p| p.attribute(rule)) {
            Some(v) if wildcard(pattern, &v) => {}
            Some(v) => return Some(format!("{key} is {v:?}, not {pattern:?}")),
            None => return Some(format!("the certificate has no {key}")),
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
    title: &'a str,
    text: String,
}

impl<'a> Denial<'a> {
    /// A 403 for a facility or certificate the route does not admit.
    fn access(
        rule: &'a str,
        message: String,
        location: &'a str,
        evidence: &'a str,
        host: &str,
    ) -> Self {
        Denial {
            status: StatusCode::FORBIDDEN,
            rule,
            message,
            category: "access-denied",
            location,
            evidence,
            title: "Access denied",
            text: format!(
                "Your facility's certificate does not allow access to this service on {host}."
            ),
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
    state.set_status(d.status.as_u16());
    state.set_error(message.clone());
    state.emit_own(f).await;
    tracing::info!(event_id = %id, "{message}");
    let mut r = forward::block_response(d.status, d.title, &d.text, host, d.category, Some(id));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// Probes every pool member of routes with `health_check`, each at its route's interval.
pub(crate) async fn health_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        for state in shared.reverse_states() {
            for route in &state.routes {
                for (i, m) in route.pool.members.iter().enumerate() {
                    let up = Route::usable(m, now);
                    shared
                        .metrics
                        .upstream_up
                        .with_label_values(&[&*route.name, &i.to_string()])
                        .set(i64::from(up));
                    let Some((path, every)) = &route.health else {
                        continue;
                    };
                    if m.next_probe.load(Ordering::Relaxed) > now {
                        continue;
                    }
                    m.next_probe
                        .store(now + every.as_millis() as u64, Ordering::Relaxed);
                    let (shared, m, path, route) = (
                        Arc::clone(&shared),
                        Arc::clone(m),
                        path.clone(),
                        Arc::clone(route),
                    );
                    tokio::spawn(async move {
                        let ok = probe(&shared, &m.base, &path).await;
                        let was = m.healthy.swap(ok.is_ok(), Ordering::Relaxed);
                        shared
                            .metrics
                            .upstream_up
                            .with_label_values(&[&*route.name, &i.to_string()])
                            .set(i64::from(Route::usable(&m, now_ms())));
                        match (&ok, was) {
                            (Err(e), true) => {
                                tracing::warn!(route = %route.name, upstream = %m.base, reason = %e, "health check failed: upstream taken out of the pool")
                            }
                            (Ok(()), false) => {
                                tracing::info!(route = %route.name, upstream = %m.base, "health check passed: upstream back in the pool")
                            }
                            _ => {}
                        }
                    });
                }
            }
        }
    }
}

/// One health probe: GET base+path; 2xx/3xx within the connect + response timeouts is healthy.
async fn probe(shared: &Shared, base: &str, path: &str) -> std::result::Result<(), String> {
    let req = Request::get(format!("{base}{path}"))
        .header(header::USER_AGENT, "sekisho-health-check")
        .body(forward::empty_body())
        .map_err(|e| e.to_string())?;
    let limit =
        shared.limits.connect_timeout + shared.limits.response_timeout.min(Duration::from_secs(10));
    match tokio::time::timeout(limit, shared.client.request(req)).await {
        Err(_) => Err(format!("no answer within {limit:?}")),
        Ok(Err(e)) => Err(crate::upstream::error_chain(&e)),
        Ok(Ok(r)) if r.status().is_success() || r.status().is_redirection() => Ok(()),
        Ok(Ok(r)) => Err(format!("status {}", r.status())),
    }
}

/// Builds every reverse listener's state, by listener index (None for other kinds).
pub(crate) fn build_all(
    cfg: &Config,
    members: &Members,
) -> Result<Vec<Option<ArcSwap<ReverseState>>>> {
    let all = cfg
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| match l.kind {
            ListenerKind::Reverse => {
                ReverseState::build(cfg, i, members).map(|s| Some(ArcSwap::from_pointee(s)))
            }
            ListenerKind::Forward => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    // Members no state uses any more (after earlier reloads) are forgotten: the registry holds
    // at most the current and the previous configuration's upstreams.
    members
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, m| Arc::strong_count(m) > 1);
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(upstream_base("http://a.test").unwrap(), "http://a.test:80");
        assert_eq!(
            upstream_base("https://a.test/").unwrap(),
            "https://a.test:443"
        );
        assert_eq!(
            upstream_base("http://[::1]:8080").unwrap(),
            "http://[::1]:8080"
        );
        for bad in [
            "ftp://a",
            "a.test:80",
            "http://a/x",
            "http://u@a",
            "http://a/?q",
        ] {
            assert!(upstream_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusal_reasons() {
        assert_eq!(
            refusal_reason("invalid peer certificate: UnknownIssuer"),
            "unknown_ca"
        );
        assert_eq!(
            refusal_reason("invalid peer certificate: Revoked"),
            "revoked"
        );
        assert_eq!(
            refusal_reason("invalid peer certificate: Expired"),
            "expired"
        );
        assert_eq!(
            refusal_reason("invalid peer certificate: certificate expired: verification time 1 (UNIX), but certificate is not valid after 0"),
            "expired"
        );
        assert_eq!(
            refusal_reason("invalid peer certificate: NotValidYet"),
            "not_yet_valid"
        );
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

    #[test]
    fn authorization_by_facility_and_attributes() {
        let mut r = route(Balance::RoundRobin, 1);
        assert!(authorize(&r, None, None).is_none(), "no facilities = open");
        r.facilities = Some(vec!["H-00*".into(), "P-1".into()]);
        assert!(authorize(&r, None, Some("H-0042")).is_none());
        assert!(authorize(&r, None, Some("P-1")).is_none());
        assert!(authorize(&r, None, Some("P-2")).is_some());
        assert!(authorize(&r, None, None).is_some());
        r.facilities = Some(Vec::new());
        assert!(
            authorize(&r, None, Some("H-0042")).is_some(),
            "empty list = nobody"
        );
    }
}

#[cfg(test)]
mod path_props {
    use super::prefix_matches;
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
