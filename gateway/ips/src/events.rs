//! HTTP anomaly events as Suricata 8 names them (`app-layer-event:http.<name>`), worked out
//! the way libhtp-rs raises them with Suricata's default settings (IDS personality, spaces
//! allowed in the URI, a field limit of 18,000 bytes, 1,024 headers, two encoding layers).
//!
//! Request events come from the head exactly as the client sent it (when the listener kept
//! it; else from the parsed head, which can only show the header-level ones); response events
//! from the parsed response head. Every name Suricata accepts is known here, including those
//! its parser never raises (a rule naming one loads and never fires, as in Suricata).

use sekisho_core::{RequestHead, ResponseHead};

/// Every HTTP event name Suricata 8.0.6 accepts, lower-cased; an event's id is its index.
pub const NAMES: &[&str] = &[
    "unknown_error",
    "gzip_decompression_failed",
    "request_field_missing_colon",
    "response_field_missing_colon",
    "invalid_request_chunk_len",
    "invalid_response_chunk_len",
    "invalid_transfer_encoding_value_in_request",
    "invalid_transfer_encoding_value_in_response",
    "invalid_content_length_field_in_request",
    "invalid_content_length_field_in_response",
    "duplicate_content_length_field_in_request",
    "duplicate_content_length_field_in_response",
    "100_continue_already_seen",
    "unable_to_match_response_to_request",
    "invalid_server_port_in_request",
    "invalid_authority_port",
    "request_header_invalid",
    "response_header_invalid",
    "missing_host_header",
    "host_header_ambiguous",
    "invalid_request_field_folding",
    "invalid_response_field_folding",
    "request_field_too_long",
    "response_field_too_long",
    "request_line_invalid",
    "request_body_unexpected",
    "response_body_unexpected",
    "request_server_port_tcp_port_mismatch",
    "request_uri_host_invalid",
    "request_header_host_invalid",
    "request_auth_unrecognized",
    "request_header_repetition",
    "response_header_repetition",
    "double_encoded_uri",
    "uri_delim_non_compliant",
    "method_delim_non_compliant",
    "request_line_leading_whitespace",
    "too_many_encoding_layers",
    "request_too_many_lzma_layers",
    "response_too_many_lzma_layers",
    "abnormal_ce_header",
    "response_multipart_byteranges",
    "response_abnormal_transfer_encoding",
    "response_chunked_old_proto",
    "response_invalid_protocol",
    "response_invalid_status",
    "request_line_incomplete",
    "protocol_contains_extra_data",
    "switching_proto_with_content_length",
    "deformed_eol",
    "parser_state_error",
    "missing_outbound_transaction_data",
    "missing_inbound_transaction_data",
    "zero_length_data_chunks",
    "request_line_unknown_method",
    "request_line_unknown_method_no_protocol",
    "request_line_unknown_method_invalid_protocol",
    "request_line_missing_protocol",
    "response_line_invalid_protocol",
    "response_line_invalid_response_status",
    "response_body_internal_error",
    "request_body_data_callback_error",
    "response_invalid_empty_name",
    "request_invalid_empty_name",
    "response_invalid_lws_after_name",
    "response_header_name_not_token",
    "request_invalid_lws_after_name",
    "lzma_decompression_disabled",
    "connection_already_open",
    "compression_bomb_double_lzma",
    "invalid_content_encoding",
    "invalid_gap",
    "request_chunk_extension",
    "response_chunk_extension",
    "lzma_memlimit_reached",
    "compression_bomb",
    "compression_bomb_limit_reached",
    "request_too_many_headers",
    "response_too_many_headers",
    "multipart_generic_error",
    "multipart_no_filedata",
    "multipart_invalid_header",
    "too_many_warnings",
    "range_invalid",
    "file_name_too_long",
    "failed_protocol_change",
    "content_length_extra_data_start",
    "content_length_extra_data_end",
];

/// WebSocket events (`app-layer-event:websocket.<name>`), ids after the HTTP ones.
pub const WS_NAMES: &[&str] = &[
    "websocket.skip_end_of_payload",
    "websocket.reassembly_limit_reached",
];

