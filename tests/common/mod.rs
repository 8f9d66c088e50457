//! Shared end-to-end fixtures: a test PKI, a local HTTPS/HTTP origin, and the real `sekisho`
//! binary started with a generated config. Everything binds to loopback.
#![allow(dead_code, clippy::unwrap_used)]

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod redis;
pub mod reverse;
pub mod schema;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

mod public_corpora;
#[allow(unused_imports)] // not every test binary that shares this module reads the corpora
pub use public_corpora::{corpora, corpus};

pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("sekisho-e2e-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test CA and a server certificate it issued.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    /// The server certificate (PEM).
    pub cert_pem: String,
    /// Its key (PKCS#8 PEM).
    pub key_pem: String,
}

impl TestPki {
    pub fn new(ca_name: &str, sans: &[&str]) -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, ca_name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, sans[0]);
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(s.to_string().try_into().unwrap()),
            })
            .collect();
        let cert = p.signed_by(&key, &issuer).unwrap();
        TestPki {
            ca_pem: ca_cert.pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn server_config(&self) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

/// The marker `/drip-marked/S` ends with (a YARA rule in a test can look for it).
pub const TAIL_MARKER: &str = "SEKISHO-TAIL-MARKER-7f3a";

/// Every request an origin answered: `METHOD /path`, in order (bounded).
pub type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// Static files an origin serves: path → (headers, body).
pub type Files = std::collections::HashMap<String, (Vec<(String, String)>, Vec<u8>)>;

/// The origin's routes (after `files`):
/// - `/hello` → `hello`
/// - `/bytes/N` → N bytes (`x`), streamed in 64 KiB chunks
/// - `/count` → consumes the request body, answers its length
/// - `/headers` → the request headers, one `name: value` per line (lower-case names)
/// - `/upgrade` → 101 to protocol `echo`, then echoes bytes
/// - `/proto` → the HTTP version the origin saw
/// - `/sleep/S` → answers after S seconds
/// - `/pause/S` → `a`, then after S seconds `b` (a body that pauses)
/// - `/sse/N` → N server-sent events (`text/event-stream`), one a second, the first at once
/// - `/reject` → 413 at once, without reading the request body
/// - `/drip/S` → ten 64 KiB chunks of `x` over S seconds (a slow download, with Content-Length)
/// - `/drip-marked/S` → the same with [`TAIL_MARKER`] at the end of the last chunk
async fn route(
    files: Arc<Files>,
    seen: Seen,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Ok(mut s) = seen.lock() {
        if s.len() < 100_000 {
            s.push(format!("{} {}", req.method(), path));
        }
    }
    if let Some((headers, body)) = files.get(&path) {
        let mut r = Response::builder();
        for (k, v) in headers {
            r = r.header(k.as_str(), v.as_str());
        }
        return Ok(r.body(full(body.clone())).unwrap());
    }
    if path == "/upgrade" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(full(Bytes::new()))
            .unwrap());
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..n.div_ceil(64 * 1024)).map(move |i| {
            let len = (n - i * 64 * 1024).min(64 * 1024);
            Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
        });
        let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)));
        return Ok(Response::builder()
            .header("content-length", n.to_string())
            .body(body)
            .unwrap());
    }
    if let Some(secs) = path.strip_prefix("/pause/") {
        let secs: u64 = secs.parse().unwrap_or(1);
        let parts = futures_util::stream::unfold(0u8, move |i| async move {
            match i {
                0 => Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"a"))),
                    1,
                )),
                1 => {
                    tokio::time::sleep(Duration::from_secs(secs)).await;
                    Some((Ok(Frame::data(Bytes::from_static(b"b"))), 2))
                }
                _ => None,
            }
        });
        return Ok(Response::new(BodyExt::boxed(StreamBody::new(parts))));
    }
    if let Some(n) = path.strip_prefix("/sse/") {
        let n: u32 = n.parse().unwrap_or(1);
        let events = futures_util::stream::unfold(0u32, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let ev = Bytes::from(format!("data: event {i}\n\n"));
            Some((Ok::<_, Infallible>(Frame::data(ev)), i + 1))
        });
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(StreamBody::new(events)))
            .unwrap());
    }
    if let Some((marked, secs)) = path
        .strip_prefix("/drip/")
        .map(|s| (false, s))
        .or_else(|| path.strip_prefix("/drip-marked/").map(|s| (true, s)))
    {
        let gap = Duration::from_millis(secs.parse::<u64>().unwrap_or(1) * 100);
        let chunks = futures_util::stream::unfold(0u32, move |i| async move {
            if i >= 10 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let mut c = vec![b'x'; 64 * 1024];
            if marked && i == 9 {
                let at = c.len() - TAIL_MARKER.len();
                c[at..].copy_from_slice(TAIL_MARKER.as_bytes());
            }
            Some((Ok::<_, Infallible>(Frame::data(Bytes::from(c))), i + 1))
        });
        return Ok(Response::builder()
            .header("content-length", (10 * 64 * 1024).to_string())
            .body(BodyExt::boxed(StreamBody::new(chunks)))
            .unwrap());
    }
    if path == "/reject" {
        return Ok(Response::builder()
            .status(413)
            .header("connection", "close")
            .body(full("too large for this origin"))
            .unwrap());
    }
    if let Some(secs) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_secs(secs.parse().unwrap_or(1))).await;
        return Ok(Response::new(full("slept")));
    }
    let text = match path.as_str() {
        "/hello" => "hello".to_string(),
        "/proto" => format!("{:?}", req.version()),
        "/headers" => {
            let mut s = String::new();
            for (k, v) in req.headers() {
                s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
            }
            s
        }
        "/count" => {
            let mut n = 0usize;
            let mut body = req.into_body().into_data_stream();
            while let Some(Ok(c)) = body.next().await {
                n += c.len();
            }
            n.to_string()
        }
        _ => {
            return Ok(Response::builder()
                .status(404)
                .body(full("not found"))
                .unwrap())
        }
    };
    Ok(Response::new(full(text)))
}

