//! The buffers of one transaction (and of the TLS session it runs in), built from what the proxy
//! hands to the stage.

use bytes::Bytes;

use sekisho_core::{Direction, RequestHead, ResponseHead};

use crate::rule::Buf;
use crate::ruleset::Buffers;

/// Number of buffer kinds (`Buf` is a fieldless enum; `DnsQuery` is its last variant).
const NBUF: usize = Buf::DnsQuery as usize + 1;

/// Buffers by (buffer, side). Buffers are reference-counted (`Bytes`): the body buffers of a
/// side (`http.request_body`, `file.data` …) and the head buffers that repeat each other
/// (`http.start` / `pkt_data`) share one copy.
#[derive(Debug)]
pub struct Tx {
    bufs: [[Option<Bytes>; 2]; NBUF],
    certs: Vec<Vec<u8>>,
    /// The server certificate's Subject Alternative Names (`tls.subjectaltname`).
    sans: Vec<Vec<u8>>,
    /// The server certificate's notBefore and notAfter (Unix times; 0 when unreadable).
    cert_dates: Option<(i64, i64)>,
    /// The ALPN protocols the client offers (`tls.alpn`).
    alpns: Vec<Vec<u8>>,
    /// `http.request_header` / `http.response_header`: `Name: value` per header, split from
    /// `http.header` when a rule first asks.
    header_lines: [std::cell::OnceCell<Vec<Vec<u8>>>; 2],
    /// `file.magic` by side, worked out (by libmagic) when a rule first asks.
    magic: [std::cell::OnceCell<Option<Vec<u8>>>; 2],
    /// Whether the request body is an upload (a non-multipart POST or PUT).
    upload: bool,
    /// The response's `Content-Disposition` filename, when it has one.
    disposition: Option<Vec<u8>>,
    start: [Bytes; 2],
    body: [Vec<u8>; 2],
    truncated: [bool; 2],
    /// Content-Encoding of the request and of the response (lower-cased), for decoding bodies.
    encoding: [Vec<crate::codings::Coding>; 2],
    /// Content-Encoding layers decoded at most (`[ips] decompress_layer_limit`).
    layer_limit: usize,
    /// libhtp's second URI decoding passes (`[ips] double_decode_path` / `_query`).
    uri_decoding: crate::uri::Decoding,
    /// A multipart request's boundary, and the files its parts carry (name, content): one
    /// `file.data` / `file.name` instance each.
    boundary: Option<Vec<u8>>,
    parts: Vec<(Bytes, Bytes)>,
    /// HTTP anomaly events raised on the transaction.
    events: crate::events::Events,
    /// What the proxy notes on each side's body framing as it reads it.
    wire: [Option<std::sync::Arc<sekisho_core::WireNotes>>; 2],
    /// The WebSocket frame inspected (a frame's transaction), by the side that sent it.
    ws: [Option<crate::ruleset::WsHead>; 2],
}

impl Default for Tx {
    fn default() -> Self {
        Tx {
            bufs: std::array::from_fn(|_| [None, None]),
            certs: Vec::new(),
            sans: Vec::new(),
            cert_dates: None,
            alpns: Vec::new(),
            header_lines: Default::default(),
            magic: Default::default(),
            upload: false,
            disposition: None,
            start: Default::default(),
            body: Default::default(),
            truncated: [false; 2],
            encoding: [Vec::new(), Vec::new()],
            layer_limit: crate::events::LAYER_LIMIT,
            uri_decoding: crate::uri::Decoding::default(),
            boundary: None,
            parts: Vec::new(),
            events: crate::events::Events::default(),
            wire: [None, None],
            ws: [None, None],
        }
    }
}

