//! The ICAP client against a scripted server on loopback: each service path answers one way
//! (clean, a block page, an echo, an error, a flood), so the client's reading of each is pinned,
//! bounded, and a closed kept-alive connection is retried.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sekisho_av::icap::{wire, Answer, IcapClient, IcapConfig, IcapError, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Reads one request (head, encapsulated headers, chunked body; preview answered with 100).
/// Returns the service path and the body, or None at EOF.
async fn read_request(
    r: &mut BufReader<tokio::net::TcpStream>,
    continue_preview: bool,
) -> Option<(String, Vec<u8>)> {
    let raw = wire::read_head(r, 1 << 16).await.ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let line = text.lines().next()?.to_string();
    let service = line.split(' ').nth(1)?.rsplit('/').next()?.to_string();
    if line.starts_with("OPTIONS") {
        return Some(("OPTIONS".into(), Vec::new()));
    }
    if service == "early" {
        // Answers before reading the body.
        return Some((service, Vec::new()));
    }
    let enc = text
        .lines()
        .find_map(|l| l.strip_prefix("Encapsulated: "))
        .unwrap();
    let enc = wire::parse_encapsulated(enc).unwrap();
    let mut http = vec![0; enc.header_bytes()];
    r.read_exact(&mut http).await.ok()?;
    let (mut body, _) = wire::read_chunked(r, 1 << 20, 1 << 20).await.ok()??;
    let previewed = text.contains("Preview:");
    if previewed && continue_preview && body.len() < content_length(&http) {
        r.get_mut()
            .write_all(b"ICAP/1.0 100 Continue\r\n\r\n")
            .await
            .ok()?;
        let (rest, _) = wire::read_chunked(r, 1 << 20, 1 << 20).await.ok()??;
        body.extend(rest);
    }
    Some((service, body))
}

fn content_length(http: &[u8]) -> usize {
    String::from_utf8_lossy(http)
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = wire::chunk(data);
    out.extend_from_slice(wire::last_chunk(false));
    out
}

/// What each service answers.
fn answer(service: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let res = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    let page = "HTTP/1.1 403 Forbidden\r\n\r\n";
    let ok = |extra: &str, http: &str, b: &[u8]| {
        let mut v = format!(
            "ICAP/1.0 200 OK\r\n{extra}Encapsulated: res-hdr=0, res-body={}\r\n\r\n{http}",
            http.len()
        )
        .into_bytes();
        v.extend(chunked(b));
        v
    };
    match service {
        "OPTIONS" => (
            b"ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nPreview: 8\r\nAllow: 204\r\nEncapsulated: null-body=0\r\n\r\n".to_vec(),
            true,
        ),
        "clean" => (b"ICAP/1.0 204 No Content\r\n\r\n".to_vec(), true),
        "closing" => (b"ICAP/1.0 204 No Content\r\n\r\n".to_vec(), false),
        "echo" => (ok("", res, body), true),
        "modify" => (ok("", res, &[body, b"+"].concat()), true),
        "page" => (ok("", page, b"blocked"), true),
        "named" => (ok("X-Virus-ID: Test.Named\r\n", page, b"blocked"), true),
        "error" => (b"ICAP/1.0 500 Server Error\r\n\r\n".to_vec(), true),
        "forbidden" => (b"ICAP/1.0 403 Forbidden\r\n\r\n".to_vec(), true),
        "early" | "forbidden-named" => (
            b"ICAP/1.0 403 Forbidden\r\nX-Virus-ID: Test.Early\r\nConnection: close\r\n\r\n".to_vec(),
            false,
        ),
        "named204" => (
            b"ICAP/1.0 204 No Content\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Test.204;\r\n\r\n".to_vec(),
            true,
        ),
        "bighead" => {
            let mut v = b"ICAP/1.0 200 OK\r\n".to_vec();
            for i in 0..5000 {
                v.extend(format!("X-Filler-{i}: {}\r\n", "y".repeat(20)).bytes());
            }
            v.extend(b"\r\n");
            (v, false)
        }
        "flood" => {
            let mut v = format!(
                "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{res}",
                res.len()
            )
            .into_bytes();
            for _ in 0..64 {
                v.extend(wire::chunk(&[b'z'; 64 * 1024]));
            }
            (v, false)
        }
        _ => (b"ICAP/1.0 404 Service not found\r\n\r\n".to_vec(), true),
    }
}

/// The scripted server; counts connections.
async fn server() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut r = BufReader::new(s);
                while let Some((service, body)) = read_request(&mut r, true).await {
                    let (reply, keep) = answer(&service, &body);
                    if r.get_mut().write_all(&reply).await.is_err() || !keep {
                        break;
                    }
                }
            });
        }
    });
    (port, conns)
}

