//! What a stage can say besides a verdict: the response the client gets, and why it failed.

/// The response a stage chooses for the client. With [`crate::Verdict::Block`] it replaces the
/// gateway's 403 block page; with any other verdict it is an *answer*: the gateway replies
/// itself, nothing goes upstream and later stages are not asked (a warning page's continue link,
/// a WAF `redirect`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Respond {
    /// The block page with this status instead of 403 (a WAF `deny,status:406`).
    Status(u16),
    /// A redirect: `status` (301, 302, 303, 307 or 308) to `location`.
    Redirect {
        /// The redirect status.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// The warning page: the block page's facts plus a link that lets the user go on.
    Warn {
        /// Where the "continue" link points.
        continue_url: String,
    },
}

impl Respond {
    /// The HTTP status this response is sent with.
    pub fn status(&self) -> u16 {
        match self {
            Respond::Status(s) => *s,
            Respond::Redirect { status, .. } => *status,
            Respond::Warn { .. } => 403,
        }
    }
}

/// Why a stage could not decide ([`crate::Cx::fail`]); the stage's `on_error` turns it into a
/// verdict and the event's `rule.id` names the kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The engine failed (I/O, a scanner error, a corrupt rule set): `stage-error`.
    #[error("{0}")]
    Engine(String),
    /// The engine ran out of time: `stage-timeout`.
    #[error("{0}")]
    Timeout(String),
    /// The engine stopped at one of its own limits where its policy says that is an error:
    /// `stage-limit`.
    #[error("{0}")]
    Limit(String),
}

impl StageError {
    /// The `rule.id` of the event that reports it.
    pub fn rule(&self) -> &'static str {
        match self {
            StageError::Engine(_) => "stage-error",
            StageError::Timeout(_) => "stage-timeout",
            StageError::Limit(_) => "stage-limit",
        }
    }
}

impl From<String> for StageError {
    fn from(s: String) -> Self {
        StageError::Engine(s)
    }
}

impl From<&str> for StageError {
    fn from(s: &str) -> Self {
        StageError::Engine(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{
        Cx, FlowMeta, Inspector, Mode, Pipeline, RequestHead, Stage, StagePolicy, TlsHello, Verdict,
    };

    /// Says what it is told at the ClientHello and the request head.
    #[derive(Clone)]
    struct Says {
        name: &'static str,
        verdict: Verdict,
        respond: Option<Respond>,
        fail: Option<StageError>,
        splice: bool,
        calls: Arc<Mutex<u32>>,
        closed: Arc<Mutex<Vec<u64>>>,
    }

    fn says(name: &'static str, verdict: Verdict, respond: Option<Respond>) -> Says {
        Says {
            name,
            verdict,
            respond,
            fail: None,
            splice: false,
            calls: Arc::default(),
            closed: Arc::default(),
        }
    }

    impl Stage for Says {
        fn name(&self) -> &'static str {
            self.name
        }
        fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(self.clone())
        }
        fn connection_closed(&self, conn_id: u64) {
            if self.name == "panics" {
                panic!("connection_closed panics");
            }
            self.closed.lock().unwrap().push(conn_id);
        }
    }

    impl Inspector for Says {
        fn on_tls_hello(&mut self, cx: &mut Cx<'_>, _hello: &TlsHello) -> Verdict {
            if self.splice {
                cx.splice("because");
            }
            Verdict::Allow
        }
        fn on_request_head(&mut self, cx: &mut Cx<'_>, _head: &RequestHead) -> Verdict {
            *self.calls.lock().unwrap() += 1;
            if self.splice {
                cx.splice("too late");
            }
            if let Some(r) = self.respond.clone() {
                cx.respond(r);
            }
            if let Some(e) = self.fail.clone() {
                cx.fail(e);
            }
            self.verdict
        }
    }

