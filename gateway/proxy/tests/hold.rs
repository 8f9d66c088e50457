//! The body-holding machinery of the pipeline driver, exercised through a real proxy on loopback
//! with a test stage: hold and release, hold and block (block page), block mid-stream (reset),
//! per-flow overflow (block, or pass-and-alert), held request bodies; and what a stage can say
//! besides a verdict (its own block response, an answer, the end of a connection).

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sekisho_core::{
    BoxFuture, Cx, Evidence, Finding, FlowMeta, HeldBody, Inspector, OnError, OnOverflow,
    RequestHead, ResponseHead, Severity, Stage, StagePolicy, Verdict,
};
use sekisho_proxy::{Config, Gateway};

const MARKER: &[u8] = b"EVIL-MARKER";

/// Holds response bodies of paths containing `hold`, request bodies of `/upload-hold`; blocks
/// held bodies containing MARKER, and streamed chunks containing it.
struct MarkerStage;

struct MarkerInspector {
    hold_response: bool,
}

impl Stage for MarkerStage {
    fn name(&self) -> &'static str {
        "marker"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(MarkerInspector {
            hold_response: false,
        })
    }
}

fn contains(hay: &[u8]) -> bool {
    hay.windows(MARKER.len()).any(|w| w == MARKER)
}

fn finding(location: &str) -> Finding {
    Finding::new(
        "test",
        "marker-1",
        "marker seen",
        Severity::High,
        "test-malware",
        Evidence::new(location, "EVIL-MARKER"),
    )
}

impl Inspector for MarkerInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        self.hold_response = head.path_and_query().contains("hold");
        if head.path_and_query().starts_with("/upload-hold") {
            Verdict::Hold
        } else {
            Verdict::Allow
        }
    }
    fn on_request_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, _end: bool) -> Verdict {
        if contains(chunk) {
            cx.report(finding("request.body"));
            return Verdict::Block;
        }
        Verdict::Allow
    }
    fn on_response_head(&mut self, _cx: &mut Cx<'_>, _head: &ResponseHead) -> Verdict {
        if self.hold_response {
            Verdict::Hold
        } else {
            Verdict::Allow
        }
    }
    fn on_response_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, _end: bool) -> Verdict {
        if self.hold_response {
            return Verdict::Hold;
        }
        if contains(chunk) {
            cx.report(finding("response.body"));
            return Verdict::Block;
        }
        Verdict::Allow
    }
    fn resolve<'a>(&'a mut self, cx: &'a mut Cx<'_>, held: &'a HeldBody) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if contains(&held.contiguous()) {
                cx.report(finding("held.body"));
                Verdict::Block
            } else {
                Verdict::Allow
            }
        })
    }
}

/// What reached one origin: requests, and request bodies holding MARKER.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    markers: AtomicUsize,
}

/// Origin: `/clean/N` N bytes of `x`; `/evil/N` N bytes then MARKER (own chunk); `/count` length
/// of the request body; `/early` answers at once without reading the body. Every request that
/// reaches it is counted in [`Seen`].
async fn origin() -> u16 {
    origin_seen().await.0
}

async fn origin_seen() -> (u16, Arc<Seen>) {
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = sock.accept().await else {
                continue;
            };
            let seen = Arc::clone(&seen2);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let path = req.uri().path().to_string();
                            seen.requests.fetch_add(1, SeqCst);
                            let parts: Vec<&str> =
                                path.trim_start_matches('/').split('/').collect();
                            let body = match parts.as_slice() {
                                ["early"] => {
                                    // Reads the body in the background (so any marker is seen)
                                    // but answers before it ends.
                                    let body = req.into_body();
                                    let seen = Arc::clone(&seen);
                                    tokio::spawn(async move {
                                        if let Ok(c) = body.collect().await {
                                            if contains(&c.to_bytes()) {
                                                seen.markers.fetch_add(1, SeqCst);
                                            }
                                        }
                                    });
                                    vec![Bytes::from_static(b"early")]
                                }
                                ["count"] | ["upload-hold"] => {
                                    let b = req
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|c| c.to_bytes())
                                        .unwrap_or_default();
                                    if contains(&b) {
                                        seen.markers.fetch_add(1, SeqCst);
                                    }
                                    vec![Bytes::from(b.len().to_string())]
                                }
                                [kind, n] => {
                                    let n: usize = n.parse().unwrap_or(0);
                                    let mut chunks: Vec<Bytes> = (0..n.div_ceil(65536))
                                        .map(|i| {
                                            Bytes::from(vec![b'x'; (n - i * 65536).min(65536)])
                                        })
                                        .collect();
                                    if kind.starts_with("evil") {
                                        chunks.push(Bytes::from_static(MARKER));
                                    }
                                    chunks
                                }
                                _ => vec![Bytes::from_static(b"?")],
                            };
                            let frames = body
                                .into_iter()
                                .map(|b| Ok::<_, Infallible>(Frame::data(b)));
                            let body = StreamBody::new(futures_util::stream::iter(frames));
                            Ok::<_, Infallible>(hyper::Response::new(body))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

