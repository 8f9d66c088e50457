//! Delivery: producers hand events to [`Mss`]; one thread per sink masks nothing (that is done
//! once, before fan-out), encodes, spools and sends.
//!
//! Network sinks (syslog, http) write every event to their disk spool first — `threat/` for
//! threat and `log_loss` events, `flow/` for communication logs — fsync the batch, then send
//! from the spool. The spool's read position advances only on an acknowledgement:
//!
//! * HTTP: a 2xx answer to the batch.
//! * Syslog (no application acks in RFC 5425): every `ack_delay_ms` the sink checks that the
//!   connection is still alive (no EOF, no reset) and then acknowledges what was written before
//!   the previous check — each acknowledged record was written at least `ack_delay_ms` before a
//!   liveness check passed. A dead connection rewinds to the acknowledged position and the
//!   unacknowledged window is sent again after the reconnect.
//!
//! The guarantee is at-least-once: a duplicate is the same record byte for byte, with the same
//! `event.id` (UUIDv7), so collectors deduplicate on it. When a spool is full, threat events push
//! back (the producers wait) and communication logs are dropped oldest-first, counted in
//! `sekisho_mss_events_dropped_total` and reported by a `log_loss` event on the same sink.
//! A restarted gateway sends what its spools still hold.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use prometheus::{IntCounter, IntGauge};
use sekisho_core::{CommLog, Observer, ThreatEvent};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::{LogClass, MssConfig, SinkConfig, SinkKind, Transport};
use crate::encode::{self, Format, Record};
use crate::filesink::{FileSink, Rotation};
use crate::handoff::Handoff;
use crate::mask::{load_or_create_key, KeyError, Masker};
use crate::metrics::MssMetrics;
use crate::net::{split_addr, Connector, Stream, TlsSettings};
use crate::spool::{Pos, Spool, SpoolError, SpoolLimits};

/// Errors starting delivery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MssError {
    /// A config value.
    #[error("[mss] {0}")]
    Config(String),
    /// The key file.
    #[error("[mss] key: {0}")]
    Key(#[from] KeyError),
    /// A spool.
    #[error("[mss] spool: {0}")]
    Spool(#[from] SpoolError),
    /// A file sink or thread.
    #[error("[mss] {0}")]
    Io(String),
}

/// A record on its way to a sink; threat records carry their [`Handoff`].
type Item = (LogClass, Arc<Record>, Option<Arc<Handoff>>);

/// How long a producer waits for the sinks to spool a threat event before going on (a disk
/// that stalls must not stall traffic for longer; counted in
/// `sekisho_mss_handoff_timeouts_total`).
const HANDOFF_LIMIT: Duration = Duration::from_secs(2);

struct SinkIn {
    tx: mpsc::Sender<Item>,
    threats: bool,
    flows: bool,
    queue_drops: Arc<AtomicU64>,
    dropped_queue: IntCounter,
    failing: Arc<AtomicBool>,
}

struct Inner {
    sinks: Vec<SinkIn>,
    handoff_timeouts: IntCounter,
    masker: Option<Masker>,
    node: String,
}

/// The producer side: cheap to clone; when every clone is gone the sinks finish.
#[derive(Clone)]
pub struct Mss {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mss")
            .field("sinks", &self.inner.sinks.len())
            .finish()
    }
}

/// The sink threads.
pub struct MssTasks {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl MssTasks {
    /// Waits for every sink to finish (after every [`Mss`] clone is dropped): each syncs its
    /// spool and tries for up to `min(timeout_secs, 5 s)` to deliver what is left.
    pub async fn finish(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for t in self.threads {
                let _ = t.join();
            }
        })
        .await;
    }

    /// Blocking variant of [`MssTasks::finish`].
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Timings and sizes shared by the sinks.
#[derive(Clone, Copy, Debug)]
struct Timing {
    batch: usize,
    ack_delay: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    timeout: Duration,
    fsync_interval: Duration,
    facility: u8,
}

