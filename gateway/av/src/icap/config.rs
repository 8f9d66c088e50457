//! `[[av.icap]]`: one ICAP server (RFC 3507) the AV stage asks about bodies.

use std::time::Duration;

use sekisho_core::OnError;
use serde::Deserialize;

/// Which bodies a server sees: its ICAP vectoring point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IcapMethod {
    /// Response bodies (downloads), sent as `RESPMOD`.
    #[default]
    Respmod,
    /// Request bodies (uploads), sent as `REQMOD`.
    Reqmod,
}

impl IcapMethod {
    /// The ICAP method name.
    pub fn as_str(self) -> &'static str {
        match self {
            IcapMethod::Respmod => "RESPMOD",
            IcapMethod::Reqmod => "REQMOD",
        }
    }
}

/// One `[[av.icap]]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcapConfig {
    /// `icap://host[:port]/service` (port 1344 when absent).
    pub url: String,
    /// A label for events and metrics (default: the URL's `host:port/service`).
    #[serde(default)]
    pub name: Option<String>,
    /// `respmod` (default: response bodies) or `reqmod` (request bodies).
    #[serde(default)]
    pub method: IcapMethod,
    /// Bytes sent as the preview (RFC 3507 §4.5); the server's OPTIONS `Preview` caps it;
    /// 0 sends no preview. Default 4096.
    #[serde(default = "d_preview")]
    pub preview: u32,
    /// Offer `Allow: 204` so a clean body comes back as "204 No Content" instead of an echo
    /// (default true).
    #[serde(default = "d_true")]
    pub allow_204: bool,
    /// Time for one whole exchange: connect, send, answer (default 30 s).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// A server that cannot answer (refused, timed out, an ICAP error status): `fail-closed`
    /// (default: the body is blocked) or `fail-open` (it passes with an event).
    #[serde(default)]
    pub on_error: OnError,
    /// Connections open to the server at once, pooled for reuse (default 16; the server's
    /// OPTIONS `Max-Connections` lowers it).
    #[serde(default = "d_connections")]
    pub max_connections: u32,
}

fn d_preview() -> u32 {
    4096
}
fn d_true() -> bool {
    true
}
fn d_timeout() -> u64 {
    30
}
fn d_connections() -> u32 {
    16
}

/// Where an ICAP URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcapTarget {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The URL as sent on the request line (`icap://host:port/service`).
    pub uri: String,
    /// `host:port` for the `Host` header.
    pub authority: String,
}

impl IcapConfig {
    /// The parsed URL, or `problem`.
    pub fn target(&self) -> Result<IcapTarget, String> {
        let uri: http::Uri = self
            .url
            .parse()
            .map_err(|e| format!("`{}` is not a URL: {e}", self.url))?;
        match uri.scheme_str() {
            Some("icap") => {}
            Some("icaps") => {
                return Err(format!(
                    "`{}`: icaps:// (ICAP over TLS) is not supported; use icap://",
                    self.url
                ))
            }
            _ => return Err(format!("`{}`: the scheme must be icap://", self.url)),
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("`{}`: no host", self.url))?;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || auth.as_str().contains('@') {
            return Err(format!("`{}`: name a host, without user info", self.url));
        }
        let port = auth.port_u16().unwrap_or(1344);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        if path == "/" {
            return Err(format!(
                "`{}`: name the service (icap://host:port/avscan)",
                self.url
            ));
        }
        Ok(IcapTarget {
            host: host.to_string(),
            port,
            uri: format!("icap://{authority}{path}"),
            authority,
        })
    }

    /// The label for events and metrics.
    pub fn label(&self) -> String {
        match (&self.name, self.target()) {
            (Some(n), _) => n.clone(),
            (None, Ok(t)) => t.uri.trim_start_matches("icap://").to_string(),
            (None, Err(_)) => self.url.clone(),
        }
    }

    /// The exchange's time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks values; returns `key: problem`.
    pub fn validate(&self) -> Result<(), String> {
        self.target().map_err(|e| format!("av.icap.url: {e}"))?;
        if self.timeout_secs == 0 {
            return Err("av.icap.timeout_secs: must be at least 1".into());
        }
        if self.max_connections == 0 || self.max_connections > 1024 {
            return Err("av.icap.max_connections: must be 1..=1024".into());
        }
        if self.preview > 1 << 20 {
            return Err("av.icap.preview: at most 1048576 bytes".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> IcapConfig {
        toml::from_str(&format!("url = {url:?}")).unwrap()
    }

    #[test]
    fn urls() {
        let t = cfg("icap://127.0.0.1:1344/avscan").target().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1344));
        assert_eq!(t.uri, "icap://127.0.0.1:1344/avscan");
        let t = cfg("icap://[::1]/srv_clamav?x=1").target().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1344));
        assert_eq!(t.uri, "icap://[::1]:1344/srv_clamav?x=1");
        assert_eq!(t.authority, "[::1]:1344");
        for bad in [
            "http://h/avscan",
            "icaps://h/avscan",
            "icap://h/",
            "icap://h",
            "icap://u@h/avscan",
            "avscan",
        ] {
            assert!(cfg(bad).validate().is_err(), "{bad}");
        }
        let c = cfg("icap://h:1/s");
        assert_eq!(c.label(), "h:1/s");
        assert_eq!(c.method, IcapMethod::Respmod);
        assert!(c.allow_204);
        assert_eq!(c.on_error, OnError::FailClosed);
    }
}
