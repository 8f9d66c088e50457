//! `sekisho.toml`: the proxy's part of the gateway configuration (listeners, TLS, events, MSS,
//! metrics, limits, routes). Every section has defaults; unknown keys are errors. The engines'
//! tables (`[policy]`, `[urlfilter]`, `[ips]`, `[av]` …) belong to the engines: the binary names
//! them to [`Config::parse_with`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use serde::Deserialize;

use crate::error::{ProxyError, Result};
use crate::hostmatch::HostMatcher;

mod policy;
mod reverse;

pub use policy::{
    is_stream_type, ConnectNonTls, NetPolicy, PortSpec, RangeRequests, TlsBlockPage,
    DEFAULT_DENY_NETWORKS, DEFAULT_STREAM_TYPES,
};
pub(crate) use reverse::upstream_base;

/// The proxy's configuration. Unknown top-level keys are refused by [`Config::parse_with`] (which
/// knows the engines' tables); unknown keys inside a table by serde.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// This gateway's name in events (`observer.node`); defaults to the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Listeners (`[[listener]]`).
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerConfig>,
    /// TLS interception (`[tls]`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Threat events and the communication log (`[events]`).
    #[serde(default)]
    pub events: EventsConfig,
    /// Delivery to the MSS collector (`[mss]`, `[[mss.sink]]`): present means enabled.
    #[serde(default)]
    pub mss: Option<sekisho_mss::MssConfig>,
    /// State shared by the nodes of a cluster (`[store]`: Redis); absent: in process.
    #[serde(default)]
    pub store: Option<sekisho_core::StoreConfig>,
    /// Prometheus endpoint (`[metrics]`).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Resource limits and timeouts (`[limits]`).
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Reverse-proxy routes (`[[route]]`).
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    /// Named facility lists routes reference as `"@name"` (`[[facility_group]]`).
    #[serde(default, rename = "facility_group")]
    pub facility_groups: Vec<FacilityGroupConfig>,
    /// `[policy]`'s destination networks and CONNECT ports (the rest of the table is the host
    /// policy engine's).
    #[serde(default)]
    pub policy: NetPolicy,
    /// Where this config was read from (not a key).
    #[serde(skip)]
    pub path: PathBuf,
}

/// One address or a list of addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "AddrTexts")]
pub enum Addrs {
    /// `addr = "127.0.0.1:3128"`
    One(SocketAddr),
    /// `addr = ["127.0.0.1:3128", "[::1]:3128"]`
    Many(Vec<SocketAddr>),
}

/// `addr` as written: one string or a list.
#[derive(Deserialize)]
#[serde(transparent)]
struct AddrTexts(#[serde(deserialize_with = "sekisho_core::de::one_or_many")] Vec<String>);

impl TryFrom<AddrTexts> for Addrs {
    type Error = String;

    fn try_from(t: AddrTexts) -> std::result::Result<Addrs, String> {
        let mut v = Vec::with_capacity(t.0.len());
        for s in &t.0 {
            v.push(s.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "{s:?} is not an address with a port (1-65535): write \"127.0.0.1:3128\" or \"[::1]:3128\""
                )
            })?);
        }
        Ok(if v.len() == 1 {
            Addrs::One(v[0])
        } else {
            Addrs::Many(v)
        })
    }
}

impl Addrs {
    /// The addresses as a list.
    pub fn to_vec(&self) -> Vec<SocketAddr> {
        match self {
            Addrs::One(a) => vec![*a],
            Addrs::Many(v) => v.clone(),
        }
    }
}

/// Listener kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    /// Explicit forward proxy: absolute-form HTTP and CONNECT.
    Forward,
    /// Reverse proxy: terminates TLS (client certificates, facility IDs) and routes requests to
    /// upstream pools by `[[route]]`.
    Reverse,
}

/// `client_auth` (defined beside the verifier that enforces it).
pub use crate::clientauth::ClientAuth;

/// `missing_cert`: how `client_auth = "required"` refuses a client without a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum MissingCert {
    /// In the TLS handshake (alert `certificate_required`; the default).
    #[default]
    #[serde(rename = "tls")]
    Tls,
    /// With a 403 page and an event (the handshake completes).
    #[serde(rename = "403")]
    Forbidden,
}

