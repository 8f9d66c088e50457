use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Action, Cx, Direction, Evidence, Finding, FlowMeta, HeldBody, Inspector, RequestHead,
    ResponseHead, Severity, Stage, TlsHello, Verdict,
};
use bytes::Bytes;

/// Whether a stage enforces its verdicts or only reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Block what the stage blocks.
    #[default]
    Prevent,
    /// Log what would have been blocked (event action `detected`), let it pass.
    Detect,
}

/// What a stage error (engine failure, timeout) turns into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Block the flow.
    #[default]
    FailClosed,
    /// Pass the flow uninspected, with an event and a counter.
    FailOpen,
}

/// What happens when a held body exceeds the hold limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOverflow {
    /// Block the flow.
    #[default]
    Block,
    /// Release the body uninspected, with an event and a counter.
    PassAndAlert,
}

/// A stage's policy within a listener's pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePolicy {
    /// `prevent` (default) or `detect`.
    #[serde(default)]
    pub mode: Mode,
    /// `fail-closed` (default) or `fail-open`.
    #[serde(default)]
    pub on_error: OnError,
    /// `block` (default) or `pass-and-alert`.
    #[serde(default)]
    pub on_overflow: OnOverflow,
}

/// An ordered list of stages with their policies. Immutable once built; share it in an `Arc`.
#[derive(Clone, Default)]
pub struct Pipeline {
    slots: Vec<(Arc<dyn Stage>, StagePolicy)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|(s, p)| (s.name(), p)))
            .finish()
    }
}

impl Pipeline {
    /// An empty pipeline (every flow is allowed).
    pub fn new() -> Self {
        Pipeline::default()
    }

    /// Appends a stage.
    pub fn push(&mut self, stage: Arc<dyn Stage>, policy: StagePolicy) {
        self.slots.push((stage, policy));
    }

    /// Stage names in order.
    pub fn stage_names(&self) -> Vec<&'static str> {
        self.slots.iter().map(|(s, _)| s.name()).collect()
    }

    /// True when no stage is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts inspecting one flow: every stage creates its inspector.
    pub fn start(&self, meta: Arc<FlowMeta>) -> Flow {
        let actives = self
            .slots
            .iter()
            .map(|(stage, policy)| Active {
                name: stage.name(),
                policy: *policy,
                inspector: stage.new_flow(&meta),
                holding: [false; 2],
                worst: Verdict::Allow,
            })
            .collect();
        Flow {
            meta,
            actives,
            verdict: Verdict::Allow,
            findings: Vec::new(),
            blocking: None,
            uninspected: 0,
        }
    }
}

struct Active {
    name: &'static str,
    policy: StagePolicy,
    inspector: Box<dyn Inspector>,
    holding: [bool; 2],
    worst: Verdict,
}

/// One flow's inspection state: the inspectors, the combined verdict and the findings.
///
/// Every phase method returns the flow's verdict after that phase: the maximum of every effective
/// verdict so far, or [`Verdict::Hold`] while a stage holds the body of that direction.
pub struct Flow {
    meta: Arc<FlowMeta>,
    actives: Vec<Active>,
    verdict: Verdict,
    findings: Vec<Finding>,
    /// The finding that blocked the flow (kept after the findings are taken for events).
    blocking: Option<Box<Finding>>,
    uninspected: u32,
}

/// Where a settled verdict came from, to phrase synthesized findings.
enum Phase {
    Hello,
    Head(Direction),
    Body(Direction),
    Resolve,
}

impl Phase {
    fn dir(&self) -> Option<Direction> {
        match self {
            Phase::Head(d) | Phase::Body(d) => Some(*d),
            _ => None,
        }
    }
}

impl Flow {
    /// The flow's connection facts.
    pub fn meta(&self) -> &Arc<FlowMeta> {
        &self.meta
    }

