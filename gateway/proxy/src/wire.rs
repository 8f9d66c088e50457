//! HTTP pieces the forward and reverse proxies share: bodies, plain responses,
//! hop-by-hop headers and `Via`, host spellings, a flow's `FlowMeta`.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use sekisho_core::FlowMeta;

use crate::conn::ConnInfo;
use crate::shared::Shared;
use crate::upstream::ProxyBody;

pub(crate) fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn text_response(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(format!("{text}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the proxy-specific ones.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and those named in `Connection`. Keeps `Upgrade` (and a
/// `Connection: upgrade`) when `keep_upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .filter(|t| !t.is_empty())
        .collect();
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    let upgrade = headers.get(header::UPGRADE).cloned();
    for n in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        headers.remove(n);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::UPGRADE, u);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

/// `Via: <protocol> <node> (sekisho)`: the node name makes each gateway recognisable, so a
/// request that comes back to the gateway that forwarded it is seen as a loop.
pub(crate) fn add_via(headers: &mut HeaderMap, version: Version, node: &str) {
    let proto = match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{proto} {node} (sekisho)")) {
        headers.append(header::VIA, v);
    }
}

/// Whether a raw HTTP/1 head carries both Content-Length and Transfer-Encoding.
pub(crate) fn cl_and_te(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(raw).is_err() {
        return false;
    }
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    has("content-length") && has("transfer-encoding")
}

/// The node name as a Via `received-by` token.
pub(crate) fn via_node(node: &str) -> String {
    let t: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if t.is_empty() {
        "sekisho".into()
    } else {
        t
    }
}

/// Whether a request already passed through this gateway (`node` in its Via).
pub(crate) fn is_loop(headers: &HeaderMap, node: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| {
            let mut f = hop.split_whitespace();
            f.next().is_some() && f.next() == Some(node) && f.next() == Some("(sekisho)")
        })
}

pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The protocol tokens of every `Upgrade` field, trimmed, in order.
fn upgrade_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether a carried protocol: WebSocket, or one `pass` names (lower case).
fn carried(token: &str, pass: &[String]) -> bool {
    let name = token.to_ascii_lowercase();
    name == "websocket" || pass.contains(&name)
}

/// Whether `Upgrade` names the WebSocket protocol (RFC 6455 §4: a case-insensitive token).
pub(crate) fn upgrades_to_websocket(headers: &HeaderMap) -> bool {
    upgrade_tokens(headers).any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// The protocols of a request's `Upgrade` the gateway carries: `websocket` (inspected frame by
/// frame) and those `pass` names (lower case), in the client's order; `None` when none is
/// left (the request then goes on without its upgrade).
pub(crate) fn carried_upgrade(headers: &HeaderMap, pass: &[String]) -> Option<HeaderValue> {
    let kept: Vec<&str> = upgrade_tokens(headers)
        .filter(|t| carried(t, pass))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether a 101's `Upgrade` names a protocol the gateway carries (`websocket`, or one `pass`
/// names): an upstream that switches to anything else is refused.
pub(crate) fn switched_to_carried(resp: &HeaderMap, pass: &[String]) -> bool {
    resp.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| carried(p.trim(), pass))
}

/// The client's upgrade, when it asks for one the gateway carries: its `Upgrade` narrowed to
/// the carried protocols, and the pending upgraded connection. `None` otherwise (the request
/// goes on without its upgrade: hop-by-hop headers are dropped).
pub(crate) fn take_upgrade<B>(
    req: &mut http::Request<B>,
    shared: &Shared,
) -> Option<hyper::upgrade::OnUpgrade> {
    if req.version() != Version::HTTP_11 || !wants_upgrade(req.headers()) {
        return None;
    }
    let pass = &shared.dest.load().upgrade_protocols;
    let Some(carried) = carried_upgrade(req.headers(), pass) else {
        let stripped = shared.metrics.upgrades.with_label_values(&["stripped"]);
        stripped.inc();
        return None;
    };
    req.headers_mut().insert(header::UPGRADE, carried);
    Some(hyper::upgrade::on(req))
}

pub(crate) fn authority(host: &str, port: u16) -> String {
    format!("{}:{port}", bracket(host))
}

/// An IPv6 literal in brackets; other hosts as they are.
pub(crate) fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// h2 clients name the virtual host in `:authority`, not Host: stages and HTTP/1.1 upstreams
/// see it as Host either way.
pub(crate) fn host_from_authority(parts: &mut http::request::Parts) {
    if !parts.headers.contains_key(header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
}

pub(crate) fn new_meta(shared: &Shared, conn: &ConnInfo, host: &str, port: u16) -> FlowMeta {
    let mut meta = FlowMeta::new(
        shared.next_flow_id(),
        conn.listener.to_string(),
        conn.client,
        conn.local,
    );
    meta.conn_id = conn.id;
    meta.target_host = Some(host.to_string());
    meta.target_port = Some(port);
    meta
}

/// The counted 400 for a request whose upstream URI does not parse.
pub(crate) fn bad_target(
    shared: &Shared,
    conn: &ConnInfo,
    e: impl std::fmt::Display,
) -> Response<ProxyBody> {
    shared
        .metrics
        .bad_requests
        .with_label_values(&[&conn.listener])
        .inc();
    text_response(StatusCode::BAD_REQUEST, &format!("bad request target: {e}"))
}

/// A duration in words for pages, logs and errors (`30 s`, `1.5 s`, `250 ms`), not Debug's
/// `30s` / `1.5s` / `250ms`.
pub(crate) fn secs(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// An I/O error in words, without the `(os error N)` tail (the words already say it).
pub(crate) fn os(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_carried_upgrades_go_on() {
        let mut h = HeaderMap::new();
        h.append(header::UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
        h.append(header::UPGRADE, HeaderValue::from_static("irc"));
        let pass = vec!["irc".to_string()];
        assert_eq!(carried_upgrade(&h, &pass).unwrap(), "WebSocket, irc");
        assert_eq!(carried_upgrade(&h, &[]).unwrap(), "WebSocket");
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(carried_upgrade(&h, &pass).is_none());
        let mut resp = HeaderMap::new();
        resp.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(switched_to_carried(&resp, &[]));
        resp.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(!switched_to_carried(&resp, &pass));
        assert!(!switched_to_carried(&HeaderMap::new(), &pass));
    }

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let mut a = h.clone();
        strip_hop_by_hop(&mut a, false);
        assert!(a.get("x-secret").is_none());
        assert!(a.get("keep-alive").is_none());
        assert!(a.get("proxy-authorization").is_none());
        assert!(a.get(header::UPGRADE).is_none());
        assert_eq!(a.get(header::TE).unwrap(), "trailers");
        assert_eq!(a.get("x-keep").unwrap(), "1");
        let mut b = h;
        strip_hop_by_hop(&mut b, true);
        assert_eq!(b.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(b.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