struct Running {
    proxy: String,
    dir: std::path::PathBuf,
    metrics: Arc<sekisho_proxy::metrics::Metrics>,
}

async fn gateway(tag: &str, policy: StagePolicy, limits: &str) -> Running {
    gateway_with(tag, vec![(Arc::new(MarkerStage), policy)], limits).await
}

/// A stage and its policy in a test pipeline.
type TestStage = (Arc<dyn sekisho_core::Stage>, StagePolicy);

async fn gateway_with(tag: &str, stages: Vec<TestStage>, limits: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("sekisho-hold-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    sekisho_proxy::ca::init_ca(&dir, "Hold Test CA").unwrap();
    let d = dir.display();
    let text = format!(
        "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\
         [tls]\nca_cert = \"{d}/ca.crt\"\nca_key = \"{d}/ca.key\"\nsystem_roots = false\nwebpki_roots = false\n\
         [events]\nfile = \"{d}/events.jsonl\"\ncomm_log = \"{d}/flows.jsonl\"\n\
         [limits]\n{limits}\n\
         [policy]\nallow_networks = [\"127.0.0.0/8\"]\nconnect_ports = [\"1-65535\"]\n"
    );
    // `[policy]` is the host policy engine's table; its destination keys are the proxy's.
    let cfg = Config::parse_with(&text, std::path::Path::new("hold.toml"), &["policy"]).unwrap();
    let mut pipeline = sekisho_core::Pipeline::new();
    pipeline.set_resolve_timeout(std::time::Duration::from_secs(
        cfg.limits.resolve_timeout_secs,
    ));
    for (stage, policy) in stages {
        pipeline.push(stage, policy);
    }
    let wiring = sekisho_proxy::Wiring {
        pipelines: vec![pipeline],
        collectors: Vec::new(),
    };
    let gw = Gateway::build(cfg, wiring).await.unwrap();
    let (addrs, _) = gw.local_addrs();
    let metrics = gw.metrics();
    tokio::spawn(gw.run(std::future::pending()));
    Running {
        proxy: format!("http://{}", addrs[0].1),
        dir,
        metrics,
    }
}

struct Out {
    code: i32,
    status: String,
    body: Vec<u8>,
}

async fn curl(proxy: &str, args: &[&str]) -> Out {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "30",
            "-x",
            proxy,
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .await
        .unwrap();
    let mut body = out.stdout;
    let nl = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[nl + 1..]).to_string();
    body.truncate(nl);
    Out {
        code: out.status.code().unwrap_or(-1),
        status,
        body,
    }
}

