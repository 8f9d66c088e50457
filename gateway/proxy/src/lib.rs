//! `sekisho-proxy`: listeners, TLS interception, the pipeline driver, events, metrics.
//!
//! [`Gateway::build`] turns a [`Config`] into bound listeners; [`Gateway::run`] serves until the
//! shutdown future resolves.

mod blockpage;
mod body;
pub mod ca;
mod canon;
pub mod clientauth;
pub mod config;
mod conn;
mod error;
pub mod events;
mod flowstate;
mod forward;
pub mod headtap;
pub mod hostmatch;
mod io;
pub mod metrics;
mod reverse;
pub mod tlspeek;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sekisho_core::{Observer, Pipeline};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use blockpage::{render as render_block_page, BlockInfo};
pub use body::Blocked;
pub use config::Config;
pub use error::{ProxyError, Result};
pub use forward::strip_hop_by_hop;

use crate::ca::{CertAuthority, LeafMinter};
use crate::events::{EventSink, EventWriters};
use crate::hostmatch::HostMatcher;
use crate::metrics::Metrics;
use crate::upstream::UpstreamClient;

/// Limits as durations and sizes, from `[limits]`.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_header_bytes: usize,
    pub handshake_timeout: Duration,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub hold_per_flow: usize,
}

/// State shared by every connection.
pub(crate) struct Shared {
    /// One pipeline per listener, by listener index.
    pub pipelines: Vec<ArcSwap<Pipeline>>,
    pub minter: LeafMinter,
    pub client: UpstreamClient,
    /// Verified upstream certificate chains by server name (for IPS certificate rules).
    pub upstream_certs: Arc<upstream::CertStore>,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub splice: HostMatcher,
    pub hold: Arc<Semaphore>,
    pub flow_ids: AtomicU64,
    pub conn_ids: AtomicU64,
    pub observer: Observer,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub limits: Limits,
    /// Reverse listeners' TLS, routes and pools, by listener index (None for forward ones).
    pub reverse: Vec<Option<ArcSwap<reverse::ReverseState>>>,
    /// Pool members by URL (health and in-flight counts survive reloads).
    pub members: reverse::Members,
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl Shared {
    /// The current pipeline of listener `index` (a snapshot: a reload does not change it).
    pub fn pipeline(&self, index: usize) -> Arc<Pipeline> {
        self.pipelines
            .get(index)
            .map(|p| p.load_full())
            .unwrap_or_default()
    }

    /// The current state of reverse listener `index`.
    pub fn reverse_state(&self, index: usize) -> Option<Arc<reverse::ReverseState>> {
        self.reverse
            .get(index)
            .and_then(|s| s.as_ref())
            .map(|s| s.load_full())
    }

    /// Every reverse listener's current state.
    pub fn reverse_states(&self) -> Vec<Arc<reverse::ReverseState>> {
        self.reverse
            .iter()
            .flatten()
            .map(|s| s.load_full())
            .collect()
    }

    pub fn next_flow_id(&self) -> u64 {
        self.flow_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn next_conn_id(&self) -> u64 {
        self.conn_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// A TLS acceptor presenting `cert`, sharing the base config's session cache and tickets.
    pub fn tls_acceptor(&self, cert: Arc<CertifiedKey>) -> tokio_rustls::TlsAcceptor {
        let mut cfg = (*self.server_tls).clone();
        cfg.cert_resolver = Arc::new(OneCert(cert));
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    }
}

/// What the binary hands the gateway besides its config: one ready pipeline per listener (by
/// listener index) and the engines' Prometheus collectors.
#[derive(Default)]
pub struct Wiring {
    /// Each listener's pipeline, in `[[listener]]` order.
    pub pipelines: Vec<Pipeline>,
    /// Collectors the engines export, registered beside the proxy's own metrics.
    pub collectors: Vec<Box<dyn prometheus::core::Collector>>,
}

fn base_server_tls() -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCert));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(20_000);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    Ok(cfg)
}

#[derive(Debug)]
struct NoCert;

impl ResolvesServerCert for NoCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

struct BoundListener {
    index: usize,
    kind: config::ListenerKind,
    name: Arc<str>,
    sockets: Vec<TcpListener>,
    allow: Vec<IpNet>,
    max_connections: usize,
}

/// A configured, bound gateway, ready to [`Gateway::run`].
pub struct Gateway {
    shared: Arc<Shared>,
    listeners: Vec<BoundListener>,
    metrics_listener: Option<TcpListener>,
    writers: EventWriters,
}