impl Mss {
    /// Opens every sink (spools, files, TLS settings) and starts their threads.
    pub fn start(
        cfg: &MssConfig,
        observer: Observer,
        metrics: MssMetrics,
    ) -> Result<(Mss, MssTasks), MssError> {
        cfg.validate().map_err(MssError::Config)?;
        let need_key = cfg.mask.enabled() || cfg.keyed_chain;
        let key = if need_key {
            Some(load_or_create_key(&cfg.key_path())?)
        } else {
            None
        };
        let masker = if cfg.mask.enabled() {
            key.clone().map(|k| Masker::new(&cfg.mask, k))
        } else {
            None
        };
        let timing = Timing {
            batch: cfg.batch,
            ack_delay: Duration::from_millis(cfg.ack_delay_ms.max(1)),
            backoff_min: Duration::from_millis(cfg.backoff_min_ms),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            fsync_interval: Duration::from_millis(cfg.fsync_interval_ms),
            facility: cfg.facility,
        };
        let mut sinks = Vec::new();
        let mut threads = Vec::new();
        for (i, sc) in cfg.sinks.iter().enumerate() {
            let name = cfg.sink_name(i);
            let (tx, rx) = mpsc::channel(cfg.queue);
            let queue_drops = Arc::new(AtomicU64::new(0));
            let failing = Arc::new(AtomicBool::new(false));
            let m = SinkMetrics::new(&metrics, &name);
            let ctx = Ctx {
                name: name.clone(),
                format: sc.format(),
                timing,
                observer: observer.clone(),
                queue_drops: Arc::clone(&queue_drops),
                m,
                failing: Arc::clone(&failing),
            };
            let runner: Box<dyn FnOnce() + Send> = match sc.kind {
                SinkKind::File => {
                    let path = sc.path.clone().unwrap_or_default();
                    let rot = Rotation {
                        max_bytes: sc.rotate_bytes,
                        max_age: Duration::from_secs(sc.rotate_secs),
                        keep: sc.keep,
                    };
                    let chain_key = if cfg.keyed_chain { key.clone() } else { None };
                    let file = FileSink::open(&path, rot, chain_key)
                        .map_err(|e| MssError::Io(format!("sink {name}: {e}")))?;
                    Box::new(move || run_file(ctx, file, rx))
                }
                SinkKind::Syslog | SinkKind::Http | SinkKind::Kafka => {
                    let net = NetSink::open(cfg, sc, ctx)?;
                    Box::new(move || run_net(net, rx))
                }
            };
            let t = std::thread::Builder::new()
                .name(format!("mss-{name}"))
                .spawn(runner)
                .map_err(|e| MssError::Io(format!("sink {name}: thread: {e}")))?;
            threads.push(t);
            sinks.push(SinkIn {
                tx,
                threats: sc.logs.contains(&LogClass::Threat),
                flows: sc.logs.contains(&LogClass::Flow),
                queue_drops,
                failing,
                dropped_queue: metrics
                    .dropped
                    .with_label_values(&[name.as_str(), "queue_full"]),
            });
        }
        Ok((
            Mss {
                inner: Arc::new(Inner {
                    sinks,
                    handoff_timeouts: metrics.handoff_timeouts.clone(),
                    masker,
                    node: observer.node.clone(),
                }),
            },
            MssTasks { threads },
        ))
    }

    fn prepare(&self, mut v: Value) -> Arc<Record> {
        if let Some(m) = &self.inner.masker {
            m.apply(&mut v);
        }
        Arc::new(Record::from_value(&v, &self.inner.node))
    }

    /// Masks an event as the sinks receive it (for tests and `check-config`).
    pub fn masked(&self, mut v: Value) -> Value {
        if let Some(m) = &self.inner.masker {
            m.apply(&mut v);
        }
        v
    }

    /// Hands a threat event to every sink taking threats and waits until each has spooled it
    /// (see [`Handoff`]); waits while a sink's queue is full (push back: threat events are
    /// never dropped).
    pub async fn threat(&self, ev: &ThreatEvent) {
        self.threats(std::slice::from_ref(ev)).await;
    }

    /// [`Mss::threat`] for several events (one flow's findings): all handed over first, then
    /// one wait for the lot, so a flow raising many events waits for one spool write.
    pub async fn threats(&self, evs: &[ThreatEvent]) {
        if !self.inner.sinks.iter().any(|s| s.threats) {
            return;
        }
        let mut handoffs = Vec::with_capacity(evs.len());
        for ev in evs {
            if let Some(rec) = self.record(ev) {
                handoffs.push(self.dispatch_threat(rec).await);
            }
        }
        self.await_handoffs(&handoffs).await;
    }

    /// Like [`Mss::threat`] for an event already in JSON form.
    pub async fn threat_value(&self, v: Value) {
        let rec = self.prepare(v);
        let h = self.dispatch_threat(rec).await;
        self.await_handoffs(&[h]).await;
    }

    /// The event as sinks take it, masked once.
    fn record(&self, ev: &ThreatEvent) -> Option<Arc<Record>> {
        Some(match &self.inner.masker {
            // Serialize the struct once, no intermediate JSON value.
            None => Arc::new(Record::from_event(ev)),
            Some(m) if m.typed() => {
                let mut ev = ev.clone();
                m.apply_event(&mut ev);
                Arc::new(Record::from_event(&ev))
            }
            Some(_) => self.prepare(serde_json::to_value(ev).ok()?),
        })
    }