fn events(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_event(
    dir: &std::path::Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..200 {
        if let Some(e) = events(dir).into_iter().find(|e| pred(e)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no such event in {:#?}", events(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_response_is_released_or_replaced_by_block_page() {
    let o = origin().await;
    let g = gateway("resp", StagePolicy::default(), "").await;
    let clean = curl(
        &g.proxy,
        &[&format!("http://127.0.0.1:{o}/clean-hold/1048576")],
    )
    .await;
    assert_eq!(
        (clean.code, clean.status.as_str(), clean.body.len()),
        (0, "200", 1 << 20)
    );
    let evil = curl(
        &g.proxy,
        &[&format!("http://127.0.0.1:{o}/evil-hold/1048576")],
    )
    .await;
    assert_eq!(evil.status, "403");
    let page = String::from_utf8_lossy(&evil.body);
    assert!(
        !evil.body.windows(MARKER.len()).any(|w| w == MARKER),
        "held content never reaches the client"
    );
    let ev = wait_event(&g.dir, |e| e["evidence"]["location"] == "held.body").await;
    assert!(page.contains(ev["event"]["id"].as_str().unwrap()), "{page}");
    assert_eq!(ev["event"]["action"], "blocked");
    assert_eq!(ev["stage"], "marker");
    assert_eq!(
        g.metrics.hold_bytes.get(),
        0,
        "hold accounting returns to zero"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_after_headers_resets_the_stream() {
    let o = origin().await;
    let g = gateway("reset", StagePolicy::default(), "").await;
    let r = curl(&g.proxy, &[&format!("http://127.0.0.1:{o}/evil/1048576")]).await;
    assert_eq!(r.status, "200", "headers were already sent");
    assert_ne!(
        r.code, 0,
        "the client must see a broken transfer, not a clean end"
    );
    assert!(r.body.len() <= 1 << 20);
    assert!(!r.body.windows(MARKER.len()).any(|w| w == MARKER));
    wait_event(&g.dir, |e| e["evidence"]["location"] == "response.body").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_blocks_by_default_and_passes_with_alert_when_configured() {
    let o = origin().await;
    let limits = "hold_bytes_per_flow = 262144\nhold_bytes_total = 1048576";
    let g = gateway("ovf-block", StagePolicy::default(), limits).await;
    let r = curl(
        &g.proxy,
        &[&format!("http://127.0.0.1:{o}/clean-hold/1048576")],
    )
    .await;
    assert_eq!(r.status, "403", "fail closed over the per-flow hold limit");
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "hold-limit").await;
    assert_eq!(ev["event"]["action"], "blocked");
    assert_eq!(g.metrics.hold_overflows.get(), 1);
    assert_eq!(g.metrics.hold_bytes.get(), 0);

    let pass = StagePolicy {
        on_overflow: OnOverflow::PassAndAlert,
        ..Default::default()
    };
    let g = gateway("ovf-pass", pass, limits).await;
    let r = curl(
        &g.proxy,
        &[&format!("http://127.0.0.1:{o}/clean-hold/1048576")],
    )
    .await;
    assert_eq!(
        (r.code, r.status.as_str(), r.body.len()),
        (0, "200", 1 << 20)
    );
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "hold-limit").await;
    assert_eq!(ev["event"]["action"], "allowed");
    assert_eq!(ev["event"]["category"], "uninspected");
    assert_eq!(g.metrics.hold_bytes.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_request_body_is_judged_before_it_leaves() {
    let o = origin().await;
    let g = gateway("req", StagePolicy::default(), "").await;
    let upload = |body: Vec<u8>| {
        let (proxy, dir) = (g.proxy.clone(), g.dir.clone());
        async move {
            let file = dir.join("upload.bin");
            std::fs::write(&file, body).unwrap();
            let data = format!("@{}", file.display());
            curl(
                &proxy,
                &[
                    "--data-binary",
                    &data,
                    &format!("http://127.0.0.1:{o}/upload-hold"),
                ],
            )
            .await
        }
    };
    let mut body = vec![b'a'; 300_000];
    let r = upload(body.clone()).await;
    assert_eq!(
        (r.status.as_str(), String::from_utf8_lossy(&r.body).as_ref()),
        ("200", "300000")
    );
    body.extend_from_slice(MARKER);
    let r = upload(body).await;
    assert_eq!(r.status, "403", "{}", String::from_utf8_lossy(&r.body));
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "marker-1").await;
    assert!(String::from_utf8_lossy(&r.body).contains(ev["event"]["id"].as_str().unwrap()));
}

/// Holds request bodies of `/upload-hold…` and response bodies of paths with `hold`, and never
/// decides: a stuck engine.
struct Stuck;
struct StuckInspector(bool);

impl Stage for Stuck {
    fn name(&self) -> &'static str {
        "stuck"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(StuckInspector(false))
    }
}

impl Inspector for StuckInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        self.0 = head.path_and_query().contains("hold");
        if head.path_and_query().starts_with("/upload-hold") {
            Verdict::Hold
        } else {
            Verdict::Allow
        }
    }
    fn on_response_head(&mut self, _cx: &mut Cx<'_>, _head: &ResponseHead) -> Verdict {
        if self.0 {
            Verdict::Hold
        } else {
            Verdict::Allow
        }
    }
    fn resolve<'a>(
        &'a mut self,
        _cx: &'a mut Cx<'_>,
        _held: &'a HeldBody,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(std::future::pending())
    }
}

fn stuck(on_error: OnError, secs: u64) -> TestStage {
    (
        Arc::new(Stuck),
        StagePolicy {
            on_error,
            resolve_timeout_secs: Some(secs),
            ..Default::default()
        },
    )
}

async fn upload(g: &Running, port: u16, path: &str, body: &[u8]) -> Out {
    let file = g.dir.join(format!("upload-{}.bin", body.len()));
    std::fs::write(&file, body).unwrap();
    let data = format!("@{}", file.display());
    curl(
        &g.proxy,
        &[
            "--data-binary",
            &data,
            &format!("http://127.0.0.1:{port}{path}"),
        ],
    )
    .await
}

fn comm_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("flows.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn wait_comm(
    dir: &std::path::Path,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..400 {
        if let Some(e) = comm_lines(dir).into_iter().find(|e| pred(e)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no such flow line in {:#?}", comm_lines(dir));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_that_never_comes_follows_on_error() {
    // Fail-closed (the default), beside a stage that answers: the held upload never leaves, the
    // client gets the block page, the event names the silent stage and its deadline.
    let (o, seen) = origin_seen().await;
    let g = gateway_with(
        "stuck-closed",
        vec![
            (Arc::new(MarkerStage), StagePolicy::default()),
            stuck(OnError::FailClosed, 1),
        ],
        "",
    )
    .await;
    let started = std::time::Instant::now();
    let r = upload(&g, o, "/upload-hold", &[b'a'; 200_000]).await;
    assert_eq!(r.status, "403", "{}", String::from_utf8_lossy(&r.body));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for the deadline"
    );
    assert_eq!(
        seen.requests.load(SeqCst),
        0,
        "the held upload never reached the origin"
    );
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "stage-timeout").await;
    assert_eq!(ev["stage"], "stuck");
    assert_eq!(ev["event"]["action"], "blocked");
    let text = ev.to_string();
    assert!(
        text.contains("within 1s") && text.contains("fail-closed"),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&r.body).contains(ev["event"]["id"].as_str().unwrap()));
    // A held response: the page, never the body.
    let r = curl(
        &g.proxy,
        &[&format!("http://127.0.0.1:{o}/clean-hold/1000")],
    )
    .await;
    assert_eq!(r.status, "403");
    assert_eq!(
        g.metrics.hold_bytes.get(),
        0,
        "hold accounting returns to zero"
    );

    // Fail-open: the upload passes, with an uninspected event and the counter.
    let (o, seen) = origin_seen().await;
    let g = gateway_with("stuck-open", vec![stuck(OnError::FailOpen, 1)], "").await;
    let r = upload(&g, o, "/upload-hold", &[b'a'; 1000]).await;
    assert_eq!(
        (r.status.as_str(), r.body.as_slice()),
        ("200", b"1000".as_slice())
    );
    assert_eq!(seen.requests.load(SeqCst), 1);
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "stage-timeout").await;
    assert_eq!(ev["event"]["action"], "allowed");
    assert_eq!(ev["event"]["category"], "uninspected");
    wait_comm(&g.dir, |l| l["path"] == "/upload-hold").await;
    // The stage also held the response (its path has "hold"): two decisions missed, two counted.
    assert_eq!(
        g.metrics.uninspected.with_label_values(&["forward"]).get(),
        2
    );
}

/// Panics in the request head of `/panic-head`; holds `/panic-resolve` and panics deciding.
struct Panicky;
struct PanickyInspector;

impl Stage for Panicky {
    fn name(&self) -> &'static str {
        "panicky"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(PanickyInspector)
    }
}

