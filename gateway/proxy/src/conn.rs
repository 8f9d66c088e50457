//! One accepted client connection: its listener, addresses, its slot under `max_connections`,
//! and the end-of-connection notice stages get ([`sekisho_core::Stage::connection_closed`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};

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
    /// The client address's share under `max_connections_per_client`.
    pub _client: ClientSlot,
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

/// Active connections per client address, bounded by `max_connections_per_client` each (the map
/// holds only addresses with a live connection, so it is bounded by the listeners' slots).
pub(crate) struct ClientSlots {
    counts: Mutex<HashMap<IpAddr, usize>>,
    limit: usize,
}

impl ClientSlots {
    /// At most `limit` connections per address.
    pub(crate) fn new(limit: usize) -> Arc<ClientSlots> {
        Arc::new(ClientSlots {
            counts: Mutex::new(HashMap::new()),
            limit,
        })
    }

    /// A slot for `ip`, unless it holds `limit` already.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: Arc::clone(self),
            ip,
        })
    }
}

/// One connection's place in [`ClientSlots`]; given back on drop.
pub(crate) struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut c = self.slots.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_bounded_and_given_back() {
        let s = ClientSlots::new(2);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let (x, y) = (s.take(a), s.take(a));
        assert!(x.is_some() && y.is_some());
        assert!(s.take(a).is_none());
        assert!(s.take(b).is_some());
        drop(x);
        assert!(s.take(a).is_some());
        drop(y);
        assert!(s.counts.lock().map(|c| c.len()).unwrap_or(9) <= 1);
    }
}
