use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Action, Cx, Direction, Evidence, Finding, FlowMeta, Inspector, RequestHead, Respond,
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

/// Whether a stage holds bodies whose content type is a stream (`[policy] stream_types`:
/// server-sent events, gRPC, long polls). A held stream is never delivered, so by default they
/// pass unheld and the stage sees them chunk by chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Streams {
    /// Streams pass unheld (the default).
    #[default]
    Pass,
    /// Streams are held like any body (an endless one is never delivered).
    Hold,
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
    /// Seconds the stage may take to decide on a held body ([`Inspector::resolve`]); past it the
    /// stage's `on_error` applies. `None`: the pipeline's default ([`Pipeline::set_resolve_timeout`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_timeout_secs: Option<u64>,
    /// `pass` (default) or `hold`: bodies of `[policy] stream_types`.
    #[serde(default)]
    pub streams: Streams,
    /// Percent (0-90) of a held response body released to the client before the verdict, as
    /// it arrives (client comforting: the first bytes within a second, then a trickle), the
    /// tail held until the stage decides; a blocked tail resets the transfer. Default 0: nothing
    /// before the verdict (a block is a page).
    #[serde(default)]
    pub release_percent: u8,
}

impl StagePolicy {
    /// The keys of a stage policy, in every engine's table.
    pub const KEYS: &'static [&'static str] = &[
        "mode",
        "on_error",
        "on_overflow",
        "resolve_timeout_secs",
        "streams",
        "release_percent",
    ];
}

/// The decision deadline a pipeline gives a stage that names none (`[limits] resolve_timeout_secs`).
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(120);

/// An ordered list of stages with their policies. Immutable once built; share it in an `Arc`.
#[derive(Clone)]
pub struct Pipeline {
    slots: Vec<(Arc<dyn Stage>, StagePolicy)>,
    resolve_timeout: Duration,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            slots: Vec::new(),
            resolve_timeout: DEFAULT_RESOLVE_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|(s, p)| (s.name(), p)))
            .finish()
    }
}

impl Pipeline {
    /// Whether any stage judges whole bodies ([`Stage::scans_whole_bodies`]).
    pub fn scans_whole_bodies(&self) -> bool {
        self.slots.iter().any(|(s, _)| s.scans_whole_bodies())
    }

    /// The first of the `wanted` categories that a stage places `host` in
    /// ([`Stage::host_categories`]).
    pub fn in_category(&self, host: &str, wanted: &[String]) -> Option<String> {
        if wanted.is_empty() {
            return None;
        }
        self.slots.iter().find_map(|(s, _)| {
            s.host_categories(host)
                .into_iter()
                .find(|c| wanted.iter().any(|w| w.eq_ignore_ascii_case(c)))
        })
    }

    /// The first stage's reason why `host` must never be decrypted ([`Stage::never_decrypt`]).
    pub fn never_decrypt(&self, host: &str) -> Option<String> {
        self.slots
            .iter()
            .find_map(|(s, _)| s.never_decrypt(host).map(|r| format!("{}: {r}", s.name())))
    }

    /// An empty pipeline (every flow is allowed).
    pub fn new() -> Self {
        Pipeline::default()
    }

    /// Appends a stage.
    pub fn push(&mut self, stage: Arc<dyn Stage>, policy: StagePolicy) {
        self.slots.push((stage, policy));
    }

    /// The decision deadline of stages whose policy names no `resolve_timeout_secs`.
    pub fn set_resolve_timeout(&mut self, timeout: Duration) {
        self.resolve_timeout = timeout;
    }

    /// Each stage's name and decision deadline, in order.
    pub fn deadlines(&self) -> Vec<(&'static str, Duration)> {
        self.slots
            .iter()
            .map(|(s, p)| (s.name(), self.deadline_of(p)))
            .collect()
    }

    fn deadline_of(&self, policy: &StagePolicy) -> Duration {
        policy
            .resolve_timeout_secs
            .map_or(self.resolve_timeout, Duration::from_secs)
    }

