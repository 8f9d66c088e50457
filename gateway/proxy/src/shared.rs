//! State shared by every connection: pipelines, the leaf minter, the upstream client, event
//! sinks, metrics, limits, reverse-proxy state.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sekisho_core::{Observer, Pipeline};
use tokio::sync::Semaphore;

use crate::ca::LeafMinter;
use crate::events::EventSink;
use crate::guard::DestGuard;
use crate::hostmatch::HostMatcher;
use crate::metrics::Metrics;
use crate::reverse::state::{Members, ReverseState};
use crate::upstream::{self, UpstreamClient};

/// Limits as durations and sizes, from `[limits]`.
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_header_bytes: usize,
    pub handshake_timeout: Duration,
    pub read_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub hold_per_flow: usize,
    pub drain_timeout: Duration,
    /// Payload bytes inspected per WebSocket frame.
    pub ws_inspect: usize,
}

/// State shared by every connection.
pub(crate) struct Shared {
    /// One pipeline per listener, by listener index.
    pub pipelines: Vec<ArcSwap<Pipeline>>,
    pub minter: LeafMinter,
    /// The forward proxy's upstream client (dials under `dest`).
    pub client: UpstreamClient,
    /// Reverse routes' upstream client (operator-configured destinations).
    pub reverse_client: UpstreamClient,
    /// Where the forward proxy may connect (swapped on reload).
    pub dest: Arc<ArcSwap<DestGuard>>,
    /// Live connections per client address (`max_connections_per_client`).
    pub clients: Arc<crate::conn::ClientSlots>,
    /// That limit, for messages.
    pub clients_limit: usize,
    /// Connection-level attacks: one event per client, attack and window.
    pub shedder: crate::shed::Shedder,
    /// Fault event windows, per fault and subject (`crate::fault`).
    pub faults: crate::shed::Windows<(crate::fault::Fault, String)>,
    /// This node in `Via` headers (loop detection).
    pub via_node: String,
    /// The gateway's own listening sockets.
    pub own: Vec<std::net::SocketAddr>,
    /// Verified upstream certificate chains by server name (for IPS certificate rules).
    pub upstream_certs: Arc<upstream::CertStore>,
    /// Upstream hosts passed with a certificate that does not verify (`allow_invalid_upstream`).
    pub upstream_invalid: Arc<upstream::InvalidStore>,
    pub events: EventSink,
    pub metrics: Arc<Metrics>,
    pub splice: HostMatcher,
    /// Clients refusing minted certificates, and `[tls] pinning_splice`.
    pub(crate) pinning: crate::pinning::Pinning,
    /// Upstreams that cannot be inspected (client certificate, legacy TLS), remembered.
    pub(crate) autosplice: crate::autosplice::AutoSplice,
    /// Page templates and texts (`[policy] page_dir`; swapped on reload).
    pub pages: ArcSwap<crate::pages::Pages>,
    pub hold: Arc<Semaphore>,
    pub flow_ids: AtomicU64,
    pub conn_ids: AtomicU64,
    pub observer: Observer,
    /// Readiness checks and the drain signal.
    pub health: crate::health::Health,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub limits: Limits,
    /// Per listener, by index: `limits` with the listener's own timeouts.
    pub listener_limits: Vec<Limits>,
    /// Reverse listeners' TLS, routes and pools, by listener index (None for forward ones).
    pub reverse: Vec<Option<ArcSwap<ReverseState>>>,
    /// Pool members by URL (health and in-flight counts survive reloads).
    pub members: Members,
}

#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl Shared {
    /// The limits of listener `index` (`[limits]` with the listener's own timeouts).
    pub fn limits_of(&self, index: usize) -> &Limits {
        self.listener_limits.get(index).unwrap_or(&self.limits)
    }

    /// The current pipeline of listener `index` (a snapshot: a reload does not change it).
    pub fn pipeline(&self, index: usize) -> Arc<Pipeline> {
        self.pipelines
            .get(index)
            .map(|p| p.load_full())
            .unwrap_or_default()
    }

    /// `host:port` speaks only legacy TLS: whether its tunnels are spliced from now on (listed in
    /// `[tls] legacy_splice`, in one of `legacy_splice_categories` by listener `index`'s URL
    /// filter, or `on_legacy_upstream = "splice"`).
    pub(crate) fn legacy_spliced(&self, index: usize, host: &str, port: u16) -> bool {
        let in_category = self.in_legacy_category(index, host);
        self.autosplice.legacy(host, port, in_category)
    }

    /// Whether a tunnel of listener `index` to `host:port` is spliced because of what the server
    /// did before (asked for a client certificate, spoke only legacy TLS), and why.
    pub(crate) fn auto_splice(
        &self,
        index: usize,
        host: &str,
        port: u16,
    ) -> Option<crate::autosplice::Why> {
        self.autosplice
            .splice(host, port, || self.in_legacy_category(index, host))
    }

    fn in_legacy_category(&self, index: usize, host: &str) -> bool {
        let wanted = self.autosplice.legacy_categories();
        !wanted.is_empty() && self.pipeline(index).in_category(host, wanted).is_some()
    }

    /// The current state of reverse listener `index`.
    pub fn reverse_state(&self, index: usize) -> Option<Arc<ReverseState>> {
        self.reverse
            .get(index)
            .and_then(|s| s.as_ref())
            .map(|s| s.load_full())
    }

    /// Every reverse listener's current state.
    pub fn reverse_states(&self) -> Vec<Arc<ReverseState>> {
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

impl From<&crate::config::LimitsConfig> for Limits {
    fn from(l: &crate::config::LimitsConfig) -> Self {
        Limits {
            max_header_bytes: l.max_header_bytes,
            handshake_timeout: Duration::from_secs(l.handshake_timeout_secs),
            read_timeout: Duration::from_secs(l.read_timeout_secs),
            body_timeout: Duration::from_secs(l.body_timeout_secs),
            idle_timeout: Duration::from_secs(l.idle_timeout_secs),
            connect_timeout: Duration::from_secs(l.connect_timeout_secs),
            response_timeout: Duration::from_secs(l.response_timeout_secs),
            hold_per_flow: l.hold_bytes_per_flow,
            drain_timeout: Duration::from_secs(l.drain_timeout_secs),
            ws_inspect: l.websocket_inspect_bytes,
        }
    }
}
