//! Upstream responses hyper refuses (a malformed head, chunk sizes with junk after them, blank
//! lines before a chunk size, chunked on HTTP/1.0, bare-CR line ends …), read from their raw
//! bytes the way libhtp-rs (Suricata's HTTP parser) reads them, so the stages judge what a
//! lenient browser would have taken from them.
//!
//! The client never gets these bytes (hyper's refusal stands: a 502 or a cut body); reading
//! them is for the IPS, which must alert where Suricata alerts. The rules followed are
//! libhtp-rs's: the status line is any line that starts with `http` (case aside), else the
//! whole response is a body; line ends are CRLF, LF or a lone CR; a header without a colon is
//! ignored, a header line starting with whitespace continues the previous one; a
//! `Transfer-Encoding` that names `chunked` wins over `Content-Length`; a chunk-size line is
//! control characters, hex digits and anything after them (an extension, junk), a line of
//! only control characters is skipped, and a size line that starts with anything else turns
//! the rest into a body read to the end of the stream.

use bytes::Bytes;
use sekisho_core::{Direction, HeldBody, ResponseHead, Verdict};

use crate::flowstate::FlowState;

/// Header fields read at most (libhtp's `headers-limit`).
const MAX_FIELDS: usize = 1024;

/// True when hyper refused the upstream's response as malformed (or cut short in its head).
pub(crate) fn refused_as_malformed(err: &(dyn std::error::Error + 'static)) -> bool {
    crate::dial::causes(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_parse() || h.is_parse_status() || h.is_incomplete_message())
    })
}

/// Judges a response hyper refused before its head was accepted: the head and body read
/// leniently from the connection's recording go through the flow's response phases. The
/// verdict, `None` when nothing was recorded.
pub(crate) async fn judge_refused(
    state: &FlowState,
    err: &hyper_util::client::legacy::Error,
    head_request: bool,
) -> Option<Verdict> {
    state.set_raw_tap(crate::rawtap::of_error(err)?);
    let raw = state.raw_response()?;
    let r = read(&raw, head_request, crate::rawtap::RAW_CAP)?;
    let mut flow = state.flow.lock().await;
    flow.response_head(&r.head);
    state.emit(&mut flow).await;
    let body = Bytes::from(r.body);
    flow.body(Direction::Response, &body, true);
    state.emit(&mut flow).await;
    if flow.holding(Direction::Response) {
        let mut held = HeldBody::new(Direction::Response);
        held.push(body);
        flow.resolve(Direction::Response, &held, &crate::body::TokioTimer)
            .await;
        state.emit(&mut flow).await;
    }
    Some(flow.verdict())
}

/// The part of a response body that hyper did not deliver (it refused the framing or the
/// upstream cut it short) as libhtp would read it from the recording: the lenient body past
/// the `delivered` bytes the stages have seen. `None` when nothing was recorded.
pub(crate) fn undelivered(state: &FlowState, delivered: u64) -> Option<Bytes> {
    let raw = state.raw_response()?;
    let r = read(&raw, false, crate::rawtap::RAW_CAP)?;
    let from = usize::try_from(delivered).ok()?.min(r.body.len());
    Some(Bytes::from(r.body).slice(from..))
}

/// A response read leniently: its head and its body with the transfer coding undone (the
/// content coding, if any, is left to the stages, as for any response).
#[derive(Debug)]
pub(crate) struct Lenient {
    /// The head (status 200 and HTTP/0.9 when there was no status line).
    pub head: ResponseHead,
    /// The body, at most the `max_body` bytes asked for.
    pub body: Vec<u8>,
}

/// Reads `raw`, the bytes the upstream sent in answer to one request (`head_request`: it was
/// a HEAD, so no body). `None` when there is nothing to read.
pub(crate) fn read(raw: &[u8], head_request: bool, max_body: usize) -> Option<Lenient> {
    let mut at = 0;
    // Blank lines before the status line are ignored; a line that does not look like one
    // starts a body (what browsers do), unless a status line follows it.
    let (line, start, rest) = loop {
        let (line, next) = take_line(&raw[at..])?;
        if line.is_empty() {
            at += next;
            continue;
        }
        if !looks_like_status(line) {
            let after = &raw[at + next..];
            if after.first() == Some(&b'H') || line.len() <= 2 {
                at += next;
                continue;
            }
            let body = cap(&raw[at..], max_body);
            return Some(Lenient {
                head: bare_head(),
                body,
            });
        }
        break (line, at, at + next);
    };
    let mut head = status_line(line);
    let (fields, body_at) = header_block(&raw[rest..]);
    for (name, value) in fields {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(&name),
            http::HeaderValue::from_bytes(&value),
        ) {
            if head.headers.len() < MAX_FIELDS {
                head.headers.append(n, v);
            }
        }
    }
    let body_raw = &raw[rest + body_at..];
    let body = body_of(&head, body_raw, head_request, max_body);
    head.raw = Some(Bytes::copy_from_slice(&raw[start..rest + body_at]));
    Some(Lenient { head, body })
}

