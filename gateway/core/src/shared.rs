//! State shared by the nodes of a cluster (`[store]`): the interface engines use, and its
//! config. The gateway builds one store at start (the Redis client is `sekisho-store`) and
//! hands it to every engine through [`crate::BuildCx::shared`]; without a `[store]` table there
//! is none and each engine keeps its state in process, as a single node does.
//!
//! Two kinds of sharing:
//! - a bus ([`SharedState::publish`], [`SharedState::subscribe`]): changes each node applies
//!   to its own copy (warning-page tokens and grants, IPS xbits and threshold counts), so
//!   inspection never waits on the network (inspectors do no I/O); a message that cannot be
//!   sent is counted and the node goes on with its own state.
//! - keys with a lifetime ([`SharedState::get`], [`SharedState::set`], [`SharedState::take`]):
//!   they wait for Redis up to `timeout_ms` on the calling thread, so they are for callers
//!   that may wait (never an inspector). When Redis cannot answer (down, slow, queue full) the
//!   call falls back to a bounded in-process table, counted (`sekisho_store_fallback_total`).
//!   The sandbox worker shares its verdicts through the store's async form of these.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

/// A handler of bus messages of one topic: the payload another node published.
pub type BusHandler = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The store engines see. Calls never fail: a store that cannot answer falls back to its
/// in-process table (and counts it).
pub trait SharedState: Send + Sync + std::fmt::Debug {
    /// The value under `key` of `kind` (a label: `warn`, `sandbox`, …), if present and fresh.
    fn get(&self, kind: &'static str, key: &str) -> Option<Vec<u8>>;
    /// Stores `val` under `key` for `ttl`.
    fn set(&self, kind: &'static str, key: &str, val: &[u8], ttl: Duration);
    /// Removes `key` and returns what it held: at most one caller on any node gets it (a
    /// single-use token).
    fn take(&self, kind: &'static str, key: &str) -> Option<Vec<u8>>;
    /// Sends `payload` to every other node subscribed to `topic`; never waits.
    fn publish(&self, topic: &'static str, payload: Vec<u8>);
    /// Calls `handler` with every payload other nodes publish on `topic` (this node's own
    /// messages are not delivered back). One handler per topic: a second replaces the first.
    fn subscribe(&self, topic: &'static str, handler: BusHandler);
}

/// A bus between nodes of one process, delivering each message at once to the other nodes
/// subscribed to its topic; keys are not kept. For tests of engines that share state.
#[derive(Default)]
pub struct LoopbackBus {
    handlers: std::sync::Mutex<Vec<(usize, &'static str, BusHandler)>>,
}

impl std::fmt::Debug for LoopbackBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopbackBus")
    }
}

impl LoopbackBus {
    /// Node `id` on this bus, as the store an engine shares through.
    pub fn node(self: &Arc<Self>, id: usize) -> Arc<dyn SharedState> {
        Arc::new(LoopbackNode(Arc::clone(self), id))
    }
}

/// One node of a [`LoopbackBus`].
#[derive(Debug)]
struct LoopbackNode(Arc<LoopbackBus>, usize);

impl SharedState for LoopbackNode {
    fn get(&self, _: &'static str, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn set(&self, _: &'static str, _: &str, _: &[u8], _: Duration) {}
    fn take(&self, _: &'static str, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn publish(&self, topic: &'static str, payload: Vec<u8>) {
        let handlers: Vec<_> = match self.0.handlers.lock() {
            Ok(h) => h.clone(),
            Err(_) => return,
        };
        for (id, t, h) in handlers {
            if id != self.1 && t == topic {
                h(&payload);
            }
        }
    }
    fn subscribe(&self, topic: &'static str, handler: BusHandler) {
        if let Ok(mut h) = self.0.handlers.lock() {
            h.retain(|(id, t, _)| !(*id == self.1 && *t == topic));
            h.push((self.1, topic, handler));
        }
    }
}

/// `[store]`: where state shared by the nodes of a cluster lives.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `memory` (each node its own; the default without the table) or `redis`.
    #[serde(default)]
    pub backend: StoreBackend,
    /// `redis://[:password@]host:port/db` or `redis+unix:///path` (never logged: it may hold
    /// the password).
    pub url: Option<String>,
    /// Prefix of every key and of the bus channel, so several clusters can share one Redis.
    #[serde(default = "d_prefix")]
    pub prefix: String,
    /// How long a call waits for Redis before it falls back to the in-process table.
    #[serde(default = "d_timeout")]
    pub timeout_ms: u64,
    /// After a failure, Redis is not asked again for this long (calls fall back at once).
    #[serde(default = "d_retry")]
    pub retry_secs: u64,
    /// Entries of the in-process table (used alone with `memory`, as the fallback with `redis`).
    #[serde(default = "d_entries")]
    pub local_entries: usize,
    /// Calls waiting for Redis at most; past it they fall back at once (counted as `busy`).
    #[serde(default = "d_queue")]
    pub queue: usize,
}

/// The backend of `[store]`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// In process: nothing is shared.
    #[default]
    Memory,
    /// A Redis (or Valkey) server shared by the nodes.
    Redis,
}

fn d_prefix() -> String {
    "sekisho:".into()
}
fn d_timeout() -> u64 {
    50
}
fn d_retry() -> u64 {
    1
}
fn d_entries() -> usize {
    100_000
}
fn d_queue() -> usize {
    4096
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Memory,
            url: None,
            prefix: d_prefix(),
            timeout_ms: d_timeout(),
            retry_secs: d_retry(),
            local_entries: d_entries(),
            queue: d_queue(),
        }
    }
}

