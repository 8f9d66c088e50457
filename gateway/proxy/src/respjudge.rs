//! Judging upstream responses hyper refused or framed differently from libhtp: the stages
//! get the response as [`crate::respread`] reads it from the connection's recording
//! ([`crate::rawtap`]), and the client gets a 502 (nothing leniently read is forwarded).

use bytes::Bytes;
use http_body_util::BodyExt;
use sekisho_core::{Direction, HeldBody, ResponseHead, Verdict};

use crate::flowstate::FlowState;
use crate::rawtap::RAW_CAP;
use crate::respread::{contains_nocase, read};

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
    let tap = crate::rawtap::of_error(err)?;
    tap.read_rest(state.body_timeout()).await;
    state.set_raw_tap(tap);
    judge_recorded(state, head_request).await
}

/// Runs the flow's response phases on the response read leniently from the recording.
async fn judge_recorded(state: &FlowState, head_request: bool) -> Option<Verdict> {
    let raw = state.raw_response()?;
    let r = read(&raw, head_request, RAW_CAP)?;
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
pub(crate) async fn undelivered(state: &FlowState, delivered: u64) -> Option<Bytes> {
    state.read_rest().await;
    let raw = state.raw_response()?;
    let r = read(&raw, false, RAW_CAP)?;
    let from = usize::try_from(delivered).ok()?.min(r.body.len());
    Some(Bytes::from(r.body).slice(from..))
}

/// Why libhtp would frame the body of a response hyper accepted differently from hyper:
/// a `Transfer-Encoding` naming `chunked` other than as its last coding, `Transfer-Encoding`
/// beside `Content-Length`, a `Content-Length` that is not one plain number, or a body
/// announced on a 1xx or 204 response. `None` when both read it alike.
pub(crate) fn ambiguous(head: &ResponseHead) -> Option<&'static str> {
    let h = &head.headers;
    let te: Vec<&[u8]> = h
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    let cl: Vec<&[u8]> = h
        .get_all(http::header::CONTENT_LENGTH)
        .iter()
        .map(|v| v.as_bytes().trim_ascii())
        .collect();
    if !te.is_empty() {
        let named = te.iter().any(|t| contains_nocase(t, b"chunked"));
        let last = te
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        if named != last {
            return Some("Transfer-Encoding names chunked, but not as its last coding");
        }
        if !cl.is_empty() {
            return Some("both Transfer-Encoding and Content-Length");
        }
    }
    let plain = |v: &&[u8]| !v.is_empty() && v.iter().all(u8::is_ascii_digit);
    if !cl.iter().all(plain) || cl.windows(2).any(|w| w[0] != w[1]) {
        return Some("a Content-Length that is not one plain number");
    }
    let status = head.status.as_u16();
    let bodyless = (100..200).contains(&status) || status == 204;
    let announced = !te.is_empty() || cl.first().is_some_and(|v| v.iter().any(|&b| b != b'0'));
    (bodyless && announced).then_some("a body announced on a response that has none")
}

/// Judges a response whose framing is [`ambiguous`]: what hyper reads of its body (bounded)
/// and what the upstream still sends are recorded, then judged as libhtp reads them.
pub(crate) async fn judge_ambiguous(
    state: &FlowState,
    mut body: hyper::body::Incoming,
    head_request: bool,
) -> Option<Verdict> {
    let wait = state.body_timeout();
    let mut seen = 0usize;
    // hyper's reading (its own framing) records the bytes; stop once libhtp's message is whole.
    while seen < RAW_CAP && !recorded_whole(state, head_request) {
        match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(Ok(f))) => seen += f.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    drop(body);
    if !recorded_whole(state, head_request) {
        state.read_rest().await;
    }
    judge_recorded(state, head_request).await
}

/// Whether the recording holds the whole message as libhtp frames it.
fn recorded_whole(state: &FlowState, head_request: bool) -> bool {
    state
        .raw_response()
        .and_then(|raw| read(&raw, head_request, RAW_CAP))
        .is_some_and(|r| r.complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
        let mut headers = http::HeaderMap::new();
        for (n, v) in fields {
            headers.append(
                http::header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        ResponseHead {
            status: http::StatusCode::from_u16(status).unwrap(),
            version: http::Version::HTTP_11,
            headers,
            reason: None,
            raw: None,
            wire: None,
        }
    }

    #[test]
    fn framing_libhtp_and_hyper_read_alike_passes() {
        assert!(ambiguous(&head(200, &[("transfer-encoding", "chunked")])).is_none());
        assert!(ambiguous(&head(200, &[("transfer-encoding", "gzip, chunked")])).is_none());
        assert!(ambiguous(&head(200, &[("content-length", "12")])).is_none());
        assert!(ambiguous(&head(
            200,
            &[("content-length", "7"), ("content-length", "7")]
        ))
        .is_none());
        assert!(ambiguous(&head(204, &[("content-length", "0")])).is_none());
        assert!(ambiguous(&head(304, &[("content-length", "500")])).is_none());
        assert!(ambiguous(&head(200, &[("transfer-encoding", "gzip")])).is_none());
    }

    #[test]
    fn framing_they_would_read_differently_is_named() {
        for h in [
            head(200, &[("transfer-encoding", "xchunked")]),
            head(200, &[("transfer-encoding", "chunked, lalala")]),
            head(
                200,
                &[("transfer-encoding", "chunked"), ("content-length", "3")],
            ),
            head(
                200,
                &[("transfer-encoding", "lalala"), ("content-length", "3")],
            ),
            head(200, &[("content-length", "68,68")]),
            head(200, &[("content-length", "68"), ("content-length", "34")]),
            head(204, &[("content-length", "68")]),
            head(204, &[("transfer-encoding", "chunked")]),
        ] {
            assert!(ambiguous(&h).is_some(), "{:?}", h.headers);
        }
    }
}