fn bare_head() -> ResponseHead {
    ResponseHead {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_09,
        headers: http::HeaderMap::new(),
        reason: None,
        raw: None,
    }
}

fn cap(b: &[u8], max: usize) -> Vec<u8> {
    b[..b.len().min(max)].to_vec()
}

/// The next line and the offset after its end (CRLF, LF or a lone CR); an unterminated last
/// line is a line too (the stream ended).
fn take_line(b: &[u8]) -> Option<(&[u8], usize)> {
    if b.is_empty() {
        return None;
    }
    match memchr::memchr2(b'\r', b'\n', b) {
        Some(i) if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') => Some((&b[..i], i + 2)),
        Some(i) => Some((&b[..i], i + 1)),
        None => Some((b, b.len())),
    }
}

/// libhtp's `treat_response_line_as_body` negated: optional whitespace or NULs, then `http`.
fn looks_like_status(line: &[u8]) -> bool {
    let t = trim_start(line, |c| is_space(c) || c == 0);
    t.len() >= 4 && t[..4].eq_ignore_ascii_case(b"http")
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn trim_start(b: &[u8], f: impl Fn(u8) -> bool) -> &[u8] {
    let n = b.iter().take_while(|&&c| f(c)).count();
    &b[n..]
}

fn trim(b: &[u8]) -> &[u8] {
    let b = trim_start(b, is_space);
    let n = b.iter().rev().take_while(|&&c| is_space(c)).count();
    &b[..b.len() - n]
}

/// Protocol, status and message, split on whitespace as libhtp does; an invalid status is
/// read as 200 (the stages still see the body), an unknown protocol as HTTP/1.1.
fn status_line(line: &[u8]) -> ResponseHead {
    let mut words = line
        .split(|&c| is_space(c) || c == 0)
        .filter(|w| !w.is_empty());
    let proto = words.next().unwrap_or_default();
    let version = match proto.get(5..).filter(|_| proto.len() > 5) {
        Some(b"1.0") => http::Version::HTTP_10,
        Some(b"0.9") => http::Version::HTTP_09,
        _ => http::Version::HTTP_11,
    };
    let code = words.next().unwrap_or_default();
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..=999).contains(c))
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .unwrap_or(http::StatusCode::OK);
    let message = line
        .windows(code.len().max(1))
        .position(|w| !code.is_empty() && w == code)
        .map(|p| trim(&line[p + code.len()..]))
        .unwrap_or_default();
    ResponseHead {
        status,
        version,
        headers: http::HeaderMap::new(),
        reason: Some(Bytes::copy_from_slice(message)),
        raw: None,
    }
}

/// A header field: name and value.
type Field = (Vec<u8>, Vec<u8>);

/// The header fields (name, value) up to the blank line, and the offset of the body. A name
/// may run over line ends followed by a space (libhtp reads `Name\r\n :value` as one field);
/// a line that starts with whitespace and is not itself `name:` continues the previous value.
fn header_block(b: &[u8]) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut at = 0;
    while at < b.len() && fields.len() < MAX_FIELDS {
        let Some((line, next)) = take_line(&b[at..]) else {
            break;
        };
        if line.is_empty() {
            return (fields, at + next);
        }
        if matches!(line[0], b' ' | b'\t') && !starts_field(line) {
            if let Some((_, v)) = fields.last_mut() {
                let piece = trim(line);
                if !piece.is_empty() {
                    if !v.is_empty() {
                        v.push(b' ');
                    }
                    v.extend_from_slice(piece);
                }
            }
            at += next;
            continue;
        }
        let (name, value, used) = field(&b[at..]);
        if let Some(name) = name {
            fields.push((name, value));
        }
        at += used;
    }
    (fields, b.len())
}

