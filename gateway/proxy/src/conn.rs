//! One accepted client connection: its listener, addresses, its slot under `max_connections`,
//! and the end-of-connection notice stages get ([`sekisho_core::Stage::connection_closed`]).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use crate::shared::Shared;

/// The client connection a request came on. Shared by every request and tunnel it carries; the
/// connection is over when the last holder drops it.
pub(crate) struct ConnInfo {
    /// Unique per process ([`sekisho_core::FlowMeta::conn_id`]).
    pub id: u64,
    /// The listener's index in config (selects its pipeline).
    pub index: usize,
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub local: SocketAddr,
    pub _slot: Slot,
}

/// A client connection's slot under `max_connections`; released (and the active gauge lowered)
/// when the last holder drops it, at which point the listener's stages hear that the connection
/// closed.
pub(crate) struct Slot {
    pub _permit: tokio::sync::OwnedSemaphorePermit,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The gateway (weak: a connection does not keep a stopped gateway alive).
    pub shared: Weak<Shared>,
    pub index: usize,
    pub id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connections_active.dec();
        if let Some(shared) = self.shared.upgrade() {
            shared.pipeline(self.index).connection_closed(self.id);
        }
    }
}

/// The client's address as policy sees it: an IPv4-mapped IPv6 address as IPv4.
pub(crate) fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
