//! Threat events and the communication log, written as JSON lines by one writer thread per file.
//!
//! Threat events push back when the queue is full (never dropped), and the flow that raised them
//! waits until they are written before it answers the client (bounded): a response is never
//! ahead of its event, even when the process is killed right after. Communication-log lines are
//! dropped when their queue is full, counted in `sekisho_events_dropped_total{kind="flow"}`.
//! With `[mss]`, every event and line also goes to the MSS sinks (`sekisho_mss::Mss`: masking,
//! disk spool, syslog/HTTP/file delivery).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sekisho_core::{CommLog, Observer, ThreatEvent};
use sekisho_mss::{Mss, MssConfig, MssMetrics, MssTasks};
use std::io::Write as _;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ProxyError, Result};
use crate::metrics::Metrics;

/// One line for a writer; `written` hears when it is in the file (threat events: the flow waits
/// for it, so a response never gets ahead of its event, even when the process is killed).
struct Line {
    text: String,
    written: Option<oneshot::Sender<()>>,
}

impl Line {
    fn plain(text: String) -> Line {
        Line {
            text,
            written: None,
        }
    }
}

/// How long a flow waits for its events to be written before it goes on (a writer stuck on a
/// full or hung disk must not hold every blocked request forever; the MSS spool has them).
const WRITE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where events go.
#[derive(Clone)]
pub struct EventSink {
    threats: mpsc::Sender<Line>,
    threat_writer: WriterThread,
    flows: mpsc::Sender<Line>,
    metrics: Arc<Metrics>,
    mss: Option<Mss>,
}

/// Handles to the writer tasks, to flush on shutdown.
pub struct EventWriters {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    mss: Option<MssTasks>,
}

impl EventWriters {
    /// Waits until every queued line is written (after all senders are dropped).
    pub async fn finish(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        if let Some(m) = self.mss {
            m.finish().await;
        }
    }
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| ProxyError::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ProxyError::io(format!("opening {}", path.display()), e))
}

/// One writer per file on a thread of its own (blocking on the queue): appending a batch is one
/// write(2), with no hand-off to the blocking pool per batch as `tokio::fs` would make.
fn spawn_writer(
    path: PathBuf,
    mut file: std::fs::File,
    (mut rx, thread): (mpsc::Receiver<Line>, WriterThread),
    metrics: Arc<Metrics>,
    kind: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let _ = thread.set(std::thread::current());
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut waiting = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            buf.clear();
            let mut n = 0u64;
            let mut next = Some(first);
            while let Some(line) = next.take() {
                buf.extend_from_slice(line.text.as_bytes());
                buf.push(b'\n');
                waiting.extend(line.written);
                n += 1;
                if n < WRITE_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            match file.write_all(&buf) {
                Ok(()) => {
                    metrics.events.with_label_values(&[kind]).inc_by(n);
                    waiting.drain(..).for_each(|w| {
                        let _ = w.send(());
                    });
                }
                Err(e) => {
                    // The waiting flows hear nothing (their senders dropped) and go on.
                    waiting.clear();
                    metrics.events_dropped.with_label_values(&[kind]).inc_by(n);
                    tracing::error!(file = %path.display(), error = %e, "cannot write {kind} log");
                }
            }
            // Let the next lines gather while this thread sleeps rather than parks on the
            // queue: a sender then only pushes, where waking a parked writer costs a futex call
            // and a context switch per request. Bounds wake-ups to ~500/s; a line waits at
            // most this long. A flow waiting for its threat events wakes the writer at once
            // (`unpark`): only flows with findings pay that wake-up.
            std::thread::park_timeout(WRITE_LINGER);
        }
    })
}

/// The writer's thread, once it runs (a flow waiting for its events unparks it).
type WriterThread = Arc<std::sync::OnceLock<std::thread::Thread>>;

/// Lines written per `write` at most.
const WRITE_BATCH: u64 = 4096;
/// How long a writer lets lines gather after each write.
const WRITE_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

