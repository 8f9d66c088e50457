//! OWASP CRS and the benign requests the WAF's speed is measured on, shared by the criterion
//! bench (`benches/waf.rs`), the profiling loop (`gateway/waf/examples/crs_loop.rs`) and the
//! CRS load test (`gateway/waf/tests/crs.rs`), each including this file by path.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sekisho_waf::engine::{RequestHead, Transaction, Waf};

/// The CRS rule files in `dir` in load order: the setup first, then `rules/*.conf` by name.
pub fn crs_files(dir: &Path) -> Vec<PathBuf> {
    let mut rules: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
        .unwrap_or_else(|e| panic!("{}: {e} (set SEKISHO_CORPORA)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    rules.sort();
    let mut files = vec![dir.join("crs-setup.conf.example")];
    files.extend(rules);
    files
}

/// A browser's request head (`extra` fields added after its own).
pub fn head(method: &str, uri: &str, extra: &[(&str, &str)]) -> RequestHead {
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

/// The benign GET.
pub fn benign_get() -> RequestHead {
    head("GET", "/portal/patients/list?page=2&sort=name&ward=3", &[])
}

/// The head of the form POST.
pub fn form_head() -> RequestHead {
    head(
        "POST",
        "/claims/submit",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "4096"),
        ],
    )
}

/// A 4 KB urlencoded form with 72 fields (a claims form: codes, names, dates, amounts).
pub fn form() -> Vec<u8> {
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

/// One transaction through every phase; the rules that matched.
pub fn run(waf: &Arc<Waf>, h: &RequestHead, body: &[u8]) -> usize {
    let mut tx = Transaction::new(Arc::clone(waf), h);
    tx.request_headers();
    tx.request_body(body, body.len());
    let resp = vec![(b"Content-Type".to_vec(), b"text/html".to_vec())];
    tx.response_headers(200, "HTTP/1.1", &resp);
    tx.response_body(b"<html><body>ok</body></html>");
    tx.logging();
    tx.matched_rules().len()
}
