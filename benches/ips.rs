//! IPS cost with every loadable ET Open rule: per request (head, bodies, all phases), MB/s of
//! prefilter plus verification over HTML-like bodies, and the compile time of the whole set.
//! Reads the corpus from ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without it.

#![allow(missing_docs)]

mod common;
use common::{corpus, rss_kib};

use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_core::{Direction, RequestHead, ResponseHead};
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::{IpsConfig, Phase, RuleSet};

/// An `[ips]` table over every ET Open rule file in `et` and its classification.
fn config(et: &Path) -> IpsConfig {
    toml::from_str(&format!(
        "rules = [{:?}]\nclassification = {:?}\n",
        et.join("*.rules").display().to_string(),
        et.join("classification.config").display().to_string()
    ))
    .expect("config")
}

/// Deterministic HTML-like text: tags, attributes, words, script and JSON fragments.
fn html(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "patient",
        "record",
        "ward",
        "doctor",
        "appointment",
        "claim",
        "prescription",
        "allergy",
        "the",
        "and",
        "of",
        "to",
        "in",
        "is",
        "for",
        "on",
        "with",
        "as",
        "by",
        "at",
        "from",
        "window",
        "document",
        "function",
        "var",
        "return",
        "class",
        "style",
        "div",
        "span",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 256);
    out.extend_from_slice(
        b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Portal</title></head><body>",
    );
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        match x % 7 {
            0 => out.extend_from_slice(b"<div class=\"row\"><span>"),
            1 => out.extend_from_slice(b"</span></div>\n"),
            2 => out.extend_from_slice(b"<a href=\"/records/view?id=1234&amp;tab=notes\">"),
            3 => out.extend_from_slice(b"<script>var cfg = {\"page\": 2, \"size\": 50};</script>"),
            _ => {
                out.extend_from_slice(WORDS[(x >> 8) as usize % WORDS.len()].as_bytes());
                out.push(b' ');
            }
        }
    }
    out.truncate(n);
    out
}

fn request(path: &str) -> RequestHead {
    let mut h = http::HeaderMap::new();
    for (k, v) in [
        ("host", "portal.hospital.example"),
        ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "ja,en-US;q=0.7,en;q=0.3"),
        ("accept-encoding", "gzip, deflate, br"),
        ("referer", "https://portal.hospital.example/records"),
        ("cookie", "sid=8f14e45fceea167a5a36dedd4bea2543; lang=ja"),
        ("connection", "keep-alive"),
    ] {
        h.insert(http::header::HeaderName::from_static(k), v.parse().expect("header"));
    }
    RequestHead::new(
        http::Method::GET,
        path.parse().expect("uri"),
        http::Version::HTTP_11,
        h,
        443,
    )
}

fn response(len: usize) -> ResponseHead {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().expect("h"),
    );
    h.insert(
        http::header::CONTENT_LENGTH,
        len.to_string().parse().expect("h"),
    );
    h.insert(http::header::SERVER, "nginx".parse().expect("h"));
    ResponseHead {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_11,
        headers: h,
        reason: None,
        raw: None,
        wire: None,
    }
}

/// One transaction through every phase; returns the number of alerts.
fn transaction(set: &RuleSet, req: &RequestHead, resp: &ResponseHead, body: &[u8]) -> usize {
    let ep = Endpoints {
        client: "10.1.2.3".parse().expect("ip"),
        client_port: 40000,
        server: Some("203.0.113.10".parse().expect("ip")),
        server_port: Some(443),
    };
    let mut vars = FlowVars::default();
    let mut scratch = Scratch::default();
    let mut tx = Tx::new();
    let mut n = 0;
    tx.request_head(req);
    n += set
        .eval(Phase::ReqHead, &tx, &ep, None, &mut vars, &mut scratch)
        .len();
    tx.finish_body(Direction::Request, 1 << 20);
    n += set
        .eval(Phase::ReqBody, &tx, &ep, None, &mut vars, &mut scratch)
        .len();
    tx.response_head(resp);
    n += set
        .eval(Phase::RespHead, &tx, &ep, None, &mut vars, &mut scratch)
        .len();
    tx.body_chunk(Direction::Response, body, 1 << 20);
    tx.finish_body(Direction::Response, 1 << 20);
    n += set
        .eval(Phase::RespBody, &tx, &ep, None, &mut vars, &mut scratch)
        .len();
    n
}

fn bench(c: &mut Criterion) {
    let Some(et) = corpus("et-open") else {
        return;
    };
    let cfg = config(&et);
    let before = rss_kib();
    let t0 = Instant::now();
    let set = RuleSet::load(&cfg.load_options(None).expect("options")).expect("ET Open loads");
    let took = t0.elapsed();
    eprintln!(
        "ips: {} rules compiled in {:.2} s, resident memory +{} MiB",
        set.len(),
        took.as_secs_f64(),
        (rss_kib().saturating_sub(before)) / 1024
    );

    let mut g = c.benchmark_group("ips");
    let req = request("/records/view?id=1234&tab=notes");
    let small = html(16 * 1024, 7);
    let small_resp = response(small.len());
    g.throughput(Throughput::Elements(1));
    g.bench_function("request_16k_html_all_et_rules", |b| {
        b.iter(|| transaction(&set, &req, &small_resp, &small))
    });
    let big = html(1 << 20, 11);
    let big_resp = response(big.len());
    let total = big.len() as u64;
    g.throughput(Throughput::Bytes(total));
    g.bench_function("html_1mib_body_all_et_rules", |b| {
        b.iter(|| transaction(&set, &req, &big_resp, &big))
    });
    g.finish();

    let mut g = c.benchmark_group("ips_compile");
    g.sample_size(10);
    g.bench_function("et_open_all_rules", |b| {
        b.iter(|| RuleSet::load(&cfg.load_options(None).expect("options")).expect("loads"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
