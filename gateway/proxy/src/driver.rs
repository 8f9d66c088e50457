//! The pipeline driver the forward and reverse proxies share: one inspected HTTP exchange
//! (request head, request body, upstream, response head, response body, holds), and the
//! responses stages choose. A destination is either the forward proxy's URI or a [`Pool`] (a
//! reverse-proxy route) behind a small trait, so neither proxy imports the other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sekisho_core::{
    BoxFuture, Direction, Evidence, Finding, RequestHead, Respond, ResponseHead, Severity, Verdict,
};

use crate::body::{inspect, is_blocked, DrainOnDrop};
use crate::config::RangeRequests;
use crate::conn::ConnInfo;
use crate::expect::{wants_continue, Gate};
use crate::fault::{self, Fault};
use crate::flowstate::{FinishGuard, FlowState};
use crate::guard::Refused;
use crate::pages::{Page, Reason};
use crate::range::Wanted;
use crate::shared::Shared;
use crate::shed;
use crate::tlserror::Handshake;
use crate::upstream::{classify, ProxyBody, UpstreamFailure};
use crate::wire::{add_via, cl_and_te, empty, strip_hop_by_hop};

/// A pool of upstreams (a reverse-proxy route): what the driver needs to send a request there.
pub(crate) trait Pool: Send + Sync {
    /// Rewrites the request for the pool (URI, Host, `X-Request-Id`, forwarded headers).
    fn prepare(&self, parts: &mut http::request::Parts);
    /// How long the upstream may take to send its response head.
    fn response_timeout(&self, default: Duration) -> Duration;
    /// The request id sent upstream (echoed to the client).
    fn request_id(&self) -> &str;
    /// Sends the request to a member (retrying idempotent requests on others).
    fn send<'a>(
        &'a self,
        shared: &'a Shared,
        state: &'a FlowState,
        req: Request<ProxyBody>,
    ) -> BoxFuture<'a, Result<Response<Incoming>, SendError>>;
}

/// Where an inspected request goes.
pub(crate) enum Dest {
    /// The forward proxy's target: this URI; `drop_host` when the URI carries the client's
    /// authority (one `:authority` upstream, no Host).
    Direct { uri: Uri, drop_host: bool },
    /// A reverse-proxy route's pool.
    Pool(Box<dyn Pool>),
}

/// Why a request did not reach an upstream.
pub(crate) enum SendError {
    /// The client failed (connect, TLS, protocol).
    Upstream(hyper_util::client::legacy::Error),
    /// The pool had no member left to try.
    NoUpstream,
}

/// One HTTP exchange through the pipeline: what every step of the driver reads.
pub(crate) struct Exchange {
    pub shared: Arc<Shared>,
    pub conn: Arc<ConnInfo>,
    pub state: Arc<FlowState>,
    /// The request head the stages judge (the forward proxy's absolute URL, the reverse proxy's
    /// canonical target).
    pub head: RequestHead,
    pub dest: Dest,
    pub started: Instant,
}

/// The response a step gives the client instead of going on (a block page, an answer, a 5xx).
type Early = Response<ProxyBody>;

