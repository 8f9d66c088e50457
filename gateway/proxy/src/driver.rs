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
use crate::flowstate::{FinishGuard, FlowState};
use crate::shared::Shared;
use crate::upstream::{classify, ProxyBody, UpstreamFailure};
use crate::wire::{add_via, block_response, empty, full, strip_hop_by_hop, text_response};

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

/// Runs the pipeline on a request, sends it to `dest`, and runs the pipeline on the response:
/// the part the forward and reverse proxies share.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn inspect_and_send(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    state: Arc<FlowState>,
    guard: FinishGuard,
    head: RequestHead,
    mut parts: http::request::Parts,
    body: Incoming,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    started: Instant,
    dest: Dest,
) -> Response<ProxyBody> {
    let v = {
        let mut flow = state.flow.lock().await;
        let v = flow.request_head(&head);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            return request_blocked(&state, &flow, &head.host);
        }
        if let Some(answer) = flow.answer() {
            return stage_response(&state, &flow, &head.host, answer);
        }
        v
    };

    strip_hop_by_hop(&mut parts.headers, client_upgrade.is_some());
    add_via(&mut parts.headers, parts.version);
    match &dest {
        Dest::Direct { uri, drop_host } => {
            if *drop_host {
                parts.headers.remove(header::HOST);
            }
            parts.uri = uri.clone();
            parts.version = Version::HTTP_11;
        }
        Dest::Pool(d) => d.prepare(&mut parts),
    }
    // A bodyless request ends here: the body phase (IPS stream rules) runs before it is sent.
    let v = if body.is_end_stream() && v != Verdict::Hold {
        let mut flow = state.flow.lock().await;
        let bv = flow.body(Direction::Request, &Bytes::new(), true);
        state.emit(&mut flow).await;
        if bv == Verdict::Block {
            return request_blocked(&state, &flow, &head.host);
        }
        v.max(bv)
    } else {
        v
    };
    let body = if body.is_end_stream() && v != Verdict::Hold {
        state.mark_request_sent();
        empty()
    } else {
        let stream = inspect(
            DrainOnDrop::new(body, shared.limits.read_timeout),
            Direction::Request,
            Arc::clone(&state),
            None,
        );
        if v == Verdict::Hold {
            // Request buffering: a held body is read and judged completely (bounded by the hold
            // limits) before anything goes upstream, so an upstream that answers early cannot cut
            // the inspection short and a block is a page.
            match buffer_request(stream).await {
                Ok(b) => b,
                Err(e) if is_blocked(e.as_ref()) => {
                    let flow = state.flow.lock().await;
                    return request_blocked(&state, &flow, &head.host);
                }
                Err(e) => {
                    state.set_error(format!("request body: {e}"));
                    state.set_status(400);
                    return text_response(
                        StatusCode::BAD_REQUEST,
                        "the request body could not be read",
                    );
                }
            }
        } else {
            stream
        }
    };
    let up_req = Request::from_parts(parts, body);

    // The response timeout starts once the request body is sent: a long upload is bounded by the
    // per-chunk read timeout instead.
    let response_timeout = match &dest {
        Dest::Pool(d) => d.response_timeout(shared.limits.response_timeout),
        Dest::Direct { .. } => shared.limits.response_timeout,
    };
    let deadline = async {
        state.request_sent().await;
        tokio::time::sleep(response_timeout).await;
    };
    let send = async {
        match &dest {
            Dest::Direct { .. } => shared
                .client
                .request(up_req)
                .await
                .map_err(SendError::Upstream),
            Dest::Pool(d) => d.send(&shared, &state, up_req).await,
        }
    };
    let resp = match tokio::select! {
        r = send => Ok(r),
        () = deadline => Err(()),
    } {
        Err(()) => {
            shared
                .metrics
                .upstream_errors
                .with_label_values(&["timeout"])
                .inc();
            state.set_error(format!("no response head within {response_timeout:?}"));
            state.set_status(504);
            return text_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the upstream server did not answer in time",
            );
        }
        Ok(Err(SendError::Upstream(e))) => {
            return upstream_failed(&shared, &state, &head.host, e).await
        }
        Ok(Err(SendError::NoUpstream)) => {
            state.set_error("no upstream in the pool");
            state.set_status(502);
            return text_response(StatusCode::BAD_GATEWAY, "no upstream server is available");
        }
        Ok(Ok(r)) => r,
    };
    let mut resp = resp;
    if let Some(info) = resp
        .extensions()
        .get::<hyper_util::client::legacy::connect::HttpInfo>()
    {
        state.set_dest_ip(Some(info.remote_addr().ip().to_string()));
        let remote = info.remote_addr();
        let certs = shared.upstream_certs.get(&head.host);
        state
            .update_meta(|meta| {
                meta.upstream = Some(remote);
                if let Some(c) = certs {
                    meta.upstream_certs = c;
                }
            })
            .await;
    }
    let server_upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && client_upgrade.is_some())
    .then(|| hyper::upgrade::on(&mut resp));
    let (mut rparts, rbody) = resp.into_parts();
    let rhead = ResponseHead {
        status: rparts.status,
        version: rparts.version,
        headers: rparts.headers.clone(),
    };
    let v = {
        let mut flow = state.flow.lock().await;
        let v = flow.response_head(&rhead);
        state.emit(&mut flow).await;
        if v == Verdict::Block {
            state.set_status(403);
            let event = flow.blocking_event();
            let category = flow_category(&state, &flow);
            return block_response(
                StatusCode::FORBIDDEN,
                "Response blocked",
                &format!(
                    "The response from {} was blocked by the gateway policy.",
                    head.host
                ),
                &head.host,
                &category,
                event,
            );
        }
        v
    };
    state.set_status(rparts.status.as_u16());

    if let (Some(client_up), Some(server_up)) = (client_upgrade, server_upgrade) {
        {
            drop(rbody);
            strip_hop_by_hop(&mut rparts.headers, true);
            add_via(&mut rparts.headers, Version::HTTP_11);
            let st = Arc::clone(&state);
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
            return Response::from_parts(rparts, empty());
        }
    }

    strip_hop_by_hop(&mut rparts.headers, false);
    add_via(&mut rparts.headers, rparts.version);
    if let Dest::Pool(d) = &dest {
        if let Ok(v) = HeaderValue::from_str(d.request_id()) {
            rparts.headers.insert("x-request-id", v);
        }
    }
    let mut body = inspect(rbody, Direction::Response, Arc::clone(&state), Some(guard));
    if v == Verdict::Hold {
        // The whole body is held and judged before the head goes out, so a block is a page.
        match body.frame().await {
            Some(Err(e)) if is_blocked(e.as_ref()) => {
                state.set_status(403);
                let flow = state.flow.lock().await;
                let category = flow_category(&state, &flow);
                return block_response(
                    StatusCode::FORBIDDEN,
                    "Download blocked",
                    &format!("The content from {} was blocked by the gateway.", head.host),
                    &head.host,
                    &category,
                    flow.blocking_event(),
                );
            }
            Some(Err(e)) => {
                state.set_status(502);
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    &format!("upstream body failed: {e}"),
                );
            }
            Some(Ok(first)) => {
                let first =
                    futures_util::stream::once(
                        async move { Ok::<_, crate::upstream::BoxError>(first) },
                    );
                let rest = http_body_util::BodyStream::new(body);
                use futures_util::StreamExt;
                body = http_body_util::StreamBody::new(first.chain(rest)).boxed_unsync();
            }
            None => body = empty(),
        }
    }
    shared
        .metrics
        .request_seconds
        .with_label_values(&[&conn.listener])
        .observe(started.elapsed().as_secs_f64());
    Response::from_parts(rparts, body)
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
