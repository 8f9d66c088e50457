//! `sekisho sandbox serve`: the worker. An HTTP API on its own listener (the boundary between
//! the gateway and the worker, which may run on another host):
//!
//! - `POST /tasks` with the file as the body: `202 {"task", "sha256", "status": "queued"}`, or
//!   `200` with `"status": "done", "cached": true` and the report when the verdict cache holds
//!   one for the sample and the current rules; `413` past `max_file_bytes`; `503` with
//!   `Retry-After` when the queue is full.
//! - `GET /tasks/ID`: `{"task", "status": queued | running | done | failed, "report"?,
//!   "error"?}`; `404` for an unknown or forgotten task.
//! - `GET /healthz`: `200 ok` when the host tools are installed, else `503` naming the missing one.
//! - `GET /metrics`: Prometheus text.
//!
//! With `tls_cert` and `tls_key` the API is served over TLS; with `token_file` every request
//! but `GET /healthz` needs `Authorization: Bearer TOKEN` (else `401`).
//!
//! A bounded queue feeds `slots` detonations at a time; reports are kept for the last
//! `tasks_kept` tasks and in the verdict cache. A reload (SIGHUP in `sekisho sandbox serve`)
//! reads the behaviour rules again: a set with an error is refused, each error named with
//! file and line, and the rules in use stay; detonations already running finish under the
//! rules they started with.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cache::{Ttl, VerdictCache};
use crate::detonate::{hex, Limits, Sandbox, Tools};
use crate::report::Report;
use crate::rules::Rules;

/// The worker's `[sandbox]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Behaviour rule files or folders (relative to the config file).
    #[serde(default = "default_rules")]
    pub rules: Vec<PathBuf>,
    /// Detonations at a time.
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// Files waiting at most.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Each detonation's deadline.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Largest file accepted.
    #[serde(default = "default_max_file")]
    pub max_file_bytes: usize,
    /// Where task folders are made (default: the system's temporary folder).
    pub work_dir: Option<PathBuf>,
    /// Reports the verdict cache holds at most.
    #[serde(default = "default_cache")]
    pub cache_entries: usize,
    /// Bytes of reports (their JSON size) the verdict cache holds at most.
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// Hours a malicious verdict is reused.
    #[serde(default = "default_malicious_hours")]
    pub malicious_ttl_hours: u64,
    /// Hours any other verdict is reused.
    #[serde(default = "default_clean_hours")]
    pub clean_ttl_hours: u64,
    /// Finished tasks whose reports `GET /tasks/ID` still answers.
    #[serde(default = "default_kept")]
    pub tasks_kept: usize,
    /// The API's certificate chain (PEM): with `tls_key`, the API is served over TLS.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// A file holding the token every request but `GET /healthz` must carry
    /// (`Authorization: Bearer TOKEN`).
    pub token_file: Option<PathBuf>,
    /// The file's `[store]` table: with Redis, verdicts are shared by every worker using it.
    #[serde(skip)]
    pub store: Option<sekisho_core::StoreConfig>,
}

fn default_rules() -> Vec<PathBuf> {
    vec![PathBuf::from("rules/sandbox")]
}
fn default_slots() -> usize {
    2
}
fn default_queue() -> usize {
    64
}
fn default_timeout() -> u64 {
    20
}
fn default_max_file() -> usize {
    32 << 20
}
fn default_cache() -> usize {
    100_000
}
fn default_cache_bytes() -> u64 {
    256 << 20
}
fn default_malicious_hours() -> u64 {
    30 * 24
}
fn default_clean_hours() -> u64 {
    24
}
fn default_kept() -> usize {
    10_000
}

#[derive(Deserialize)]
struct File {
    sandbox: WorkerConfig,
}