impl Buffers for Tx {
    fn events(&self) -> crate::events::Events {
        self.events
    }
    fn get(&self, buf: Buf, side: Direction) -> Option<&[u8]> {
        match buf {
            Buf::TlsCerts => self.certs.first().map(Vec::as_slice),
            Buf::TlsSubjectAltName => self.sans.first().map(Vec::as_slice),
            Buf::TlsAlpn if side == Direction::Request => self.alpns.first().map(Vec::as_slice),
            Buf::TlsAlpn => None,
            Buf::RequestHeader | Buf::ResponseHeader => {
                self.header_lines(side).first().map(Vec::as_slice)
            }
            Buf::FileMagic => self.file_magic(side),
            _ => self.bufs[buf as usize][side.index()].as_deref(),
        }
    }
    fn all(&self, buf: Buf, side: Direction) -> Vec<&[u8]> {
        match buf {
            Buf::FileData if side == Direction::Request && !self.parts.is_empty() => {
                self.parts.iter().map(|(_, d)| &d[..]).collect()
            }
            Buf::FileName if side == Direction::Request && !self.parts.is_empty() => {
                self.parts.iter().map(|(n, _)| &n[..]).collect()
            }
            Buf::TlsCerts => self.certs.iter().map(Vec::as_slice).collect(),
            Buf::TlsSubjectAltName => self.sans.iter().map(Vec::as_slice).collect(),
            Buf::TlsAlpn if side == Direction::Request => {
                self.alpns.iter().map(Vec::as_slice).collect()
            }
            Buf::TlsAlpn => Vec::new(),
            Buf::RequestHeader | Buf::ResponseHeader => {
                self.header_lines(side).iter().map(Vec::as_slice).collect()
            }
            _ => self.get(buf, side).into_iter().collect(),
        }
    }
    fn body_is_raw(&self, side: Direction) -> bool {
        if side == Direction::Request && !self.parts.is_empty() {
            return false;
        }
        self.encoding[side.index()].is_empty()
    }
    fn body_is_empty(&self, side: Direction) -> bool {
        self.body[side.index()].is_empty()
    }
    fn body_truncated(&self, side: Direction) -> bool {
        self.truncated[side.index()]
    }
    fn cert_chain_len(&self) -> Option<usize> {
        (!self.certs.is_empty()).then_some(self.certs.len())
    }
    fn cert_dates(&self) -> Option<(i64, i64)> {
        self.cert_dates
    }
    fn websocket(&self, side: Direction) -> Option<crate::ruleset::WsHead> {
        self.ws[side.index()]
    }
}

/// The single-header buffers: (buffer, header name). `Cookie` is `cookie` or `set-cookie` by
/// side (see [`Tx::headers`]).
const NAMED: [(Buf, &str); 11] = [
    (Buf::ContentType, "content-type"),
    (Buf::ContentLen, "content-length"),
    (Buf::Connection, "connection"),
    (Buf::Cookie, "cookie"),
    (Buf::UserAgent, "user-agent"),
    (Buf::Accept, "accept"),
    (Buf::AcceptEnc, "accept-encoding"),
    (Buf::AcceptLang, "accept-language"),
    (Buf::Referer, "referer"),
    (Buf::Server, "server"),
    (Buf::Location, "location"),
];

/// `content-type` → `Content-Type` (the HTTP/1 wire case most clients send; hyper lower-cases
/// names, so the original case is not available).
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut up = true;
    for c in name.chars() {
        out.push(if up { c.to_ascii_uppercase() } else { c });
        up = c == '-';
    }
    out
}

/// Title-cases an ASCII header name in place (`content-type` → `Content-Type`).
fn title_case_in_place(name: &mut [u8]) {
    let mut up = true;
    for c in name {
        if up {
            c.make_ascii_uppercase();
        }
        up = *c == b'-';
    }
}

/// The request line of the raw head and its target, when the raw head is this request's
/// (same method).
fn sent_request_line(head: &RequestHead) -> Option<(&[u8], &[u8])> {
    let raw = head.raw.as_deref()?;
    let end = memchr::memchr(b'\n', raw)?;
    let line = raw[..end].strip_suffix(b"\r").unwrap_or(&raw[..end]);
    let sp = memchr::memchr(b' ', line)?;
    if &line[..sp] != head.method.as_str().as_bytes() {
        return None;
    }
    let rest = &line[sp + 1..];
    let last = memchr::memrchr(b' ', rest)?;
    let target = rest[..last].trim_ascii();
    (!target.is_empty()).then_some((line, target))
}

/// The path and query of a request target as sent: the target itself in origin form, the
/// part from the first `/` after the authority in absolute form (a proxy request).
fn origin_form(target: &[u8]) -> Option<&[u8]> {
    if target.starts_with(b"/") {
        return Some(target);
    }
    let after = memchr::memmem::find(target, b"://")? + 3;
    let path = memchr::memchr(b'/', &target[after..]).map(|p| &target[after + p..]);
    path.filter(|p| !p.is_empty())
}