fn client(port: u16, service: &str, extra: &str) -> IcapClient {
    let cfg: IcapConfig = toml::from_str(&format!(
        "url = \"icap://127.0.0.1:{port}/{service}\"\ntimeout_secs = 5\n{extra}"
    ))
    .unwrap();
    IcapClient::new(cfg).unwrap()
}

fn msg() -> Message<'static> {
    Message {
        method: "GET",
        host: "example.test",
        target: "/f",
        ..Message::default()
    }
}

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn each_answer_is_read_as_the_server_meant_it() {
    let (port, conns) = server().await;
    let body = b"abc".as_slice();
    let long = vec![b'q'; 100];
    let c = client(port, "clean", "");
    assert_eq!(c.ask(&msg(), body, T).await.unwrap(), Answer::Clean);
    // Longer than the server's 8-byte preview: 100 Continue, then the rest.
    assert_eq!(c.ask(&msg(), &long, T).await.unwrap(), Answer::Clean);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        1,
        "OPTIONS and both exchanges on one kept-alive connection"
    );
    let echo = client(port, "echo", "allow_204 = false");
    assert_eq!(echo.ask(&msg(), body, T).await.unwrap(), Answer::Clean);
    let modify = client(port, "modify", "allow_204 = false");
    assert!(matches!(
        modify.ask(&msg(), body, T).await.unwrap(),
        Answer::Blocked(w) if w.contains("changed")
    ));
    let page = client(port, "page", "");
    assert!(
        matches!(page.ask(&msg(), body, T).await.unwrap(), Answer::Blocked(w) if w.contains("403"))
    );
    let named = client(port, "named", "");
    assert_eq!(
        named.ask(&msg(), body, T).await.unwrap(),
        Answer::Threat("Test.Named".into())
    );
    let err = client(port, "error", "");
    assert!(matches!(
        err.ask(&msg(), body, T).await,
        Err(IcapError::Status(500, _))
    ));
    let reqmod = client(port, "clean", "method = \"reqmod\"");
    assert!(
        matches!(
            reqmod.ask(&msg(), body, T).await,
            Err(IcapError::Method("REQMOD", _))
        ),
        "the service's OPTIONS offer RESPMOD only"
    );
}

#[tokio::test]
async fn hostile_answers_are_bounded() {
    let (port, _) = server().await;
    let big = client(port, "bighead", "");
    assert!(matches!(
        big.ask(&msg(), b"abc", T).await,
        Err(IcapError::Protocol(_))
    ));
    // 4 MiB of "adapted" body for a 3-byte original: reading stops at the bound.
    let flood = client(port, "flood", "");
    assert!(matches!(
        flood.ask(&msg(), b"abc", T).await.unwrap(),
        Answer::Blocked(_)
    ));
}

#[tokio::test]
async fn a_connection_the_server_closed_is_replaced() {
    let (port, conns) = server().await;
    let c = client(port, "closing", "");
    for _ in 0..3 {
        assert_eq!(c.ask(&msg(), b"abc", T).await.unwrap(), Answer::Clean);
    }
    // OPTIONS' connection carried the first exchange; each close forced a new one.
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn threats_are_heard_whatever_the_status() {
    let (port, _) = server().await;
    let named = client(port, "forbidden-named", "");
    assert_eq!(
        named.ask(&msg(), b"abc", T).await.unwrap(),
        Answer::Threat("Test.Early".into())
    );
    let bare = client(port, "forbidden", "");
    assert!(matches!(
        bare.ask(&msg(), b"abc", T).await.unwrap(),
        Answer::Blocked(_)
    ));
    let n204 = client(port, "named204", "");
    assert_eq!(
        n204.ask(&msg(), b"abc", T).await.unwrap(),
        Answer::Threat("Test.204".into())
    );
}

#[tokio::test]
async fn an_answer_before_the_body_is_read_is_heard_not_waited_on() {
    let (port, _) = server().await;
    // 8 MiB with no preview: far more than the socket buffers hold, and the server reads none.
    let early = client(port, "early", "preview = 0");
    let big = vec![b'x'; 8 << 20];
    let started = std::time::Instant::now();
    assert_eq!(
        early.ask(&msg(), &big, T).await.unwrap(),
        Answer::Threat("Test.Early".into())
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn every_idle_connection_gone_stale_costs_one_retry() {
    let (port, conns) = server().await;
    let c = Arc::new(client(port, "closing", ""));
    // Three exchanges at once leave three idle connections the server has closed.
    let asks: Vec<_> = (0..3)
        .map(|_| {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.ask(&msg(), b"abc", T).await.unwrap() })
        })
        .collect();
    for a in asks {
        assert_eq!(a.await.unwrap(), Answer::Clean);
    }
    let before = conns.load(Ordering::SeqCst);
    assert_eq!(c.ask(&msg(), b"abc", T).await.unwrap(), Answer::Clean);
    // One stale attempt, then a new connection: never a second stale one.
    assert_eq!(conns.load(Ordering::SeqCst), before + 1);
}
