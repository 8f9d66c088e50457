//! Keeps the raw bytes of each HTTP/1 request head as the client sent them (header order and case,
//! which hyper does not expose), for IPS `.raw` buffers and `http.header_names`.
//!
//! A [`Tap`] fed by the client stream (`io::Tracked::with_tap`) follows the HTTP/1 framing of what hyper reads: a
//! head up to the blank line (CRLF or bare LF line endings, as hyper takes both), then a
//! `Content-Length` or chunked body, then the next head. Each complete head is queued (bounded)
//! with the [`WireNotes`] of its body; the service takes them in order, one per request, and
//! checks that the request line matches before using one. Chunk-size lines are read as libhtp
//! reads them ([`chunkline`]): an extension or a length that does not read is noted for the
//! stages. Anything it cannot follow (an oversized head, a
//! framing it does not understand, an upgrade or CONNECT) turns the tap off for the connection:
//! the IPS then rebuilds the header block from the parsed headers.
//!
//! The tap also names the bytes of a request target that hyper's URI grammar refuses but web
//! servers take as sent (`"`, `<`, `>`, `` ` ``, DEL, bytes of an invalid UTF-8 sequence): the
//! stream wrapper percent-encodes them, so such a request reaches the stages (and a WAF judges
//! the raw target kept here) instead of getting hyper's bare 400. The encoded form is the one
//! routed and sent upstream.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sekisho_core::WireNotes;

use crate::chunkline::{self, ChunkLine};

/// Heads waiting for their request (pipelining depth).
const MAX_QUEUED: usize = 8;

#[derive(Debug)]
enum Mode {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// After a chunk's data: up to the end of the line (libhtp skips whatever precedes the LF).
    ChunkEnd,
    Trailers,
    Off,
}

/// The framing follower of one connection.
#[derive(Debug)]
pub struct TapState {
    mode: Mode,
    buf: Vec<u8>,
    heads: VecDeque<(Bytes, Option<Arc<WireNotes>>)>,
    /// The notes of the chunked request body being followed.
    body: Option<Arc<WireNotes>>,
    max_head: usize,
    /// Whether the request line of the head being read was checked for bytes to encode.
    line_checked: bool,
    /// A complete head the tap could not parse (hyper refuses it too), kept for the stages.
    refused: Option<Bytes>,
}

/// Shared handle between the stream wrapper and the service.
pub type Tap = Arc<Mutex<TapState>>;

/// A tap for heads of at most `max_head` bytes.
pub fn tap(max_head: usize) -> Tap {
    Arc::new(Mutex::new(TapState {
        mode: Mode::Head,
        buf: Vec::new(),
        heads: VecDeque::new(),
        body: None,
        max_head,
        line_checked: false,
        refused: None,
    }))
}

impl TapState {
    fn off(&mut self) {
        self.mode = Mode::Off;
        self.buf = Vec::new();
    }

    /// Follows `data`, the next bytes read from the client.
    pub fn feed(&mut self, data: &[u8]) {
        self.feed_at(data, 0, &mut Vec::new());
    }

    /// Follows `data` like [`TapState::feed`] and returns the offsets in it of request-target
    /// bytes hyper would refuse ([`needs_encoding`]), to be percent-encoded before hyper reads
    /// them. Only a request line that arrives whole within one read is fixed; one that does
    /// not keeps its bytes (and gets hyper's 400).
    pub fn feed_marking(&mut self, data: &[u8]) -> Vec<usize> {
        let mut marks = Vec::new();
        self.feed_at(data, 0, &mut marks);
        marks
    }

