//! IPS cost with every loadable ET Open rule: per request (head, bodies, all phases), MB/s of
//! prefilter plus verification over HTML-like bodies, and the compile time of the whole set.
//! Reads the corpus from ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without it.
//! WebSocket frames (needs no corpus): the relay's per-frame work, frames read from the wire
//! and judged by 200 websocket rules, plain and permessage-deflate.

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

/// A client and a server.
fn endpoints() -> Endpoints {
    Endpoints {
        client: "10.1.2.3".parse().expect("ip"),
        client_port: 40000,
        server: Some("203.0.113.10".parse().expect("ip")),
        server_port: Some(443),
    }
}

/// One transaction through every phase; returns the number of alerts.
fn transaction(set: &RuleSet, req: &RequestHead, resp: &ResponseHead, body: &[u8]) -> usize {
    let ep = endpoints();
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

/// 200 websocket rules: content rules on the payload (most with a byte pattern that benign
/// chat text does not hold), opcode and flag conditions, frame buffers.
fn ws_rules() -> String {
    let mut r = String::new();
    for i in 0..190 {
        r.push_str(&format!(
            "alert websocket any any -> any any (msg:\"ws {i}\"; websocket.payload; content:\"cmd{i}|00|exec\"; sid:{};)\n",
            9_000_000 + i
        ));
    }
    for (i, cond) in [
        "websocket.opcode:binary; websocket.payload; content:\"MZ\"; startswith;",
        "websocket.opcode:>8; websocket.payload; content:\"evil\";",
        "websocket.flags:fin,comp; websocket.payload; content:\"powershell\"; nocase;",
        "websocket.mask:0; flow:to_server;",
        "frame:websocket.header; content:\"|8f|\"; startswith;",
        "websocket.payload; pcre:\"/\\beval\\s*\\(/\";",
        "websocket.payload; content:\"<script\"; nocase;",
        "websocket.payload; content:\"../../\";",
        "websocket.payload; content:\"SELECT \"; nocase; content:\" FROM \"; nocase; distance:0;",
        "app-layer-event:websocket.skip_end_of_payload;",
    ]
    .iter()
    .enumerate()
    {
        r.push_str(&format!(
            "alert websocket any any -> any any (msg:\"ws cond {i}\"; {cond} sid:{};)\n",
            9_100_000 + i
        ));
    }
    r
}

/// `n` masked client text frames of about 1 KiB of chat JSON, optionally deflated (RFC 7692).
fn ws_wire(n: usize, deflate: bool) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut wire = Vec::new();
    for i in 0..n {
        let text = format!(
            "{{\"type\":\"message\",\"ward\":\"3F\",\"seq\":{i},\"body\":\"{}\"}}",
            "patient moved to room 12, vitals stable, next check at 14:00. ".repeat(16)
        );
        let (b0, payload) = if deflate {
            let mut out = Vec::with_capacity(text.len());
            c.compress_vec(text.as_bytes(), &mut out, flate2::FlushCompress::Sync)
                .expect("deflate");
            out.truncate(out.len().saturating_sub(4));
            (0xc1, out)
        } else {
            (0x81, text.into_bytes())
        };
        let key = [0x12, 0x34, 0x56, 0x78];
        wire.push(b0);
        wire.push(0x80 | 126);
        wire.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        wire.extend_from_slice(&key);
        wire.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
    }
    wire
}

/// Reads every frame of `wire` and judges it as the relay does; returns the alerts.
fn ws_relay(set: &RuleSet, wire: &[u8]) -> usize {
    use sekisho_proxy::wsframe::{Next, WsReader, DEFAULT_MAX_PAYLOAD};
    let ep = endpoints();
    let mut vars = FlowVars::default();
    let mut scratch = Scratch::default();
    let mut r = WsReader::new(Direction::Request, DEFAULT_MAX_PAYLOAD);
    let (mut at, mut alerts) = (0, 0);
    loop {
        match r.next(&wire[at..]) {
            Next::Frame(f, n) => {
                let mut tx = Tx::new();
                tx.ws_frame(&f);
                scratch.fired.clear();
                alerts += set
                    .eval(Phase::WsFrame, &tx, &ep, None, &mut vars, &mut scratch)
                    .len();
                at += n;
            }
            Next::Pass(n) => at += n,
            Next::More => return alerts,
        }
    }
}

fn bench_ws(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("sekisho-ws-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("ws.rules");
    std::fs::write(&file, ws_rules()).expect("rules");
    let cfg: IpsConfig =
        toml::from_str(&format!("rules = [{:?}]\n", file.display().to_string())).expect("config");
    let set = RuleSet::load(&cfg.load_options(None).expect("options")).expect("ws rules load");
    let _ = std::fs::remove_dir_all(&dir);
    let mut g = c.benchmark_group("ips_websocket");
    for (name, deflate) in [("frames_1k_text", false), ("frames_1k_deflate", true)] {
        let wire = ws_wire(1000, deflate);
        g.throughput(Throughput::Elements(1000));
        g.bench_function(name, |b| b.iter(|| ws_relay(&set, &wire)));
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    bench_ws(c);
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
