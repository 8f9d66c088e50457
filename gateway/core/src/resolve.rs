//! Deciding on a held body: every holding stage's [`Inspector::resolve`], each raced against its
//! own deadline on the driver's clock, with panics caught. A body is released only after every
//! holding stage answered; a stage that did not answer in time (or panicked, or failed) gets its
//! `on_error`. A decision abandoned half-way (the caller dropped the future) leaves every stage
//! that had not answered still holding, so [`Flow::resolve_failed`] or [`Flow::overflow`] still
//! reach it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{select, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

use crate::pipeline::{panic_reason, Active, Failed, Failure, Phase};
use crate::{BoxFuture, Cx, Direction, Flow, FlowMeta, HeldBody, Mode, OnError, Verdict};

/// The driver's clock. Core waits on it for stage deadlines without depending on a runtime: the
/// proxy passes tokio's timer, tests a scripted one.
pub trait Timer: Send + Sync {
    /// A future that completes once `after` has passed.
    fn sleep(&self, after: Duration) -> BoxFuture<'static, ()>;
}

/// How one stage's decision ended.
enum Outcome {
    Answered(Verdict),
    TimedOut(Duration),
    Panicked(String),
}

/// One stage's decision, with what it reported on the way.
struct Answer<'m> {
    index: usize,
    outcome: Outcome,
    cx: Cx<'m>,
}

impl Answer<'_> {
    /// True when this answer blocks the flow whatever the others say.
    fn blocks(&self, mode: Mode, on_error: OnError) -> bool {
        let failed = match self.outcome {
            Outcome::Answered(_) => self.cx.error.is_some(),
            _ => true,
        };
        let raw = match self.outcome {
            Outcome::Answered(v) => v,
            _ => Verdict::Allow,
        };
        mode == Mode::Prevent
            && if failed {
                on_error == OnError::FailClosed
            } else {
                raw == Verdict::Block
            }
    }
}

/// A stage's [`Inspector::hold_limit`] for `dir` (none if it panics: the whole body is held).
pub(crate) fn limit_of(a: &Active, dir: Direction) -> Option<usize> {
    if a.failed != Failed::No {
        return None;
    }
    std::panic::catch_unwind(AssertUnwindSafe(|| a.inspector.hold_limit(dir))).unwrap_or(None)
}

/// Runs one stage's `resolve` against its deadline, catching a panic.
async fn decide<'m>(
    index: usize,
    active: &mut Active,
    meta: &'m FlowMeta,
    late: Option<&crate::stage::LateReporter>,
    held: &HeldBody,
    timer: &dyn Timer,
) -> Answer<'m> {
    let limit = active.deadline;
    let mut cx = Cx::with_deadline(meta, Instant::now() + limit);
    cx.late = late.map(|l| l.for_stage(active.name));
    let outcome = {
        let inspector = &mut active.inspector;
        let cx = &mut cx;
        let work =
            AssertUnwindSafe(async move { inspector.resolve(cx, held).await }).catch_unwind();
        match select(Box::pin(work), timer.sleep(limit)).await {
            Either::Left((Ok(v), _)) => Outcome::Answered(v),
            Either::Left((Err(p), _)) => Outcome::Panicked(panic_reason(p)),
            Either::Right(((), _)) => Outcome::TimedOut(limit),
        }
    };
    Answer { index, outcome, cx }
}

impl Flow {
    /// Asks every stage holding `dir` to decide on the held body. The stages decide concurrently,
    /// each within its own deadline (`resolve_timeout_secs`) on `timer`; the first answer that
    /// blocks ends the wait. Returns the flow's verdict once every holding stage answered or
    /// failed (never `Hold`).
    pub async fn resolve(&mut self, dir: Direction, held: &HeldBody, timer: &dyn Timer) -> Verdict {
        self.decide_holders(dir, held, timer, |_| true).await;
        if self.verdict != Verdict::Block && self.holding(dir) {
            // Only a block ends the wait early, so this cannot happen; if it ever did, the stages
            // still holding get their on_error rather than a silent release.
            self.resolve_failed(dir, "the decision ended without this stage's answer");
        }
        self.release(dir);
        self.verdict
    }

    /// Whether a stage holding `dir` has its [`Inspector::hold_limit`] within `held` bytes, so
    /// [`Flow::resolve_due`] should run before the body goes on.
    pub fn hold_due(&self, dir: Direction, held: usize) -> bool {
        self.actives
            .iter()
            .any(|a| a.holding[dir.index()] && limit_of(a, dir).is_some_and(|l| held >= l))
    }

