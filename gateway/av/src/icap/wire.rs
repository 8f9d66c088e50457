//! ICAP/1.0 on the wire (RFC 3507): request heads with their encapsulated HTTP message, response
//! heads, `Encapsulated` offsets, chunked bodies, and the threat names servers put in headers.
//! Every read is bounded.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::IcapError;

/// Most bytes an ICAP response head (status line and headers) may take.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most bytes the encapsulated HTTP headers of a response may take.
pub const MAX_HTTP_HEAD: usize = 64 * 1024;
/// Most bytes a chunk-size or trailer line may take.
const MAX_LINE: usize = 4096;

/// The HTTP message a body belongs to, as the ICAP server is shown it.
#[derive(Clone, Debug, Default)]
pub struct Message<'a> {
    /// The HTTP request method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request's host (`Host` header).
    pub host: &'a str,
    /// The request target, origin form (`/path?query`).
    pub target: &'a str,
    /// `Content-Type` of the body.
    pub content_type: Option<&'a str>,
    /// `Content-Encoding` of the body (the body is sent as the wire carried it).
    pub content_encoding: Option<&'a str>,
    /// A file name for `Content-Disposition`.
    pub file_name: Option<&'a str>,
}

/// A header value safe on one line: control characters dropped.
fn clean(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).collect()
}

/// A request target safe on a request line: bytes outside visible ASCII percent-encoded.
fn clean_target(t: &str) -> String {
    let mut out = String::with_capacity(t.len() + 1);
    if !t.starts_with('/') {
        out.push('/');
    }
    for b in t.bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn http_request_head(m: &Message<'_>, with_body: Option<usize>) -> String {
    let method = if m.method.bytes().all(|b| b.is_ascii_alphabetic()) && !m.method.is_empty() {
        m.method
    } else {
        "GET"
    };
    let mut h = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        clean_target(m.target),
        clean(m.host)
    );
    if let Some(len) = with_body {
        entity_headers(&mut h, m, len);
    }
    h.push_str("\r\n");
    h
}

fn entity_headers(h: &mut String, m: &Message<'_>, len: usize) {
    if let Some(ct) = m.content_type {
        h.push_str(&format!("Content-Type: {}\r\n", clean(ct)));
    }
    if let Some(ce) = m.content_encoding {
        h.push_str(&format!("Content-Encoding: {}\r\n", clean(ce)));
    }
    if let Some(n) = m.file_name {
        let n = clean(n).replace(['"', '\\'], "_");
        h.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{n}\"\r\n"
        ));
    }
    h.push_str(&format!("Content-Length: {len}\r\n"));
}

fn http_response_head(m: &Message<'_>, len: usize) -> String {
    let mut h = String::from("HTTP/1.1 200 OK\r\n");
    entity_headers(&mut h, m, len);
    h.push_str("\r\n");
    h
}

/// What the request head announces.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    /// `Allow: 204`.
    pub allow_204: bool,
    /// `Preview: n`, when a preview is sent.
    pub preview: Option<usize>,
}

/// The ICAP head and encapsulated HTTP headers of a `REQMOD` or `RESPMOD` carrying `body_len`
/// bytes; the body follows as chunks.
pub fn modify_head(
    method: super::IcapMethod,
    uri: &str,
    authority: &str,
    m: &Message<'_>,
    body_len: usize,
    offer: Offer,
) -> Vec<u8> {
    let (encapsulated, http) = match method {
        super::IcapMethod::Respmod => {
            let req = http_request_head(m, None);
            let res = http_response_head(m, body_len);
            (
                format!(
                    "req-hdr=0, res-hdr={}, res-body={}",
                    req.len(),
                    req.len() + res.len()
                ),
                req + &res,
            )
        }
        super::IcapMethod::Reqmod => {
            let req = http_request_head(m, Some(body_len));
            (format!("req-hdr=0, req-body={}", req.len()), req)
        }
    };
    let mut head = format!(
        "{} {uri} ICAP/1.0\r\nHost: {authority}\r\nUser-Agent: sekisho/{}\r\n",
        method.as_str(),
        env!("CARGO_PKG_VERSION")
    );
    if offer.allow_204 {
        head.push_str("Allow: 204\r\n");
    }
    if let Some(n) = offer.preview {
        head.push_str(&format!("Preview: {n}\r\n"));
    }
    head.push_str(&format!("Encapsulated: {encapsulated}\r\n\r\n"));
    head.push_str(&http);
    head.into_bytes()
}