/// What the upstream said, after the response-head phase.
struct Answered {
    parts: http::response::Parts,
    body: Incoming,
    verdict: Verdict,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// Runs the pipeline on a request, sends it to its destination, and runs the pipeline on the
/// response: the part the forward and reverse proxies share. Each step may end the exchange
/// with its own response.
pub(crate) async fn inspect_and_send(
    x: Exchange,
    guard: FinishGuard,
    mut parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    if let Some(a) = parts.extensions.get::<crate::serve::ClientActivity>() {
        x.state.set_client_activity(Arc::clone(&a.0));
    }
    x.state
        .set_body_timeout(x.shared.limits_of(x.conn.index).body_timeout);
    let done: Result<Response<ProxyBody>, Early> = async {
        // Both Content-Length and Transfer-Encoding: the classic smuggling candidate. RFC 9112
        // §6.3 lets a server refuse it; we do, so no two readers can disagree on its length.
        // hyper drops Content-Length when chunked wins: the raw head tells (read only when a
        // Transfer-Encoding is there, so ordinary requests pay one header lookup).
        if parts.version < Version::HTTP_2
            && parts.headers.contains_key(header::TRANSFER_ENCODING)
            && x.head.raw.as_deref().is_some_and(cl_and_te)
        {
            let what = "both Content-Length and Transfer-Encoding";
            shed::report(&x.shared, &x.conn, shed::Attack::Malformed, what).await;
            x.state.set_error(what);
            let page = Page::new(
                Reason::BadRequest(format!("the request has {what}")),
                &x.head.host,
                None,
            );
            let mut r = x.state.page(StatusCode::BAD_REQUEST, page);
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Err(r);
        }
        // The stages see the head before anything is sent (a block or an answer ends it here).
        let v = x.request_head_phase().await?;
        let range = x.range_policy(&mut parts.headers).await?;
        let expect = wants_continue(parts.version, &parts.headers).then(Gate::default);
        let length = content_length(&parts.headers);
        // Hop-by-hop headers, Via and the destination's rewrite, on what goes upstream only.
        x.prepare_upstream(&mut parts, client_upgrade.is_some());
        // A bodyless request runs its body phase now; a held body is read and judged whole.
        let body = x
            .request_body_phase(body, v, length, expect.as_ref())
            .await?;
        let mut req = Request::from_parts(parts, body);
        if let Some(g) = &expect {
            g.watch(&mut req);
        }
        // The response-head deadline starts once the request body is sent.
        let resp = x.send_with_deadline(req).await?;
        let mut answered = x
            .response_head_phase(resp, client_upgrade.is_some())
            .await?;
        let switched = answered.parts.status == StatusCode::SWITCHING_PROTOCOLS;
        match (client_upgrade, answered.upgrade.take()) {
            // Both are there only for a 101: the protocol it switched to is read then.
            (Some(c), Some(s))
                if crate::wire::switched_to_carried(
                    &answered.parts.headers,
                    &x.shared.dest.load().upgrade_protocols,
                ) =>
            {
                Ok(x.finish_upgrade(answered.parts, c, s, guard))
            }
            // A switch the request did not carry (or to another protocol): nothing relayed.
            _ if switched => Err(x.switched_elsewhere(&answered.parts.headers)),
            (_, _) => x.response_body_phase(answered, guard, range).await,
        }
    }
    .await;
    done.unwrap_or_else(|early| early)
}

impl Exchange {
    async fn request_head_phase(&self) -> Result<Verdict, Early> {
        let mut flow = self.state.flow.lock().await;
        let v = flow.request_head(&self.head);
        self.state.emit(&mut flow).await;
        if v == Verdict::Block {
            return Err(request_blocked(&self.state, &flow, &self.head.host));
        }
        if let Some(answer) = flow.answer() {
            return Err(stage_response(&self.state, &flow, &self.head.host, answer));
        }
        Ok(v)
    }

    /// `[policy] range_requests` for a `Range` request on a listener with a stage that scans
    /// whole files: the range taken off the request ("whole"), a 403 ("refuse"), or forwarded
    /// with an event ("pass").
    async fn range_policy(&self, headers: &mut http::HeaderMap) -> Result<Option<Wanted>, Early> {
        if !headers.contains_key(header::RANGE)
            || !self.shared.pipeline(self.conn.index).scans_whole_bodies()
        {
            return Ok(None);
        }
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        match self.shared.dest.load().range_requests {
            RangeRequests::Whole => Ok(Wanted::take(headers)),
            RangeRequests::Refuse => {
                let why = format!(
                    "range requests ({range}) are refused here: the gateway scans whole files"
                );
                self.state.set_error(why.clone());
                let page = Page::new(Reason::BadRequest(why), &self.head.host, None);
                Err(self.state.page(StatusCode::FORBIDDEN, page))
            }
            RangeRequests::Pass => {
                let mut f = Finding::new(
                    "policy",
                    "range-passed",
                    format!("range request ({range}) passed: the file is inspected in pieces"),
                    Severity::Info,
                    "uninspected",
                    Evidence::new("request.header.range", &range),
                );
                f.stage = "policy";
                f.action = sekisho_core::Action::Allowed;
                self.state.emit_own(f).await;
                Ok(None)
            }
        }
    }