    /// Hands `rec` to every threat sink (waiting while a queue is full); its [`Handoff`].
    async fn dispatch_threat(&self, rec: Arc<Record>) -> Arc<Handoff> {
        let sinks = self.inner.sinks.iter().filter(|s| s.threats).count();
        let handoff = Handoff::new(sinks);
        for s in self.inner.sinks.iter().filter(|s| s.threats) {
            let item = (
                LogClass::Threat,
                Arc::clone(&rec),
                Some(Arc::clone(&handoff)),
            );
            if s.tx.send(item).await.is_err() {
                handoff.taken(); // the sink is gone: nothing to wait for
            }
        }
        handoff
    }

    /// Waits until every sink has spooled every one of `handoffs`, at most [`HANDOFF_LIMIT`]
    /// in all. A sink whose disk is failing will not confirm soon: its events wait in its queue
    /// (push back when that fills) and the flow goes on.
    async fn await_handoffs(&self, handoffs: &[Arc<Handoff>]) {
        let failing = self
            .inner
            .sinks
            .iter()
            .any(|s| s.threats && s.failing.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + HANDOFF_LIMIT;
        for h in handoffs {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if failing || !h.wait(left).await {
                self.inner.handoff_timeouts.inc();
            }
        }
    }

    /// Hands a communication-log line to every sink taking them; a full queue drops it (counted
    /// and reported by a `log_loss` event). Lines get an `event.id` (UUIDv7) for deduplication.
    pub fn flow(&self, line: &CommLog) {
        if !self.inner.sinks.iter().any(|s| s.flows) {
            return;
        }
        let v = match &self.inner.masker {
            // Serialize the struct once, no intermediate JSON value.
            None => Arc::new(Record::from_flow(line, &self.inner.node)),
            Some(m) if m.typed() => {
                let mut l = line.clone();
                m.apply_flow(&mut l);
                Arc::new(Record::from_flow(&l, &self.inner.node))
            }
            Some(_) => {
                let Ok(mut v) = serde_json::to_value(line) else {
                    return;
                };
                if let Some(o) = v.as_object_mut() {
                    o.entry("event").or_insert_with(|| {
                        serde_json::json!({"id": uuid::Uuid::now_v7(), "kind": "event", "category": "flow"})
                    });
                }
                self.prepare(v)
            }
        };
        for s in self.inner.sinks.iter().filter(|s| s.flows) {
            if s.tx
                .try_send((LogClass::Flow, Arc::clone(&v), None))
                .is_err()
            {
                s.dropped_queue.inc();
                s.queue_drops.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Clone)]
struct SinkMetrics {
    queued: IntCounter,
    sent: IntCounter,
    acked: IntCounter,
    retried: IntCounter,
    dropped_spool: IntCounter,
    dropped_large: IntCounter,
    spool_bytes: IntGauge,
    up: IntGauge,
    write_errors: IntCounter,
}

impl SinkMetrics {
    fn new(m: &MssMetrics, name: &str) -> SinkMetrics {
        SinkMetrics {
            queued: m.queued.with_label_values(&[name]),
            sent: m.sent.with_label_values(&[name]),
            acked: m.acked.with_label_values(&[name]),
            retried: m.retried.with_label_values(&[name]),
            dropped_spool: m.dropped.with_label_values(&[name, "spool_full"]),
            dropped_large: m.dropped.with_label_values(&[name, "too_large"]),
            spool_bytes: m.spool_bytes.with_label_values(&[name]),
            up: m.up.with_label_values(&[name]),
            write_errors: m.write_errors.with_label_values(&[name]),
        }
    }
}

struct Ctx {
    name: String,
    format: Format,
    timing: Timing,
    observer: Observer,
    queue_drops: Arc<AtomicU64>,
    m: SinkMetrics,
    /// Set while the sink cannot write its spool or file (a full or failing disk).
    failing: Arc<AtomicBool>,
}

impl Ctx {
    /// The spool (or file) could not be written: logged once per outage, counted each time.
    fn write_failed(&self, e: &dyn std::fmt::Display) {
        self.m.write_errors.inc();
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(sink = %self.name, error = %e, "mss: cannot write the spool; events wait in memory (push back) until it can");
        }
    }

    /// The spool (or file) was written.
    fn write_ok(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(sink = %self.name, "mss: the spool is writable again");
        }
    }

    fn loss_event(&self, spool_full: u64, queue_full: u64, total: u64) -> Record {
        let v = serde_json::json!({
            "@timestamp": sekisho_core::event::now_rfc3339(),
            "event_type": "log_loss",
            "event": {"id": uuid::Uuid::now_v7(), "kind": "event", "category": "log_loss",
                      "action": "dropped", "severity": 2},
            "observer": self.observer,
            "log_loss": {"sink": self.name, "dropped": spool_full + queue_full,
                         "spool_full": spool_full, "queue_full": queue_full, "total": total},
        });
        Record::from_value(&v, &self.observer.node)
    }
}

fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(1) as u64;
    Duration::from_millis(ms / 2 + fastrand::u64(0..=ms - ms / 2))
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!(error = %e, "mss: cannot start a sink runtime"))
        .ok()
}

