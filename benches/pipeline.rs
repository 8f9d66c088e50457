//! Pipeline overhead per request (no network): flow start, head phases and body chunks through
//! the host policy with 1,000 deny patterns plus a pass-through stage; and leaf minting vs a
//! cache hit.
#![allow(missing_docs, clippy::unwrap_used)]

/// The allocator the `sekisho` binary runs with (gateway/cli/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sekisho_assembly::host_policy::HostPolicy;
use sekisho_core::host::HostMatcher;
use sekisho_core::{
    Direction, FlowMeta, Inspector, Pipeline, RequestHead, ResponseHead, Stage, StagePolicy,
    TlsHello,
};

struct PassThrough;
struct PassThroughInspector;
impl Stage for PassThrough {
    fn name(&self) -> &'static str {
        "pass"
    }
    fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(PassThroughInspector)
    }
}
impl Inspector for PassThroughInspector {}

fn pipeline() -> Pipeline {
    let patterns: Vec<String> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                format!("host{i}.deny.example")
            } else {
                format!("*.zone{i}.example")
            }
        })
        .collect();
    let mut p = Pipeline::new();
    p.push(
        Arc::new(HostPolicy::new(HostMatcher::new(&patterns).unwrap())),
        StagePolicy::default(),
    );
    p.push(Arc::new(PassThrough), StagePolicy::default());
    p
}

fn bench_pipeline(c: &mut Criterion) {
    let p = pipeline();
    let meta = Arc::new(FlowMeta::new(
        1,
        "forward",
        "127.0.0.1:40000".parse().unwrap(),
        "127.0.0.1:3128".parse().unwrap(),
    ));
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, "www.allowed.example".parse().unwrap());
    headers.insert(http::header::USER_AGENT, "bench/1".parse().unwrap());
    let head = RequestHead::new(
        http::Method::GET,
        "https://www.allowed.example/path/to/resource?x=1"
            .parse()
            .unwrap(),
        http::Version::HTTP_11,
        headers,
        443,
    );
    let rhead = ResponseHead {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_11,
        headers: http::HeaderMap::new(),
        reason: None,
        raw: None,
        wire: None,
    };
    let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
    let hello = TlsHello {
        sni: Some("www.allowed.example".into()),
        alpn: vec!["h2".into()],
        raw: Bytes::new(),
    };

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("request_64KiB_response", |b| {
        b.iter(|| {
            let mut f = p.start(Arc::clone(&meta));
            f.tls_hello(&hello);
            f.request_head(&head);
            f.response_head(&rhead);
            for i in 0..4 {
                f.body(Direction::Response, &chunk, i == 3);
            }
            f.take_findings()
        })
    });
    let mut denied = head.clone();
    denied.host = "a.b.zone999.example".into();
    g.bench_function("denied_request_with_event", |b| {
        b.iter(|| {
            let mut f = p.start(Arc::clone(&meta));
            f.request_head(&denied);
            f.take_findings()
        })
    });
    g.finish();
}

fn bench_minting(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("sekisho-bench-ca-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (crt, key) = sekisho_proxy::ca::init_ca(&dir, "Bench CA").unwrap();
    let ca = sekisho_proxy::ca::CertAuthority::load(&crt, &key).unwrap();
    let metrics = Arc::new(sekisho_proxy::metrics::Metrics::new().unwrap());
    let minter = sekisho_proxy::ca::LeafMinter::new(ca, 10_000, 7, 24, metrics).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("leaf");
    g.throughput(Throughput::Elements(1));
    g.bench_function("mint", |b| {
        b.iter(|| minter.mint("www.example.test").unwrap())
    });
    rt.block_on(minter.get("cached.example.test")).unwrap();
    g.bench_function("cache_hit", |b| {
        b.iter_batched(
            || (),
            |_| rt.block_on(minter.get("cached.example.test")).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The canonical path every reverse-proxy request is routed on: a plain API path, one with dot
/// segments and escapes to resolve, and a refused one.
fn bench_canonical_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("canonical_path");
    for (name, path) in [
        ("plain", "/api/v1/claims/2026/12/03/receipt-000123.xml"),
        (
            "dots_and_escapes",
            "/api/x/../v1/./claims//%61dmin/caf%c3%a9/receipt.xml",
        ),
        ("refused", "/api/%2e%2e/admin/secret.txt"),
    ] {
        g.throughput(Throughput::Bytes(path.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| sekisho_core::canonical_path(std::hint::black_box(path)))
        });
    }
    g.finish();
}

/// A block page rendered for a request (language picked from Accept-Language, every reason
/// filled in and escaped): the cost a blocked request pays on top of its pipeline.
fn bench_pages(c: &mut Criterion) {
    use sekisho_proxy::{Page, Pages, Reason};
    let pages = Pages::default();
    let page = Page::new(
        Reason::Category("gambling".into()),
        "www.casino.example",
        Some(uuid::Uuid::now_v7()),
    );
    let mut g = c.benchmark_group("pages");
    for (name, accept) in [("en", "en-US,en;q=0.9"), ("ja", "ja-JP,ja;q=0.9,en;q=0.8")] {
        g.bench_function(name, |b| {
            b.iter(|| page.render(&pages, pages.pick(Some(accept))).len())
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench_pipeline,
    bench_minting,
    bench_canonical_path,
    bench_pages
);
criterion_main!(benches);
