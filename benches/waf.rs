//! WAF cost with OWASP CRS v4 at paranoia level 1 (crs-setup defaults): µs per transaction
//! for a benign GET (also with the CPU caches evicted first) and a 4 KB form POST with 72
//! fields, all phases, and the compile time of the rule set. Reads CRS from
//! ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without it.

#![allow(missing_docs)]

mod common;
use common::corpus;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use sekisho_waf::engine::{RequestHead, Transaction, Waf};

/// The CRS rule files in `dir` in load order: the setup first, then `rules/*.conf` by name.
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
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = [
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
    headers.shrink_to_fit();
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

/// A 4 KB urlencoded form with 72 fields (a claims form: codes, names, dates, amounts).
fn form() -> Vec<u8> {
    let mut body = String::new();
    for i in 0..72 {
        if i > 0 {
            body.push('&');
        }
        body.push_str(&format!(
            "field_{i:02}=patient+record+{i}+claim+code+A{:05}+2026-12-0{}",
            i * 37,
            i % 9 + 1
        ));
    }
    body.into_bytes()
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

fn evaluations(waf: &Arc<Waf>, h: &RequestHead, body: &[u8]) -> u64 {
    let mut tx = Transaction::new(Arc::clone(waf), h);
    tx.request_headers();
    tx.request_body(body, body.len());
    tx.evaluations()
}

fn bench(c: &mut Criterion) {
    let Some(crs) = corpus("crs") else {
        return;
    };
    let t = Instant::now();
    let waf = Arc::new(Waf::load(&crs_files(&crs)).expect("CRS loads"));
    println!("CRS compiled in {:?}", t.elapsed());
    let get = head("GET", "/portal/patients/list?page=2&sort=name&ward=3", &[]);
    let body = form();
    println!("form: {} bytes", body.len());
    let post = head(
        "POST",
        "/claims/submit",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "4096"),
        ],
    );
    assert_eq!(run(&waf, &get, b""), 0, "benign GET matched rules");
    assert_eq!(run(&waf, &post, &body), 0, "benign form matched rules");
    println!(
        "operator runs: GET {}, form POST {}",
        evaluations(&waf, &get, b""),
        evaluations(&waf, &post, &body)
    );
    let mut g = c.benchmark_group("waf_crs_pl1");
    g.bench_function("benign_get", |b| b.iter(|| run(&waf, &get, b"")));
    g.bench_function("form_post_4k_72_fields", |b| {
        b.iter(|| run(&waf, &post, &body))
    });
    // The same GET with the CPU caches evicted before each transaction (an 8 MiB sweep, not
    // timed), as the proxy's own work between requests evicts them: the WAF's cost in place.
    let sweep = vec![1u8; 8 << 20];
    g.bench_function("benign_get_cold_caches", |b| {
        b.iter_custom(|n| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..n {
                let touched: u64 = sweep.iter().step_by(64).map(|&x| u64::from(x)).sum();
                std::hint::black_box(touched);
                let t = Instant::now();
                std::hint::black_box(run(&waf, &get, b""));
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
