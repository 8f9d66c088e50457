//! Raw HTTP/1 over TCP: the request bytes go out exactly as built, and the response is read
//! far enough to know its status and to have it complete (Content-Length, chunked, or until
//! the server closes), bounded in size and time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response kept.
const MAX_RESPONSE: usize = 8 << 20;

/// What came back.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The local port of the connection (events carry it as `src_port`).
    pub local_port: u16,
    /// The status of the response, if one was read.
    pub status: Option<u16>,
    /// The response bytes read.
    pub raw: Vec<u8>,
    /// What went wrong: connecting, writing, or no response.
    pub error: Option<String>,
}

/// Sends `request` to `addr` on a new connection and reads the response within `timeout`.
pub fn exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Exchange {
    let mut ex = Exchange::default();
    let mut s = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            ex.error = Some(format!("connect: {e}"));
            return ex;
        }
    };
    ex.local_port = s.local_addr().map(|a| a.port()).unwrap_or(0);
    let _ = s.set_write_timeout(Some(timeout));
    let write_error = s.write_all(request).and_then(|()| s.flush()).err();
    // The server may answer (and close) before taking the whole request: read anyway.
    let deadline = Instant::now() + timeout;
    match read_response(&mut s, deadline) {
        Ok((status, raw)) => {
            ex.status = Some(status);
            ex.raw = raw;
        }
        Err((e, raw)) => {
            ex.raw = raw;
            ex.error = Some(match write_error {
                Some(w) => format!("write: {w}; read: {e}"),
                None => e,
            });
        }
    }
    ex
}

type ReadResult = Result<(u16, Vec<u8>), (String, Vec<u8>)>;

fn read_response(s: &mut TcpStream, deadline: Instant) -> ReadResult {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match fill(s, &mut buf, deadline) {
            Ok(0) if buf.is_empty() => return Err(("closed without a response".into(), buf)),
            Ok(0) => return Err(("closed inside the response head".into(), buf)),
            Ok(_) => {}
            Err(e) => return Err((e, buf)),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let Some(status) = status_of(&head) else {
        return Err(("malformed status line".into(), buf));
    };
    read_body(s, &mut buf, head_end, &head, status, deadline);
    Ok((status, buf))
}

/// Reads the body after the head, best effort: a short or late body still leaves the status.
fn read_body(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    head_end: usize,
    head: &str,
    status: u16,
    deadline: Instant,
) {
    if status < 200 || status == 204 || status == 304 {
        return;
    }
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length: Option<usize> = header("content-length").and_then(|v| v.parse().ok());
    loop {
        let body = &buf[head_end..];
        let done = match (chunked, length) {
            (true, _) => body.ends_with(b"0\r\n\r\n"),
            (false, Some(n)) => body.len() >= n,
            (false, None) => false,
        };
        if done || buf.len() >= MAX_RESPONSE {
            return;
        }
        match fill(s, buf, deadline) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One read into `buf`; `Ok(0)` at the end of the stream.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Result<usize, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err("timed out".into());
    }
    let _ = s.set_read_timeout(Some(left));
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(n)
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err("timed out".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `HTTP/1.1 403 Forbidden` → 403.
fn status_of(head: &str) -> Option<u16> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let proto = parts.next()?;
    if !proto.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_of("HTTP/1.1 403 Forbidden\r\n"), Some(403));
        assert_eq!(status_of("HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(status_of("garbage\r\n"), None);
    }

    #[test]
    fn reads_a_response_with_a_length_and_keeps_the_connection_bound() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut b = [0u8; 64];
            let _ = c.read(&mut b);
            c.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi")
                .unwrap();
            // Keeps the connection open: the reader must stop at the length.
            std::thread::sleep(Duration::from_millis(500));
        });
        let ex = exchange(addr, b"GET / HTTP/1.1\r\n\r\n", Duration::from_secs(5));
        assert_eq!(ex.status, Some(201));
        assert!(ex.raw.ends_with(b"\r\n\r\nhi"));
        assert!(ex.error.is_none());
        t.join().unwrap();
    }
}