/// A line `  token:` (libhtp's response rule: a new field even when indented).
fn starts_field(line: &[u8]) -> bool {
    let t = trim_start(line, |c| c == b' ' || c == b'\t');
    let n = t.iter().take_while(|&&c| is_token(c)).count();
    n > 0 && trim_start(&t[n..], |c| c == b' ' || c == b'\t').first() == Some(&b':')
}

fn is_token(c: u8) -> bool {
    (33..=126).contains(&c) && !b"()<>@,;:\\\"/[]?={}".contains(&c)
}

/// One field from `b`: the name (scanned over line ends followed by a space), the value to
/// the end of its line, and the bytes used. No colon: no name, the line is skipped.
fn field(b: &[u8]) -> (Option<Vec<u8>>, Vec<u8>, usize) {
    let mut eol = 0u8;
    let mut colon = None;
    for (i, &c) in b.iter().enumerate() {
        if eol == 0 {
            if c == b':' {
                colon = Some(i);
                break;
            }
            if c == b'\n' || c == b'\r' {
                eol = c;
            }
        } else if c == b' ' || c == b'\t' {
            eol = 0;
        } else if c == b'\n' && eol == b'\r' {
            eol = c;
        } else {
            break;
        }
    }
    let Some(colon) = colon else {
        let used = take_line(b).map_or(b.len(), |(_, n)| n);
        return (None, Vec::new(), used);
    };
    let name = trim(&b[..colon]).to_vec();
    let rest = &b[colon + 1..];
    let (value, used) = take_line(rest).unwrap_or((rest, rest.len()));
    (Some(name), trim(value).to_vec(), colon + 1 + used)
}

/// How the body is framed, as libhtp decides it.
fn body_of(head: &ResponseHead, b: &[u8], head_request: bool, max: usize) -> Vec<u8> {
    let status = head.status.as_u16();
    let te = joined(&head.headers, "transfer-encoding");
    let cl = head.headers.get(http::header::CONTENT_LENGTH);
    if head_request {
        return Vec::new();
    }
    if (status < 200 || status == 204 || status == 304) && te.is_none() && cl.is_none() {
        return Vec::new();
    }
    if te.is_some_and(|t| contains_nocase(&t, b"chunked")) {
        return dechunk(b, max);
    }
    match cl {
        Some(v) => match content_length(v.as_bytes()) {
            Some(n) => cap(&b[..b.len().min(n.min(usize::MAX as u64) as usize)], max),
            None => Vec::new(),
        },
        None => cap(b, max),
    }
}

fn joined(h: &http::HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in h.get_all(name) {
        let o = out.get_or_insert_with(Vec::new);
        if !o.is_empty() {
            o.extend_from_slice(b", ");
        }
        o.extend_from_slice(v.as_bytes());
    }
    out
}

fn contains_nocase(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// libhtp's `parse_content_length`: whitespace, any leading junk, digits; junk after is fine.
fn content_length(v: &[u8]) -> Option<u64> {
    let t = trim_start(v, |c| c == b' ' || c == b'\t');
    let start = t.iter().position(u8::is_ascii_digit)?;
    let digits = &t[start..];
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..n]).ok()?.parse().ok()
}

fn is_ctl(c: u8) -> bool {
    matches!(c, b'\r' | b'\n' | b' ' | b'\t' | 0x0b | 0x0c)
}

/// What one chunk-size line says.
enum Size {
    /// Nothing but control characters or an empty size: read the next line.
    Skip,
    /// A chunk of this many bytes (0: the last).
    Chunk(u64),
    /// Not a size: the rest of the stream is the body.
    Invalid,
}

/// libhtp's `parse_chunked_length`.
fn chunk_size(line: &[u8]) -> Size {
    let t = trim_start(line, is_ctl);
    let t = trim_start(t, |c| c == b' ' || c == b'\t');
    let n = t.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    let after = trim_start(&t[n..], |c| c == b' ' || c == b'\t');
    if n == 0 {
        return if after.is_empty() {
            Size::Skip
        } else {
            Size::Invalid
        };
    }
    match std::str::from_utf8(&t[..n])
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
    {
        Some(len) if len > i32::MAX as u64 => Size::Skip,
        Some(len) => Size::Chunk(len),
        None => Size::Invalid,
    }
}

