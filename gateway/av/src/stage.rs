//! The AV stage: holds request and response bodies, scans every extracted piece in `resolve`
//! (small bodies in place, larger ones on the blocking pool), blocks on a detection (or a limit,
//! by `on_limit`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sekisho_content::Limits;
use sekisho_core::{
    BoxFuture, Cx, Direction, Evidence, FileInfo, Finding, FlowMeta, HeldBody, Inspector,
    RequestHead, ResponseHead, SandboxInfo, Severity, Stage, Verdict,
};

use crate::icap::{Asked, Icap, IcapMethod, Message};
use crate::metrics::AvMetrics;
use crate::sandbox::{Judged, OnTimeout, SandboxClient};
use crate::scan::{issue_name, Program, ScanReport};
use crate::{scan_bytes_keeping, AvConfig, Engine, LimitAction};

/// Programs found inside one body submitted to the sandbox at most (more are listed, not
/// submitted: each is an `uninspected` event).
const SANDBOX_MEMBERS: usize = 8;

/// Bodies up to this size are scanned on the calling thread.
const INLINE_SCAN_BYTES: usize = 64 * 1024;

/// The stage (`av`).
pub struct AvStage {
    engine: Arc<Engine>,
    limits: Limits,
    timeout: Duration,
    on_limit: LimitAction,
    icap: Icap,
    sandbox: Option<Arc<SandboxClient>>,
    metrics: Option<Arc<AvMetrics>>,
}

impl AvStage {
    /// A stage over a loaded engine (ICAP servers come with [`AvStage::with_icap`]).
    pub fn new(engine: Arc<Engine>, cfg: &AvConfig) -> Self {
        AvStage {
            engine,
            limits: cfg.limits(),
            timeout: Duration::from_secs(cfg.scan_timeout_secs),
            on_limit: cfg.on_limit,
            icap: Icap::default(),
            sandbox: None,
            metrics: None,
        }
    }

    /// The stage submitting programs and scripts its signatures pass to a sandbox worker.
    pub fn with_sandbox(mut self, sandbox: Option<SandboxClient>) -> Self {
        self.sandbox = sandbox.map(Arc::new);
        self
    }

    /// The stage asking `icap`'s servers too.
    pub fn with_icap(mut self, icap: Icap) -> Self {
        self.icap = icap;
        self
    }

    /// The stage counting into `metrics` (`sekisho_av_*`).
    pub fn with_metrics(mut self, metrics: AvMetrics) -> Self {
        self.metrics = Some(Arc::new(metrics));
        self
    }
}

#[derive(Default, Clone)]
struct BodyHints {
    content_type: Option<String>,
    content_encoding: Option<String>,
    name: Option<String>,
}

/// The request line an ICAP server is shown.
#[derive(Default, Clone)]
struct RequestLine {
    method: String,
    host: String,
    target: String,
}

struct AvInspector {
    engine: Arc<Engine>,
    limits: Limits,
    timeout: Duration,
    on_limit: LimitAction,
    icap: Icap,
    sandbox: Option<Arc<SandboxClient>>,
    line: RequestLine,
    request: BodyHints,
    response: BodyHints,
    metrics: Option<Arc<AvMetrics>>,
}

impl Stage for AvStage {
    fn name(&self) -> &'static str {
        "av"
    }
    fn scans_whole_bodies(&self) -> bool {
        true
    }
    fn reports_late(&self) -> bool {
        self.sandbox.is_some()
    }
    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(AvInspector {
            engine: Arc::clone(&self.engine),
            limits: self.limits.clone(),
            timeout: self.timeout,
            on_limit: self.on_limit,
            icap: self.icap.clone(),
            sandbox: self.sandbox.clone(),
            line: RequestLine::default(),
            request: BodyHints::default(),
            response: BodyHints::default(),
            metrics: self.metrics.clone(),
        })
    }
}

