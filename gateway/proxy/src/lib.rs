//! `sekisho-proxy`: listeners, TLS interception, the pipeline driver, events, metrics. It names
//! no engine: the binary assembles each listener's pipeline and hands it over in [`Wiring`].
//!
//! [`Gateway::build`] turns a [`Config`] and a [`Wiring`] into bound listeners; [`Gateway::run`]
//! serves until the shutdown future resolves; [`Reloader::apply`] swaps pipelines.
//!
//! Modules in the order a request meets them:
//! `listen` (accept, allow_clients, max_connections) → `conn` (one client connection) →
//! TLS: `tlspeek` (ClientHello), `ca` (CA, leaf minting), `clientauth` (client certificates) →
//! `forward` (absolute-form HTTP, CONNECT, interception or splice) | `reverse` (routes, facility
//! policy, pools) → `serve` (HTTP/1.1 and h2 on a client connection) → `driver` (the pipeline
//! around one exchange; `body`: body inspection and holds; `flowstate`: the flow's log line) →
//! `upstream` (the client toward origins). Beside them: `wire` (shared HTTP pieces), `canon`
//! (the canonical reverse target), `blockpage`, `events`, `metrics`, `config`, `shared` (state of
//! every connection).

pub mod autosplice;
mod body;
pub mod ca;
mod canon;
pub mod chunkline;
pub mod clientauth;
mod clientverify;
pub mod config;
mod conn;
mod crlder;
pub mod crlfetch;
mod dial;
mod driver;
mod error;
pub mod events;
mod expect;
pub mod facilities;
mod fault;
mod flowstate;
mod forward;
pub mod guard;
pub mod h2meter;
pub mod headtap;
mod health;
pub mod hostmatch;
pub mod hpki;
mod io;
mod legacycert;
pub mod legacyprobe;
mod listen;
pub mod metrics;
pub mod pages;
mod pinning;
mod preflight;
mod range;
pub mod rawtap;
mod refused;
mod respheaders;
mod respjudge;
pub mod respread;
mod reverse;
pub mod revocation;
mod serve;
mod shared;
mod shed;
mod tlserror;
pub mod tlspeek;
pub mod upstream;
mod wire;
pub mod wsframe;
mod wsrelay;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sekisho_core::{Observer, Pipeline};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use body::Blocked;
pub use config::Config;
pub use error::{ProxyError, Result};
pub use pages::{Page, Pages, Reason};
pub use wire::strip_hop_by_hop;

use crate::ca::{CertAuthority, LeafMinter};
use crate::events::{EventSink, EventWriters};
use crate::hostmatch::HostMatcher;
use crate::metrics::Metrics;
use crate::shared::{Limits, Shared};

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

/// `observer.*` of every event: this gateway's name and version, and its node name (`node_name`,
/// else the host name).
fn observer(cfg: &Config) -> Observer {
    let node = cfg.node_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "sekisho".into())
    });
    Observer {
        name: "sekisho".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        node,
    }
}

/// Every socket the gateway listens on (the destination guard refuses them).
fn own_addrs(listeners: &[BoundListener], metrics: Option<&TcpListener>) -> Vec<SocketAddr> {
    listeners
        .iter()
        .flat_map(|l| l.sockets.iter())
        .chain(metrics)
        .filter_map(|s| s.local_addr().ok())
        .collect()
}

/// Binds every address of every listener.
async fn bind_listeners(cfg: &Config) -> Result<Vec<BoundListener>> {
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
            max_connections: cfg.limits.max_connections,
        });
    }
    Ok(listeners)
}

/// A configured, bound gateway, ready to [`Gateway::run`].
pub struct Gateway {
    shared: Arc<Shared>,
    listeners: Vec<BoundListener>,
    metrics_listener: Option<TcpListener>,
    writers: EventWriters,
    /// Present while the gateway runs (`<events file>.running`): found at start, the last run
    /// did not stop cleanly.
    running: std::path::PathBuf,
}