    /// Whether a response's content type is one of `[policy] stream_types`.
    fn is_stream(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                crate::config::is_stream_type(&self.shared.dest.load().stream_types, ct)
            })
    }

    /// Adds this gateway's `Via` entry unless `[policy] via = false`.
    fn via(&self, headers: &mut http::HeaderMap, version: Version) {
        if self.shared.dest.load().via {
            add_via(headers, version, &self.shared.via_node);
        }
    }

    fn prepare_upstream(&self, parts: &mut http::request::Parts, upgrade: bool) {
        strip_hop_by_hop(&mut parts.headers, upgrade);
        self.via(&mut parts.headers, parts.version);
        match &self.dest {
            Dest::Direct { uri, drop_host } => {
                if *drop_host {
                    parts.headers.remove(header::HOST);
                }
                parts.uri = uri.clone();
                parts.version = Version::HTTP_11;
            }
            Dest::Pool(d) => d.prepare(parts),
        }
    }

    /// The request body as it goes upstream: empty (its body phase already run), inspected as
    /// it streams, or (held) read whole, judged, then replayed. A body announced larger than
    /// can be held is refused (or passed, by `on_overflow`) before a byte of it is read; with
    /// `Expect: 100-continue` the body waits for the origin's 100 (a held one is then judged
    /// whole before any of it is released).
    async fn request_body_phase(
        &self,
        body: Incoming,
        v: Verdict,
        length: Option<u64>,
        expect: Option<&Gate>,
    ) -> Result<ProxyBody, Early> {
        let state = &self.state;
        let mut v = v;
        if body.is_end_stream() && v != Verdict::Hold {
            let mut flow = state.flow.lock().await;
            let bv = flow.body(Direction::Request, &Bytes::new(), true);
            state.emit(&mut flow).await;
            if bv == Verdict::Block {
                return Err(request_blocked(state, &flow, &self.head.host));
            }
            v = v.max(bv);
            if v != Verdict::Hold {
                drop(flow);
                state.mark_request_sent();
                return Ok(empty());
            }
        }
        if v == Verdict::Hold {
            v = self.refuse_unholdable(Direction::Request, length).await?;
        }
        let stream = inspect(
            DrainOnDrop::new(body, self.shared.limits_of(self.conn.index).body_timeout)
                .armed(expect.map(|g| Arc::clone(&g.opened))),
            Direction::Request,
            Arc::clone(state),
            None,
        );
        if let Some(g) = expect {
            return Ok(g.hold(stream));
        }
        if v != Verdict::Hold {
            return Ok(stream);
        }
        // Request buffering: a held body is read and judged completely (bounded by the hold
        // limits) before anything goes upstream, so an upstream that answers early cannot cut
        // the inspection short and a block is a page.
        match buffer_request(stream, state).await {
            Ok(b) => Ok(b),
            Err(e) if is_blocked(e.as_ref()) => {
                let flow = state.flow.lock().await;
                Err(request_blocked(state, &flow, &self.head.host))
            }
            Err(e) => {
                state.set_error(format!("request body: {e}"));
                let why = Reason::BadRequest("the request body could not be read".into());
                Err(state.page(
                    StatusCode::BAD_REQUEST,
                    Page::new(why, &self.head.host, None),
                ))
            }
        }
    }

    /// A body of `length` bytes that holding stages of `dir` could never hold: each holding
    /// stage's `on_overflow` now, before any of it is read (a 413 page saying "too large to
    /// scan", or the body passes uninspected by those stages). Returns the verdict that goes on.
    async fn refuse_unholdable(
        &self,
        dir: Direction,
        length: Option<u64>,
    ) -> Result<Verdict, Early> {
        let limit = self.shared.limits.hold_per_flow as u64;
        let Some(len) = length.filter(|n| *n > limit) else {
            return Ok(Verdict::Hold);
        };
        let state = &self.state;
        let mut flow = state.flow.lock().await;
        if !flow.holding(dir) {
            return Ok(Verdict::Allow);
        }
        self.shared.metrics.hold_overflows.inc();
        let reason = format!(
            "too large to scan (Content-Length {len} is over the per-flow hold limit of {limit} bytes)"
        );
        let v = flow.overflow_beyond(dir, &reason, limit as usize);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            state.set_error(reason);
            let status = match dir {
                Direction::Request => StatusCode::PAYLOAD_TOO_LARGE,
                Direction::Response => StatusCode::FORBIDDEN,
            };
            return Err(state.page(status, blocked_page(&flow, &self.head.host)));
        }
        // Passed uninspected by the stages that held the whole body (an alert each); those
        // that decide on a prefix within the limit go on holding.
        Ok(if flow.holding(dir) {
            Verdict::Hold
        } else {
            Verdict::Alert
        })
    }

    /// Sends the request; the upstream must send its response head within the response
    /// timeout counted from the end of the request body (a long upload is bounded by the
    /// per-chunk read timeout instead).
    async fn send_with_deadline(
        &self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Early> {
        let (shared, state) = (&self.shared, &self.state);
        let response_timeout = match &self.dest {
            Dest::Pool(d) => d.response_timeout(shared.limits_of(self.conn.index).response_timeout),
            Dest::Direct { .. } => shared.limits_of(self.conn.index).response_timeout,
        };
        let deadline = async {
            state.request_sent().await;
            tokio::time::sleep(response_timeout).await;
        };
        let send = async {
            match &self.dest {
                Dest::Direct { .. } => shared
                    .client
                    .request(req)
                    .await
                    .map_err(SendError::Upstream),
                Dest::Pool(d) => d.send(shared, state, req).await,
            }
        };
        let _busy = state.client_busy();
        let sent = tokio::select! {
            r = send => r,
            () = deadline => {
                shared.metrics.upstream_errors.with_label_values(&["timeout"]).inc();
                let waited = crate::wire::secs(response_timeout);
                state.set_error(format!("no response head within {waited}"));
                let page = Page::new(Reason::Timeout(waited), &self.head.host, None);
                return Err(state.page(StatusCode::GATEWAY_TIMEOUT, page));
            }
        };
        match sent {
            Ok(r) => Ok(r),
            Err(SendError::Upstream(e)) => {
                if crate::respjudge::refused_as_malformed(&e) {
                    let head = self.head.method == http::Method::HEAD;
                    crate::respjudge::judge_refused(state, &e, head).await;
                }
                Err(upstream_failed(shared, state, self.conn.index, &self.head.host, e).await)
            }
            Err(SendError::NoUpstream) => {
                state.set_error("no upstream in the pool");
                let why = Reason::Unreachable("no upstream server is available".into());
                Err(state.page(
                    StatusCode::BAD_GATEWAY,
                    Page::new(why, &self.head.host, None),
                ))
            }
        }
    }

    /// Records where the response came from (address, verified chain) and runs the
    /// response-head phase.
    async fn response_head_phase(
        &self,
        mut resp: Response<Incoming>,
        client_upgrade: bool,
    ) -> Result<Answered, Early> {
        let state = &self.state;
        if let Some(info) = resp
            .extensions()
            .get::<hyper_util::client::legacy::connect::HttpInfo>()
        {
            state.set_dest_ip(Some(info.remote_addr().ip().to_string()));
            let remote = info.remote_addr();
            let certs = self.shared.upstream_certs.get(&self.head.host);
            let tls = resp
                .extensions()
                .get::<sekisho_core::UpstreamTls>()
                .cloned();
            if let Some(why) = self.shared.upstream_invalid.get(&self.head.host) {
                state
                    .set_tls_error(
                        "upstream-certificate-allowed-invalid",
                        format!("{why}; passed by [tls] allow_invalid_upstream"),
                    )
                    .await;
                crate::fault::on_flow(
                    state,
                    crate::fault::Fault::UpstreamCertificateAllowed,
                    &self.head.host,
                    &why,
                )
                .await;
            }
            state
                .update_meta(|meta| {
                    meta.upstream = Some(remote);
                    if tls.is_some() {
                        meta.upstream_tls = tls;
                    }
                    if let Some(c) = certs {
                        meta.upstream_certs = c;
                    }
                })
                .await;
        }
        let raw = crate::rawtap::of_response(resp.extensions()).and_then(|tap| {
            let head = tap.head(resp.status().as_u16());
            state.set_raw_tap(tap);
            head
        });
        let upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade)
            .then(|| hyper::upgrade::on(&mut resp));
        let (parts, body) = resp.into_parts();
        let wire = (raw.is_some() && chunked(&parts.headers)).then(|| {
            let wire = Arc::new(sekisho_core::WireNotes::default());
            state.watch_response_framing(Arc::clone(&wire), parts.status.as_u16());
            wire
        });
        let rhead = ResponseHead {
            status: parts.status,
            version: parts.version,
            headers: parts.headers.clone(),
            reason: parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| Bytes::copy_from_slice(r.as_bytes())),
            raw,
            wire,
        };
        if self.head.method != http::Method::HEAD {
            if let Some(why) = crate::respjudge::ambiguous(&rhead) {
                return Err(self.refuse_ambiguous(body, why).await);
            }
        }
        let mut flow = state.flow.lock().await;
        let mut verdict = flow.response_head(&rhead);
        state.emit(&mut flow).await;
        if verdict == Verdict::Hold && self.is_stream(&parts.headers) {
            let released = flow.stream(Direction::Response);
            for stage in &released {
                self.shared
                    .metrics
                    .streamed
                    .with_label_values(&[self.conn.listener.as_ref(), stage])
                    .inc();
            }
            if !flow.holding(Direction::Response) {
                verdict = flow.verdict();
            }
        }
        if verdict == Verdict::Block {
            return Err(state.page(StatusCode::FORBIDDEN, blocked_page(&flow, &self.head.host)));
        }
        state.set_status(parts.status.as_u16());
        Ok(Answered {
            parts,
            body,
            verdict,
            upgrade,
        })
    }

    /// A response hyper accepted but libhtp would frame differently (smuggling, evasion): the
    /// stages judge it as libhtp reads it, the client gets a 502 (or the block page).
    async fn refuse_ambiguous(&self, body: Incoming, why: &str) -> Response<ProxyBody> {
        let state = &self.state;
        self.shared
            .metrics
            .upstream_errors
            .with_label_values(&["protocol"])
            .inc();
        let verdict = crate::respjudge::judge_ambiguous(state, body, false).await;
        let reason = format!("its response framing is ambiguous: {why}");
        tracing::info!(host = %self.head.host, reason, "upstream response refused");
        state.set_error(format!("upstream response refused: {why}"));
        if verdict == Some(Verdict::Block) {
            let flow = state.flow.lock().await;
            return state.page(StatusCode::FORBIDDEN, blocked_page(&flow, &self.head.host));
        }
        let page = Page::new(Reason::Unreachable(reason), &self.head.host, None);
        state.page(StatusCode::BAD_GATEWAY, page)
    }

    /// A 101 to a protocol the request did not carry (the upstream switched to something it
    /// was not offered): refused with a 502, nothing relayed.
    fn switched_elsewhere(&self, headers: &http::HeaderMap) -> Response<ProxyBody> {
        let to = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let reason = format!("it switched to a protocol the gateway does not carry ({to:?})");
        self.shared
            .metrics
            .upgrades
            .with_label_values(&["refused"])
            .inc();
        self.state
            .set_error(format!("upstream response refused: {reason}"));
        let page = Page::new(Reason::Unreachable(reason), &self.head.host, None);
        self.state.page(StatusCode::BAD_GATEWAY, page)
    }

    /// A 101 both sides agreed to. A WebSocket connection is relayed frame by frame, each
    /// frame judged by the stages first ([`crate::wsrelay`]); any other protocol's streams are
    /// joined (uninspected bytes, counted) until either side ends.
    fn finish_upgrade(
        &self,
        mut rparts: http::response::Parts,
        client_up: hyper::upgrade::OnUpgrade,
        server_up: hyper::upgrade::OnUpgrade,
        guard: FinishGuard,
    ) -> Response<ProxyBody> {
        let websocket = crate::wire::upgrades_to_websocket(&self.head.headers)
            && crate::wire::upgrades_to_websocket(&rparts.headers);
        strip_hop_by_hop(&mut rparts.headers, true);
        self.via(&mut rparts.headers, Version::HTTP_11);
        let st = Arc::clone(&self.state);
        let result = if websocket { "websocket" } else { "joined" };
        self.shared
            .metrics
            .upgrades
            .with_label_values(&[result])
            .inc();
        let limits = self.shared.limits_of(self.conn.index);
        let (inspect, idle) = (limits.ws_inspect, limits.idle_timeout);
        tokio::spawn(async move {
            let _guard = guard;
            match tokio::try_join!(client_up, server_up) {
                Ok((c, s)) if websocket => {
                    crate::wsrelay::relay(c, s, Arc::clone(&st), inspect, idle).await;
                }
                Ok((c, s)) => {
                    let mut c = TokioIo::new(c);
                    let mut s = TokioIo::new(s);
                    match tokio::io::copy_bidirectional(&mut c, &mut s).await {
                        Ok((to_s, to_c)) => st.count_relayed(to_s, to_c),
                        Err(e) => st.set_error(format!("upgraded stream: {e}")),
                    }
                }
                Err(e) => st.set_error(format!("upgrade failed: {e}")),
            }
        });
        Response::from_parts(rparts, empty())
    }

    /// The response body, inspected as it streams; a held one is judged whole before the head
    /// goes out, so a block is a page.
    async fn response_body_phase(
        &self,
        answered: Answered,
        guard: FinishGuard,
        range: Option<Wanted>,
    ) -> Result<Response<ProxyBody>, Early> {
        let Answered {
            parts: mut rparts,
            body: rbody,
            verdict: v,
            ..
        } = answered;
        strip_hop_by_hop(&mut rparts.headers, false);
        // A range taken off the request: the whole file is judged, the range is answered.
        let partial = range.and_then(|w| {
            let total = content_length(&rparts.headers)?;
            let (a, b) =
                (rparts.status == StatusCode::OK).then(|| w.answer(&rparts.headers, total))??;
            crate::range::partial_head(&mut rparts, a, b, total);
            self.state.set_status(206);
            Some((a, b))
        });
        self.via(&mut rparts.headers, rparts.version);
        if let Dest::Pool(d) = &self.dest {
            if let Ok(v) = HeaderValue::from_str(d.request_id()) {
                rparts.headers.insert("x-request-id", v);
            }
        }
        let mut body = inspect(
            rbody,
            Direction::Response,
            Arc::clone(&self.state),
            Some(guard),
        );
        let v = match v {
            Verdict::Hold => {
                let length = content_length(&rparts.headers);
                self.refuse_unholdable(Direction::Response, length).await?
            }
            v => v,
        };
        if v == Verdict::Hold {
            body = self.held_response(body).await?;
        }
        if let Some((a, b)) = partial {
            body = crate::range::slice(body, a, b);
        }
        self.shared
            .metrics
            .request_seconds
            .with_label_values(&[&self.conn.listener])
            .observe(self.started.elapsed().as_secs_f64());
        Ok(Response::from_parts(rparts, body))
    }

    /// Waits for a held response body's verdict (its first frame comes only once it is decided).
    async fn held_response(&self, mut body: ProxyBody) -> Result<ProxyBody, Early> {
        let state = &self.state;
        match body.frame().await {
            Some(Err(e)) if is_blocked(e.as_ref()) => {
                let flow = state.flow.lock().await;
                Err(match flow.block_response() {
                    // The blocking stage's own answer (a WAF's status, a redirect).
                    Some(r) => stage_response(state, &flow, &self.head.host, r),
                    None => state.page(StatusCode::FORBIDDEN, blocked_page(&flow, &self.head.host)),
                })
            }
            Some(Err(e)) => {
                let why = Reason::Unreachable(format!("its response failed: {e}"));
                Err(state.page(
                    StatusCode::BAD_GATEWAY,
                    Page::new(why, &self.head.host, None),
                ))
            }
            Some(Ok(first)) => {
                let first =
                    futures_util::stream::once(
                        async move { Ok::<_, crate::upstream::BoxError>(first) },
                    );
                let rest = http_body_util::BodyStream::new(body);
                use futures_util::StreamExt;
                Ok(http_body_util::StreamBody::new(first.chain(rest)).boxed_unsync())
            }
            None => Ok(empty()),
        }
    }
}

