//! Attacks the gateway sheds at the connection level (a head that never completes, an oversized
//! head, a request hyper refuses to parse, such as the request-smuggling candidates CL+TE,
//! duplicate or invalid Content-Length and obfuscated Transfer-Encoding, h2 floods the h2
//! library cuts off with GOAWAY or the frame meter cuts, HPACK bombs, stalled TLS handshakes,
//! connections over the per-client limit): each is counted in `sekisho_shed_total{listener,attack}` and
//! raises one threat event per client and attack per window, naming both, however many
//! connections the attack uses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sekisho_core::{DestinationInfo, Evidence, Finding, FlowMeta, Severity, ThreatEvent};

use crate::conn::{canonical_ip, ConnInfo};
use crate::shared::Shared;

/// How long one event stands for an attack by one client.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered (oldest windows forgotten first beyond this).
const MAX_TRACKED: usize = 65_536;

/// A connection-level attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Attack {
    /// The request head did not complete within `read_timeout_secs` (slowloris).
    SlowHead,
    /// A head over `max_header_bytes` (header flood, oversized head).
    OversizedHead,
    /// A request hyper would not parse (invalid or conflicting framing, bad header syntax), or
    /// one carrying both Content-Length and Transfer-Encoding: smuggling candidates.
    Malformed,
    /// h2: the peer was told to calm down (rapid reset, CONTINUATION floods) by the h2 library,
    /// or cut off by the frame meter (PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty frames).
    H2Flood,
    /// h2: a protocol, compression (HPACK bomb) or frame-size error.
    H2Protocol,
    /// More connections from one address than `max_connections_per_client`.
    ConnectionFlood,
    /// h2: a header block that decodes to far more than it weighs, past `max_header_bytes`.
    HpackBomb,
    /// A client TLS handshake not completed within `handshake_timeout_secs`.
    SlowTls,
}

impl Attack {
    /// `rule.id` of the event and the metric label.
    pub(crate) fn id(self) -> &'static str {
        match self {
            Attack::SlowHead => "slow-request-head",
            Attack::OversizedHead => "oversized-request-head",
            Attack::Malformed => "malformed-request",
            Attack::H2Flood => "h2-flood",
            Attack::H2Protocol => "h2-protocol-error",
            Attack::ConnectionFlood => "connection-flood",
            Attack::HpackBomb => "hpack-bomb",
            Attack::SlowTls => "slow-tls-handshake",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Attack::SlowHead => "request head not completed in time (slowloris)",
            Attack::OversizedHead => "request head over the size limit (header flood)",
            Attack::Malformed => "request refused as malformed (invalid framing or headers; request smuggling candidate)",
            Attack::H2Flood => "HTTP/2 flood cut off (rapid reset, CONTINUATION, SETTINGS or PING flood)",
            Attack::H2Protocol => "HTTP/2 protocol violation (framing or header compression)",
            Attack::ConnectionFlood => "connections over the per-client limit refused at accept",
            Attack::HpackBomb => "HTTP/2 header block expanding past the size limit (HPACK bomb) refused",
            Attack::SlowTls => "TLS handshake not completed in time (stalled handshake)",
        }
    }
}

/// What a connection's end says, if it was an attack.
pub(crate) fn classify(err: &hyper::Error) -> Option<Attack> {
    if err.is_timeout() {
        return Some(Attack::SlowHead);
    }
    if err.is_parse_too_large() {
        return Some(Attack::OversizedHead);
    }
    if err.is_parse() || err.is_parse_status() {
        return Some(Attack::Malformed);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(h2e) = e.downcast_ref::<h2::Error>() {
            // Only what we told the client (a GOAWAY the client sent is its complaint).
            if h2e.is_remote() {
                return None;
            }
            return match h2e.reason() {
                Some(h2::Reason::ENHANCE_YOUR_CALM) => Some(Attack::H2Flood),
                Some(
                    h2::Reason::PROTOCOL_ERROR
                    | h2::Reason::COMPRESSION_ERROR
                    | h2::Reason::FRAME_SIZE_ERROR,
                ) => Some(Attack::H2Protocol),
                _ => None,
            };
        }
        cur = e.source();
    }
    None
}

/// Per key (a client and an attack, a fault and its subject, a host): when the current window
/// started and how many occurrences it suppressed. Bounded: past [`MAX_TRACKED`] keys, expired
/// windows go first, then all.
pub(crate) struct Windows<K> {
    seen: Mutex<HashMap<K, (Instant, u64)>>,
    span: Duration,
}