// ---------------------------------------------------------------- file sink

fn run_file(ctx: Ctx, mut file: FileSink, mut rx: mpsc::Receiver<Item>) {
    let Some(rt) = runtime() else { return };
    rt.block_on(async move {
        ctx.m.up.set(1);
        let mut batch: Vec<Item> = Vec::with_capacity(ctx.timing.batch);
        let mut backoff = ctx.timing.backoff_min;
        let mut loss_total = 0u64;
        loop {
            if batch.is_empty() {
                match tokio::time::timeout(
                    Duration::from_secs(1),
                    rx.recv_many(&mut batch, ctx.timing.batch),
                )
                .await
                {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => {
                        // Idle: time rotation.
                        if let Err(e) = file.flush() {
                            tracing::warn!(sink = %ctx.name, error = %e, "mss: file sink");
                        }
                        continue;
                    }
                }
            }
            let lost = ctx.queue_drops.swap(0, Ordering::Relaxed);
            let mut lines: Vec<String> = Vec::with_capacity(batch.len() + 1);
            if lost > 0 {
                loss_total += lost;
                let ev = ctx.loss_event(0, lost, loss_total);
                lines.push(encode::record_text(&ev, ctx.format, ctx.timing.facility));
            }
            for (_, r, _) in &batch {
                lines.push(encode::record_text(r, ctx.format, ctx.timing.facility));
            }
            let res = lines
                .iter()
                .try_for_each(|l| file.write(l))
                .and_then(|_| file.flush());
            match res {
                Ok(()) => {
                    let n = batch.len() as u64;
                    ctx.m.queued.inc_by(n);
                    ctx.m.sent.inc_by(n);
                    ctx.m.acked.inc_by(n);
                    ctx.m.up.set(1);
                    ctx.write_ok();
                    backoff = ctx.timing.backoff_min;
                    for (_, _, h) in batch.drain(..) {
                        if let Some(h) = h {
                            h.taken();
                        }
                    }
                }
                Err(e) => {
                    // Keep the batch and retry (threats push back meanwhile).
                    ctx.m.up.set(0);
                    ctx.m.retried.inc_by(batch.len() as u64);
                    ctx.write_failed(&e);
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(ctx.timing.backoff_max);
                }
            }
        }
        if let Err(e) = file.flush() {
            tracing::error!(sink = %ctx.name, error = %e, "mss: file sink");
        }
    });
}

// ---------------------------------------------------------------- network sinks

struct Lane {
    spool: Spool,
    /// Highest position ever sent (for counting retransmissions).
    high: Pos,
    /// Position after the last record written on this connection, and records since the mark.
    window_end: Option<Pos>,
    window_n: u64,
    /// Syslog: the window at the previous liveness check.
    mark: Option<(Pos, u64)>,
}

enum Link {
    Syslog(Stream),
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    #[cfg(feature = "kafka")]
    Kafka(rdkafka::producer::FutureProducer),
}

struct HttpTarget {
    authority: String,
    path: String,
    token: Option<String>,
}

struct NetSink {
    ctx: Ctx,
    kind: SinkKind,
    connector: Connector,
    http: Option<HttpTarget>,
    #[cfg(feature = "kafka")]
    kafka: Option<crate::kafka::KafkaTarget>,
    lanes: [Lane; 2],
    link: Option<Link>,
    backoff: Duration,
    next_attempt: Instant,
    next_check: Option<Instant>,
    last_sync: Instant,
    down_logged: bool,
    loss_spool: u64,
    loss_queue: u64,
    loss_total: u64,
    max_window: u64,
    /// Hand-offs of threat events appended since the last write to the OS.
    spooled: Vec<Arc<Handoff>>,
}

/// Host, port, whether the connection is TLS, and the HTTP target, of a network sink.
fn endpoint(sc: &SinkConfig) -> Result<(String, u16, bool, Option<HttpTarget>), String> {
    Ok(match sc.kind {
        SinkKind::Http => {
            let url = sc.http_url().unwrap_or_default();
            let uri: http::Uri = url.parse().map_err(|e| format!("url {url}: {e}"))?;
            let https = uri.scheme_str() == Some("https");
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let authority = uri
                .authority()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default();
            let path = uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string());
            (
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                https,
                Some(HttpTarget {
                    authority,
                    path,
                    token: sc.token.as_ref().map(|t| t.0.clone()),
                }),
            )
        }
        SinkKind::Kafka => {
            // librdkafka connects; the connector only names the first broker in logs.
            let first = sc
                .addr
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .next()
                .unwrap_or_default()
                .trim();
            let (h, p) = split_addr(first)?;
            (h, p, false, None)
        }
        _ => {
            let (h, p) = split_addr(sc.addr.as_deref().unwrap_or_default())?;
            (h, p, sc.transport == Transport::Tls, None)
        }
    })
}