    /// Asks the stages holding `dir` whose hold limit `held` reached to decide on it (a prefix
    /// of the body, [`HeldBody::is_prefix`]); they stop holding, the others go on holding.
    /// Returns the flow's verdict: `Hold` while any stage still holds `dir`.
    pub async fn resolve_due(
        &mut self,
        dir: Direction,
        held: &HeldBody,
        timer: &dyn Timer,
    ) -> Verdict {
        let len = held.len();
        self.decide_holders(dir, held, timer, |a| {
            limit_of(a, dir).is_some_and(|l| len >= l)
        })
        .await;
        self.current(Some(dir))
    }

    /// Runs `resolve` on the stages holding `dir` that `which` selects, concurrently, and
    /// settles their answers in stage order.
    async fn decide_holders(
        &mut self,
        dir: Direction,
        held: &HeldBody,
        timer: &dyn Timer,
        which: impl Fn(&Active) -> bool,
    ) {
        let d = dir.index();
        let meta = Arc::clone(self.meta());
        let late = self.late.clone();
        let mut answers = Vec::new();
        if self.verdict != Verdict::Block {
            let policies: Vec<_> = self
                .actives
                .iter()
                .map(|a| (a.policy.mode, a.policy.on_error))
                .collect();
            let mut pending: FuturesUnordered<_> = self
                .actives
                .iter_mut()
                .enumerate()
                .filter(|(_, a)| a.holding[d] && which(a))
                .map(|(i, a)| decide(i, a, &meta, late.as_ref(), held, timer))
                .collect();
            while let Some(answer) = pending.next().await {
                let (mode, on_error) = policies[answer.index];
                let stop = answer.blocks(mode, on_error);
                answers.push(answer);
                if stop {
                    break;
                }
            }
        }
        answers.sort_by_key(|a| a.index);
        for answer in answers {
            self.settle_answer(answer, dir);
        }
    }

