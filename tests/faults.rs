//! Faults against the real binary (issue 19): an upstream that resets mid-response, a name that
//! does not resolve, a rule reload that fails mid-traffic, a CA key unreadable at reload, a CA
//! replaced at reload. Each has its defined behaviour (the client's response cut and never
//! completed, a 502, the running policy and CA kept) and raises one `event.kind = event` event
//! naming the fault, counted in `sekisho_faults_total`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An origin that answers the head and part of the body, then resets the connection.
async fn resetting_origin(chunked: bool) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let answer = if chunked {
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n{}\r\n",
                        "p".repeat(1000)
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{}",
                        "p".repeat(1000)
                    )
                };
                let _ = s.write_all(answer.as_bytes()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = s.set_zero_linger();
                drop(s);
            });
        }
    });
    port
}

fn faults(gw: &Gateway, id: &str) -> Vec<serde_json::Value> {
    gw.events()
        .into_iter()
        .filter(|e| e["rule"]["id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_body_cuts_the_client_and_raises_one_event() {
    let gw = Gateway::start("reset", "", "");
    for chunked in [false, true] {
        let port = resetting_origin(chunked).await;
        let url = format!("http://127.0.0.1:{port}/file");
        for _ in 0..3 {
            let r = curl(&["-x", &gw.proxy_url(), "-o", "/dev/null", &url]).await;
            // Never a complete response: curl sees the body cut short (18) or the
            // connection fail (52, 56).
            assert!(
                matches!(r.code, 18 | 52 | 56),
                "chunked={chunked}: curl exit {} ({})",
                r.code,
                r.stderr
            );
        }
        let e = gw.wait_line("events.jsonl", |e| {
            e["rule"]["id"] == "upstream-reset"
                && e["destination"]["port"] == serde_json::json!(port)
        });
        assert_eq!(e["event"]["kind"], "event");
        assert_eq!(e["source"]["ip"], "127.0.0.1");
        println!("upstream reset (chunked={chunked}): {}", e["rule"]["name"]);
    }
    // One event per upstream, every occurrence counted.
    assert_eq!(faults(&gw, "upstream-reset").len(), 2);
    gw.assert_metrics(&["sekisho_faults_total{fault=\"upstream-reset\"} 6"])
        .await;
    // The flow log says what happened to each.
    let flows = std::fs::read_to_string(gw.dir.path().join("flows.jsonl")).unwrap();
    assert!(flows.contains("response body"), "{flows}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresolvable_upstream_gets_502_and_one_event() {
    let gw = Gateway::start("dns", "", "");
    for _ in 0..3 {
        let r = curl(&[
            "-x",
            &gw.proxy_url(),
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            "http://no-such-host.invalid/x",
        ])
        .await;
        assert_eq!(r.stdout, "502", "{}", r.stderr);
    }
    let e = gw.wait_line("events.jsonl", |e| {
        e["rule"]["id"] == "upstream-unresolvable"
    });
    assert!(e.to_string().contains("no-such-host.invalid"), "{e}");
    assert_eq!(faults(&gw, "upstream-unresolvable").len(), 1);
    gw.assert_metrics(&[
        "sekisho_faults_total{fault=\"upstream-unresolvable\"} 3",
        "sekisho_upstream_errors_total{kind=\"dns\"} 3",
    ])
    .await;
}

fn hup(gw: &Gateway) {
    let ok = Command::new("kill")
        .args(["-HUP", &gw.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits until `sekisho_reloads_total{result}` reaches `n`.
async fn reloads(gw: &Gateway, result: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let key = format!("sekisho_reloads_total{{result=\"{result}\"}}");
    while metric(&gw.metrics_text().await, &key) < n {
        assert!(Instant::now() < deadline, "{key} never reached {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_reloads_keep_the_running_rules_and_ca_and_a_new_ca_is_taken() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let dir = TempDir::new("faults-reload");
    let roots = dir.path().join("origin-ca.pem");
    std::fs::write(&roots, &pki.ca_pem).unwrap();
    let rules = dir.path().join("local.rules");
    let base = std::fs::read_to_string(repo().join("rules/ips/sekisho.rules")).unwrap();
    std::fs::write(&rules, &base).unwrap();
    let gw = Gateway::start(
        "faults-reload",
        &format!("upstream_roots = [\"{}\"]", roots.display()),
        &format!(
            "[ips]\nrules = [{:?}]\nclassification = {:?}\n",
            rules.display().to_string(),
            repo()
                .join("rules/ips/classification.config")
                .display()
                .to_string()
        ),
    );
    let https = format!("https://localhost:{}", origin.port);
    let get = |path: String, cacert: std::path::PathBuf| {
        let proxy = gw.proxy_url();
        let url = format!("{https}{path}");
        async move {
            let r = curl(&[
                "--interface",
                "127.0.0.2",
                "-x",
                &proxy,
                "--cacert",
                cacert.to_str().unwrap(),
                "-w",
                "\n%{http_code}",
                &url,
            ])
            .await;
            r.stdout.rsplit('\n').next().unwrap_or("").to_string()
        }
    };
    // The CA in service now, the one that will replace it, and both (for the clean clients).
    let old_ca = dir.path().join("old-ca.crt");
    std::fs::copy(gw.ca_path(), &old_ca).unwrap();
    let fresh = dir.path().join("new-ca");
    let out = Command::new(bin())
        .args(["ca", "init", "--out"])
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let new_ca = fresh.join("ca.crt");
    let ca = dir.path().join("both.crt");
    let both =
        std::fs::read_to_string(&old_ca).unwrap() + &std::fs::read_to_string(&new_ca).unwrap();
    std::fs::write(&ca, both).unwrap();
    assert_eq!(
        get("/sekisho-ips-test-block".into(), old_ca.clone()).await,
        "403"
    );
    // Clean traffic all along, through every reload below.
    let done = AtomicBool::new(false);
    let served = std::sync::atomic::AtomicUsize::new(0);
    let clean = async {
        let (mut ok, mut total) = (0, 0);
        while !done.load(Ordering::Relaxed) {
            total += 1;
            ok += usize::from(get("/hello".into(), ca.clone()).await == "200");
            served.fetch_add(1, Ordering::Relaxed);
        }
        (ok, total)
    };
    // After each reload, clean requests are answered before the next fault (bounded wait): the
    // reloads are fast, and traffic must be seen between them, not only before the first.
    let traffic_after = || async {
        let start = served.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.load(Ordering::Relaxed) < start + 2 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let faults_run = async {
        // 1. A rule file that does not compile.
        std::fs::write(
            &rules,
            format!("{base}\nalert http any any -> any any (msg:\"broken\"; content:\"x; sid:9200002;)\n"),
        )
        .unwrap();
        hup(&gw);
        reloads(&gw, "error", 1.0).await;
        let e = gw.wait_line("events.jsonl", |e| {
            e["rule"]["id"] == "reload-failed" && e.to_string().contains("9200002")
        });
        assert_eq!(e["event"]["kind"], "event");
        assert!(e.to_string().contains("local.rules:"), "{e}");
        assert_eq!(
            get("/sekisho-ips-test-block?again".into(), ca.clone()).await,
            "403"
        );
        traffic_after().await;
        // 2. Rules fixed, but the CA key unreadable (garbage; root reads any mode bits).
        std::fs::write(&rules, &base).unwrap();
        let key = gw.dir.path().join("ca/ca.key");
        std::fs::write(&key, b"not a key\n").unwrap();
        hup(&gw);
        reloads(&gw, "error", 2.0).await;
        let e = gw.wait_line("events.jsonl", |e| {
            e["rule"]["id"] == "reload-failed" && e.to_string().contains("ca.key")
        });
        println!("CA key unreadable: {}", e["rule"]["name"]);
        // Interception goes on with the CA in service.
        assert_eq!(get("/hello?old-ca".into(), old_ca.clone()).await, "200");
        traffic_after().await;
        // 3. A new CA put in place: taken at reload, new leaves chain to it.
        for f in ["ca.crt", "ca.key"] {
            std::fs::copy(fresh.join(f), gw.dir.path().join("ca").join(f)).unwrap();
        }
        hup(&gw);
        reloads(&gw, "ok", 1.0).await;
        assert_eq!(get("/hello?new-ca".into(), new_ca.clone()).await, "200");
        assert_eq!(
            get("/hello?old-ca-gone".into(), old_ca.clone()).await,
            "000"
        );
        assert_eq!(
            get("/sekisho-ips-test-block?new".into(), new_ca).await,
            "403"
        );
        traffic_after().await;
        done.store(true, Ordering::Relaxed);
    };
    let ((ok, total), ()) = tokio::join!(clean, faults_run);
    println!("clean traffic through three reloads: {ok}/{total}");
    assert!(ok == total && total >= 6, "{ok}/{total}");
    gw.assert_metrics(&["sekisho_faults_total{fault=\"reload-failed\"} 2"])
        .await;
}