/// A certificate and its key (PEM files): `{ cert = "…", key = "…" }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `balance`: how a pool picks an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// In turn (the default).
    #[default]
    RoundRobin,
    /// The upstream with the fewest requests in flight.
    LeastConnections,
}

/// `[[route]]`: requests of a reverse listener matching `host` and `path_prefix` go to one of
/// `upstreams`, for the facilities allowed.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name in events and metrics (default `route-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// The reverse listener's name.
    pub listener: String,
    /// Host (exact or `*.suffix`); absent matches any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Path prefix (default `/`); the longest matching prefix wins.
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// Upstream base URLs: `http://host:port` or `https://host:port` (verified against
    /// `[tls]` roots).
    pub upstreams: Vec<String>,
    /// Facility IDs allowed (`*` and `?` wildcards); absent allows every client the listener
    /// lets in, an empty list none.
    #[serde(default)]
    pub facilities: Option<Vec<String>>,
    /// Roles allowed (`*` and `?` wildcards), read by the listener's `role_id`: a request
    /// passes when its facility is allowed and one of its roles is; absent allows any role, an
    /// empty list none.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Certificate attribute conditions, all of which must hold: `{ "subject:O" = "Clinic*" }`
    /// (keys are facility-ID rules, values wildcard patterns).
    #[serde(default)]
    pub require: std::collections::BTreeMap<String, String>,
    /// `round-robin` (default) or `least-connections`.
    #[serde(default)]
    pub balance: Balance,
    /// Path probed with GET on every upstream (2xx/3xx = healthy); none = passive checks only.
    #[serde(default)]
    pub health_check: Option<String>,
    /// Seconds between health probes (default 5).
    #[serde(default = "default_health_interval")]
    pub health_interval_secs: u64,
    /// Further upstreams tried when one cannot be reached, for idempotent requests without a
    /// body (default 1).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds an upstream that failed to connect is skipped (default 10).
    #[serde(default = "default_fail_timeout")]
    pub fail_timeout_secs: u64,
    /// Seconds to wait for the upstream's response head once the request is sent; then 504
    /// (default `[limits] response_timeout_secs`).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// `false`: no WAF for this route; a list of rule files: exclusions loaded after
    /// `[waf] rules` for this route only.
    #[serde(default)]
    pub waf: Option<sekisho_core::RouteWaf>,
    /// Pass the client's Host header upstream (default false: the upstream URL's host).
    #[serde(default)]
    pub preserve_host: bool,
}

fn default_prefix() -> String {
    "/".into()
}
fn default_health_interval() -> u64 {
    5
}
fn default_retries() -> u32 {
    1
}
fn default_fail_timeout() -> u64 {
    10
}

