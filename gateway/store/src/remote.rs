//! The Redis side: one thread with a single-threaded runtime, a multiplexed connection for
//! keys and a pub/sub connection for the bus. Callers queue a call (bounded) and wait for the
//! answer for at most the store's timeout.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use sekisho_core::{BusHandler, StoreConfig};
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, StoreMetrics};

/// A call on keys.
pub(crate) enum Op {
    Get(String),
    Set(String, Vec<u8>, Duration),
    Take(String),
}

impl Op {
    fn label(&self) -> &'static str {
        match self {
            Op::Get(_) => "get",
            Op::Set(..) => "set",
            Op::Take(_) => "take",
        }
    }
}

/// Redis's answer.
pub(crate) enum Answer {
    Value(Option<Vec<u8>>),
    Done,
}

/// Why Redis did not answer: the fallback's reason label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Why {
    /// A recent failure: not asked until `retry_secs` pass.
    Down,
    /// No answer within the timeout.
    Timeout,
    /// Redis answered with an error, or the connection broke.
    Error,
    /// Too many calls waiting.
    Busy,
}

impl Why {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Why::Down => "down",
            Why::Timeout => "timeout",
            Why::Error => "error",
            Why::Busy => "busy",
        }
    }
}

type Outcome = Result<Answer, Why>;

enum Reply {
    Blocking(std::sync::mpsc::SyncSender<Outcome>),
    Async(oneshot::Sender<Outcome>),
}

impl Reply {
    fn send(self, o: Outcome) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.try_send(o);
            }
            Reply::Async(tx) => {
                let _ = tx.send(o);
            }
        }
    }
}

/// A call and the moment its caller stops waiting (a call past it is not sent: a `GETDEL`
/// nobody waits for would spend a token the caller was refused).
struct Call(Op, Reply, Instant);

/// Bus frames waiting to be published at most; past it new ones are dropped (counted).
const BUS_QUEUE: usize = 1024;
/// Consecutive calls without an answer in time after which Redis is treated as down.
const TIMEOUTS_TO_DOWN: u32 = 3;

type Handlers = Arc<RwLock<HashMap<&'static str, BusHandler>>>;

/// The handle callers hold.
pub(crate) struct Remote {
    tx: mpsc::Sender<Call>,
    bus: mpsc::Sender<Vec<u8>>,
    health: Arc<Health>,
    handlers: Handlers,
    node: u64,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("node", &self.node).finish()
    }
}

/// Whether Redis may be asked now.
struct Health {
    down_until: Mutex<Option<Instant>>,
    retry: Duration,
    /// Calls in a row that got no answer in time.
    timeouts: std::sync::atomic::AtomicU32,
}

impl Health {
    fn is_down(&self) -> bool {
        let g = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        matches!(*g, Some(t) if t > Instant::now())
    }

    fn failed(&self) {
        let until = Instant::now().checked_add(self.retry);
        *self.down_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// Counts an answer that came (or not) in time; a run of misses marks Redis down.
    fn answered(&self, in_time: bool) {
        if in_time {
            self.timeouts.store(0, Ordering::Relaxed);
        } else if self.timeouts.fetch_add(1, Ordering::Relaxed) + 1 >= TIMEOUTS_TO_DOWN {
            self.timeouts.store(0, Ordering::Relaxed);
            self.failed();
        }
    }
}

impl Remote {
    pub(crate) fn start(cfg: &StoreConfig, metrics: StoreMetrics) -> Result<Remote, StoreError> {
        let url = cfg.url.clone().unwrap_or_default();
        let client =
            redis::Client::open(url.as_str()).map_err(|e| StoreError::Url(e.to_string()))?;
        let (tx, rx) = mpsc::channel(cfg.queue);
        let (bus, bus_rx) = mpsc::channel(BUS_QUEUE);
        let health = Arc::new(Health {
            down_until: Mutex::new(None),
            retry: Duration::from_secs(cfg.retry_secs),
            timeouts: Default::default(),
        });
        let handlers: Handlers = Arc::default();
        let node = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let worker = Worker {
            client,
            prefix: cfg.prefix.clone(),
            timeout: cfg.timeout(),
            health: health.clone(),
            handlers: handlers.clone(),
            node,
            metrics: metrics.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(cfg.queue)),
        };
        std::thread::Builder::new()
            .name("sekisho-store".into())
            .spawn(move || worker.run(rx, bus_rx))
            .map_err(StoreError::Thread)?;
        Ok(Remote {
            tx,
            bus,
            health,
            handlers,
            node,
            metrics,
        })
    }