/// A message's announced `Content-Length`.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Reads an inspected request body while a stage holds it, and returns a body of the frames
/// read followed by the rest: to its end, or until every holding stage has decided (a stage
/// that needs only a prefix, such as a WAF at its body limit); the rest then streams upstream.
async fn buffer_request(
    mut stream: ProxyBody,
    state: &FlowState,
) -> Result<ProxyBody, crate::upstream::BoxError> {
    let mut frames = Vec::new();
    while let Some(f) = stream.frame().await {
        frames.push(f?);
        if !state.flow.lock().await.holding(Direction::Request) {
            let read = futures_util::stream::iter(
                frames.into_iter().map(Ok::<_, crate::upstream::BoxError>),
            );
            let rest = http_body_util::BodyStream::new(stream);
            use futures_util::StreamExt;
            return Ok(http_body_util::StreamBody::new(read.chain(rest)).boxed_unsync());
        }
    }
    let it = futures_util::stream::iter(frames.into_iter().map(Ok::<_, crate::upstream::BoxError>));
    Ok(http_body_util::StreamBody::new(it).boxed_unsync())
}

/// The block page for a request the pipeline blocked (before anything went upstream): 403, or
/// the response the blocking stage chose (a warning page with its continue link, another status,
/// a redirect).
fn request_blocked(
    state: &FlowState,
    flow: &sekisho_core::Flow,
    host: &str,
) -> Response<ProxyBody> {
    if let Some(r) = flow.block_response() {
        return stage_response(state, flow, host, r);
    }
    state.page(StatusCode::FORBIDDEN, blocked_page(flow, host))
}

