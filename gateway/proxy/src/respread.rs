//! Upstream responses hyper refuses (a malformed head, chunk sizes with junk after them, blank
//! lines before a chunk size, chunked on HTTP/1.0, bare-CR line ends …), read from their raw
//! bytes the way libhtp-rs (Suricata's HTTP parser) reads them, so the stages judge what a
//! lenient browser would have taken from them.
//!
//! The client never gets these bytes (hyper's refusal stands: a 502 or a cut body); reading
//! them is for the IPS, which must alert where Suricata alerts. The rules followed are
//! libhtp-rs's: the status line is any line that starts with `http` (case aside), else the
//! whole response is a body; header fields follow libhtp's grammar ([`crate::respheaders`]); a
//! `Transfer-Encoding` that names `chunked` wins over `Content-Length`; a chunk-size line is
//! control characters, hex digits and anything after them (an extension, junk), a line of
//! only control characters is skipped, and a size line that starts with anything else turns
//! the rest into a body read to the end of the stream.

use bytes::Bytes;
use sekisho_core::ResponseHead;

/// Header fields read at most (libhtp's `headers-limit`).
const MAX_FIELDS: usize = 1024;

/// A response read leniently: its head and its body with the transfer coding undone (the
/// content coding, if any, is left to the stages, as for any response).
#[derive(Debug)]
pub struct Lenient {
    /// The head (status 200 and HTTP/0.9 when there was no status line).
    pub head: ResponseHead,
    /// The body, at most the `max_body` bytes asked for.
    pub body: Vec<u8>,
    /// Whether the message's end was seen (its length read, its last chunk, or no body); a
    /// body that runs to the end of the stream is never complete.
    pub complete: bool,
}

/// Reads `raw`, the bytes the upstream sent in answer to one request (`head_request`: it was
/// a HEAD, so no body). `None` when there is nothing to read.
pub fn read(raw: &[u8], head_request: bool, max_body: usize) -> Option<Lenient> {
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
                complete: false,
            });
        }
        break (line, at, at + next);
    };
    let mut head = status_line(line);
    let (fields, body_at) = crate::respheaders::fields(&raw[rest..], MAX_FIELDS);
    for (name, value) in fields {
        if name.is_empty() {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(&without_nul(&name)),
            http::HeaderValue::from_bytes(&value_bytes(&value)),
        ) {
            head.headers.append(n, v);
        }
    }
    let body_raw = &raw[rest + body_at..];
    let (body, complete) = body_of(&head, body_raw, head_request, max_body);
    head.raw = Some(Bytes::copy_from_slice(&raw[start..rest + body_at]));
    Some(Lenient {
        head,
        body,
        complete,
    })
}

/// libhtp matches header names and the values it reads (`chunked`, codings) ignoring NULs.
fn without_nul(b: &[u8]) -> Vec<u8> {
    b.iter().copied().filter(|&c| c != 0).collect()
}

/// A value a header map can hold: NULs dropped, other control bytes made spaces.
fn value_bytes(b: &[u8]) -> Vec<u8> {
    b.iter()
        .filter(|&&c| c != 0)
        .map(|&c| {
            if c < 0x20 && c != b'\t' || c == 0x7f {
                b' '
            } else {
                c
            }
        })
        .collect()
}