    /// Tells every stage that client connection `conn_id` closed
    /// ([`Stage::connection_closed`]); a panic in one stage does not keep the others from hearing it.
    pub fn connection_closed(&self, conn_id: u64) {
        for (stage, _) in &self.slots {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| stage.connection_closed(conn_id)));
        }
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
            .map(|(stage, policy)| {
                let made = std::panic::catch_unwind(AssertUnwindSafe(|| stage.new_flow(&meta)));
                let (inspector, failed): (Box<dyn Inspector>, _) = match made {
                    Ok(i) => (i, Failed::No),
                    Err(p) => (Box::new(Dead), Failed::Pending(panic_reason(p))),
                };
                Active {
                    name: stage.name(),
                    policy: *policy,
                    deadline: self.deadline_of(policy),
                    inspector,
                    holding: [false; 2],
                    worst: Verdict::Allow,
                    failed,
                }
            })
            .collect();
        Flow {
            meta,
            actives,
            verdict: Verdict::Allow,
            findings: Vec::new(),
            blocking: None,
            uninspected: 0,
            said: Said::default(),
            ended: false,
            late: None,
            reports_late: self.slots.iter().any(|(s, _)| s.reports_late()),
        }
    }
}

pub(crate) struct Active {
    pub(crate) name: &'static str,
    pub(crate) policy: StagePolicy,
    /// How long the stage may take to decide on a held body.
    pub(crate) deadline: Duration,
    pub(crate) inspector: Box<dyn Inspector>,
    /// Set by a `Hold`; cleared only once the stage answered for that body (or on_error /
    /// on_overflow decided for it), so a decision abandoned half-way is never taken as an answer.
    pub(crate) holding: [bool; 2],
    worst: Verdict,
    pub(crate) failed: Failed,
}

/// Whether a stage's inspector panicked on this flow; it is never called again once it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    No,
    /// Panicked in `new_flow`; its `on_error` applies at the first phase.
    Pending(String),
    /// Its `on_error` was applied; the stage sits out the rest of the flow.
    Reported,
}

/// Stands in for an inspector whose `new_flow` panicked.
struct Dead;
impl Inspector for Dead {}

/// Why a stage gave no usable answer, for the finding that reports it.
pub(crate) struct Failure {
    /// `stage-error`, `stage-timeout` or `stage-panic`.
    pub(crate) rule: &'static str,
    pub(crate) reason: String,
}

/// The message of a panic payload.
pub(crate) fn panic_reason(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    format!("inspector panicked: {text}")
}

/// One flow's inspection state: the inspectors, the combined verdict and the findings.
///
/// Every phase method returns the flow's verdict after that phase: the maximum of every effective
/// verdict so far, or [`Verdict::Hold`] while a stage holds the body of that direction.
pub struct Flow {
    meta: Arc<FlowMeta>,
    pub(crate) actives: Vec<Active>,
    pub(crate) verdict: Verdict,
    findings: Vec<Finding>,
    /// The finding that blocked the flow (kept after the findings are taken for events).
    blocking: Option<Box<Finding>>,
    uninspected: u32,
    said: Said,
    /// Whether [`Flow::end`] ran.
    ended: bool,
    /// Whether a stage may report after the decision ([`crate::Stage::reports_late`]).
    reports_late: bool,
    /// Where findings reported after the decision go.
    pub(crate) late: Option<crate::stage::LateReporter>,
}

/// What stages said besides verdicts ([`Cx::respond`], [`Cx::splice`]).
#[derive(Default)]
struct Said {
    /// The blocking stage's choice of block response.
    response: Option<Respond>,
    /// A stage's own answer to the request (not a block).
    answer: Option<Respond>,
    /// Why a stage asked for the tunnel to be spliced.
    splice: Option<String>,
}

/// Where a settled verdict came from, to phrase synthesized findings.
pub(crate) enum Phase {
    Hello,
    Head(Direction),
    Body(Direction),
    Resolve,
    /// A WebSocket frame (nothing to hold: a `Hold` is an `Allow`).
    Frame(Direction),
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

    /// Whether a stage of this flow may report findings after the decision (only then is
    /// [`Flow::set_late`] worth its allocation).
    pub fn reports_late(&self) -> bool {
        self.reports_late
    }