/// A local origin on 127.0.0.1 (and [::1] on the same port when free), HTTPS when `tls` is given.
pub struct Origin {
    pub port: u16,
    /// The requests it answered.
    pub seen: Seen,
    /// The TCP connections it accepted.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Origin {
    pub async fn start(tls: Option<rustls::ServerConfig>) -> Origin {
        Origin::start_with_files(tls, Files::new()).await
    }

    /// An origin that also serves `files`.
    pub async fn start_with_files(tls: Option<rustls::ServerConfig>, files: Files) -> Origin {
        let files = Arc::new(files);
        let seen = Seen::default();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let mut socks = vec![v4];
        if let Ok(v6) = TcpListener::bind(("::1", port)).await {
            socks.push(v6);
        }
        let acceptor = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let tasks = socks
            .into_iter()
            .map(|sock| {
                let acceptor = acceptor.clone();
                let files = Arc::clone(&files);
                let seen = Arc::clone(&seen);
                let accepted = Arc::clone(&accepted);
                tokio::spawn(async move {
                    loop {
                        let Ok((tcp, _)) = sock.accept().await else {
                            continue;
                        };
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let acceptor = acceptor.clone();
                        let files = Arc::clone(&files);
                        let seen = Arc::clone(&seen);
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                route(Arc::clone(&files), Arc::clone(&seen), req)
                            });
                            let builder =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            match acceptor {
                                Some(a) => {
                                    if let Ok(tls) = a.accept(tcp).await {
                                        let _ = builder
                                            .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                                            .await;
                                    }
                                }
                                None => {
                                    let _ = builder
                                        .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                                        .await;
                                }
                            }
                        });
                    }
                })
            })
            .collect();
        Origin {
            port,
            seen,
            accepted,
            tasks,
        }
    }
}

/// The real `sekisho` binary, running with a generated config; killed on drop.
pub struct Gateway {
    pub child: Child,
    pub dir: TempDir,
    pub proxy: SocketAddr,
    pub proxy6: Option<SocketAddr>,
    /// Every listening address, in the order printed.
    pub all: Vec<SocketAddr>,
    pub metrics: SocketAddr,
    pub stderr: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Every event and flow line the test made must fit the index mapping.
        if !std::thread::panicking() {
            schema::check_file(&self.dir.path().join("events.jsonl"));
            schema::check_file(&self.dir.path().join("flows.jsonl"));
        }
    }
}

/// A started `sekisho run` and the addresses it printed.
pub struct Launched {
    pub child: Child,
    /// The first IPv4 listening address.
    pub proxy: SocketAddr,
    pub proxy6: Option<SocketAddr>,
    pub all: Vec<SocketAddr>,
    pub metrics: SocketAddr,
}

/// Runs `sekisho run --config cfg_path`, stderr appended to `stderr`, and reads its addresses.
fn launch(cfg_path: &Path, stderr: &Path) -> Launched {
    launch_env(cfg_path, stderr, &[])
}

/// [`launch`] with extra environment variables.
fn launch_env(cfg_path: &Path, stderr: &Path, env: &[(&str, &str)]) -> Launched {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(cfg_path)
        .envs(env.iter().copied())
        .stderr(err);
    launch_command(cmd, stderr)
}