    /// Updates the flow's connection facts (SNI, TLS mode) as the proxy learns them.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut FlowMeta)) {
        f(Arc::make_mut(&mut self.meta));
    }

    /// The combined verdict so far (never `Hold`: holds are per direction, see [`Flow::holding`]).
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// True while any stage holds the body of `dir`.
    pub fn holding(&self, dir: Direction) -> bool {
        self.actives.iter().any(|a| a.holding[dir.index()])
    }

    /// The event id of the finding that blocked the flow (shown on the block page).
    pub fn blocking_event(&self) -> Option<Uuid> {
        self.blocking.as_ref().map(|f| f.event_id)
    }

    /// The finding that blocked the flow, if one did (for block pages: category, warn link).
    pub fn blocking_finding(&self) -> Option<&Finding> {
        self.blocking.as_deref()
    }

    /// How many times a stage let the flow pass uninspected (fail-open, pass-and-alert).
    pub fn uninspected(&self) -> u32 {
        self.uninspected
    }

    /// Findings not yet taken.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Takes the findings reported so far (the proxy turns them into threat events).
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.findings)
    }

    /// Each stage's most severe effective verdict so far.
    pub fn stage_verdicts(&self) -> impl Iterator<Item = (&'static str, Verdict)> + '_ {
        self.actives.iter().map(|a| (a.name, a.worst))
    }

    fn current(&self, dir: Option<Direction>) -> Verdict {
        match dir {
            Some(d) if self.verdict < Verdict::Hold && self.holding(d) => Verdict::Hold,
            _ => self.verdict,
        }
    }

    /// Runs one callback on every stage in order, stopping at the first block.
    fn run(
        &mut self,
        phase: Phase,
        mut call: impl FnMut(&mut dyn Inspector, &mut Cx<'_>) -> Verdict,
    ) -> Verdict {
        let dir = phase.dir();
        if self.verdict == Verdict::Block {
            return Verdict::Block;
        }
        let meta = Arc::clone(&self.meta);
        for i in 0..self.actives.len() {
            let mut cx = Cx::new(&meta);
            let raw = call(self.actives[i].inspector.as_mut(), &mut cx);
            let v = self.settle(i, raw, cx, &phase);
            if v == Verdict::Block {
                break;
            }
        }
        self.current(dir)
    }

    /// Applies the stage's policy to a raw verdict and records findings.
    fn settle(&mut self, i: usize, raw: Verdict, cx: Cx<'_>, phase: &Phase) -> Verdict {
        let Cx {
            findings, error, ..
        } = cx;
        let (name, policy) = (self.actives[i].name, self.actives[i].policy);
        let mut raw = raw;
        let mut findings = findings;
        if let Some(reason) = error {
            match policy.on_error {
                OnError::FailClosed => {
                    raw = Verdict::Block;
                    findings.push(stage_finding(
                        name,
                        "stage-error",
                        format!("stage {name} failed, flow blocked (fail-closed): {reason}"),
                        Severity::High,
                        "stage-error",
                    ));
                }
                OnError::FailOpen => {
                    raw = Verdict::Allow;
                    self.uninspected += 1;
                    findings.push(stage_finding(
                        name,
                        "stage-error",
                        format!(
                            "stage {name} failed, flow passed uninspected (fail-open): {reason}"
                        ),
                        Severity::Info,
                        "uninspected",
                    ));
                }
            }
            if let Some(d) = phase.dir() {
                self.actives[i].holding[d.index()] = false;
            }
        }
        if raw == Verdict::Hold {
            match phase.dir() {
                Some(d) => self.actives[i].holding[d.index()] = true,
                None => raw = Verdict::Allow,
            }
        }
        let effective = match (raw, policy.mode) {
            (Verdict::Block, Mode::Detect) => Verdict::Alert,
            (v, _) => v,
        };
        let action = match (raw, policy.mode) {
            (Verdict::Block, Mode::Prevent) => Action::Blocked,
            (Verdict::Block, Mode::Detect) => Action::Detected,
            _ => Action::Allowed,
        };
        if raw == Verdict::Block && findings.is_empty() {
            let what = match phase {
                Phase::Hello => "at the TLS ClientHello",
                Phase::Head(Direction::Request) => "at the request head",
                Phase::Head(Direction::Response) => "at the response head",
                Phase::Body(Direction::Request) => "in the request body",
                Phase::Body(Direction::Response) => "in the response body",
                Phase::Resolve => "on the held body",
            };
            findings.push(stage_finding(
                name,
                "stage-block",
                format!("stage {name} blocked the flow {what}"),
                Severity::Medium,
                "policy",
            ));
        }
        for mut f in findings {
            f.stage = name;
            f.action = action;
            if action == Action::Blocked && self.blocking.is_none() {
                self.blocking = Some(Box::new(f.clone()));
            }
            self.findings.push(f);
        }
        let a = &mut self.actives[i];
        if effective != Verdict::Hold {
            a.worst = a.worst.max(effective);
            self.verdict = self.verdict.max(effective);
        }
        effective
    }

    /// The TLS ClientHello of a CONNECT tunnel (before decrypt/splice is decided).
    pub fn tls_hello(&mut self, hello: &TlsHello) -> Verdict {
        self.run(Phase::Hello, |i, cx| i.on_tls_hello(cx, hello))
    }

    /// The request head. `Hold` asks the proxy to hold the request body.
    pub fn request_head(&mut self, head: &RequestHead) -> Verdict {
        self.run(Phase::Head(Direction::Request), |i, cx| {
            i.on_request_head(cx, head)
        })
    }

    /// The response head. `Hold` asks the proxy to hold the response body before sending the head.
    pub fn response_head(&mut self, head: &ResponseHead) -> Verdict {
        self.run(Phase::Head(Direction::Response), |i, cx| {
            i.on_response_head(cx, head)
        })
    }

    /// One body chunk of `dir`; `end` on the last one.
    pub fn body(&mut self, dir: Direction, chunk: &Bytes, end: bool) -> Verdict {
        match dir {
            Direction::Request => {
                self.run(Phase::Body(dir), |i, cx| i.on_request_body(cx, chunk, end))
            }
            Direction::Response => {
                self.run(Phase::Body(dir), |i, cx| i.on_response_body(cx, chunk, end))
            }
        }
    }

    /// Asks every stage holding `dir` to decide on the held body, in order. Drive it with a
    /// timeout; on expiry call [`Flow::resolve_failed`].
    pub async fn resolve(&mut self, dir: Direction, held: &HeldBody) -> Verdict {
        let meta = Arc::clone(&self.meta);
        for i in 0..self.actives.len() {
            if !self.actives[i].holding[dir.index()] || self.verdict == Verdict::Block {
                continue;
            }
            self.actives[i].holding[dir.index()] = false;
            let mut cx = Cx::new(&meta);
            let mut raw = self.actives[i].inspector.resolve(&mut cx, held).await;
            if raw == Verdict::Hold {
                cx.fail("resolve answered hold");
                raw = Verdict::Allow;
            }
            self.settle(i, raw, cx, &Phase::Resolve);
        }
        self.release(dir);
        self.verdict
    }

    /// The held body of `dir` could not be decided (timeout): each holding stage's `on_error`.
    pub fn resolve_failed(&mut self, dir: Direction, reason: &str) -> Verdict {
        self.fail_holding(dir, reason, |p| p.on_error == OnError::FailClosed)
    }

    /// The held body of `dir` exceeded the hold limits: each holding stage's `on_overflow`.
    pub fn overflow(&mut self, dir: Direction, reason: &str) -> Verdict {
        self.fail_holding(dir, reason, |p| p.on_overflow == OnOverflow::Block)
    }

    fn fail_holding(
        &mut self,
        dir: Direction,
        reason: &str,
        closed: impl Fn(&StagePolicy) -> bool,
    ) -> Verdict {
        let meta = Arc::clone(&self.meta);
        for i in 0..self.actives.len() {
            if !self.actives[i].holding[dir.index()] {
                continue;
            }
            self.actives[i].holding[dir.index()] = false;
            let name = self.actives[i].name;
            let cx = Cx::new(&meta);
            if closed(&self.actives[i].policy) {
                let mut cx = cx;
                cx.report(stage_finding(
                    name,
                    "hold-failed",
                    format!(
                        "stage {name} could not inspect the {} body: {reason}",
                        dir.as_str()
                    ),
                    Severity::High,
                    "uninspected",
                ));
                self.settle(i, Verdict::Block, cx, &Phase::Resolve);
            } else {
                let mut cx = cx;
                self.uninspected += 1;
                cx.report(stage_finding(
                    name,
                    "hold-failed",
                    format!(
                        "stage {name} passed the {} body uninspected: {reason}",
                        dir.as_str()
                    ),
                    Severity::Info,
                    "uninspected",
                ));
                self.settle(i, Verdict::Alert, cx, &Phase::Resolve);
            }
        }
        self.verdict
    }

    fn release(&mut self, dir: Direction) {
        for a in &mut self.actives {
            a.holding[dir.index()] = false;
        }
    }
}

fn stage_finding(
    stage: &'static str,
    rule: &str,
    message: String,
    severity: Severity,
    category: &str,
) -> Finding {
    let mut f = Finding::new(
        stage,
        rule,
        message,
        severity,
        category,
        Evidence::default(),
    );
    f.stage = stage;
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A test stage scripted per phase.
    struct Scripted {
        name: &'static str,
        head: Verdict,
        body: Verdict,
        resolve: Verdict,
        fail_in_resolve: bool,
    }

    struct ScriptedInspector(&'static str, Verdict, Verdict, Verdict, bool);

    impl Stage for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }
        fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(ScriptedInspector(
                self.name,
                self.head,
                self.body,
                self.resolve,
                self.fail_in_resolve,
            ))
        }
    }

    impl Inspector for ScriptedInspector {
        fn on_request_head(&mut self, cx: &mut Cx<'_>, _head: &RequestHead) -> Verdict {
            if self.1 >= Verdict::Alert {
                cx.report(Finding::new(
                    "test",
                    self.0,
                    "head",
                    Severity::Medium,
                    "test",
                    Evidence::new("request.head", "x"),
                ));
            }
            self.1
        }
        fn on_request_body(&mut self, _cx: &mut Cx<'_>, _chunk: &Bytes, _end: bool) -> Verdict {
            self.2
        }
        fn resolve<'a>(
            &'a mut self,
            cx: &'a mut Cx<'_>,
            _held: &'a HeldBody,
        ) -> crate::BoxFuture<'a, Verdict> {
            let (v, fail) = (self.3, self.4);
            Box::pin(async move {
                if fail {
                    cx.fail("engine exploded");
                }
                v
            })
        }
    }

    fn pipeline(stages: Vec<(Scripted, StagePolicy)>) -> Pipeline {
        let mut p = Pipeline::new();
        for (s, pol) in stages {
            p.push(Arc::new(s), pol);
        }
        p
    }

    fn meta() -> Arc<FlowMeta> {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Arc::new(FlowMeta::new(1, "test", a, a))
    }

    fn head() -> RequestHead {
        RequestHead::new(
            http::Method::GET,
            "http://a.test/".parse().unwrap(),
            http::Version::HTTP_11,
            http::HeaderMap::new(),
            80,
        )
    }

    fn s(name: &'static str, head: Verdict) -> Scripted {
        Scripted {
            name,
            head,
            body: Verdict::Allow,
            resolve: Verdict::Allow,
            fail_in_resolve: false,
        }
    }

    /// Poll a future that never waits (our test inspectors are synchronous inside).
    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("test future waited"),
        }
    }

    #[test]
    fn later_stage_never_weakens() {
        let all = [Verdict::Allow, Verdict::Alert, Verdict::Block];
        for a in all {
            for b in all {
                let p = pipeline(vec![
                    (s("a", a), StagePolicy::default()),
                    (s("b", b), StagePolicy::default()),
                ]);
                let mut f = p.start(meta());
                let v = f.request_head(&head());
                assert_eq!(v, a.max(b), "{a:?} then {b:?}");
                assert!(v >= a);
            }
        }
    }

    #[test]
    fn block_stops_and_names_event() {
        let p = pipeline(vec![
            (s("a", Verdict::Block), StagePolicy::default()),
            (s("b", Verdict::Alert), StagePolicy::default()),
        ]);
        let mut f = p.start(meta());
        assert_eq!(f.request_head(&head()), Verdict::Block);
        let found = f.take_findings();
        assert_eq!(found.len(), 1, "stage b must not run after a block");
        assert_eq!(found[0].action, Action::Blocked);
        assert_eq!(found[0].stage, "a");
        assert_eq!(f.blocking_event(), Some(found[0].event_id));
        assert_eq!(
            f.stage_verdicts().collect::<Vec<_>>(),
            vec![("a", Verdict::Block), ("b", Verdict::Allow)]
        );
    }

    #[test]
    fn detect_mode_reports_but_passes() {
        let detect = StagePolicy {
            mode: Mode::Detect,
            ..Default::default()
        };
        let p = pipeline(vec![(s("a", Verdict::Block), detect)]);
        let mut f = p.start(meta());
        assert_eq!(f.request_head(&head()), Verdict::Alert);
        let found = f.take_findings();
        assert_eq!(found[0].action, Action::Detected);
        assert_eq!(f.blocking_event(), None);
    }

    #[test]
    fn block_without_finding_gets_one() {
        struct Silent;
        struct SilentI;
        impl Stage for Silent {
            fn name(&self) -> &'static str {
                "silent"
            }
            fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
                Box::new(SilentI)
            }
        }
        impl Inspector for SilentI {
            fn on_request_head(&mut self, _cx: &mut Cx<'_>, _h: &RequestHead) -> Verdict {
                Verdict::Block
            }
        }
        let mut p = Pipeline::new();
        p.push(Arc::new(Silent), StagePolicy::default());
        let mut f = p.start(meta());
        assert_eq!(f.request_head(&head()), Verdict::Block);
        assert!(f.blocking_event().is_some());
        assert_eq!(f.findings()[0].rule_id, "stage-block");
    }

    #[test]
    fn hold_then_resolve() {
        let mut holder = s("av", Verdict::Allow);
        holder.body = Verdict::Hold;
        holder.resolve = Verdict::Block;
        let p = pipeline(vec![(holder, StagePolicy::default())]);
        let mut f = p.start(meta());
        assert_eq!(f.request_head(&head()), Verdict::Allow);
        assert_eq!(
            f.body(Direction::Request, &Bytes::from_static(b"abc"), false),
            Verdict::Hold
        );
        assert!(f.holding(Direction::Request));
        assert!(!f.holding(Direction::Response));
        let mut held = HeldBody::new(Direction::Request);
        held.push(Bytes::from_static(b"abc"));
        assert_eq!(
            block_on(f.resolve(Direction::Request, &held)),
            Verdict::Block
        );
        assert!(!f.holding(Direction::Request));
        assert!(f.blocking_event().is_some());
    }

    #[test]
    fn resolve_error_follows_on_error() {
        for (on_error, want, uninspected) in [
            (OnError::FailClosed, Verdict::Block, 0),
            (OnError::FailOpen, Verdict::Allow, 1),
        ] {
            let mut holder = s("av", Verdict::Hold);
            holder.fail_in_resolve = true;
            let p = pipeline(vec![(
                holder,
                StagePolicy {
                    on_error,
                    ..Default::default()
                },
            )]);
            let mut f = p.start(meta());
            assert_eq!(f.request_head(&head()), Verdict::Hold);
            let held = HeldBody::new(Direction::Request);
            assert_eq!(block_on(f.resolve(Direction::Request, &held)), want);
            assert_eq!(f.uninspected(), uninspected);
            assert!(f.findings().iter().any(|x| x.rule_id == "stage-error"));
        }
    }

    #[test]
    fn overflow_follows_on_overflow() {
        for (on_overflow, want) in [
            (OnOverflow::Block, Verdict::Block),
            (OnOverflow::PassAndAlert, Verdict::Alert),
        ] {
            let p = pipeline(vec![(
                s("av", Verdict::Hold),
                StagePolicy {
                    on_overflow,
                    ..Default::default()
                },
            )]);
            let mut f = p.start(meta());
            assert_eq!(f.request_head(&head()), Verdict::Hold);
            assert_eq!(f.overflow(Direction::Request, "too big"), want);
            assert!(!f.holding(Direction::Request));
        }
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use std::net::SocketAddr;

    const MARKER: &[u8] = b"MALWARE";

    /// A streaming matcher that keeps an overlap tail, as real engines must: it blocks when the
    /// marker appears anywhere in the body, however the body is chunked.
    struct Streaming;
    struct StreamingInspector {
        tail: Vec<u8>,
    }
    impl Stage for Streaming {
        fn name(&self) -> &'static str {
            "streaming"
        }
        fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(StreamingInspector { tail: Vec::new() })
        }
    }
    impl Inspector for StreamingInspector {
        fn on_response_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, _end: bool) -> Verdict {
            let mut window = std::mem::take(&mut self.tail);
            window.extend_from_slice(chunk);
            let hit = window.windows(MARKER.len()).any(|w| w == MARKER);
            let keep = window.len().min(MARKER.len() - 1);
            self.tail = window[window.len() - keep..].to_vec();
            if hit {
                cx.report(Finding::new(
                    "t",
                    "m",
                    "marker",
                    Severity::High,
                    "t",
                    Evidence::default(),
                ));
                Verdict::Block
            } else {
                Verdict::Allow
            }
        }
    }

    /// A stage with a fixed verdict per phase.
    struct Fixed(Verdict, Verdict);
    struct FixedInspector(Verdict, Verdict);
    impl Stage for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
            Box::new(FixedInspector(self.0, self.1))
        }
    }
    impl Inspector for FixedInspector {
        fn on_request_head(&mut self, _cx: &mut Cx<'_>, _h: &RequestHead) -> Verdict {
            self.0
        }
        fn on_response_head(&mut self, _cx: &mut Cx<'_>, _h: &ResponseHead) -> Verdict {
            self.1
        }
    }

    fn meta() -> Arc<FlowMeta> {
        let a: SocketAddr = "[::1]:1".parse().unwrap();
        Arc::new(FlowMeta::new(1, "p", a, a))
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Allow),
            Just(Verdict::Alert),
            Just(Verdict::Block)
        ]
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Prevent), Just(Mode::Detect)]
    }

    proptest! {
        #[test]
        fn chunking_never_changes_a_verdict(
            body in proptest::collection::vec(prop_oneof![Just(b'M'), Just(b'A'), Just(b'L'), Just(b'W'), Just(b'R'), Just(b'E'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            plant in proptest::option::of(0usize..400),
        ) {
            let mut body = body;
            if let Some(at) = plant {
                let at = at.min(body.len());
                body.splice(at..at, MARKER.iter().copied());
            }
            let expected = if body.windows(MARKER.len()).any(|w| w == MARKER) { Verdict::Block } else { Verdict::Allow };
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut p = Pipeline::new();
            p.push(Arc::new(Streaming), StagePolicy::default());
            let mut f = p.start(meta());
            let mut start = 0;
            let mut v = Verdict::Allow;
            for end in cuts.into_iter().chain(std::iter::once(body.len())) {
                let last = end == body.len();
                v = f.body(Direction::Response, &Bytes::copy_from_slice(&body[start..end]), last);
                start = end;
                if v == Verdict::Block || last { break; }
            }
            prop_assert_eq!(v, expected);
        }

        #[test]
        fn a_later_stage_never_weakens(stages in proptest::collection::vec((verdict(), verdict(), mode()), 1..6)) {
            let mut p = Pipeline::new();
            for (a, b, m) in &stages {
                p.push(Arc::new(Fixed(*a, *b)), StagePolicy { mode: *m, ..Default::default() });
            }
            let mut f = p.start(meta());
            let head = RequestHead::new(http::Method::GET, "http://a/".parse().unwrap(), http::Version::HTTP_11, http::HeaderMap::new(), 80);
            let v1 = f.request_head(&head);
            let rh = ResponseHead { status: http::StatusCode::OK, version: http::Version::HTTP_11, headers: http::HeaderMap::new() };
            let v2 = f.response_head(&rh);
            // Effective verdict of a stage: detect turns block into alert.
            let eff = |v: Verdict, m: Mode| if v == Verdict::Block && m == Mode::Detect { Verdict::Alert } else { v };
            let want1 = stages.iter().map(|(a, _, m)| eff(*a, *m)).max().unwrap();
            prop_assert_eq!(v1, want1);
            prop_assert!(v2 >= v1, "{:?} after {:?}", v2, v1);
            if v1 != Verdict::Block {
                let want2 = stages.iter().map(|(_, b, m)| eff(*b, *m)).max().unwrap().max(v1);
                prop_assert_eq!(v2, want2);
            }
            prop_assert_eq!(f.blocking_event().is_some(), f.verdict() == Verdict::Block);
        }
    }
}
