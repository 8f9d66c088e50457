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

use crate::blockpage::{self, BlockInfo};
use crate::body::{inspect, is_blocked, DrainOnDrop};
use crate::conn::ConnInfo;
use crate::fault::{self, Fault};
use crate::flowstate::{FinishGuard, FlowState};
use crate::guard::Refused;
use crate::shared::Shared;
use crate::shed;
use crate::upstream::{classify, ProxyBody, UpstreamFailure};
use crate::wire::{
    add_via, block_response, cl_and_te, empty, full, strip_hop_by_hop, text_response,
};

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
            x.state.set_status(400);
            x.state.set_error(what);
            let mut r = text_response(StatusCode::BAD_REQUEST, &format!("request has {what}"));
            r.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            return Err(r);
        }
        // The stages see the head before anything is sent (a block or an answer ends it here).
        let v = x.request_head_phase().await?;
        // Hop-by-hop headers, Via and the destination's rewrite, on what goes upstream only.
        x.prepare_upstream(&mut parts, client_upgrade.is_some());
        // A bodyless request runs its body phase now; a held body is read and judged whole.
        let body = x.request_body_phase(body, v).await?;
        // The response-head deadline starts once the request body is sent.
        let resp = x
            .send_with_deadline(Request::from_parts(parts, body))
            .await?;
        let answered = x
            .response_head_phase(resp, client_upgrade.is_some())
            .await?;
        match (client_upgrade, answered.upgrade) {
            (Some(c), Some(s)) => Ok(x.finish_upgrade(answered.parts, c, s, guard)),
            (_, _) => {
                x.response_body_phase(answered.parts, answered.body, answered.verdict, guard)
                    .await
            }
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

    fn prepare_upstream(&self, parts: &mut http::request::Parts, upgrade: bool) {
        strip_hop_by_hop(&mut parts.headers, upgrade);
        add_via(&mut parts.headers, parts.version, &self.shared.via_node);
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
    /// it streams, or (held) read whole, judged, then replayed.
    async fn request_body_phase(&self, body: Incoming, v: Verdict) -> Result<ProxyBody, Early> {
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
        let stream = inspect(
            DrainOnDrop::new(body, self.shared.limits.read_timeout),
            Direction::Request,
            Arc::clone(state),
            None,
        );
        if v != Verdict::Hold {
            return Ok(stream);
        }
        // Request buffering: a held body is read and judged completely (bounded by the hold
        // limits) before anything goes upstream, so an upstream that answers early cannot cut
        // the inspection short and a block is a page.
        match buffer_request(stream).await {
            Ok(b) => Ok(b),
            Err(e) if is_blocked(e.as_ref()) => {
                let flow = state.flow.lock().await;
                Err(request_blocked(state, &flow, &self.head.host))
            }
            Err(e) => {
                state.set_error(format!("request body: {e}"));
                state.set_status(400);
                Err(text_response(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        }
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
            Dest::Pool(d) => d.response_timeout(shared.limits.response_timeout),
            Dest::Direct { .. } => shared.limits.response_timeout,
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
        let sent = tokio::select! {
            r = send => r,
            () = deadline => {
                shared.metrics.upstream_errors.with_label_values(&["timeout"]).inc();
                state.set_error(format!("no response head within {response_timeout:?}"));
                state.set_status(504);
                return Err(text_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the upstream server did not answer in time",
                ));
            }
        };
        match sent {
            Ok(r) => Ok(r),
            Err(SendError::Upstream(e)) => {
                Err(upstream_failed(shared, state, &self.head.host, e).await)
            }
            Err(SendError::NoUpstream) => {
                state.set_error("no upstream in the pool");
                state.set_status(502);
                Err(text_response(
                    StatusCode::BAD_GATEWAY,
                    "no upstream server is available",
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
            state
                .update_meta(|meta| {
                    meta.upstream = Some(remote);
                    if let Some(c) = certs {
                        meta.upstream_certs = c;
                    }
                })
                .await;
        }
        let upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade)
            .then(|| hyper::upgrade::on(&mut resp));
        let (parts, body) = resp.into_parts();
        let rhead = ResponseHead {
            status: parts.status,
            version: parts.version,
            headers: parts.headers.clone(),
        };
        let mut flow = state.flow.lock().await;
        let verdict = flow.response_head(&rhead);
        state.emit(&mut flow).await;
        if verdict == Verdict::Block {
            state.set_status(403);
            let host = &self.head.host;
            return Err(block_response(
                StatusCode::FORBIDDEN,
                "Response blocked",
                &format!("The response from {host} was blocked by the gateway policy."),
                host,
                &flow_category(state, &flow),
                flow.blocking_event(),
            ));
        }
        state.set_status(parts.status.as_u16());
        Ok(Answered {
            parts,
            body,
            verdict,
            upgrade,
        })
    }

    /// A 101 both sides agreed to: the two upgraded streams are joined (uninspected bytes,
    /// counted) until either side ends.
    fn finish_upgrade(
        &self,
        mut rparts: http::response::Parts,
        client_up: hyper::upgrade::OnUpgrade,
        server_up: hyper::upgrade::OnUpgrade,
        guard: FinishGuard,
    ) -> Response<ProxyBody> {
        strip_hop_by_hop(&mut rparts.headers, true);
        add_via(&mut rparts.headers, Version::HTTP_11, &self.shared.via_node);
        let st = Arc::clone(&self.state);
        tokio::spawn(async move {
            let _guard = guard;
            match tokio::try_join!(client_up, server_up) {
                Ok((c, s)) => {
                    let mut c = TokioIo::new(c);
                    let mut s = TokioIo::new(s);
                    match tokio::io::copy_bidirectional(&mut c, &mut s).await {
                        Ok((to_s, to_c)) => {
                            st.to_server
                                .fetch_add(to_s, std::sync::atomic::Ordering::Relaxed);
                            st.to_client
                                .fetch_add(to_c, std::sync::atomic::Ordering::Relaxed);
                        }
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
        mut rparts: http::response::Parts,
        rbody: Incoming,
        v: Verdict,
        guard: FinishGuard,
    ) -> Result<Response<ProxyBody>, Early> {
        strip_hop_by_hop(&mut rparts.headers, false);
        add_via(&mut rparts.headers, rparts.version, &self.shared.via_node);
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
        if v == Verdict::Hold {
            body = self.held_response(body).await?;
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
                state.set_status(403);
                let flow = state.flow.lock().await;
                let host = &self.head.host;
                Err(block_response(
                    StatusCode::FORBIDDEN,
                    "Download blocked",
                    &format!("The content from {host} was blocked by the gateway."),
                    host,
                    &flow_category(state, &flow),
                    flow.blocking_event(),
                ))
            }
            Some(Err(e)) => {
                state.set_status(502);
                Err(text_response(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream body failed: {e}"),
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

/// Reads an inspected request body to its end and returns it as a body of those frames.
async fn buffer_request(mut stream: ProxyBody) -> Result<ProxyBody, crate::upstream::BoxError> {
    let mut frames = Vec::new();
    while let Some(f) = stream.frame().await {
        frames.push(f?);
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
    state.set_status(403);
    block_response(
        StatusCode::FORBIDDEN,
        "Access blocked",
        &format!("The request to {host} was blocked by the gateway policy."),
        host,
        &flow_category(state, flow),
        flow.blocking_event(),
    )
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
            let category = flow_category(state, flow);
            blockpage::warn_response(
                &BlockInfo {
                    title: "Warning",
                    reason: &format!(
                        "{host} is in the category {category} that your organisation's policy asks you to confirm."
                    ),
                    host,
                    category: &category,
                    event_id: flow.blocking_event(),
                },
                continue_url,
            )
            .map(full)
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
        Respond::Status(_) => block_response(
            status,
            "Access blocked",
            &format!("The request to {host} was blocked by the gateway policy."),
            host,
            &flow_category(state, flow),
            flow.blocking_event(),
        ),
    }
}

pub(crate) fn flow_category(_state: &FlowState, flow: &sekisho_core::Flow) -> String {
    flow.blocking_finding()
        .map(|f| f.category.clone())
        .unwrap_or_else(|| "policy".to_string())
}

async fn upstream_failed(
    shared: &Shared,
    state: &Arc<FlowState>,
    host: &str,
    err: hyper_util::client::legacy::Error,
) -> Response<ProxyBody> {
    {
        let flow = state.flow.lock().await;
        if flow.verdict() == Verdict::Block || is_blocked(&err) {
            state.set_status(403);
            let category = flow_category(state, &flow);
            return block_response(
                StatusCode::FORBIDDEN,
                "Upload blocked",
                &format!("The request to {host} was blocked by the gateway."),
                host,
                &category,
                flow.blocking_event(),
            );
        }
    }
    let failure = classify(&err);
    shared
        .metrics
        .upstream_errors
        .with_label_values(&[failure.kind()])
        .inc();
    match failure {
        UpstreamFailure::Certificate(reason) => {
            let mut f = Finding::new(
                "tls",
                "upstream-certificate",
                format!("upstream {host} presented a certificate that does not verify: {reason}"),
                Severity::High,
                "tls-upstream-certificate",
                Evidence::new("upstream.certificate", &reason),
            );
            f.stage = "tls";
            f.action = sekisho_core::Action::Blocked;
            let id = f.event_id;
            state.set_error(reason.clone());
            state.set_status(502);
            state.emit_own(f).await;
            tracing::warn!(host, reason, event_id = %id, "upstream certificate rejected");
            block_response(
                StatusCode::BAD_GATEWAY,
                "Untrusted server certificate",
                &format!("The certificate of {host} could not be verified, so the connection was refused: {reason}"),
                host,
                "tls-upstream-certificate",
                Some(id),
            )
        }
        UpstreamFailure::Denied(why) => refuse_destination(state, host, &why).await,
        UpstreamFailure::Unresolved(reason) => {
            state.set_error(reason.clone());
            state.set_status(502);
            fault::on_flow(state, Fault::UpstreamUnresolvable, host, &reason).await;
            text_response(
                StatusCode::BAD_GATEWAY,
                &format!("upstream {host} failed: {reason}"),
            )
        }
        UpstreamFailure::Tls(reason)
        | UpstreamFailure::Connect(reason)
        | UpstreamFailure::Other(reason) => {
            tracing::info!(host, reason, "upstream failed");
            state.set_error(reason.clone());
            state.set_status(502);
            text_response(
                StatusCode::BAD_GATEWAY,
                &format!("upstream {host} failed: {reason}"),
            )
        }
    }
}

/// The destination policy refused where a forward request would go: a threat event naming the
/// client and the destination, and a 403 page carrying its id.
pub(crate) async fn refuse_destination(
    state: &FlowState,
    host: &str,
    why: &Refused,
) -> Response<ProxyBody> {
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
    state.set_status(403);
    state.emit_own(f).await;
    tracing::info!(host, reason = %why, event_id = %id, "destination refused");
    block_response(
        StatusCode::FORBIDDEN,
        "Destination not allowed",
        &format!("The gateway does not connect to {host}: {why}."),
        host,
        "policy-violation",
        Some(id),
    )
}