fn header(h: &http::HeaderMap, name: http::header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A file name from a Content-Disposition header, or the last path segment.
fn file_name(headers: &http::HeaderMap, path: Option<&str>) -> Option<String> {
    let cd = header(headers, http::header::CONTENT_DISPOSITION);
    if let Some(n) = cd.as_deref().and_then(|c| {
        c.split(';').find_map(|p| {
            p.trim()
                .strip_prefix("filename=")
                .map(|v| v.trim_matches('"').to_string())
        })
    }) {
        return Some(n);
    }
    let path = path?.split(['?', '#']).next()?;
    path.rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Inspector for AvInspector {
    fn on_request_head(&mut self, _cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        if head.method == http::Method::CONNECT {
            return Verdict::Allow;
        }
        self.line = RequestLine {
            method: head.method.to_string(),
            host: head.host.clone(),
            target: head.path_and_query().to_string(),
        };
        self.request = BodyHints {
            content_type: header(&head.headers, http::header::CONTENT_TYPE),
            content_encoding: header(&head.headers, http::header::CONTENT_ENCODING),
            name: file_name(&head.headers, Some(head.path_and_query())),
        };
        self.response.name = file_name(&http::HeaderMap::new(), Some(head.path_and_query()));
        Verdict::Hold
    }

    fn on_response_head(&mut self, _cx: &mut Cx<'_>, head: &ResponseHead) -> Verdict {
        self.response.content_type = header(&head.headers, http::header::CONTENT_TYPE);
        self.response.content_encoding = header(&head.headers, http::header::CONTENT_ENCODING);
        if let Some(n) = file_name(&head.headers, None) {
            self.response.name = Some(n);
        }
        Verdict::Hold
    }

    fn resolve<'a>(&'a mut self, cx: &'a mut Cx<'_>, held: &'a HeldBody) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            if held.is_empty() {
                return Verdict::Allow;
            }
            let dir = held.direction().unwrap_or(Direction::Response);
            let hints = match dir {
                Direction::Request => self.request.clone(),
                Direction::Response => self.response.clone(),
            };
            let data = held.contiguous();
            let root = format!("{}.body", dir.as_str());
            let Some(mut report) = self.scan(cx, &data, &root, &hints).await else {
                return Verdict::Allow;
            };
            let mut verdict = Verdict::Allow;
            if report.hits.is_empty() {
                verdict = self
                    .ask_icap(cx, dir, &data, &root, &hints, &mut report)
                    .await;
            }
            if report.hits.is_empty() {
                let programs = std::mem::take(&mut report.programs);
                let asked = self.ask_sandbox(cx, &data, &root, &hints, &programs);
                verdict = verdict.max(asked.await);
                verdict = verdict.max(self.unlisted(cx, &root, report.programs_unlisted));
            }
            verdict.max(self.report(cx, &report))
        })
    }
}

impl AvInspector {
    /// The engine's scan of one body; `None` when the stage failed (reported on `cx`).
    async fn scan(
        &self,
        cx: &mut Cx<'_>,
        data: &bytes::Bytes,
        root: &str,
        hints: &BodyHints,
    ) -> Option<ScanReport> {
        let engine = Arc::clone(&self.engine);
        let limits = self.limits.clone();
        // The scan stops by the stage's decision deadline when that comes before the scan's
        // own time limit, so no blocking thread keeps scanning for a flow already decided.
        let own = self.timeout;
        let due = cx.deadline();
        let left = due.map(|d| d.saturating_duration_since(Instant::now()));
        let (timeout, stage_bound) = match left {
            Some(l) if l < own => (l, true),
            _ => (own, false),
        };
        let inline = data.len() <= INLINE_SCAN_BYTES;
        let size = data.len();
        let (data, root, hints) = (data.clone(), root.to_string(), hints.clone());
        let keep = if self.sandbox.is_some() {
            SANDBOX_MEMBERS
        } else {
            0
        };
        let scan = move || {
            let h = sekisho_content::Hints {
                content_type: hints.content_type.as_deref(),
                content_encoding: hints.content_encoding.as_deref(),
                name: hints.name.as_deref(),
            };
            scan_bytes_keeping(&engine, &data, &root, &h, &limits, timeout, true, keep)
        };
        // A small body scans in place (microseconds with the thread's cached scanner); handing
        // it to the blocking pool would cost more than the scan. Larger ones (archives to
        // unpack, long scans) go to the blocking pool.
        let started = Instant::now();
        let report = if inline {
            scan()
        } else {
            match tokio::task::spawn_blocking(scan).await {
                Ok(r) => r,
                Err(e) => {
                    cx.fail(format!("AV scan task failed: {e}"));
                    return None;
                }
            }
        };
        if let Some(m) = &self.metrics {
            m.record(&report, size, started.elapsed());
        }
        if stage_bound && due.is_some_and(|d| Instant::now() >= d) && report.hits.is_empty() {
            cx.fail(format!(
                "AV scan stopped at the stage's decision deadline ({timeout:?} left when it began)"
            ));
            return None;
        }
        if let Some(e) = &report.error {
            cx.fail(format!("AV engine: {e}"));
            return None;
        }
        Some(report)
    }