    fn feed_at(&mut self, data: &[u8], base: usize, marks: &mut Vec<usize>) {
        let total = data.len();
        let mut data = data;
        while !data.is_empty() {
            match &mut self.mode {
                Mode::Off => return,
                Mode::Head => {
                    if self.buf.is_empty() {
                        // Tolerate CRLFs between requests (RFC 9112 §2.2).
                        let skip = data
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                        self.line_checked = false;
                    }
                    let start = self.buf.len().saturating_sub(2);
                    let appended_at = self.buf.len();
                    self.buf.extend_from_slice(data);
                    if !self.line_checked {
                        let here = base + (total - data.len());
                        self.mark_target(appended_at, here, marks);
                    }
                    let Some(end) = head_end(&self.buf, start) else {
                        if self.buf.len() > self.max_head {
                            self.off();
                        }
                        return;
                    };
                    let rest = self.buf.split_off(end);
                    let head = std::mem::take(&mut self.buf);
                    self.head_done(head);
                    if matches!(self.mode, Mode::Off) {
                        return;
                    }
                    // Re-feed what followed the head (body or the next request): the tail of
                    // `data`.
                    let rest_at = base + (total - rest.len());
                    self.feed_at(&rest, rest_at, marks);
                    return;
                }
                Mode::Body(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.mode = Mode::Head;
                    }
                }
                Mode::ChunkSize | Mode::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', data) else {
                        self.buf.extend_from_slice(data);
                        if self.buf.len() > 4096 {
                            self.off();
                        }
                        return;
                    };
                    self.buf.extend_from_slice(&data[..=nl]);
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    if matches!(self.mode, Mode::Trailers) {
                        if line.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                            self.mode = Mode::Head;
                        }
                        continue;
                    }
                    match chunkline::read(&line) {
                        ChunkLine::Blank => {}
                        ChunkLine::Length(n, ext) => {
                            if ext {
                                self.note(WireNotes::CHUNK_EXTENSION);
                            }
                            self.mode = match n {
                                0 => Mode::Trailers,
                                n => Mode::ChunkData(n),
                            };
                        }
                        // libhtp raises the event for a length over its limit, and for one
                        // with no digits when the line came without its LF: raised for both
                        // however the line was split.
                        ChunkLine::Huge | ChunkLine::Unreadable => {
                            self.note(WireNotes::INVALID_CHUNK_LEN);
                            self.off();
                        }
                    }
                }
                Mode::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.mode = Mode::ChunkEnd;
                    }
                }
                Mode::ChunkEnd => match memchr::memchr(b'\n', data) {
                    Some(nl) => {
                        data = &data[nl + 1..];
                        self.mode = Mode::ChunkSize;
                    }
                    None => return,
                },
            }
        }
    }

    /// Once the head's request line is whole in `buf`: the offsets (in the data read, whose
    /// first byte is `buf[appended_at]`, at `data_at`) of its target bytes to encode. Bytes
    /// that came in an earlier read have gone to hyper already and are left alone.
    fn mark_target(&mut self, appended_at: usize, data_at: usize, marks: &mut Vec<usize>) {
        let Some(eol) = memchr::memchr(b'\n', &self.buf) else {
            return;
        };
        self.line_checked = true;
        let line = self.buf[..eol]
            .strip_suffix(b"\r")
            .unwrap_or(&self.buf[..eol]);
        let Some((from, to)) = target_span(line) else {
            return;
        };
        if from < appended_at {
            return;
        }
        let target = &line[from..to];
        let utf8 = std::str::from_utf8(target).is_ok();
        for (i, &b) in target.iter().enumerate() {
            if needs_encoding(b) || (!utf8 && b >= 0x80) {
                marks.push(data_at + (from + i - appended_at));
            }
        }
    }

    fn head_done(&mut self, head: Vec<u8>) {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => {
                self.refused = Some(Bytes::from(head));
                return self.off();
            }
        }
        let connect = req.method == Some("CONNECT");
        let mut chunked = false;
        let mut length: Option<u64> = None;
        let mut upgrade = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                {
                    Some(n) => length = Some(n),
                    None => {
                        self.refused = Some(Bytes::from(head));
                        return self.off();
                    }
                }
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if self.heads.len() >= MAX_QUEUED {
            self.heads.pop_front();
        }
        // Only a chunked body has framing to note.
        self.body = chunked.then(|| Arc::new(WireNotes::default()));
        self.heads.push_back((Bytes::from(head), self.body.clone()));
        self.mode = if connect || upgrade {
            // What follows is a tunnel, not HTTP.
            Mode::Off
        } else if chunked {
            Mode::ChunkSize
        } else {
            match length {
                Some(0) | None => Mode::Head,
                Some(n) => Mode::Body(n),
            }
        };
        if matches!(self.mode, Mode::Off) {
            self.buf = Vec::new();
        }
    }

    /// The head of a request hyper refused, when the tap has it: one it could not parse
    /// either, else the oldest head no request took, else a head still incomplete. Taken
    /// once.
    pub fn refused_head(&mut self) -> Option<Bytes> {
        if let Some(h) = self.refused.take() {
            return Some(h);
        }
        if let Some((h, _)) = self.heads.pop_front() {
            return Some(h);
        }
        match self.mode {
            Mode::Head if !self.buf.is_empty() => Some(Bytes::from(std::mem::take(&mut self.buf))),
            _ => None,
        }
    }

    /// The heads waiting for their request, oldest first.
    pub fn queued(&self) -> impl Iterator<Item = &Bytes> {
        self.heads.iter().map(|(h, _)| h)
    }

    /// Notes the body being followed.
    fn note(&mut self, note: u8) {
        if let Some(w) = &self.body {
            w.set(note);
        }
    }

    /// The raw head of the next request and the notes of its body (a chunked one), if it is
    /// the one with this method and request target.
    pub fn next_head(
        &mut self,
        method: &str,
        target: &str,
    ) -> Option<(Bytes, Option<Arc<WireNotes>>)> {
        let (head, wire) = self.heads.pop_front()?;
        let line_end = memchr::memchr2(b'\r', b'\n', &head).unwrap_or(head.len());
        let line = &head[..line_end];
        let mut parts = line.split(|b| *b == b' ');
        let (m, t) = (parts.next()?, parts.next()?);
        if m == method.as_bytes() && same_target(t, target.as_bytes()) {
            Some((head, wire))
        } else {
            // Out of step: stop rather than attribute a head to the wrong request.
            self.heads.clear();
            self.off();
            None
        }
    }
}

