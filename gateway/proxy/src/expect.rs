//! `Expect: 100-continue` passed through to the origin. hyper's server answers `100 Continue`
//! by itself the first time a request body is read, so the client's body is not read until the
//! origin says `100 Continue` (or says nothing for [`EXPECT_WAIT`], an origin that ignores the
//! expectation, as curl waits one second), and never when the origin answers first: its 413 or
//! 401 saves the client the upload.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, StatusCode, Version};
use http_body_util::{BodyExt, StreamBody};

use crate::upstream::ProxyBody;

/// How long the origin may stay silent before the body is sent anyway.
pub(crate) const EXPECT_WAIT: Duration = Duration::from_secs(1);

/// Whether the client asked for `100-continue` (HTTP/1.1 only; h2 has no such handshake here).
pub(crate) fn wants_continue(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers
            .get_all(header::EXPECT)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// The gate between the client's body and the origin.
#[derive(Clone, Default)]
pub(crate) struct Gate {
    /// The origin said 100 Continue.
    continued: Arc<tokio::sync::Notify>,
    /// The gate opened: the client's body is being read (a body dropped before that is not
    /// drained, which would make hyper send the 100 the origin did not).
    pub opened: Arc<AtomicBool>,
}

impl Gate {
    /// Registers the origin's `100 Continue` on the upstream request.
    pub(crate) fn watch(&self, req: &mut Request<ProxyBody>) {
        let continued = Arc::clone(&self.continued);
        hyper::ext::on_informational(req, move |res| {
            if res.status() == StatusCode::CONTINUE {
                continued.notify_one();
            }
        });
    }

    /// `body`, read only once the origin said 100 Continue or [`EXPECT_WAIT`] passed.
    pub(crate) fn hold(&self, body: ProxyBody) -> ProxyBody {
        let gate = self.clone();
        let stream =
            futures_util::stream::unfold((Some(gate), body), |(gate, mut body)| async move {
                if let Some(g) = gate {
                    tokio::select! {
                        () = g.continued.notified() => {}
                        () = tokio::time::sleep(EXPECT_WAIT) => {}
                    }
                    g.opened.store(true, Ordering::Release);
                }
                let f = body.frame().await?;
                Some((f, (None, body)))
            });
        StreamBody::new(stream).boxed_unsync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http11_100_continue_counts() {
        let mut h = HeaderMap::new();
        assert!(!wants_continue(Version::HTTP_11, &h));
        h.insert(
            header::EXPECT,
            "100-Continue".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(wants_continue(Version::HTTP_11, &h));
        assert!(!wants_continue(Version::HTTP_10, &h));
        assert!(!wants_continue(Version::HTTP_2, &h));
        h.insert(
            header::EXPECT,
            "something-else".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!wants_continue(Version::HTTP_11, &h));
    }
}