/// The page for what the flow's blocking finding says (its category, signature, hold limit).
pub(crate) fn blocked_page(flow: &sekisho_core::Flow, host: &str) -> Page {
    let reason = flow
        .blocking_finding()
        .map(Reason::of_finding)
        .unwrap_or(Reason::Policy);
    Page::new(reason, host, flow.blocking_event())
}

/// A response a stage chose ([`Respond`]), for a block or as its own answer to the request.
pub(crate) fn stage_response(
    state: &FlowState,
    flow: &sekisho_core::Flow,
    host: &str,
    r: &Respond,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::FORBIDDEN);
    state.set_status(status.as_u16());
    match r {
        Respond::Warn { continue_url } => {
            let category = flow
                .blocking_finding()
                .map(|f| f.category.clone())
                .unwrap_or_else(|| "policy".to_string());
            let why = Reason::Warn {
                category,
                continue_url: continue_url.clone(),
            };
            state.page(status, Page::new(why, host, flow.blocking_event()))
        }
        Respond::Redirect { location, .. } => {
            let mut resp = Response::new(empty());
            *resp.status_mut() = status;
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Respond::Status(_) => state.page(status, blocked_page(flow, host)),
    }
}

async fn upstream_failed(
    shared: &Shared,
    state: &Arc<FlowState>,
    listener: usize,
    host: &str,
    err: hyper_util::client::legacy::Error,
) -> Response<ProxyBody> {
    {
        let flow = state.flow.lock().await;
        if flow.verdict() == Verdict::Block || is_blocked(&err) {
            return state.page(StatusCode::FORBIDDEN, blocked_page(&flow, host));
        }
    }
    let failure = classify(&err);
    shared
        .metrics
        .upstream_errors
        .with_label_values(&[failure.kind()])
        .inc();
    match failure {
        UpstreamFailure::Certificate(code, reason) => {
            state.set_tls_error(code, reason.clone()).await;
            let f = Finding::new(
                "tls",
                "upstream-certificate",
                format!("upstream {host} presented a certificate that does not verify: {reason}"),
                Severity::High,
                "tls-upstream-certificate",
                Evidence::new("upstream.certificate", &reason),
            );
            let error = format!("upstream certificate rejected: {reason}");
            let id = tls_block_event(state, f, error).await;
            let page = Page::new(Reason::Certificate(reason), host, Some(id));
            state.page(StatusCode::BAD_GATEWAY, page)
        }
        UpstreamFailure::Denied(why) => refuse_destination(state, host, &why).await,
        UpstreamFailure::Unresolved(reason) => {
            state.set_error(reason.clone());
            fault::on_flow(state, Fault::UpstreamUnresolvable, host, &reason).await;
            state.page(
                StatusCode::BAD_GATEWAY,
                Page::new(Reason::NotFound, host, None),
            )
        }
        UpstreamFailure::Tls(kind, words) => {
            upstream_tls_failed(state, listener, host, kind, words).await
        }
        UpstreamFailure::Connect(reason) | UpstreamFailure::Other(reason) => {
            tracing::info!(host, reason, "upstream failed");
            state.set_error(reason.clone());
            let page = Page::new(Reason::Unreachable(reason), host, None);
            state.page(StatusCode::BAD_GATEWAY, page)
        }
    }
}

