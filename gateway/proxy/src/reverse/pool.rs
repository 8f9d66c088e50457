//! Sending to a route's pool: member choice, retries of idempotent requests, health checks
//! ([`Dispatch`] is the driver's [`crate::driver::Pool`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body;
use hyper::body::Incoming;

use super::state::{now_ms, Member, Route};
use crate::driver::SendError;
use crate::flowstate::FlowState;
use crate::shared::Shared;
use crate::upstream::ProxyBody;
use crate::wire::empty;

pub(crate) fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Counts a request in flight on a member until dropped.
pub(crate) struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How one reverse-proxy request goes upstream (built per request, used by the pipeline driver).
pub(crate) struct Dispatch {
    pub(crate) route: Arc<Route>,
    pub(crate) request_id: String,
    pub(crate) client_ip: std::net::IpAddr,
    /// The canonical host (X-Forwarded-Host, Forwarded).
    pub(crate) host: String,
    /// The Host a `preserve_host` route sends upstream: the canonical host and port.
    pub(crate) host_header: String,
    /// The canonical path and query (or the client's, with `forward_raw_path`).
    pub(crate) upstream_path: String,
    pub(crate) facility_header: HeaderName,
    pub(crate) role_header: HeaderName,
    /// The verified client certificate: its facility and roles go upstream.
    pub(crate) peer: Option<Arc<crate::clientauth::PeerCert>>,
}

impl crate::driver::Pool for Dispatch {
    fn prepare(&self, parts: &mut http::request::Parts) {
        Dispatch::prepare(self, parts)
    }

    fn response_timeout(&self, default: Duration) -> Duration {
        Dispatch::response_timeout(self, default)
    }

    fn request_id(&self) -> &str {
        Dispatch::request_id(self)
    }

    fn send<'a>(
        &'a self,
        shared: &'a Shared,
        state: &'a FlowState,
        req: Request<ProxyBody>,
    ) -> sekisho_core::BoxFuture<'a, std::result::Result<Response<Incoming>, SendError>> {
        Box::pin(Dispatch::send(self, shared, state, req))
    }
}

impl Dispatch {
    /// How long the upstream may take to send its response head: the route's `timeout_secs`,
    /// else `default` (`[limits] response_timeout_secs`).
    pub(crate) fn response_timeout(&self, default: Duration) -> Duration {
        self.route.timeout.unwrap_or(default)
    }

    /// The verified facility and roles in their headers; a client's own copies removed.
    fn identity_headers(&self, h: &mut http::HeaderMap) {
        h.remove(&self.facility_header);
        h.remove(&self.role_header);
        let Some(peer) = &self.peer else {
            return;
        };
        if let Some(v) = peer
            .facility
            .as_deref()
            .and_then(|f| HeaderValue::from_str(&identity_text(f)).ok())
        {
            h.insert(self.facility_header.clone(), v);
        }
        if !peer.roles.is_empty() {
            let roles: Vec<String> = peer.roles.iter().map(|r| identity_text(r)).collect();
            if let Ok(v) = HeaderValue::from_str(&roles.join(", ")) {
                h.insert(self.role_header.clone(), v);
            }
        }
    }

    /// Sets the forwarding headers on a request about to go upstream.
    pub(crate) fn prepare(&self, parts: &mut http::request::Parts) {
        let h = &mut parts.headers;
        for n in [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ] {
            h.remove(n);
        }
        let ip = self.client_ip.to_string();
        if let Ok(v) = HeaderValue::from_str(&ip) {
            h.insert("x-forwarded-for", v);
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        if let Ok(v) = HeaderValue::from_str(&self.host) {
            h.insert("x-forwarded-host", v);
        }
        let for_ = if self.client_ip.is_ipv6() {
            format!("\"[{ip}]\"")
        } else {
            ip
        };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "for={for_};proto=https;host=\"{}\"",
            self.host.replace(['"', '\\'], "")
        )) {
            h.insert(header::FORWARDED, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("x-request-id", v);
        }
        self.identity_headers(h);
        if self.route.preserve_host {
            if let Ok(v) = HeaderValue::from_str(&self.host_header) {
                h.insert(header::HOST, v);
            }
        } else {
            h.remove(header::HOST);
        }
        // The path the route was chosen on is the path the upstream gets.
        if let Ok(u) = self.upstream_path.parse::<Uri>() {
            parts.uri = u;
        }
        parts.version = Version::HTTP_11;
    }