impl StoreConfig {
    /// Checks values; returns `store.key: problem`.
    pub fn validate(&self) -> Result<(), String> {
        match (self.backend, &self.url) {
            (StoreBackend::Redis, None) => {
                return Err("store.url: backend = \"redis\" needs a url (redis://host:port)".into())
            }
            (StoreBackend::Redis, Some(u)) if u.starts_with("rediss://") => {
                return Err(
                    "store.url: TLS to Redis (rediss://) is not built in: keep Redis on the \
                     management network, or reach it through a local TLS tunnel (stunnel) at \
                     redis://127.0.0.1:PORT"
                        .into(),
                )
            }
            (StoreBackend::Redis, Some(u))
                if !(u.starts_with("redis://")
                    || u.starts_with("redis+unix://")
                    || u.starts_with("unix://")) =>
            {
                // The URL may hold a password: it is not repeated.
                return Err("store.url: not a redis:// or redis+unix:// URL".into());
            }
            (StoreBackend::Memory, Some(_)) => {
                return Err("store.url: only with backend = \"redis\"".into())
            }
            _ => {}
        }
        // Calls made from inspection code wait on the thread they run on: keep them short.
        if self.timeout_ms == 0 || self.timeout_ms > 1_000 {
            return Err("store.timeout_ms: between 1 and 1000".into());
        }
        if self.retry_secs == 0 || self.retry_secs > 3_600 {
            return Err("store.retry_secs: between 1 and 3600".into());
        }
        if self.local_entries == 0 || self.queue == 0 {
            return Err("store.local_entries, store.queue: at least 1".into());
        }
        if self.prefix.len() > 64 {
            return Err("store.prefix: at most 64 bytes".into());
        }
        Ok(())
    }

    /// [`Self::timeout_ms`] as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn redis_needs_a_redis_url() {
        let c: StoreConfig = toml::from_str("backend = \"redis\"").unwrap();
        assert!(c.validate().unwrap_err().contains("needs a url"));
        let c: StoreConfig = toml::from_str("backend = \"redis\"\nurl = \"http://x\"").unwrap();
        assert!(c.validate().unwrap_err().contains("not a redis://"));
        let c: StoreConfig =
            toml::from_str("backend = \"redis\"\nurl = \"rediss://:secret@x:6380\"").unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains("not built in") && !e.contains("secret"), "{e}");
        let c: StoreConfig =
            toml::from_str("backend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"").unwrap();
        c.validate().unwrap();
        assert_eq!(c.timeout(), Duration::from_millis(50));
        assert!(toml::from_str::<StoreConfig>("bakend = \"redis\"").is_err());
    }
}
