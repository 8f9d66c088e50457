//! Transactions to count instructions on (not a benchmark): CRS PL1 on the benign GET or the
//! 4 KB form of `benches/common/waf_crs.rs`, `N` times through every phase, each in
//! [`one`] (never inlined), after a warm-up outside it. `benches/waf_instructions.sh` runs it
//! under callgrind, collecting inside `one` only: instructions per warm transaction, a figure
//! that does not move with the machine's load as timings do.
//!
//! `cargo run --release -p sekisho-waf --example crs_count -- <crs dir> [get|form] [N]`

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
    let (head, body) = match which {
        "form" => (form_head(), form()),
        _ => (benign_get(), Vec::new()),
    };
    for _ in 0..2 {
        through(&waf, &head, &body);
    }
    for _ in 0..n {
        one(&waf, &head, &body);
    }
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
