//! Transactions to count instructions on (not a benchmark): CRS PL1 on the benign GET or the
//! 4 KB form of `benches/common/waf_crs.rs`, `N` times through every phase, each in
//! [`one`] (never inlined), after a warm-up outside it. `get-varied` and `form-varied` change
//! the argument values and the session cookie with every transaction, as real users' do (the
//! value memo has seen only the headers). `benches/waf_instructions.sh` runs it
//! under callgrind, collecting inside `one` only: instructions per warm transaction, a figure
//! that does not move with the machine's load as timings do.
//!
//! `cargo run --release -p sekisho-waf --example crs_count -- <crs dir> [get|form|get-varied|form-varied] [N]`

use std::path::PathBuf;
use std::sync::Arc;

use sekisho_waf::engine::{RequestHead, Transaction, Waf};

#[path = "../../../benches/common/waf_crs.rs"]
mod waf_crs;
use waf_crs::{benign_get, crs_files, form, form_head};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let crs = PathBuf::from(&args[1]);
    let which = args.get(2).map_or("get", String::as_str);
    let n: usize = args.get(3).map_or(20, |s| s.parse().expect("N"));
    let waf = Arc::new(Waf::load(&crs_files(&crs)).expect("CRS loads"));
    let varied = which.ends_with("-varied");
    let (head, body) = match which.trim_end_matches("-varied") {
        "form" => (form_head(), form()),
        _ => (benign_get(), Vec::new()),
    };
    let request = |i: usize| match varied {
        true => vary(&head, &body, i),
        false => (head.clone(), body.clone()),
    };
    for i in 0..2 {
        let (head, body) = request(i);
        through(&waf, &head, &body);
    }
    for i in 0..n {
        let (head, body) = request(i + 2);
        one(&waf, &head, &body);
    }
}

/// The request with its argument values and session cookie made the `i`th user's.
fn vary(head: &RequestHead, body: &[u8], i: usize) -> (RequestHead, Vec<u8>) {
    let mut head = head.clone();
    let uri = String::from_utf8_lossy(&head.uri).replace("page=2", &format!("page={i}"));
    head.uri = uri
        .replace("ward=3", &format!("ward={}&q=p{i}x", i % 7))
        .into_bytes();
    for (name, value) in &mut head.headers {
        if name.eq_ignore_ascii_case(b"cookie") {
            *value = format!("session={i:012x}; lang=ja").into_bytes();
        }
    }
    let body = String::from_utf8_lossy(body).replace("record+", &format!("record+{i}+"));
    (head, body.into_bytes())
}

/// One counted transaction.
#[inline(never)]
fn one(waf: &Arc<Waf>, head: &RequestHead, body: &[u8]) {
    through(waf, head, body);
}

/// A transaction through every phase, with a small HTML response.
#[inline(always)]
fn through(waf: &Arc<Waf>, head: &RequestHead, body: &[u8]) {
    let mut tx = Transaction::new(Arc::clone(waf), head);
    tx.request_headers();
    tx.request_body(body, body.len());
    let resp = [(b"Content-Type".to_vec(), b"text/html".to_vec())];
    tx.response_headers(200, "HTTP/1.1", &resp);
    tx.response_body(b"<html><body><p>Patient list, page two.</p></body></html>");
    tx.logging();
    std::hint::black_box(tx.matched_rules().len());
}