impl EventSink {
    /// Opens both files (creating folders) and starts their writers, and the MSS sinks when
    /// `mss` is set.
    pub async fn open(
        events: &Path,
        comm_log: &Path,
        queue: usize,
        metrics: Arc<Metrics>,
        mss: Option<(&MssConfig, Observer)>,
    ) -> Result<(EventSink, EventWriters)> {
        let (mss, mss_tasks) = match mss {
            None => (None, None),
            Some((cfg, observer)) => {
                let m =
                    MssMetrics::register(&metrics.registry).map_err(|e| ProxyError::Config {
                        file: cfg.spool_dir.clone(),
                        message: format!("mss metrics: {e}"),
                    })?;
                let (mss, tasks) =
                    Mss::start(cfg, observer, m).map_err(|e| ProxyError::Config {
                        file: cfg.spool_dir.clone(),
                        message: e.to_string(),
                    })?;
                (Some(mss), Some(tasks))
            }
        };
        let ef = open_append(events)?;
        let cf = open_append(comm_log)?;
        let (ttx, trx) = mpsc::channel(queue);
        let (ftx, frx) = mpsc::channel(queue);
        let threat_writer = WriterThread::default();
        let tasks = vec![
            spawn_writer(
                events.to_path_buf(),
                ef,
                (trx, Arc::clone(&threat_writer)),
                Arc::clone(&metrics),
                "threat",
            ),
            spawn_writer(
                comm_log.to_path_buf(),
                cf,
                (frx, WriterThread::default()),
                Arc::clone(&metrics),
                "flow",
            ),
        ];
        Ok((
            EventSink {
                threats: ttx,
                threat_writer,
                flows: ftx,
                metrics,
                mss,
            },
            EventWriters {
                tasks,
                mss: mss_tasks,
            },
        ))
    }

    /// Queues a threat event; waits while the queue is full.
    pub async fn threat(&self, event: &ThreatEvent) {
        self.threats(std::slice::from_ref(event)).await;
    }

    /// Writes threat events: the MSS sinks spool them first (one wait for all), then they go to
    /// the local file, so every event logged locally survives a SIGKILL in the spools; returns
    /// once the file has them (at most [`WRITE_WAIT`]).
    pub async fn threats(&self, events: &[ThreatEvent]) {
        if let Some(m) = &self.mss {
            m.threats(events).await;
        }
        let mut written = Vec::with_capacity(events.len());
        for event in events {
            let (tx, rx) = oneshot::channel();
            let line = Line {
                text: serde_json::to_string(event).unwrap_or_default(),
                written: Some(tx),
            };
            if self.threats.send(line).await.is_err() {
                self.metrics
                    .events_dropped
                    .with_label_values(&["threat"])
                    .inc();
                continue;
            }
            written.push(rx);
        }
        // In the file (the page cache) before the flow goes on: a block page or a response
        // never reaches the client ahead of its event, even if the process is killed next.
        if written.is_empty() {
            return;
        }
        if let Some(t) = self.threat_writer.get() {
            t.unpark();
        }
        let all = futures_util::future::join_all(written);
        if tokio::time::timeout(WRITE_WAIT, all).await.is_err() {
            tracing::warn!("threat events not written within {WRITE_WAIT:?}: the flow goes on");
        }
    }

    /// [`EventSink::threats`] where nothing can wait (no runtime): each event is queued if
    /// there is room, else counted as dropped.
    pub fn threats_now(&self, events: &[ThreatEvent]) {
        for event in events {
            let line = Line::plain(serde_json::to_string(event).unwrap_or_default());
            if self.threats.try_send(line).is_err() {
                self.metrics
                    .events_dropped
                    .with_label_values(&["threat"])
                    .inc();
            }
        }
    }

    /// Queues a communication-log line; drops it (counted) when the queue is full.
    pub fn flow(&self, line: &CommLog) {
        if let Some(m) = &self.mss {
            m.flow(line);
        }
        let line = Line::plain(serde_json::to_string(line).unwrap_or_default());
        if self.flows.try_send(line).is_err() {
            self.metrics
                .events_dropped
                .with_label_values(&["flow"])
                .inc();
        }
    }
}