/// `[[listener]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Name used in metrics and events (default `<kind>-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `forward`.
    pub kind: ListenerKind,
    /// Address or addresses to bind (IPv4 and IPv6).
    pub addr: Addrs,
    /// Clients allowed to connect (CIDR). Default: loopback only for `forward` (no open proxy),
    /// anyone for `reverse` (client certificates decide).
    #[serde(default)]
    pub allow_clients: Option<Vec<IpNet>>,
    /// Stages of this listener's pipeline, in order. Default: every configured stage.
    #[serde(default)]
    pub stages: Option<Vec<String>>,
    /// Reverse: the default server certificate chain (PEM), for clients without SNI or whose
    /// SNI no certificate names.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Reverse: the default certificate's key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Reverse: more certificates, each served for the DNS names in its subjectAltName.
    #[serde(default)]
    pub certificates: Vec<CertPair>,
    /// Reverse: `required`, `optional` or `none` (default).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Reverse: CA bundles (PEM) client certificates must chain to.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub client_ca: Vec<PathBuf>,
    /// Reverse: certificate revocation lists (PEM or DER) checked for client certificates.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub crl: Vec<PathBuf>,
    /// Reverse: fetch CRLs from the client certificates' distribution points (and `urls`),
    /// verify them once, refresh them every `interval_secs`, keep them in `cache_dir`.
    #[serde(default)]
    pub crl_refresh: Option<crate::crlfetch::CrlRefresh>,
    /// Reverse: where the facility ID is read from: `subject:OU`, `subject:serialNumber`,
    /// `subject:<dotted OID>`, `san:uri[:<prefix>]`, `san:dns`, `san:email`, `oid:<dotted OID>`
    /// (string-valued extensions), `sda:<dotted OID>`.
    #[serde(default)]
    pub facility_id: Option<String>,
    /// Reverse: where the client's roles are read from: `hpki:role` (every hcRole under HPKI's
    /// coding schemes), `hcrole:<scheme OID>`, `sda:<attribute OID>`, or any `facility_id`
    /// rule (every value it finds).
    #[serde(default)]
    pub role_id: Option<String>,
    /// Reverse: the request header carrying the roles upstream, comma-separated (default
    /// `X-Sekisho-Roles`); a client's own copy is always removed.
    #[serde(default)]
    pub role_header: Option<String>,
    /// Reverse: certificate policy OIDs of which a client certificate must carry at least one
    /// (e.g. an authentication-certificate policy); empty: any.
    #[serde(default)]
    pub client_policies: Vec<String>,
    /// Reverse: the request header carrying the facility ID upstream (default
    /// `X-Sekisho-Facility`); a client's own copy is always removed.
    #[serde(default)]
    pub facility_header: Option<String>,
    /// Reverse, `client_auth = "required"`: refuse a client without a certificate at `tls`
    /// (default) or with a `403` page.
    #[serde(default)]
    pub missing_cert: MissingCert,
    /// Reverse: send the path upstream as the client wrote it (for upstreams that need the
    /// exact bytes) instead of its canonical form. Routes and facility policy still decide on
    /// the canonical form, and ambiguous paths are still refused. Default `false`.
    #[serde(default)]
    pub forward_raw_path: bool,
    /// This listener's own timeouts, over `[limits]`: `read_timeout_secs` (request head),
    /// `body_timeout_secs`, `idle_timeout_secs`, `response_timeout_secs`.
    #[serde(default)]
    pub read_timeout_secs: Option<u64>,
    /// See `read_timeout_secs`.
    #[serde(default)]
    pub body_timeout_secs: Option<u64>,
    /// See `read_timeout_secs`.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// See `read_timeout_secs`.
    #[serde(default)]
    pub response_timeout_secs: Option<u64>,
}

impl ListenerConfig {
    /// The listener's timeouts: `[limits]` with this listener's own keys over them.
    pub fn limits(&self, global: &LimitsConfig) -> LimitsConfig {
        let mut l = global.clone();
        let pick = |own: Option<u64>, dflt: u64| own.unwrap_or(dflt);
        l.read_timeout_secs = pick(self.read_timeout_secs, l.read_timeout_secs);
        l.body_timeout_secs = pick(self.body_timeout_secs, l.body_timeout_secs);
        l.idle_timeout_secs = pick(self.idle_timeout_secs, l.idle_timeout_secs);
        l.response_timeout_secs = pick(self.response_timeout_secs, l.response_timeout_secs);
        l
    }

    /// The client networks allowed to connect.
    pub fn allowed_clients(&self) -> Vec<IpNet> {
        match (&self.allow_clients, self.kind) {
            (Some(v), _) => v.clone(),
            (None, ListenerKind::Forward) => default_allow_clients(),
            (None, ListenerKind::Reverse) => vec![
                "0.0.0.0/0".parse().expect("literal"),
                "::/0".parse().expect("literal"),
            ],
        }
    }

    /// The facility header's name (lower case).
    pub fn facility_header_name(&self) -> String {
        self.facility_header
            .as_deref()
            .unwrap_or("x-sekisho-facility")
            .to_ascii_lowercase()
    }

    /// The role header's name (lower case).
    pub fn role_header_name(&self) -> String {
        self.role_header
            .as_deref()
            .unwrap_or("x-sekisho-roles")
            .to_ascii_lowercase()
    }
}