/// The chunked body undone leniently (see the module documentation).
fn dechunk(b: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() && out.len() < max {
        let rest = &b[at..];
        let Some(lf) = memchr::memchr(b'\n', rest) else {
            // The last size line has no end: junk before any hex digit makes it body.
            let t = trim_start(rest, is_ctl);
            if t.first().is_some_and(|c| !c.is_ascii_hexdigit()) {
                out.extend_from_slice(rest);
            }
            break;
        };
        let line = &rest[..=lf];
        let len = match chunk_size(line) {
            Size::Skip => {
                at += lf + 1;
                continue;
            }
            Size::Invalid => {
                out.extend_from_slice(rest);
                break;
            }
            Size::Chunk(0) => break,
            Size::Chunk(len) => len,
        };
        at += lf + 1;
        let take = (b.len() - at).min(len.min(usize::MAX as u64) as usize);
        out.extend_from_slice(&b[at..at + take]);
        at += take;
        // The chunk's line end: anything up to the next LF.
        match memchr::memchr(b'\n', &b[at..]) {
            Some(i) => at += i + 1,
            None => break,
        }
    }
    out.truncate(max);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    fn body(raw: &[u8]) -> Vec<u8> {
        read(raw, false, 1 << 20).unwrap().body
    }

    #[test]
    fn chunk_sizes_with_junk_after_them() {
        let raw = b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\n\
            f,\r\nX5O!P%@AP[4\\PZX\r\nf,\r\n54(P^)7CC)7}$EI\r\nf,\r\nCAR-STANDARD-AN\r\n\
            f,\r\nTIVIRUS-TEST-FI\r\n8,\r\nLE!$H+H*\r\n0\r\n\r\n";
        assert_eq!(body(raw), EICAR);
        let raw = b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\nX5O!P\r\n\r\n3f\r\n%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n0\r\n\r\n";
        assert_eq!(body(raw), EICAR);
    }

    #[test]
    fn a_size_line_of_junk_makes_the_rest_body() {
        let raw = b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc";
        assert_eq!(body(raw), b"zz\r\nabc");
    }

    #[test]
    fn bare_cr_lines_and_folded_names() {
        let raw = b"HTTP/1.1 200 ok\rContent-type: a/b\rContent-length: 3\r\n\r\nabcdef";
        let r = read(raw, false, 100).unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.head.headers["content-type"], "a/b");
        let raw = b"HTTP/1.1 200 ok\r\nTransfer-Encoding\r\n \r\n :\r\n chunked\r\nX: y\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = read(raw, false, 100).unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.head.headers["x"], "y");
    }

    #[test]
    fn chunked_wins_over_content_length_and_http10() {
        let raw = b"HTTP/1.0 200 ok\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = read(raw, false, 100).unwrap();
        assert_eq!(r.head.version, http::Version::HTTP_10);
        assert_eq!(r.body, b"abc");
    }

    #[test]
    fn no_status_line_is_all_body() {
        let r = read(b"X5O!P and more\r\nrest", false, 100).unwrap();
        assert_eq!(r.head.version, http::Version::HTTP_09);
        assert_eq!(r.body, b"X5O!P and more\r\nrest");
        assert!(read(b"", false, 100).is_none());
    }

    #[test]
    fn bodies_are_capped_and_head_has_none() {
        let raw = b"HTTP/1.1 200 ok\r\nContent-Length: 10\r\n\r\n0123456789";
        assert_eq!(read(raw, false, 4).unwrap().body, b"0123");
        assert!(read(raw, true, 4).unwrap().body.is_empty());
        let raw = b"HTTP/1.1 204 No\r\n\r\nxyz";
        assert!(body(raw).is_empty());
        let raw = b"HTTP/1.1 200 x\r\nContent-Length: junk12\r\n\r\n0123456789abcdef";
        assert_eq!(body(raw), b"0123456789ab");
    }

    #[test]
    fn status_line_parts() {
        let r = read(b"HTTP/1.1 404 Not  Found\r\n\r\n", false, 10).unwrap();
        assert_eq!(r.head.status, 404);
        assert_eq!(r.head.reason.as_deref(), Some(&b"Not  Found"[..]));
        let r = read(b"http/1.1 99x\r\n\r\nbody", false, 10).unwrap();
        assert_eq!(r.head.status, 200);
        assert_eq!(r.body, b"body");
    }
}
