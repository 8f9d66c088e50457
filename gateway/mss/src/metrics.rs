//! MSS delivery metrics (label `sink`, bounded by the config; `reason` a fixed set).

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// Counters and gauges per sink.
#[derive(Clone, Debug)]
pub struct MssMetrics {
    /// Events accepted into a sink's spool (or file).
    pub queued: IntCounterVec,
    /// Events written to a collector (retransmissions included).
    pub sent: IntCounterVec,
    /// Events acknowledged (the spool's read position passed them).
    pub acked: IntCounterVec,
    /// Events sent again after a reconnect or a failed batch.
    pub retried: IntCounterVec,
    /// Events lost, by reason (`spool_full`, `queue_full`, `too_large`).
    pub dropped: IntCounterVec,
    /// Bytes in a sink's spool.
    pub spool_bytes: IntGaugeVec,
    /// 1 while a sink is connected (file sinks: writable).
    pub up: IntGaugeVec,
    /// Threat events reported before every sink confirmed them spooled.
    pub handoff_timeouts: prometheus::IntCounter,
    /// Failed writes of a sink's spool or file (a full or failing disk).
    pub write_errors: IntCounterVec,
}

impl MssMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = MssMetrics::unregistered()?;
        registry.register(Box::new(m.queued.clone()))?;
        registry.register(Box::new(m.sent.clone()))?;
        registry.register(Box::new(m.acked.clone()))?;
        registry.register(Box::new(m.retried.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.spool_bytes.clone()))?;
        registry.register(Box::new(m.up.clone()))?;
        registry.register(Box::new(m.handoff_timeouts.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        Ok(m)
    }

    /// Metrics not exported anywhere (tests, benches).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let c = |n: &str, h: &str| IntCounterVec::new(Opts::new(n, h), &["sink"]);
        Ok(MssMetrics {
            queued: c(
                "sekisho_mss_events_queued_total",
                "Events accepted into a sink's spool or file",
            )?,
            sent: c(
                "sekisho_mss_events_sent_total",
                "Events written to a collector, retransmissions included",
            )?,
            acked: c(
                "sekisho_mss_events_acked_total",
                "Events acknowledged by a collector (HTTP 2xx; syslog: written on a connection still alive after ack_delay_ms)",
            )?,
            retried: c(
                "sekisho_mss_events_retried_total",
                "Events sent again after a reconnect or a failed batch",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "sekisho_mss_events_dropped_total",
                    "Events lost (communication logs when the spool or queue is full)",
                ),
                &["sink", "reason"],
            )?,
            spool_bytes: IntGaugeVec::new(
                Opts::new("sekisho_mss_spool_bytes", "Bytes in a sink's disk spool"),
                &["sink"],
            )?,
            up: IntGaugeVec::new(
                Opts::new(
                    "sekisho_mss_sink_up",
                    "1 while a sink is connected (file sinks: writable)",
                ),
                &["sink"],
            )?,
            handoff_timeouts: prometheus::IntCounter::new(
                "sekisho_mss_handoff_timeouts_total",
                "Threat events reported before every sink confirmed them spooled (a spool failing, or slower than 2 s); they stay queued",
            )?,
            write_errors: c(
                "sekisho_mss_write_errors_total",
                "Failed writes of a sink's spool or file (a full or failing disk); events wait in memory meanwhile",
            )?,
        })
    }
}