fn default_allow_clients() -> Vec<IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("literal"),
        "::1/128".parse().expect("literal"),
    ]
}

/// `[tls]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Gateway CA certificate (PEM).
    #[serde(default = "default_ca_cert")]
    pub ca_cert: PathBuf,
    /// Gateway CA private key (PEM, mode 0600).
    #[serde(default = "default_ca_key")]
    pub ca_key: PathBuf,
    /// Extra PEM bundles trusted for upstream certificates.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub upstream_roots: Vec<PathBuf>,
    /// Trust the operating system's roots for upstreams (default true).
    #[serde(default = "yes")]
    pub system_roots: bool,
    /// Trust the Mozilla roots bundled in the binary (default true).
    #[serde(default = "yes")]
    pub webpki_roots: bool,
    /// Hosts tunnelled without decryption: exact names and `*.suffix` patterns.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub splice: Vec<String>,
    /// Upstream hosts (exact names and `*.suffix` patterns) whose certificate may fail to verify
    /// (expired, another name, unknown CA, self-signed): internal systems that need it; each
    /// pass is logged with the reason.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub allow_invalid_upstream: Vec<String>,
    /// Hosts whose tunnels are spliced for a day after a client refused the gateway's minted
    /// certificate (certificate pinning); refusals for other hosts are only reported.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub pinning_splice: Vec<String>,
    /// An upstream that asks for a client certificate: `splice` its next tunnels (the client
    /// presents its own certificate; the flow is not inspected) or `block` (a page says so).
    #[serde(default)]
    pub on_client_certificate_request: crate::autosplice::OnCertRequest,
    /// An upstream that speaks only a TLS version or cipher the gateway refuses: `block` (the
    /// default: a page naming it and the way to allow it) or `splice` its next tunnels.
    #[serde(default)]
    pub on_legacy_upstream: crate::autosplice::OnLegacy,
    /// Hosts whose legacy-TLS servers are spliced even with `on_legacy_upstream = "block"`.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub legacy_splice: Vec<String>,
    /// URL categories (or lists) of the URL filter whose legacy-TLS servers are spliced even
    /// with `on_legacy_upstream = "block"`.
    #[serde(default, deserialize_with = "sekisho_core::de::one_or_many")]
    pub legacy_splice_categories: Vec<String>,
    /// Dial the server and read its first flight (a client certificate request, the version,
    /// cipher and certificate) before answering the client, so such servers are spliced or
    /// blocked on the first connection; the connection then carries the next request to that
    /// server, normally the tunnel's first (default true). `false`: the first request finds out and gets a page.
    #[serde(default = "yes")]
    pub preflight: bool,
    /// Seconds a server whose first flight was unremarkable is remembered, its tunnels going
    /// straight to the connection pool (default 3600; 0: a pre-flight dial for every tunnel).
    #[serde(default = "default_preflight_remember")]
    pub preflight_remember_secs: u64,
    /// Validity of minted leaf certificates, in days (default 7).
    #[serde(default = "default_leaf_days")]
    pub leaf_validity_days: u32,
    /// Hours after which the shared leaf key is replaced (default 24).
    #[serde(default = "default_leaf_key_hours")]
    pub leaf_key_rotation_hours: u32,
    /// Minted certificates kept in memory (default 10,000).
    #[serde(default = "default_leaf_cache")]
    pub leaf_cache_size: usize,
    /// When requests go upstream over h2: `auto` (gRPC and `TE: trailers` only, the default),
    /// `always`, `never`.
    #[serde(default)]
    pub upstream_http2: crate::upstream::UpstreamH2,
}

