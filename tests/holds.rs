//! Held bodies through the real binary fail closed (issue 16's reproduction): an upload of a large
//! stored zip whose last member is EICAR, behind a short `[limits] resolve_timeout_secs`. With the
//! default AV deadline (at least `scan_timeout_secs`) the scan runs to the end and blocks EICAR;
//! with short stage deadlines the silent stage blocks (fail-closed) or passes with an
//! `uninspected` event (fail-open), never silently; with two holding stages (IPS + AV) the same;
//! a reload during a hold leaves the held flow to be decided by the policy it started with.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// A stored zip of `mib` MiB of pseudo-random members, then `eicar.com`.
fn archive(mib: usize) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let block: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for i in 0..mib.div_ceil(8) {
        w.start_file(format!("scans/part{i}.bin"), stored).unwrap();
        for _ in 0..8 {
            w.write_all(&block).unwrap();
        }
    }
    w.start_file("eicar.com", stored).unwrap();
    w.write_all(EICAR).unwrap();
    w.finish().unwrap().into_inner()
}

fn av_table(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[av]\nyara = [\"{}\"]\nclamav = [\"{}\"]\ncache_dir = \"{}\"\n{extra}\n",
        repo().join("rules/yara").display(),
        repo().join("rules/clamav").display(),
        dir.join("av-cache").display(),
    )
}

const LIMITS: &str = "[limits]\nresolve_timeout_secs = 1\nhold_bytes_per_flow = 402653184\nhold_bytes_total = 805306368\nread_timeout_secs = 60\n";

/// Uploads `file` through the gateway to the origin's `/count`; returns (status, body).
async fn upload(gw: &Gateway, origin: u16, file: &std::path::Path) -> (String, String) {
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "--max-time",
        "300",
        "-H",
        "Content-Type: application/zip",
        "--data-binary",
        &format!("@{}", file.display()),
        "-w",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{origin}/count"),
    ])
    .await;
    let (body, status) = r.stdout.rsplit_once('\n').unwrap_or(("", &r.stdout));
    (status.to_string(), body.to_string())
}

