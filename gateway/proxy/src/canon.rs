//! The canonical target of a reverse-proxy request: the host and path that route selection,
//! facility policy, the stages and the logs decide on, computed once, and the same form that goes
//! upstream. A request whose host or path has a second reading is refused (400 and an event).

use http::header;
use sekisho_core::{canonical_path, split_host_port};

use crate::hostmatch::normalize_host;

/// A request's target in canonical form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Lower case, no trailing dot, no port, no brackets.
    pub host: String,
    /// The Host header an upstream that keeps the client's host gets (`host[:port]`).
    pub host_header: String,
    /// The canonical path and the query as received: what routes and logs see.
    pub path: String,
    /// What goes upstream: `path`, or the client's own path and query with `forward_raw_path`.
    pub upstream: String,
}

/// Why a request has no single target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ambiguity {
    /// The event's rule id (`path-encoded-slash`, `host-conflict`, …).
    pub rule: &'static str,
    pub message: String,
    /// What the client sent (bounded).
    pub evidence: String,
}

fn ambiguity(rule: &'static str, message: String, evidence: &str) -> Ambiguity {
    Ambiguity {
        rule,
        message,
        evidence: evidence.chars().take(512).collect(),
    }
}

/// `host[:port]` → (canonical host, port), or why it is not a host.
fn host_of(authority: &str) -> Result<(String, u16), Ambiguity> {
    if authority.contains('@') {
        return Err(ambiguity(
            "host-invalid",
            "the host carries user information".into(),
            authority,
        ));
    }
    let (h, port) = split_host_port(authority, 443);
    let h = normalize_host(&h);
    let ip = h.parse::<std::net::IpAddr>().is_ok();
    let name_ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !(ip || name_ok) {
        return Err(ambiguity(
            "host-invalid",
            format!("the host {authority:?} is not a DNS name or an IP address"),
            authority,
        ));
    }
    Ok((h, port))
}

/// The canonical target of `parts`; `raw_upstream` keeps the client's path for the upstream.
pub(crate) fn target(
    parts: &http::request::Parts,
    raw_upstream: bool,
) -> Result<Target, Ambiguity> {
    let host_header = match parts.headers.get_all(header::HOST).iter().count() {
        0 => None,
        1 => match parts.headers.get(header::HOST).map(|v| v.to_str()) {
            Some(Ok(v)) => Some(v.to_string()),
            _ => {
                return Err(ambiguity(
                    "host-invalid",
                    "the Host header is not text".into(),
                    "",
                ))
            }
        },
        _ => {
            return Err(ambiguity(
                "host-conflict",
                "more than one Host header".into(),
                "",
            ))
        }
    };
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    let (host, port) = match (&authority, &host_header) {
        (Some(a), Some(h)) => {
            let (x, y) = (host_of(a)?, host_of(h)?);
            if x != y {
                return Err(ambiguity(
                    "host-conflict",
                    format!("the request target names {a:?} but the Host header {h:?}"),
                    &format!("{a} / {h}"),
                ));
            }
            x
        }
        (Some(one), None) | (None, Some(one)) => host_of(one)?,
        (None, None) => {
            return Err(ambiguity(
                "host-missing",
                "the request names no host".into(),
                "",
            ))
        }
    };
    let raw_path = parts.uri.path();
    let canonical =
        canonical_path(raw_path).map_err(|e| ambiguity(e.rule_id(), e.to_string(), raw_path))?;
    let path = match parts.uri.query() {
        Some(q) => format!("{canonical}?{q}"),
        None => canonical,
    };
    let upstream = if raw_upstream {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| path.clone())
    } else {
        path.clone()
    };
    let bracketed = crate::wire::bracket(&host);
    let host_header = if port == 443 {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(Target {
        host,
        host_header,
        path,
        upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, hosts: &[&str]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap_or_default().into_parts().0
    }

    #[test]
    fn hosts_in_one_form() {
        for (uri, hosts, want) in [
            ("/a", vec!["Svc.Example.JP"], "svc.example.jp"),
            ("/a", vec!["svc.example.jp."], "svc.example.jp"),
            ("/a", vec!["svc.example.jp:443"], "svc.example.jp"),
            ("https://svc.example.jp/a", vec![], "svc.example.jp"),
            (
                "https://SVC.example.jp/a",
                vec!["svc.example.jp."],
                "svc.example.jp",
            ),
            ("/a", vec!["[::1]:8443"], "::1"),
        ] {
            let t = target(&parts(uri, &hosts), false).map(|t| t.host);
            assert_eq!(t.as_deref(), Ok(want), "{uri} {hosts:?}");
        }
        for (uri, hosts, rule) in [
            ("https://a.example/x", vec!["b.example"], "host-conflict"),
            ("/x", vec!["a.example", "b.example"], "host-conflict"),
            ("/x", vec![], "host-missing"),
            ("/x", vec!["a b.example"], "host-invalid"),
            ("/x", vec!["a.example%2f"], "host-invalid"),
            ("/x", vec!["a..example"], "host-invalid"),
        ] {
            let t = target(&parts(uri, &hosts), false);
            assert_eq!(t.map_err(|e| e.rule), Err(rule), "{uri} {hosts:?}");
        }
    }

    #[test]
    fn path_upstream_is_canonical_unless_raw_is_asked_for() {
        let p = parts("/api/x/../%61dmin/f.txt?q=%2e", &["svc.example"]);
        let t = target(&p, false).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(t.path, "/api/admin/f.txt?q=%2e");
        assert_eq!(t.upstream, t.path);
        let t = target(&p, true).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(t.path, "/api/admin/f.txt?q=%2e");
        assert_eq!(t.upstream, "/api/x/../%61dmin/f.txt?q=%2e");
        let bad = target(&parts("/api/%2e%2e/admin", &["svc.example"]), false);
        assert_eq!(bad.map_err(|e| e.rule), Err("path-encoded-dot-segment"));
    }
}