/// An upstream TLS handshake that failed for another reason than the certificate (a client
/// certificate required, a legacy version or cipher): a 502 page saying what and how to allow
/// it, and an event with `tls.error`.
async fn upstream_tls_failed(
    state: &FlowState,
    listener: usize,
    host: &str,
    kind: Handshake,
    words: String,
) -> Response<ProxyBody> {
    let port = state.flow.lock().await.meta().target_port.unwrap_or(443);
    let auto = &state.shared.autosplice;
    let next = match kind {
        Handshake::ClientCertificateRequired => Some(if auto.asked_for_certificate(host, port) {
            "The gateway passes this site through uninspected from the next connection ([tls] on_client_certificate_request = \"splice\"): open the page again"
        } else {
            "[tls] on_client_certificate_request = \"block\" keeps it refused"
        }),
        Handshake::LegacyVersion | Handshake::LegacyCipher | Handshake::LegacyCertificate => state.shared.legacy_spliced(listener, host, port).then_some(
            "The gateway passes this site through uninspected from the next connection ([tls] on_legacy_upstream or legacy_splice): open the page again",
        ),
        Handshake::Incompatible | Handshake::Failed => None,
    };
    let words = match named_legacy(state, host, port, kind).await {
        Some(named) => format!("{words}. It speaks {named}"),
        None => words,
    };
    let words = match next {
        Some(next) => format!("{words}. {next}"),
        None => words,
    };
    let code = kind.code();
    state.set_tls_error(code, words.clone()).await;
    let f = Finding::new(
        "tls",
        code,
        format!("upstream {host}: {words}"),
        Severity::Medium,
        "tls-upstream",
        Evidence::new("upstream.tls", code),
    );
    let id = tls_block_event(state, f, words.clone()).await;
    let page = Page::new(Reason::Unreachable(words), host, Some(id));
    state.page(StatusCode::BAD_GATEWAY, page)
}