/// Where a head ends in `buf` (just past its blank line: `\n\n` or `\n\r\n`), looking at
/// line feeds from `from` on.
pub(crate) fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf.get(from..)?).find_map(|p| {
        let at = from + p + 1;
        match buf.get(at..) {
            Some([b'\n', ..]) => Some(at + 1),
            Some([b'\r', b'\n', ..]) => Some(at + 2),
            _ => None,
        }
    })
}

/// The request target's span in a request line `METHOD SP target SP HTTP/x.y`, when the line
/// has that shape (a token method, one target, an HTTP version).
fn target_span(line: &[u8]) -> Option<(usize, usize)> {
    let sp1 = memchr::memchr(b' ', line)?;
    let method = &line[..sp1];
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
    {
        return None;
    }
    let sp2 = sp1 + 1 + memchr::memchr(b' ', &line[sp1 + 1..])?;
    let version = &line[sp2 + 1..];
    (sp2 > sp1 + 1 && version.starts_with(b"HTTP/") && !version.contains(&b' '))
        .then_some((sp1 + 1, sp2))
}

/// Bytes of a request target that hyper's URI grammar refuses (the http crate's, anywhere in
/// the target) though web servers take them as sent.
pub fn needs_encoding(b: u8) -> bool {
    matches!(b, b'"' | b'<' | b'>' | b'`' | 0x7f)
}