/// What `check-config` validates of the proxy without binding: the CA, the upstream trust
/// anchors and the MSS sinks. Engines and listeners are checked by the binary's assembly (see
/// [`describe_listener`]).
pub fn check(cfg: &Config) -> Result<Vec<String>> {
    cfg.require_listeners()?;
    let mut notes = Vec::new();
    let tls = &cfg.tls;
    let missing = |gone: &std::path::Path, what: &str, other: &std::path::Path| {
        ProxyError::Cert {
        path: gone.to_path_buf(),
        message: format!(
            "CA {what} missing ({} exists); restore it, or remove both and run `sekisho ca init --out DIR`",
            other.display()
        ),
    }
    };
    let (c, k) = (&tls.ca_cert, &tls.ca_key);
    if c.exists() && !k.exists() {
        return Err(missing(k, "key", c));
    }
    if k.exists() && !c.exists() {
        return Err(missing(c, "certificate", k));
    }
    if c.exists() {
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
        let kind = match s.kind {
            sekisho_mss::SinkKind::File => "file",
            sekisho_mss::SinkKind::Syslog => "syslog",
            sekisho_mss::SinkKind::Http => "http",
            sekisho_mss::SinkKind::Kafka => "kafka",
        };
        let transport = match s.transport {
            sekisho_mss::Transport::Tcp => "tcp",
            sekisho_mss::Transport::Tls => "tls",
        };
        let logs: Vec<&str> = s.logs.iter().map(|l| l.name()).collect();
        notes.push(format!(
            "  sink {}: {kind} {} format {} transport {transport} logs {}",
            m.sink_name(i),
            s.target(),
            s.format().name(),
            logs.join(", ")
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
        // The engines' collectors sit beside the proxy's metrics on one endpoint.
        let metrics = Arc::new(Metrics::new()?);
        for c in wiring.collectors {
            metrics.registry.register(c)?;
        }
        if wiring.pipelines.len() != cfg.listeners.len() {
            return Err(ProxyError::Config {
                file: cfg.path.clone(),
                message: format!(
                    "{} pipelines for {} listeners",
                    wiring.pipelines.len(),
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
        let limits = Limits::from(&cfg.limits);
        let roots = upstream::root_store(tls.system_roots, tls.webpki_roots, &tls.upstream_roots)?;
        let upstream_certs = upstream::cert_store(4096);
        let upstream_invalid = Arc::new(upstream::InvalidStore::new(4096));
        let verification = upstream::Verification {
            certs: Arc::clone(&upstream_certs),
            invalid: Arc::clone(&upstream_invalid),
            allow_invalid: HostMatcher::new(&cfg.tls.allow_invalid_upstream)
                .map_err(|e| cfg.err("tls.allow_invalid_upstream", e))?,
        };
        // The forward proxy dials under the destination guard (filled in once the listeners are
        // bound); reverse routes go to the upstreams the operator configured.
        let dest = Arc::new(ArcSwap::from_pointee(guard::DestGuard::default()));
        let client = |guard: dial::Guard| {
            upstream::client(
                roots.clone(),
                limits.connect_timeout,
                limits.idle_timeout,
                verification.clone(),
                cfg.tls.upstream_http2,
                guard,
            )
        };
        let (forward_client, reverse_client) = (client(Some(Arc::clone(&dest)))?, client(None)?);
        let observer = observer(&cfg);
        let (events, writers) = EventSink::open(
            &cfg.events.file,
            &cfg.events.comm_log,
            cfg.events.queue,
            Arc::clone(&metrics),
            cfg.mss.as_ref().map(|m| (m, observer.clone())),
        )
        .await?;
        let splice = HostMatcher::new(&tls.splice).map_err(|e| ProxyError::Config {
            file: cfg.path.clone(),
            message: format!("tls.splice: {e}"),
        })?;
        let members = reverse::Members::default();
        let reverse = reverse::build_all(&cfg, &members)?;
        let listeners = bind_listeners(&cfg).await?;
        let metrics_listener = match cfg.metrics.addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| ProxyError::io(format!("binding metrics on {a}"), e))?,
            ),
            None => None,
        };
        let own = own_addrs(&listeners, metrics_listener.as_ref());
        dest.store(Arc::new(guard::DestGuard::new(&cfg, own.clone())));
        let pages = cfg
            .policy
            .pages()
            .map_err(|e| cfg.err("policy.page_dir", e))?;
        let shared = Arc::new(Shared {
            pages: ArcSwap::from_pointee(pages),
            pipelines: wiring
                .pipelines
                .into_iter()
                .map(ArcSwap::from_pointee)
                .collect(),
            minter,
            client: forward_client,
            reverse_client,
            dest,
            own,
            via_node: wire::via_node(&observer.node),
            shedder: shed::Shedder::default(),
            faults: shed::Windows::default(),
            clients: conn::ClientSlots::new(cfg.limits.max_connections_per_client),
            clients_limit: cfg.limits.max_connections_per_client,
            upstream_certs,
            upstream_invalid,
            events,
            metrics,
            splice,
            autosplice: autosplice_of(&cfg)?,
            pinning: pinning::Pinning::new(
                HostMatcher::new(&cfg.tls.pinning_splice)
                    .map_err(|e| cfg.err("tls.pinning_splice", e))?,
            ),
            hold: Arc::new(Semaphore::new(cfg.limits.hold_bytes_total)),
            flow_ids: AtomicU64::new(1),
            conn_ids: AtomicU64::new(1),
            observer,
            health: health::Health::new(&cfg),
            server_tls: Arc::new(base_server_tls()?),
            listener_limits: cfg
                .listeners
                .iter()
                .map(|l| Limits::from(&l.limits(&cfg.limits)))
                .collect(),
            limits,
            reverse,
            members,
        });
        let mut running = cfg.events.file.clone().into_os_string();
        running.push(".running");
        Ok(Gateway {
            shared,
            listeners,
            metrics_listener,
            writers,
            running: running.into(),
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
            running,
        } = self;
        fault::check_unclean_stop(&shared, &running).await;
        let mut accepting = tokio::task::JoinSet::new();
        for l in listeners {
            let limit = Arc::new(Semaphore::new(l.max_connections));
            let allow = Arc::new(l.allow);
            for sock in l.sockets {
                accepting.spawn(listen::accept_loop(
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
        let mut serving = tokio::task::JoinSet::new();
        if shared.reverse.iter().any(Option::is_some) {
            serving.spawn(reverse::health_loop(Arc::clone(&shared)));
        }
        if let Some(ml) = metrics_listener {
            serving.spawn(listen::metrics_loop(Arc::clone(&shared), ml));
        }
        shutdown.await;
        // Listeners close first (new connections are refused by the kernel, so a balancer
        // moves on), then connections in flight get until the drain deadline.
        accepting.abort_all();
        while accepting.join_next().await.is_some() {}
        drain(&shared).await;
        serving.abort_all();
        while serving.join_next().await.is_some() {}
        drop(shared);
        // Flows still in flight hold event senders: give the writers a bounded time to drain.
        // MSS sinks take up to 5 s to deliver what they still hold (the spool keeps the rest).
        let _ = tokio::time::timeout(Duration::from_secs(7), writers.finish()).await;
        let _ = std::fs::remove_file(&running);
        Ok(())
    }
}

/// Asks every client connection to finish and waits until none is left or `[limits]
/// drain_timeout_secs` has passed (connections still open then are cut when the runtime stops).
async fn drain(shared: &Shared) {
    shared.health.start_drain();
    let deadline = tokio::time::Instant::now() + shared.limits.drain_timeout;
    let active = || shared.metrics.connections_active.get();
    let start = active();
    tracing::info!(connections = start, deadline = ?shared.limits.drain_timeout, "draining");
    while active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match active() {
        0 => tracing::info!(connections = start, "drained: every connection finished"),
        left => tracing::warn!(left, "drain deadline passed: cutting the connections left"),
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
        match &r {
            Ok(()) => shared.metrics.reloads.with_label_values(&["ok"]).inc(),
            Err(e) => Self::report_failure(shared, &cfg.path, e),
        }
        r
    }

    /// Reports a reload that failed before [`Reloader::apply`] (a config that does not parse, an
    /// engine that does not build, a CA that cannot be read): counted, and a `reload-failed`
    /// event naming the file and line the error names.
    pub fn failed(&self, cfg: &std::path::Path, error: &dyn std::fmt::Display) {
        if let Some(shared) = self.0.upgrade() {
            Self::report_failure(shared, cfg, error);
        }
    }

    fn report_failure(shared: Arc<Shared>, cfg: &std::path::Path, error: &dyn std::fmt::Display) {
        shared.metrics.reloads.with_label_values(&["error"]).inc();
        let detail = format!("{}: {error}", cfg.display());
        // Called off the async workers (reloads compile rules on the blocking pool).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let subject = detail.clone();
                fault::on_gateway(&shared, fault::Fault::ReloadFailed, &subject, &detail).await;
            });
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
        // The CA, certificates, client CAs, CRLs and routes are read before anything is
        // swapped: a CA key that cannot be read fails the reload and the running CA stays.
        let ca = CertAuthority::load(&cfg.tls.ca_cert, &cfg.tls.ca_key)?;
        let reverse = reverse::build_all(cfg, &shared.members)?;
        let pages = cfg
            .policy
            .pages()
            .map_err(|e| cfg.err("policy.page_dir", e))?;
        for (slot, p) in shared.pipelines.iter().zip(new) {
            slot.store(Arc::new(p));
        }
        shared
            .dest
            .store(Arc::new(guard::DestGuard::new(cfg, shared.own.clone())));
        shared.pages.store(Arc::new(pages));
        if shared.minter.replace_ca(ca) {
            tracing::info!(ca = %cfg.tls.ca_cert.display(), "gateway CA replaced; cached leaves dropped");
        }
        for (slot, r) in shared.reverse.iter().zip(reverse) {
            if let (Some(slot), Some(r)) = (slot, r) {
                slot.store(r.load_full());
            }
        }
        Ok(())
    }
}

/// `[tls]`'s choices for servers the gateway cannot inspect, and its pre-flight dial.
fn autosplice_of(cfg: &Config) -> Result<autosplice::AutoSplice> {
    let a = autosplice::AutoSplice::new(
        cfg.tls.on_client_certificate_request,
        cfg.tls.on_legacy_upstream,
        HostMatcher::new(&cfg.tls.legacy_splice).map_err(|e| cfg.err("tls.legacy_splice", e))?,
    )
    .with_legacy_categories(cfg.tls.legacy_splice_categories.clone());
    Ok(if cfg.tls.preflight {
        a.with_preflight(Duration::from_secs(cfg.tls.preflight_remember_secs))
    } else {
        a
    })
}