    /// Asks the `[[av.icap]]` servers for this direction; their detections join `report`'s
    /// hits; a server that could not answer is an event, and a block unless it fails open.
    async fn ask_icap(
        &self,
        cx: &mut Cx<'_>,
        dir: Direction,
        data: &[u8],
        root: &str,
        hints: &BodyHints,
        report: &mut ScanReport,
    ) -> Verdict {
        let method = match dir {
            Direction::Request => IcapMethod::Reqmod,
            Direction::Response => IcapMethod::Respmod,
        };
        if self.icap.none_for(method) {
            return Verdict::Allow;
        }
        let m = Message {
            method: &self.line.method,
            host: &self.line.host,
            target: &self.line.target,
            content_type: hints.content_type.as_deref(),
            content_encoding: hints.content_encoding.as_deref(),
            file_name: hints.name.as_deref(),
        };
        let left = cx.deadline().map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let answers = self.icap.ask(method, &m, data, left).await;
        let mut verdict = Verdict::Allow;
        for a in &answers {
            if let Some(m) = &self.metrics {
                m.record_icap(a);
            }
            if let Some(hit) = a.hit(root, hints.name.as_deref(), data) {
                report.hits.push(hit);
            } else if a.result.is_err() {
                verdict = verdict.max(icap_failed(cx, a, root));
            }
        }
        verdict
    }

