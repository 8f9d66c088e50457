use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::{
    Direction, Finding, FlowMeta, RequestHead, Respond, ResponseHead, StageError, TlsHello, Verdict,
};

/// A boxed, sendable future (the one async point of the stage contract).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A pluggable inspection stage (url, ips, av, sandbox, waf, host policy …).
///
/// A stage holds its immutable rule-set snapshot; [`Stage::new_flow`] hands each flow an
/// [`Inspector`] that keeps that snapshot for the flow's whole life.
pub trait Stage: Send + Sync + 'static {
    /// Short stable name, used in config, metrics labels and events.
    fn name(&self) -> &'static str;
    /// Called once per flow.
    fn new_flow(&self, meta: &FlowMeta) -> Box<dyn Inspector>;
    /// The client connection `conn_id` ([`FlowMeta::conn_id`]) has closed: drop what the stage
    /// keeps for it. Called once per connection on the pipeline in force when it closed.
    fn connection_closed(&self, _conn_id: u64) {}
    /// Why traffic to `host` must never be decrypted (a URL category marked splice), if it must
    /// not: asked before the gateway decrypts a blocked tunnel only to show its block page.
    fn never_decrypt(&self, _host: &str) -> Option<String> {
        None
    }
    /// The URL categories (or lists) `host` belongs to, for choices an operator makes by
    /// category (`[tls] legacy_splice_categories`). Asked rarely: never per request.
    fn host_categories(&self, _host: &str) -> Vec<String> {
        Vec::new()
    }
    /// Whether the stage judges whole bodies (a scanner that must see a file from its first
    /// byte): the proxy then applies `[policy] range_requests` to `Range` requests.
    fn scans_whole_bodies(&self) -> bool {
        false
    }
    /// Whether the stage may report findings after a flow was decided ([`Cx::late`]): only
    /// then does the proxy prepare a [`LateReporter`] for each flow.
    fn reports_late(&self) -> bool {
        false
    }
}

/// Per-flow inspection state. Every phase has a no-op default (pingora-style), so a stage
/// implements only the phases it cares about. Per-chunk work is synchronous and CPU-bound.
pub trait Inspector: Send {
    /// A CONNECT tunnel's TLS ClientHello, before the gateway decides to decrypt or splice.
    fn on_tls_hello(&mut self, _cx: &mut Cx<'_>, _hello: &TlsHello) -> Verdict {
        Verdict::Allow
    }
    /// The request line and headers.
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, _head: &RequestHead) -> Verdict {
        Verdict::Allow
    }
    /// One request body chunk; `end` on the last one (which may be empty).
    fn on_request_body(&mut self, _cx: &mut Cx<'_>, _chunk: &Bytes, _end: bool) -> Verdict {
        Verdict::Allow
    }
    /// The response status and headers.
    fn on_response_head(&mut self, _cx: &mut Cx<'_>, _head: &ResponseHead) -> Verdict {
        Verdict::Allow
    }
    /// One response body chunk; `end` on the last one (which may be empty).
    fn on_response_body(&mut self, _cx: &mut Cx<'_>, _chunk: &Bytes, _end: bool) -> Verdict {
        Verdict::Allow
    }
    /// One WebSocket frame of a connection this flow's request upgraded (both directions, in
    /// the order each side sent them). Nothing of the frame has been relayed yet: `Block`
    /// closes the connection before it goes on. `Hold` means `Allow` here.
    fn on_ws_frame(&mut self, _cx: &mut Cx<'_>, _frame: &crate::WsFrame) -> Verdict {
        Verdict::Allow
    }
    /// The flow is over: its response delivered, or the flow abandoned (upstream failure,
    /// client gone, a timeout). A last chance to report findings kept back (a WAF reports one
    /// event per transaction); the verdict no longer matters here.
    fn on_flow_end(&mut self, _cx: &mut Cx<'_>) {}
    /// While this inspector holds `dir`: how many bytes it needs to decide. Once the held body
    /// reaches them and goes on, the pipeline asks it to [`Inspector::resolve`] on what is held
    /// ([`HeldBody::is_prefix`]) and stops holding for it, so the rest streams past it (a WAF
    /// past its body limit). `None` (the default): the whole body.
    fn hold_limit(&self, _dir: Direction) -> Option<usize> {
        None
    }
    /// Only after this inspector returned [`Verdict::Hold`]: decide on the held body. The pipeline
    /// waits until [`Cx::deadline`] and then applies the stage's `on_error` (a panic does the
    /// same); heavy work belongs on a blocking pool and should stop by the deadline.
    fn resolve<'a>(
        &'a mut self,
        _cx: &'a mut Cx<'_>,
        _held: &'a HeldBody,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(async { Verdict::Allow })
    }
}

/// Reports findings after a flow was decided (a verdict that came after the stage stopped
/// waiting for it): each becomes a threat event of the flow, with the flow's facts as they were
/// when it started. The flow's outcome does not change.
#[derive(Clone)]
pub struct LateReporter(std::sync::Arc<dyn Fn(Finding) + Send + Sync>);

impl LateReporter {
    /// A reporter that hands each finding to `f`.
    pub fn new(f: impl Fn(Finding) + Send + Sync + 'static) -> Self {
        LateReporter(std::sync::Arc::new(f))
    }