/// A config error naming the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl WorkerConfig {
    /// Reads the `[sandbox]` table of `path` (other tables are ignored); relative paths are
    /// resolved beside the file.
    pub fn load(path: &Path) -> Result<WorkerConfig, ConfigError> {
        let err = |message: String| ConfigError {
            file: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let value: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let mut only = toml::Table::new();
        let table = value
            .get("sandbox")
            .ok_or_else(|| err("no [sandbox] table (listen = \"127.0.0.1:8470\")".into()))?;
        only.insert("sandbox".into(), table.clone());
        let file: File = only
            .try_into()
            .map_err(|e: toml::de::Error| err(format!("[sandbox]: {}", e.message())))?;
        let mut c = file.sandbox;
        if let Some(t) = value.get("store") {
            let st: sekisho_core::StoreConfig = t
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| err(format!("[store]: {}", e.message())))?;
            st.validate().map_err(err)?;
            c.store = Some(st);
        }
        if c.slots == 0
            || c.queue == 0
            || c.timeout_secs == 0
            || c.tasks_kept == 0
            || c.cache_entries == 0
            || c.cache_bytes == 0
        {
            return Err(err("[sandbox]: slots, queue, timeout_secs, tasks_kept, cache_entries and cache_bytes must be at least 1".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for r in &mut c.rules {
            if r.is_relative() {
                *r = base.join(&*r);
            }
        }
        for p in [
            &mut c.work_dir,
            &mut c.tls_cert,
            &mut c.tls_key,
            &mut c.token_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(err("[sandbox]: tls_cert and tls_key go together".into()));
        }
        Ok(c)
    }
}

/// A task's state.
#[derive(Clone)]
enum Task {
    Queued,
    Running,
    Done(Arc<Report>, bool),
    Failed(String),
}

/// Tasks by id, the finished ones forgotten oldest first past the bound.
struct Tasks {
    map: HashMap<String, Task>,
    done: VecDeque<String>,
    kept: usize,
}

impl Tasks {
    fn set(&mut self, id: &str, t: Task) {
        let finished = matches!(t, Task::Done(..) | Task::Failed(_));
        self.map.insert(id.to_string(), t);
        if finished {
            self.done.push_back(id.to_string());
            while self.done.len() > self.kept {
                if let Some(old) = self.done.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }
}

struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    tasks: IntCounterVec,
    verdicts: IntCounterVec,
    queue: IntGauge,
    seconds: Histogram,
}

impl Metrics {
    fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let tasks = IntCounterVec::new(
            Opts::new(
                "sekisho_sandbox_tasks_total",
                "Files submitted, by outcome (queued, cached, rejected, too_large, done, failed)",
            ),
            &["outcome"],
        )?;
        let verdicts = IntCounterVec::new(
            Opts::new("sekisho_sandbox_verdicts_total", "Reports made, by verdict"),
            &["verdict"],
        )?;
        let queue = IntGauge::new("sekisho_sandbox_queue_depth", "Files waiting or running")?;
        let seconds = Histogram::with_opts(
            HistogramOpts::new("sekisho_sandbox_detonation_seconds", "Time per detonation")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "sekisho_sandbox_rule_reloads_total",
                "Behaviour rule reloads, by outcome (ok, refused)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(tasks.clone()))?;
        registry.register(Box::new(verdicts.clone()))?;
        registry.register(Box::new(queue.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Metrics {
            registry,
            reloads,
            tasks,
            verdicts,
            queue,
            seconds,
        })
    }

    fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// The worker's shared state.
struct Worker {
    sandbox: Sandbox,
    rules: arc_swap::ArcSwap<Rules>,
    cache: VerdictCache,
    /// The cluster's store (`[store]` with Redis): verdicts other workers found.
    shared: Option<Arc<sekisho_store::Store>>,
    tasks: Mutex<Tasks>,
    queue: tokio::sync::mpsc::Sender<(String, Vec<u8>)>,
    metrics: Metrics,
    max_file: usize,
    /// Uploads being read at once (a permit is taken before the body is read: the worker's
    /// memory for bodies is bounded by this times `max_file_bytes`).
    uploads: tokio::sync::Semaphore,
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The behaviour rules do not load.
    #[error("behaviour rules:\n{0}")]
    Rules(String),
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// The `[store]` could not be opened.
    #[error("{0}")]
    Store(sekisho_store::StoreError),
    /// The metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The TLS certificate, key or token file could not be used.
    #[error("{0}")]
    Guard(String),
}

/// The behaviour rules, or every error with file and line.
fn load_rules(paths: &[PathBuf]) -> Result<Rules, String> {
    Rules::load(paths).map_err(|errors| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Reads the behaviour rules again; keeps those in use when the new set has an error.
fn reload(w: &Worker, paths: &[PathBuf]) {
    match load_rules(paths) {
        Ok(rules) => {
            eprintln!(
                "behaviour rules reloaded: {} signatures, version {}",
                rules.signatures.len(),
                rules.version
            );
            w.rules.store(Arc::new(rules));
            w.metrics.reloads.with_label_values(&["ok"]).inc();
        }
        Err(errors) => {
            eprintln!("behaviour rules not reloaded (the rules in use stay):\n{errors}");
            w.metrics.reloads.with_label_values(&["refused"]).inc();
        }
    }
}

/// Binds the API and serves until `stop` resolves; calls `ready` with the bound address; each
/// message on `reloads` reads the behaviour rules again.
pub async fn serve(
    c: WorkerConfig,
    ready: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()>,
    mut reloads: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), ServeError> {
    let rules = load_rules(&c.rules).map_err(ServeError::Rules)?;
    let tls = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::guard::acceptor(cert, key).map_err(ServeError::Guard)?)
        }
        _ => None,
    };
    let token: Option<Arc<str>> = match &c.token_file {
        Some(p) => Some(crate::guard::token(p).map_err(ServeError::Guard)?.into()),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .map_err(|e| ServeError::Listen(c.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(c.listen, e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(c.queue);
    let metrics = Metrics::new()?;
    let shared = match c
        .store
        .as_ref()
        .filter(|s| s.backend == sekisho_core::StoreBackend::Redis)
    {
        Some(sc) => {
            let store = sekisho_store::Store::open(sc).map_err(ServeError::Store)?;
            for col in store.collectors() {
                metrics.registry.register(col)?;
            }
            Some(store)
        }
        None => None,
    };
    let worker = Arc::new(Worker {
        sandbox: Sandbox {
            tools: Tools::default(),
            limits: Limits {
                timeout: Duration::from_secs(c.timeout_secs),
                cpu_secs: c.timeout_secs,
                ..Limits::default()
            },
            work_dir: c
                .work_dir
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("sekisho-sandbox")),
            keep: false,
            hidden: [&c.tls_key, &c.token_file]
                .into_iter()
                .flatten()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect(),
        },
        rules: arc_swap::ArcSwap::from_pointee(rules),
        cache: VerdictCache::new(
            c.cache_entries,
            c.cache_bytes,
            Ttl {
                malicious: Duration::from_secs(c.malicious_ttl_hours * 3600),
                other: Duration::from_secs(c.clean_ttl_hours * 3600),
            },
        ),
        tasks: Mutex::new(Tasks {
            map: HashMap::new(),
            done: VecDeque::new(),
            kept: c.tasks_kept,
        }),
        queue: tx,
        metrics,
        shared,
        max_file: c.max_file_bytes,
        uploads: tokio::sync::Semaphore::new(c.slots + c.queue),
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..c.slots {
        tokio::spawn(slot(Arc::clone(&worker), Arc::clone(&rx)));
    }
    ready(addr);
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            _ = &mut stop => return Ok(()),
            Some(()) = reloads.recv() => {
                reload(&worker, &c.rules);
                continue;
            }
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let (w, tls, token) = (Arc::clone(&worker), tls.clone(), token.clone());
        tokio::spawn(async move {
            match tls {
                None => connection(tcp, w, token).await,
                Some(acceptor) => {
                    let shake = tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await;
                    if let Ok(Ok(s)) = shake {
                        connection(s, w, token).await;
                    }
                }
            }
        });
    }
}

/// How long a client has for its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves one connection's requests (120 s at most).
async fn connection<S>(io: S, w: Arc<Worker>, token: Option<Arc<str>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (w, token) = (Arc::clone(&w), token.clone());
        async move {
            let open = req.method() == Method::GET && req.uri().path() == "/healthz";
            let given = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            let answer = match &token {
                Some(t) if !open && !crate::guard::authorized(given, t) => unauthorized(),
                _ => handle(&w, req).await,
            };
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc);
    let _ = tokio::time::timeout(Duration::from_secs(120), conn).await;
}

/// `401` asking for the bearer token.
fn unauthorized() -> Answer {
    let mut a = json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({ "error": "a bearer token is required" }),
    );
    a.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        hyper::header::HeaderValue::from_static("Bearer"),
    );
    a
}

/// The queue's receiving end, shared by the slots.
type Queue = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(String, Vec<u8>)>>>;

/// One detonation slot: takes queued files one at a time.
async fn slot(w: Arc<Worker>, rx: Queue) {
    loop {
        let Some((id, sample)) = rx.lock().await.recv().await else {
            return;
        };
        w.set(&id, Task::Running);
        let started = Instant::now();
        let w2 = Arc::clone(&w);
        let result =
            tokio::task::spawn_blocking(move || w2.sandbox.analyze(&sample, &w2.rules.load()))
                .await;
        w.metrics.seconds.observe(started.elapsed().as_secs_f64());
        w.metrics.queue.dec();
        match result {
            Ok(Ok(report)) => {
                w.cache.put(&report);
                share(&w, &report).await;
                w.metrics.tasks.with_label_values(&["done"]).inc();
                w.metrics
                    .verdicts
                    .with_label_values(&[report.verdict.name()])
                    .inc();
                w.set(&id, Task::Done(Arc::new(report), false));
            }
            Ok(Err(e)) => w.fail(&id, e.to_string()),
            Err(e) => w.fail(&id, format!("the detonation stopped: {e}")),
        }
    }
}

impl Worker {
    fn set(&self, id: &str, t: Task) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.set(id, t);
        }
    }

    fn fail(&self, id: &str, why: String) {
        self.metrics.tasks.with_label_values(&["failed"]).inc();
        self.set(id, Task::Failed(why));
    }

    fn get(&self, id: &str) -> Option<Task> {
        self.tasks.lock().ok()?.map.get(id).cloned()
    }
}

type Answer = Response<Full<Bytes>>;

fn json(status: StatusCode, v: &serde_json::Value) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn text(status: StatusCode, body: String) -> Answer {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn handle(w: &Worker, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "/tasks") => submit(w, req).await,
        (Method::GET, "/healthz") => match w.sandbox.tools.missing() {
            None => text(StatusCode::OK, "ok\n".into()),
            Some(m) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} is not installed\n", m.display()),
            ),
        },
        (Method::GET, "/metrics") => text(StatusCode::OK, w.metrics.render()),
        (Method::GET, p) if p.starts_with("/tasks/") => status(w, &p["/tasks/".len()..]),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

async fn submit(w: &Worker, req: Request<Incoming>) -> Answer {
    let Ok(_reading) = w.uploads.try_acquire() else {
        return busy(w);
    };
    let body = match Limited::new(req.into_body(), w.max_file).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            w.metrics.tasks.with_label_values(&["too_large"]).inc();
            let msg = format!("the file is over {} bytes or was cut: {e}", w.max_file);
            return json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &serde_json::json!({ "error": msg }),
            );
        }
    };
    let sha = hex(&Sha256::digest(&body));
    let id = uuid::Uuid::new_v4().to_string();
    if let Some(report) = w.cache.get(&sha, &w.rules.load().version) {
        // Answered at once; not kept as a task (cheap cached answers must not push out
        // finished tasks whose submitters are still asking).
        w.metrics.tasks.with_label_values(&["cached"]).inc();
        let answer = serde_json::json!({
            "task": id, "sha256": sha, "status": "done", "cached": true, "report": report,
        });
        return json(StatusCode::OK, &answer);
    }
    if let Some(report) = shared_verdict(w, &sha).await {
        w.metrics.tasks.with_label_values(&["cached"]).inc();
        let answer = serde_json::json!({
            "task": id, "sha256": sha, "status": "done", "cached": true, "report": report,
        });
        return json(StatusCode::OK, &answer);
    }
    w.set(&id, Task::Queued);
    w.metrics.queue.inc();
    if w.queue.try_send((id.clone(), body.to_vec())).is_err() {
        w.metrics.queue.dec();
        if let Ok(mut t) = w.tasks.lock() {
            t.map.remove(&id);
        }
        return busy(w);
    }
    w.metrics.tasks.with_label_values(&["queued"]).inc();
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "task": id, "sha256": sha, "status": "queued" }),
    )
}