/// What a server refusing the gateway's TLS version or ciphers speaks (`crate::legacyprobe`).
async fn named_legacy(state: &FlowState, host: &str, port: u16, kind: Handshake) -> Option<String> {
    if !matches!(kind, Handshake::LegacyVersion | Handshake::LegacyCipher) {
        return None;
    }
    let shared = &state.shared;
    let dest = shared.dest.load_full();
    let timeout = shared.limits.connect_timeout;
    let dial = || async move { crate::dial::connect_checked(&dest, host, port, timeout).await };
    shared.autosplice.named.name(host, port, dial).await
}

/// Emits `f` as the `tls` stage's block of this flow, with `error` on its log line; its event id.
async fn tls_block_event(state: &FlowState, mut f: Finding, error: String) -> uuid::Uuid {
    f.stage = "tls";
    f.action = sekisho_core::Action::Blocked;
    let id = f.event_id;
    tracing::warn!(rule = %f.rule_id, event_id = %id, reason = %error, "upstream TLS refused");
    state.set_error(error);
    state.emit_own(f).await;
    id
}

/// The destination policy refused where a forward request would go: a threat event naming the
/// client and the destination, and a 403 page carrying its id.
pub(crate) async fn refuse_destination(
    state: &FlowState,
    host: &str,
    why: &Refused,
) -> Response<ProxyBody> {
    let page = refusal(state, host, why).await;
    state.page(StatusCode::FORBIDDEN, page)
}