/// What `check-config` validates of the proxy without binding: the CA, the upstream trust
/// anchors and the MSS sinks. Engines and listeners are checked by the binary's assembly (see
/// [`describe_listener`]).
pub fn check(cfg: &Config) -> Result<Vec<String>> {
    cfg.require_listeners()?;
    let mut notes = Vec::new();
    let tls = &cfg.tls;
    if tls.ca_cert.exists() || tls.ca_key.exists() {
        CertAuthority::load(&tls.ca_cert, &tls.ca_key)?;
        notes.push(format!("CA {} loads", tls.ca_cert.display()));
    } else {
        notes.push(format!(
            "CA files {} and {} do not exist yet: `sekisho run` creates them (or run `sekisho ca init --out {}`)",
            tls.ca_cert.display(),
            tls.ca_key.display(),
            tls.ca_cert.parent().map(|p| p.display().to_string()).unwrap_or_else(|| ".".into())
        ));
    }
    let roots = upstream::root_store(tls.system_roots, tls.webpki_roots, &tls.upstream_roots)?;
    notes.push(format!("{} upstream trust anchors", roots.len()));
    if let Some(m) = &cfg.mss {
        notes.extend(check_mss(cfg, m)?);
    }
    Ok(notes)
}

fn check_mss(cfg: &Config, m: &sekisho_mss::MssConfig) -> Result<Vec<String>> {
    let mut notes = vec![format!(
        "mss: spool {} (at most {} bytes per sink and class), masking {}",
        m.spool_dir.display(),
        m.spool_max_bytes,
        if m.mask.enabled() { "on" } else { "off" }
    )];
    for (i, s) in m.sinks.iter().enumerate() {
        sekisho_mss::deliver::check_sink(m, i).map_err(|e| ProxyError::Config {
            file: cfg.path.clone(),
            message: e.to_string(),
        })?;
        notes.push(format!(
            "  sink {}: {:?} {} format {} transport {:?} logs {:?}",
            m.sink_name(i),
            s.kind,
            s.target(),
            s.format().name(),
            s.transport,
            s.logs
        ));
    }
    Ok(notes)
}

/// What `check-config` says of listener `index` beyond its stages: a reverse listener's
/// certificates, client CAs, CRLs and routes (read from disk), `None` for a forward listener.
pub fn describe_listener(cfg: &Config, index: usize) -> Result<Option<String>> {
    match cfg.listeners.get(index) {
        Some(l) if l.kind == config::ListenerKind::Reverse => {
            let st = reverse::ReverseState::build(cfg, index, &reverse::Members::default())?;
            Ok(Some(st.describe()))
        }
        _ => Ok(None),
    }
}