/// libhtp's field limit (`meta-field-limit`).
pub const FIELD_LIMIT: usize = 18_000;
/// libhtp's header limit (`headers-limit`).
pub const HEADERS_LIMIT: usize = 1024;
/// libhtp's default content-encoding layer limit (`response-body-decompress-layer-limit`).
pub const LAYER_LIMIT: usize = 2;
/// Methods libhtp knows (a request line of one unknown token is an event).
const METHODS: &[&[u8]] = &[
    b"GET",
    b"PUT",
    b"POST",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"VERSION-CONTROL",
    b"CHECKOUT",
    b"UNCHECKOUT",
    b"CHECKIN",
    b"UPDATE",
    b"LABEL",
    b"REPORT",
    b"MKWORKSPACE",
    b"MKACTIVITY",
    b"BASELINE-CONTROL",
    b"MERGE",
    b"INVALID",
    b"HEAD",
];

/// A set of events (bit `id`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Events(u128);

impl Events {
    /// Adds the event called `name` (one of [`NAMES`]).
    pub fn raise(&mut self, name: &str) {
        if let Some(id) = id(name) {
            self.0 |= 1 << id;
        }
    }

    /// Whether the event `id` is in the set.
    pub fn has(self, id: u8) -> bool {
        self.0 & (1 << id) != 0
    }

    /// Adds every event of `other`.
    pub fn merge(&mut self, other: Events) {
        self.0 |= other.0;
    }

    /// True when no event was raised.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the events raised, in table order (WebSocket ones last, prefixed).
    pub fn names(self) -> Vec<&'static str> {
        NAMES
            .iter()
            .chain(WS_NAMES)
            .enumerate()
            .filter(|&(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect()
    }
}

/// Whether the parser can raise event `id` while reading a response (so a rule testing it
/// is judged once the response head is in).
pub fn on_response(id: u8) -> bool {
    let Some(name) = NAMES.get(usize::from(id)) else {
        return false;
    };
    name.starts_with("response_")
        || name.contains("_response")
        || matches!(
            *name,
            "100_continue_already_seen"
                | "unable_to_match_response_to_request"
                | "too_many_encoding_layers"
                | "abnormal_ce_header"
                | "switching_proto_with_content_length"
                | "compression_bomb"
                | "compression_bomb_limit_reached"
                | "range_invalid"
                | "file_name_too_long"
                | "failed_protocol_change"
                | "deformed_eol"
                | "too_many_warnings"
        )
}

/// The events libhtp raises while reading a body's chunked framing (so a rule testing one is
/// judged once that body has ended).
pub fn on_body_end(id: u8) -> bool {
    NAMES.get(usize::from(id)).is_some_and(|name| {
        matches!(
            *name,
            "request_chunk_extension"
                | "invalid_request_chunk_len"
                | "response_chunk_extension"
                | "invalid_response_chunk_len"
        )
    })
}

/// The events of a body's framing on `side`, from what the proxy noted as it read it.
pub fn body(wire: &sekisho_core::WireNotes, side: sekisho_core::Direction) -> Events {
    use sekisho_core::{Direction, WireNotes};
    let (ext, len) = match side {
        Direction::Request => ("request_chunk_extension", "invalid_request_chunk_len"),
        Direction::Response => ("response_chunk_extension", "invalid_response_chunk_len"),
    };
    let mut ev = Events::default();
    if wire.has(WireNotes::CHUNK_EXTENSION) {
        ev.raise(ext);
    }
    if wire.has(WireNotes::INVALID_CHUNK_LEN) {
        ev.raise(len);
    }
    ev
}

/// The events of a WebSocket frame (see [`sekisho_core::WsFrame`]'s notes).
pub fn ws(frame: &sekisho_core::WsFrame) -> Events {
    use sekisho_core::WsFrame;
    let mut ev = Events::default();
    for (i, note) in [WsFrame::PAYLOAD_SKIPPED, WsFrame::REASSEMBLY_LIMIT]
        .into_iter()
        .enumerate()
    {
        if frame.has(note) {
            ev.0 |= 1 << (NAMES.len() + i);
        }
    }
    ev
}

/// Whether event `id` is a WebSocket one (raised on frames).
pub fn is_ws(id: u8) -> bool {
    usize::from(id) >= NAMES.len()
}

/// The id of an event name (case-insensitive, without its `http.` / `http1.` prefix).
pub fn id(name: &str) -> Option<u8> {
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
}

/// Parses `app-layer-event`'s value: `http.<name>` or `http1.<name>`.
pub fn parse_keyword(v: &str) -> Result<u8, String> {
    let v = v.trim();
    let (proto, name) = v
        .split_once('.')
        .ok_or_else(|| format!("app-layer-event: {v:?} is not <protocol>.<event>"))?;
    if proto.eq_ignore_ascii_case("websocket") {
        let i = WS_NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(v))
            .ok_or_else(|| format!("app-layer-event: unknown websocket event {name:?}"))?;
        return u8::try_from(NAMES.len() + i).map_err(|e| e.to_string());
    }
    if !proto.eq_ignore_ascii_case("http") && !proto.eq_ignore_ascii_case("http1") {
        return Err(format!(
            "app-layer-event: protocol {proto:?} is not carried"
        ));
    }
    id(name).ok_or_else(|| format!("app-layer-event: unknown http event {name:?}"))
}