/// The threat event of a refused destination, and the page that names it.
pub(crate) async fn refusal(state: &FlowState, host: &str, why: &Refused) -> Page {
    let (rule, location, data) = match why {
        Refused::Network { ip, net } => (
            format!("deny_networks:{net}"),
            "destination.ip",
            ip.to_string(),
        ),
        Refused::Own(a) => (
            "own-listener".to_string(),
            "destination.address",
            a.to_string(),
        ),
        Refused::Port(p) => (
            "connect_ports".to_string(),
            "destination.port",
            p.to_string(),
        ),
        Refused::Loop => (
            "forwarding-loop".to_string(),
            "request.header.via",
            host.to_string(),
        ),
    };
    let mut f = Finding::new(
        "policy",
        rule,
        format!("request to {host} refused: {why}"),
        Severity::High,
        "policy-violation",
        Evidence::new(location, &data),
    );
    f.stage = "policy";
    f.action = sekisho_core::Action::Blocked;
    let id = f.event_id;
    state.set_error(why.to_string());
    state.emit_own(f).await;
    tracing::info!(host, reason = %why, event_id = %id, "destination refused");
    Page::new(Reason::Destination(why.to_string()), host, Some(id))
}

/// Whether a response's body is chunked (`Transfer-Encoding` ends with `chunked`).
fn chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}