/// Spawns `cmd` (a `sekisho run`, perhaps under a wrapper such as bwrap; its stderr set by the
/// caller to `stderr`) and reads the addresses it prints.
pub fn launch_command(mut cmd: Command, stderr: &Path) -> Launched {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let (mut proxy, mut proxy6, mut metrics) = (None, None, None);
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metrics.is_none() && Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["listening", _, a] => {
                let a: SocketAddr = a.parse().unwrap();
                all.push(a);
                if a.is_ipv4() {
                    proxy.get_or_insert(a);
                } else {
                    proxy6.get_or_insert(a);
                }
            }
            ["metrics", url] => {
                metrics = Some(
                    url.trim_start_matches("http://")
                        .trim_end_matches("/metrics")
                        .parse()
                        .unwrap(),
                )
            }
            _ => {}
        }
    }
    let Some(metrics) = metrics else {
        let _ = child.kill();
        panic!(
            "gateway did not start: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        );
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Launched {
        child,
        proxy: proxy.unwrap(),
        proxy6,
        all,
        metrics,
    }
}

/// `data` gzipped.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A zip holding `data` as `name`.
pub fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

/// The EICAR test file, assembled so the repository holds no complete copy.
pub fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

/// A TCP port free on 127.0.0.1 now (for servers a test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sekisho")
}

/// The `[policy]` lines that let a test gateway reach its origins on loopback at any port (the
/// default refuses loopback destinations and CONNECT beyond 443).
pub const LOOPBACK_ORIGINS: &str =
    "allow_networks = [\"127.0.0.0/8\", \"::1/128\"]\nconnect_ports = [\"1-65535\"]\n";

/// `extra` with [`LOOPBACK_ORIGINS`] in its `[policy]` table, unless it sets destination policy
/// itself.
pub fn with_loopback_origins(extra: &str) -> String {
    if extra.contains("allow_networks")
        || extra.contains("deny_networks")
        || extra.contains("connect_ports")
    {
        return extra.to_string();
    }
    match extra.find("[policy]\n") {
        Some(i) => {
            let at = i + "[policy]\n".len();
            format!("{}{LOOPBACK_ORIGINS}{}", &extra[..at], &extra[at..])
        }
        None => format!("{extra}\n[policy]\n{LOOPBACK_ORIGINS}"),
    }
}

impl Gateway {
    /// Starts the gateway with `extra` appended to a base config (listener on loopback v4+v6,
    /// metrics, events in the temp dir, CA created by `sekisho ca init`).
    pub fn start(tag: &str, tls_extra: &str, extra: &str) -> Gateway {
        let listener = "[[listener]]\nkind = \"forward\"\naddr = [\"127.0.0.1:0\", \"[::1]:0\"]\n";
        Gateway::start_with_listeners(tag, listener, tls_extra, extra)
    }

    /// Like [`Gateway::start`] with the `[[listener]]` tables given. The first IPv4 address
    /// printed becomes `proxy`.
    pub fn start_with_listeners(
        tag: &str,
        listeners: &str,
        tls_extra: &str,
        extra: &str,
    ) -> Gateway {
        Gateway::start_env(tag, listeners, tls_extra, extra, &[])
    }