fn bare_head() -> ResponseHead {
    ResponseHead {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_09,
        headers: http::HeaderMap::new(),
        reason: None,
        raw: None,
        wire: None,
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

/// Protocol, status and message, split on whitespace as libhtp does; an invalid status is
/// read as 200 (the stages still see the body), an unknown protocol as HTTP/1.1.
fn status_line(line: &[u8]) -> ResponseHead {
    // libhtp: spaces or NULs, protocol, spaces, status, whitespace, message.
    let run = |from: usize, f: &dyn Fn(u8) -> bool| {
        from + line[from..].iter().take_while(|&&c| f(c)).count()
    };
    let p0 = run(0, &|c| is_space(c) || c == 0);
    let p1 = run(p0, &|c| !is_space(c));
    let s0 = run(p1, &is_space);
    let s1 = run(s0, &|c| !is_space(c));
    let m0 = run(s1, &is_space);
    let proto = &line[p0..p1];
    let code = &line[s0..s1];
    let version = match proto.get(5..) {
        Some(b"1.0") => http::Version::HTTP_10,
        Some(b"0.9") => http::Version::HTTP_09,
        _ => http::Version::HTTP_11,
    };
    let status = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (100..=999).contains(c))
        .and_then(|c| http::StatusCode::from_u16(c).ok())
        .unwrap_or(http::StatusCode::OK);
    let message = &line[m0..];
    ResponseHead {
        status,
        version,
        headers: http::HeaderMap::new(),
        reason: Some(Bytes::copy_from_slice(message)),
        raw: None,
        wire: None,
    }
}

/// How the body is framed, as libhtp decides it.
fn body_of(head: &ResponseHead, b: &[u8], head_request: bool, max: usize) -> (Vec<u8>, bool) {
    let status = head.status.as_u16();
    let te = joined(&head.headers, "transfer-encoding");
    let cl = head.headers.get(http::header::CONTENT_LENGTH);
    if head_request {
        return (Vec::new(), true);
    }
    if (status < 200 || status == 204 || status == 304) && te.is_none() && cl.is_none() {
        return (Vec::new(), true);
    }
    let (mut body, end) = if te.is_some_and(|t| contains_nocase(&t, b"chunked")) {
        let (body, end) = dechunk(b, max);
        // Trailer fields after the last chunk.
        let end = end.map(|e| e + crate::respheaders::fields(&b[e..], MAX_FIELDS).1);
        (body, end)
    } else {
        match cl.map(|v| content_length(v.as_bytes())) {
            Some(Some(n)) => match usize::try_from(n) {
                Ok(n) if n <= b.len() => (cap(&b[..n], max), Some(n)),
                _ => (cap(b, max), None),
            },
            Some(None) => return (Vec::new(), true),
            None => (cap(b, max), None),
        }
    };
    if let Some(end) = end {
        trailing_body(&b[end..], &mut body);
    }
    body.truncate(max);
    (body, end.is_some())
}

/// libhtp's finalize step: lines after the message that do not start a response (`http`)
/// are more body.
fn trailing_body(mut b: &[u8], body: &mut Vec<u8>) {
    while !b.is_empty() {
        let n = memchr::memchr(b'\n', b).map_or(b.len(), |i| i + 1);
        if looks_like_status(&b[..n]) {
            return;
        }
        body.extend_from_slice(&b[..n]);
        b = &b[n..];
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

/// Whether `needle` occurs in `hay`, ASCII case aside.
pub(crate) fn contains_nocase(hay: &[u8], needle: &[u8]) -> bool {
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

/// The chunked body undone leniently (see the module documentation), and where the last
/// chunk's size line ended (`None`: the stream ended first, or the rest became body).
fn dechunk(b: &[u8], max: usize) -> (Vec<u8>, Option<usize>) {
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
            Size::Chunk(0) => {
                out.truncate(max);
                return (out, Some(at + lf + 1));
            }
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
    (out, None)
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
        let raw = b"HTTP/1.1 200 ok\rContent-type: a/b\rContent-length: 3\r\n\r\nabcHTTP/1.1";
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
        let raw = b"HTTP/1.1 200 x\r\nContent-Length: junk12\r\n\r\n0123456789abHTTP/1.1 200";
        assert_eq!(body(raw), b"0123456789ab");
    }

    #[test]
    fn nul_bytes_in_names_and_values_are_ignored() {
        let raw = b"HTTP/1.1 200 ok\r\nTransfer\0-Encoding: chu\0nked\r\nContent-Encoding: \x7fgzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let r = read(raw, false, 100).unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.head.headers["content-encoding"], " gzip");
    }

    #[test]
    fn lines_after_the_message_that_start_no_response_are_body() {
        let raw = b"HTTP/1.1 200 ok\r\nContent-length: 3\r\n 6\r\n\r\nabcdef\r\nghi";
        assert_eq!(body(raw), b"abcdef\r\nghi");
        let raw = b"HTTP/1.1 200 ok\r\nContent-length: 3\r\n\r\nabcHTTP/1.1 200 ok\r\n\r\n";
        assert_eq!(body(raw), b"abc");
        let raw = b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nxyz";
        assert_eq!(body(raw), b"abcxyz");
    }

    #[test]
    fn completeness_follows_the_framing() {
        let done = |raw: &[u8]| read(raw, false, 100).unwrap().complete;
        assert!(done(b"HTTP/1.1 200 ok\r\nContent-Length: 2\r\n\r\nab"));
        assert!(!done(b"HTTP/1.1 200 ok\r\nContent-Length: 3\r\n\r\nab"));
        assert!(done(
            b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
        ));
        assert!(!done(
            b"HTTP/1.1 200 ok\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"
        ));
        assert!(!done(b"HTTP/1.1 200 ok\r\n\r\nto the end"));
        assert!(done(b"HTTP/1.1 204 ok\r\n\r\n"));
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