fn yes() -> bool {
    true
}
fn default_ca_cert() -> PathBuf {
    PathBuf::from("certs/ca.crt")
}
fn default_ca_key() -> PathBuf {
    PathBuf::from("certs/ca.key")
}
fn default_preflight_remember() -> u64 {
    3600
}
fn default_leaf_days() -> u32 {
    7
}
fn default_leaf_key_hours() -> u32 {
    24
}
fn default_leaf_cache() -> usize {
    10_000
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            ca_cert: default_ca_cert(),
            ca_key: default_ca_key(),
            upstream_roots: Vec::new(),
            system_roots: true,
            webpki_roots: true,
            splice: Vec::new(),
            allow_invalid_upstream: Vec::new(),
            pinning_splice: Vec::new(),
            on_client_certificate_request: Default::default(),
            on_legacy_upstream: Default::default(),
            legacy_splice: Vec::new(),
            legacy_splice_categories: Vec::new(),
            preflight: true,
            preflight_remember_secs: default_preflight_remember(),
            leaf_validity_days: default_leaf_days(),
            leaf_key_rotation_hours: default_leaf_key_hours(),
            leaf_cache_size: default_leaf_cache(),
            upstream_http2: Default::default(),
        }
    }
}

/// `[events]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Threat events, JSON lines.
    #[serde(default = "default_events_file")]
    pub file: PathBuf,
    /// Communication log, one JSON line per flow.
    #[serde(default = "default_comm_log")]
    pub comm_log: PathBuf,
    /// Lines buffered in memory ahead of each writer (default 65,536).
    #[serde(default = "default_event_queue")]
    pub queue: usize,
}

fn default_events_file() -> PathBuf {
    PathBuf::from("logs/events.jsonl")
}
fn default_comm_log() -> PathBuf {
    PathBuf::from("logs/flows.jsonl")
}
fn default_event_queue() -> usize {
    65_536
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            file: default_events_file(),
            comm_log: default_comm_log(),
            queue: default_event_queue(),
        }
    }
}

/// `[[facility_group]]`: a named list of facility IDs and patterns, from `members` and/or a
/// `file` (one per line, `#` comments), read again on reload.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacilityGroupConfig {
    /// The name routes use (`facilities = ["@name"]`).
    pub name: String,
    /// IDs and patterns written here.
    #[serde(default)]
    pub members: Option<Vec<String>>,
    /// A file of IDs and patterns.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus text endpoint (`/metrics`), which also answers `/healthz`
    /// (the process serves) and `/readyz` (it should get traffic); none disables it.
    #[serde(default)]
    pub addr: Option<SocketAddr>,
    /// A host name `/readyz` resolves (2 s at most) to show the resolver the gateway dials
    /// upstreams with works; none skips that check.
    #[serde(default)]
    pub readyz_resolve: Option<String>,
}

/// `[limits]`: every buffer, queue and timeout has a bound here.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Concurrent client connections per listener (default 10,000).
    #[serde(default = "d_max_conn")]
    pub max_connections: usize,
    /// Concurrent connections from one client address, all listeners together (default 1,000):
    /// one host cannot take every slot (slowloris from one address). A NAT in front of a whole
    /// hospital may need more.
    #[serde(default = "d_per_client")]
    pub max_connections_per_client: usize,
    /// Request head size (default 64 KiB).
    #[serde(default = "d_header_bytes")]
    pub max_header_bytes: usize,
    /// TLS handshake and ClientHello peek (default 10 s).
    #[serde(default = "d_handshake")]
    pub handshake_timeout_secs: u64,
    /// Reading a request head (default 30 s; slowloris clients are cut by it).
    #[serde(default = "d_read")]
    pub read_timeout_secs: u64,
    /// The gap between two chunks of a request or response body (default 300 s): an event
    /// stream with minute-long heartbeats or a response that pauses keeps flowing. While the
    /// gateway waits on the upstream the client connection does not count as idle.
    #[serde(default = "d_body")]
    pub body_timeout_secs: u64,
    /// Idle keep-alive connections and tunnels; writes a client does not take (default 120 s).
    #[serde(default = "d_idle")]
    pub idle_timeout_secs: u64,
    /// Connecting to an upstream (default 10 s).
    #[serde(default = "d_connect")]
    pub connect_timeout_secs: u64,
    /// Waiting for an upstream's response head once the request is sent (default 900 s, Squid's
    /// `read_timeout`; a reverse route may set its own).
    #[serde(default = "d_response")]
    pub response_timeout_secs: u64,
    /// A held body's decision (`resolve`) by a stage whose table names no `resolve_timeout_secs`
    /// (default 120 s; the AV stage's default is at least its `scan_timeout_secs`).
    #[serde(default = "d_resolve")]
    pub resolve_timeout_secs: u64,
    /// Bytes one flow may hold (default 32 MiB).
    #[serde(default = "d_hold_flow")]
    pub hold_bytes_per_flow: usize,
    /// Bytes all flows together may hold (default 512 MiB).
    #[serde(default = "d_hold_total")]
    pub hold_bytes_total: usize,
    /// On SIGTERM: how long connections in flight may take to finish after the listeners
    /// close (default 30 s); idle keep-alive connections close at once, h2 ones get GOAWAY.
    #[serde(default = "d_drain")]
    pub drain_timeout_secs: u64,
    /// Payload bytes of each WebSocket frame the stages inspect (default 65,535, Suricata's
    /// `websocket.max-payload-size`); the rest of a longer frame is relayed uninspected and
    /// the frame notes it (`websocket.skip_end_of_payload`).
    #[serde(default = "d_ws_inspect")]
    pub websocket_inspect_bytes: usize,
}