impl Inspector for PanickyInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        match head.path_and_query() {
            "/panic-head" => panic!("engine bug at the head"),
            "/panic-resolve" => Verdict::Hold,
            _ => Verdict::Allow,
        }
    }
    fn resolve<'a>(
        &'a mut self,
        _cx: &'a mut Cx<'_>,
        _held: &'a HeldBody,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async { panic!("engine bug while deciding") })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stage_gets_its_on_error_and_the_gateway_keeps_serving() {
    let (o, seen) = origin_seen().await;
    let g = gateway_with(
        "panicky",
        vec![(Arc::new(Panicky), StagePolicy::default())],
        "",
    )
    .await;
    let r = curl(&g.proxy, &[&format!("http://127.0.0.1:{o}/panic-head")]).await;
    assert_eq!(r.status, "403");
    let r = upload(&g, o, "/panic-resolve", b"data").await;
    assert_eq!(r.status, "403");
    assert_eq!(seen.requests.load(SeqCst), 0);
    let evs = events(&g.dir);
    let panics: Vec<_> = evs
        .iter()
        .filter(|e| e["rule"]["id"] == "stage-panic")
        .collect();
    assert_eq!(panics.len(), 2, "{evs:#?}");
    assert!(panics.iter().all(|e| e["event"]["action"] == "blocked"));
    let r = curl(&g.proxy, &[&format!("http://127.0.0.1:{o}/clean/10")]).await;
    assert_eq!(
        (r.status.as_str(), r.body.len()),
        ("200", 10),
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_during_a_hold_releases_nothing() {
    let (o, seen) = origin_seen().await;
    let g = gateway_with("leave", vec![stuck(OnError::FailOpen, 30)], "").await;
    // Response held, the client gives up after a second: nothing of the body reached it, the
    // flow line says the hold was abandoned, and the hold budget is returned.
    let r = curl(
        &g.proxy,
        &[
            "--max-time",
            "1",
            &format!("http://127.0.0.1:{o}/clean-hold/5000"),
        ],
    )
    .await;
    assert_ne!(r.code, 0);
    assert!(r.body.is_empty() || r.status == "000", "{}", r.status);
    let line = wait_comm(&g.dir, |l| l["path"] == "/clean-hold/5000").await;
    assert!(
        line["error"]
            .as_str()
            .unwrap_or_default()
            .contains("abandoned while held"),
        "{line}"
    );
    for _ in 0..100 {
        if g.metrics.hold_bytes.get() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(g.metrics.hold_bytes.get(), 0);
    // Request held, the client closes half-way: the origin never sees the request.
    let before = seen.requests.load(SeqCst);
    let addr = g.proxy.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let head = format!(
        "POST http://127.0.0.1:{o}/upload-hold HTTP/1.1\r\nHost: 127.0.0.1:{o}\r\nContent-Length: 100000\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&[b'z'; 40_000]).await.unwrap();
    tcp.write_all(MARKER).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(tcp);
    let line = wait_comm(&g.dir, |l| l["path"] == "/upload-hold").await;
    assert!(line["error"].is_string(), "{line}");
    assert_eq!(seen.requests.load(SeqCst), before);
    assert_eq!(seen.markers.load(SeqCst), 0);
}

/// Lets `/early`'s request head pass and holds its body from the first chunk (a stage that
/// decides to hold mid-stream); blocks a held body holding MARKER.
struct LateHold;
struct LateHoldInspector(bool);

impl Stage for LateHold {
    fn name(&self) -> &'static str {
        "late"
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(LateHoldInspector(false))
    }
}

impl Inspector for LateHoldInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        self.0 = head.path_and_query() == "/early";
        Verdict::Allow
    }
    fn on_request_body(&mut self, _cx: &mut Cx<'_>, _chunk: &Bytes, _end: bool) -> Verdict {
        if self.0 {
            Verdict::Hold
        } else {
            Verdict::Allow
        }
    }
    fn resolve<'a>(&'a mut self, cx: &'a mut Cx<'_>, held: &'a HeldBody) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if contains(&held.contiguous()) {
                cx.report(finding("held.body"));
                Verdict::Block
            } else {
                Verdict::Allow
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_answers_early_never_gets_held_bytes() {
    let (o, seen) = origin_seen().await;
    let g = gateway_with(
        "early",
        vec![(Arc::new(LateHold), StagePolicy::default())],
        "",
    )
    .await;
    let mut body = vec![b'y'; 300_000];
    body.extend_from_slice(MARKER);
    let r = upload(&g, o, "/early", &body).await;
    // Whatever the client is told (the origin's early answer, a block page or a reset), the
    // held bytes never reach the origin and the flow is accounted for.
    wait_comm(&g.dir, |l| l["path"] == "/early").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seen.markers.load(SeqCst),
        0,
        "client saw {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(g.metrics.hold_bytes.get(), 0);
}

/// What a stage can say besides a verdict, through the proxy: paths `/status-406` and
/// `/redirect` block with the stage's own response, `/answer` is answered by the stage without a
/// block (nothing goes upstream); every flow's connection id is recorded, and so is every
/// connection the proxy reports closed.
#[derive(Default)]
struct Says {
    flows: std::sync::Mutex<Vec<u64>>,
    closed: std::sync::Mutex<Vec<u64>>,
}
struct SaysStage(Arc<Says>);
struct SaysInspector;

impl Stage for SaysStage {
    fn name(&self) -> &'static str {
        "says"
    }
    fn new_flow(&self, meta: &FlowMeta) -> Box<dyn Inspector> {
        self.0.flows.lock().unwrap().push(meta.conn_id);
        Box::new(SaysInspector)
    }
    fn connection_closed(&self, conn_id: u64) {
        self.0.closed.lock().unwrap().push(conn_id);
    }
}