    fn queue(&self, op: Op, reply: Reply, timeout: Duration) -> Result<(), Why> {
        if self.health.is_down() {
            return Err(Why::Down);
        }
        let deadline = Instant::now() + timeout;
        self.tx
            .try_send(Call(op, reply, deadline))
            .map_err(|_| Why::Busy)
    }

    /// Asks and blocks this thread for at most `timeout`.
    pub(crate) fn ask(&self, op: Op, timeout: Duration) -> Outcome {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.queue(op, Reply::Blocking(tx), timeout)?;
        let o = match rx.recv_timeout(timeout) {
            Ok(o) => o,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Why::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Why::Error),
        };
        self.health.answered(!matches!(o, Err(Why::Timeout)));
        o
    }

    /// Asks and waits on the caller's runtime for at most `timeout`.
    pub(crate) async fn ask_async(&self, op: Op, timeout: Duration) -> Outcome {
        let (tx, rx) = oneshot::channel();
        self.queue(op, Reply::Async(tx), timeout)?;
        let o = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => Err(Why::Error),
            Err(_) => Err(Why::Timeout),
        };
        self.health.answered(!matches!(o, Err(Why::Timeout)));
        o
    }

    pub(crate) fn publish(&self, topic: &'static str, payload: Vec<u8>) {
        if self.health.is_down() {
            return self.metrics.bus("dropped");
        }
        let frame = frame(self.node, topic, &payload);
        if self.bus.try_send(frame).is_err() {
            self.metrics.bus("dropped");
        }
    }

    pub(crate) fn subscribe(&self, topic: &'static str, handler: BusHandler) {
        self.handlers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic, handler);
    }
}

/// A bus message: the sending node, the topic, the payload.
fn frame(node: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(9 + topic.len() + payload.len());
    f.extend_from_slice(&node.to_be_bytes());
    f.push(u8::try_from(topic.len()).unwrap_or(u8::MAX));
    f.extend_from_slice(&topic.as_bytes()[..topic.len().min(255)]);
    f.extend_from_slice(payload);
    f
}

/// The sender, topic and payload of a frame; `None` for what is not one.
fn unframe(f: &[u8]) -> Option<(u64, &str, &[u8])> {
    let node = u64::from_be_bytes(f.get(..8)?.try_into().ok()?);
    let len = usize::from(*f.get(8)?);
    let topic = std::str::from_utf8(f.get(9..9 + len)?).ok()?;
    Some((node, topic, &f[9 + len..]))
}