impl Gateway {
    /// Loads certificates and roots, opens the event files and binds every socket. `wiring`
    /// brings one pipeline per listener (the binary assembles them from the engines) and the
    /// engines' metrics.
    pub async fn build(cfg: Config, wiring: Wiring) -> Result<Gateway> {
        cfg.require_listeners()?;
        let metrics = Arc::new(Metrics::new()?);
        for c in wiring.collectors {
            metrics.registry.register(c)?;
        }
        let pipelines = wiring.pipelines;
        if pipelines.len() != cfg.listeners.len() {
            return Err(ProxyError::Config {
                file: cfg.path.clone(),
                message: format!(
                    "{} pipelines for {} listeners",
                    pipelines.len(),
                    cfg.listeners.len()
                ),
            });
        }
        let tls = &cfg.tls;
        let ca = CertAuthority::load(&tls.ca_cert, &tls.ca_key)?;
        let minter = LeafMinter::new(
            ca,
            tls.leaf_cache_size,
            tls.leaf_validity_days,
            tls.leaf_key_rotation_hours,
            Arc::clone(&metrics),
        )?;
        let roots = upstream::root_store(tls.system_roots, tls.webpki_roots, &tls.upstream_roots)?;
        let l = &cfg.limits;
        let limits = Limits {
            max_header_bytes: l.max_header_bytes,
            handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
            read_timeout: Duration::from_secs(l.read_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            connect_timeout: Duration::from_secs(l.connect_timeout_secs),
            response_timeout: Duration::from_secs(l.response_timeout_secs),
            hold_per_flow: l.hold_bytes_per_flow,
        };
        let upstream_certs = upstream::cert_store(4096);
        let client = upstream::client(
            roots,
            limits.connect_timeout,
            limits.idle_timeout,
            Arc::clone(&upstream_certs),
            cfg.tls.upstream_http2,
        )?;
        let node = cfg.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "sekisho".into())
        });
        let observer = Observer {
            name: "sekisho".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node: node.clone(),
        };
        let (events, writers) = EventSink::open(
            &cfg.events.file,
            &cfg.events.comm_log,
            cfg.events.queue,
            Arc::clone(&metrics),
            cfg.mss.as_ref().map(|m| (m, observer)),
        )
        .await?;
        let splice = HostMatcher::new(&tls.splice).map_err(|e| ProxyError::Config {
            file: cfg.path.clone(),
            message: format!("tls.splice: {e}"),
        })?;

        let members = reverse::Members::default();
        let reverse = reverse::build_all(&cfg, &members)?;
        let mut listeners = Vec::new();
        for (i, lc) in cfg.listeners.iter().enumerate() {
            let mut sockets = Vec::new();
            for addr in lc.addr.to_vec() {
                let s = TcpListener::bind(addr).await.map_err(|e| {
                    ProxyError::io(
                        format!("binding listener {} on {addr}", cfg.listener_name(i)),
                        e,
                    )
                })?;
                sockets.push(s);
            }
            listeners.push(BoundListener {
                index: i,
                kind: lc.kind,
                name: Arc::from(cfg.listener_name(i)),
                sockets,
                allow: lc.allowed_clients(),
                max_connections: l.max_connections,
            });
        }
        let metrics_listener = match cfg.metrics.addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ProxyError::io(format!("binding metrics on {a}"), e))?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            pipelines: pipelines.into_iter().map(ArcSwap::from_pointee).collect(),
            minter,
            client,
            upstream_certs,
            events,
            metrics,
            splice,
            hold: Arc::new(Semaphore::new(l.hold_bytes_total)),
            flow_ids: AtomicU64::new(1),
            conn_ids: AtomicU64::new(1),
            observer: Observer {
                name: "sekisho".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                node,
            },
            server_tls: Arc::new(base_server_tls()?),
            limits,
            reverse,
            members,
        });
        Ok(Gateway {
            shared,
            listeners,
            metrics_listener,
            writers,
        })
    }

    /// The bound addresses: (listener name, address) and the metrics address.
    pub fn local_addrs(&self) -> (Vec<(String, SocketAddr)>, Option<SocketAddr>) {
        let l = self
            .listeners
            .iter()
            .flat_map(|l| {
                l.sockets
                    .iter()
                    .filter_map(|s| s.local_addr().ok())
                    .map(|a| (l.name.to_string(), a))
            })
            .collect();
        (
            l,
            self.metrics_listener
                .as_ref()
                .and_then(|m| m.local_addr().ok()),
        )
    }

    /// The metrics registry (for embedding and tests).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// A handle that can swap the pipeline while the gateway runs.
    pub fn reloader(&self) -> Reloader {
        Reloader(Arc::downgrade(&self.shared))
    }

    /// Serves until `shutdown` resolves, then flushes the event files.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Gateway {
            shared,
            listeners,
            metrics_listener,
            writers,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        for l in listeners {
            let limit = Arc::new(Semaphore::new(l.max_connections));
            let allow = Arc::new(l.allow);
            for sock in l.sockets {
                tasks.spawn(accept_loop(
                    Arc::clone(&shared),
                    l.index,
                    l.kind,
                    Arc::clone(&l.name),
                    sock,
                    Arc::clone(&allow),
                    Arc::clone(&limit),
                ));
            }
        }
        if shared.reverse.iter().any(Option::is_some) {
            tasks.spawn(reverse::health_loop(Arc::clone(&shared)));
        }
        if let Some(ml) = metrics_listener {
            tasks.spawn(metrics_loop(Arc::clone(&shared.metrics), ml));
        }
        shutdown.await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        drop(shared);
        // Flows still in flight hold event senders: give the writers a bounded time to drain.
        // MSS sinks take up to 5 s to deliver what they still hold (the spool keeps the rest).
        let _ = tokio::time::timeout(Duration::from_secs(7), writers.finish()).await;
        Ok(())
    }
}

/// Swaps the running pipelines and reverse-proxy state (SIGHUP, admin API). It does not keep a
/// stopped gateway alive: the shutdown does not wait for reload handles to go.
#[derive(Clone)]
pub struct Reloader(std::sync::Weak<Shared>);

impl Reloader {
    fn shared(&self, cfg: &std::path::Path) -> Result<Arc<Shared>> {
        self.0.upgrade().ok_or_else(|| ProxyError::Config {
            file: cfg.to_path_buf(),
            message: "the gateway has stopped".into(),
        })
    }