    fn run(stages: &[(Says, Mode)]) -> crate::Flow {
        let mut p = Pipeline::new();
        for (s, mode) in stages {
            p.push(
                Arc::new(s.clone()),
                StagePolicy {
                    mode: *mode,
                    ..StagePolicy::default()
                },
            );
        }
        let meta = FlowMeta::new(
            1,
            "l",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut f = p.start(Arc::new(meta));
        let head = RequestHead::new(
            http::Method::GET,
            "http://h.test/x".parse().unwrap(),
            http::Version::HTTP_11,
            http::HeaderMap::new(),
            80,
        );
        f.request_head(&head);
        f
    }

    #[test]
    fn the_blocking_stage_chooses_the_block_response() {
        let a = says("a", Verdict::Alert, None);
        let b = says("b", Verdict::Block, Some(Respond::Status(406)));
        let c = says("c", Verdict::Block, Some(Respond::Status(451)));
        let f = run(&[
            (a, Mode::Prevent),
            (b, Mode::Prevent),
            (c.clone(), Mode::Prevent),
        ]);
        assert_eq!(f.verdict(), Verdict::Block);
        assert_eq!(f.block_response(), Some(&Respond::Status(406)));
        assert_eq!(f.blocking_finding().unwrap().stage, "b");
        assert_eq!(*c.calls.lock().unwrap(), 0, "no stage runs after a block");
        assert!(f.answer().is_none());
    }

    #[test]
    fn detect_mode_and_failures_do_not_choose_responses() {
        let d = says("d", Verdict::Block, Some(Respond::Status(406)));
        let f = run(&[(d, Mode::Detect)]);
        assert_eq!(f.verdict(), Verdict::Alert);
        assert!(f.block_response().is_none() && f.answer().is_none());
        let mut e = says("e", Verdict::Allow, Some(Respond::Status(406)));
        e.fail = Some(StageError::Timeout("slow".into()));
        let f = run(&[(e, Mode::Prevent)]);
        assert_eq!(f.verdict(), Verdict::Block, "fail-closed");
        assert!(
            f.block_response().is_none(),
            "a failed stage's response is not used"
        );
        assert_eq!(f.findings()[0].rule_id, "stage-timeout");
    }

    #[test]
    fn an_answer_ends_the_request_without_a_block() {
        let redirect = Respond::Redirect {
            status: 303,
            location: "http://h.test/".into(),
        };
        let a = says("a", Verdict::Allow, Some(redirect.clone()));
        let later = says("later", Verdict::Block, None);
        let f = run(&[(a, Mode::Prevent), (later.clone(), Mode::Prevent)]);
        assert_eq!(f.verdict(), Verdict::Allow);
        assert_eq!(f.answer(), Some(&redirect));
        assert!(f.block_response().is_none());
        assert_eq!(
            *later.calls.lock().unwrap(),
            0,
            "later stages are not asked"
        );
        // A block before the answer wins.
        let first = says("first", Verdict::Block, None);
        let a = says("a", Verdict::Allow, Some(redirect));
        let f = run(&[(first, Mode::Prevent), (a, Mode::Prevent)]);
        assert_eq!(f.verdict(), Verdict::Block);
        assert!(f.answer().is_none());
    }

    #[test]
    fn splice_requests_count_only_at_the_client_hello() {
        let mut s = says("s", Verdict::Allow, None);
        s.splice = true;
        let f = run(&[(s.clone(), Mode::Prevent)]);
        assert!(
            f.splice_requested().is_none(),
            "at the request head it is too late"
        );
        let mut p = Pipeline::new();
        p.push(Arc::new(s), StagePolicy::default());
        let meta = FlowMeta::new(
            1,
            "l",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut f = p.start(Arc::new(meta));
        f.tls_hello(&TlsHello::default());
        assert_eq!(f.splice_requested(), Some("s: because"));
    }

    #[test]
    fn error_kinds_name_their_rule() {
        assert_eq!(StageError::from("x").rule(), "stage-error");
        assert_eq!(StageError::Timeout("x".into()).rule(), "stage-timeout");
        assert_eq!(StageError::Limit("x".into()).rule(), "stage-limit");
        assert_eq!(
            Respond::Warn {
                continue_url: "u".into()
            }
            .status(),
            403
        );
    }

    #[test]
    fn every_stage_hears_a_connection_close_even_after_a_panic() {
        let first = says("panics", Verdict::Allow, None);
        let second = says("second", Verdict::Allow, None);
        let mut p = Pipeline::new();
        p.push(Arc::new(first), StagePolicy::default());
        p.push(Arc::new(second.clone()), StagePolicy::default());
        p.connection_closed(42);
        assert_eq!(*second.closed.lock().unwrap(), vec![42]);
    }
}