impl Tx {
    /// The `Name: value` instances of `side`'s headers, split from `http.header` on first use.
    /// The file's libmagic description, when the side's body is a file (it has a name).
    fn file_magic(&self, side: Direction) -> Option<&[u8]> {
        self.magic[side.index()]
            .get_or_init(|| {
                self.bufs[Buf::FileName as usize][side.index()].as_ref()?;
                let data = self.bufs[Buf::FileData as usize][side.index()].as_deref()?;
                crate::magic::describe(data).map(String::into_bytes)
            })
            .as_deref()
    }

    fn header_lines(&self, side: Direction) -> &[Vec<u8>] {
        self.header_lines[side.index()].get_or_init(|| {
            let mut lines = Vec::new();
            let block = self.bufs[Buf::Header as usize][side.index()].as_deref();
            for line in block.unwrap_or_default().split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(c) = memchr::memchr(b':', line) {
                    header_line(&mut lines, &line[..c], &line[c + 1..]);
                }
            }
            lines
        })
    }
}

/// Most instances of `http.request_header` / `http.response_header` (libhtp keeps 64
/// repeats of one name; this bounds the whole list).
const MAX_HEADER_LINES: usize = 256;

/// Adds `name: value` to the per-header instances as libhtp keeps them: name and value
/// trimmed, a repeated name (any case) appended to the first one's value after `, `.
fn header_line(lines: &mut Vec<Vec<u8>>, name: &[u8], value: &[u8]) {
    let (name, value) = (name.trim_ascii(), value.trim_ascii());
    let same = |l: &Vec<u8>| {
        l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name) && l[name.len()] == b':'
    };
    if let Some(l) = lines.iter_mut().find(|l| same(l)) {
        l.extend_from_slice(b", ");
        l.extend_from_slice(value);
        return;
    }
    if lines.len() < MAX_HEADER_LINES {
        let mut l = Vec::with_capacity(name.len() + value.len() + 2);
        l.extend_from_slice(name);
        l.extend_from_slice(b": ");
        l.extend_from_slice(value);
        lines.push(l);
    }
}

/// `http.host` as libhtp fills it from what the client sent (`target`, the request target as
/// sent, when the raw head is kept): the hostname of an absolute target, else of the `Host`
/// header (`host_raw`), without userinfo or port, lowercased, trailing dots dropped. Inside a
/// CONNECT tunnel the header is the client's word, not the tunnel's target the proxy routes on
/// (that target is the CONNECT's own transaction); the proxy's host stands in when the request
/// names none.
/// A certificate's Subject Alternative Names as Suricata writes them
/// (`rust/src/x509/mod.rs`): DNS names and URIs as they are, addresses as a list of their
/// bytes (`[192, 0, 2, 1]`), others as x509-parser prints them.
fn subject_alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<Vec<u8>> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::URI(s) => s.as_bytes().to_vec(),
            GeneralName::IPAddress(ip) => format!("{ip:?}").into_bytes(),
            other => other.to_string().into_bytes(),
        })
        .collect()
}

fn hostname(head: &RequestHead, target: Option<&[u8]>, host_raw: &[u8]) -> Bytes {
    fn absolute(t: &[u8]) -> Option<&[u8]> {
        let at = memchr::memmem::find(t, b"://")? + 3;
        let rest = &t[at..];
        let end = rest
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        Some(host_of(&rest[..end]))
    }
    let name: &[u8] = match target {
        _ if head.method == http::Method::CONNECT => head.host.as_bytes(),
        Some(t) => absolute(t).unwrap_or_else(|| host_of(host_raw.trim_ascii())),
        None => match head.uri.host() {
            Some(h) => h.as_bytes(),
            None => host_of(host_raw.trim_ascii()),
        },
    };
    let mut name = name.to_ascii_lowercase();
    while name.last() == Some(&b'.') {
        name.pop();
    }
    if name.is_empty() {
        return Bytes::from(head.host.clone());
    }
    Bytes::from(name)
}

/// The host part of an authority: no userinfo, no port (an IPv6 literal keeps its brackets).
fn host_of(v: &[u8]) -> &[u8] {
    let v = match memchr::memrchr(b'@', v) {
        Some(at) => &v[at + 1..],
        None => v,
    };
    let end = if v.first() == Some(&b'[') {
        memchr::memchr(b']', v).map_or(v.len(), |i| i + 1)
    } else {
        memchr::memchr(b':', v).unwrap_or(v.len())
    };
    &v[..end]
}