/// The thread's side.
struct Worker {
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    health: Arc<Health>,
    handlers: Handlers,
    node: u64,
    metrics: StoreMetrics,
    /// Calls sent to Redis and not yet answered, at most `queue`.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// What the worker loop takes next.
enum Next {
    Call(Call),
    Publish(Vec<u8>),
}

impl Worker {
    fn run(self, mut rx: mpsc::Receiver<Call>, mut bus: mpsc::Receiver<Vec<u8>>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("store: no runtime for the Redis client: {e}");
                self.health.failed();
                return;
            }
        };
        let this = Arc::new(self);
        rt.block_on(async move {
            tokio::spawn(this.clone().listen());
            let broken = Arc::new(AtomicBool::new(false));
            let mut conn: Option<MultiplexedConnection> = None;
            loop {
                let next = tokio::select! {
                    c = rx.recv() => match c {
                        Some(c) => Next::Call(c),
                        None => return,
                    },
                    Some(f) = bus.recv() => Next::Publish(f),
                };
                if let Next::Call(Call(_, _, deadline)) = &next {
                    if Instant::now() >= *deadline {
                        continue; // its caller has fallen back already
                    }
                }
                if broken.swap(false, Ordering::Relaxed) {
                    conn = None;
                    this.health.failed();
                    this.metrics.up(false);
                }
                let Some(c) = this.connection(&mut conn).await else {
                    match next {
                        Next::Call(Call(_, reply, _)) => reply.send(Err(Why::Down)),
                        Next::Publish(_) => this.metrics.bus("dropped"),
                    }
                    continue;
                };
                let Ok(permit) = this.in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (w, broken) = (this.clone(), broken.clone());
                tokio::spawn(async move {
                    w.serve(c, next, broken).await;
                    drop(permit);
                });
            }
        });
    }

    /// The connection, made if there is none and Redis is not marked down.
    async fn connection(
        &self,
        conn: &mut Option<MultiplexedConnection>,
    ) -> Option<MultiplexedConnection> {
        if let Some(c) = conn {
            return Some(c.clone());
        }
        if self.health.is_down() {
            return None;
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(self.timeout.max(Duration::from_millis(200))));
        match self
            .client
            .get_multiplexed_async_connection_with_config(&cfg)
            .await
        {
            Ok(c) => {
                tracing::info!("store: connected to Redis");
                self.metrics.up(true);
                *conn = Some(c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!("store: Redis unreachable ({e}); this node's own table answers");
                self.health.failed();
                self.metrics.up(false);
                None
            }
        }
    }

    async fn serve(
        self: Arc<Self>,
        mut c: MultiplexedConnection,
        next: Next,
        broken: Arc<AtomicBool>,
    ) {
        let (label, outcome, reply) = match next {
            Next::Call(Call(op, reply, _)) => {
                let label = op.label();
                (label, self.call(&mut c, op).await, Some(reply))
            }
            Next::Publish(frame) => {
                let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(format!("{}bus", self.prefix))
                    .arg(frame)
                    .query_async(&mut c)
                    .await;
                ("publish", r.map(|_| Answer::Done), None)
            }
        };
        match outcome {
            Ok(a) => {
                self.metrics.remote(label);
                if label == "publish" {
                    self.metrics.bus("sent");
                }
                if let Some(r) = reply {
                    r.send(Ok(a));
                }
            }
            Err(e) => {
                tracing::debug!("store: Redis {label} failed: {e}");
                // A reply such as READONLY or an unknown command is this call's error; only a
                // lost or silent connection is made again.
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    broken.store(true, Ordering::Relaxed);
                }
                match reply {
                    Some(r) => r.send(Err(Why::Error)),
                    None => self.metrics.bus("dropped"),
                }
            }
        }
    }

    async fn call(&self, c: &mut MultiplexedConnection, op: Op) -> redis::RedisResult<Answer> {
        match op {
            Op::Get(k) => {
                let v: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(format!("{}{k}", self.prefix))
                    .query_async(c)
                    .await?;
                Ok(Answer::Value(v))
            }
            Op::Set(k, v, ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                let () = redis::cmd("SET")
                    .arg(format!("{}{k}", self.prefix))
                    .arg(v)
                    .arg("PX")
                    .arg(ms)
                    .query_async(c)
                    .await?;
                Ok(Answer::Done)
            }
            Op::Take(k) => {
                let v: Option<Vec<u8>> = redis::cmd("GETDEL")
                    .arg(format!("{}{k}", self.prefix))
                    .query_async(c)
                    .await?;
                Ok(Answer::Value(v))
            }
        }
    }

    /// The bus: subscribes, hands other nodes' messages to their topic's handler, pings every
    /// 5 s (a connection that went silent is made again), and subscribes again a second after
    /// the connection is lost. Messages sent while it was away are not replayed.
    async fn listen(self: Arc<Self>) {
        let channel = format!("{}bus", self.prefix);
        let bound = Duration::from_secs(2);
        loop {
            if let Ok(Ok(ps)) = tokio::time::timeout(bound, self.client.get_async_pubsub()).await {
                let (mut sink, mut stream) = ps.split();
                if let Ok(Ok(())) = tokio::time::timeout(bound, sink.subscribe(&channel)).await {
                    self.metrics.bus_up(true);
                    let mut ping = tokio::time::interval(Duration::from_secs(5));
                    loop {
                        tokio::select! {
                            m = stream.next() => match m {
                                Some(m) => self.dispatch(m.get_payload_bytes()),
                                None => break,
                            },
                            _ = ping.tick() => {
                                let p = tokio::time::timeout(bound, sink.ping::<redis::Value>()).await;
                                if !matches!(p, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
            self.metrics.bus_up(false);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn dispatch(&self, frame: &[u8]) {
        let Some((node, topic, payload)) = unframe(frame) else {
            return;
        };
        if node == self.node {
            return;
        }
        let h = self
            .handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned();
        if let Some(h) = h {
            self.metrics.bus("received");
            // A handler that panics on a payload must not end the bus for good.
            let run = std::panic::AssertUnwindSafe(|| h(payload));
            if std::panic::catch_unwind(run).is_err() {
                tracing::warn!("store: the {topic} handler failed on a bus message");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_junk_is_ignored() {
        let f = frame(7, "ips.xbits", b"payload");
        assert_eq!(unframe(&f), Some((7, "ips.xbits", &b"payload"[..])));
        assert_eq!(unframe(b"short"), None);
        let mut bad = frame(7, "t", b"");
        bad[8] = 200;
        assert_eq!(unframe(&bad), None);
    }
}
