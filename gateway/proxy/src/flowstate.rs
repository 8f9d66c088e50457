//! Per-flow bookkeeping shared by the request and response halves: the pipeline's [`Flow`], the
//! communication-log record, and event emission.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sekisho_core::{
    event::now_rfc3339, CommLog, DestinationInfo, Finding, Flow, FlowMeta, HttpInfo, LateReporter,
    SourceInfo, ThreatEvent, Verdict,
};

use crate::shared::Shared;

/// What the comm log and events say about the HTTP side of a flow.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpFacts {
    pub method: Option<String>,
    pub url: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub user_agent: Option<String>,
    pub status: Option<u16>,
    pub request_id: Option<String>,
}

impl HttpFacts {
    /// The facts of a request about to enter the pipeline.
    pub fn of_request(
        parts: &http::request::Parts,
        url: &http::Uri,
        host: &str,
        path: &str,
        request_id: Option<String>,
    ) -> HttpFacts {
        HttpFacts {
            method: Some(parts.method.to_string()),
            url: Some(url.to_string()),
            host: Some(host.to_string()),
            path: Some(path.to_string()),
            user_agent: parts
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            status: None,
            request_id,
        }
    }
}

#[derive(Default)]
struct Record {
    http: HttpFacts,
    dest: DestinationInfo,
    verdict: Verdict,
    stage_verdicts: Vec<(&'static str, Verdict)>,
    event_ids: Vec<uuid::Uuid>,
    error: Option<String>,
    uninspected: u32,
    meta: Option<Arc<FlowMeta>>,
}

/// Threat events for findings a stage reports after the flow was decided, with the flow's
/// facts as they were when it started.
fn late_reporter(
    shared: &Arc<Shared>,
    meta: &Arc<FlowMeta>,
    http: &HttpFacts,
    dest: &DestinationInfo,
) -> LateReporter {
    let (shared, meta) = (Arc::clone(shared), Arc::clone(meta));
    let (http, dest) = (FlowState::http_info(http), dest.clone());
    LateReporter::new(move |f| {
        let ev = ThreatEvent::from_finding(&f, &meta, &shared.observer, dest.clone(), http.clone());
        let sink = shared.events.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { sink.threats(&[ev]).await });
            }
            Err(_) => sink.threats_now(&[ev]),
        }
    })
}

/// One flow's shared state.
pub(crate) struct FlowState {
    pub shared: Arc<Shared>,
    pub flow: tokio::sync::Mutex<Flow>,
    record: Mutex<Record>,
    started: Instant,
    finished: AtomicBool,
    request_sent: AtomicBool,
    request_sent_notify: tokio::sync::Notify,
    /// Bytes delivered to the server and to the client.
    pub to_server: AtomicU64,
    pub to_client: AtomicU64,
    /// Bytes received from the client and from the server.
    pub from_client: AtomicU64,
    pub from_server: AtomicU64,
    /// Things released when the flow ends (a pool member's in-flight count).
    held: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
    /// The client connection's activity clock (marked busy while the upstream is awaited).
    client: std::sync::OnceLock<Arc<crate::io::Activity>>,
    /// The client's `Accept-Language`: the language of the pages it is shown.
    accept_language: std::sync::OnceLock<String>,
    /// The listener's body gap timeout (else `[limits]`'s).
    body_timeout: std::sync::OnceLock<std::time::Duration>,
    /// The upstream connection's raw recording of this flow's response, and which response
    /// on that connection it is.
    raw_tap: std::sync::OnceLock<(Arc<crate::rawtap::RawTap>, u64)>,
    /// The notes on this flow's chunked response body's framing, and the response's status.
    response_wire: std::sync::OnceLock<(Arc<sekisho_core::WireNotes>, u16)>,
}