/// The events of a request head.
pub fn request(head: &RequestHead, layers: usize) -> Events {
    let mut ev = Events::default();
    match head.raw.as_deref() {
        Some(raw) => raw_request(raw, &mut ev),
        None => {
            let names = head.headers.keys().map(|n| n.as_str().as_bytes());
            repetitions(names, "request_header_repetition", &mut ev);
        }
    }
    request_fields(head, layers, &mut ev);
    ev
}

/// The events of a response head (`request_version`: the request's, for chunked on HTTP/1.0).
pub fn response(head: &ResponseHead, layers: usize) -> Events {
    let mut ev = Events::default();
    let h = &head.headers;
    repetitions(
        h.keys()
            .flat_map(|n| std::iter::repeat_n(n.as_str().as_bytes(), h.get_all(n).iter().count())),
        "response_header_repetition",
        &mut ev,
    );
    content_lengths(h, "duplicate_content_length_field_in_response", &mut ev);
    if let Some(te) = h.get(http::header::TRANSFER_ENCODING) {
        let te = te.as_bytes();
        if contains_nocase(te, b"chunked") {
            if !te.eq_ignore_ascii_case(b"chunked") {
                ev.raise("response_abnormal_transfer_encoding");
            }
            if head.version < http::Version::HTTP_11 {
                ev.raise("response_chunked_old_proto");
            }
        }
    }
    let status = head.status.as_u16();
    let framed = h.contains_key(http::header::TRANSFER_ENCODING)
        || h.contains_key(http::header::CONTENT_LENGTH);
    if framed && (status < 200 || status == 204 || status == 304) {
        if status == 101 && h.contains_key(http::header::CONTENT_LENGTH) {
            ev.raise("switching_proto_with_content_length");
        } else {
            ev.raise("response_body_unexpected");
        }
    }
    if let Some(ce) = crate::codings::joined(h) {
        content_encoding(&ce, false, layers, &mut ev);
    }
    if let Some(raw) = head.raw.as_deref() {
        raw_response(raw, &mut ev);
    }
    ev
}

/// Response lines as libhtp splits them: CRLF, LF or a lone CR ends a line.
fn response_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, used) = match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => (&rest[..i], i + 2),
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        rest = &rest[used..];
        Some(line)
    })
}

/// Events of the status line and header lines as the upstream sent them.
fn raw_response(raw: &[u8], ev: &mut Events) {
    let mut lines = response_lines(raw);
    let Some(line) = lines.by_ref().find(|l| !l.is_empty()) else {
        return;
    };
    let mut words = line
        .split(|&b| b.is_ascii_whitespace() || b == 0)
        .filter(|w| !w.is_empty());
    if !words.next().is_some_and(valid_protocol) {
        ev.raise("response_line_invalid_protocol");
    }
    let status_ok = words.next().is_some_and(|s| {
        s.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(s)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .is_some_and(|n| (100..=999).contains(&n))
    });
    if !status_ok {
        ev.raise("response_line_invalid_response_status");
    }
    for l in lines.take_while(|l| !l.is_empty()) {
        if l.len() + 2 > FIELD_LIMIT {
            ev.raise("response_field_too_long");
        }
        let indented = l.first().is_some_and(|&b| b == b' ' || b == b'\t');
        let Some(colon) = memchr::memchr(b':', l) else {
            if !indented {
                ev.raise("response_field_missing_colon");
            }
            continue;
        };
        let name = &l[..colon];
        let trimmed = name.trim_ascii();
        if indented {
            // A continuation line, unless it reads `token:` (a new field, badly folded).
            if !trimmed.is_empty() && trimmed.iter().all(|&b| is_token(b)) {
                ev.raise("invalid_response_field_folding");
            }
            continue;
        }
        if trimmed.is_empty() {
            ev.raise("response_invalid_empty_name");
        } else if trimmed.len() != name.len() {
            ev.raise("response_invalid_lws_after_name");
        } else if !trimmed.iter().all(|&b| is_token(b)) {
            ev.raise("response_header_name_not_token");
        }
    }
}

