//! What real clients meet (issue 20): HTTPS block pages inside the TLS session, streams through
//! the AV stage, Upgrade over HTTP/1.1 whatever `upstream_http2` says, `Via` off, timeouts as a
//! forward proxy's, early refusals from `Content-Length`, `Expect: 100-continue` passed through,
//! honest byte counts and pages in words. The real binary, curl and local origins on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Setup {
    gw: Gateway,
    origin: Origin,
    _roots: TempDir,
}

/// A gateway trusting an HTTPS origin for `localhost`, with `tls_extra` in `[tls]` and `extra`.
async fn setup(tag: &str, tls_extra: &str, extra: &str) -> Setup {
    let pki = TestPki::new("Origin Test CA", &["localhost"]);
    let origin = Origin::start(Some(pki.server_config())).await;
    let roots = TempDir::new("roots");
    let ca = roots.path().join("origin-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let tls = format!("upstream_roots = [\"{}\"]\n{tls_extra}", ca.display());
    let gw = Gateway::start(tag, &tls, extra);
    Setup {
        gw,
        origin,
        _roots: roots,
    }
}

impl Setup {
    async fn curl(&self, args: &[&str]) -> Curl {
        let (proxy, ca) = (self.gw.proxy_url(), self.gw.ca_path());
        let mut all = vec!["-x", proxy.as_str(), "--cacert", ca.to_str().unwrap()];
        all.extend_from_slice(args);
        curl(&all).await
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.origin.port)
    }
}

/// `time_starttransfer size_download http_code` of a download through the gateway.
async fn first(s: &Setup, path: &str) -> Curl {
    let url = s.url(path);
    let w = "%{time_starttransfer} %{size_download} %{http_code}";
    s.curl(&["-o", "/dev/null", "-w", w, &url]).await
}

/// POSTs `size` bytes to `path` over HTTP/1.1 with `Expect: 100-continue` (curl waits up to
/// 10 s for a 100): the status and how many bytes the client sent.
async fn upload(s: &Setup, size: usize, path: &str) -> (String, u64) {
    let dir = TempDir::new("upload");
    let file = dir.path().join("body.bin");
    std::fs::write(&file, vec![b'u'; size]).unwrap();
    let data = format!("@{}", file.display());
    let url = s.url(path);
    let r = s
        .curl(&[
            "-H",
            "Expect: 100-continue",
            "--http1.1",
            "--expect100-timeout",
            "10",
            "-w",
            "\n%{http_code} %{size_upload}",
            "--data-binary",
            &data,
            &url,
        ])
        .await;
    let tail = r.stdout.lines().last().unwrap_or("").to_string();
    let (code, sent) = tail.split_once(' ').unwrap();
    (code.to_string(), sent.parse().unwrap())
}