impl FlowState {
    pub fn new(
        shared: Arc<Shared>,
        mut flow: Flow,
        http: HttpFacts,
        dest: DestinationInfo,
    ) -> Arc<Self> {
        if flow.reports_late() {
            flow.set_late(late_reporter(&shared, flow.meta(), &http, &dest));
        }
        let meta = Some(Arc::clone(flow.meta()));
        Arc::new(FlowState {
            shared,
            flow: tokio::sync::Mutex::new(flow),
            record: Mutex::new(Record {
                http,
                dest,
                meta,
                ..Default::default()
            }),
            started: Instant::now(),
            finished: AtomicBool::new(false),
            request_sent: AtomicBool::new(false),
            request_sent_notify: tokio::sync::Notify::new(),
            to_server: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            from_client: AtomicU64::new(0),
            from_server: AtomicU64::new(0),
            held: Mutex::new(Vec::new()),
            client: std::sync::OnceLock::new(),
            accept_language: std::sync::OnceLock::new(),
            body_timeout: std::sync::OnceLock::new(),
            raw_tap: std::sync::OnceLock::new(),
            response_wire: std::sync::OnceLock::new(),
        })
    }

    /// Keeps the recording of this flow's raw response (once).
    pub(crate) fn set_raw_tap(&self, tap: Arc<crate::rawtap::RawTap>) {
        let g = tap.generation();
        let _ = self.raw_tap.set((tap, g));
    }

    /// Watches the framing of this flow's chunked response (with this `status`): the notes
    /// are filled by [`FlowState::note_response_framing`].
    pub(crate) fn watch_response_framing(&self, wire: Arc<sekisho_core::WireNotes>, status: u16) {
        let _ = self.response_wire.set((wire, status));
    }

    /// Fills the response's framing notes from what was recorded of its body (once the body
    /// ended or failed; only the recorded start of a long body is read).
    pub(crate) fn note_response_framing(&self) {
        let Some((wire, status)) = self.response_wire.get() else {
            return;
        };
        let Some((tap, g)) = self.raw_tap.get() else {
            return;
        };
        if tap.generation() == *g {
            if let Some(notes) = tap.read_body(*status, crate::chunkline::response_notes) {
                wire.set(notes);
            }
        }
    }

    /// The response as the upstream sent it, as far as it was recorded (see `rawtap`).
    pub(crate) fn raw_response(&self) -> Option<bytes::Bytes> {
        let (tap, g) = self.raw_tap.get()?;
        (tap.generation() == *g).then(|| tap.bytes())
    }

    /// Reads the rest of this flow's response from the upstream connection hyper let go of
    /// (see `rawtap`), within the body timeout.
    pub(crate) async fn read_rest(&self) {
        if let Some((tap, g)) = self.raw_tap.get() {
            if tap.generation() == *g {
                tap.read_rest(self.body_timeout()).await;
            }
        }
    }

    /// Sets the listener's body gap timeout (once).
    pub(crate) fn set_body_timeout(&self, t: std::time::Duration) {
        let _ = self.body_timeout.set(t);
    }

    /// The gap allowed between two body chunks on this flow.
    pub(crate) fn body_timeout(&self) -> std::time::Duration {
        self.body_timeout
            .get()
            .copied()
            .unwrap_or(self.shared.limits.body_timeout)
    }

    /// Keeps the request's `Accept-Language` for the pages this flow may show.
    pub(crate) fn set_accept_language(&self, headers: &http::HeaderMap) {
        if let Some(v) = headers
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        {
            let _ = self.accept_language.set(v.chars().take(256).collect());
        }
    }

    /// A page the gateway shows instead of the site, in the client's language; the flow's
    /// status becomes `status` and its body counts as delivered to the client.
    pub(crate) fn page(
        &self,
        status: http::StatusCode,
        page: crate::pages::Page,
    ) -> http::Response<crate::upstream::ProxyBody> {
        self.set_status(status.as_u16());
        let pages = self.shared.pages.load();
        let lang = pages.pick(self.accept_language.get().map(String::as_str));
        let r = page.response(status, &pages, lang);
        self.to_client
            .fetch_add(r.body().len() as u64, Ordering::Relaxed);
        r.map(crate::wire::full)
    }

    /// Names the client connection's activity clock (once).
    pub(crate) fn set_client_activity(&self, a: Arc<crate::io::Activity>) {
        let _ = self.client.set(a);
    }

    /// Marks the client connection busy until the guard drops (see [`crate::io::Activity::busy`]).
    pub(crate) fn client_busy(&self) -> Option<crate::io::Busy> {
        self.client.get().map(|a| a.busy())
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The upstream's name as the flow knows it: the destination domain, else its address.
    pub(crate) fn upstream_name(&self) -> String {
        let r = self.record();
        let d = &r.dest;
        let host = d.domain.clone().or_else(|| d.ip.clone());
        match (host, d.port) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h,
            (None, _) => r.http.host.clone().unwrap_or_else(|| "?".into()),
        }
    }