/// libhtp's `protocol_version`: `HTTP` (any case), optional whitespace, `/`, optional zeros,
/// then `.9`, `1.0` or `1.1`, nothing after.
fn valid_protocol(p: &[u8]) -> bool {
    let Some(rest) = p
        .get(..4)
        .filter(|h| h.eq_ignore_ascii_case(b"http"))
        .map(|_| &p[4..])
    else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(b"/") else {
        return false;
    };
    let zeros = rest.iter().take_while(|&&b| b == b'0').count();
    let v = &rest[zeros..];
    matches!(v, b".9" | b"1.0" | b"1.1")
}

/// Whether `needle` occurs in `hay`, ASCII case aside.
pub(crate) fn contains_nocase(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Events of the request line and header lines as sent.
fn raw_request(raw: &[u8], ev: &mut Events) {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    // libhtp skips empty lines before the request line.
    let Some(line) = lines.by_ref().find(|l| !l.is_empty()) else {
        return;
    };
    if line.len() + 2 > FIELD_LIMIT {
        ev.raise("request_field_too_long");
    }
    let headers: Vec<&[u8]> = lines.take_while(|l| !l.is_empty()).collect();
    request_line(line, !headers.is_empty(), ev);
    let mut names = Vec::with_capacity(headers.len());
    let mut name_flagged = false;
    for (i, l) in headers.iter().enumerate() {
        if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            // A continuation of the previous header is joined silently; a first header line
            // that starts with whitespace is not one.
            if i == 0 {
                ev.raise("invalid_request_field_folding");
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', l).filter(|&c| c > 0) else {
            ev.raise("request_field_missing_colon");
            continue;
        };
        let name = &l[..colon];
        let trimmed = name.trim_ascii_end();
        if trimmed.len() != name.len() && !trimmed.is_empty() && !name_flagged {
            ev.raise("request_invalid_lws_after_name");
            name_flagged = true;
        } else if !trimmed.iter().all(|&b| is_token(b)) && !name_flagged {
            ev.raise("request_header_invalid");
            name_flagged = true;
        }
        names.push(trimmed);
    }
    let distinct = {
        let mut d: Vec<Vec<u8>> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        d.sort();
        d.dedup();
        d.len()
    };
    // libhtp checks the count before adding a new name: the 1,026th distinct name trips it.
    if distinct > HEADERS_LIMIT + 1 {
        ev.raise("request_too_many_headers");
    }
    repetitions(names.into_iter(), "request_header_repetition", ev);
}

/// libhtp's token characters (RFC 7230 `tchar`).
fn is_token(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// Events of the request line: whitespace, delimiters, the method and the protocol.
fn request_line(line: &[u8], more: bool, ev: &mut Events) {
    if line.first().is_some_and(u8::is_ascii_whitespace) {
        ev.raise("request_line_leading_whitespace");
    }
    let line = line.trim_ascii_start();
    let m_end = line
        .iter()
        .position(u8::is_ascii_whitespace)
        .unwrap_or(line.len());
    let method = &line[..m_end];
    let rest = &line[m_end..];
    let gap = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    if rest[..gap].iter().any(|&b| b != b' ') {
        ev.raise("method_delim_non_compliant");
    }
    let rest = &rest[gap..];
    // The URI runs to the last space (spaces inside it are allowed); what follows is the
    // protocol when it looks like one.
    let (uri, proto) = match rest.iter().rposition(|&b| b == b' ') {
        Some(sp) if !rest[sp + 1..].is_empty() => {
            (rest[..sp].trim_ascii_end(), Some(&rest[sp + 1..]))
        }
        _ => (rest, None),
    };
    if uri
        .iter()
        .any(|&b| matches!(b, b'\t' | b'\r' | 0x0b | 0x0c))
    {
        ev.raise("uri_delim_non_compliant");
    }
    let known = METHODS.contains(&method);
    match (known, uri.is_empty(), proto) {
        (false, true, None) => ev.raise("request_line_unknown_method"),
        (false, false, None) => ev.raise("request_line_unknown_method_no_protocol"),
        (false, _, Some(p)) if !p.starts_with(b"HTTP/") => {
            ev.raise("request_line_unknown_method_invalid_protocol")
        }
        (true, _, None) if more => ev.raise("request_line_missing_protocol"),
        _ => {}
    }
    if let Some(v) = proto.and_then(|p| p.strip_prefix(b"HTTP/")) {
        // A version with a leading zero (`01.1`) or bytes after `d.d` (`1.1x`).
        let padded = v.len() > 1 && v[0] == b'0' && v[1].is_ascii_digit();
        let trailing = v.len() > 3
            && matches!(v[..3], [a, b'.', c] if a.is_ascii_digit() && c.is_ascii_digit());
        if padded || trailing {
            ev.raise("protocol_contains_extra_data");
        }
    }
}

/// `name` raised once for every header name seen more than once (case-insensitive).
fn repetitions<'a>(names: impl Iterator<Item = &'a [u8]>, name: &str, ev: &mut Events) {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for n in names {
        let n = n.to_ascii_lowercase();
        if seen.contains(&n) {
            ev.raise(name);
            return;
        }
        seen.push(n);
    }
}

/// A repeated Content-Length whose value differs (the first is used).
fn content_lengths(h: &http::HeaderMap, name: &str, ev: &mut Events) {
    let mut values = h.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = values.next() {
        let first = first.as_bytes().trim_ascii();
        if values.any(|v| v.as_bytes().trim_ascii() != first) {
            ev.raise(name);
        }
    }
}

/// Events of the request's header values: Host, Authorization, Content-Length,
/// Transfer-Encoding, Content-Encoding.
fn request_fields(head: &RequestHead, layers: usize, ev: &mut Events) {
    let h = &head.headers;
    content_lengths(h, "duplicate_content_length_field_in_request", ev);
    for v in h.get_all(http::header::CONTENT_LENGTH) {
        let v = v.as_bytes().trim_ascii();
        let digits = v.iter().position(u8::is_ascii_digit);
        match digits {
            Some(0) | None => {}
            Some(_) => ev.raise("content_length_extra_data_start"),
        }
        if let Some(d) = digits {
            let end = v[d..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map(|e| d + e);
            if end.is_some_and(|e| !v[e..].trim_ascii().is_empty()) {
                ev.raise("content_length_extra_data_end");
            }
        }
    }
    if let Some(te) = h.get(http::header::TRANSFER_ENCODING) {
        if contains_nocase(te.as_bytes(), b"chunked") && head.version < http::Version::HTTP_11 {
            ev.raise("invalid_transfer_encoding_value_in_request");
        }
    }
    if let Some(a) = h.get(http::header::AUTHORIZATION) {
        let a = a.as_bytes();
        let known = [b"basic".as_slice(), b"digest", b"bearer"]
            .iter()
            .any(|s| a.len() >= s.len() && a[..s.len()].eq_ignore_ascii_case(s));
        if !known {
            ev.raise("request_auth_unrecognized");
        }
    }
    if let Some(ce) = crate::codings::joined(h) {
        content_encoding(&ce, true, layers, ev);
    }
    hosts(head, ev);
}

/// Host checks: a Host header is needed from HTTP/1.1 on, must be a valid host name (one
/// header only), and must agree with an absolute URI's authority.
fn hosts(head: &RequestHead, ev: &mut Events) {
    // The Host lines as sent (a proxy adds Host from an absolute URI to its parsed headers).
    let hosts: Vec<&[u8]> = match head.raw.as_deref() {
        Some(raw) => raw_header_values(raw, b"host"),
        None => head
            .headers
            .get_all(http::header::HOST)
            .iter()
            .map(|v| v.as_bytes())
            .collect(),
    };
    if hosts.is_empty()
        && head.version >= http::Version::HTTP_11
        && head.version < http::Version::HTTP_2
    {
        ev.raise("missing_host_header");
    }
    let parsed = hosts.first().map(|h| split_host(h));
    if hosts.len() > 1 || parsed.as_ref().is_some_and(|p| p.is_none()) {
        ev.raise("request_header_host_invalid");
    }
    let Some(auth) = head.uri.authority() else {
        return;
    };
    if head.method == http::Method::CONNECT && hosts.is_empty() {
        return;
    }
    // User info (`user:pass@`) is not part of the host libhtp validates.
    let auth = auth.as_str();
    let uri = split_host(auth.rsplit_once('@').map_or(auth, |(_, h)| h).as_bytes());
    if uri.is_none() {
        ev.raise("request_uri_host_invalid");
    }
    match (uri, parsed) {
        (Some((uh, up)), Some(Some((hh, hp)))) => {
            let ports_differ = matches!((up, hp), (Some(a), Some(b)) if a != b);
            if !uh.eq_ignore_ascii_case(&hh) || ports_differ {
                ev.raise("host_header_ambiguous");
            }
        }
        (_, Some(None)) => ev.raise("host_header_ambiguous"),
        _ => {}
    }
}

/// The values of the header lines named `name` in a raw head (trimmed; continuation lines
/// not joined).
fn raw_header_values<'a>(raw: &'a [u8], name: &[u8]) -> Vec<&'a [u8]> {
    raw.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty())
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let c = memchr::memchr(b':', l)?;
            l[..c]
                .trim_ascii()
                .eq_ignore_ascii_case(name)
                .then(|| l[c + 1..].trim_ascii())
        })
        .collect()
}

