//! Profiling loop (not a benchmark): CRS PL1 on a benign GET and a 4 KB form, µs per
//! transaction, best of several rounds. `cargo run --release -p sekisho-waf --example
//! crs_loop -- <crs dir> [get|form|both] [rounds]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sekisho_waf::engine::{RequestHead, Transaction, Waf};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn crs_files(dir: &Path) -> Vec<PathBuf> {
    let mut rules: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
        .expect("CRS rules")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    rules.sort();
    let mut files = vec![dir.join("crs-setup.conf.example")];
    files.extend(rules);
    files
}

fn head(method: &str, uri: &str, extra: &[(&str, &str)]) -> RequestHead {
    let headers = [
        ("Host", "portal.example.jp"),
        (
            "User-Agent",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0 Safari/537.36",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "ja,en-US;q=0.7,en;q=0.3"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Cookie", "session=8f2a9c1d4b7e; lang=ja"),
    ]
    .iter()
    .chain(extra)
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    RequestHead {
        method: method.into(),
        uri: uri.as_bytes().to_vec(),
        protocol: "HTTP/1.1".into(),
        headers,
        remote_addr: "10.1.2.3".into(),
        remote_port: 50000,
        server_addr: "10.0.0.1".into(),
        server_port: 443,
        unique_id: "bench".into(),
    }
}

fn form() -> Vec<u8> {
    (0..72)
        .map(|i| {
            format!(
                "field_{i:02}=patient+record+{i}+claim+code+A{:05}+2026-12-0{}",
                i * 37,
                i % 9 + 1
            )
        })
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

fn run(waf: &Arc<Waf>, h: &RequestHead, body: &[u8]) -> usize {
    let mut tx = Transaction::new(Arc::clone(waf), h);
    tx.request_headers();
    tx.request_body(body, body.len());
    let resp = vec![(b"Content-Type".to_vec(), b"text/html".to_vec())];
    tx.response_headers(200, "HTTP/1.1", &resp);
    tx.response_body(b"<html><body>ok</body></html>");
    tx.logging();
    tx.matched_rules().len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let crs = PathBuf::from(&args[1]);
    let which = args.get(2).map_or("both", String::as_str);
    let rounds: usize = args.get(3).map_or(5, |s| s.parse().expect("rounds"));
    let waf = Arc::new(Waf::load(&crs_files(&crs)).expect("CRS loads"));
    let get = head("GET", "/portal/patients/list?page=2&sort=name&ward=3", &[]);
    let post = head(
        "POST",
        "/claims/submit",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "4096"),
        ],
    );
    let body = form();
    assert_eq!(run(&waf, &get, b""), 0);
    assert_eq!(run(&waf, &post, &body), 0);
    let sweep = vec![1u8; 8 << 20];
    for (name, h, b, n, cold) in [
        ("get", &get, &b""[..], 20_000, false),
        ("form", &post, &body[..], 2_000, false),
        ("get-cold", &get, &b""[..], 3_000, true),
    ] {
        if which != "both" && !name.starts_with(which) {
            continue;
        }
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..n {
                if cold {
                    let s: u64 = sweep.iter().step_by(64).map(|&x| u64::from(x)).sum();
                    std::hint::black_box(s);
                }
                let t = Instant::now();
                std::hint::black_box(run(&waf, h, b));
                total += t.elapsed();
            }
            best = best.min(total.as_secs_f64() * 1e6 / n as f64);
        }
        println!("{name}: {best:.1} µs");
    }
}