    /// The whole request body has been passed upstream (or there was none).
    pub fn mark_request_sent(&self) {
        self.request_sent.store(true, Ordering::Release);
        self.request_sent_notify.notify_waiters();
    }

    /// Resolves once [`FlowState::mark_request_sent`] was called.
    pub async fn request_sent(&self) {
        loop {
            let notified = self.request_sent_notify.notified();
            if self.request_sent.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    pub fn set_status(&self, status: u16) {
        self.record().http.status = Some(status);
    }

    /// Sets `tls.error` (a stable code and a sentence) on the flow's events and log line.
    pub(crate) async fn set_tls_error(&self, code: &str, message: impl Into<String>) {
        let err = sekisho_core::TlsError {
            code: code.to_string(),
            message: message.into(),
        };
        self.update_meta(|m| m.tls_error = Some(err)).await;
    }

    pub fn set_error(&self, error: impl Into<String>) {
        self.record().error.get_or_insert(error.into());
    }

    pub fn set_dest_ip(&self, ip: Option<String>) {
        self.record().dest.ip = ip;
    }

    /// Sets the destination's name and port (the reverse proxy's chosen upstream).
    pub fn set_dest_name(&self, domain: &str, port: u16) {
        let mut r = self.record();
        r.dest.domain = Some(domain.to_string());
        r.dest.port = Some(port);
    }

    /// Keeps `v` until the flow state is dropped (the end of the response body).
    pub fn hold_until_done(&self, v: Box<dyn std::any::Any + Send>) {
        if let Ok(mut h) = self.held.lock() {
            h.push(v);
        }
    }

    fn http_info(http: &HttpFacts) -> Option<HttpInfo> {
        http.method.as_ref().map(|m| HttpInfo {
            method: m.clone(),
            url: http.url.clone().unwrap_or_default(),
            hostname: http.host.clone(),
            status: http.status,
            user_agent: http.user_agent.clone(),
            request_id: http.request_id.clone(),
        })
    }

    /// Writes the flow's new findings as threat events and snapshots its verdicts.
    pub async fn emit(&self, flow: &mut Flow) {
        let events = self.take_events(flow);
        if !events.is_empty() {
            self.shared.events.threats(&events).await;
        }
    }

    /// The flow's new findings as threat events (their ids recorded for the communication
    /// log), and a snapshot of its verdicts.
    fn take_events(&self, flow: &mut Flow) -> Vec<ThreatEvent> {
        if flow.findings().is_empty() {
            self.record().verdict = flow.verdict();
            return Vec::new();
        }
        let findings = flow.take_findings();
        let mut r = self.record();
        r.verdict = flow.verdict();
        r.stage_verdicts = flow.stage_verdicts().collect();
        r.uninspected = flow.uninspected();
        r.meta = Some(Arc::clone(flow.meta()));
        let http = Self::http_info(&r.http);
        let events = findings
            .iter()
            .map(|f| {
                ThreatEvent::from_finding(
                    f,
                    flow.meta(),
                    &self.shared.observer,
                    r.dest.clone(),
                    http.clone(),
                )
            })
            .collect();
        r.event_ids.extend(findings.iter().map(|f| f.event_id));
        events
    }

    /// The stages' last word at the end of the flow ([`Flow::end`]): events they kept back are
    /// queued from a task of their own (this runs where nothing can wait).
    fn end_stages(&self, flow: &mut Flow) {
        flow.end();
        let events = self.take_events(flow);
        if events.is_empty() {
            return;
        }
        let sink = self.shared.events.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { sink.threats(&events).await });
            }
            Err(_) => sink.threats_now(&events),
        }
    }

    /// Writes a finding the proxy itself made (upstream certificate errors) as a threat event.
    pub async fn emit_own(&self, finding: Finding) {
        self.emit_own_as(finding, "alert").await;
    }

    /// [`FlowState::emit_own`] with its ECS `event.kind` (`event` for a fault, not a threat).
    pub async fn emit_own_as(&self, finding: Finding, kind: &str) {
        let event = {
            let mut r = self.record();
            r.event_ids.push(finding.event_id);
            if finding.action == sekisho_core::Action::Blocked {
                r.verdict = Verdict::Block;
            }
            let meta = r.meta.clone();
            let Some(meta) = meta else { return };
            let mut e = ThreatEvent::from_finding(
                &finding,
                &meta,
                &self.shared.observer,
                r.dest.clone(),
                Self::http_info(&r.http),
            );
            e.event.kind = kind.to_string();
            e
        };
        self.shared.events.threat(&event).await;
    }

    /// Writes the communication-log line (once) and the per-stage verdict counters.
    pub fn finish(self: &Arc<Self>) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        match self.flow.try_lock() {
            Ok(mut flow) => {
                self.end_stages(&mut flow);
                let mut r = self.record();
                r.stage_verdicts = flow.stage_verdicts().collect();
                r.uninspected = flow.uninspected();
                r.verdict = r.verdict.max(flow.verdict());
            }
            Err(_) => {
                // The flow is being driven still (a body step abandoned half-way): the stages
                // get their last word once it is free, after this line is written.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let me = Arc::clone(self);
                    rt.spawn(async move {
                        let mut flow = me.flow.lock().await;
                        me.end_stages(&mut flow);
                    });
                }
            }
        }
        if let Some((tap, g)) = self.raw_tap.get() {
            tap.release(*g);
        }
        let r = self.record();
        let Some(meta) = r.meta.clone() else { return };
        let m = &self.shared.metrics;
        for (stage, v) in &r.stage_verdicts {
            m.verdicts.with_label_values(&[stage, v.as_str()]).inc();
        }
        if r.uninspected > 0 {
            m.uninspected
                .with_label_values(&[&meta.listener])
                .inc_by(u64::from(r.uninspected));
        }
        let line = CommLog {
            timestamp: now_rfc3339(),
            event_type: "flow".into(),
            flow_id: meta.flow_id,
            listener: meta.listener.clone(),
            source: SourceInfo {
                ip: meta.client.ip().to_string(),
                port: meta.client.port(),
            },
            destination: r.dest.clone(),
            sni: meta.sni.clone(),
            tls: sekisho_core::FlowTls {
                error: meta.tls_error.clone(),
                upstream: meta.upstream_tls.clone(),
                ..meta.tls.into()
            },
            method: r.http.method.clone(),
            host: r.http.host.clone(),
            path: r.http.path.clone(),
            status: r.http.status,
            bytes_to_server: self.to_server.load(Ordering::Relaxed),
            bytes_to_client: self.to_client.load(Ordering::Relaxed),
            bytes_from_client: self.from_client.load(Ordering::Relaxed),
            bytes_from_server: self.from_server.load(Ordering::Relaxed),
            duration_ms: self.started.elapsed().as_millis() as u64,
            verdict: r.verdict,
            event_ids: r.event_ids.clone(),
            facility_id: meta.facility_id.clone(),
            facility_roles: meta.facility_roles.clone(),
            request_id: r.http.request_id.clone(),
            error: r.error.clone(),
        };
        drop(r);
        self.shared.events.flow(&line);
    }

    /// Counts bytes that passed both ways uninspected (a spliced or upgraded stream): received
    /// and delivered alike.
    pub(crate) fn count_relayed(&self, to_server: u64, to_client: u64) {
        self.from_client.fetch_add(to_server, Ordering::Relaxed);
        self.to_server.fetch_add(to_server, Ordering::Relaxed);
        self.from_server.fetch_add(to_client, Ordering::Relaxed);
        self.to_client.fetch_add(to_client, Ordering::Relaxed);
    }

    /// Updates the flow's meta (SNI, TLS mode) as a tunnel is classified.
    pub async fn update_meta(&self, f: impl FnOnce(&mut FlowMeta)) {
        let mut flow = self.flow.lock().await;
        flow.update_meta(f);
        self.record().meta = Some(Arc::clone(flow.meta()));
    }
}

/// Writes the comm log when dropped (end of the response body, or the flow abandoned).
pub(crate) struct FinishGuard(pub Arc<FlowState>);

impl Drop for FinishGuard {
    fn drop(&mut self) {
        self.0.finish();
    }
}
