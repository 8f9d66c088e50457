//! WAF cost with OWASP CRS v4 at paranoia level 1 (crs-setup defaults): µs per transaction
//! for a benign GET (also with the CPU caches evicted first) and a 4 KB form POST with 72
//! fields, all phases, and the compile time of the rule set. Reads CRS from
//! ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without it.

#![allow(missing_docs)]

mod common;
use common::corpus;
#[path = "common/waf_crs.rs"]
mod waf_crs;
use waf_crs::{benign_get, crs_files, form, form_head, run};

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use sekisho_waf::engine::{RequestHead, Transaction, Waf};

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
    let get = benign_get();
    let body = form();
    println!("form: {} bytes", body.len());
    let post = form_head();
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