/// The event a block page names.
fn page_event(gw: &Gateway, page: &str) -> serde_json::Value {
    let id = page
        .split("id=\"event-id\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_else(|| panic!("no event id on the page: {page}"))
        .to_string();
    gw.wait_line("events.jsonl", |v| v["event"]["id"] == id.as_str())
}

/// The threat events that satisfy `pred`.
fn events_of(gw: &Gateway, pred: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
    gw.events().into_iter().filter(|e| pred(e)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_uploads_are_never_released_undecided() {
    let origin = Origin::start(None).await;
    let files = TempDir::new("holds-files");
    let big = files.path().join("big.zip");
    std::fs::write(&big, archive(96)).unwrap();

    // 1. The reproduction with the AV deadline at its default: at least scan_timeout_secs (120),
    // whatever [limits] says, so the whole archive is scanned and EICAR blocks.
    let rule_dir = TempDir::new("holds-cache");
    let gw = Gateway::start(
        "holds-default",
        "",
        &format!("{LIMITS}{}", av_table(rule_dir.path(), "")),
    );
    let (status, body) = upload(&gw, origin.port, &big).await;
    assert_eq!(status, "403", "{body}");
    let ev = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "EICAR_Test_File");
    assert_eq!(ev["evidence"]["location"], "request.body > zip:eicar.com");
    let page = page_event(&gw, &body);
    assert_eq!(page["stage"], "av");
    assert_eq!(page["file"]["name"], "eicar.com", "{page}");

    // 2. Short deadlines: the scan cannot finish in a second, so the stage gives no verdict in
    // time. Fail-closed blocks, naming the stage and the deadline.
    let gw = Gateway::start(
        "holds-short",
        "",
        &format!(
            "{LIMITS}{}",
            av_table(
                rule_dir.path(),
                "scan_timeout_secs = 1\nresolve_timeout_secs = 1"
            )
        ),
    );
    let started = std::time::Instant::now();
    let (status, body) = upload(&gw, origin.port, &big).await;
    assert_eq!(status, "403", "{body}");
    let ev = page_event(&gw, &body);
    assert_eq!(ev["stage"], "av");
    assert!(
        ["stage-timeout", "stage-error"].contains(&ev["rule"]["id"].as_str().unwrap()),
        "{ev}"
    );
    assert_eq!(ev["event"]["action"], "blocked");
    assert!(
        ev.to_string().contains("deadline") || ev.to_string().contains("within 1s"),
        "{ev}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));

    // 3. Fail-open: the upload passes, with an uninspected event and the counter.
    let gw = Gateway::start(
        "holds-open",
        "",
        &format!(
            "{LIMITS}{}",
            av_table(
                rule_dir.path(),
                "scan_timeout_secs = 1\nresolve_timeout_secs = 1\non_error = \"fail-open\""
            )
        ),
    );
    let (status, body) = upload(&gw, origin.port, &big).await;
    let size = std::fs::metadata(&big).unwrap().len().to_string();
    assert_eq!((status.as_str(), body.as_str()), ("200", size.as_str()));
    let ev = gw.wait_line("events.jsonl", |e| e["stage"] == "av");
    assert_eq!(ev["event"]["category"], "uninspected", "{ev}");
    assert_eq!(ev["event"]["action"], "allowed");
    gw.assert_metrics(&["sekisho_uninspected_total{listener=\"forward\"} 1"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_holding_stages_both_answer_before_release() {
    let origin = Origin::start(None).await;
    let files = TempDir::new("holds2-files");
    let rules = files.path().join("upload.rules");
    std::fs::write(
        &rules,
        "drop http any any -> any any (msg:\"upload marker\"; flow:to_server; http.request_body; \
         content:\"UPLOAD-MARKER-7\"; sid:9100001; rev:1;)\n",
    )
    .unwrap();
    let small = files.path().join("small.zip");
    std::fs::write(&small, archive(16)).unwrap();
    let ips = format!(
        "[ips]\nrules = [\"{}\"]\nbody_limit = 402653184\n",
        rules.display()
    );
    // Both stages hold the upload (the IPS because it fits its body_limit); the AV scan gets a
    // deadline it can meet and blocks EICAR.
    let gw = Gateway::start(
        "holds-two",
        "",
        &format!("{LIMITS}{ips}{}", av_table(files.path(), "")),
    );
    let (status, _) = upload(&gw, origin.port, &small).await;
    assert_eq!(status, "403");
    gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "EICAR_Test_File");
    // The same upload with the AV deadline too short for its scan: the IPS answered (clean),
    // the AV did not; fail-closed blocks.
    let big = files.path().join("big.zip");
    std::fs::write(&big, archive(96)).unwrap();
    let gw = Gateway::start(
        "holds-two-short",
        "",
        &format!(
            "{LIMITS}{ips}{}",
            av_table(
                files.path(),
                "scan_timeout_secs = 1\nresolve_timeout_secs = 1"
            )
        ),
    );
    let (status, page) = upload(&gw, origin.port, &big).await;
    assert_eq!(status, "403");
    let ev = page_event(&gw, &page);
    assert_eq!(
        (ev["stage"].as_str(), ev["event"]["action"].as_str()),
        (Some("av"), Some("blocked")),
        "{ev}"
    );
    assert!(
        ["stage-timeout", "stage-error"].contains(&ev["rule"]["id"].as_str().unwrap()),
        "{ev}"
    );
    assert!(events_of(&gw, |e| e["stage"] == "ips").is_empty());
}

/// Sends an absolute-form POST in two halves with a reload (SIGHUP) between them; returns the
/// status line.
async fn upload_across_reload(gw: &Gateway, origin: u16, body: &[u8]) -> String {
    let mut tcp = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let head = format!(
        "POST http://127.0.0.1:{origin}/count HTTP/1.1\r\nHost: 127.0.0.1:{origin}\r\n\
         Content-Type: application/zip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let half = body.len() / 2;
    tcp.write_all(&body[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.child.id().to_string();
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(ok.success());
    for _ in 0..200 {
        let log = std::fs::read_to_string(&gw.stderr).unwrap_or_default();
        if log.contains("policy reloaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_to_string(&gw.stderr)
        .unwrap()
        .contains("policy reloaded"));
    tcp.write_all(&body[half..]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_hold_still_decides_the_held_body() {
    let origin = Origin::start(None).await;
    let files = TempDir::new("holds-reload");
    let gw = Gateway::start(
        "holds-reload",
        "",
        &format!("{LIMITS}{}", av_table(files.path(), "")),
    );
    let line = upload_across_reload(&gw, origin.port, &archive(8)).await;
    assert!(line.contains(" 403 "), "{line}");
    gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "EICAR_Test_File");
}