    /// Holds the programs and scripts the signatures passed for the sandbox's verdict: the
    /// body itself, and those found inside it (archive members, a decoded body, attachments),
    /// all submitted at once. Malicious blocks, suspicious alerts, clean passes; no verdict in
    /// time (or a worker that fails, or a member too large to submit) is an `uninspected`
    /// event that blocks or delivers by `on_timeout`.
    async fn ask_sandbox(
        &self,
        cx: &mut Cx<'_>,
        data: &bytes::Bytes,
        root: &str,
        hints: &BodyHints,
        programs: &[Program],
    ) -> Verdict {
        let Some(sb) = &self.sandbox else {
            return Verdict::Allow;
        };
        let whole = sekisho_sandbox::sniff::runner(data).map(|r| Program {
            provenance: root.to_string(),
            name: hints.name.clone(),
            kind: r.name(),
            size: data.len() as u64,
            data: Some(data.clone()),
        });
        let asked: Vec<&Program> = whole
            .iter()
            .chain(programs)
            .filter(|p| sb.wants(p.kind))
            .collect();
        if asked.is_empty() {
            return Verdict::Allow;
        }
        let left = cx.deadline().map_or(Duration::MAX, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let judged =
            futures_util::future::join_all(asked.iter().map(|p| judge_one(sb, p, left))).await;
        let mut verdict = Verdict::Allow;
        for (p, j) in asked.iter().zip(judged) {
            verdict = verdict.max(sandbox_verdict(cx, sb, p, j));
        }
        verdict
    }

    /// Programs found in a body past those listed for the sandbox: one `uninspected` event,
    /// delivered or blocked by `on_timeout` (never a silent pass).
    fn unlisted(&self, cx: &mut Cx<'_>, root: &str, count: u32) -> Verdict {
        let Some(sb) = &self.sandbox else {
            return Verdict::Allow;
        };
        if count == 0 {
            return Verdict::Allow;
        }
        let why = format!(
            "{count} more programs or scripts in it were not submitted (past {} listed)",
            SANDBOX_MEMBERS * 2
        );
        let file = FileInfo {
            name: String::new(),
            size: 0,
            sha256: String::new(),
            mime: String::new(),
            stored: None,
        };
        no_verdict(cx, sb, "program", root, &why, file)
    }

    /// Findings for the report's hits and issues, and the verdict they call for.
    fn report(&self, cx: &mut Cx<'_>, report: &ScanReport) -> Verdict {
        let mut verdict = Verdict::Allow;
        for hit in &report.hits {
            let d = &hit.detection;
            let what = hit.name.as_deref().unwrap_or(&hit.provenance);
            let message = match &d.description {
                Some(desc) => format!("{} found in {what}: {desc}", d.rule),
                None => format!("{} found in {what}", d.rule),
            };
            let mut f = Finding::new(
                d.engine,
                d.rule.clone(),
                message,
                Severity::High,
                "malware",
                Evidence::new(hit.provenance.clone(), what),
            );
            f.source = d.source_file.clone().map(|s| (s, d.line.unwrap_or(0)));
            f.file = Some(FileInfo {
                name: hit.name.clone().unwrap_or_default(),
                size: hit.size,
                sha256: hit.sha256.clone(),
                mime: hit.mime.clone(),
                stored: None,
            });
            cx.report(f);
            verdict = Verdict::Block;
        }
        for issue in &report.issues {
            let f = Finding::new(
                "content",
                issue_name(issue.kind),
                format!(
                    "{} could not be fully inspected: {}",
                    issue.provenance, issue.reason
                ),
                Severity::Medium,
                "uninspected",
                Evidence::new(issue.provenance.clone(), &issue.reason),
            );
            cx.report(f);
            verdict = verdict.max(match self.on_limit {
                LimitAction::Block => Verdict::Block,
                LimitAction::Alert => Verdict::Alert,
            });
        }
        verdict
    }
}

/// The sandbox's answer for one program: its report, or why there is none (too large to
/// submit, cut short at a limit, no verdict in time, a worker that failed).
async fn judge_one(sb: &SandboxClient, p: &Program, left: Duration) -> Judged {
    match &p.data {
        Some(d) if sb.too_large(d) => Judged::Failed(format!(
            "{} bytes, over av.sandbox.max_file_bytes ({})",
            d.len(),
            sb.config.max_file_bytes
        )),
        Some(d) => sb.judge(d, left).await,
        None => Judged::Failed(format!(
            "{} bytes not kept for the sandbox (cut at a limit, or past the programs kept per body)",
            p.size
        )),
    }
}

/// The finding and verdict for one program's answer.
fn sandbox_verdict(cx: &mut Cx<'_>, sb: &SandboxClient, p: &Program, judged: Judged) -> Verdict {
    let (root, file_type) = (p.provenance.as_str(), p.kind);
    let sha = p
        .data
        .as_deref()
        .map(|d| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(d)))
        .unwrap_or_default();
    let file = FileInfo {
        name: p.name.clone().unwrap_or_default(),
        size: p.size,
        sha256: sha,
        mime: String::new(),
        stored: None,
    };
    let report = match judged {
        Judged::Report(r)
            if matches!(
                r["verdict"].as_str(),
                Some("malicious" | "suspicious" | "clean" | "not_detonated")
            ) =>
        {
            r
        }
        Judged::Report(r) => {
            let why = format!("no verdict in the report: {}", r["verdict"]);
            return no_verdict(cx, sb, file_type, root, &why, file);
        }
        Judged::Pending { why, task } => {
            follow_late(cx, sb, p, task, &file);
            return no_verdict(cx, sb, file_type, root, &why, file);
        }
        Judged::Timeout(why) | Judged::Failed(why) => {
            return no_verdict(cx, sb, file_type, root, &why, file);
        }
    };
    match verdict_finding(&report, root, file_type, file, false) {
        Some((f, outcome)) => {
            cx.report(f);
            outcome
        }
        None => Verdict::Allow,
    }
}

/// The finding for a malicious or suspicious report (late: after the flow was decided), and
/// the verdict it calls for; `None` for any other verdict.
fn verdict_finding(
    report: &serde_json::Value,
    root: &str,
    kind: &str,
    file: FileInfo,
    late: bool,
) -> Option<(Finding, Verdict)> {
    let info = sandbox_info(report, late);
    let (rule, severity, outcome) = match (info.verdict.as_str(), late) {
        ("malicious", false) => ("Sandbox.Malicious", Severity::High, Verdict::Block),
        ("suspicious", false) => ("Sandbox.Suspicious", Severity::Medium, Verdict::Alert),
        ("malicious", true) => ("Sandbox.LateMalicious", Severity::High, Verdict::Allow),
        ("suspicious", true) => ("Sandbox.LateSuspicious", Severity::Medium, Verdict::Allow),
        _ => return None,
    };
    let signatures = info.signatures.join(", ");
    let when = if late {
        "late sandbox verdict"
    } else {
        "sandbox verdict"
    };
    let after = if late {
        ", delivered before the verdict came"
    } else {
        ""
    };
    let mut f = Finding::new(
        "sandbox",
        rule,
        format!(
            "{when} {} (score {}) for {root} ({kind}){after}: {signatures}",
            info.verdict, info.score
        ),
        severity,
        "malware",
        Evidence::new(root.to_string(), &signatures),
    );
    f.file = Some(file);
    f.sandbox = Some(Box::new(info));
    Some((f, outcome))
}

