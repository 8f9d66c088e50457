//! `sekisho probe URL`: one HTTP/1.0 GET to a health endpoint, for container health checks on
//! an image without curl.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

/// Largest answer read (health bodies are a few lines).
const MAX_ANSWER: u64 = 64 * 1024;

/// Asks `url`; exit 0 on a 200 answer, 1 on another status, 2 (an error) when unreachable.
pub fn probe(url: &str, timeout_secs: u64) -> anyhow::Result<ExitCode> {
    let (authority, path) = split(url)?;
    let wait = Duration::from_secs(timeout_secs.max(1));
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, wait).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(wait))?;
    tcp.set_write_timeout(Some(wait))?;
    write!(
        tcp,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: sekisho-probe\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    tcp.take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer of {url}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .with_context(|| format!("{url} answered no HTTP status line"))?;
    print!("{body}");
    Ok(if status == "200" {
        ExitCode::SUCCESS
    } else {
        eprintln!("sekisho probe: {url} answered {status}");
        ExitCode::from(1)
    })
}

/// `http://host:port/path` → (`host:port`, `/path`).
fn split(url: &str) -> anyhow::Result<(&str, &str)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs can be probed");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        bail!("{url}: give the port (http://HOST:PORT/PATH)");
    }
    Ok((authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_authority_and_path() {
        let (a, p) = split("http://127.0.0.1:9090/readyz").expect("split");
        assert_eq!((a, p), ("127.0.0.1:9090", "/readyz"));
        assert_eq!(
            split("http://[::1]:9090").expect("split"),
            ("[::1]:9090", "/")
        );
        assert!(split("https://x:1/").is_err());
        assert!(split("http://host/readyz").is_err());
    }
}