/// `host[:port]` or `[v6][:port]` when valid as libhtp validates host names; `None` when not.
fn split_host(v: &[u8]) -> Option<(Vec<u8>, Option<u16>)> {
    let v = v.trim_ascii();
    let (host, port) = if let Some(rest) = v.strip_prefix(b"[") {
        let end = memchr::memchr(b']', rest)?;
        let addr = std::str::from_utf8(&rest[..end]).ok()?;
        addr.parse::<std::net::Ipv6Addr>().ok()?;
        let after = &rest[end + 1..];
        match after {
            [] => (&v[..end + 2], None),
            [b':', p @ ..] => (&v[..end + 2], Some(p)),
            _ => return None,
        }
    } else {
        match memchr::memrchr(b':', v) {
            Some(c) => (&v[..c], Some(&v[c + 1..])),
            None => (v, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => {
            let n: u32 = std::str::from_utf8(p).ok()?.parse().ok()?;
            if n == 0 || n > 65535 {
                return None;
            }
            Some(n as u16)
        }
    };
    if !host.starts_with(b"[") && !valid_hostname(host) {
        return None;
    }
    Some((host.to_vec(), port))
}

/// libhtp's `validate_hostname`.
fn valid_hostname(h: &[u8]) -> bool {
    if h.is_empty() || h.len() > 255 || h.starts_with(b".") || h.windows(2).any(|w| w == b"..") {
        return false;
    }
    h.split(|&b| b == b'.').all(|label| {
        label.len() <= 63
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Content-Encoding as libhtp reads it: one known value is fine; otherwise each of up to two
/// layers (split at `,` and spaces) must be a known coding spelled exactly (`identity` is
/// known on responses only).
fn content_encoding(ce: &[u8], request: bool, limit: usize, ev: &mut Events) {
    let fast: &[&[u8]] = &[
        b"gzip",
        b"x-gzip",
        b"deflate",
        b"x-deflate",
        b"br",
        b"lzma",
        b"inflate",
        b"none",
    ];
    if fast.iter().any(|f| ce.eq_ignore_ascii_case(f)) {
        return;
    }
    let layers = ce
        .split(|&b| b == b',' || b == b' ')
        .filter(|t| !t.is_empty());
    for (n, t) in layers.enumerate() {
        if n + 1 > limit {
            ev.raise("too_many_encoding_layers");
            return;
        }
        let ok = if contains_nocase(t, b"gzip") {
            t == b"gzip" || t == b"x-gzip"
        } else if contains_nocase(t, b"deflate") {
            t == b"deflate" || t == b"x-deflate"
        } else if t == b"lzma" {
            // libhtp allows no LZMA layer in a list by default (`lzma-enabled: no`).
            ev.raise(if request {
                "request_too_many_lzma_layers"
            } else {
                "response_too_many_lzma_layers"
            });
            return;
        } else {
            t == b"inflate" || t == b"none" || (!request && t == b"identity")
        };
        if !ok {
            ev.raise("abnormal_ce_header");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Vec<&'static str> {
        let mut ev = Events::default();
        raw_request(text.as_bytes(), &mut ev);
        ev.names()
    }

    fn raw_resp(text: &str) -> Vec<&'static str> {
        let mut ev = Events::default();
        raw_response(text.as_bytes(), &mut ev);
        ev.names()
    }

    #[test]
    fn raw_response_events() {
        assert!(raw_resp("HTTP/1.1 200 OK\r\nA: b\r\n  folded\r\n\r\n").is_empty());
        assert!(raw_resp("http/01.1 200 OK\rA: b\r\r").is_empty());
        assert_eq!(
            raw_resp("HTTP/2.0 20x OK\r\n\r\n"),
            [
                "response_line_invalid_protocol",
                "response_line_invalid_response_status"
            ]
        );
        assert_eq!(
            raw_resp("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"),
            ["response_field_missing_colon"]
        );
        assert_eq!(
            raw_resp("HTTP/1.1 200 OK\r\n  X-New: 1\r\n\r\n"),
            ["invalid_response_field_folding"]
        );
        assert_eq!(
            raw_resp("HTTP/1.1 200 OK\r\nX-A : 1\r\n: 2\r\nX(B): 3\r\n\r\n"),
            [
                "response_invalid_empty_name",
                "response_invalid_lws_after_name",
                "response_header_name_not_token"
            ]
        );
    }

    #[test]
    fn request_line_events() {
        assert!(raw("GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_empty());
        assert_eq!(
            raw(" GET / HTTP/1.1\r\n\r\n"),
            ["request_line_leading_whitespace"]
        );
        assert_eq!(
            raw("GET\t/ HTTP/1.1\r\n\r\n"),
            ["method_delim_non_compliant"]
        );
        assert!(
            raw("GET  / HTTP/1.1\r\n\r\n").is_empty(),
            "two spaces are fine"
        );
        assert_eq!(
            raw("GET /a\tb HTTP/1.1\r\n\r\n"),
            ["uri_delim_non_compliant"]
        );
        assert!(
            raw("GET /a b HTTP/1.1\r\n\r\n").is_empty(),
            "spaces in the URI pass"
        );
        assert_eq!(
            raw("GET /\nFakeHeader: x\n\n"),
            ["request_line_missing_protocol"]
        );
        assert!(raw("GET /\r\n\r\n").is_empty(), "HTTP/0.9");
        assert_eq!(raw("FOO\r\n\r\n"), ["request_line_unknown_method"]);
        assert_eq!(
            raw("FOO /\r\n\r\n"),
            ["request_line_unknown_method_no_protocol"]
        );
        assert_eq!(
            raw("FOO / XTTP/1.1\r\n\r\n"),
            ["request_line_unknown_method_invalid_protocol"]
        );
        assert!(raw("FOO / HTTP/1.1\r\n\r\n").is_empty());
        assert_eq!(
            raw("GET / HTTP/01.1\r\n\r\n"),
            ["protocol_contains_extra_data"]
        );
    }

    #[test]
    fn header_line_events() {
        assert_eq!(
            raw("GET / HTTP/1.1\r\nNoColon\r\n\r\n"),
            ["request_field_missing_colon"]
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\n: v\r\n\r\n"),
            ["request_field_missing_colon"]
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nX Foo: 1\r\n\r\n"),
            ["request_header_invalid"]
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nName : 1\r\nX(y): 2\r\n\r\n"),
            ["request_invalid_lws_after_name"],
            "one flag for both"
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\n folded: 1\r\n\r\n"),
            ["invalid_request_field_folding"]
        );
        assert!(
            raw("GET / HTTP/1.1\r\nA: 1\r\n  more\r\n\r\n").is_empty(),
            "obs-fold joins"
        );
        assert_eq!(
            raw("GET / HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n"),
            ["request_header_repetition"]
        );
        let many: String = (0..1025).map(|i| format!("H{i}: x\r\n")).collect();
        assert!(
            raw(&format!("GET / HTTP/1.1\r\n{many}\r\n")).is_empty(),
            "1025 pass"
        );
        let many: String = (0..1026).map(|i| format!("H{i}: x\r\n")).collect();
        assert_eq!(
            raw(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            ["request_too_many_headers"]
        );
        let long = "a".repeat(FIELD_LIMIT);
        assert_eq!(
            raw(&format!("GET /{long} HTTP/1.1\r\n\r\n")),
            ["request_field_too_long"]
        );
    }

    #[test]
    fn encodings_and_hosts() {
        let ce = |v: &str, req: bool| {
            let mut ev = Events::default();
            content_encoding(v.as_bytes(), req, LAYER_LIMIT, &mut ev);
            ev.names()
        };
        assert!(ce("gzip", true).is_empty());
        assert!(ce("GZIP", false).is_empty());
        assert_eq!(ce("identity", true), ["abnormal_ce_header"]);
        assert!(ce("identity", false).is_empty());
        assert_eq!(ce("gzip, gzip, gzip", false), ["too_many_encoding_layers"]);
        assert_eq!(
            ce("identity, identity, gzip, identity, gzip, gzip", false),
            ["too_many_encoding_layers"]
        );
        assert_eq!(ce("xgzipx", false), ["abnormal_ce_header"]);
        assert_eq!(ce("foo, gzip", false), ["abnormal_ce_header"]);
        assert!(ce("lzma", false).is_empty(), "alone: decoded");
        assert_eq!(ce("gzip, lzma", false), ["response_too_many_lzma_layers"]);
        assert_eq!(ce("lzma,gzip", true), ["request_too_many_lzma_layers"]);
        assert_eq!(
            split_host(b"[::1]:8000"),
            Some((b"[::1]".to_vec(), Some(8000)))
        );
        assert_eq!(split_host(b"a.example:0"), None);
        assert_eq!(split_host(b"a..example"), None);
        assert_eq!(split_host(b"a.example:"), None);
        assert_eq!(split_host(b"bad host"), None);
        assert_eq!(
            split_host(b"A.Example"),
            Some((b"A.Example".to_vec(), None))
        );
    }

    fn head(raw: &str) -> Vec<&'static str> {
        let mut lines = raw.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let (m, t) = (first.next().unwrap(), first.next().unwrap());
        let mut h = http::HeaderMap::new();
        // What a forward proxy's parsed head holds: Host from the absolute URI.
        h.insert("host", "proxied.test".parse().unwrap());
        let mut head = RequestHead::new(
            m.parse().unwrap(),
            t.parse().unwrap(),
            http::Version::HTTP_11,
            h,
            80,
        );
        head.raw = Some(bytes::Bytes::copy_from_slice(raw.as_bytes()));
        request(&head, LAYER_LIMIT).names()
    }

    #[test]
    fn host_events_read_the_raw_head() {
        assert_eq!(
            head("GET http://a.test/ HTTP/1.1\r\n\r\n"),
            ["missing_host_header"]
        );
        assert!(head("GET http://a.test/ HTTP/1.1\r\nHost: A.test\r\n\r\n").is_empty());
        assert_eq!(
            head("GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n"),
            ["host_header_ambiguous"]
        );
        assert!(
            head("GET http://u:p@a.test:8080/ HTTP/1.1\r\nHost: a.test:8080\r\n\r\n").is_empty(),
            "user info raises nothing"
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n"),
            ["request_header_host_invalid", "request_header_repetition"]
        );
    }

    #[test]
    fn keyword_names() {
        assert_eq!(parse_keyword("http.request_auth_unrecognized"), Ok(30));
        assert!(parse_keyword("HTTP1.Missing_Host_Header").is_ok());
        assert!(parse_keyword("http.no_such_event")
            .unwrap_err()
            .contains("unknown"));
        assert!(parse_keyword("smtp.invalid_reply")
            .unwrap_err()
            .contains("smtp"));
        assert!(NAMES.len() <= 128);
    }
}