/// The event's `sandbox` facts from a worker's report.
fn sandbox_info(report: &serde_json::Value, late: bool) -> SandboxInfo {
    SandboxInfo {
        verdict: report["verdict"].as_str().unwrap_or("none").to_string(),
        score: report["score"].as_u64().map_or(0, |s| s.min(10) as u8),
        signatures: report["signatures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        late,
    }
}

/// Follows a task whose verdict did not come in time: a malicious or suspicious verdict that
/// comes later is an event of the flow (`Sandbox.LateMalicious`, `Sandbox.LateSuspicious`)
/// naming the file, so the SOC can act on a file already delivered.
fn follow_late(cx: &Cx<'_>, sb: &SandboxClient, p: &Program, task: String, file: &FileInfo) {
    let Some(late) = cx.late() else {
        return;
    };
    let (root, kind, file) = (p.provenance.clone(), p.kind, file.clone());
    sb.follow(task, move |outcome| match outcome {
        Ok(report) => {
            if let Some((f, _)) = verdict_finding(&report, &root, kind, file, true) {
                late.report(f);
            }
        }
        Err(why) => late.report(lost_follow(&root, kind, file, &why)),
    });
}

/// The event for a late verdict that will never come (the worker forgot the task, its
/// detonation failed, or the worker stayed out of reach): the file stays unjudged, and the
/// SOC is told so rather than left waiting for a `Sandbox.Late…` event.
fn lost_follow(root: &str, kind: &str, file: FileInfo, why: &str) -> Finding {
    let message = format!("the late sandbox verdict for {root} ({kind}) will not come: {why}");
    unjudged("Sandbox.LateLost", message, root, why, file, true)
}

/// An `uninspected` sandbox finding without a verdict (`sandbox.verdict = "none"`).
fn unjudged(
    rule: &'static str,
    message: String,
    root: &str,
    why: &str,
    file: FileInfo,
    late: bool,
) -> Finding {
    let mut f = Finding::new(
        "sandbox",
        rule,
        message,
        Severity::Medium,
        "uninspected",
        Evidence::new(root.to_string(), why),
    );
    f.file = Some(file);
    f.sandbox = Some(Box::new(SandboxInfo {
        verdict: "none".into(),
        late,
        ..SandboxInfo::default()
    }));
    f
}

/// The event for a file the sandbox did not judge (no verdict in time, a worker that failed
/// or answered nonsense, a file over the size submitted), and the verdict `on_timeout` asks
/// for: never a silent pass.
fn no_verdict(
    cx: &mut Cx<'_>,
    sb: &SandboxClient,
    file_type: &str,
    root: &str,
    why: &str,
    file: FileInfo,
) -> Verdict {
    let message = format!("{root} ({file_type}) was not judged by the sandbox: {why}");
    cx.report(unjudged(
        "Sandbox.NoVerdict",
        message,
        root,
        why,
        file,
        false,
    ));
    match sb.config.on_timeout_for(file_type) {
        OnTimeout::Block => Verdict::Block,
        OnTimeout::Alert => Verdict::Alert,
    }
}

/// The event for a server that could not answer: a block when it fails closed (the default),
/// an alert when it fails open.
fn icap_failed(cx: &mut Cx<'_>, a: &Asked, root: &str) -> Verdict {
    let Err(e) = &a.result else {
        return Verdict::Allow;
    };
    let why = e.to_string();
    let mut f = Finding::new(
        "icap",
        "Sekisho.ICAP.Error",
        format!("ICAP server {} could not judge {root}: {why}", a.server),
        Severity::Medium,
        "uninspected",
        Evidence::new(root, &why),
    );
    f.source = Some((a.url.clone(), 0));
    cx.report(f);
    match a.on_error {
        sekisho_core::OnError::FailClosed => Verdict::Block,
        sekisho_core::OnError::FailOpen => Verdict::Alert,
    }
}