/// `503` with `Retry-After`: the queue (or the uploads being read) is full.
fn busy(w: &Worker) -> Answer {
    w.metrics.tasks.with_label_values(&["rejected"]).inc();
    let mut r = json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({ "error": "the queue is full" }),
    );
    r.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("5"),
    );
    r
}

fn status(w: &Worker, id: &str) -> Answer {
    let Some(t) = w.get(id) else {
        return json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({ "error": "no such task" }),
        );
    };
    let v = match t {
        Task::Queued => serde_json::json!({ "task": id, "status": "queued" }),
        Task::Running => serde_json::json!({ "task": id, "status": "running" }),
        Task::Done(report, cached) => serde_json::json!({
            "task": id, "status": "done", "cached": cached, "report": &*report,
        }),
        Task::Failed(e) => serde_json::json!({ "task": id, "status": "failed", "error": e }),
    };
    json(StatusCode::OK, &v)
}

/// The key of a verdict in the cluster's store.
fn shared_key(sha256: &str, version: &str) -> String {
    format!("sandbox:{version}:{sha256}")
}

/// A verdict another worker of the cluster found for this sample under these rules.
async fn shared_verdict(w: &Worker, sha256: &str) -> Option<serde_json::Value> {
    let store = w.shared.as_ref()?;
    let key = shared_key(sha256, &w.rules.load().version);
    let bytes = store.get_async("sandbox", &key).await?;
    let report: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    // Only a report of this very sample under these rules answers for it.
    let same = report["sha256"] == sha256 && report["rules_version"] == w.rules.load().version;
    same.then_some(report)
}

/// Hands a new verdict to the other workers of the cluster, for as long as this one keeps it.
async fn share(w: &Worker, report: &crate::report::Report) {
    let Some(store) = &w.shared else {
        return;
    };
    let Ok(bytes) = serde_json::to_vec(report) else {
        return;
    };
    let key = shared_key(&report.sha256, &report.rules_version);
    store
        .share_async("sandbox", &key, &bytes, w.cache.ttl_of(report))
        .await;
}