    /// Like [`Gateway::start_with_listeners`], with extra environment variables.
    pub fn start_env(
        tag: &str,
        listeners: &str,
        tls_extra: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = TempDir::new(tag);
        let d = dir.path().display().to_string();
        let out = Command::new(bin())
            .args(["ca", "init", "--out"])
            .arg(dir.path().join("ca"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ca init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = with_loopback_origins(extra);
        let cfg = format!(
            "{listeners}\n\
             [tls]\nca_cert = \"{d}/ca/ca.crt\"\nca_key = \"{d}/ca/ca.key\"\nsystem_roots = false\nwebpki_roots = false\n{tls_extra}\n\n\
             [metrics]\naddr = \"127.0.0.1:0\"\nreadyz_resolve = \"localhost\"\n\n\
             [events]\nfile = \"{d}/events.jsonl\"\ncomm_log = \"{d}/flows.jsonl\"\n\n{extra}\n"
        );
        let cfg_path = dir.path().join("sekisho.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let stderr = dir.path().join("stderr.log");
        let l = launch_env(&cfg_path, &stderr, env);
        Gateway {
            child: l.child,
            dir,
            proxy: l.proxy,
            proxy6: l.proxy6,
            all: l.all,
            metrics: l.metrics,
            stderr,
        }
    }

    /// Stops the gateway with SIGTERM (it flushes its events and spools) and waits, bounded.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the gateway and starts it again on the same config and folder (new ports).
    pub fn restart(&mut self) {
        self.stop();
        let l = launch(&self.dir.path().join("sekisho.toml"), &self.stderr);
        self.child = l.child;
        self.proxy = l.proxy;
        self.proxy6 = l.proxy6;
        self.all = l.all;
        self.metrics = l.metrics;
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy)
    }

    /// The JSON lines of one of the gateway's log files (`events.jsonl`, `flows.jsonl`).
    pub fn read_lines(&self, file: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default();
        // A line still being written (no newline yet) is left for the next read.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Sends SIGHUP: the gateway reloads its config, rules and lists.
    pub fn reload(&self) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -HUP {pid}");
    }

    /// Waits (bounded, 20 s) until the log reports a failed reload; returns the log.
    pub fn wait_reload_failure(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            if log.contains("reload failed") {
                return log;
            }
            assert!(Instant::now() < deadline, "no reload failure logged: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until a JSON line of `file` satisfies `pred`.
    pub fn wait_line(
        &self,
        file: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.read_lines(file).into_iter().find(|v| pred(v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "no matching line in {file}: {:#?}",
                self.read_lines(file)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        self.read_lines("events.jsonl")
    }

    /// Peak resident memory of the gateway process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        rss_field(self.child.id(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        rss_field(self.child.id(), "VmRSS:")
    }

    pub async fn metrics_text(&self) -> String {
        let out = tokio::process::Command::new("curl")
            .args(["-s", "--max-time", "5"])
            .arg(format!("http://{}/metrics", self.metrics))
            .output()
            .await
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Gateway {
    /// Scrapes `/metrics` and asserts every line fragment in `needles` is there.
    pub async fn assert_metrics(&self, needles: &[&str]) {
        let m = self.metrics_text().await;
        for needle in needles {
            assert!(m.contains(needle), "missing {needle:?} in\n{m}");
        }
    }
}

fn rss_field(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Output of a curl run.
pub struct Curl {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Uploads `file` (its bytes as the body, `curl --data-binary`) through the gateway's forward
/// proxy to `url`; stdout ends with a line holding the status.
pub async fn upload(gw: &Gateway, url: &str, file: &Path) -> Curl {
    let data = format!("@{}", file.display());
    curl(&[
        "-x",
        &gw.proxy_url(),
        "--data-binary",
        &data,
        "-w",
        "\n%{http_code}",
        url,
    ])
    .await
}

/// Runs curl with `args` (bounded by --max-time).
pub async fn curl(args: &[&str]) -> Curl {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "60"])
        .args(args)
        .output()
        .await
        .expect("curl is installed");
    Curl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Opens a CONNECT tunnel through the proxy and returns the raw stream after the 200.
pub async fn connect_tunnel(proxy: SocketAddr, target: &str) -> tokio::net::TcpStream {
    connect_tunnel_from(proxy, target, None).await
}

/// [`connect_tunnel`] from the local address `from` (another loopback address: another client).
pub async fn connect_tunnel_from(
    proxy: SocketAddr,
    target: &str,
    from: Option<std::net::IpAddr>,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = match from {
        None => tokio::net::TcpStream::connect(proxy).await.unwrap(),
        Some(ip) => {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(ip, 0)).unwrap();
            sock.connect(proxy).await.unwrap()
        }
    };
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "proxy closed during CONNECT: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(b[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT answered {head}");
    s
}

/// A TLS handshake over `stream` with SNI `name`, trusting only `ca_pem`; returns the peer chain.
pub async fn tls_peer_chain(
    stream: tokio::net::TcpStream,
    name: &str,
    ca_pem: &str,
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        Vec<CertificateDer<'static>>,
    ),
    std::io::Error,
> {
    let connector = tls_client(ca_pem, &[b"http/1.1"]);
    let server_name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    let tls = connector.connect(server_name, stream).await?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .to_vec();
    Ok((tls, chain))
}

/// A TLS client trusting only `ca_pem`, offering `alpn`.
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// `sekisho collector` on HTTP, killed on drop.
pub struct Collector {
    child: Child,
    /// Where it listens.
    pub http: SocketAddr,
    out: PathBuf,
}

impl Collector {
    pub fn start(out: &Path) -> Collector {
        let mut child = Command::new(bin())
            .args(["collector", "--http", "127.0.0.1:0", "--out"])
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().unwrap().unwrap();
        let http = line
            .strip_prefix("listening http ")
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap();
        std::thread::spawn(move || for _ in lines {});
        Collector {
            child,
            http,
            out: out.to_path_buf(),
        }
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.out.join("http.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            schema::check_file(&self.out.join("http.log"));
        }
    }
}

/// The value of the first metric line starting with `prefix` (name and labels), or 0.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
