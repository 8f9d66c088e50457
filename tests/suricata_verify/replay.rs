//! Replaying one recorded HTTP/1 flow through the forward proxy: the client's bytes, as
//! recorded, inside a CONNECT tunnel to a loopback origin (the proxy sniffs the cleartext
//! and inspects it like proxied HTTP); the origin answers each request it is forwarded with
//! the next recorded response.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::pcap::{Flow, Side};

/// Waiting for the first byte of an answer.
const FIRST_BYTE: Duration = Duration::from_secs(3);
/// Quiet time that ends an answer.
const IDLE: Duration = Duration::from_millis(150);
/// Most bytes read from one side.
const MAX_READ: usize = 64 << 20;

/// One recorded response and whether its end is the connection's end.
#[derive(Debug, Clone)]
pub struct Resp {
    pub bytes: Vec<u8>,
    pub close: bool,
}

/// The loopback origin of one flow.
pub struct Origin {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Origin {
    /// Listens on the recorded port when it is free (rules may name it), else on any port.
    pub fn start(port: u16, responses: Vec<Resp>) -> std::io::Result<Origin> {
        let l =
            TcpListener::bind(("127.0.0.1", port)).or_else(|_| TcpListener::bind("127.0.0.1:0"))?;
        let port = l.local_addr()?.port();
        l.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let queue = Arc::new(Mutex::new(VecDeque::from(responses)));
        let s = Arc::clone(&stop);
        let thread = std::thread::spawn(move || accept_loop(&l, &queue, &s));
        Ok(Origin {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(l: &TcpListener, queue: &Arc<Mutex<VecDeque<Resp>>>, stop: &AtomicBool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => {
                let q = Arc::clone(queue);
                conns.push(std::thread::spawn(move || serve(s, &q)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

/// Answers each complete request with the next response, until they run out.
fn serve(mut s: TcpStream, queue: &Mutex<VecDeque<Resp>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    loop {
        let Some(len) = read_request(&mut s, &mut buf) else {
            return;
        };
        buf.drain(..len);
        let Some(resp) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
            return;
        };
        if s.write_all(&resp.bytes).is_err() {
            return;
        }
        if switches(&resp.bytes) {
            // An upgraded connection (WebSocket): what the client sends next is taken until
            // it closes, as the recorded server did.
            let mut chunk = [0u8; 16384];
            while matches!(s.read(&mut chunk), Ok(n) if n > 0) {}
            return;
        }
        if resp.close {
            let _ = s.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Whether a recorded response is a 101 (the connection changes protocol after it).
fn switches(resp: &[u8]) -> bool {
    resp.starts_with(b"HTTP/1.1 101") || resp.starts_with(b"HTTP/1.0 101")
}

/// Reads until `buf` holds a whole request (head, and a body by length or chunks); its length.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(len) = request_len(buf) {
            return Some(len);
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) if buf.len() + n <= MAX_READ => buf.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
        }
    }
}

fn request_len(b: &[u8]) -> Option<usize> {
    let head = find(b, b"\r\n\r\n")? + 4;
    let text = String::from_utf8_lossy(&b[..head]).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    // Every Transfer-Encoding line counts (libhtp joins repeated headers).
    let chunked = text
        .lines()
        .filter_map(|l| l.strip_prefix("transfer-encoding:"))
        .any(|v| v.contains("chunked"));
    if chunked {
        return chunked_len(&b[head..]).map(|n| head + n);
    }
    let cl: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (b.len() >= head + cl).then_some(head + cl)
}

/// The length of a complete chunked body (trailers included), if `b` holds one.
fn chunked_len(b: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let eol = find(&b[at..], b"\n")? + at;
        let line = String::from_utf8_lossy(&b[at..eol]);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        at = eol + 1;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let eol = find(&b[at..], b"\n")? + at;
                let empty = b[at..eol].iter().all(|&c| c == b'\r');
                at = eol + 1;
                if empty {
                    return Some(at);
                }
            }
        }
        at = at.checked_add(size)?;
        if b.len() < at {
            return None;
        }
        at += find(&b[at..], b"\n")? + 1;
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// The server's recorded bytes as responses (an interim 1xx travels with the response after
/// it; a response without a length ends with the connection).
pub fn split_responses(b: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut start = 0;
    while at < b.len() {
        let Some((end, close, interim)) = response_end(&b[at..]) else {
            out.push(Resp {
                bytes: b[start..].to_vec(),
                close: true,
            });
            return out;
        };
        at += end;
        if interim {
            continue;
        }
        // A response that ends the connection takes whatever the server sent after it too.
        let upto = if close { b.len() } else { at };
        out.push(Resp {
            bytes: b[start..upto].to_vec(),
            close,
        });
        start = at;
        if close {
            break;
        }
    }
    out
}

/// Where the response at the start of `b` ends, whether the connection ends with it, and
/// whether it is an interim (1xx) response.
fn response_end(b: &[u8]) -> Option<(usize, bool, bool)> {
    let (head, sep) = match (find(b, b"\r\n\r\n"), find(b, b"\n\n")) {
        (Some(a), Some(c)) if c < a => (c, 2),
        (Some(a), _) => (a, 4),
        (None, Some(c)) => (c, 2),
        (None, None) => return None,
    };
    let body_at = head + sep;
    let text = String::from_utf8_lossy(&b[..head]).to_ascii_lowercase();
    let code: u16 = text.split_whitespace().nth(1)?.parse().ok()?;
    if (100..200).contains(&code) && code != 101 {
        return Some((body_at, false, true));
    }
    if code == 101 {
        return Some((b.len(), true, false));
    }
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let close_hdr = header("connection:").is_some_and(|v| v.contains("close"));
    // libhtp reads a body on a 204 or 304 that announces one.
    let announced = header("transfer-encoding:").is_some() || header("content-length:").is_some();
    if (code == 204 || code == 304) && !announced {
        return Some((body_at, close_hdr, false));
    }
    // Every Transfer-Encoding line counts (libhtp joins repeated headers).
    let chunked = text
        .lines()
        .filter_map(|l| l.strip_prefix("transfer-encoding:"))
        .any(|v| v.contains("chunked"));
    if chunked {
        return Some(match chunked_len(&b[body_at..]) {
            Some(n) => (body_at + n, close_hdr, false),
            None => (b.len(), true, false),
        });
    }
    match header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) if body_at + n <= b.len() => Some((body_at + n, close_hdr, false)),
        _ => Some((b.len(), true, false)),
    }
}

/// Replays the client side of `flow` through the proxy to `origin_port`; the error says where
/// the replay stopped.
pub fn client(proxy: SocketAddr, origin_port: u16, flow: &Flow) -> Result<(), String> {
    let mut s =
        TcpStream::connect_timeout(&proxy, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    let target = format!("127.0.0.1:{origin_port}");
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let head = read_answer(&mut s);
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "CONNECT refused: {}",
            String::from_utf8_lossy(&head[..head.len().min(80)])
        ));
    }
    for (side, bytes) in &flow.turns {
        if *side == Side::Client {
            if s.write_all(bytes).is_err() {
                return Err("the proxy closed the tunnel".into());
            }
            read_answer(&mut s);
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    read_answer(&mut s);
    Ok(())
}

/// Reads what arrives until the peer goes quiet or closes.
fn read_answer(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    let _ = s.set_read_timeout(Some(FIRST_BYTE));
    while out.len() < MAX_READ {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                let _ = s.set_read_timeout(Some(IDLE));
            }
        }
    }
    out
}
