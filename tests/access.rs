//! Where the forward proxy may go (issue 19, access control): `[policy] deny_networks` (loopback,
//! link-local and cloud metadata by default) checked on the address actually dialled, whatever
//! the spelling (IPv4-mapped IPv6, a name resolving to loopback); CONNECT only to
//! `connect_ports`; the gateway's own listeners and metrics refused even where loopback is
//! allowed; forwarding loops seen in `Via`. Each refusal is a 403 page and a threat event naming
//! the client and the rule.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `url` through the gateway; (status, body).
async fn get(gw: &Gateway, url: &str, headers: &[&str]) -> (String, String) {
    let mut args = vec![
        "-x".to_string(),
        gw.proxy_url(),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    for h in headers {
        args.extend(["-H".to_string(), h.to_string()]);
    }
    args.push(url.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = curl(&args).await;
    let (body, code) = r.stdout.rsplit_once('\n').unwrap_or(("", &r.stdout));
    (code.to_string(), body.to_string())
}

/// Sends `CONNECT target` and returns the status line.
async fn connect_status(gw: &Gateway, target: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// GET an HTTPS `url` through the gateway, trusting its CA: (status, body). A refused
/// destination is refused at CONNECT, before anything is dialled, and its page shown inside
/// the TLS session.
async fn get_tls(gw: &Gateway, url: &str) -> (String, String) {
    let ca = gw.ca_path();
    let r = curl(&[
        "-x",
        &gw.proxy_url(),
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n%{http_code}",
        url,
    ])
    .await;
    let (body, code) = r.stdout.rsplit_once('\n').unwrap_or(("", &r.stdout));
    (code.to_string(), body.to_string())
}

/// The event refusing with `rule`, waited for.
fn refusal(gw: &Gateway, rule: &str) -> serde_json::Value {
    gw.wait_line("events.jsonl", |e| e["rule"]["id"] == rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_refuses_loopback_metadata_and_other_connect_ports() {
    let origin = Origin::start(None).await;
    // connect_ports written: the test helper leaves the destination policy at its defaults.
    let gw = Gateway::start("access-default", "", "[policy]\nconnect_ports = [443]\n");
    let p = origin.port;
    for url in [
        format!("http://127.0.0.1:{p}/hello"),
        format!("http://localhost:{p}/hello"),
        format!("http://[::ffff:127.0.0.1]:{p}/hello"),
        format!("http://[::1]:{p}/hello"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_string(),
    ] {
        let (code, body) = get(&gw, &url, &[]).await;
        assert_eq!(code, "403", "{url}: {body}");
        assert!(body.contains("Destination not allowed"), "{url}: {body}");
        assert!(!body.contains("hello"), "{url} reached the origin");
    }
    let e = refusal(&gw, "deny_networks:169.254.0.0/16");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    assert_eq!(e["event"]["action"], "blocked");
    assert_eq!(e["evidence"]["excerpt"], "169.254.169.254");
    refusal(&gw, "deny_networks:127.0.0.0/8");
    refusal(&gw, "deny_networks:::1/128");
    refusal(&gw, "deny_networks:fd00:ec2::254/128");
    // CONNECT: port 22 is not in connect_ports: a 403 to the CONNECT. 443 on loopback is a
    // denied network: refused before anything is dialled, the page shown inside TLS.
    assert!(connect_status(&gw, "example.test:22")
        .await
        .contains(" 403"));
    refusal(&gw, "connect_ports");
    for url in ["https://127.0.0.1:443/", "https://[::1]:443/"] {
        let (code, body) = get_tls(&gw, url).await;
        assert_eq!(code, "403", "{url}: {body}");
        assert!(body.contains("Destination not allowed"), "{url}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_listeners_metrics_and_loops_are_refused_where_loopback_is_allowed() {
    let origin = Origin::start(None).await;
    let gw = Gateway::start("access-own", "", "");
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let (code, body) = get(&gw, &url, &[]).await;
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello"));
    let (proxy, metrics) = (gw.proxy.port(), gw.metrics.port());
    for url in [
        format!("http://127.0.0.1:{proxy}/"),
        format!("http://127.0.0.1:{metrics}/metrics"),
        // A name: refused on the dialled peer, before any byte is sent.
        format!("http://localhost:{metrics}/metrics"),
    ] {
        let (code, body) = get(&gw, &url, &[]).await;
        assert_eq!(code, "403", "{url}: {body}");
        assert!(
            !body.contains("sekisho_"),
            "{url}: metrics leaked through the proxy"
        );
    }
    let e = refusal(&gw, "own-listener");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    let (code, body) = get_tls(&gw, &format!("https://127.0.0.1:{metrics}/metrics")).await;
    assert_eq!(code, "403", "{body}");
    assert!(body.contains("is the gateway itself"), "{body}");
    // A request that already passed through this node is a loop.
    let node = e["observer"]["node"].as_str().unwrap().to_string();
    let via = format!("Via: 1.1 other-proxy, 1.1 {node} (sekisho)");
    let (code, _) = get(&gw, &url, &[&via]).await;
    assert_eq!(code, "403");
    refusal(&gw, "forwarding-loop");
    // Another Sekisho node in the path is not a loop.
    let (code, body) = get(&gw, &url, &["Via: 1.1 gw-elsewhere (sekisho)"]).await;
    assert_eq!((code.as_str(), body.as_str()), ("200", "hello"));
}