    /// Reports one finding.
    pub fn report(&self, finding: Finding) {
        (self.0)(finding)
    }

    /// The same reporter, naming `stage` and the flow's action (allowed: it was not stopped)
    /// in each finding.
    pub(crate) fn for_stage(&self, stage: &'static str) -> LateReporter {
        let inner = self.clone();
        LateReporter::new(move |mut f| {
            f.stage = stage;
            f.action = crate::Action::Allowed;
            inner.report(f)
        })
    }
}

impl std::fmt::Debug for LateReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LateReporter")
    }
}

/// What an inspector may do besides returning a verdict: report findings, choose the client's
/// response, ask for a tunnel to be spliced, or fail.
pub struct Cx<'a> {
    meta: &'a FlowMeta,
    pub(crate) findings: Vec<Finding>,
    pub(crate) error: Option<StageError>,
    pub(crate) deadline: Option<std::time::Instant>,
    pub(crate) respond: Option<Respond>,
    pub(crate) splice: Option<String>,
    pub(crate) late: Option<LateReporter>,
}

impl<'a> Cx<'a> {
    /// A context for one callback on a flow.
    pub fn new(meta: &'a FlowMeta) -> Self {
        Cx {
            meta,
            findings: Vec::new(),
            error: None,
            deadline: None,
            respond: None,
            splice: None,
            late: None,
        }
    }

    /// A context whose callback must answer by `deadline` (what [`Inspector::resolve`] gets).
    pub fn with_deadline(meta: &'a FlowMeta, deadline: std::time::Instant) -> Self {
        Cx {
            deadline: Some(deadline),
            ..Cx::new(meta)
        }
    }

    /// When the stage's decision is due: set in [`Inspector::resolve`] (the stage's
    /// `resolve_timeout_secs`), so an engine can stop its own work in time. Past it the pipeline
    /// stops waiting and applies the stage's `on_error`. `None` in the synchronous phases.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }

    /// The flow's connection facts.
    pub fn meta(&self) -> &FlowMeta {
        self.meta
    }

    /// In [`Inspector::resolve`], when the proxy carries the flow's events: a reporter for
    /// findings that come after the decision (a verdict that arrived too late to act on).
    pub fn late(&self) -> Option<LateReporter> {
        self.late.clone()
    }

    /// Reports a finding; it becomes a threat event.
    pub fn report(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Says the inspector could not decide (engine error, timeout, limit); the stage's
    /// `on_error` policy turns that into a verdict. A string is an [`StageError::Engine`].
    pub fn fail(&mut self, error: impl Into<StageError>) {
        self.error = Some(error.into());
    }

    /// Chooses the client's response: with a `Block` verdict it replaces the 403 page; with any
    /// other verdict the gateway answers the request itself (see [`Respond`]). Ignored in the
    /// body phases once the response head has gone, and in detect mode for a block.
    pub fn respond(&mut self, response: Respond) {
        self.respond = Some(response);
    }

    /// In [`Inspector::on_tls_hello`]: asks the gateway to pass this tunnel through without
    /// decrypting it (`reason` is logged). A block by any stage still wins.
    pub fn splice(&mut self, reason: impl Into<String>) {
        self.splice = Some(reason.into());
    }

    /// Findings reported so far (for offline tools that drive inspectors directly).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// The error reported by [`Cx::fail`], if any, as text.
    pub fn error(&self) -> Option<&str> {
        self.error.as_ref().map(|e| match e {
            StageError::Engine(s) | StageError::Timeout(s) | StageError::Limit(s) => s.as_str(),
        })
    }

    /// The error reported by [`Cx::fail`], if any.
    pub fn stage_error(&self) -> Option<&StageError> {
        self.error.as_ref()
    }

    /// The response chosen with [`Cx::respond`], if any.
    pub fn response(&self) -> Option<&Respond> {
        self.respond.as_ref()
    }
}

/// A body kept by the proxy while a stage holds it: the chunks as received.
#[derive(Clone, Debug, Default)]
pub struct HeldBody {
    direction: Option<Direction>,
    chunks: Vec<Bytes>,
    len: usize,
    prefix: bool,
}

impl HeldBody {
    /// An empty held body for one direction.
    pub fn new(direction: Direction) -> Self {
        HeldBody {
            direction: Some(direction),
            chunks: Vec::new(),
            len: 0,
            prefix: false,
        }
    }

    /// Whether the body goes on past these bytes (a stage deciding at its
    /// [`Inspector::hold_limit`]), rather than having ended.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Marks the body as going on past what is held, or as complete.
    pub fn set_prefix(&mut self, prefix: bool) {
        self.prefix = prefix;
    }

    /// Appends a chunk (the caller enforces the hold limits).
    pub fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push(chunk);
    }

    /// Request or response.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// The chunks in order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Total bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer (copies unless there is a single chunk).
    pub fn contiguous(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut v = Vec::with_capacity(self.len);
                for c in many {
                    v.extend_from_slice(c);
                }
                Bytes::from(v)
            }
        }
    }

    /// Takes the chunks out, leaving the body empty.
    pub fn take_chunks(&mut self) -> Vec<Bytes> {
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }
}