/// An `OPTIONS` request.
pub fn options_head(uri: &str, authority: &str) -> Vec<u8> {
    format!(
        "OPTIONS {uri} ICAP/1.0\r\nHost: {authority}\r\nUser-Agent: sekisho/{}\r\nEncapsulated: null-body=0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The chunked body's end: `0; ieof` when the preview held the whole body.
pub fn last_chunk(ieof: bool) -> &'static [u8] {
    if ieof {
        b"0; ieof\r\n\r\n"
    } else {
        b"0\r\n\r\n"
    }
}

/// An ICAP response head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers in order; a folded header's lines joined by `\n`.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when the server will close the connection after this response.
    pub fn closes(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// Parses a head (status line, headers, the blank line included or not).
pub fn parse_head(raw: &[u8]) -> Result<Head, IcapError> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("ICAP/1.") {
        return Err(IcapError::Protocol(format!(
            "not an ICAP/1.x status line: {:?}",
            truncate(status_line)
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| {
            IcapError::Protocol(format!("bad status line: {:?}", truncate(status_line)))
        })?;
    let reason = parts.next().unwrap_or("").trim().to_string();
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => {
                    return Err(IcapError::Protocol(
                        "a folded line before any header".into(),
                    ))
                }
            }
            continue;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| IcapError::Protocol(format!("bad header line: {:?}", truncate(line))))?;
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Reads one head: lines up to and including the blank line, at most `max` bytes.
pub async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, IcapError> {
    let mut buf = Vec::new();
    let mut blank_lines = 0;
    loop {
        let start = buf.len();
        let n = (&mut *r)
            .take((max - start) as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Err(if buf.is_empty() {
                IcapError::Closed
            } else {
                IcapError::Protocol("the connection closed inside a head".into())
            });
        }
        if buf.len() > max {
            return Err(IcapError::Protocol(format!("a head over {max} bytes")));
        }
        let line = &buf[start..];
        if line == b"\r\n" || line == b"\n" {
            // A few blank lines before the status line are tolerated (a stray CRLF after a body).
            if start == 0 && blank_lines < 8 {
                blank_lines += 1;
                buf.clear();
                continue;
            }
            return Ok(buf);
        }
    }
}

/// The sections an `Encapsulated` header lists, with their offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encapsulated {
    /// Header sections (`req-hdr`, `res-hdr`) and where each starts.
    pub headers: Vec<(String, usize)>,
    /// The body section (`req-body`, `res-body`, `opt-body`, `null-body`) and its offset.
    pub body: Option<(String, usize)>,
}

impl Encapsulated {
    /// True when a chunked body follows the headers.
    pub fn has_body(&self) -> bool {
        self.body.as_ref().is_some_and(|(n, _)| n != "null-body")
    }
    /// Bytes of encapsulated headers before the body.
    pub fn header_bytes(&self) -> usize {
        self.body.as_ref().map_or(0, |(_, o)| *o)
    }
}

/// Parses `req-hdr=0, res-hdr=137, res-body=296`: offsets increasing, the body section last.
pub fn parse_encapsulated(v: &str) -> Result<Encapsulated, IcapError> {
    let bad = || IcapError::Protocol(format!("bad Encapsulated header: {:?}", truncate(v)));
    let mut e = Encapsulated::default();
    let mut last = 0usize;
    for (i, part) in v.split(',').enumerate() {
        let (name, off) = part.trim().split_once('=').ok_or_else(bad)?;
        let name = name.trim().to_ascii_lowercase();
        let off: usize = off.trim().parse().map_err(|_| bad())?;
        if e.body.is_some() || (i > 0 && off < last) || (i == 0 && off != 0) {
            return Err(bad());
        }
        last = off;
        match name.as_str() {
            "req-hdr" | "res-hdr" => e.headers.push((name, off)),
            "req-body" | "res-body" | "opt-body" | "null-body" => e.body = Some((name, off)),
            _ => return Err(bad()),
        }
    }
    if e.body.is_none() && !e.headers.is_empty() {
        return Err(bad());
    }
    Ok(e)
}

/// Reads a chunked body, keeping at most `keep` bytes and reading at most `max` in all.
/// Returns the kept bytes and the body's whole length; `None` when the body ran past `max`
/// (the connection must then be closed: the rest is unread).
pub async fn read_chunked<R: AsyncBufRead + Unpin>(
    r: &mut R,
    keep: usize,
    max: usize,
) -> Result<Option<(Vec<u8>, usize)>, IcapError> {
    let mut kept = Vec::new();
    let mut total = 0usize;
    loop {
        let line = read_line(r).await?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| IcapError::Protocol(format!("bad chunk size {:?}", truncate(&line))))?;
        if size == 0 {
            // Trailers, then the blank line.
            for _ in 0..64 {
                if read_line(r).await?.is_empty() {
                    return Ok(Some((kept, total)));
                }
            }
            return Err(IcapError::Protocol("too many trailer lines".into()));
        }
        total = total.saturating_add(size);
        if total > max {
            return Ok(None);
        }
        let room = keep.saturating_sub(kept.len()).min(size);
        let at = kept.len();
        kept.resize(at + room, 0);
        r.read_exact(&mut kept[at..]).await?;
        let mut rest = (size - room) as u64;
        while rest > 0 {
            let skipped =
                tokio::io::copy(&mut (&mut *r).take(rest), &mut tokio::io::sink()).await?;
            if skipped == 0 {
                return Err(IcapError::Closed);
            }
            rest -= skipped;
        }
        if !read_line(r).await?.is_empty() {
            return Err(IcapError::Protocol(
                "chunk data longer than its size".into(),
            ));
        }
    }
}

async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<String, IcapError> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(IcapError::Protocol(
            "the connection closed or a line ran over 4096 bytes inside a chunked body".into(),
        ));
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

/// The threat a response names, from the headers AV servers use: `X-Infection-Found`
/// (`Type=0; Resolution=2; Threat=Name;`), `X-Violations-Found` (a count, then per violation
/// the file name, threat name, id and disposition on folded lines), `X-Virus-ID`,
/// `X-Virus-Name`.
pub fn threat(head: &Head) -> Option<String> {
    // A name fit for an event: no control characters, at most 200 characters.
    let named = |v: &str| {
        let v = v.trim();
        (!v.is_empty() && v != "-" && !v.eq_ignore_ascii_case("no threats")).then(|| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect::<String>()
        })
    };
    if let Some(v) = head.get("x-infection-found") {
        let t = v.split(';').find_map(|p| {
            let (k, val) = p.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case("threat").then(|| val.trim())
        });
        if let Some(t) = t.and_then(named) {
            return Some(t);
        }
    }
    if let Some(v) = head.get("x-violations-found") {
        let mut lines = v.split('\n');
        let count: usize = lines
            .next()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0);
        if count > 0 {
            if let Some(t) = lines.nth(1).and_then(named) {
                return Some(t);
            }
        }
    }
    for h in ["x-virus-id", "x-virus-name"] {
        if let Some(t) = head.get(h).and_then(named) {
            return Some(t);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::icap::IcapMethod;

    #[test]
    fn respmod_offsets_point_at_each_section() {
        let m = Message {
            method: "GET",
            host: "files.example",
            target: "/a b.exe",
            content_type: Some("application/octet-stream"),
            file_name: Some("a\r\nb\".exe"),
            ..Message::default()
        };
        let offer = Offer {
            allow_204: true,
            preview: Some(4),
        };
        let head = modify_head(
            IcapMethod::Respmod,
            "icap://h:1344/av",
            "h:1344",
            &m,
            10,
            offer,
        );
        let text = String::from_utf8(head).unwrap();
        let (icap, http) = text.split_once("\r\n\r\n").unwrap();
        assert!(icap.starts_with("RESPMOD icap://h:1344/av ICAP/1.0\r\nHost: h:1344\r\n"));
        assert!(icap.contains("\r\nAllow: 204\r\nPreview: 4\r\n"));
        let e = parse_encapsulated(icap.rsplit_once("Encapsulated: ").unwrap().1).unwrap();
        let res_at = e.headers[1].1;
        assert!(http[..res_at].starts_with("GET /a%20b.exe HTTP/1.1\r\nHost: files.example\r\n"));
        assert!(http[..res_at].ends_with("\r\n\r\n"));
        assert!(http[res_at..].starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(http[res_at..].contains("filename=\"ab_.exe\""));
        assert!(http[res_at..].contains("Content-Length: 10\r\n"));
        assert_eq!(e.header_bytes(), http.len());
    }

    #[test]
    fn reqmod_carries_the_request_body() {
        let m = Message {
            method: "PUT",
            host: "h",
            target: "/up",
            ..Message::default()
        };
        let offer = Offer {
            allow_204: false,
            preview: None,
        };
        let head = modify_head(IcapMethod::Reqmod, "icap://h:1/s", "h:1", &m, 3, offer);
        let text = String::from_utf8(head).unwrap();
        assert!(!text.contains("Allow:") && !text.contains("Preview:"));
        let (_, http) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("Encapsulated: req-hdr=0, req-body={}", http.len())));
        assert!(http.starts_with("PUT /up HTTP/1.1\r\n") && http.contains("Content-Length: 3"));
    }

    #[test]
    fn heads_and_threat_headers() {
        let raw = b"ICAP/1.0 200 OK\r\nServer: C-ICAP/0.5.10\r\nConnection: keep-alive\r\n\
            X-Infection-Found: Type=0; Resolution=2; Threat=Eicar-Test-Signature;\r\n\
            X-Violations-Found: 1\r\n\t-\r\n\tEicar-Test-Signature\r\n\t0\r\n\t0\r\n\
            Encapsulated: res-hdr=0, res-body=161\r\n\r\n";
        let h = parse_head(raw).unwrap();
        assert_eq!((h.status, h.reason.as_str()), (200, "OK"));
        assert!(!h.closes());
        assert_eq!(threat(&h).as_deref(), Some("Eicar-Test-Signature"));
        let v = parse_head(b"ICAP/1.0 200 OK\r\nX-Violations-Found: 1\r\n\tf.exe\r\n\tW32.Bad\r\n\t7\r\n\t2\r\n\r\n")
            .unwrap();
        assert_eq!(threat(&v).as_deref(), Some("W32.Bad"));
        let id =
            parse_head(b"ICAP/1.0 200 OK\r\nX-Virus-ID: Troj/Foo-A\r\nConnection: close\r\n\r\n")
                .unwrap();
        assert_eq!(threat(&id).as_deref(), Some("Troj/Foo-A"));
        assert!(id.closes());
        let odd = parse_head(b"ICAP/1.0 200 OK\r\nX-Virus-ID: Bad\x1b[31mName\r\n\r\n").unwrap();
        assert_eq!(threat(&odd).as_deref(), Some("Bad[31mName"));
        let none = parse_head(b"ICAP/1.0 204 No Content\r\nX-Virus-ID: -\r\n\r\n").unwrap();
        assert_eq!(threat(&none), None);
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"ICAP/1.0 abc\r\n\r\n",
            b"ICAP/1.0 200 OK\r\nno colon\r\n\r\n",
            b"ICAP/1.0 200 OK\r\n folded\r\n\r\n",
        ] {
            assert!(parse_head(bad).is_err());
        }
    }

    #[test]
    fn encapsulated_rules() {
        let e = parse_encapsulated("req-hdr=0, res-hdr=45, res-body=100").unwrap();
        assert!(e.has_body() && e.header_bytes() == 100);
        let n = parse_encapsulated("null-body=0").unwrap();
        assert!(!n.has_body() && n.header_bytes() == 0);
        for bad in [
            "res-hdr=5, res-body=9",
            "res-body=0, res-hdr=4",
            "res-hdr=0, res-body=x",
            "res-hdr=0",
            "foo=0",
            "req-hdr=0, res-hdr=9, res-body=3",
        ] {
            assert!(parse_encapsulated(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn chunked_bodies_are_bounded() {
        let body = b"5\r\nhello\r\n6; x=y\r\n world\r\n0\r\n\r\nNEXT";
        let mut r = &body[..];
        let (kept, total) = read_chunked(&mut r, 7, 100).await.unwrap().unwrap();
        assert_eq!((kept.as_slice(), total), (&b"hello w"[..], 11));
        assert_eq!(r, b"NEXT");
        let mut r = &body[..];
        assert!(read_chunked(&mut r, 100, 8).await.unwrap().is_none());
        for bad in [
            &b"zz\r\n"[..],
            b"5\r\nhel",
            b"3\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffffffff\r\n",
        ] {
            let mut r = bad;
            assert!(
                read_chunked(&mut r, 10, 100).await.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut heads = &b"\r\nICAP/1.0 204 No Content\r\n\r\nrest"[..];
        let h = read_head(&mut heads, 100).await.unwrap();
        assert_eq!(h, b"ICAP/1.0 204 No Content\r\n\r\n");
        let mut long = &[b'a'; 300][..];
        assert!(read_head(&mut long, 100).await.is_err());
    }

    proptest::proptest! {
        /// Whatever a server sends, the readers return or refuse without panicking, and never
        /// keep or count more than they were allowed. (A proptest rather than a cargo-fuzz
        /// target: the fuzz crate would have to build YARA-X to reach this module.)
        #[test]
        fn any_bytes_are_read_within_bounds(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                                            keep in 0usize..64, max in 0usize..256) {
            let _ = parse_head(&raw);
            let _ = parse_encapsulated(&String::from_utf8_lossy(&raw));
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let mut r = &raw[..];
                if let Ok(Some((kept, total))) = read_chunked(&mut r, keep, max).await {
                    proptest::prop_assert!(kept.len() <= keep && total <= max);
                }
                let mut r = &raw[..];
                if let Ok(h) = read_head(&mut r, 100).await {
                    proptest::prop_assert!(h.len() <= 100);
                }
                Ok(())
            })?;
        }

        /// A head built from structured parts parses back to the same status and headers.
        #[test]
        fn heads_round_trip(status in 100u16..600, names in proptest::collection::vec("[A-Za-z][A-Za-z0-9-]{0,12}", 0..8),
                            value in "[ -~]{0,40}") {
            let mut raw = format!("ICAP/1.0 {status} Reason\r\n");
            for n in &names {
                raw.push_str(&format!("{n}: {value}\r\n"));
            }
            raw.push_str("\r\n");
            let h = parse_head(raw.as_bytes()).unwrap();
            proptest::prop_assert_eq!(h.status, status);
            proptest::prop_assert_eq!(h.headers.len(), names.len());
            for (n, v) in &h.headers {
                proptest::prop_assert!(names.contains(n));
                proptest::prop_assert_eq!(v, value.trim());
            }
        }
    }
}