fn version_str(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

impl Tx {
    /// A fresh transaction.
    pub fn new() -> Self {
        Tx::default()
    }

    /// Decodes at most `n` Content-Encoding layers (libhtp's
    /// `response-body-decompress-layer-limit`, 2 by default); more raise
    /// `too_many_encoding_layers`.
    pub fn set_layer_limit(&mut self, n: usize) {
        self.layer_limit = n;
    }

    /// Decodes the normalised URI's path and query a second time (libhtp's
    /// `double-decode-path` / `double-decode-query`); what that decodes raises
    /// `double_encoded_uri`.
    pub fn set_uri_decoding(&mut self, d: crate::uri::Decoding) {
        self.uri_decoding = d;
    }

    fn set(&mut self, buf: Buf, side: Direction, v: impl Into<Bytes>) {
        self.bufs[buf as usize][side.index()] = Some(v.into());
    }

    /// Header buffers from `(name, value)` pairs in wire order: the raw head's when the
    /// listener kept it, else the parsed map's (names title-cased: hyper lower-cases them).
    fn headers(&mut self, side: Direction, h: &http::HeaderMap, raw: Option<&[u8]>, cookie: &str) {
        let mut block = Vec::with_capacity(512);
        let mut names = Vec::with_capacity(128);
        names.extend_from_slice(b"\r\n");
        let mut per: [Option<Vec<u8>>; NAMED.len()] = Default::default();
        let mut add = |name: &[u8], value: &[u8], titled: bool| {
            let at = block.len();
            block.extend_from_slice(name);
            if titled {
                title_case_in_place(&mut block[at..]);
            }
            names.extend_from_slice(&block[at..]);
            names.extend_from_slice(b"\r\n");
            block.extend_from_slice(b": ");
            block.extend_from_slice(value);
            block.extend_from_slice(b"\r\n");
            let wanted = NAMED.iter().position(|(b, n)| {
                let n = if *b == Buf::Cookie { cookie } else { n };
                name.eq_ignore_ascii_case(n.as_bytes())
            });
            if let Some(k) = wanted {
                let e = per[k].get_or_insert_with(Vec::new);
                if !e.is_empty() {
                    e.extend_from_slice(b", ");
                }
                e.extend_from_slice(value);
            }
        };
        let mut from_raw = false;
        if let Some(raw) = raw {
            let mut hs = [httparse::EMPTY_HEADER; 128];
            let fields = memchr::memchr(b'\n', raw).map_or(&raw[..0], |i| &raw[i + 1..]);
            if let Ok(httparse::Status::Complete((_, hs))) =
                httparse::parse_headers(fields, &mut hs)
            {
                for x in hs.iter() {
                    add(x.name.as_bytes(), x.value, false);
                }
                from_raw = true;
            }
        }
        if !from_raw {
            for (n, v) in h {
                add(n.as_str().as_bytes(), v.as_bytes(), true);
            }
        }
        names.extend_from_slice(b"\r\n");
        let i = side.index();
        let mut start = Vec::with_capacity(self.start[i].len() + block.len() + 2);
        match raw.filter(|_| from_raw) {
            Some(r) => start.extend_from_slice(r),
            None => {
                start.extend_from_slice(&self.start[i]);
                start.extend_from_slice(&block);
                start.extend_from_slice(b"\r\n");
            }
        }
        block.extend_from_slice(b"\r\n");
        let header = Bytes::from(block);
        // `.raw`: the header lines exactly as received (folding, spacing), when kept.
        let raw_block = raw
            .filter(|_| from_raw)
            .and_then(|r| Some(Bytes::copy_from_slice(&r[memchr::memchr(b'\n', r)? + 1..])));
        self.set(
            Buf::HeaderRaw,
            side,
            raw_block.unwrap_or_else(|| header.clone()),
        );
        self.set(Buf::Header, side, header);
        self.set(Buf::HeaderNames, side, names);
        for (k, v) in per.into_iter().enumerate() {
            if let Some(v) = v {
                self.set(NAMED[k].0, side, v);
            }
        }
        let start = Bytes::from(start);
        self.start[i] = start.clone();
        self.set(Buf::Start, side, start.clone());
        self.set(Buf::Stream, side, start);
    }

    /// Request line and headers.
    pub fn request_head(&mut self, head: &RequestHead) {
        let side = Direction::Request;
        let sent = sent_request_line(head);
        let raw_uri = if head.method == http::Method::CONNECT {
            head.uri.to_string()
        } else if let Some(target) = sent.and_then(|(_, t)| origin_form(t)) {
            // The target as the client sent it (the listener may have percent-encoded bytes
            // hyper refuses): Suricata's `http.uri.raw`.
            String::from_utf8_lossy(target).into_owned()
        } else {
            head.path_and_query().to_string()
        };
        // libhtp's normalised URI (absent when nothing is left of it), from the target as
        // sent when the raw head has it (an absolute form included).
        let target = match sent {
            Some((_, target)) if head.method != http::Method::CONNECT => target,
            _ => raw_uri.as_bytes(),
        };
        let (normalized, double) = crate::uri::normalized_with(target, self.uri_decoding);
        if double {
            self.events.raise("double_encoded_uri");
        }
        self.set(
            Buf::Method,
            side,
            Bytes::copy_from_slice(head.method.as_str().as_bytes()),
        );
        self.set(Buf::UriRaw, side, raw_uri.clone());
        if let Some(n) = normalized {
            self.set(Buf::Uri, side, n);
        }
        let host_raw = head
            .headers
            .get(http::header::HOST)
            .map(|v| Bytes::copy_from_slice(v.as_bytes()))
            .or_else(|| {
                head.uri
                    .authority()
                    .map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()))
            })
            .unwrap_or_default();
        self.set(
            Buf::Host,
            side,
            hostname(head, sent.map(|(_, t)| t), &host_raw),
        );
        self.set(Buf::HostRaw, side, host_raw);
        let proto = version_str(head.version);
        self.set(Buf::Protocol, side, proto);
        let line = format!("{} {} {}", head.method, raw_uri, proto);
        match sent {
            // libhtp's request line: as received, without its line ending.
            Some((l, _)) => self.set(Buf::RequestLine, side, Bytes::copy_from_slice(l)),
            None => self.set(Buf::RequestLine, side, line.clone()),
        }
        self.start[0] = Bytes::from(format!("{line}\r\n"));
        self.headers(side, &head.headers, head.raw.as_deref(), "cookie");
        self.events
            .merge(crate::events::request(head, self.layer_limit));
        self.wire[0] = head.wire.clone();
        self.encoding[0] = crate::codings::joined(&head.headers)
            .map(|ce| crate::codings::layers(&ce, self.layer_limit))
            .unwrap_or_default();
        // A POST or PUT body is an upload named by the URI path (multipart parts' own names
        // are not read).
        let multipart = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().to_ascii_lowercase().starts_with(b"multipart/"));
        if matches!(head.method, http::Method::POST | http::Method::PUT) && !multipart {
            self.upload = true;
        }
        self.boundary = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| crate::files::boundary(v.as_bytes()));
    }

    /// The normalised URI path (no query): a file's name when nothing else names it.
    fn uri_path(&self) -> Option<Vec<u8>> {
        let uri = self.bufs[Buf::Uri as usize][0].as_deref()?;
        let path = &uri[..memchr::memchr2(b'?', b'#', uri).unwrap_or(uri.len())];
        (!path.is_empty()).then(|| path.to_vec())
    }

    /// Status line and headers.
    pub fn response_head(&mut self, head: &ResponseHead) {
        let side = Direction::Response;
        let proto = version_str(head.version);
        let code = head.status.as_str().to_string();
        // The phrase as sent (libhtp's `response_message`), else the canonical one hyper
        // matched it to.
        let msg = head.reason.clone().unwrap_or_else(|| {
            Bytes::from_static(head.status.canonical_reason().unwrap_or("").as_bytes())
        });
        self.set(Buf::StatCode, side, code.clone());
        self.set(Buf::StatMsg, side, msg.clone());
        self.set(Buf::Protocol, side, proto);
        let line = format!("{proto} {code} {}", String::from_utf8_lossy(&msg));
        self.set(Buf::ResponseLine, side, line.clone());
        self.start[1] = Bytes::from(format!("{line}\r\n"));
        self.encoding[1] = crate::codings::joined(&head.headers)
            .map(|ce| crate::codings::layers(&ce, self.layer_limit))
            .unwrap_or_default();
        self.headers(side, &head.headers, head.raw.as_deref(), "set-cookie");
        self.events
            .merge(crate::events::response(head, self.layer_limit));
        self.wire[1] = head.wire.clone();
        // A download is named by Content-Disposition's filename, else the URI path.
        self.disposition = head
            .headers
            .get(http::header::CONTENT_DISPOSITION)
            .and_then(|v| crate::files::disposition_name(v.as_bytes()));
    }

    /// Whether the proxy noted something on this side's body framing (an anomaly event
    /// to raise even when no body byte came through).
    pub fn body_noted(&self, side: Direction) -> bool {
        self.wire[side.index()]
            .as_ref()
            .is_some_and(|w| !crate::events::body(w, side).is_empty())
    }

    /// Appends body bytes up to `limit`; returns true once the limit is reached.
    pub fn body_chunk(&mut self, side: Direction, chunk: &[u8], limit: usize) -> bool {
        let i = side.index();
        let room = limit.saturating_sub(self.body[i].len());
        if chunk.len() > room {
            self.truncated[i] = true;
        }
        self.body[i].extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.body[i].len() >= limit
    }

    /// True when the body was cut at the limit.
    pub fn truncated(&self, side: Direction) -> bool {
        self.truncated[side.index()]
    }

    /// Builds the body buffers (the response body decoded from gzip/deflate, bounded by `limit`).
    pub fn finish_body(&mut self, side: Direction, limit: usize) {
        let i = side.index();
        if let Some(w) = &self.wire[i] {
            self.events.merge(crate::events::body(w, side));
        }
        let raw = Bytes::copy_from_slice(&self.body[i]);
        let mut stream = Vec::with_capacity(self.start[i].len() + raw.len());
        stream.extend_from_slice(&self.start[i]);
        stream.extend_from_slice(&raw);
        self.set(Buf::Stream, side, stream);
        if raw.is_empty() {
            // No body, no body buffers: a negated content on them does not match (Suricata's
            // `absent` documentation), and `absent` does.
            return;
        }
        // Bodies are decoded as libhtp decodes them (requests too: Suricata turns request
        // decompression on).
        let decoded = if self.encoding[i].is_empty() {
            raw
        } else {
            Bytes::from(crate::codings::decode(&raw, &self.encoding[i], limit))
        };
        let body = match side {
            Direction::Request => Buf::RequestBody,
            Direction::Response => Buf::ResponseBody,
        };
        self.set(body, side, decoded.clone());
        let files = match (&self.boundary, side) {
            (Some(b), Direction::Request) => crate::files::multipart_files(&decoded, b)
                .into_iter()
                .map(|(n, d)| (Bytes::from(n), decoded.slice_ref(d)))
                .collect(),
            _ => Vec::new(),
        };
        match files.first() {
            // A multipart upload: each part with a filename is a file.
            Some((name, data)) => {
                self.set(Buf::FileData, side, data.clone());
                self.set(Buf::FileName, side, name.clone());
                self.parts = files;
            }
            None => self.set(Buf::FileData, side, decoded),
        }
        // An empty body is no file.
        if !self.body[i].is_empty() {
            let name = match side {
                Direction::Request if self.upload => self.uri_path(),
                Direction::Request => None,
                Direction::Response => self.disposition.clone().or_else(|| self.uri_path()),
            };
            if let Some(name) = name {
                self.set(Buf::FileName, side, name);
            }
        }
    }

    /// The ClientHello: SNI, JA3 and the raw record (as `pkt_data` of TLS rules).
    pub fn tls_hello(&mut self, sni: Option<&str>, raw: &[u8]) {
        let side = Direction::Request;
        if let Some(s) = sni {
            self.set(Buf::TlsSni, side, Bytes::copy_from_slice(s.as_bytes()));
        }
        if !raw.is_empty() {
            self.set(Buf::Stream, side, Bytes::copy_from_slice(raw));
            // One parse serves JA3, JA4 and the ALPN offer.
            if let Some(hello) = crate::ja3::client_hello(raw) {
                let ja3 = crate::ja3::ja3_of(&hello);
                self.set(Buf::Ja3Hash, side, crate::ja3::ja3_hash(&ja3));
                self.set(Buf::Ja3String, side, ja3);
                self.set(Buf::Ja4Hash, side, crate::ja4::ja4(&hello));
                let random = Bytes::from(hello.random.clone());
                self.set(Buf::TlsRandomTime, side, random.slice(..4));
                self.set(Buf::TlsRandomBytes, side, random.slice(4..));
                self.set(Buf::TlsRandom, side, random);
                self.alpns = hello.alpns;
            }
        }
    }

    /// The upstream's certificate chain (DER, leaf first).
    pub fn certs(&mut self, chain: &[impl AsRef<[u8]>]) {
        self.certs = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        let side = Direction::Response;
        if let Some(leaf) = chain.first() {
            use sha1::Digest as _;
            let digest = sha1::Sha1::digest(leaf.as_ref());
            let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
            self.set(Buf::TlsCertFingerprint, side, hex.join(":"));
            if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
                self.set(Buf::TlsCertSubject, side, cert.subject().to_string());
                self.set(Buf::TlsCertIssuer, side, cert.issuer().to_string());
                self.set(
                    Buf::TlsCertSerial,
                    side,
                    cert.raw_serial_as_string().to_ascii_uppercase(),
                );
                self.sans = subject_alt_names(&cert);
                let v = cert.validity();
                self.cert_dates = Some((v.not_before.timestamp(), v.not_after.timestamp()));
            }
        }
    }

    /// A WebSocket frame (this transaction is the frame): `websocket.payload`, its header and
    /// its events.
    pub fn ws_frame(&mut self, frame: &sekisho_core::WsFrame) {
        let side = frame.direction;
        self.set(Buf::WsPayload, side, frame.payload.clone());
        self.set(Buf::WsHeader, side, frame.raw_header());
        self.set(Buf::WsPdu, side, frame.raw.clone());
        self.set(Buf::WsData, side, frame.raw_payload());
        self.ws[side.index()] = Some(crate::ruleset::WsHead {
            opcode: frame.opcode,
            flags: frame.flags,
            mask: frame.mask,
        });
        self.events = crate::events::ws(frame);
    }

    /// A name the proxy resolves.
    pub fn dns_query(&mut self, name: &str) {
        self.set(
            Buf::DnsQuery,
            Direction::Request,
            Bytes::copy_from_slice(name.as_bytes()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_buffers() {
        let mut h = http::HeaderMap::new();
        h.insert("host", "Example.COM:8080".parse().unwrap());
        h.insert("user-agent", "curl/8".parse().unwrap());
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        let head = RequestHead::new(
            http::Method::GET,
            "/a%20b?x=%27".parse().unwrap(),
            http::Version::HTTP_11,
            h,
            80,
        );
        let mut tx = Tx::new();
        tx.request_head(&head);
        let g = |tx: &Tx, b| tx.get(b, Direction::Request).unwrap().to_vec();
        assert_eq!(g(&tx, Buf::Uri), b"/a b?x='");
        assert_eq!(g(&tx, Buf::UriRaw), b"/a%20b?x=%27");
        assert_eq!(g(&tx, Buf::Host), b"example.com");
        assert_eq!(g(&tx, Buf::HostRaw), b"Example.COM:8080");
        assert_eq!(g(&tx, Buf::Cookie), b"a=1, b=2");
        // Inside a tunnel the proxy routes on the CONNECT target; http.host is still the
        // client's Host header, as Suricata reads it.
        let mut h = http::HeaderMap::new();
        h.insert("host", "User@WWW.Google.com.:80".parse().unwrap());
        let mut head = RequestHead::new(
            http::Method::GET,
            "http://127.0.0.1:80/".parse().unwrap(),
            http::Version::HTTP_11,
            h,
            80,
        );
        head.raw = Some(Bytes::from_static(
            b"GET / HTTP/1.1\r\nHost: User@WWW.Google.com.:80\r\n\r\n",
        ));
        let mut t2 = Tx::new();
        t2.request_head(&head);
        assert_eq!(g(&t2, Buf::Host), b"www.google.com");
        // An absolute target names the host, whatever Host says (libhtp's order).
        head.raw = Some(Bytes::from_static(
            b"GET http://Evil.Example:81/x HTTP/1.1\r\nHost: www.google.com\r\n\r\n",
        ));
        head.uri = "http://127.0.0.1:80/x".parse().unwrap();
        let mut t2 = Tx::new();
        t2.request_head(&head);
        assert_eq!(g(&t2, Buf::Host), b"evil.example");
        let head = RequestHead::new(
            http::Method::GET,
            "http://[::1]:8080/x".parse().unwrap(),
            http::Version::HTTP_11,
            http::HeaderMap::new(),
            8080,
        );
        let mut t2 = Tx::new();
        t2.request_head(&head);
        assert_eq!(g(&t2, Buf::Host), b"[::1]");
        assert_eq!(
            g(&tx, Buf::HeaderNames),
            b"\r\nHost\r\nUser-Agent\r\nCookie\r\nCookie\r\n\r\n"
        );
        assert!(
            g(&tx, Buf::Header).starts_with(b"Host: Example.COM:8080\r\nUser-Agent: curl/8\r\n")
        );
        assert!(g(&tx, Buf::Header).ends_with(b"\r\n\r\n"));
        assert_eq!(g(&tx, Buf::RequestLine), b"GET /a%20b?x=%27 HTTP/1.1");
        assert!(g(&tx, Buf::Start).starts_with(b"GET /a%20b?x=%27 HTTP/1.1\r\nHost: "));
        tx.body_chunk(Direction::Request, b"0123456789", 4);
        assert!(tx.truncated(Direction::Request));
        tx.finish_body(Direction::Request, 4);
        assert_eq!(g(&tx, Buf::RequestBody), b"0123");
        assert!(g(&tx, Buf::Stream).ends_with(b"\r\n\r\n0123"));
    }

    #[test]
    fn raw_head_keeps_order_and_case() {
        let mut h = http::HeaderMap::new();
        h.insert("host", "a.test".parse().unwrap());
        h.insert("user-agent", "x".parse().unwrap());
        let mut head = RequestHead::new(
            http::Method::GET,
            "/".parse().unwrap(),
            http::Version::HTTP_11,
            h,
            80,
        );
        head.raw = Some(bytes::Bytes::from_static(
            b"GET / HTTP/1.1\r\nuser-AGENT:  x\r\nHOST: a.test\r\n\r\n",
        ));
        let mut tx = Tx::new();
        tx.request_head(&head);
        let g = |b| tx.get(b, Direction::Request).unwrap().to_vec();
        assert_eq!(g(Buf::HeaderNames), b"\r\nuser-AGENT\r\nHOST\r\n\r\n");
        assert_eq!(g(Buf::HeaderRaw), b"user-AGENT:  x\r\nHOST: a.test\r\n\r\n");
        assert_eq!(g(Buf::Header), b"user-AGENT: x\r\nHOST: a.test\r\n\r\n");
        assert_eq!(g(Buf::UserAgent), b"x");
        assert_eq!(
            g(Buf::Start),
            b"GET / HTTP/1.1\r\nuser-AGENT:  x\r\nHOST: a.test\r\n\r\n"
        );
    }

    #[test]
    fn gzip_response_body_is_decoded() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"hello evil world").unwrap();
        let gz = e.finish().unwrap();
        let mut h = http::HeaderMap::new();
        h.insert("content-encoding", "gzip".parse().unwrap());
        let head = ResponseHead {
            status: http::StatusCode::OK,
            version: http::Version::HTTP_11,
            headers: h,
            reason: None,
            raw: None,
            wire: None,
        };
        let mut tx = Tx::new();
        tx.response_head(&head);
        tx.body_chunk(Direction::Response, &gz, 1 << 20);
        tx.finish_body(Direction::Response, 1 << 20);
        assert_eq!(
            tx.get(Buf::FileData, Direction::Response).unwrap(),
            b"hello evil world"
        );
        assert_eq!(tx.get(Buf::StatCode, Direction::Response).unwrap(), b"200");
        assert_eq!(
            tx.get(Buf::ResponseLine, Direction::Response).unwrap(),
            b"HTTP/1.1 200 OK"
        );
        // A phrase other than the canonical one is the server's, as sent (HTTP Evader's "ok").
        let head = ResponseHead {
            reason: Some(Bytes::from_static(b"ok")),
            raw: None,
            ..head
        };
        let mut tx = Tx::new();
        tx.response_head(&head);
        assert_eq!(tx.get(Buf::StatMsg, Direction::Response).unwrap(), b"ok");
        assert_eq!(
            tx.get(Buf::ResponseLine, Direction::Response).unwrap(),
            b"HTTP/1.1 200 ok"
        );
    }
}
