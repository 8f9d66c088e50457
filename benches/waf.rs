//! WAF cost with OWASP CRS v4 at paranoia level 1 (crs-setup defaults): µs per transaction
//! for a benign GET (also with the CPU caches evicted first) and a 4 KB form POST with 72
//! fields, all phases, the same request each time and with argument values new to each
//! transaction (`_varied`: what the value memo has not seen), and without the value memo
//! (`_no_memo`); and the compile time of the rule set. Reads CRS from
//! ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without it.

#![allow(missing_docs)]

mod common;
use common::corpus;
#[path = "common/waf_crs.rs"]
mod waf_crs;
use waf_crs::{benign_get, crs_files, form, form_head, run};

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
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
    // Argument values and a session cookie new to every transaction, as real users send them:
    // the value memo has seen only the header values and the names (the requests are made
    // outside the timed part).
    let mut n = 0u64;
    let mut fresh_get = || {
        n += 1;
        let uri = format!(
            "/portal/patients/list?page={}&sort=name&ward={}&id={n}",
            n % 500,
            n % 40
        );
        let cookie = format!("session={n:016x}; lang=ja");
        waf_crs::head("GET", &uri, &[("Cookie", &cookie)])
    };
    g.bench_function("benign_get_varied", |b| {
        b.iter_batched(
            &mut fresh_get,
            |h| run(&waf, &h, b""),
            BatchSize::SmallInput,
        )
    });
    let mut m = 0u64;
    let mut fresh_form = || {
        m += 1;
        (form_head(), varied_form(m))
    };
    g.bench_function("form_post_4k_72_fields_varied", |b| {
        b.iter_batched(
            &mut fresh_form,
            |(h, body)| run(&waf, &h, &body),
            BatchSize::SmallInput,
        )
    });
    // The fixed GET through a rule set without the value memo (`value_memo_mb = 0`).
    let mut plain = Waf::load(&crs_files(&crs)).expect("CRS loads");
    plain.set_value_memo(0);
    let plain = Arc::new(plain);
    g.bench_function("benign_get_no_memo", |b| b.iter(|| run(&plain, &get, b"")));
    g.bench_function("form_post_4k_72_fields_no_memo", |b| {
        b.iter(|| run(&plain, &post, &body))
    });
    g.finish();
}

/// A 4 KB form of 72 fields whose values are new for each `n`.
fn varied_form(n: u64) -> Vec<u8> {
    let fields: Vec<String> = (0..72u64)
        .map(|i| {
            format!(
                "field_{i:02}=patient+record+{}+claim+code+A{:05}+2026-12-{:02}",
                n.wrapping_mul(7919).wrapping_add(i) % 100_000,
                n.wrapping_add(i * 37) % 100_000,
                (n + i) % 28 + 1
            )
        })
        .collect();
    fields.join("&").into_bytes()
}

criterion_group!(benches, bench);
criterion_main!(benches);