    /// Gives the stages a way to report findings after the flow was decided
    /// ([`crate::Cx::late`]): the proxy turns them into the flow's threat events.
    pub fn set_late(&mut self, late: crate::stage::LateReporter) {
        self.late = Some(late);
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

    /// The response the blocking stage chose instead of the 403 page ([`Cx::respond`]).
    pub fn block_response(&self) -> Option<&Respond> {
        self.said.response.as_ref()
    }

    /// A stage's own answer to the request ([`Cx::respond`] without a block, at the request
    /// head): the gateway sends it and nothing goes upstream.
    pub fn answer(&self) -> Option<&Respond> {
        self.said.answer.as_ref()
    }

    /// Why a stage asked for this tunnel to be spliced ([`Cx::splice`] at the ClientHello), as
    /// `stage: reason`.
    pub fn splice_requested(&self) -> Option<&str> {
        self.said.splice.as_deref()
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

    pub(crate) fn current(&self, dir: Option<Direction>) -> Verdict {
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
            let (raw, failure) = match &self.actives[i].failed {
                Failed::Reported => continue,
                Failed::Pending(reason) => (
                    Verdict::Allow,
                    Some(Failure {
                        rule: "stage-panic",
                        reason: reason.clone(),
                    }),
                ),
                Failed::No => {
                    let inspector = self.actives[i].inspector.as_mut();
                    let called =
                        std::panic::catch_unwind(AssertUnwindSafe(|| call(inspector, &mut cx)));
                    match called {
                        Ok(v) => (v, None),
                        Err(p) => (
                            Verdict::Allow,
                            Some(Failure {
                                rule: "stage-panic",
                                reason: panic_reason(p),
                            }),
                        ),
                    }
                }
            };
            let v = self.settle(i, raw, cx, &phase, failure);
            if v == Verdict::Block || self.said.answer.is_some() {
                break;
            }
        }
        self.current(dir)
    }

    /// Applies the stage's policy to a raw verdict and records findings. A `failure` (panic,
    /// timeout), or an error the inspector reported with [`Cx::fail`], applies `on_error`.
    pub(crate) fn settle(
        &mut self,
        i: usize,
        raw: Verdict,
        cx: Cx<'_>,
        phase: &Phase,
        failure: Option<Failure>,
    ) -> Verdict {
        let Cx {
            findings,
            error,
            respond,
            splice,
            ..
        } = cx;
        let (name, policy) = (self.actives[i].name, self.actives[i].policy);
        let mut raw = raw;
        let mut findings = findings;
        let panicked = failure.as_ref().is_some_and(|f| f.rule == "stage-panic");
        let failure = failure.or(error.map(|e| Failure {
            rule: e.rule(),
            reason: e.to_string(),
        }));
        let failed = failure.is_some();
        if let Some(Failure { rule, reason }) = failure {
            match policy.on_error {
                OnError::FailClosed => {
                    raw = Verdict::Block;
                    findings.push(stage_finding(
                        name,
                        rule,
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
                        rule,
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
            if panicked {
                self.actives[i].failed = Failed::Reported;
                self.actives[i].holding = [false; 2];
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
                Phase::Frame(Direction::Request) => "at a client WebSocket frame",
                Phase::Frame(Direction::Response) => "at a server WebSocket frame",
            };
            findings.push(stage_finding(
                name,
                "stage-block",
                format!("stage {name} blocked the flow {what}"),
                Severity::Medium,
                "policy",
            ));
        }
        let blocked_here = action == Action::Blocked && self.blocking.is_none();
        for mut f in findings {
            f.stage = name;
            f.action = action;
            if action == Action::Blocked && self.blocking.is_none() {
                self.blocking = Some(Box::new(f.clone()));
            }
            self.findings.push(f);
        }
        self.note_said(
            phase,
            action,
            blocked_here && !failed,
            respond,
            splice,
            name,
        );
        let a = &mut self.actives[i];
        if effective != Verdict::Hold {
            a.worst = a.worst.max(effective);
            self.verdict = self.verdict.max(effective);
        }
        effective
    }

    /// Keeps what a stage said besides its verdict: its block response when it is the stage that
    /// blocked, an answer only at the request head of a flow nothing blocked, a splice request
    /// only at the ClientHello.
    fn note_said(
        &mut self,
        phase: &Phase,
        action: Action,
        blocked_here: bool,
        respond: Option<Respond>,
        splice: Option<String>,
        name: &str,
    ) {
        match respond {
            Some(r) if blocked_here => self.said.response = Some(r),
            Some(r)
                if action == Action::Allowed
                    && self.verdict != Verdict::Block
                    && matches!(phase, Phase::Head(Direction::Request))
                    && self.said.answer.is_none() =>
            {
                self.said.answer = Some(r)
            }
            _ => {}
        }
        if let (Some(reason), Phase::Hello) = (splice, phase) {
            self.said.splice.get_or_insert(format!("{name}: {reason}"));
        }
    }

    /// The flow is over ([`Inspector::on_flow_end`] on every stage, once): what they report
    /// now is an alert whatever it says (nothing is left to block); a stage that panics here
    /// is reported.
    pub fn end(&mut self) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let meta = Arc::clone(&self.meta);
        for i in 0..self.actives.len() {
            if self.actives[i].failed != Failed::No {
                continue;
            }
            let mut cx = Cx::new(&meta);
            let inspector = self.actives[i].inspector.as_mut();
            let called =
                std::panic::catch_unwind(AssertUnwindSafe(|| inspector.on_flow_end(&mut cx)));
            let name = self.actives[i].name;
            let mut findings = std::mem::take(&mut cx.findings);
            if let Err(p) = called {
                findings.push(stage_finding(
                    name,
                    "stage-panic",
                    format!(
                        "stage {name} failed at the end of the flow: {}",
                        panic_reason(p)
                    ),
                    Severity::High,
                    "stage-error",
                ));
            }
            for mut f in findings {
                f.stage = name;
                f.action = Action::Allowed;
                self.findings.push(f);
            }
        }
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

    /// One WebSocket frame of the connection the flow's request upgraded.
    pub fn ws_frame(&mut self, frame: &crate::WsFrame) -> Verdict {
        self.run(Phase::Frame(frame.direction), |i, cx| {
            i.on_ws_frame(cx, frame)
        })
    }

    /// The share (percent) of the held body of `dir` that may reach the client before the
    /// verdict: the smallest `release_percent` of the stages holding it (0 when none holds, and
    /// always 0 for request bodies: nothing unjudged reaches an origin).
    pub fn release_share(&self, dir: Direction) -> u8 {
        if dir == Direction::Request {
            return 0;
        }
        self.actives
            .iter()
            .filter(|a| a.holding[dir.index()])
            .map(|a| a.policy.release_percent.min(90))
            .min()
            .unwrap_or(0)
    }

    /// The body of `dir` is a stream (its content type is one of `[policy] stream_types`): the
    /// stages holding it whose policy lets streams pass stop holding and see it chunk by chunk.
    /// Returns the stages released; [`Flow::holding`] tells whether any still holds.
    pub fn stream(&mut self, dir: Direction) -> Vec<&'static str> {
        let mut released = Vec::new();
        for a in &mut self.actives {
            if a.holding[dir.index()] && a.policy.streams == Streams::Pass {
                a.holding[dir.index()] = false;
                released.push(a.name);
            }
        }
        released
    }

    /// The held body of `dir` could not be decided (timeout): each holding stage's `on_error`.
    pub fn resolve_failed(&mut self, dir: Direction, reason: &str) -> Verdict {
        self.fail_holding(
            dir,
            "hold-failed",
            reason,
            |p| p.on_error == OnError::FailClosed,
            |_| true,
        )
    }

    /// The held body of `dir` exceeded the hold limits: each holding stage's `on_overflow`
    /// (rule `hold-limit`).
    pub fn overflow(&mut self, dir: Direction, reason: &str) -> Verdict {
        self.fail_holding(
            dir,
            "hold-limit",
            reason,
            |p| p.on_overflow == OnOverflow::Block,
            |_| true,
        )
    }

    /// Like [`Flow::overflow`] for a body announced larger than `available` bytes can hold:
    /// only the holding stages that need more than that (no [`Inspector::hold_limit`], or one
    /// past it) get their `on_overflow`; the others go on holding for their prefix.
    pub fn overflow_beyond(&mut self, dir: Direction, reason: &str, available: usize) -> Verdict {
        self.fail_holding(
            dir,
            "hold-limit",
            reason,
            |p| p.on_overflow == OnOverflow::Block,
            |a| crate::resolve::limit_of(a, dir).is_none_or(|l| l > available),
        )
    }

    fn fail_holding(
        &mut self,
        dir: Direction,
        rule: &str,
        reason: &str,
        closed: impl Fn(&StagePolicy) -> bool,
        which: impl Fn(&Active) -> bool,
    ) -> Verdict {
        let meta = Arc::clone(&self.meta);
        for i in 0..self.actives.len() {
            if !self.actives[i].holding[dir.index()] || !which(&self.actives[i]) {
                continue;
            }
            self.actives[i].holding[dir.index()] = false;
            let name = self.actives[i].name;
            let cx = Cx::new(&meta);
            if closed(&self.actives[i].policy) {
                let mut cx = cx;
                cx.report(stage_finding(
                    name,
                    rule,
                    format!(
                        "stage {name} could not inspect the {} body: {reason}",
                        dir.as_str()
                    ),
                    Severity::High,
                    "uninspected",
                ));
                self.settle(i, Verdict::Block, cx, &Phase::Resolve, None);
            } else {
                let mut cx = cx;
                self.uninspected += 1;
                cx.report(stage_finding(
                    name,
                    rule,
                    format!(
                        "stage {name} passed the {} body uninspected: {reason}",
                        dir.as_str()
                    ),
                    Severity::Info,
                    "uninspected",
                ));
                self.settle(i, Verdict::Alert, cx, &Phase::Resolve, None);
            }
        }
        self.verdict
    }

    pub(crate) fn release(&mut self, dir: Direction) {
        for a in &mut self.actives {
            a.holding[dir.index()] = false;
        }
    }
}

pub(crate) fn stage_finding(
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
    use crate::HeldBody;
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

    /// A clock that never fires (the scripted inspectors answer at once).
    struct Never;
    impl crate::Timer for Never {
        fn sleep(&self, _after: Duration) -> crate::BoxFuture<'static, ()> {
            Box::pin(std::future::pending())
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
            block_on(f.resolve(Direction::Request, &held, &Never)),
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
            assert_eq!(block_on(f.resolve(Direction::Request, &held, &Never)), want);
            assert_eq!(f.uninspected(), uninspected);
            assert!(f.findings().iter().any(|x| x.rule_id == "stage-error"));
        }
    }

    /// Panics in `new_flow` (when `at_start`) or at the request head.
    struct Panicky {
        at_start: bool,
    }
    struct PanickyInspector(u32);
    impl Stage for Panicky {
        fn name(&self) -> &'static str {
            "panicky"
        }
        fn new_flow(&self, _m: &FlowMeta) -> Box<dyn Inspector> {
            assert!(!self.at_start, "new_flow bug");
            Box::new(PanickyInspector(0))
        }
    }
    impl Inspector for PanickyInspector {
        fn on_request_head(&mut self, _cx: &mut Cx<'_>, _h: &RequestHead) -> Verdict {
            self.0 += 1;
            panic!("head bug");
        }
        fn on_response_head(&mut self, _cx: &mut Cx<'_>, _h: &ResponseHead) -> Verdict {
            panic!("a panicked inspector is never called again");
        }
    }

    #[test]
    fn a_panicking_inspector_gets_its_on_error_once() {
        let resp = ResponseHead {
            status: http::StatusCode::OK,
            version: http::Version::HTTP_11,
            headers: http::HeaderMap::new(),
            reason: None,
            raw: None,
            wire: None,
        };
        for at_start in [false, true] {
            for (on_error, want) in [
                (OnError::FailClosed, Verdict::Block),
                (OnError::FailOpen, Verdict::Allow),
            ] {
                let mut p = Pipeline::new();
                p.push(
                    Arc::new(Panicky { at_start }),
                    StagePolicy {
                        on_error,
                        ..Default::default()
                    },
                );
                p.push(Arc::new(s("after", Verdict::Allow)), StagePolicy::default());
                let mut f = p.start(meta());
                assert_eq!(f.request_head(&head()), want, "at_start {at_start}");
                let found = f.take_findings();
                assert_eq!(found.len(), 1);
                assert_eq!(
                    (found[0].rule_id.as_str(), found[0].stage),
                    ("stage-panic", "panicky")
                );
                assert!(found[0].message.contains("bug"), "{}", found[0].message);
                if want == Verdict::Allow {
                    assert_eq!(f.uninspected(), 1);
                    assert_eq!(f.response_head(&resp), Verdict::Allow);
                    assert!(f.findings().is_empty(), "reported once");
                }
            }
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
            let rh = ResponseHead { status: http::StatusCode::OK, version: http::Version::HTTP_11, headers: http::HeaderMap::new(), reason: None, raw: None, wire: None };
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