    /// The request id (also returned to the client).
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Sends `req` to a pool member; a connect failure marks the member down for
    /// `fail_timeout_secs` and, for an idempotent request without a body, tries another (up to
    /// `retries` more). The in-flight count is held by `state` until the flow ends.
    pub(crate) async fn send(
        &self,
        shared: &Shared,
        state: &FlowState,
        req: Request<ProxyBody>,
    ) -> std::result::Result<Response<Incoming>, SendError> {
        let (parts, body) = req.into_parts();
        let replayable = idempotent(&parts.method) && body.is_end_stream();
        let mut parts = Some(parts);
        let path = parts
            .as_ref()
            .and_then(|p| p.uri.path_and_query())
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let mut tried = Vec::new();
        let mut body = Some(body);
        loop {
            // A pool has at least one member (checked when the config is built).
            let Some(i) = self.route.pick(&tried) else {
                return Err(SendError::NoUpstream);
            };
            tried.push(i);
            let member = Arc::clone(&self.route.pool.members[i]);
            // The head is copied only while another attempt may follow.
            let last = !replayable
                || tried.len() as u32 > self.route.retries
                || tried.len() >= self.route.pool.members.len();
            let mut p = if last {
                match parts.take() {
                    Some(p) => p,
                    None => return Err(SendError::NoUpstream),
                }
            } else {
                match parts.as_ref() {
                    Some(p) => p.clone(),
                    None => return Err(SendError::NoUpstream),
                }
            };
            p.uri = match format!("{}{path}", member.base).parse() {
                Ok(u) => u,
                Err(_) => p.uri,
            };
            let b = match body.take() {
                Some(b) => b,
                None => empty(),
            };
            member.active.fetch_add(1, Ordering::Relaxed);
            let guard = InFlight(Arc::clone(&member));
            match shared
                .reverse_client
                .request(Request::from_parts(p, b))
                .await
            {
                Ok(r) => {
                    if let Some((host, port)) = member
                        .base
                        .split_once("://")
                        .and_then(|(_, a)| a.rsplit_once(':'))
                    {
                        state.set_dest_name(host, port.parse().unwrap_or(0));
                    }
                    state.hold_until_done(Box::new(guard));
                    return Ok(r);
                }
                Err(e) => {
                    drop(guard);
                    if e.is_connect() {
                        let until = now_ms() + self.route.fail_timeout.as_millis() as u64;
                        member.down_until.store(until, Ordering::Relaxed);
                        tracing::warn!(route = %self.route.name, upstream = %member.base, error = %crate::upstream::error_chain(&e), "upstream unreachable: skipped for {:?}", self.route.fail_timeout);
                    }
                    if last || !e.is_connect() {
                        return Err(SendError::Upstream(e));
                    }
                    shared
                        .metrics
                        .upstream_retries
                        .with_label_values(&[&self.route.name])
                        .inc();
                }
            }
        }
    }
}

/// Probes every pool member of routes with `health_check`, each at its route's interval.
pub(crate) async fn health_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        for state in shared.reverse_states() {
            for route in &state.routes {
                for (i, m) in route.pool.members.iter().enumerate() {
                    let up = Route::usable(m, now);
                    shared
                        .metrics
                        .upstream_up
                        .with_label_values(&[&*route.name, &i.to_string()])
                        .set(i64::from(up));
                    let Some((path, every)) = &route.health else {
                        continue;
                    };
                    if m.next_probe.load(Ordering::Relaxed) > now {
                        continue;
                    }
                    m.next_probe
                        .store(now + every.as_millis() as u64, Ordering::Relaxed);
                    let (shared, m, path, route) = (
                        Arc::clone(&shared),
                        Arc::clone(m),
                        path.clone(),
                        Arc::clone(route),
                    );
                    tokio::spawn(async move {
                        let ok = probe(&shared, &m.base, &path).await;
                        let was = m.healthy.swap(ok.is_ok(), Ordering::Relaxed);
                        shared
                            .metrics
                            .upstream_up
                            .with_label_values(&[&*route.name, &i.to_string()])
                            .set(i64::from(Route::usable(&m, now_ms())));
                        match (&ok, was) {
                            (Err(e), true) => {
                                tracing::warn!(route = %route.name, upstream = %m.base, reason = %e, "health check failed: upstream taken out of the pool")
                            }
                            (Ok(()), false) => {
                                tracing::info!(route = %route.name, upstream = %m.base, "health check passed: upstream back in the pool")
                            }
                            _ => {}
                        }
                    });
                }
            }
        }
    }
}

/// One health probe: GET base+path; 2xx/3xx within the connect + response timeouts is healthy.
pub(crate) async fn probe(
    shared: &Shared,
    base: &str,
    path: &str,
) -> std::result::Result<(), String> {
    let req = Request::get(format!("{base}{path}"))
        .header(header::USER_AGENT, "sekisho-health-check")
        .body(empty())
        .map_err(|e| e.to_string())?;
    let limit =
        shared.limits.connect_timeout + shared.limits.response_timeout.min(Duration::from_secs(10));
    match tokio::time::timeout(limit, shared.reverse_client.request(req)).await {
        Err(_) => Err(format!("no answer within {limit:?}")),
        Ok(Err(e)) => Err(crate::upstream::error_chain(&e)),
        Ok(Ok(r)) if r.status().is_success() || r.status().is_redirection() => Ok(()),
        Ok(Ok(r)) => Err(format!("status {}", r.status())),
    }
}

/// An identity value as header text: printable ASCII as is; every other byte (the UTF-8 of a
/// Japanese name, controls), `%` and `,` (the role list's separator) percent-encoded.
pub(crate) fn identity_text(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' && b != b',' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
