//! The store's Prometheus metrics.

use prometheus::{IntCounterVec, IntGauge, Opts};

/// Counters of calls Redis answered, calls that fell back, bus messages, and whether Redis is
/// up.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    remote: IntCounterVec,
    fallback: IntCounterVec,
    bus: IntCounterVec,
    up: IntGauge,
    bus_up: IntGauge,
}

impl StoreMetrics {
    pub(crate) fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|e| unreachable!("metric {name}: {e}"))
        };
        StoreMetrics {
            remote: counter(
                "sekisho_store_remote_total",
                "Store calls Redis answered, by operation",
                &["op"],
            ),
            fallback: counter(
                "sekisho_store_fallback_total",
                "Store calls answered by this node's table because Redis could not: by state kind and reason (down, timeout, error, busy)",
                &["kind", "reason"],
            ),
            bus: counter(
                "sekisho_store_bus_messages_total",
                "Bus messages sent, received from other nodes, and dropped (Redis away or the queue full)",
                &["direction"],
            ),
            up: IntGauge::new(
                "sekisho_store_up",
                "1 while the connection to Redis works, 0 otherwise",
            )
            .unwrap_or_else(|e| unreachable!("metric sekisho_store_up: {e}")),
            bus_up: IntGauge::new(
                "sekisho_store_bus_up",
                "1 while this node is subscribed to the bus (other nodes' changes reach it), 0 otherwise",
            )
            .unwrap_or_else(|e| unreachable!("metric sekisho_store_bus_up: {e}")),
        }
    }

    pub(crate) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.remote.clone()),
            Box::new(self.fallback.clone()),
            Box::new(self.bus.clone()),
            Box::new(self.up.clone()),
            Box::new(self.bus_up.clone()),
        ]
    }

    pub(crate) fn fallback(&self, kind: &str, reason: &str) {
        self.fallback.with_label_values(&[kind, reason]).inc();
    }

    pub(crate) fn remote(&self, op: &str) {
        self.remote.with_label_values(&[op]).inc();
    }

    pub(crate) fn bus(&self, direction: &str) {
        self.bus.with_label_values(&[direction]).inc();
    }

    pub(crate) fn up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub(crate) fn bus_up(&self, up: bool) {
        self.bus_up.set(i64::from(up));
    }
}
