//! Pathological input cannot stall a flow: PCRE2 match limits, the per-flow pcre budget, and the
//! recursion limit of content chains, each counted.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::Ordering;
use std::time::Duration;

use sekisho_core::{Direction, RequestHead};
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::{Phase, RuleSet};

mod common;

fn load(rules: &str) -> RuleSet {
    common::load_with(rules, None)
}

fn request(uri: &str) -> Tx {
    let mut h = http::HeaderMap::new();
    h.insert("host", "h.test".parse().unwrap());
    let head = RequestHead::new(
        http::Method::GET,
        uri.parse().unwrap(),
        http::Version::HTTP_11,
        h,
        80,
    );
    let mut tx = Tx::new();
    tx.request_head(&head);
    tx.finish_body(Direction::Request, 1 << 20);
    tx
}

/// The request-head hits of `tx` with a fresh flow and `scratch`.
fn head_hits(set: &RuleSet, tx: &Tx, scratch: &mut Scratch) -> usize {
    set.eval(
        Phase::ReqHead,
        tx,
        &ep(),
        None,
        &mut FlowVars::default(),
        scratch,
    )
    .len()
}

fn ep() -> Endpoints {
    Endpoints {
        client: "10.0.0.1".parse().unwrap(),
        client_port: 1,
        server: None,
        server_port: None,
    }
}

#[test]
fn catastrophic_pcre_hits_the_match_limit_fast() {
    // The lookahead sends it to PCRE2; nested quantifiers make it exponential without limits.
    let set = load(
        "alert http any any -> any any (msg:\"evil\"; flow:to_server; http.uri; content:\"/a\"; pcre:\"/^\\/a(\\w+\\s?)*(?=x)$/U\"; sid:1; rev:1;)\n",
    );
    let uri = format!("/a{}!", "b".repeat(5000));
    let tx = request(&uri);
    assert_eq!(head_hits(&set, &tx, &mut Scratch::default()), 0);
    assert_eq!(set.stats.pcre_limit_hits.load(Ordering::Relaxed), 1);
}

#[test]
fn the_flow_pcre_budget_stops_further_pcre_and_is_counted() {
    let mut rules = String::new();
    for i in 1..=50 {
        rules.push_str(&format!(
            "alert http any any -> any any (msg:\"p{i}\"; flow:to_server; http.uri; content:\"/x\"; pcre:\"/\\/x[a-z]{{{i}}}q/U\"; sid:{i}; rev:1;)\n"
        ));
    }
    let set = load(&rules);
    let tx = request(&format!("/x{}", "a".repeat(20_000)));
    let mut s = Scratch::with_budget(Duration::from_nanos(1));
    head_hits(&set, &tx, &mut s);
    assert!(s.budget_exhausted);
    assert_eq!(set.stats.pcre_budget_exhausted.load(Ordering::Relaxed), 1);
    // Without a budget all 50 run (none matches: no `q`).
    let mut s = Scratch::default();
    head_hits(&set, &tx, &mut s);
    assert!(!s.budget_exhausted);
}

#[test]
fn relative_content_retries_are_bounded() {
    // `a` then `b` within 1 byte, retried at every `a`: a buffer of 60,000 `a`s is cut by the
    // recursion limit instead of scanning quadratically.
    let set = load(
        "alert http any any -> any any (msg:\"r\"; flow:to_server; http.uri; content:\"a\"; content:\"a\"; distance:0; content:\"b\"; distance:0; within:1; sid:7; rev:1;)\n",
    );
    let tx = request(&format!("/{}", "a".repeat(60_000)));
    let mut s = Scratch::default();
    assert_eq!(head_hits(&set, &tx, &mut s), 0);
    assert_eq!(s.step_limit_hits, 1);
    // And it still finds a real match inside the limit.
    let tx = request("/aaab");
    assert_eq!(head_hits(&set, &tx, &mut Scratch::default()), 1);
}