fn d_max_conn() -> usize {
    10_000
}
fn d_per_client() -> usize {
    1_000
}
fn d_header_bytes() -> usize {
    64 * 1024
}
fn d_handshake() -> u64 {
    10
}
fn d_read() -> u64 {
    30
}
fn d_body() -> u64 {
    300
}
fn d_idle() -> u64 {
    120
}
fn d_connect() -> u64 {
    10
}
fn d_response() -> u64 {
    900
}
fn d_resolve() -> u64 {
    120
}
fn d_hold_flow() -> usize {
    32 << 20
}
fn d_hold_total() -> usize {
    512 << 20
}
fn d_drain() -> u64 {
    30
}
fn d_ws_inspect() -> usize {
    crate::wsframe::DEFAULT_MAX_PAYLOAD
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: d_max_conn(),
            max_connections_per_client: d_per_client(),
            max_header_bytes: d_header_bytes(),
            handshake_timeout_secs: d_handshake(),
            read_timeout_secs: d_read(),
            body_timeout_secs: d_body(),
            idle_timeout_secs: d_idle(),
            connect_timeout_secs: d_connect(),
            response_timeout_secs: d_response(),
            resolve_timeout_secs: d_resolve(),
            hold_bytes_per_flow: d_hold_flow(),
            hold_bytes_total: d_hold_total(),
            drain_timeout_secs: d_drain(),
            websocket_inspect_bytes: d_ws_inspect(),
        }
    }
}