/// `target` with the bytes [`TapState::feed_marking`] marks percent-encoded, as hyper gets it.
fn encoded_target(target: &[u8]) -> Vec<u8> {
    let utf8 = std::str::from_utf8(target).is_ok();
    let mut out = Vec::with_capacity(target.len() + 8);
    for &b in target {
        if needs_encoding(b) || (!utf8 && b >= 0x80) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Whether the raw request target `raw` is the one hyper parsed as `parsed`: the same bytes
/// (after the encoding the stream wrapper applied), or an absolute form hyper rewrote (scheme
/// and host case, the `/` an authority-only target gets).
fn same_target(raw: &[u8], parsed: &[u8]) -> bool {
    if raw == parsed {
        return true;
    }
    let encoded = encoded_target(raw);
    if encoded.as_slice() != raw {
        return same_target(&encoded, parsed);
    }
    let absolute = raw.windows(3).take(16).any(|w| w == b"://");
    absolute
        && (raw.eq_ignore_ascii_case(parsed)
            || (parsed.len() == raw.len() + 1
                && parsed.ends_with(b"/")
                && raw.eq_ignore_ascii_case(&parsed[..raw.len()])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(t: &Tap, data: &[u8], piece: usize) {
        for c in data.chunks(piece) {
            t.lock().unwrap().feed(c);
        }
    }

    #[test]
    fn absolute_targets_hyper_rewrites_still_match() {
        assert!(same_target(b"http://localhost", b"http://localhost/"));
        assert!(same_target(b"HTTP://LocalHost/a", b"http://localhost/a"));
        assert!(!same_target(b"/a", b"/A"));
        assert!(!same_target(b"http://a", b"http://b/"));
    }

    #[test]
    fn target_bytes_hyper_refuses_are_marked_and_nothing_else() {
        let wire: &[u8] =
            b"GET /a?q=<b>\"x\"`y` HTTP/1.1\r\nHost: x\r\nX: <v>\r\nContent-Length: 3\r\n\r\n<b>\
GET /p<q HTTP/1.1\r\nHost: x\r\n\r\n";
        let t = tap(65536);
        let marks = t.lock().unwrap().feed_marking(wire);
        let marked: Vec<u8> = marks.iter().map(|&i| wire[i]).collect();
        assert_eq!(marked, b"<>\"\"``<");
        // Only request targets: not the header value, not the body, not the method.
        let second = wire.len() - b"<q HTTP/1.1\r\nHost: x\r\n\r\n".len();
        assert_eq!(*marks.last().unwrap(), second);
        assert!(marks.iter().all(|&i| i < 18 || i == second), "{marks:?}");
        let mut t = t.lock().unwrap();
        assert!(t.next_head("GET", "/a?q=%3Cb%3E%22x%22%60y%60").is_some());
        assert!(t.next_head("GET", "/p%3Cq").is_some());
    }

    #[test]
    fn a_request_line_split_across_reads_or_not_http_is_left_alone() {
        let t = tap(65536);
        assert!(t.lock().unwrap().feed_marking(b"GET /?q=<b").is_empty());
        assert!(t
            .lock()
            .unwrap()
            .feed_marking(b"> HTTP/1.1\r\nHost: x\r\n\r\n")
            .is_empty());
        for line in [
            &b"GET /<a> HTTP/1.1 extra\r\n\r\n"[..],
            b"G<T /a HTTP/1.1\r\n\r\n",
            b"GET /<a>\r\n\r\n",
        ] {
            assert!(
                tap(65536).lock().unwrap().feed_marking(line).is_empty(),
                "{line:?}"
            );
        }
        // An invalid UTF-8 sequence in the target is encoded byte by byte; valid UTF-8 is not.
        let wire = b"GET /\xe9t\xc3\xa9 HTTP/1.1\r\n\r\n";
        let marks = tap(65536).lock().unwrap().feed_marking(wire);
        assert_eq!(marks, vec![5, 7, 8]);
        assert!(tap(65536)
            .lock()
            .unwrap()
            .feed_marking("GET /\u{e9}t\u{e9} HTTP/1.1\r\n\r\n".as_bytes())
            .is_empty());
    }

    #[test]
    fn pipelined_heads_with_bodies_in_any_split() {
        let wire: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Odd-CASE: 1\r\n\r\n\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nhost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nTrailer: t\r\n\r\n\
\r\nGET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        for piece in [1, 2, 3, 7, 64, wire.len()] {
            let t = tap(65536);
            feed_in_pieces(&t, wire, piece);
            let mut s = t.lock().unwrap();
            let (a, _) = s.next_head("GET", "/a").unwrap();
            assert!(
                a.starts_with(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Odd-CASE: 1\r\n"),
                "{piece}"
            );
            assert!(s.next_head("POST", "/b").is_some(), "{piece}");
            let (c, _) = s.next_head("POST", "/c").unwrap();
            assert!(c.windows(6).any(|w| w == b"host: "), "case kept ({piece})");
            assert!(s.next_head("GET", "/d").is_some(), "{piece}");
            assert!(s.next_head("GET", "/e").is_none());
        }
    }

    #[test]
    fn out_of_step_or_unparsable_turns_off() {
        let t = tap(65536);
        t.lock()
            .unwrap()
            .feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(t.lock().unwrap().next_head("GET", "/other").is_none());
        t.lock()
            .unwrap()
            .feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            t.lock().unwrap().next_head("GET", "/b").is_none(),
            "off for good"
        );
        let t = tap(32);
        t.lock().unwrap().feed(&[b'A'; 100]);
        t.lock().unwrap().feed(b"\r\n\r\n");
        assert!(t.lock().unwrap().next_head("A", "x").is_none());
        let t = tap(65536);
        t.lock()
            .unwrap()
            .feed(b"POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n");
        assert!(t.lock().unwrap().next_head("POST", "/a").is_none());
    }

    #[test]
    fn connect_and_upgrade_stop_following() {
        let t = tap(65536);
        t.lock().unwrap().feed(
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n\x16\x03\x01GET / HTTP/1.1\r\n\r\n",
        );
        let mut s = t.lock().unwrap();
        assert!(s.next_head("CONNECT", "h:443").is_some());
        assert!(s.heads.is_empty(), "tunnel bytes are not parsed as HTTP");
    }

    /// The notes of the one request in `wire`, fed in pieces of `piece` bytes.
    fn notes_of(wire: &[u8], piece: usize) -> (bool, bool, Option<Bytes>) {
        let t = tap(65536);
        feed_in_pieces(&t, wire, piece);
        let mut s = t.lock().unwrap();
        let (head, w) = s.next_head("POST", "/qwe.asd").unwrap();
        let w = w.expect("a chunked body has notes");
        let next = s.next_head("GET", "/n").map(|(h, _)| h);
        assert!(head.ends_with(b"\n\n") || head.ends_with(b"\r\n\r\n"));
        (
            w.has(WireNotes::CHUNK_EXTENSION),
            w.has(WireNotes::INVALID_CHUNK_LEN),
            next,
        )
    }

    #[test]
    fn chunk_extensions_and_bad_lengths_are_noted_with_bare_lf_too() {
        // suricata-verify http-event-chunk: bare LF line endings, a space after the length,
        // an extension on the last chunk, trailers.
        let lf: &[u8] = b"POST /qwe.asd HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n\n\
8 \ntototata\n4 \ntiti\n0 ; qwe3=asd3; zxc3=\"rt\"y3\"\ntrailehdr1: t1\n\nGET /n HTTP/1.1\nHost: x\n\n";
        let crlf: &[u8] = b"POST /qwe.asd HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
3;x=1\r\nabc\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n";
        let plain: &[u8] = b"POST /qwe.asd HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
3\r\nabc\r\n\r\n0\r\n\r\nGET /n HTTP/1.1\r\n\r\n";
        let bad: &[u8] = b"POST /qwe.asd HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
3\r\nabc\r\nxyz\r\nGET /n HTTP/1.1\r\n\r\n";
        for piece in [1, 2, 5, 64, 4096] {
            let (ext, bad_len, next) = notes_of(lf, piece);
            assert!(ext && !bad_len && next.is_some(), "{piece}");
            let (ext, bad_len, next) = notes_of(crlf, piece);
            assert!(ext && !bad_len && next.is_some(), "{piece}");
            // A blank line between chunks is skipped, as libhtp skips it.
            let (ext, bad_len, next) = notes_of(plain, piece);
            assert!(!ext && !bad_len && next.is_some(), "{piece}");
            // A length that does not read: noted, and the tap stops following.
            let (ext, bad_len, next) = notes_of(bad, piece);
            assert!(!ext && bad_len && next.is_none(), "{piece}");
        }
    }

    #[test]
    fn each_request_has_its_own_notes() {
        let wire: &[u8] =
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;e\r\na\r\n0\r\n\r\n\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n";
        let t = tap(65536);
        t.lock().unwrap().feed(wire);
        let mut s = t.lock().unwrap();
        let (_, a) = s.next_head("POST", "/a").unwrap();
        let (_, b) = s.next_head("POST", "/b").unwrap();
        assert!(a.unwrap().has(WireNotes::CHUNK_EXTENSION));
        assert!(!b.unwrap().has(WireNotes::CHUNK_EXTENSION));
        drop(s);
        t.lock().unwrap().feed(b"GET /c HTTP/1.1\r\n\r\n");
        let (_, c) = t.lock().unwrap().next_head("GET", "/c").unwrap();
        assert!(c.is_none(), "no chunked body, no notes");
    }
}