/// The AV stage on the bundled rules, holding whole bodies up to `hold` bytes.
fn av(hold: usize) -> String {
    format!(
        "[av]\nyara = [\"{}\"]\nclamav = [\"{}\"]\ncache_dir = \"\"\n\n[limits]\nhold_bytes_per_flow = {hold}\n",
        repo().join("rules/yara").display(),
        repo().join("rules/clamav").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_https_site_shows_its_page_inside_tls_in_the_clients_language() {
    let s = setup(
        "tlspage",
        "splice = [\"spliced-denied.test\"]",
        "[policy]\ndeny_hosts = [\"denied.test\", \"spliced-denied.test\"]\n",
    )
    .await;
    // Nothing is dialled for a blocked site: the name need not resolve.
    let r = s
        .curl(&[
            "-D",
            "-",
            "-w",
            "\n%{http_code}",
            "https://denied.test/some/page",
        ])
        .await;
    assert_eq!(r.code, 0, "the TLS session completes: {}", r.stderr);
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(r.stdout.contains("list of blocked sites"), "{}", r.stdout);
    assert!(r.stdout.contains("<html lang=\"en\">"));
    let ev = s.gw.wait_line("events.jsonl", |v| {
        v["evidence"]["location"] == "connect.host" && v["destination"]["domain"] == "denied.test"
    });
    let id = ev["event"]["id"].as_str().unwrap();
    assert!(
        r.stdout
            .contains(&format!("<code id=\"event-id\">{id}</code>")),
        "the page names the CONNECT's event: {}",
        r.stdout
    );
    assert!(r
        .stdout
        .to_ascii_lowercase()
        .contains(&format!("x-sekisho-event-id: {id}")));
    // The CONNECT's flow line: blocked, its page delivered inside the tunnel.
    let flow = s.gw.wait_line("flows.jsonl", |v| {
        v["method"] == "CONNECT" && v["host"] == "denied.test"
    });
    assert_eq!(
        (flow["status"].as_u64(), flow["verdict"].as_str()),
        (Some(403), Some("block"))
    );
    assert_eq!(flow["bytes_to_server"], 0);
    assert!(flow["bytes_to_client"].as_u64() > Some(1000), "{flow}");

    // A Japanese browser reads it in Japanese.
    let r = s
        .curl(&[
            "-H",
            "Accept-Language: ja-JP,ja;q=0.9,en;q=0.5",
            "https://denied.test/",
        ])
        .await;
    assert!(r.stdout.contains("<html lang=\"ja\">"), "{}", r.stdout);
    assert!(r.stdout.contains("ブロック対象サイト"), "{}", r.stdout);

    // A host that is never decrypted cannot show a page: refused at CONNECT, with an event
    // that says so.
    let r = s.curl(&["https://spliced-denied.test/"]).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    let ev = s.gw.wait_line("events.jsonl", |v| {
        v["rule"]["id"] == "block-page-not-shown"
    });
    let text = ev.to_string();
    assert!(
        text.contains("the block page for spliced-denied.test could not be shown"),
        "{ev}"
    );
    s.gw.assert_metrics(&["sekisho_tunnels_total{mode=\"blocked\"} 3"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_block_page_refuse_answers_the_connect_with_403() {
    let s = setup(
        "tlsrefuse",
        "",
        "[policy]\ndeny_hosts = [\"denied.test\"]\ntls_block_page = \"refuse\"\n",
    )
    .await;
    let r = s.curl(&["https://denied.test/"]).await;
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    // A destination network refusal is shown in the session under the default.
    let s = setup("tlsnet", "", "[policy]\ndeny_networks = [\"10.0.0.0/8\"]\n").await;
    let r = s.curl(&["-w", "\n%{http_code}", "https://10.1.2.3/"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(
        r.stdout.contains("does not connect to 10.1.2.3") && r.stdout.contains("deny_networks"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_say_what_went_wrong_in_words() {
    let s = setup("words", "", "").await;
    // A name that does not resolve: an HTML page, not a library's error text.
    let r = curl(&[
        "-x",
        &s.gw.proxy_url(),
        "-D",
        "-",
        "-w",
        "\n%{http_code}",
        "http://no-such-host.invalid/",
    ])
    .await;
    assert!(r.stdout.ends_with("\n502"), "{}", r.stdout);
    assert!(r.stdout.contains("text/html"), "{}", r.stdout);
    assert!(r.stdout.contains("was not found"), "{}", r.stdout);
    assert!(!r.stdout.contains("client error"), "{}", r.stdout);
    // An origin whose certificate names another host: the reason in words, not Debug output.
    let r = s
        .curl(&[&format!("https://127.0.0.1:{}/hello", s.origin.port)])
        .await;
    assert!(
        r.stdout.contains("certificate not valid for 127.0.0.1"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("Context {"), "{}", r.stdout);
    // The flow line's times are RFC 3339.
    let flow = s.gw.wait_line("flows.jsonl", |v| v["status"] == 502);
    let ts = flow["@timestamp"].as_str().unwrap();
    assert!(ts.len() >= 20 && ts.as_bytes()[10] == b'T', "{ts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_can_be_turned_off_and_upgrades_stay_http11_with_h2_upstreams() {
    let s = setup(
        "via",
        "upstream_http2 = \"always\"",
        "[policy]\nvia = false\nupgrade_protocols = [\"echo\"]\n",
    )
    .await;
    let r = s.curl(&[&s.url("/headers")]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("via:"), "{}", r.stdout);
    let r = s.curl(&["-w", "\n%{http_code}", &s.url("/proto")]).await;
    assert_eq!(
        r.stdout, "HTTP/2.0\n200",
        "upstream_http2 = always holds for the rest"
    );
    // A WebSocket-style Upgrade inside a decrypted tunnel goes upstream over HTTP/1.1.
    let gw_ca = std::fs::read_to_string(s.gw.ca_path()).unwrap();
    let tcp = connect_tunnel(s.gw.proxy, &format!("localhost:{}", s.origin.port)).await;
    let mut tls = tls_client(&gw_ca, &[b"http/1.1"])
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: localhost\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_pauses_and_slow_answers_are_waited_for_not_cut() {
    // The head timeout and the idle timeout are short; the body gap and the response timeout
    // are what bound a pausing body and a slow upstream.
    let s = setup(
        "timeouts",
        "",
        "[limits]\nread_timeout_secs = 1\nidle_timeout_secs = 1\nbody_timeout_secs = 10\n",
    )
    .await;
    let r = s.curl(&[&s.url("/pause/3")]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "ab"), "{}", r.stderr);
    let r = s.curl(&[&s.url("/sleep/3")]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "slept"), "{}", r.stderr);
    // A body gap over body_timeout_secs is still cut.
    let s = setup("gap", "", "[limits]\nbody_timeout_secs = 1\n").await;
    let r = s.curl(&[&s.url("/pause/4")]).await;
    assert_ne!(r.code, 0, "a 4 s gap is cut at 1 s: {}", r.stdout);
    s.gw.wait_line("flows.jsonl", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("response body: no data for 1 s"))
    });
    // A listener's own timeouts override [limits] for that listener only.
    let origin = Origin::start(None).await;
    let gw = Gateway::start_with_listeners(
        "listener-timeouts",
        "[[listener]]\nname = \"patient\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\
         [[listener]]\nname = \"strict\"\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\nbody_timeout_secs = 1\n",
        "",
        "[limits]\nbody_timeout_secs = 10\n",
    );
    let url = format!("http://127.0.0.1:{}/pause/3", origin.port);
    let r = curl(&["-x", &format!("http://{}", gw.all[0]), &url]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "ab"), "{}", r.stderr);
    let r = curl(&["-x", &format!("http://{}", gw.all[1]), &url]).await;
    assert_ne!(
        r.code, 0,
        "the strict listener cuts a 3 s gap: {}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_flow_through_the_av_stage_as_they_come() {
    let s = setup("sse", "", &av(1 << 20)).await;
    let (proxy, ca) = (s.gw.proxy_url(), s.gw.ca_path());
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("curl")
        .args(["-sSN", "--max-time", "20", "-x", &proxy, "--cacert"])
        .arg(&ca)
        .arg(s.url("/sse/4"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), out.read(&mut first))
        .await
        .expect("the first event comes before the stream ends")
        .unwrap();
    let first_at = t0.elapsed();
    println!("SSE through the AV stage: first event after {first_at:?}");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("data: event 0"));
    assert!(
        first_at < Duration::from_secs(2),
        "first event after {first_at:?}"
    );
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.unwrap();
    assert!(rest.contains("data: event 3"), "{rest}");
    assert!(
        t0.elapsed() >= Duration::from_secs(3),
        "events one a second"
    );
    let _ = child.wait().await;
    let m = s.gw.metrics_text().await;
    assert!(
        metric(
            &m,
            "sekisho_streamed_total{listener=\"forward\",stage=\"av\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_comforting_releases_a_share_early_and_resets_a_blocked_tail() {
    let rules = TempDir::new("tail-rule");
    let yar = rules.path().join("tail.yar");
    std::fs::write(
        &yar,
        format!("rule Tail_Marker {{ strings: $m = \"{TAIL_MARKER}\" condition: $m }}\n"),
    )
    .unwrap();
    let cfg = |share: u8| {
        format!(
            "[av]\nyara = [\"{}\"]\nclamav = []\ncache_dir = \"\"\nrelease_percent = {share}\n",
            yar.display()
        )
    };
    // Held whole (the default): the first byte waits for the verdict, ~2 s.
    let held = setup("comfort-off", "", &cfg(0)).await;
    let r = first(&held, "/drip/2").await;
    let f: Vec<&str> = r.stdout.split(' ').collect();
    assert_eq!((f[1], f[2]), ("655360", "200"), "{}", r.stderr);
    println!("held whole: first byte after {} s", f[0]);
    assert!(
        f[0].parse::<f64>().unwrap() >= 1.5,
        "held: first byte at {}",
        f[0]
    );
    // Half released as it arrives: the first bytes well within a second.
    let comfort = setup("comfort-on", "", &cfg(50)).await;
    let r = first(&comfort, "/drip/2").await;
    let f: Vec<&str> = r.stdout.split(' ').collect();
    assert_eq!((f[1], f[2]), ("655360", "200"), "{}", r.stderr);
    println!("release_percent = 50: first byte after {} s", f[0]);
    assert!(
        f[0].parse::<f64>().unwrap() < 1.0,
        "comforted: first byte at {}",
        f[0]
    );
    // A tail the stage blocks: the client got part, then a broken transfer, never the tail.
    let r = first(&comfort, "/drip-marked/2").await;
    assert_ne!(
        r.code, 0,
        "a clean end would pass the blocked tail: {}",
        r.stdout
    );
    let got: u64 = r.stdout.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(got > 0 && got <= 655360 / 2 + 65536, "released {got} bytes");
    comfort
        .gw
        .wait_line("events.jsonl", |v| v["rule"]["id"] == "Tail_Marker");
    comfort.gw.wait_line("flows.jsonl", |v| {
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("released before the verdict: transfer reset"))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_too_large_to_hold_are_refused_from_their_content_length() {
    let s = setup("toolarge", "", &av(1 << 20)).await;
    // A download announced at 8 MiB: refused from its head, "too large to scan".
    let r = s
        .curl(&["-w", "\n%{http_code}", &s.url("/bytes/8388608")])
        .await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(
        r.stdout.contains("too large to scan (1 MiB)"),
        "{}",
        r.stdout
    );
    let flow = s.gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/bytes/8388608" && v["status"] == 403
    });
    assert!(flow["bytes_from_server"].as_u64() < Some(1 << 20), "{flow}");
    assert!(flow["bytes_to_client"].as_u64() > Some(500), "{flow}");
    let ev =
        s.gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "hold-limit");
    assert_eq!(ev["stage"], "av");
    // An upload announced at 8 MiB: a 413 before the client sends it (curl asks
    // `Expect: 100-continue` for large bodies and waits for our answer).
    let (code, sent) = upload(&s, 8 << 20, "/count").await;
    assert_eq!(code, "413");
    assert!(sent < 1 << 20, "client sent {sent} bytes");
    let flow = s.gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/count" && v["status"] == 413
    });
    assert_eq!(flow["bytes_to_server"], 0, "{flow}");
    assert!(s
        .origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|r| r != "POST /count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_reaches_the_origin_which_may_refuse_the_upload() {
    let s = setup("expect", "", "").await;
    // The origin answers 413 from the head: the client never uploads its 20 MB.
    let (code, sent) = upload(&s, 20 << 20, "/reject").await;
    assert_eq!(code, "413", "the origin's answer");
    assert!(
        sent < 1 << 20,
        "client sent {sent} bytes: the gateway must not answer 100 itself"
    );
    let dir = TempDir::new("expect-upload");
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![b'e'; 20 << 20]).unwrap();
    let data = format!("@{}", file.display());
    // An origin that takes it: its 100 reaches the client, which uploads.
    let r = s
        .curl(&[
            "-H",
            "Expect: 100-continue",
            "--http1.1",
            "--expect100-timeout",
            "10",
            "--data-binary",
            &data,
            &s.url("/count"),
        ])
        .await;
    assert_eq!(r.stdout, (20 << 20).to_string(), "{}", r.stderr);
    let flow = s.gw.wait_line("flows.jsonl", |v| v["path"] == "/count");
    assert_eq!(flow["bytes_to_server"].as_u64(), Some(20 << 20), "{flow}");
    assert_eq!(flow["bytes_from_client"].as_u64(), Some(20 << 20), "{flow}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_upload_counts_what_was_read_not_what_was_delivered() {
    let s = setup("counts", "", &av(32 << 20)).await;
    // EICAR in an upload: read whole, judged, nothing delivered.
    let eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    let r = s
        .curl(&[
            "-w",
            "\n%{http_code}",
            "--data-binary",
            eicar,
            &s.url("/count"),
        ])
        .await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(
        r.stdout.contains("antivirus"),
        "the page names the finding: {}",
        r.stdout
    );
    let flow = s.gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/count" && v["status"] == 403
    });
    assert_eq!(flow["bytes_to_server"], 0, "{flow}");
    assert_eq!(
        flow["bytes_from_client"].as_u64(),
        Some(eicar.len() as u64),
        "{flow}"
    );
    assert!(
        flow["bytes_to_client"].as_u64() > Some(500),
        "the page counts: {flow}"
    );
}

#[test]
fn relative_paths_resolve_from_the_config_folder_and_check_config_creates_nothing() {
    let etc = TempDir::new("etc");
    let elsewhere = TempDir::new("cwd");
    let cfg = etc.path().join("sekisho.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n\n\
         [tls]\nca_cert = \"certs/ca.crt\"\nca_key = \"certs/ca.key\"\n\n\
         [events]\nfile = \"logs/events.jsonl\"\ncomm_log = \"logs/flows.jsonl\"\n\n\
         [av]\nyara = [\"rules/yara\"]\nclamav = [\"rules/clamav\"]\n",
    )
    .unwrap();
    let rules = etc.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    for d in ["yara", "clamav"] {
        let to = rules.join(d);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(repo().join("rules").join(d)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    let listing = |d: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let out = std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing(elsewhere.path()).is_empty(),
        "check-config wrote into the cwd"
    );
    assert_eq!(
        listing(etc.path()),
        ["rules", "sekisho.toml"],
        "check-config created nothing beside the config"
    );
    // `run` from elsewhere: the CA, logs and cache land beside the config, nothing in the cwd.
    let mut child = std::process::Command::new(bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(elsewhere.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.starts_with("listening"), "{line}");
    assert!(
        listing(elsewhere.path()).is_empty(),
        "run wrote into the cwd"
    );
    assert!(etc.path().join("certs/ca.crt").exists());
    assert!(etc.path().join("certs/ca.key").exists());
    assert!(etc.path().join("logs").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_are_answered_from_the_whole_scanned_file() {
    let eicar = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*".to_vec();
    let mut files = Files::new();
    files.insert(
        "/eicar.com".into(),
        (vec![("etag".into(), "\"e1\"".into())], eicar),
    );
    let origin = Origin::start_with_files(None, files).await;
    let gw = Gateway::start("range", "", &av(1 << 20));
    let get = |range: &'static str, path: &'static str| {
        let (proxy, port) = (gw.proxy_url(), origin.port);
        async move {
            curl(&[
                "-x",
                &proxy,
                "-r",
                range,
                "-D",
                "-",
                "-w",
                "\n%{http_code}",
                &format!("http://127.0.0.1:{port}{path}"),
            ])
            .await
        }
    };
    // Each half of EICAR alone passes a scanner; the whole file is fetched and judged.
    for range in ["0-33", "34-"] {
        let r = get(range, "/eicar.com").await;
        assert!(r.stdout.ends_with("\n403"), "{range}: {}", r.stdout);
    }
    // A clean file: the range asked for, as a 206.
    let r = get("100-199", "/bytes/1000").await;
    assert!(r.stdout.ends_with("\n206"), "{}", r.stdout);
    let lower = r.stdout.to_ascii_lowercase();
    assert!(
        lower.contains("content-range: bytes 100-199/1000"),
        "{}",
        r.stdout
    );
    assert!(lower.contains("content-length: 100"), "{}", r.stdout);
    let body = r.stdout.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(body, format!("{}\n206", "x".repeat(100)));
    gw.wait_line("flows.jsonl", |v| {
        v["path"] == "/bytes/1000" && v["status"] == 206
    });
    // A resume from the middle (`curl -C`) gets the tail.
    let r = get("-10", "/bytes/1000").await;
    assert!(r
        .stdout
        .to_ascii_lowercase()
        .contains("content-range: bytes 990-999/1000"));
    let seen = origin.seen.lock().unwrap().len();
    assert!(seen >= 4, "the origin was asked for whole files");

    // "refuse": a 403 naming the reason; "pass": forwarded, with an event.
    let gw = Gateway::start(
        "range-refuse",
        "",
        &format!("{}\n[policy]\nrange_requests = \"refuse\"\n", av(1 << 20)),
    );
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "-r",
        "0-9",
        "-w",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{}/bytes/1000", origin.port),
    ])
    .await;
    assert!(
        r.stdout.ends_with("\n403") && r.stdout.contains("range requests"),
        "{}",
        r.stdout
    );
    let gw = Gateway::start(
        "range-pass",
        "",
        &format!("{}\n[policy]\nrange_requests = \"pass\"\n", av(1 << 20)),
    );
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "-r",
        "0-9",
        &format!("http://127.0.0.1:{}/bytes/1000", origin.port),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    gw.wait_line("events.jsonl", |v| v["rule"]["id"] == "range-passed");
}