impl Inspector for SaysInspector {
    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        match head.uri.path() {
            "/status-406" => {
                cx.respond(sekisho_core::Respond::Status(406));
                Verdict::Block
            }
            "/redirect" => {
                cx.respond(sekisho_core::Respond::Redirect {
                    status: 302,
                    location: "http://login.test/".into(),
                });
                Verdict::Block
            }
            "/answer" => {
                cx.respond(sekisho_core::Respond::Redirect {
                    status: 303,
                    location: "http://elsewhere.test/".into(),
                });
                Verdict::Allow
            }
            _ => Verdict::Allow,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_chooses_the_response_and_hears_connections_close() {
    let (o, seen) = origin_seen().await;
    let says = Arc::new(Says::default());
    let stage: Arc<dyn Stage> = Arc::new(SaysStage(Arc::clone(&says)));
    let g = gateway_with("says", vec![(stage, StagePolicy::default())], "").await;
    let base = format!("http://127.0.0.1:{o}");

    let r = curl(&g.proxy, &[&format!("{base}/status-406")]).await;
    assert_eq!(r.status, "406", "the stage's status replaces 403");
    let page = String::from_utf8_lossy(&r.body);
    let ev = wait_event(&g.dir, |e| e["stage"] == "says").await;
    assert!(page.contains(ev["event"]["id"].as_str().unwrap()), "{page}");
    assert_eq!(ev["event"]["action"], "blocked");

    let r = curl(&g.proxy, &["-i", &format!("{base}/redirect")]).await;
    assert_eq!(r.status, "302");
    let head = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
    assert!(head.contains("location: http://login.test/"), "{head}");

    let r = curl(&g.proxy, &["-i", &format!("{base}/answer")]).await;
    assert_eq!(r.status, "303", "an answer without a block");
    let head = String::from_utf8_lossy(&r.body).to_ascii_lowercase();
    assert!(head.contains("location: http://elsewhere.test/"), "{head}");
    assert_eq!(seen.requests.load(SeqCst), 0, "nothing went upstream");

    let ok = curl(&g.proxy, &[&format!("{base}/clean/10")]).await;
    assert_eq!((ok.status.as_str(), seen.requests.load(SeqCst)), ("200", 1));

    // Four curl runs, four connections, each with its own id, each reported closed.
    let flows: Vec<u64> = says.flows.lock().unwrap().clone();
    let mut ids = flows.clone();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{flows:?}");
    assert!(ids.iter().all(|id| *id > 0), "{ids:?}");
    for _ in 0..200 {
        let closed = says.closed.lock().unwrap().clone();
        if ids.iter().all(|id| closed.contains(id)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "connections {ids:?} not all reported closed: {:?}",
        says.closed.lock().unwrap()
    );
}
