//! End-to-end tests of the forward proxy: the real `sekisho` binary, a local origin, and real
//! clients (curl and a Rust TLS client), all on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    gw: Gateway,
    origin: Origin,
    pki: TestPki,
    _roots: TempDir,
}

async fn setup(tag: &str, policy: &str) -> Setup {
    let pki = TestPki::new("Origin Test CA", &["localhost", "127.0.0.1", "::1"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let roots = TempDir::new("roots");
    let ca = roots.path().join("origin-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let gw = Gateway::start(
        tag,
        &format!(
            "upstream_roots = [\"{}\"]\nsplice = [\"127.0.0.1\", \"*.spliced.test\"]",
            ca.display()
        ),
        policy,
    );
    Setup {
        gw,
        origin,
        pki,
        _roots: roots,
    }
}

impl Setup {
    /// curl through the gateway, trusting the gateway CA.
    async fn curl(&self, args: &[&str]) -> Curl {
        let (proxy, ca) = (self.gw.proxy_url(), self.gw.ca_path());
        let mut all = vec!["-x", proxy.as_str(), "--cacert", ca.to_str().unwrap()];
        all.extend_from_slice(args);
        curl(&all).await
    }
}

impl Setup {
    /// POSTs `file` to the origin's `/count` (which answers the length it received).
    async fn upload(&self, flag: &str, file: &std::path::Path) -> Curl {
        let data = format!("@{}", file.display());
        let url = format!("https://localhost:{}/count", self.origin.port);
        self.curl(&[flag, "--data-binary", &data, &url]).await
    }

    /// GETs `size` bytes from the origin; stdout is the downloaded size.
    async fn download(&self, size: usize) -> Curl {
        let url = format!("https://localhost:{}/bytes/{size}", self.origin.port);
        self.curl(&["-o", "/dev/null", "-w", "%{size_download}", &url])
            .await
    }
}

const POLICY: &str = "[policy]\ndeny_hosts = [\"denied.test\", \"*.evil.test\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypted_https_http1_and_h2_through_curl() {
    let s = setup("https", POLICY).await;
    let url = format!("https://localhost:{}/hello", s.origin.port);
    let ca = s.gw.ca_path();
    for (flag, want_version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let r = s.curl(&[flag, "-w", "\n%{http_version}", &url]).await;
        assert_eq!(r.code, 0, "{flag}: {}", r.stderr);
        assert_eq!(r.stdout, format!("hello\n{want_version}"), "{flag}");
    }
    // Over the IPv6 listener too.
    let p6 = s.gw.proxy6.expect("IPv6 listener");
    let r = curl(&[
        "-x",
        &format!("http://{p6}"),
        "--cacert",
        ca.to_str().unwrap(),
        &url,
    ])
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{}", r.stderr);
    // Without the gateway CA the client must refuse: proof that the traffic was intercepted.
    let r = curl(&["-x", &s.gw.proxy_url(), &url]).await;
    assert_eq!(
        r.code, 60,
        "curl must reject the minted leaf without the gateway CA: {}",
        r.stderr
    );

    // Upstream sees a Via header and no proxy/hop-by-hop headers.
    let r = s
        .curl(&[
            "--http1.1",
            "-H",
            "Connection: keep-alive, X-Drop-Me",
            "-H",
            "X-Drop-Me: 1",
            "-H",
            "Keep-Alive: timeout=5",
            &format!("https://localhost:{}/headers", s.origin.port),
        ])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("via: 1.1 ") && r.stdout.contains(" (sekisho)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("x-drop-me"), "{}", r.stdout);
    assert!(!r.stdout.contains("keep-alive"), "{}", r.stdout);

    // The upstream leg is HTTP/1.1 by default (`upstream_http2 = "auto"`); a request that needs h2
    // end to end (TE: trailers, gRPC) goes over h2 (ALPN with the origin) and carries the
    // authority once, as :authority: a duplicate Host header makes nginx answer 400.
    let r = s
        .curl(&[&format!("https://localhost:{}/proto", s.origin.port)])
        .await;
    assert_eq!(r.stdout, "HTTP/1.1", "{}", r.stderr);
    let r = s
        .curl(&[
            "-H",
            "TE: trailers",
            &format!("https://localhost:{}/proto", s.origin.port),
        ])
        .await;
    assert_eq!(r.stdout, "HTTP/2.0", "{}", r.stderr);
    let r = s
        .curl(&[
            "-H",
            "TE: trailers",
            &format!("https://localhost:{}/headers", s.origin.port),
        ])
        .await;
    assert!(
        !r.stdout.contains("host:"),
        "no Host header next to :authority: {}",
        r.stdout
    );

    // The communication log says decrypted, with SNI and status.
    let line = s.gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/hello" && v["status"] == 200
    });
    assert_eq!(line["tls"]["mode"], "decrypted");
    assert_eq!(line["sni"], "localhost");
    assert_eq!(line["verdict"], "allow");
    assert_eq!(line["source"]["ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_leaf_is_issued_by_gateway_ca_with_matching_san() {
    let s = setup("leaf", POLICY).await;
    let gw_ca = std::fs::read_to_string(s.gw.ca_path()).unwrap();
    for (target, name, want_san) in [
        (
            format!("localhost:{}", s.origin.port),
            "localhost",
            "localhost",
        ),
        (format!("[::1]:{}", s.origin.port), "::1", "::1"),
    ] {
        let tcp = connect_tunnel(s.gw.proxy, &target).await;
        let (mut tls, chain) = tls_peer_chain(tcp, name, &gw_ca)
            .await
            .expect("handshake with gateway CA");
        assert_eq!(chain.len(), 2, "leaf + CA are sent");
        let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        let ca_pem = x509_parser::pem::parse_x509_pem(gw_ca.as_bytes())
            .unwrap()
            .1;
        let ca = ca_pem.parse_x509().unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        assert_ne!(
            leaf.public_key().raw,
            ca.public_key().raw,
            "leaf must not reuse the CA key"
        );
        let sans: Vec<String> = leaf
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => d.to_string(),
                x509_parser::extensions::GeneralName::IPAddress(b) if b.len() == 16 => {
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap()).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, vec![want_san.to_string()]);
        let validity =
            leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
        assert!(validity <= 9 * 86_400, "short-lived leaf, got {validity} s");
        // And it really proxies.
        let host = if name.contains(':') {
            format!("[{name}]")
        } else {
            name.to_string()
        };
        tls.write_all(
            format!("GET /hello HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut resp = String::new();
        tls.read_to_string(&mut resp).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("hello"), "{resp}");
    }
    s.gw.assert_metrics(&["sekisho_cert_cache_total{result=\"miss\"}"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spliced_host_shows_origin_certificate() {
    let s = setup("splice", POLICY).await;
    // 127.0.0.1 is on the splice list: the client sees the origin's own certificate.
    let tcp = connect_tunnel(s.gw.proxy, &format!("127.0.0.1:{}", s.origin.port)).await;
    let (_tls, chain) = tls_peer_chain(tcp, "127.0.0.1", &s.pki.ca_pem)
        .await
        .expect("origin CA verifies");
    assert_eq!(chain[0], s.pki.cert_der, "the origin's leaf, untouched");
    // curl trusting only the origin CA succeeds through the proxy.
    let r = curl(&[
        "-x",
        &s.gw.proxy_url(),
        "--cacert",
        s._roots.path().join("origin-ca.pem").to_str().unwrap(),
        &format!("https://127.0.0.1:{}/hello", s.origin.port),
    ])
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{}", r.stderr);
    let line = s.gw.wait_line("flows.jsonl", |v| {
        v["tls"]["mode"] == "spliced" && v["bytes_to_client"].as_u64() > Some(0)
    });
    assert_eq!(line["method"], "CONNECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_gets_block_page_and_event() {
    let s = setup("untrusted", POLICY).await;
    // A second origin whose CA the gateway does not trust.
    let rogue = TestPki::new("Rogue CA", &["localhost"]);
    let bad = Origin::start(Some(rogue.server_config())).await;
    let r = s
        .curl(&[
            "-w",
            "\n%{http_code}",
            &format!("https://localhost:{}/hello", bad.port),
        ])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.ends_with("\n502"), "{}", r.stdout);
    assert!(
        r.stdout.contains("Untrusted server certificate"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains("hello\n"),
        "the upstream body must not pass"
    );
    let ev = s.gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "upstream-certificate"
    });
    let id = ev["event"]["id"].as_str().unwrap();
    assert!(r.stdout.contains(id), "block page names the event id {id}");
    assert_eq!(ev["event"]["action"], "blocked");
    assert_eq!(ev["tls"]["decrypted"], true);
    assert_eq!(
        ev["tls"]["error"]["code"], "upstream-certificate-unknown-issuer",
        "{ev}"
    );
    assert_eq!(ev["destination"]["domain"], "localhost");
    let flow = s.gw.wait_line("flows.jsonl", |v| v["status"] == 502);
    assert_eq!(
        flow["tls"]["error"]["code"], "upstream-certificate-unknown-issuer",
        "{flow}"
    );
    s.gw.assert_metrics(&["sekisho_upstream_errors_total{kind=\"tls_cert\"} 1"])
        .await;
}

/// A client that refuses the minted certificate (pinning, or no gateway CA): reported once an
/// hour per host; a host in `[tls] pinning_splice` is spliced afterwards, others never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refusing_the_minted_certificate_are_reported_and_listed_hosts_spliced() {
    let pki = TestPki::new("Origin Test CA", &["localhost", "::1"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let roots = TempDir::new("pin-roots");
    let origin_ca = roots.path().join("origin-ca.pem");
    std::fs::write(&origin_ca, &pki.ca_pem).unwrap();
    let gw = Gateway::start(
        "pinning",
        &format!(
            "upstream_roots = [\"{}\"]\npinning_splice = [\"localhost\"]",
            origin_ca.display()
        ),
        POLICY,
    );
    // A client trusting only the origin's CA: it refuses the gateway's minted certificate.
    let pinned = |url: String| {
        let (proxy, ca) = (gw.proxy_url(), origin_ca.clone());
        async move { curl(&["-x", &proxy, "--cacert", ca.to_str().unwrap(), &url]).await }
    };
    let url = format!("https://localhost:{}/hello", origin.port);
    let r = pinned(url.clone()).await;
    assert_ne!(r.code, 0, "the minted certificate is refused: {}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "client-refused-certificate"
    });
    let name = ev["rule"]["name"].as_str().unwrap();
    assert!(
        name.contains("localhost") && name.contains("spliced"),
        "{ev}"
    );
    assert_eq!(
        ev["tls"]["error"]["code"], "client-refused-certificate",
        "{ev}"
    );
    // Listed: the next tunnel is spliced, and the pinned client reaches its origin.
    let r = pinned(url).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{}", r.stderr);
    gw.wait_line("flows.jsonl", |v| v["tls"]["mode"] == "spliced");
    // Not listed ([::1]): reported, never spliced.
    let v6 = format!("https://[::1]:{}/hello", origin.port);
    for _ in 0..2 {
        let r = pinned(v6.clone()).await;
        assert_ne!(r.code, 0, "[::1] stays inspected: {}", r.stdout);
    }
    gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "client-refused-certificate"
            && v["rule"]["name"]
                .as_str()
                .unwrap_or("")
                .contains("pinning_splice to splice")
    });
    gw.assert_metrics(&["sekisho_tls_handshakes_total{result=\"refused_certificate\"} 3"])
        .await;
}

/// `[tls] allow_invalid_upstream`: a listed host whose certificate does not verify is served,
/// with the reason logged as an event; an unlisted one still gets the 502 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_invalid_upstream_passes_listed_hosts_and_logs_why() {
    let rogue = TestPki::new("Rogue CA", &["localhost", "::1"]);
    let bad = Origin::start(Some(rogue.server_config())).await;
    let gw = Gateway::start(
        "allow-invalid",
        "allow_invalid_upstream = [\"localhost\"]",
        POLICY,
    );
    let ca = gw.ca_path();
    let get = |url: String| {
        let (proxy, ca) = (gw.proxy_url(), ca.clone());
        async move {
            curl(&[
                "-x",
                &proxy,
                "--cacert",
                ca.to_str().unwrap(),
                "-w",
                "\n%{http_code}",
                &url,
            ])
            .await
        }
    };
    let r = get(format!("https://localhost:{}/hello", bad.port)).await;
    assert_eq!(r.stdout, "hello\n200", "{}", r.stderr);
    let ev = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "upstream-certificate-allowed-invalid"
    });
    assert_eq!(ev["event"]["action"], "allowed", "{ev}");
    assert_eq!(
        ev["tls"]["error"]["code"], "upstream-certificate-allowed-invalid",
        "{ev}"
    );
    assert!(
        ev["evidence"]["excerpt"]
            .as_str()
            .unwrap_or("")
            .contains("authority the gateway does not trust"),
        "the reason in words: {ev}"
    );
    // The flow line names the TLS session the gateway made with the upstream (the request's
    // line: the CONNECT's own line, also 200, may be written first).
    let flow = gw.wait_line("flows.jsonl", |v| {
        v["status"] == 200 && v["method"] != "CONNECT"
    });
    assert_eq!(flow["tls"]["upstream"]["version"], "1.3", "{flow}");
    assert!(
        flow["tls"]["upstream"]["cipher"]
            .as_str()
            .unwrap_or("")
            .starts_with("TLS13_"),
        "{flow}"
    );
    // [::1] is not listed: the same certificate is refused there.
    let r = get(format!("https://[::1]:{}/hello", bad.port)).await;
    assert!(r.stdout.ends_with("\n502"), "{}", r.stdout);
    gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "upstream-certificate"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_hosts_blocks_http_connect_and_sni() {
    let s = setup("deny", POLICY).await;
    // Plain HTTP: block page, never reaches DNS.
    let r = curl(&[
        "-x",
        &s.gw.proxy_url(),
        "-w",
        "\n%{http_code}",
        "http://denied.test/path?q=1",
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    let ev = s.gw.wait_line("events.jsonl", |v| {
        v["http"]["url"] == "http://denied.test/path?q=1"
    });
    let id = ev["event"]["id"].as_str().unwrap().to_string();
    assert!(r.stdout.contains(&id), "block page names event {id}");
    assert_eq!(ev["event"]["kind"], "alert");
    assert_eq!(ev["event"]["action"], "blocked");
    assert_eq!(ev["event_type"], "alert");
    assert_eq!(ev["rule"]["id"], "deny_hosts:denied.test");
    assert_eq!(ev["rule"]["engine"], "policy");
    assert_eq!(ev["alert"]["action"], "blocked");
    assert_eq!(ev["source"]["ip"], "127.0.0.1");
    assert_eq!(ev["destination"]["domain"], "denied.test");
    assert_eq!(ev["http"]["method"], "GET");
    assert_eq!(ev["stage"], "host_policy");
    assert_eq!(ev["observer"]["name"], "sekisho");
    assert!(ev["flow_id"].as_u64().is_some());
    let flow =
        s.gw.wait_line("flows.jsonl", |v| v["flow_id"] == ev["flow_id"]);
    assert_eq!(flow["verdict"], "block");
    assert_eq!(flow["status"], 403);
    assert_eq!(flow["event_ids"][0], id.as_str());

    // CONNECT to a denied suffix: judged before anything is dialled, its page shown inside the
    // TLS session (`tls_block_page = "bump"`, the default).
    let r = s
        .curl(&["-w", "\n%{http_code}", "https://www.evil.test/"])
        .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    let ev = s.gw.wait_line("events.jsonl", |v| {
        v["evidence"]["location"] == "connect.host"
    });
    assert_eq!(ev["rule"]["id"], "deny_hosts:*.evil.test");
    assert!(r.stdout.contains(ev["event"]["id"].as_str().unwrap()));

    // An allowed CONNECT host but a denied SNI: the ClientHello is judged before decryption.
    let gw_ca = std::fs::read_to_string(s.gw.ca_path()).unwrap();
    let tcp = connect_tunnel(s.gw.proxy, &format!("localhost:{}", s.origin.port)).await;
    let (mut tls, _) = tls_peer_chain(tcp, "x.evil.test", &gw_ca).await.unwrap();
    tls.write_all(b"GET /hello HTTP/1.1\r\nHost: x.evil.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut resp = String::new();
    tls.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let ev =
        s.gw.wait_line("events.jsonl", |v| v["evidence"]["location"] == "tls.sni");
    assert_eq!(ev["tls"]["sni"], "x.evil.test");
    assert!(resp.contains(ev["event"]["id"].as_str().unwrap()));

    // Host header naming a denied host inside an allowed tunnel.
    let r = s
        .curl(&[
            "-H",
            "Host: denied.test",
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &format!("https://localhost:{}/hello", s.origin.port),
        ])
        .await;
    assert_eq!(r.stdout, "403", "{}", r.stderr);

    s.gw.assert_metrics(&["sekisho_verdicts_total{stage=\"host_policy\",verdict=\"block\"}"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_mode_logs_but_passes() {
    let s = setup(
        "detect",
        "[policy]\ndeny_hosts = [\"localhost\"]\nmode = \"detect\"\n",
    )
    .await;
    let r = s
        .curl(&[&format!("https://localhost:{}/hello", s.origin.port)])
        .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{}", r.stderr);
    let ev =
        s.gw.wait_line("events.jsonl", |v| v["event"]["action"] == "detected");
    assert_eq!(ev["rule"]["id"], "deny_hosts:localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_0b_1mib_100mib_stream_with_flat_memory() {
    let s = setup("bodies", POLICY).await;
    let tmp = TempDir::new("bodies");
    for size in [0usize, 1 << 20] {
        let f = tmp.path().join(format!("b{size}"));
        std::fs::write(&f, vec![b'a'; size]).unwrap();
        for flag in ["--http1.1", "--http2"] {
            let r = s.upload(flag, &f).await;
            assert_eq!(
                (r.code, r.stdout.clone()),
                (0, size.to_string()),
                "{flag} POST {size}: {}",
                r.stderr
            );
        }
        let r = s.download(size).await;
        assert_eq!(r.stdout, size.to_string(), "GET {size}: {}", r.stderr);
    }
    // 100 MiB each way, streamed: the gateway's resident memory must not grow by the body size.
    let big = 100usize << 20;
    let f = tmp.path().join("big");
    std::fs::File::create(&f)
        .unwrap()
        .set_len(big as u64)
        .unwrap();
    let before = s.gw.rss_kib();
    let r = s.upload("--http2", &f).await;
    assert_eq!(
        (r.code, r.stdout.clone()),
        (0, big.to_string()),
        "{}",
        r.stderr
    );
    let r = s.download(big).await;
    assert_eq!(r.stdout, big.to_string(), "{}", r.stderr);
    let peak = s.gw.peak_rss_kib();
    assert!(peak > 0);
    assert!(
        peak < before + 48 * 1024,
        "gateway memory grew from {before} KiB to a peak of {peak} KiB while streaming 100 MiB"
    );
    let line = s.gw.wait_line("flows.jsonl", |v| {
        v["bytes_to_server"].as_u64() == Some(big as u64)
    });
    assert_eq!(line["path"], "/count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_websocket_upgrade_and_bad_input() {
    let policy = format!("{POLICY}upgrade_protocols = [\"Echo\"]\n");
    let s = setup("plain", &policy).await;
    let plain = Origin::start(None).await;
    let r = curl(&[
        "-x",
        &s.gw.proxy_url(),
        &format!("http://127.0.0.1:{}/hello", plain.port),
    ])
    .await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "hello"), "{}", r.stderr);

    // Upgrade passes through: the origin echoes after 101.
    let mut c = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
    c.write_all(format!(
        "GET http://127.0.0.1:{}/upgrade HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        plain.port
    ).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    c.write_all(b"ping-through-upgrade").await.unwrap();
    let mut echoed = vec![0u8; 20];
    tokio::time::timeout(Duration::from_secs(10), c.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping-through-upgrade");
    drop(c);
    upgrades_not_carried_stay_http11().await;

    // Malformed request → 400, and the gateway keeps serving.
    let mut c = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
    c.write_all(b"THIS IS NOT HTTP\x00\x01\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
    // Origin-form request to the proxy → 400 with an explanation.
    let r = curl(&["-w", "%{http_code}", &format!("http://{}/", s.gw.proxy)]).await;
    assert!(r.stdout.ends_with("400"), "{}", r.stdout);

    // Bytes after CONNECT that are neither TLS nor HTTP → the tunnel is closed, a log line
    // says why (cleartext HTTP is inspected: tests/ips.rs).
    let mut t = connect_tunnel(s.gw.proxy, &format!("localhost:{}", s.origin.port)).await;
    t.write_all(b"\x00\x01 not a protocol\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), t.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "closed without an answer");
    let line = s.gw.wait_line("flows.jsonl", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("not TLS"))
    });
    assert_eq!(line["method"], "CONNECT");
    let log = std::fs::read_to_string(&s.gw.stderr).unwrap();
    assert!(log.contains("non-TLS bytes after CONNECT"), "{log}");

    let r = curl(&[
        "-x",
        &s.gw.proxy_url(),
        &format!("http://127.0.0.1:{}/hello", plain.port),
    ])
    .await;
    assert_eq!(r.stdout, "hello", "still serving");
    s.gw.assert_metrics(&["sekisho_tunnels_total{mode=\"not_tls\"} 1"])
        .await;
}

/// An upgrade to a protocol `[policy] upgrade_protocols` does not name (h2c here) is taken off
/// the request, so the origin answers in HTTP/1.1 and the exchange stays inspected; an origin
/// that switches anyway (or to a protocol it was not offered) gets a 502, nothing relayed.
async fn upgrades_not_carried_stay_http11() {
    let s = setup("upgrades", POLICY).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&heads);
    tokio::spawn(async move {
        for _ in 0..2 {
            let Ok((mut o, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && o.read_exact(&mut b).await.is_ok() {
                head.push(b[0]);
            }
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let answer: &[u8] = if head.contains("/rogue") {
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n\0\0\0\x04\0\0\0\0\0"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nhttp/11"
            };
            kept.lock().unwrap().push(head);
            let _ = o.write_all(answer).await;
            let _ = o.shutdown().await;
        }
    });
    for (path, want) in [("/h2c", "HTTP/1.1 200"), ("/rogue", "HTTP/1.1 502")] {
        let mut c = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
        c.write_all(format!(
            "GET http://127.0.0.1:{port}{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        ).as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{path}: closed before an answer");
            answer.extend_from_slice(&buf[..n]);
        }
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(want), "{path}: {answer}");
    }
    for head in heads.lock().unwrap().iter() {
        assert!(!head.contains("upgrade: h2c"), "{head}");
        assert!(!head.contains("http2-settings"), "{head}");
    }
    s.gw.assert_metrics(&[
        "sekisho_upgrades_total{result=\"stripped\"} 2",
        "sekisho_upgrades_total{result=\"refused\"} 1",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_scrape_has_the_counters() {
    let s = setup("metrics", POLICY).await;
    for _ in 0..3 {
        let r = s
            .curl(&[&format!("https://localhost:{}/hello", s.origin.port)])
            .await;
        assert_eq!(r.stdout, "hello", "{}", r.stderr);
    }
    s.gw.assert_metrics(&[
        "sekisho_connections_total{listener=\"forward\"} 3",
        "sekisho_requests_total{listener=\"forward\",proto=\"connect\"} 3",
        "sekisho_tls_handshakes_total{result=\"ok\"} 3",
        "sekisho_cert_cache_total{result=\"miss\"} 1",
        "sekisho_cert_cache_total{result=\"hit\"} 2",
        "sekisho_tunnels_total{mode=\"decrypted\"} 3",
        "sekisho_request_duration_seconds_count{listener=\"forward\"} 3",
        "sekisho_tls_handshake_seconds_count 3",
        "# TYPE sekisho_bytes_total counter",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_allow_clients_are_refused() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let gw = Gateway::start("allow", "", "");
    drop(gw);
    // Same config but only 10.0.0.0/8 may use it: loopback is refused.
    let dir = TempDir::new("allow2");
    let d = dir.path().display();
    let out = std::process::Command::new(bin())
        .args(["ca", "init", "--out"])
        .arg(dir.path().join("ca"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let cfg = format!(
        "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\nallow_clients = [\"10.0.0.0/8\"]\n\
         [tls]\nca_cert = \"{d}/ca/ca.crt\"\nca_key = \"{d}/ca/ca.key\"\n[metrics]\naddr = \"127.0.0.1:0\"\n\
         [events]\nfile = \"{d}/e.jsonl\"\ncomm_log = \"{d}/f.jsonl\"\n"
    );
    std::fs::write(dir.path().join("c.toml"), cfg).unwrap();
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(dir.path().join("c.toml"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let addr = line.split_whitespace().nth(2).unwrap().to_string();
    let r = curl(&[
        "-x",
        &format!("http://{addr}"),
        &format!("https://localhost:{}/hello", origin.port),
    ])
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(
        r.code, 0,
        "a client outside allow_clients must not get through: {}",
        r.stdout
    );
    assert!(!r.stdout.contains("hello"));
}

/// Reads until the peer closes; panics if it is still open after `limit`.
async fn closed_within(s: &mut tokio::net::TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(limit, s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "connection still open after {limit:?}");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off() {
    let s = setup(
        "slow",
        &format!("{POLICY}[limits]\nread_timeout_secs = 1\nhandshake_timeout_secs = 1\nidle_timeout_secs = 2\nresponse_timeout_secs = 1\n"),
    )
    .await;
    // Slowloris: a request head that never ends.
    let mut a = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
    a.write_all(b"GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    // CONNECT, then silence instead of a ClientHello.
    let mut b = connect_tunnel(s.gw.proxy, &format!("localhost:{}", s.origin.port)).await;
    // An idle keep-alive connection after one request.
    let mut c = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
    c.write_all(b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        .await
        .unwrap();
    // An upstream that answers after the response timeout: 504, and the flow says why.
    let r = s
        .curl(&[
            "-w",
            "%{http_code}",
            "-o",
            "/dev/null",
            &format!("https://localhost:{}/sleep/4", s.origin.port),
        ])
        .await;
    assert_eq!(r.stdout, "504", "{}", r.stderr);
    s.gw.wait_line("flows.jsonl", |v| {
        v["status"] == 504
            && v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no response head"))
    });
    closed_within(&mut a, Duration::from_secs(15)).await;
    closed_within(&mut b, Duration::from_secs(15)).await;
    let got = closed_within(&mut c, Duration::from_secs(15)).await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 403"));
    s.gw.wait_line("flows.jsonl", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no TLS ClientHello within"))
    });
    s.gw.assert_metrics(&["sekisho_connections_active 0"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_runs_its_own_pipeline() {
    let plain = Origin::start(None).await;
    let listeners = "[[listener]]\nname = \"guarded\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\
                     [[listener]]\nname = \"open\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\nstages = []\n";
    let gw = Gateway::start_with_listeners(
        "listeners",
        listeners,
        "",
        "[policy]\ndeny_hosts = [\"127.0.0.1\"]\n",
    );
    let url = format!("http://127.0.0.1:{}/hello", plain.port);
    let guarded = curl(&[
        "-x",
        &format!("http://{}", gw.all[0]),
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &url,
    ])
    .await;
    assert_eq!(guarded.stdout, "403");
    let open = curl(&["-x", &format!("http://{}", gw.all[1]), &url]).await;
    assert_eq!(open.stdout, "hello", "{}", open.stderr);
    let ev = gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "deny_hosts:127.0.0.1"
    });
    assert_eq!(ev["listener"], "guarded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy_and_keeps_it_on_a_broken_file() {
    let s = setup("reload", POLICY).await;
    let plain = Origin::start(None).await;
    let url = format!("http://127.0.0.1:{}/hello", plain.port);
    let status = || async {
        curl(&[
            "-x",
            &s.gw.proxy_url(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ])
        .await
        .stdout
    };
    assert_eq!(status().await, "200");
    let cfg_path = s.gw.dir.path().join("sekisho.toml");
    let original = std::fs::read_to_string(&cfg_path).unwrap();
    let hup = || {
        let pid = s.gw.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    std::fs::write(
        &cfg_path,
        original.replace("\"denied.test\"", "\"denied.test\", \"127.0.0.1\""),
    )
    .unwrap();
    hup();
    // Bounded in time, not in tries: on a loaded machine each try is slow.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut now = status().await;
    while now != "403" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = status().await;
    }
    let log = std::fs::read_to_string(&s.gw.stderr).unwrap_or_default();
    assert_eq!(
        now, "403",
        "the reloaded policy denies 127.0.0.1; log: {log}"
    );
    // A broken file: the running policy stays, and the log says which file and key.
    std::fs::write(
        &cfg_path,
        original.replace("\"denied.test\"", "\"not a host\""),
    )
    .unwrap();
    hup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&s.gw.stderr).unwrap();
        if log.contains("reload failed") {
            assert!(log.contains("policy.deny_hosts"), "{log}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reload failure logged: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status().await, "403", "the running policy stays");
    s.gw.assert_metrics(&[
        "sekisho_reloads_total{result=\"ok\"} 1",
        "sekisho_reloads_total{result=\"error\"} 1",
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_is_enforced() {
    let s = setup(
        "maxconn",
        &format!("{POLICY}[limits]\nmax_connections = 1\n"),
    )
    .await;
    // One client holds the only slot (an idle CONNECT tunnel).
    let held = connect_tunnel(s.gw.proxy, &format!("localhost:{}", s.origin.port)).await;
    let mut extra = tokio::net::TcpStream::connect(s.gw.proxy).await.unwrap();
    let _ = extra
        .write_all(b"GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), extra.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        got.is_empty(),
        "a connection over the limit is closed unanswered: {}",
        String::from_utf8_lossy(&got)
    );
    s.gw.assert_metrics(&[
        "sekisho_connections_refused_total{listener=\"forward\",reason=\"limit\"} 1",
    ])
    .await;
    drop(held);
    // The slot comes back once the first client leaves.
    let mut ok = false;
    for _ in 0..100 {
        let r = curl(&[
            "-x",
            &s.gw.proxy_url(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://denied.test/",
        ])
        .await;
        if r.stdout == "403" {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the slot was released");
}

/// `openssl s_server` with `args`, serving `pki`'s certificate for localhost on a free port;
/// killed on drop.
struct SServer(std::process::Child, u16);

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn s_server(dir: &std::path::Path, pki: &TestPki, args: &[&str]) -> SServer {
    let (crt, key) = (dir.join("srv.crt"), dir.join("srv.key"));
    std::fs::write(&crt, &pki.cert_pem).unwrap();
    std::fs::write(&key, &pki.key_pem).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    s_server_with(dir, &crt, &key, args)
}

/// `openssl s_server` with `args` serving the certificate `crt` (key `key`).
fn s_server_with(
    dir: &std::path::Path,
    crt: &std::path::Path,
    key: &std::path::Path,
    args: &[&str],
) -> SServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-quiet",
        ])
        .arg("-cert")
        .arg(crt)
        .arg("-key")
        .arg(key)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    SServer(child, port)
}

/// Runs `openssl` with `args` in `dir`, asserting success.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made with OpenSSL in `dir` (`legacy-ca.crt`), two localhost certificates modern clients
/// refuse, `sha1.crt` (signed with SHA-1) and `rsa1024.crt` (a 1024-bit key), and a modern RSA
/// one, `rsa2048.crt`, for servers whose ciphers need an RSA key.
fn legacy_pki(dir: &std::path::Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "legacy-ca.key",
            "-out",
            "legacy-ca.crt",
            "-subj",
            "/CN=Legacy Test CA",
            "-days",
            "2",
        ],
    );
    for (name, bits, digest) in [
        ("sha1", "rsa:2048", "-sha1"),
        ("rsa1024", "rsa:1024", "-sha256"),
        ("rsa2048", "rsa:2048", "-sha256"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                bits,
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "legacy-ca.crt",
                "-CAkey",
                "legacy-ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                digest,
                "-extfile",
                "san.ext",
            ],
        );
    }
}

/// curl through `gw` to `https://localhost:{port}/` trusting `ca`, presenting the facility
/// certificate in the `client` folder when given; stdout ends with the status code.
async fn curl_origin(
    gw: &Gateway,
    ca: &std::path::Path,
    client: Option<&std::path::Path>,
    port: u16,
) -> Curl {
    let (proxy, url) = (gw.proxy_url(), format!("https://localhost:{port}/"));
    let (crt, key) = client
        .map(|c| (c.join("client.crt"), c.join("client.key")))
        .unzip();
    let mut args = vec!["-x", proxy.as_str(), "--cacert", ca.to_str().unwrap()];
    if let (Some(crt), Some(key)) = (&crt, &key) {
        args.extend([
            "--cert",
            crt.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ]);
    }
    args.extend(["-w", "\n%{http_code}", url.as_str()]);
    curl(&args).await
}

/// A tunnel spliced because its server cannot be inspected: the event with `code` as its rule and
/// `tls.error`, and a spliced flow line with the same `tls.error`; the event.
fn spliced_uninspected(gw: &Gateway, code: &str) -> serde_json::Value {
    let ev = gw.wait_line("events.jsonl", |v| v["rule"]["id"] == code);
    assert_eq!(ev["tls"]["error"]["code"], code, "{ev}");
    gw.wait_line("flows.jsonl", |v| {
        v["tls"]["mode"] == "spliced" && v["tls"]["error"]["code"] == code
    });
    ev
}

/// A facility client certificate from `sekisho ca issue-client` in `dir`: (its CA's
/// certificate, the folder holding `client.crt` and `client.key`).
fn facility_client(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let clients = dir.join("clients");
    let client = dir.join("client");
    for args in [
        vec!["ca", "init", "--out", clients.to_str().unwrap()],
        vec![
            "ca",
            "issue-client",
            "--ca",
            clients.to_str().unwrap(),
            "--facility",
            "H-0001",
            "--out",
            client.to_str().unwrap(),
        ],
    ] {
        let out = std::process::Command::new(bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
    }
    (clients.join("ca.crt").display().to_string(), client)
}

/// With `preflight = false`, origins that ask for a client certificate or speak only TLS 1.0 are
/// found by the first request: a 502 page saying what the server wants and how to let it
/// through, an event with `tls.error`, and the next tunnel spliced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_and_legacy_origins_are_explained() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let dir = TempDir::new("s-server");
    let gw = Gateway::start(
        "tls-origins",
        &format!(
            "upstream_roots = [\"{}\"]\nlegacy_splice = [\"localhost\"]\npreflight = false",
            {
                std::fs::write(dir.path().join("roots.pem"), &pki.ca_pem).unwrap();
                dir.path().join("roots.pem").display().to_string()
            }
        ),
        POLICY,
    );
    // The facility's own client certificate, which only the client holds.
    let (client_ca, client) = facility_client(dir.path());
    let cases = [
        (
            vec!["-Verify", "1", "-CAfile", client_ca.as_str()],
            "upstream-client-certificate-required",
            "requires a client certificate",
        ),
        // TLS 1.2 servers answer the gateway's empty certificate with handshake_failure: named
        // for the certificate they asked for, not taken for a legacy cipher.
        (
            vec!["-tls1_2", "-Verify", "1", "-CAfile", client_ca.as_str()],
            "upstream-client-certificate-required",
            "requires a client certificate",
        ),
        (
            vec!["-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0"],
            "upstream-legacy-version",
            "TLS version",
        ),
    ];
    for (args, code, words) in cases {
        let server = s_server(dir.path(), &pki, &args);
        let r = curl_origin(&gw, &gw.ca_path(), None, server.1).await;
        assert!(r.stdout.ends_with("\n502"), "{code}: {}", r.stdout);
        assert!(r.stdout.contains(words), "{code}: {}", r.stdout);
        assert!(r.stdout.contains("[tls] splice"), "{code}: {}", r.stdout);
        // The page names its event.
        let ev = gw.wait_line("events.jsonl", |v| {
            v["rule"]["id"] == code
                && v["event"]["id"]
                    .as_str()
                    .is_some_and(|id| r.stdout.contains(id))
        });
        assert_eq!(ev["tls"]["error"]["code"], code, "{ev}");
        if code != "upstream-client-certificate-required" {
            // localhost is in legacy_splice: the next tunnel is spliced, with an event.
            assert!(
                r.stdout.contains("uninspected from the next connection"),
                "{}",
                r.stdout
            );
            let _ = curl(&[
                "-x",
                &gw.proxy_url(),
                "-k",
                &format!("https://localhost:{}/", server.1),
            ])
            .await;
            spliced_uninspected(&gw, "uninspected-legacy-tls");
            continue;
        }
        // on_client_certificate_request = "splice" (the default): the next tunnel is spliced and
        // the client presents its own certificate to the origin.
        let origin_ca = dir.path().join("roots.pem");
        let r = curl_origin(&gw, &origin_ca, Some(&client), server.1).await;
        assert!(
            r.stdout.ends_with("\n200"),
            "spliced with the client's certificate: {} {}",
            r.stdout,
            r.stderr
        );
        spliced_uninspected(&gw, "uninspected-client-certificate");
    }
}

/// Pre-flight (the default): the gateway reads the origin's first flight before it answers the
/// client. An origin that asks for a client certificate is spliced on the very first
/// connection, over TLS 1.3 and 1.2, the client presenting its own certificate; legacy origins
/// (TLS 1.0, a cipher without forward secrecy, a SHA-1 or RSA-1024 certificate) get a page that
/// names what they speak, and an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_known_before_the_client_is_answered() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let dir = TempDir::new("preflight");
    let d = dir.path();
    legacy_pki(d);
    std::fs::write(d.join("roots.pem"), &pki.ca_pem).unwrap();
    let gw = Gateway::start(
        "preflight",
        &format!(
            "upstream_roots = [\"{}\", \"{}\"]",
            d.join("roots.pem").display(),
            d.join("legacy-ca.crt").display()
        ),
        POLICY,
    );
    let (client_ca, client) = facility_client(d);
    for version in ["-tls1_3", "-tls1_2"] {
        let server = s_server(d, &pki, &[version, "-Verify", "1", "-CAfile", &client_ca]);
        let r = curl_origin(&gw, &d.join("roots.pem"), Some(&client), server.1).await;
        assert!(
            r.stdout.ends_with("\n200"),
            "{version}: the first connection is spliced: {} {}",
            r.stdout,
            r.stderr
        );
        assert!(
            r.stdout.contains("Subject: CN=H-0001"),
            "{version}: the origin saw the client's own certificate: {}",
            r.stdout
        );
    }
    // A server that asks for a client certificate but presents one the gateway does not trust
    // is judged on its certificate: never spliced for asking.
    let untrusted = TestPki::new("Untrusted CA", &["localhost"]);
    let other = d.join("untrusted");
    std::fs::create_dir_all(&other).unwrap();
    let server = s_server(&other, &untrusted, &["-verify", "1"]);
    let r = curl_origin(&gw, &gw.ca_path(), None, server.1).await;
    assert!(r.stdout.ends_with("\n502"), "{} {}", r.stdout, r.stderr);
    gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "upstream-certificate"
            && v["tls"]["error"]["code"] == "upstream-certificate-unknown-issuer"
    });
    drop(server);
    let ev = spliced_uninspected(&gw, "uninspected-client-certificate");
    assert_eq!(ev["tls"]["sni"], "localhost", "{ev}");
    let legacy = [
        (
            "sha1",
            vec!["-cipher", "DEFAULT:@SECLEVEL=0"],
            "upstream-legacy-certificate",
            "signed with SHA-1 (sha1WithRSAEncryption)",
        ),
        (
            "rsa1024",
            vec!["-cipher", "DEFAULT:@SECLEVEL=0"],
            "upstream-legacy-certificate",
            "a 1024-bit RSA key",
        ),
        (
            "rsa2048",
            vec!["-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0"],
            "upstream-legacy-version",
            "It speaks TLS 1.0 with TLS_RSA_WITH_AES_128_CBC_SHA (AES128-SHA)",
        ),
        (
            "rsa2048",
            vec!["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
            "upstream-legacy-cipher",
            "It speaks TLS 1.2 with TLS_RSA_WITH_AES_128_CBC_SHA (AES128-SHA)",
        ),
    ];
    for (cert, args, code, words) in legacy {
        let (crt, key) = (d.join(format!("{cert}.crt")), d.join(format!("{cert}.key")));
        let server = s_server_with(d, &crt, &key, &args);
        let r = curl_origin(&gw, &gw.ca_path(), None, server.1).await;
        let page = r.stdout.replace("&#39;", "'");
        assert!(page.ends_with("\n502"), "{words}: {}", r.stdout);
        assert!(page.contains(words), "{words}: {}", r.stdout);
        assert!(
            page.contains("[tls] legacy_splice"),
            "{words}: {}",
            r.stdout
        );
        let ev = gw.wait_line("events.jsonl", |v| {
            v["rule"]["id"] == code
                && v["tls"]["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(words))
        });
        assert!(
            page.contains(ev["event"]["id"].as_str().unwrap()),
            "the page names the event"
        );
    }
    let m = gw.metrics_text().await;
    for label in ["client_certificate", "legacy"] {
        assert!(
            m.contains(&format!(
                "sekisho_upstream_preflights_total{{result=\"{label}\"}}"
            )),
            "{label}: {m}"
        );
    }
}

/// `on_client_certificate_request = "block"` refuses with a page that says so, every time;
/// legacy servers listed by host or by URL-filter category are spliced on the first connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_blocks_or_splices_as_the_operator_chose() {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let dir = TempDir::new("preflight-choices");
    let d = dir.path();
    legacy_pki(d);
    std::fs::write(d.join("roots.pem"), &pki.ca_pem).unwrap();
    std::fs::write(d.join("devices.txt"), "localhost\n").unwrap();
    let gw = Gateway::start(
        "preflight-choices",
        &format!(
            "upstream_roots = [\"{}\"]\non_client_certificate_request = \"block\"\nlegacy_splice_categories = [\"devices\"]",
            d.join("roots.pem").display()
        ),
        &format!(
            "{POLICY}\n[urlfilter]\ncategory_dirs = []\n[[urlfilter.list]]\nname = \"devices\"\npath = {:?}\n",
            d.join("devices.txt")
        ),
    );
    let (client_ca, client) = facility_client(d);
    let server = s_server(d, &pki, &["-Verify", "1", "-CAfile", &client_ca]);
    for _ in 0..2 {
        let r = curl_origin(&gw, &gw.ca_path(), Some(&client), server.1).await;
        let page = r.stdout.replace("&quot;", "\"");
        assert!(page.ends_with("\n502"), "{}", r.stdout);
        assert!(page.contains("requires a client certificate"), "{page}");
        assert!(
            page.contains("on_client_certificate_request = \"block\" keeps it refused"),
            "{page}"
        );
    }
    gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "upstream-client-certificate-required"
    });
    drop(server);
    let server = s_server_with(
        d,
        &d.join("rsa2048.crt"),
        &d.join("rsa2048.key"),
        &["-tls1", "-cipher", "AES128-SHA:@SECLEVEL=0"],
    );
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "-k",
        "--tls-max",
        "1.2",
        "--ciphers",
        "AES128-SHA:@SECLEVEL=0",
        "--tlsv1",
        "-w",
        "\n%{http_code}",
        &format!("https://localhost:{}/", server.1),
    ])
    .await;
    assert!(
        r.stdout.ends_with("\n200"),
        "a legacy server in a listed category is spliced at once: {} {}",
        r.stdout,
        r.stderr
    );
    spliced_uninspected(&gw, "uninspected-legacy-tls");
}

/// The pre-flight connection carries the tunnel's first request: three tunnels, one after the
/// other, make one connection to the origin (the first tunnel's pre-flight dial, then pooled;
/// the later tunnels find the server remembered and dial nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preflight_connection_carries_the_first_request() {
    let s = setup("preflight-reuse", POLICY).await;
    let url = format!("https://localhost:{}/hello", s.origin.port);
    for _ in 0..3 {
        let r = s.curl(&["--http1.1", "-w", "\n%{http_code}", &url]).await;
        assert!(r.stdout.ends_with("\n200"), "{} {}", r.stdout, r.stderr);
    }
    assert_eq!(
        s.origin.accepted.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one upstream connection for three tunnels"
    );
    let m = s.gw.metrics_text().await;
    assert!(
        m.contains("sekisho_upstream_preflights_total{result=\"ready\"} 1"),
        "{m}"
    );
    // The first request's line has the upstream session's facts, read from that connection.
    s.gw.wait_line("flows.jsonl", |v| {
        v["method"] == "GET" && v["tls"]["upstream"]["version"] == "1.3"
    });
}
