//! Prometheus metrics. Labels are bounded: listener, stage, verdict, kind, result — never a URL or
//! an IP.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the proxy exports (engines register their own collectors in [`Metrics::registry`]).
#[allow(missing_docs)]
pub struct Metrics {
    pub registry: Registry,
    pub connections: IntCounterVec,
    pub connections_active: IntGauge,
    pub connections_refused: IntCounterVec,
    pub requests: IntCounterVec,
    pub bytes: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub tls_handshake_seconds: Histogram,
    pub cert_cache: IntCounterVec,
    pub cert_mint_seconds: Histogram,
    pub upstream_errors: IntCounterVec,
    pub verdicts: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub tunnels: IntCounterVec,
    /// Pre-flight dials of tunnels' servers, by what they found (`crate::preflight`).
    pub preflights: IntCounterVec,
    pub events: IntCounterVec,
    pub events_dropped: IntCounterVec,
    pub uninspected: IntCounterVec,
    pub hold_bytes: IntGauge,
    pub hold_overflows: IntCounter,
    /// Upgrades asked for, by what became of them (`wire::take_upgrade`, `driver`).
    pub upgrades: IntCounterVec,
    /// WebSocket frames judged, by direction (`wsrelay`).
    pub ws_frames: IntCounterVec,
    /// Response bodies streamed unheld by a stage (`[policy] stream_types`), by listener and stage.
    pub streamed: IntCounterVec,
    pub bad_requests: IntCounterVec,
    /// Connections shed as attacks, by listener and attack (`crate::shed`).
    pub shed: IntCounterVec,
    pub client_cert_refused: IntCounterVec,
    pub access_denied: IntCounterVec,
    /// Requests refused because their path or host has no single meaning, by listener and rule.
    pub ambiguous: IntCounterVec,
    pub upstream_up: IntGaugeVec,
    pub upstream_retries: IntCounterVec,
    pub reloads: IntCounterVec,
    /// Faults met while serving, by fault (`crate::fault`).
    pub faults: IntCounterVec,
    /// Tokio tasks alive when scraped (connections, flows, background work).
    pub tasks: IntGauge,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let lat = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ];
        Ok(Metrics {
            connections: reg!(IntCounterVec::new(
                Opts::new("sekisho_connections_total", "Client connections accepted"),
                &["listener"]
            )?),
            client_cert_refused: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_client_cert_refused_total",
                    "Client certificates refused at reverse listeners (reason: missing, unknown_ca, revoked, expired, not_yet_valid, other)"
                ),
                &["listener", "reason"]
            )?),
            access_denied: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_access_denied_total",
                    "Reverse-proxy requests refused by route facility policy"
                ),
                &["listener", "route"]
            )?),
            ambiguous: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_ambiguous_requests_total",
                    "Reverse-proxy requests refused with 400 because their path or host has a second reading (rule: path-encoded-slash, path-above-root, host-conflict, …)"
                ),
                &["listener", "rule"]
            )?),
            upstream_up: reg!(IntGaugeVec::new(
                Opts::new(
                    "sekisho_upstream_up",
                    "Reverse-proxy pool members usable now (1) or not (0), by route and member index"
                ),
                &["route", "member"]
            )?),
            upstream_retries: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_upstream_retries_total",
                    "Reverse-proxy requests sent to another pool member after a connect failure"
                ),
                &["route"]
            )?),
            connections_active: reg!(IntGauge::new(
                "sekisho_connections_active",
                "Client connections open now"
            )?),
            connections_refused: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_connections_refused_total",
                    "Client connections refused (reason: not_allowed, limit)"
                ),
                &["listener", "reason"]
            )?),
            requests: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_requests_total",
                    "HTTP requests (proto: http1, h2, connect)"
                ),
                &["listener", "proto"]
            )?),
            bytes: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_bytes_total",
                    "Body and tunnel bytes (direction: to_server, to_client)"
                ),
                &["direction"]
            )?),
            tls_handshakes: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_tls_handshakes_total",
                    "TLS handshakes with clients (result: ok, error, timeout)"
                ),
                &["result"]
            )?),
            tls_handshake_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "sekisho_tls_handshake_seconds",
                    "Client-side TLS handshake time"
                )
                .buckets(lat.clone())
            )?),
            cert_cache: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_cert_cache_total",
                    "Leaf certificate cache lookups (result: hit, miss)"
                ),
                &["result"]
            )?),
            cert_mint_seconds: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    "sekisho_cert_mint_seconds",
                    "Time to mint a leaf certificate"
                )
                .buckets(lat.clone())
            )?),
            upstream_errors: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_upstream_errors_total",
                    "Upstream failures (kind: connect, tls_cert, tls, timeout, protocol)"
                ),
                &["kind"]
            )?),
            verdicts: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_verdicts_total",
                    "Final verdict of each stage per flow"
                ),
                &["stage", "verdict"]
            )?),
            request_seconds: reg!(HistogramVec::new(
                HistogramOpts::new(
                    "sekisho_request_duration_seconds",
                    "Time from request head to response head sent"
                )
                .buckets(lat),
                &["listener"]
            )?),
            tunnels: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_tunnels_total",
                    "CONNECT tunnels (mode: decrypted, spliced, blocked, not_tls, failed)"
                ),
                &["mode"]
            )?),
            preflights: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_upstream_preflights_total",
                    "Servers dialled before a tunnel's client is answered (result: ready, client_certificate, legacy, failed)"
                ),
                &["result"]
            )?),
            events: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_events_total",
                    "Log lines written (kind: threat, flow)"
                ),
                &["kind"]
            )?),
            events_dropped: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_events_dropped_total",
                    "Log lines dropped (kind: threat, flow)"
                ),
                &["kind"]
            )?),
            uninspected: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_uninspected_total",
                    "Flows or bodies passed without full inspection (fail-open, pass-and-alert)"
                ),
                &["listener"]
            )?),
            hold_bytes: reg!(IntGauge::new("sekisho_hold_bytes", "Body bytes held now")?),
            hold_overflows: reg!(IntCounter::new(
                "sekisho_hold_overflows_total",
                "Held bodies that exceeded a hold limit"
            )?),
            upgrades: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_upgrades_total",
                    "Protocol upgrades (result: websocket, joined, stripped, refused)"
                ),
                &["result"]
            )?),
            ws_frames: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_websocket_frames_total",
                    "WebSocket frames judged (direction: request, response)"
                ),
                &["direction"]
            )?),
            streamed: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_streamed_total",
                    "Response bodies of a stream content type passed unheld by a holding stage"
                ),
                &["listener", "stage"]
            )?),
            bad_requests: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_bad_requests_total",
                    "Malformed or refused requests"
                ),
                &["listener"]
            )?),
            shed: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_shed_total",
                    "Client connections shed as attacks (slow or oversized heads, malformed requests, h2 floods)"
                ),
                &["listener", "attack"]
            )?),
            reloads: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_reloads_total",
                    "Policy reloads (result: ok, error)"
                ),
                &["result"]
            )?),
            faults: reg!(IntCounterVec::new(
                Opts::new(
                    "sekisho_faults_total",
                    "Faults met while serving (upstream reset mid-response, unresolvable upstream, failed reload)"
                ),
                &["fault"]
            )?),
            tasks: reg!(IntGauge::new(
                "sekisho_runtime_tasks",
                "Tokio tasks alive (connections, flows, background work), read at each scrape"
            )?),
            registry: {
                // process_resident_memory_bytes, process_open_fds, process_cpu_seconds_total...
                registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
                registry
            },
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.tasks.set(rt.metrics().num_alive_tasks() as i64);
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
