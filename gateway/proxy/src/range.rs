//! `Range` requests where a stage scans whole files (`[policy] range_requests = "whole"`): the
//! range is taken off the request, the whole file is fetched and judged, and the client gets the
//! range it asked for (RFC 9110 §14). One range only; several, an `If-Range` that does not
//! match, or a range the file does not hold get the whole file (200), which RFC 9110 allows.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::upstream::ProxyBody;

/// The range a client asked for, kept while the whole file is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    spec: Option<Spec>,
    /// The `If-Range` validator, checked against the response.
    if_range: Option<String>,
}

/// One byte range as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-` or `first-last`.
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl Wanted {
    /// Takes `Range` and `If-Range` off `headers`; None when there was no `Range`.
    pub(crate) fn take(headers: &mut HeaderMap) -> Option<Wanted> {
        let range = headers.remove(header::RANGE)?;
        let if_range = headers
            .remove(header::IF_RANGE)
            .and_then(|v| v.to_str().ok().map(str::to_string));
        Some(Wanted {
            spec: range.to_str().ok().and_then(parse),
            if_range,
        })
    }

    /// The inclusive byte range to answer for a 200 response of `total` bytes with these
    /// headers, or None (the whole file).
    pub(crate) fn answer(&self, headers: &HeaderMap, total: u64) -> Option<(u64, u64)> {
        if let Some(v) = &self.if_range {
            if !validator_matches(v, headers) {
                return None;
            }
        }
        let (first, last) = match self.spec? {
            Spec::From { first, last } => {
                (first, last.unwrap_or(u64::MAX).min(total.checked_sub(1)?))
            }
            Spec::Suffix(0) => return None,
            Spec::Suffix(n) => (total.saturating_sub(n), total.checked_sub(1)?),
        };
        (first <= last && first < total).then_some((first, last))
    }
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n`; None for several ranges or anything else.
fn parse(v: &str) -> Option<Spec> {
    let set = v.trim().strip_prefix("bytes=")?;
    if set.contains(',') {
        return None;
    }
    let (a, b) = set.trim().split_once('-')?;
    let num = |s: &str| s.trim().parse::<u64>().ok();
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => Some(Spec::Suffix(num(b)?)),
        (false, true) => Some(Spec::From {
            first: num(a)?,
            last: None,
        }),
        (false, false) => {
            let (first, last) = (num(a)?, num(b)?);
            (first <= last).then_some(Spec::From {
                first,
                last: Some(last),
            })
        }
        (true, true) => None,
    }
}

/// An `If-Range` entity tag must match the response's strong `ETag`; a date must equal its
/// `Last-Modified`.
fn validator_matches(v: &str, headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|x: &HeaderValue| x.to_str().ok());
    if v.starts_with('"') || v.starts_with("W/") {
        !v.starts_with("W/") && get(header::ETAG) == Some(v)
    } else {
        get(header::LAST_MODIFIED) == Some(v)
    }
}

/// Turns a 200 response head into the 206 for bytes `first..=last` of `total`.
pub(crate) fn partial_head(parts: &mut http::response::Parts, first: u64, last: u64, total: u64) {
    parts.status = StatusCode::PARTIAL_CONTENT;
    let h = &mut parts.headers;
    if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{total}")) {
        h.insert(header::CONTENT_RANGE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(last - first + 1));
}

/// The bytes `first..=last` of `body`.
pub(crate) fn slice(body: ProxyBody, first: u64, last: u64) -> ProxyBody {
    let mut at = 0u64;
    let frames = BodyStream::new(body).filter_map(move |f| {
        let out = match f {
            Err(e) => Some(Err(e)),
            Ok(frame) => match frame.into_data() {
                Err(_) => None,
                Ok(data) => {
                    let (start, end) = (at, at + data.len() as u64);
                    at = end;
                    let lo = first.max(start);
                    let hi = (last + 1).min(end);
                    (lo < hi).then(|| {
                        let piece: Bytes = data.slice((lo - start) as usize..(hi - start) as usize);
                        Ok(http_body::Frame::data(piece))
                    })
                }
            },
        };
        std::future::ready(out)
    });
    StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(range: &str, if_range: Option<&str>) -> Wanted {
        let mut h = HeaderMap::new();
        h.insert(
            header::RANGE,
            HeaderValue::from_str(range).unwrap_or_else(|_| unreachable!()),
        );
        if let Some(v) = if_range {
            h.insert(
                header::IF_RANGE,
                HeaderValue::from_str(v).unwrap_or_else(|_| unreachable!()),
            );
        }
        let w = Wanted::take(&mut h);
        assert!(h.is_empty(), "Range and If-Range are taken off the request");
        w.unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn ranges_as_rfc_9110_reads_them() {
        let none = HeaderMap::new();
        assert_eq!(
            wanted("bytes=0-99", None).answer(&none, 1000),
            Some((0, 99))
        );
        assert_eq!(
            wanted("bytes=990-2000", None).answer(&none, 1000),
            Some((990, 999))
        );
        assert_eq!(
            wanted("bytes=500-", None).answer(&none, 1000),
            Some((500, 999))
        );
        assert_eq!(
            wanted("bytes=-100", None).answer(&none, 1000),
            Some((900, 999))
        );
        assert_eq!(
            wanted("bytes=-5000", None).answer(&none, 1000),
            Some((0, 999))
        );
        for whole in [
            "bytes=1000-",
            "bytes=0-1,5-9",
            "bytes=9-1",
            "items=0-1",
            "bytes=-0",
            "bytes=-",
        ] {
            assert_eq!(wanted(whole, None).answer(&none, 1000), None, "{whole}");
        }
        assert_eq!(wanted("bytes=0-", None).answer(&none, 0), None);
    }

    #[test]
    fn if_range_must_match_the_response() {
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Tue, 01 Dec 2026 00:00:00 GMT"),
        );
        assert_eq!(
            wanted("bytes=0-9", Some("\"v1\"")).answer(&h, 100),
            Some((0, 9))
        );
        assert_eq!(wanted("bytes=0-9", Some("\"v2\"")).answer(&h, 100), None);
        assert_eq!(wanted("bytes=0-9", Some("W/\"v1\"")).answer(&h, 100), None);
        assert_eq!(
            wanted("bytes=0-9", Some("Tue, 01 Dec 2026 00:00:00 GMT")).answer(&h, 100),
            Some((0, 9))
        );
        assert_eq!(
            wanted("bytes=0-9", Some("Wed, 02 Dec 2026 00:00:00 GMT")).answer(&h, 100),
            None
        );
    }

    #[tokio::test]
    async fn slices_across_frames() {
        let frames = ["abc", "defg", "hij"]
            .map(|s| Ok::<_, crate::upstream::BoxError>(http_body::Frame::data(Bytes::from(s))));
        let body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let got = slice(body, 2, 7)
            .collect()
            .await
            .unwrap_or_else(|_| unreachable!());
        assert_eq!(got.to_bytes(), Bytes::from_static(b"cdefgh"));
    }
}
