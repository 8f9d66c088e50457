//! The cluster's shared store (`[store]`): a Redis client behind
//! [`sekisho_core::SharedState`], with a bounded in-process table that answers whenever Redis
//! cannot (down, slower than `timeout_ms`, too many calls waiting), counted by reason in
//! `sekisho_store_fallback_total{kind,reason}`.
//!
//! Redis is spoken from one thread of its own (a single-threaded tokio runtime holding one
//! multiplexed connection and one pub/sub connection), so callers in synchronous inspection
//! code and callers on any runtime use it alike: a call is queued (bounded) and its answer
//! awaited for at most `timeout_ms`. After a failure Redis is left alone for `retry_secs`
//! (calls fall back at once, reason `down`), then tried again.

mod local;
mod metrics;
mod remote;

use std::sync::Arc;
use std::time::Duration;

use sekisho_core::{BusHandler, SharedState, StoreBackend, StoreConfig};

pub use local::Local;
pub use metrics::StoreMetrics;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The config is invalid.
    #[error("{0}")]
    Config(String),
    /// The Redis URL does not parse.
    #[error("store.url: {0}")]
    Url(String),
    /// The client thread could not start.
    #[error("store: {0}")]
    Thread(std::io::Error),
}

/// The store: in process only, or Redis with the in-process table as fallback.
#[derive(Debug)]
pub struct Store {
    local: Local,
    remote: Option<remote::Remote>,
    metrics: StoreMetrics,
    timeout: Duration,
}

impl Store {
    /// Opens the store `cfg` describes. Redis is connected in the background: a server that is
    /// down at start only means fallbacks until it answers.
    pub fn open(cfg: &StoreConfig) -> Result<Arc<Store>, StoreError> {
        cfg.validate().map_err(StoreError::Config)?;
        let metrics = StoreMetrics::new();
        let remote = match cfg.backend {
            StoreBackend::Memory => None,
            StoreBackend::Redis => Some(remote::Remote::start(cfg, metrics.clone())?),
        };
        Ok(Arc::new(Store {
            local: Local::new(cfg.local_entries),
            remote,
            metrics,
            timeout: cfg.timeout(),
        }))
    }

    /// Prometheus collectors of this store.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.metrics.collectors()
    }

    /// True when a remote backend is configured.
    pub fn is_shared(&self) -> bool {
        self.remote.is_some()
    }

    /// [`SharedState::get`] for async callers: waits on the runtime, not the thread.
    pub async fn get_async(&self, kind: &'static str, key: &str) -> Option<Vec<u8>> {
        let Some(r) = &self.remote else {
            return self.local.get(key);
        };
        match r.ask_async(remote::Op::Get(key.into()), self.timeout).await {
            Ok(remote::Answer::Value(Some(v))) => Some(v),
            Ok(_) => self.local.get(key),
            Err(why) => self.fallback(kind, why, || self.local.get(key)),
        }
    }

    /// Stores `val` in Redis for the other nodes, from an async caller that keeps its own
    /// copy (the sandbox worker's verdict cache): nothing goes into this node's table when Redis
    /// cannot take it (counted).
    pub async fn share_async(&self, kind: &'static str, key: &str, val: &[u8], ttl: Duration) {
        let Some(r) = &self.remote else {
            return;
        };
        let op = remote::Op::Set(key.into(), val.to_vec(), ttl);
        if let Err(why) = r.ask_async(op, self.timeout).await {
            self.metrics.fallback(kind, why.label());
        }
    }

    fn fallback<T>(&self, kind: &'static str, why: remote::Why, then: impl FnOnce() -> T) -> T {
        self.metrics.fallback(kind, why.label());
        then()
    }
}

impl SharedState for Store {
    fn get(&self, kind: &'static str, key: &str) -> Option<Vec<u8>> {
        let Some(r) = &self.remote else {
            return self.local.get(key);
        };
        // A value written while Redis was away lives only in this node's table: asked second.
        match r.ask(remote::Op::Get(key.into()), self.timeout) {
            Ok(remote::Answer::Value(Some(v))) => Some(v),
            Ok(_) => self.local.get(key),
            Err(why) => self.fallback(kind, why, || self.local.get(key)),
        }
    }

    fn set(&self, kind: &'static str, key: &str, val: &[u8], ttl: Duration) {
        let Some(r) = &self.remote else {
            return self.local.set(key, val, ttl);
        };
        // Written to Redis only: a copy here too would let a single-use key taken on another
        // node be taken again on this one. The copy is kept here only when the call never left
        // this node (Redis marked down, queue full); a call that timed out or failed may still
        // land in Redis, so nothing is kept (a continue link then fails: the user sees the
        // warning again, never a second use of one link).
        let op = remote::Op::Set(key.into(), val.to_vec(), ttl);
        match r.ask(op, self.timeout) {
            Ok(_) => {}
            Err(why @ (remote::Why::Down | remote::Why::Busy)) => {
                self.fallback(kind, why, || self.local.set(key, val, ttl))
            }
            Err(why) => self.metrics.fallback(kind, why.label()),
        }
    }

    fn take(&self, kind: &'static str, key: &str) -> Option<Vec<u8>> {
        let here = self.local.take(key);
        let Some(r) = &self.remote else {
            return here;
        };
        match r.ask(remote::Op::Take(key.into()), self.timeout) {
            Ok(remote::Answer::Value(v)) => v.or(here),
            Ok(_) => here,
            Err(why) => self.fallback(kind, why, || here),
        }
    }

    fn publish(&self, topic: &'static str, payload: Vec<u8>) {
        if let Some(r) = &self.remote {
            r.publish(topic, payload);
        }
    }

    fn subscribe(&self, topic: &'static str, handler: BusHandler) {
        if let Some(r) = &self.remote {
            r.subscribe(topic, handler);
        }
    }
}