    /// Puts `pipelines` (one per listener) and the reverse listeners' certificates and routes
    /// of `cfg` into service; on error (or a changed listener count or kind, which needs a
    /// restart) the running ones stay. Counts the reload in `sekisho_reloads_total`.
    pub fn apply(&self, cfg: &Config, pipelines: Vec<Pipeline>) -> Result<()> {
        let shared = self.shared(&cfg.path)?;
        let r = Self::swap(&shared, cfg, pipelines);
        let label = if r.is_ok() { "ok" } else { "error" };
        shared.metrics.reloads.with_label_values(&[label]).inc();
        r
    }

    /// Counts a reload that failed before [`Reloader::apply`] (a config that does not parse, an
    /// engine that does not build).
    pub fn failed(&self) {
        if let Some(shared) = self.0.upgrade() {
            shared.metrics.reloads.with_label_values(&["error"]).inc();
        }
    }

    fn swap(shared: &Shared, cfg: &Config, new: Vec<Pipeline>) -> Result<()> {
        let kinds_same = cfg.listeners.len() == shared.reverse.len()
            && cfg
                .listeners
                .iter()
                .zip(&shared.reverse)
                .all(|(l, r)| (l.kind == config::ListenerKind::Reverse) == r.is_some());
        if new.len() != shared.pipelines.len() || !kinds_same {
            return Err(ProxyError::Config {
                file: cfg.path.clone(),
                message: "listener: the number or kind of listeners changed; restart to apply"
                    .into(),
            });
        }
        // Certificates, client CAs, CRLs and routes are read before anything is swapped.
        let reverse = reverse::build_all(cfg, &shared.members)?;
        for (slot, p) in shared.pipelines.iter().zip(new) {
            slot.store(Arc::new(p));
        }
        for (slot, r) in shared.reverse.iter().zip(reverse) {
            if let (Some(slot), Some(r)) = (slot, r) {
                slot.store(r.load_full());
            }
        }
        Ok(())
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    index: usize,
    kind: config::ListenerKind,
    name: Arc<str>,
    sock: TcpListener,
    allow: Arc<Vec<IpNet>>,
    limit: Arc<Semaphore>,
) {
    let local = sock
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let what = match kind {
        config::ListenerKind::Forward => "forward proxy listening",
        config::ListenerKind::Reverse => "reverse proxy listening",
    };
    tracing::info!(listener = %name, addr = %local, "{what}");
    loop {
        let (tcp, peer) = match sock.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = canonical_ip(peer.ip());
        if !allow.iter().any(|n| n.contains(&ip)) {
            shared
                .metrics
                .connections_refused
                .with_label_values(&[&name, "not_allowed"])
                .inc();
            tracing::info!(listener = %name, client = %peer, "client not in allow_clients: refused");
            continue;
        }
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .with_label_values(&[&name, "limit"])
                .inc();
            tracing::warn!(listener = %name, client = %peer, "max_connections reached: refused");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        shared.metrics.connections.with_label_values(&[&name]).inc();
        shared.metrics.connections_active.inc();
        // The connection slot lives as long as anything serving this client does, including a
        // CONNECT tunnel that outlives the HTTP/1.1 connection it was upgraded from.
        let id = shared.next_conn_id();
        let conn = Arc::new(conn::ConnInfo {
            id,
            index,
            listener: Arc::clone(&name),
            client: peer,
            local,
            _slot: conn::Slot {
                _permit: permit,
                metrics: Arc::clone(&shared.metrics),
                shared: Arc::downgrade(&shared),
                index,
                id,
            },
        });
        let shared = Arc::clone(&shared);
        match kind {
            config::ListenerKind::Forward => {
                tokio::spawn(forward::serve_client(shared, tcp, conn));
            }
            config::ListenerKind::Reverse => {
                tokio::spawn(reverse::serve_client(shared, tcp, conn));
            }
        }
    }
}

pub(crate) fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

async fn metrics_loop(metrics: Arc<Metrics>, sock: TcpListener) {
    use http_body_util::Full;
    use hyper::service::service_fn;
    tracing::info!(addr = ?sock.local_addr().ok(), "metrics endpoint listening");
    loop {
        let Ok((tcp, _)) = sock.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let metrics = Arc::clone(&metrics);
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/metrics" => (200, "text/plain; version=0.0.4", metrics.render()),
                        "/healthz" => (200, "text/plain", "ok\n".to_string()),
                        _ => (404, "text/plain", "not found\n".to_string()),
                    };
                    let mut r = http::Response::new(Full::new(bytes::Bytes::from(body)));
                    *r.status_mut() =
                        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(ctype),
                    );
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
            )
            .await;
        });
    }
}