/// The spool lane of a class: threat events first.
fn lane_index(class: LogClass) -> usize {
    match class {
        LogClass::Threat => 0,
        LogClass::Flow => 1,
    }
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a sink waits for more events after a short intake.
const LINGER: Duration = Duration::from_millis(5);

impl NetSink {
    fn open(cfg: &MssConfig, sc: &SinkConfig, ctx: Ctx) -> Result<NetSink, MssError> {
        let name = ctx.name.clone();
        let cerr = |m: String| MssError::Config(format!("sink {name}: {m}"));
        let (host, port, tls, http) = endpoint(sc).map_err(cerr)?;
        #[cfg(feature = "kafka")]
        let kafka = (sc.kind == SinkKind::Kafka).then(|| crate::kafka::KafkaTarget {
            brokers: sc.addr.clone().unwrap_or_default(),
            topic: sc.topic.clone().unwrap_or_else(|| "sekisho".into()),
            tls: (sc.transport == Transport::Tls).then(|| crate::kafka::KafkaTls {
                ca: sc.ca.clone(),
                client: sc.client_cert.clone().zip(sc.client_key.clone()),
            }),
            timeout: ctx.timing.timeout,
        });
        let settings = tls.then(|| TlsSettings {
            ca: sc.ca.as_deref(),
            server_name: sc.server_name.as_deref(),
            client: sc.client_cert.as_deref().zip(sc.client_key.as_deref()),
        });
        let connector = Connector::new(&host, port, settings, ctx.timing.timeout).map_err(cerr)?;
        let limits = SpoolLimits {
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.spool_max_bytes,
        };
        let dir = cfg.spool_dir.join(&name);
        let lane = |class: LogClass| -> Result<Lane, MssError> {
            let spool = Spool::open(&dir.join(class.name()), limits)?;
            Ok(Lane {
                high: spool.acked(),
                spool,
                window_end: None,
                window_n: 0,
                mark: None,
            })
        };
        let lanes = [lane(LogClass::Threat)?, lane(LogClass::Flow)?];
        // Bounds the duplicates a reconnect can cause; large enough not to cap throughput
        // (acknowledgements lag by up to two ack_delay_ms).
        let max_window = 1_000_000;
        Ok(NetSink {
            kind: sc.kind,
            connector,
            http,
            #[cfg(feature = "kafka")]
            kafka,
            lanes,
            link: None,
            backoff: ctx.timing.backoff_min,
            next_attempt: Instant::now(),
            next_check: None,
            last_sync: Instant::now(),
            down_logged: false,
            loss_spool: 0,
            loss_queue: 0,
            loss_total: 0,
            max_window,
            spooled: Vec::new(),
            ctx,
        })
    }

    fn encode(&self, r: &Record) -> Vec<u8> {
        let f = self.ctx.timing.facility;
        match self.kind {
            SinkKind::Http => encode::record_hec(r, self.ctx.format, f).into_bytes(),
            SinkKind::Kafka => encode::record_text(r, self.ctx.format, f).into_bytes(),
            _ => encode::record_syslog_frame(r, self.ctx.format, f),
        }
    }

    /// Spools queued items in order; stops at a threat event that does not fit (push back).
    fn take_in(&mut self, items: &mut VecDeque<Item>) {
        while let Some((class, v, _)) = items.front() {
            let rec = self.encode(v);
            let class = *class;
            // Disjoint field borrows: the lane mutably, the name for logs (no per-event copy).
            let lane = &mut self.lanes[lane_index(class)];
            let name = &self.ctx.name;
            match lane.spool.append(&rec) {
                Ok(()) => {
                    self.ctx.m.queued.inc();
                    if let Some((_, _, Some(h))) = items.pop_front() {
                        self.spooled.push(h);
                    }
                }
                Err(SpoolError::Full(_)) if class == LogClass::Threat => return,
                Err(SpoolError::Full(_)) => {
                    // Communication logs: drop the oldest segment and retry; at worst this one.
                    let n = lane.spool.drop_oldest().unwrap_or(0);
                    let appended = n > 0 && lane.spool.append(&rec).is_ok();
                    if appended {
                        self.ctx.m.queued.inc();
                    }
                    let lost = n + u64::from(!appended);
                    self.loss_spool += lost;
                    self.ctx.m.dropped_spool.inc_by(lost);
                    tracing::warn!(sink = %name, dropped = lost, "mss: flow spool full; oldest communication logs dropped");
                    items.pop_front();
                }
                Err(SpoolError::TooLarge(n)) => {
                    self.ctx.m.dropped_large.inc();
                    tracing::error!(sink = %name, bytes = n, "mss: event larger than a spool segment; dropped");
                    if let Some((_, _, Some(h))) = items.pop_front() {
                        h.taken(); // never spooled: nothing to wait for
                    }
                }
                Err(e) => {
                    // Disk trouble: keep the item and retry (push back).
                    self.ctx.write_failed(&e);
                    return;
                }
            }
        }
    }

    fn report_loss(&mut self) {
        self.loss_queue += self.ctx.queue_drops.swap(0, Ordering::Relaxed);
        if self.loss_spool + self.loss_queue == 0 {
            return;
        }
        let total = self.loss_total + self.loss_spool + self.loss_queue;
        let ev = self.ctx.loss_event(self.loss_spool, self.loss_queue, total);
        let rec = self.encode(&ev);
        if self.lanes[0].spool.append(&rec).is_ok() {
            self.ctx.m.queued.inc();
            self.loss_total = total;
            self.loss_spool = 0;
            self.loss_queue = 0;
        }
    }

    /// Every record taken in reaches the OS at once (a SIGKILL loses none); fsync waits for
    /// `fsync_interval` (or `force`).
    fn sync(&mut self, force: bool) {
        if !force && self.last_sync.elapsed() < self.ctx.timing.fsync_interval {
            let mut ok = true;
            for l in &mut self.lanes {
                if let Err(e) = l.spool.flush() {
                    ok = false;
                    self.ctx.write_failed(&e);
                }
            }
            self.release_handoffs(ok);
            return;
        }
        let mut ok = true;
        for l in &mut self.lanes {
            if let Err(e) = l.spool.sync() {
                ok = false;
                self.ctx.write_failed(&e);
            }
        }
        self.release_handoffs(ok);
        self.last_sync = Instant::now();
        self.ctx
            .m
            .spool_bytes
            .set((self.lanes[0].spool.bytes() + self.lanes[1].spool.bytes()) as i64);
    }

    /// Tells the producers waiting on spooled threat events that they are with the OS (only
    /// when every lane was written: otherwise they wait, bounded, and the next write retries).
    fn release_handoffs(&mut self, written: bool) {
        if written {
            self.ctx.write_ok();
            for h in self.spooled.drain(..) {
                h.taken();
            }
        }
    }

    fn has_unread(&self) -> bool {
        self.lanes.iter().any(|l| l.spool.has_unread())
    }

    fn has_unacked(&self) -> bool {
        self.lanes.iter().any(|l| l.spool.has_unacked())
    }

    fn window(&self) -> u64 {
        self.lanes.iter().map(|l| l.window_n).sum()
    }

    fn disconnect(&mut self, why: &str) {
        if self.link.take().is_some() {
            tracing::warn!(sink = %self.ctx.name, peer = %self.connector.peer(), reason = why,
                "mss: collector connection lost; unacknowledged events will be sent again");
        }
        self.ctx.m.up.set(0);
        for l in &mut self.lanes {
            l.spool.rewind();
            l.window_end = None;
            l.window_n = 0;
            l.mark = None;
        }
        self.next_check = None;
        self.next_attempt = Instant::now() + jitter(self.backoff);
        self.backoff = (self.backoff * 2).min(self.ctx.timing.backoff_max);
    }

    async fn try_connect(&mut self) {
        if self.link.is_some() || Instant::now() < self.next_attempt || !self.has_unacked() {
            return;
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            let link = k.producer().map(Link::Kafka);
            self.connected(link);
            return;
        }
        let res = self.connector.connect().await;
        let link = match res {
            Ok(s) => match &self.http {
                None => Ok(Link::Syslog(s)),
                Some(_) => {
                    match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                        .await
                    {
                        Ok((send, conn)) => {
                            tokio::spawn(async move {
                                let _ = conn.await;
                            });
                            Ok(Link::Http(send))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
            Err(e) => Err(e.to_string()),
        };
        self.connected(link);
    }

    fn connected(&mut self, link: Result<Link, String>) {
        match link {
            Ok(l) => {
                tracing::info!(sink = %self.ctx.name, peer = %self.connector.peer(), "mss: connected to the collector");
                for lane in &mut self.lanes {
                    lane.spool.rewind();
                }
                self.link = Some(l);
                self.ctx.m.up.set(1);
                self.down_logged = false;
                self.backoff = self.ctx.timing.backoff_min;
                self.next_check = Some(Instant::now() + self.ctx.timing.ack_delay);
            }
            Err(e) => {
                if !self.down_logged {
                    tracing::warn!(sink = %self.ctx.name, peer = %self.connector.peer(), error = %e,
                        "mss: cannot reach the collector; events stay in the spool");
                    self.down_logged = true;
                }
                self.ctx.m.up.set(0);
                self.next_attempt = Instant::now() + jitter(self.backoff);
                self.backoff = (self.backoff * 2).min(self.ctx.timing.backoff_max);
            }
        }
    }

    fn record_sent(&mut self, li: usize, recs: &[(Pos, Vec<u8>)]) {
        let lane = &mut self.lanes[li];
        let n = recs.len() as u64;
        let retried = recs.iter().filter(|(p, _)| *p <= lane.high).count() as u64;
        if let Some((p, _)) = recs.last() {
            lane.high = lane.high.max(*p);
            lane.window_end = Some(*p);
        }
        lane.window_n += n;
        self.ctx.m.sent.inc_by(n);
        self.ctx.m.retried.inc_by(retried);
    }

    fn ack(&mut self, li: usize, upto: Pos, n: u64) {
        if let Err(e) = self.lanes[li].spool.ack(upto) {
            tracing::error!(sink = %self.ctx.name, error = %e, "mss: cannot persist the spool cursor");
        }
        self.ctx.m.acked.inc_by(n);
    }

    /// Syslog: every ack_delay, if the connection is alive, acknowledge what was written
    /// before the previous check.
    fn check_syslog(&mut self) {
        let Some(due) = self.next_check else { return };
        if Instant::now() < due {
            return;
        }
        let alive = match &mut self.link {
            Some(Link::Syslog(s)) => alive(s),
            _ => return,
        };
        if !alive {
            self.disconnect("the collector closed the connection");
            return;
        }
        for li in 0..2 {
            if let Some((p, n)) = self.lanes[li].mark.take() {
                self.ack(li, p, n);
                self.lanes[li].window_n -= n.min(self.lanes[li].window_n);
            }
            let l = &mut self.lanes[li];
            l.mark = l.window_end.map(|p| (p, l.window_n));
        }
        self.next_check = Some(Instant::now() + self.ctx.timing.ack_delay);
    }

    /// Sends one batch (threat events first).
    async fn pump(&mut self) -> bool {
        if self.link.is_none() {
            return false;
        }
        if matches!(self.link, Some(Link::Syslog(_))) {
            self.check_syslog();
            if self.link.is_none() || self.window() >= self.max_window {
                return false;
            }
        }
        for li in 0..2 {
            let recs = match self.lanes[li].spool.read_batch(self.ctx.timing.batch) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = %self.ctx.name, error = %e, "mss: cannot read the spool");
                    return false;
                }
            };
            if recs.is_empty() {
                continue;
            }
            let timeout = self.ctx.timing.timeout;
            let result = match self.link.as_mut() {
                Some(Link::Syslog(s)) => {
                    let mut buf = Vec::with_capacity(recs.iter().map(|r| r.1.len()).sum());
                    for (_, r) in &recs {
                        buf.extend_from_slice(r);
                    }
                    match tokio::time::timeout(timeout, async {
                        s.write_all(&buf).await?;
                        s.flush().await
                    })
                    .await
                    {
                        Ok(Ok(())) => Ok(false),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("write timed out".into()),
                    }
                }
                Some(Link::Http(send)) => {
                    let t = self.http.as_ref();
                    post(send, t, &recs, timeout).await.map(|()| true)
                }
                #[cfg(feature = "kafka")]
                Some(Link::Kafka(p)) => match &self.kafka {
                    Some(k) => k.send(p, &recs).await.map(|()| true),
                    None => return false,
                },
                None => return false,
            };
            match result {
                Ok(acked_now) => {
                    self.record_sent(li, &recs);
                    if acked_now {
                        let n = recs.len() as u64;
                        if let Some((p, _)) = recs.last() {
                            self.ack(li, *p, n);
                        }
                        self.lanes[li].window_n = 0;
                        self.lanes[li].window_end = None;
                    }
                    return true;
                }
                Err(e) => {
                    // Sent (perhaps partly) but not acknowledged: they go again after the
                    // reconnect and count as retried then.
                    self.record_sent(li, &recs);
                    self.disconnect(&e);
                    return false;
                }
            }
        }
        // Nothing new: HTTP has nothing pending; syslog waits for its checks.
        false
    }

    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let mut wake = now + Duration::from_millis(250);
        if self.link.is_none() && self.has_unacked() {
            wake = wake.min(self.next_attempt);
        }
        if let Some(c) = self.next_check {
            if self.window() > 0 || self.lanes.iter().any(|l| l.mark.is_some()) {
                wake = wake.min(c);
            }
        }
        wake.saturating_duration_since(now)
    }
}

async fn post(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    t: Option<&HttpTarget>,
    recs: &[(Pos, Vec<u8>)],
    timeout: Duration,
) -> Result<(), String> {
    let t = t.ok_or("no HTTP target")?;
    let mut body = Vec::with_capacity(recs.iter().map(|r| r.1.len() + 1).sum());
    for (i, (_, r)) in recs.iter().enumerate() {
        if i > 0 {
            body.push(b'\n');
        }
        body.extend_from_slice(r);
    }
    let mut req = http::Request::post(t.path.as_str())
        .header(http::header::HOST, t.authority.as_str())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(tok) = &t.token {
        req = req.header(http::header::AUTHORIZATION, format!("Splunk {tok}"));
    }
    let req = req
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let go = async {
        send.ready().await.map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read (bounded) and discard the body so the connection can be reused.
        let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "collector answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    };
    tokio::time::timeout(timeout, go)
        .await
        .map_err(|_| "HTTP request timed out".to_string())?
}

/// True unless the peer closed or reset the connection (polls the read side once).
fn alive(s: &mut Stream) -> bool {
    let mut b = [0u8; 1024];
    for _ in 0..64 {
        match s.read(&mut b).now_or_never() {
            None => return true,
            Some(Ok(0)) => return false,
            Some(Ok(_)) => continue,
            Some(Err(_)) => return false,
        }
    }
    true
}

fn run_net(mut sink: NetSink, mut rx: mpsc::Receiver<Item>) {
    let Some(rt) = runtime() else { return };
    rt.block_on(async move {
        let mut items: VecDeque<Item> = VecDeque::with_capacity(sink.ctx.timing.batch * 4);
        let mut buf: Vec<Item> = Vec::with_capacity(sink.ctx.timing.batch * 4);
        let mut closed = false;
        let mut deadline: Option<Instant> = None;
        let intake = sink.ctx.timing.batch * 4;
        // A restarted gateway: whatever the spool holds goes first.
        if sink.has_unacked() {
            tracing::info!(sink = %sink.ctx.name, bytes = sink.lanes[0].spool.bytes() + sink.lanes[1].spool.bytes(),
                "mss: resuming from the spool");
        }
        loop {
            let busy = sink.link.is_some() && sink.has_unread() && sink.window() < sink.max_window;
            if items.is_empty() && !closed {
                if busy {
                    while buf.len() < intake {
                        match rx.try_recv() {
                            Ok(i) => buf.push(i),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                closed = true;
                                break;
                            }
                        }
                    }
                } else {
                    let wait = sink.next_wake();
                    if let Ok(n) = tokio::time::timeout(wait, rx.recv_many(&mut buf, intake)).await
                    {
                        if n == 0 {
                            closed = true;
                        } else if n < sink.ctx.timing.batch {
                            // Linger: let a batch gather so one fsync and one write carry many
                            // events instead of one.
                            tokio::time::sleep(LINGER).await;
                            while buf.len() < intake {
                                match rx.try_recv() {
                                    Ok(i) => buf.push(i),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                }
                items.extend(buf.drain(..));
            } else if !items.is_empty() && !busy {
                // Pushing back: wait for acknowledgements to free the spool.
                tokio::time::sleep(sink.next_wake().max(Duration::from_millis(5))).await;
            }
            sink.take_in(&mut items);
            sink.report_loss();
            sink.sync(closed);
            sink.try_connect().await;
            while sink.pump().await {
                if !items.is_empty() || sink.window() >= sink.max_window {
                    break;
                }
                // Keep sending while the spool has more, but let new events in regularly.
                if rx.is_empty() && sink.has_unread() {
                    continue;
                }
                break;
            }
            if closed && items.is_empty() {
                let d = *deadline.get_or_insert_with(|| {
                    Instant::now() + SHUTDOWN_GRACE.min(sink.ctx.timing.timeout)
                });
                // Done, out of time, or the collector is down (the spool keeps the rest).
                if !sink.has_unacked() || Instant::now() >= d || (sink.link.is_none() && sink.down_logged)
                {
                    break;
                }
                if !sink.has_unread() || sink.link.is_none() {
                    tokio::time::sleep(sink.next_wake().max(Duration::from_millis(5))).await;
                }
            }
        }
        sink.sync(true);
        if let Some(Link::Syslog(mut s)) = sink.link.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), s.shutdown()).await;
        }
        if sink.has_unacked() {
            tracing::warn!(sink = %sink.ctx.name, "mss: stopping with unacknowledged events in the spool; they are sent after the next start");
        }
    });
}

/// Checks that sink `i` can be set up (addresses, URL, TLS files) without connecting.
pub fn check_sink(cfg: &MssConfig, i: usize) -> Result<(), MssError> {
    let sc = &cfg.sinks[i];
    if matches!(sc.kind, SinkKind::File | SinkKind::Kafka) {
        return Ok(());
    }
    let name = cfg.sink_name(i);
    let cerr = |m: String| MssError::Config(format!("sink {name}: {m}"));
    let (host, port, tls, _) = endpoint(sc).map_err(cerr)?;
    let settings = tls.then(|| TlsSettings {
        ca: sc.ca.as_deref(),
        server_name: sc.server_name.as_deref(),
        client: sc.client_cert.as_deref().zip(sc.client_key.as_deref()),
    });
    Connector::new(&host, port, settings, Duration::from_secs(1))
        .map(|_| ())
        .map_err(cerr)
}

/// Where a sink's spool lives.
pub fn spool_path(cfg: &MssConfig, i: usize) -> PathBuf {
    cfg.spool_dir.join(cfg.sink_name(i))
}