/// The proxy's top-level keys (the engines add their tables).
pub const KEYS: &[&str] = &[
    "node_name",
    "listener",
    "tls",
    "events",
    "mss",
    "store",
    "metrics",
    "limits",
    "route",
    "facility_group",
];

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| ProxyError::Config {
            file: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text that has no engine tables; `path` names the file in
    /// errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        Config::parse_with(text, path, &[])
    }

    /// Parses and validates config text; `engine_tables` are the top-level tables the engines
    /// read (left to them); any other key the proxy does not know is an error.
    pub fn parse_with(text: &str, path: &Path, engine_tables: &[&str]) -> Result<Config> {
        let err = |message: String| ProxyError::Config {
            file: path.to_path_buf(),
            message,
        };
        let explain = |e: toml::de::Error| {
            let msg = e.to_string().trim_end().to_string();
            err(sekisho_core::de::explain_unknown_key(text, &msg, &[]).unwrap_or(msg))
        };
        let mut cfg: Config = toml::from_str(text).map_err(explain)?;
        let top: toml::Table =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        for key in top.keys() {
            if !KEYS.contains(&key.as_str()) && !engine_tables.contains(&key.as_str()) {
                let mut known: Vec<&str> = KEYS.iter().chain(engine_tables).copied().collect();
                known.sort_unstable();
                return Err(err(format!(
                    "unknown key `{key}` at the top level{}; known: {}",
                    line_of(text, key)
                        .map(|l| format!(" (line {l})"))
                        .unwrap_or_default(),
                    known.join(", ")
                )));
            }
        }
        cfg.path = path.to_path_buf();
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Makes every relative path the proxy reads or writes relative to `base` (the config
    /// file's folder), whatever the current directory is.
    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let tls = &mut self.tls;
        fix(&mut tls.ca_cert);
        fix(&mut tls.ca_key);
        tls.upstream_roots.iter_mut().for_each(fix);
        fix(&mut self.events.file);
        fix(&mut self.events.comm_log);
        for l in &mut self.listeners {
            l.cert.iter_mut().chain(l.key.iter_mut()).for_each(fix);
            for c in &mut l.certificates {
                fix(&mut c.cert);
                fix(&mut c.key);
            }
            l.client_ca.iter_mut().chain(l.crl.iter_mut()).for_each(fix);
        }
        if let Some(d) = self.policy.page_dir.as_mut() {
            fix(d);
        }
        for g in &mut self.facility_groups {
            g.file.iter_mut().for_each(fix);
        }
        if let Some(m) = self.mss.as_mut() {
            m.resolve_paths(base);
        }
    }

    /// Stage names of listener `i` as written (`None`: every configured engine).
    pub fn stages_of(&self, i: usize) -> Option<&[String]> {
        self.listeners.get(i).and_then(|l| l.stages.as_deref())
    }

    pub(crate) fn err(
        &self,
        key: impl std::fmt::Display,
        msg: impl std::fmt::Display,
    ) -> ProxyError {
        ProxyError::Config {
            file: self.path.clone(),
            message: format!("{key}: {msg}"),
        }
    }

    /// Checks everything that can be checked without binding sockets or reading certificates.
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = format!("listener[{i}]");
            if l.addr.to_vec().is_empty() {
                return Err(self.err(format!("{key}.addr"), "no address"));
            }
            if !names.insert(self.listener_name(i)) {
                return Err(self.err(format!("{key}.name"), "duplicate listener name"));
            }
            for (k, v) in [
                ("read_timeout_secs", l.read_timeout_secs),
                ("body_timeout_secs", l.body_timeout_secs),
                ("idle_timeout_secs", l.idle_timeout_secs),
                ("response_timeout_secs", l.response_timeout_secs),
            ] {
                if v == Some(0) {
                    return Err(self.err(format!("{key}.{k}"), "must be at least 1"));
                }
            }
        }
        self.validate_reverse()?;
        if let Some(m) = &self.mss {
            m.validate().map_err(|e| ProxyError::Config {
                file: self.path.clone(),
                message: e,
            })?;
        }
        if let Some(st) = &self.store {
            st.validate().map_err(|e| ProxyError::Config {
                file: self.path.clone(),
                message: e,
            })?;
        }
        HostMatcher::new(&self.tls.splice).map_err(|e| self.err("tls.splice", e))?;
        HostMatcher::new(&self.tls.allow_invalid_upstream)
            .map_err(|e| self.err("tls.allow_invalid_upstream", e))?;
        HostMatcher::new(&self.tls.pinning_splice)
            .map_err(|e| self.err("tls.pinning_splice", e))?;
        HostMatcher::new(&self.tls.legacy_splice).map_err(|e| self.err("tls.legacy_splice", e))?;
        self.policy
            .pages()
            .map_err(|e| self.err("policy.page_dir", e))?;
        if self.tls.leaf_validity_days == 0 || self.tls.leaf_validity_days > 397 {
            return Err(self.err("tls.leaf_validity_days", "must be 1..=397"));
        }
        if self.tls.leaf_key_rotation_hours == 0 {
            return Err(self.err("tls.leaf_key_rotation_hours", "must be at least 1"));
        }
        if self.tls.leaf_cache_size == 0 {
            return Err(self.err("tls.leaf_cache_size", "must be at least 1"));
        }
        self.policy
            .connect_ranges()
            .map_err(|e| self.err("policy.connect_ports", e))?;
        if self.events.queue == 0 {
            return Err(self.err("events.queue", "must be at least 1"));
        }
        let l = &self.limits;
        for (k, v) in [
            ("max_connections", l.max_connections as u64),
            (
                "max_connections_per_client",
                l.max_connections_per_client as u64,
            ),
            ("handshake_timeout_secs", l.handshake_timeout_secs),
            ("read_timeout_secs", l.read_timeout_secs),
            ("body_timeout_secs", l.body_timeout_secs),
            ("idle_timeout_secs", l.idle_timeout_secs),
            ("connect_timeout_secs", l.connect_timeout_secs),
            ("response_timeout_secs", l.response_timeout_secs),
            ("resolve_timeout_secs", l.resolve_timeout_secs),
        ] {
            if v == 0 {
                return Err(self.err(format!("limits.{k}"), "must be at least 1"));
            }
        }
        if l.max_header_bytes < 8192 {
            return Err(self.err("limits.max_header_bytes", "must be at least 8192"));
        }
        if l.hold_bytes_per_flow > l.hold_bytes_total {
            return Err(self.err(
                "limits.hold_bytes_per_flow",
                "must not exceed limits.hold_bytes_total",
            ));
        }
        if !(1..=16 << 20).contains(&l.websocket_inspect_bytes) {
            return Err(self.err(
                "limits.websocket_inspect_bytes",
                "must be between 1 and 16 MiB",
            ));
        }
        if l.hold_bytes_total > u32::MAX as usize {
            return Err(self.err("limits.hold_bytes_total", "must be below 4 GiB"));
        }
        Ok(())
    }

    /// Errors unless there is a `[[listener]]` (needed by `run` and `check-config`, not by `scan`).
    pub fn require_listeners(&self) -> Result<()> {
        if self.listeners.is_empty() {
            return Err(self.err("listener", "at least one [[listener]] is required"));
        }
        Ok(())
    }

    /// The name of listener `i`.
    pub fn listener_name(&self, i: usize) -> String {
        let l = &self.listeners[i];
        l.name.clone().unwrap_or_else(|| match l.kind {
            ListenerKind::Forward if i == 0 => "forward".to_string(),
            ListenerKind::Forward => format!("forward-{i}"),
            ListenerKind::Reverse => format!("reverse-{i}"),
        })
    }

    /// The name of route `i`.
    pub fn route_name(&self, i: usize) -> String {
        self.routes[i]
            .name
            .clone()
            .unwrap_or_else(|| format!("route-{i}"))
    }
}