impl<K> Default for Windows<K> {
    fn default() -> Self {
        Windows::spanning(WINDOW)
    }
}

impl<K> Windows<K> {
    /// Windows `span` long (the default is [`WINDOW`]).
    pub(crate) fn spanning(span: Duration) -> Self {
        Windows {
            seen: Mutex::new(HashMap::new()),
            span,
        }
    }
}

impl<K: std::hash::Hash + Eq> Windows<K> {
    /// Whether this occurrence opens a new window (and so gets an event); the count of those
    /// suppressed in the window before it.
    pub(crate) fn open_window(&self, key: K, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MAX_TRACKED {
            seen.retain(|_, (start, _)| now.duration_since(*start) < self.span);
            if seen.len() >= MAX_TRACKED {
                seen.clear();
            }
        }
        match seen.get_mut(&key) {
            Some((start, n)) if now.duration_since(*start) < self.span => {
                *n += 1;
                None
            }
            Some((start, n)) => {
                let before = *n;
                (*start, *n) = (now, 0);
                Some(before)
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// The shed attacks' windows, per client address and attack.
pub(crate) type Shedder = Windows<(IpAddr, Attack)>;

/// Where a shed connection came from and arrived.
pub(crate) struct Peer {
    listener: Arc<str>,
    client: SocketAddr,
    local: SocketAddr,
    conn_id: u64,
}

impl Peer {
    /// A connection refused before it had an id.
    pub(crate) fn new(listener: &Arc<str>, client: SocketAddr, local: SocketAddr) -> Peer {
        Peer {
            listener: Arc::clone(listener),
            client,
            local,
            conn_id: 0,
        }
    }
}

/// Records a shed connection: the counter always, the event once per client, attack and window.
pub(crate) async fn report(shared: &Shared, conn: &ConnInfo, attack: Attack, detail: &str) {
    let peer = Peer {
        conn_id: conn.id,
        ..Peer::new(&conn.listener, conn.client, conn.local)
    };
    record(shared, &peer, attack, detail).await;
}

/// [`report`] for a connection refused at accept (spawned: the accept loop does not wait).
pub(crate) async fn report_at(shared: Arc<Shared>, peer: Peer, attack: Attack, detail: String) {
    record(&shared, &peer, attack, &detail).await;
}

async fn record(shared: &Shared, peer: &Peer, attack: Attack, detail: &str) {
    shared
        .metrics
        .shed
        .with_label_values(&[&peer.listener, attack.id()])
        .inc();
    let ip = canonical_ip(peer.client.ip());
    let Some(suppressed) = shared.shedder.open_window((ip, attack), Instant::now()) else {
        return;
    };
    let mut message = format!("{} from {ip}", attack.what());
    if suppressed > 0 {
        message.push_str(&format!(
            " ({suppressed} more in the previous {}s window)",
            WINDOW.as_secs()
        ));
    }
    let mut f = Finding::new(
        "proxy",
        attack.id(),
        message,
        Severity::Medium,
        "protocol-anomaly",
        Evidence::new("connection", detail),
    );
    f.stage = "http";
    f.action = sekisho_core::Action::Blocked;
    let mut meta = FlowMeta::new(
        shared.next_flow_id(),
        peer.listener.to_string(),
        peer.client,
        peer.local,
    );
    meta.conn_id = peer.conn_id;
    let dest = DestinationInfo {
        ip: Some(peer.local.ip().to_string()),
        port: Some(peer.local.port()),
        domain: None,
    };
    let event = ThreatEvent::from_finding(&f, &meta, &shared.observer, dest, None);
    tracing::info!(client = %peer.client, attack = attack.id(), event_id = %f.event_id, "attack shed");
    shared.events.threat(&event).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_window_per_client_and_attack() {
        let s = Shedder::default();
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant::now();
        assert_eq!(s.open_window((a, Attack::SlowHead), t0), Some(0));
        for _ in 0..5 {
            assert_eq!(s.open_window((a, Attack::SlowHead), t0), None);
        }
        assert_eq!(s.open_window((a, Attack::Malformed), t0), Some(0));
        assert_eq!(s.open_window((b, Attack::SlowHead), t0), Some(0));
        assert_eq!(s.open_window((a, Attack::SlowHead), t0 + WINDOW), Some(5));
    }
}
