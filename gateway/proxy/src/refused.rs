//! Requests hyper refuses as malformed still reach the stages: the head, as the client sent it
//! and read leniently (the way an IDS's HTTP parser reads what a server might accept), goes
//! through the listener's pipeline as a request head, so the IPS raises the HTTP anomaly
//! events that explain the refusal (`app-layer-event` rules) and any other rule that matches
//! it. The client has already had hyper's 400; the flow is logged with that status.
//!
//! A head the client never finished (it closed the connection, or stopped sending until the
//! read timeout) is judged the same way on its complete lines, once its request line is
//! complete: an IDS inspects the request line as soon as it has it (Suricata's `http.uri`
//! alerts on a request whose headers never end).

use std::sync::Arc;

use bytes::Bytes;
use sekisho_core::{DestinationInfo, RequestHead};

use crate::conn::ConnInfo;
use crate::flowstate::{FlowState, HttpFacts};
use crate::shared::Shared;
use crate::wire::new_meta;

/// Why a head reached no request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unserved {
    /// hyper refused it as malformed and answered 400.
    Malformed,
    /// The client closed, or went quiet past the read timeout, before the head was complete.
    Unfinished,
}

impl Unserved {
    /// Why the connection `err` ended leaves a head to judge, if it does.
    pub(crate) fn of(err: &hyper::Error) -> Option<Unserved> {
        match crate::shed::classify(err) {
            Some(crate::shed::Attack::Malformed) => Some(Unserved::Malformed),
            Some(crate::shed::Attack::SlowHead) => Some(Unserved::Unfinished),
            None if err.is_incomplete_message() => Some(Unserved::Unfinished),
            _ => None,
        }
    }
}

/// An unfinished head up to its last complete line, when that includes the request line.
fn complete_lines(raw: Bytes) -> Option<Bytes> {
    let start = raw.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let end = raw.iter().rposition(|&b| b == b'\n')?;
    (end > start).then(|| raw.slice(..=end))
}

/// Judges a head that reached no request (see the module documentation). `scheme` is the
/// listener's: a forward proxy's targets are absolute, an origin-form target gets the Host
/// header.
pub(crate) async fn judge(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    raw: Bytes,
    scheme: &str,
    why: Unserved,
) {
    let raw = match why {
        Unserved::Malformed => raw,
        Unserved::Unfinished => match complete_lines(raw) {
            Some(r) => r,
            None => return,
        },
    };
    let Some(head) = lenient_head(raw, scheme) else {
        return;
    };
    let meta = new_meta(shared, conn, &head.host, head.port);
    let url = head.uri.to_string();
    let http = HttpFacts {
        method: Some(head.method.to_string()),
        url: Some(url),
        host: Some(head.host.clone()),
        path: Some(head.path_and_query().to_string()),
        user_agent: head
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: (why == Unserved::Malformed).then_some(400),
        request_id: None,
    };
    let dest = DestinationInfo {
        ip: None,
        port: Some(head.port),
        domain: Some(head.host.clone()),
    };
    let flow = shared.pipeline(conn.index).start(Arc::new(meta));
    let state = FlowState::new(Arc::clone(shared), flow, http, dest);
    {
        let mut flow = state.flow.lock().await;
        flow.request_head(&head);
        state.emit(&mut flow).await;
    }
    state.set_error(match why {
        Unserved::Malformed => "request refused as malformed (400)",
        Unserved::Unfinished => "the client stopped before its request head was complete",
    });
    state.finish();
}

/// A request head read leniently from its raw bytes: method and target from the first
/// non-empty line (HTTP/0.9 when the protocol is missing), headers from the lines that have a
/// valid name and value (others are left to the raw head, which the stages also see).
pub(crate) fn lenient_head(raw: Bytes, scheme: &str) -> Option<RequestHead> {
    let text = &raw[..];
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.by_ref().find(|l| !l.is_empty())?;
    let mut parts = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let method = http::Method::from_bytes(parts.next()?).ok()?;
    let target = parts.next().unwrap_or(b"/");
    let version = match parts.next_back() {
        Some(b"HTTP/1.1") => http::Version::HTTP_11,
        Some(p) if p.starts_with(b"HTTP/1") => http::Version::HTTP_10,
        Some(p) if p.starts_with(b"HTTP/2") => http::Version::HTTP_2,
        _ => http::Version::HTTP_09,
    };
    let mut headers = http::HeaderMap::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let Some(colon) = memchr::memchr(b':', l) else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(l[..colon].trim_ascii()),
            http::HeaderValue::from_bytes(l[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        if headers.len() < 1024 {
            headers.append(n, v);
        }
    }
    let uri = target_uri(target, scheme, &headers)?;
    let port = if scheme == "https" { 443 } else { 80 };
    let mut head = RequestHead::new(method, uri, version, headers, port);
    head.raw = Some(raw);
    Some(head)
}

/// The target as a URI: absolute as sent, or origin-form made absolute with the Host header;
/// bytes a URI cannot hold percent-encoded.
fn target_uri(target: &[u8], scheme: &str, headers: &http::HeaderMap) -> Option<http::Uri> {
    let mut t = String::with_capacity(target.len());
    for &b in target {
        if b.is_ascii_graphic() && !crate::headtap::needs_encoding(b) {
            t.push(b as char);
        } else {
            t.push_str(&format!("%{b:02X}"));
        }
    }
    if t.contains("://") {
        return t.parse().ok();
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.parse::<http::uri::Authority>().is_ok())
        .unwrap_or("invalid.host");
    let path = if t.starts_with('/') {
        t
    } else {
        format!("/{t}")
    };
    format!("{scheme}://{host}{path}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_heads_are_judged_on_their_complete_lines() {
        let c = |b: &'static [u8]| complete_lines(Bytes::from_static(b));
        assert_eq!(
            c(b"POST /x HTTP/1.0\r\nUser-Agent: Moz").as_deref(),
            Some(&b"POST /x HTTP/1.0\r\n"[..])
        );
        assert_eq!(
            c(b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n").as_deref(),
            Some(&b"\r\nGET /a HTTP/1.1\r\nHost: a\r\n"[..])
        );
        assert_eq!(c(b"POST /x HT"), None, "no complete request line");
        assert_eq!(c(b"\r\n\r\n"), None);
        assert_eq!(c(b""), None);
    }

    #[test]
    fn lenient_heads() {
        let h = lenient_head(
            Bytes::from_static(b"GET /\nFakeHeader\nHost: a.test\n\n"),
            "http",
        )
        .unwrap();
        assert_eq!(h.version, http::Version::HTTP_09);
        assert_eq!(h.host, "a.test");
        assert_eq!(h.uri.to_string(), "http://a.test/");
        let h = lenient_head(
            Bytes::from_static(
                b"POST http://b.test/x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\nX Bad: 1\r\n\r\n",
            ),
            "http",
        )
        .unwrap();
        assert_eq!(h.headers.get_all("content-length").iter().count(), 2);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.host, "b.test");
        let h = lenient_head(Bytes::from_static(b"GET /a\tb<c HTTP/1.1\r\n\r\n"), "http").unwrap();
        assert_eq!(h.uri.path(), "/a");
        assert!(lenient_head(Bytes::from_static(b"\r\n\r\n"), "http").is_none());
        assert!(lenient_head(Bytes::from_static(b"G(T / HTTP/1.1\r\n\r\n"), "http").is_none());
    }
}
