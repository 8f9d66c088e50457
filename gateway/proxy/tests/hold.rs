//! The body-holding machinery of the pipeline driver, exercised through a real proxy on loopback
//! with a test stage: hold and release, hold and block (block page), block mid-stream (reset),
//! per-flow overflow (block, or pass-and-alert), held request bodies.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sekisho_core::{
    BoxFuture, Cx, Evidence, Finding, FlowMeta, HeldBody, Inspector, OnOverflow, RequestHead,
    ResponseHead, Severity, Stage, StagePolicy, Verdict,
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

/// Origin: `/clean/N` N bytes of `x`; `/evil/N` N bytes then MARKER (own chunk); `/count` length
/// of the request body.
async fn origin() -> u16 {
    let sock = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = sock.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                        let body = match parts.as_slice() {
                            ["count"] | ["upload-hold"] => {
                                let b = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|c| c.to_bytes())
                                    .unwrap_or_default();
                                vec![Bytes::from(b.len().to_string())]
                            }
                            [kind, n] => {
                                let n: usize = n.parse().unwrap_or(0);
                                let mut chunks: Vec<Bytes> = (0..n.div_ceil(65536))
                                    .map(|i| Bytes::from(vec![b'x'; (n - i * 65536).min(65536)]))
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
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    port
}

struct Running {
    proxy: String,
    dir: std::path::PathBuf,
    metrics: Arc<sekisho_proxy::metrics::Metrics>,
}

async fn gateway(tag: &str, policy: StagePolicy, limits: &str) -> Running {
    let dir = std::env::temp_dir().join(format!("sekisho-hold-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    sekisho_proxy::ca::init_ca(&dir, "Hold Test CA").unwrap();
    let d = dir.display();
    let text = format!(
        "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\
         [tls]\nca_cert = \"{d}/ca.crt\"\nca_key = \"{d}/ca.key\"\nsystem_roots = false\nwebpki_roots = false\n\
         [events]\nfile = \"{d}/events.jsonl\"\ncomm_log = \"{d}/flows.jsonl\"\n\
         [limits]\n{limits}\n"
    );
    let cfg = Config::parse(&text, std::path::Path::new("hold.toml")).unwrap();
    let gw = Gateway::build_with_stages(cfg, vec![(Arc::new(MarkerStage), policy)])
        .await
        .unwrap();
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
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "hold-failed").await;
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
    let ev = wait_event(&g.dir, |e| e["rule"]["id"] == "hold-failed").await;
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