    fn settle_answer(&mut self, answer: Answer<'_>, dir: Direction) {
        let Answer { index, outcome, cx } = answer;
        self.actives[index].holding[dir.index()] = false;
        let what = dir.as_str();
        let (raw, failure) = match outcome {
            Outcome::Answered(Verdict::Hold) => (
                Verdict::Allow,
                Some(Failure {
                    rule: "stage-error",
                    reason: format!("resolve answered hold for the {what} body"),
                }),
            ),
            Outcome::Answered(v) => (v, None),
            Outcome::TimedOut(limit) => (
                Verdict::Allow,
                Some(Failure {
                    rule: "stage-timeout",
                    reason: format!("no decision on the held {what} body within {limit:?}"),
                }),
            ),
            Outcome::Panicked(reason) => (
                Verdict::Allow,
                Some(Failure {
                    rule: "stage-panic",
                    reason,
                }),
            ),
        };
        self.settle(index, raw, cx, &Phase::Resolve, failure);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Evidence, Finding, Inspector, Pipeline, RequestHead, Severity, Stage, StagePolicy,
    };
    use bytes::Bytes;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// How a test stage decides on a held body.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Decides {
        /// Answers this verdict after this many polls of its own.
        After(u32, Verdict),
        /// Never answers.
        Never,
        /// Panics when asked.
        Panics,
    }

    struct Holder(&'static str, Decides);
    struct HolderInspector(&'static str, Decides);

    impl Stage for Holder {
        fn name(&self) -> &'static str {
            self.0
        }
        fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(HolderInspector(self.0, self.1))
        }
    }

    /// Pending `n` times (waking itself), then ready.
    struct Polls(u32);
    impl Future for Polls {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Inspector for HolderInspector {
        fn on_request_head(&mut self, _cx: &mut Cx<'_>, _h: &RequestHead) -> Verdict {
            Verdict::Hold
        }
        fn resolve<'a>(
            &'a mut self,
            cx: &'a mut Cx<'_>,
            _held: &'a HeldBody,
        ) -> BoxFuture<'a, Verdict> {
            let (name, how) = (self.0, self.1);
            Box::pin(async move {
                assert!(cx.deadline().is_some(), "resolve sees its deadline");
                match how {
                    Decides::After(n, v) => {
                        Polls(n).await;
                        if v == Verdict::Block {
                            cx.report(Finding::new(
                                "t",
                                name,
                                "found",
                                Severity::High,
                                "malware",
                                Evidence::default(),
                            ));
                        }
                        v
                    }
                    Decides::Never => std::future::pending().await,
                    Decides::Panics => panic!("engine bug in {name}"),
                }
            })
        }
    }

    /// A clock whose sleeps end after a fixed number of polls: the "timeout point".
    struct PollClock(u32);
    impl Timer for PollClock {
        fn sleep(&self, _after: Duration) -> BoxFuture<'static, ()> {
            Box::pin(Polls(self.0))
        }
    }

    fn policy(on_error: OnError) -> StagePolicy {
        StagePolicy {
            on_error,
            ..Default::default()
        }
    }

    fn flow(stages: &[(&'static str, Decides, OnError)]) -> Flow {
        let mut p = Pipeline::new();
        for (name, how, on_error) in stages {
            p.push(Arc::new(Holder(name, *how)), policy(*on_error));
        }
        holding_request(&p)
    }

    /// A flow of `p` whose stages all hold the request body.
    fn holding_request(p: &Pipeline) -> Flow {
        let a = "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!());
        let mut f = p.start(Arc::new(FlowMeta::new(1, "t", a, a)));
        let head = RequestHead::new(
            http::Method::POST,
            "http://a.test/up"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
            http::Version::HTTP_11,
            http::HeaderMap::new(),
            80,
        );
        assert_eq!(f.request_head(&head), Verdict::Hold);
        f
    }

    fn held() -> HeldBody {
        let mut h = HeldBody::new(Direction::Request);
        h.push(Bytes::from_static(b"body"));
        h
    }

    fn run(f: &mut Flow, clock: u32) -> Verdict {
        futures_executor::block_on(f.resolve(Direction::Request, &held(), &PollClock(clock)))
    }

    fn rules(f: &mut Flow) -> Vec<(String, &'static str, crate::Action)> {
        f.take_findings()
            .into_iter()
            .map(|x| (x.rule_id.clone(), x.stage, x.action))
            .collect()
    }

    #[test]
    fn a_stage_that_never_answers_gets_its_on_error() {
        let mut f = flow(&[("av", Decides::Never, OnError::FailClosed)]);
        assert_eq!(run(&mut f, 3), Verdict::Block);
        assert!(!f.holding(Direction::Request));
        let found = f.take_findings();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].rule_id.as_str(), found[0].stage),
            ("stage-timeout", "av")
        );
        assert!(
            found[0].message.contains("within 120s"),
            "{}",
            found[0].message
        );
        assert!(
            found[0].message.contains("fail-closed"),
            "{}",
            found[0].message
        );
        assert_eq!(f.blocking_event(), Some(found[0].event_id));

        let mut f = flow(&[("av", Decides::Never, OnError::FailOpen)]);
        assert_eq!(run(&mut f, 3), Verdict::Allow);
        assert_eq!(f.uninspected(), 1);
        let found = f.take_findings();
        assert_eq!(found[0].rule_id, "stage-timeout");
        assert_eq!(found[0].category, "uninspected");
    }

    #[test]
    fn a_slow_stage_is_waited_for_until_its_deadline() {
        // Answers after 5 polls; the clock fires after 10: the answer counts.
        let mut f = flow(&[("av", Decides::After(5, Verdict::Block), OnError::FailOpen)]);
        assert_eq!(run(&mut f, 10), Verdict::Block);
        assert_eq!(rules(&mut f)[0].0, "av");
        // The clock fires first: fail-open passes uninspected, never on a guess.
        let mut f = flow(&[("av", Decides::After(10, Verdict::Block), OnError::FailOpen)]);
        assert_eq!(run(&mut f, 5), Verdict::Allow);
        assert_eq!(f.uninspected(), 1);
    }

    #[test]
    fn every_holding_stage_answers_before_release() {
        // One stage clean at once, the other never: fail-closed blocks, naming the silent one.
        let mut f = flow(&[
            (
                "ips",
                Decides::After(0, Verdict::Allow),
                OnError::FailClosed,
            ),
            ("av", Decides::Never, OnError::FailClosed),
        ]);
        assert_eq!(run(&mut f, 4), Verdict::Block);
        let r = rules(&mut f);
        assert_eq!(
            r,
            vec![("stage-timeout".into(), "av", crate::Action::Blocked)]
        );
        // A later stage's block ends the wait for an earlier slow one.
        let mut f = flow(&[
            ("sandbox", Decides::Never, OnError::FailOpen),
            ("av", Decides::After(1, Verdict::Block), OnError::FailOpen),
        ]);
        assert_eq!(run(&mut f, 1000), Verdict::Block);
        assert_eq!(f.uninspected(), 0);
    }

    #[test]
    fn a_panicking_resolve_is_an_error_not_a_crash() {
        for (on_error, want) in [
            (OnError::FailClosed, Verdict::Block),
            (OnError::FailOpen, Verdict::Allow),
        ] {
            let mut f = flow(&[("av", Decides::Panics, on_error)]);
            assert_eq!(run(&mut f, 5), want);
            let r = rules(&mut f);
            assert_eq!(r[0].0, "stage-panic");
            assert!(!f.holding(Direction::Request));
        }
    }

    #[test]
    fn an_abandoned_decision_leaves_the_stages_holding() {
        // The driver drops the decision half-way (its own bound, a client gone): the stage that
        // was deciding is still holding, so resolve_failed and overflow reach it.
        for overflow in [false, true] {
            let mut f = flow(&[
                (
                    "ips",
                    Decides::After(0, Verdict::Allow),
                    OnError::FailClosed,
                ),
                ("av", Decides::Never, OnError::FailClosed),
            ]);
            {
                let held = held();
                let mut fut = Box::pin(f.resolve(Direction::Request, &held, &PollClock(u32::MAX)));
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                for _ in 0..3 {
                    assert!(fut.as_mut().poll(&mut cx).is_pending());
                }
            }
            assert!(f.holding(Direction::Request), "av has not answered");
            let v = if overflow {
                f.overflow(Direction::Request, "hold limit")
            } else {
                f.resolve_failed(Direction::Request, "driver gave up")
            };
            assert_eq!(v, Verdict::Block);
            assert!(rules(&mut f).iter().any(|(rule, stage, _)| *stage == "av"
                && rule
                    == if overflow {
                        "hold-limit"
                    } else {
                        "hold-failed"
                    }));
        }
    }

    /// Holds the request and needs only its first `.0` bytes; blocks if asked on anything but
    /// such a prefix.
    struct Prefix(usize);
    impl Stage for Prefix {
        fn name(&self) -> &'static str {
            "waf"
        }
        fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(Prefix(self.0))
        }
    }
    impl Inspector for Prefix {
        fn on_request_head(&mut self, _cx: &mut Cx<'_>, _h: &RequestHead) -> Verdict {
            Verdict::Hold
        }
        fn hold_limit(&self, _dir: Direction) -> Option<usize> {
            Some(self.0)
        }
        fn resolve<'a>(
            &'a mut self,
            _cx: &'a mut Cx<'_>,
            held: &'a HeldBody,
        ) -> BoxFuture<'a, Verdict> {
            let ok = held.is_prefix() && held.len() >= self.0;
            Box::pin(async move {
                if ok {
                    Verdict::Allow
                } else {
                    Verdict::Block
                }
            })
        }
    }

    fn with_prefix_stage(limit: usize, others: &[(&'static str, Decides)]) -> Flow {
        let mut p = Pipeline::new();
        p.push(Arc::new(Prefix(limit)), policy(OnError::FailClosed));
        for (name, how) in others {
            p.push(Arc::new(Holder(name, *how)), policy(OnError::FailClosed));
        }
        holding_request(&p)
    }

    #[test]
    fn a_stage_with_a_hold_limit_decides_on_its_prefix_while_others_hold_on() {
        let mut f = with_prefix_stage(4, &[("av", Decides::After(0, Verdict::Allow))]);
        assert!(!f.hold_due(Direction::Request, 3));
        assert!(f.hold_due(Direction::Request, 4));
        let mut h = held();
        h.set_prefix(true);
        let v = futures_executor::block_on(f.resolve_due(Direction::Request, &h, &PollClock(5)));
        assert_eq!(v, Verdict::Hold, "av still holds for the whole body");
        assert!(f.findings().is_empty(), "{:?}", f.findings());
        assert!(!f.hold_due(Direction::Request, 1 << 20), "the waf decided");
        // The whole body: only av is asked (the prefix stage would block if asked again).
        assert_eq!(run(&mut f, 5), Verdict::Allow);
        assert!(!f.holding(Direction::Request));

        // Alone, the prefix stage releases the body once it decided.
        let mut f = with_prefix_stage(4, &[]);
        let v = futures_executor::block_on(f.resolve_due(Direction::Request, &h, &PollClock(5)));
        assert_eq!(v, Verdict::Allow);
        assert!(!f.holding(Direction::Request));
    }

    #[test]
    fn a_body_too_large_to_hold_spares_stages_whose_prefix_fits() {
        // 10 bytes can be held: the 4-byte prefix stage holds on, av (whole body) overflows.
        let mut f = with_prefix_stage(4, &[("av", Decides::After(0, Verdict::Allow))]);
        assert_eq!(
            f.overflow_beyond(Direction::Request, "too big", 10),
            Verdict::Block
        );
        assert_eq!(
            rules(&mut f),
            vec![("hold-limit".into(), "av", crate::Action::Blocked)]
        );
        // A prefix longer than what can be held overflows too.
        let mut f = with_prefix_stage(100, &[]);
        assert_eq!(
            f.overflow_beyond(Direction::Request, "too big", 10),
            Verdict::Block
        );
        let mut f = with_prefix_stage(4, &[]);
        assert_ne!(
            f.overflow_beyond(Direction::Request, "too big", 10),
            Verdict::Block
        );
        assert!(
            f.holding(Direction::Request),
            "still holding for its prefix"
        );
    }
}