/// The line on which top-level `key` is written (`key =`, `[key]` or `[[key]]`).
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            let t = t.trim_start_matches('[').trim_start();
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', ']', '.']))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn minimal_and_defaults() {
        let c = parse("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:3128\"\n").unwrap();
        assert_eq!(c.listeners.len(), 1);
        assert_eq!(c.listener_name(0), "forward");
        assert_eq!(c.listeners[0].allowed_clients().len(), 2);
        assert_eq!(c.limits.hold_bytes_per_flow, 32 << 20);
        assert!(c.tls.system_roots);
    }

    #[test]
    fn many_addrs_and_engine_tables() {
        let text = "[[listener]]\nkind = \"forward\"\naddr = [\"127.0.0.1:1\", \"[::1]:1\"]\n\
             [policy]\ndeny_hosts = [\"a.test\", \"*.b.test\"]\nmode = \"detect\"\n";
        let c = Config::parse_with(text, Path::new("t.toml"), &["policy"]).unwrap();
        assert_eq!(c.listeners[0].addr.to_vec().len(), 2);
        // A table no engine claims is an unknown key, with its line.
        let e = parse(text).unwrap_err().to_string();
        assert!(
            e.contains("unknown key `policy`") && e.contains("(line 4)"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let e =
            parse("[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:1\"\n[tls]\nbogus = 1\n")
                .unwrap_err()
                .to_string();
        assert!(e.starts_with("t.toml: "), "{e}");
        assert!(e.contains("bogus"), "{e}");
        let e = parse("[[listener]]\nkind = \"forward\"\naddr = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && e.contains("addr"), "{e}");
        let e = parse("")
            .unwrap()
            .require_listeners()
            .unwrap_err()
            .to_string();
        assert!(e.contains("listener"), "{e}");
    }
}
