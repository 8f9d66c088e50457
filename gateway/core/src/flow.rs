use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Which half of an HTTP transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

impl Direction {
    /// Index 0 for requests, 1 for responses.
    pub fn index(self) -> usize {
        match self {
            Direction::Request => 0,
            Direction::Response => 1,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

/// How TLS was handled for the flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain HTTP (or a CONNECT request before its tunnel is classified).
    #[default]
    None,
    /// TLS terminated at the gateway and re-encrypted to the upstream.
    Decrypted,
    /// TLS tunnelled untouched (splice list).
    Spliced,
}

/// A client certificate's identity, as events report it (ECS `tls.client.*`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCert {
    /// Subject DN (RFC 4514 order as printed by the certificate, e.g. `CN=a, OU=F-1, O=x`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lower-case hex without separators.
    pub serial: String,
}

/// `tls.upstream`: the TLS session the gateway made with the upstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTls {
    /// `1.2`, `1.3`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version: Option<std::borrow::Cow<'static, str>>,
    /// The cipher suite's IANA name, e.g. `TLS13_AES_256_GCM_SHA384`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cipher: Option<std::borrow::Cow<'static, str>>,
}

impl UpstreamTls {
    /// `0x0304` → `1.3`, and the other versions TLS has had.
    pub fn version_name(v: u16) -> std::borrow::Cow<'static, str> {
        match v {
            0x0304 => "1.3".into(),
            0x0303 => "1.2".into(),
            0x0302 => "1.1".into(),
            0x0301 => "1.0".into(),
            other => format!("0x{other:04x}").into(),
        }
    }
}

/// `tls.error`: a TLS failure or exception on a flow, as a stable code (for queries and
/// alerting) and a sentence (for people).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsError {
    /// A stable code, e.g. `upstream-certificate-expired`, `upstream-client-certificate-required`.
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

/// The connection facts a flow came with. Built by the listener, read by every stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FlowMeta {
    /// Unique per process; ties events and the communication log together.
    pub flow_id: u64,
    /// The client connection this flow arrived on, unique per process (`0` offline). A stage
    /// that keeps state per connection keys it by this id and drops it in
    /// [`crate::Stage::connection_closed`].
    #[serde(skip)]
    pub conn_id: u64,
    /// The listener's name.
    pub listener: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The gateway address the client connected to.
    pub local: SocketAddr,
    /// The CONNECT target (or absolute-form host) the client asked for.
    pub target_host: Option<String>,
    /// The CONNECT target port.
    pub target_port: Option<u16>,
    /// TLS SNI from the client's ClientHello, when there was one.
    pub sni: Option<String>,
    /// Decrypted, spliced or plain.
    pub tls: TlsMode,
    /// The facility identity from a client certificate (reverse proxy), when known.
    pub facility_id: Option<String>,
    /// The TLS session with the upstream, when one was used (`tls.upstream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_tls: Option<UpstreamTls>,
    /// What went wrong with TLS on this flow (`tls.error` of its events and log line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_error: Option<TlsError>,
    /// The client certificate's roles (reverse proxy, `role_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facility_roles: Vec<String>,
    /// The verified client certificate (reverse proxy), when one was presented.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_cert: Option<ClientCert>,
    /// The request id sent upstream (`X-Request-Id`, reverse proxy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// The upstream address, once connected.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream: Option<SocketAddr>,
    /// The upstream's certificate chain (DER, leaf first), once a verified TLS connection exists.
    #[serde(skip)]
    pub upstream_certs: std::sync::Arc<[bytes::Bytes]>,
    /// The TLS version negotiated with the client (`0x0303` = TLS 1.2), when decrypted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls_version: Option<u16>,
}

impl FlowMeta {
    /// A minimal meta for a client talking to a listener (used by tests and offline tools).
    pub fn new(
        flow_id: u64,
        listener: impl Into<String>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        FlowMeta {
            flow_id,
            conn_id: 0,
            listener: listener.into(),
            client,
            local,
            target_host: None,
            target_port: None,
            sni: None,
            tls: TlsMode::None,
            facility_id: None,
            facility_roles: Vec::new(),
            tls_error: None,
            upstream_tls: None,
            client_cert: None,
            request_id: None,
            upstream: None,
            upstream_certs: std::sync::Arc::from(Vec::new()),
            tls_version: None,
        }
    }
}

/// The request line and headers of a flow.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// Method.
    pub method: http::Method,
    /// The request target as received (absolute form for proxies).
    pub uri: http::Uri,
    /// HTTP version on the client side.
    pub version: http::Version,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// The effective host (from the URI authority or the Host header), lower-cased, without port
    /// or IPv6 brackets.
    pub host: String,
    /// The effective port.
    pub port: u16,
    /// The head exactly as the client sent it (request line, headers in their order and case,
    /// blank line), when the listener could keep it (HTTP/1).
    pub raw: Option<bytes::Bytes>,
    /// The reverse-proxy route that serves the request (its name), once chosen.
    pub route: Option<std::sync::Arc<str>>,
    /// What the listener saw in the body's framing as the client sent it (HTTP/1), filled in
    /// as the body is read: complete once the body has ended.
    pub wire: Option<std::sync::Arc<WireNotes>>,
}

/// Anomalies in a body's framing as the peer sent it, which the HTTP parser normalises away
/// (chunk extensions) or refuses (a chunk length that does not read). Set by the proxy as it
/// reads the body; read by stages once the body has ended.
#[derive(Debug, Default)]
pub struct WireNotes(std::sync::atomic::AtomicU8);

impl WireNotes {
    /// A chunk-size line carried an extension (`;name=value`).
    pub const CHUNK_EXTENSION: u8 = 1;
    /// A chunk-size line held no chunk length that reads (libhtp's invalid chunk length).
    pub const INVALID_CHUNK_LEN: u8 = 2;

    /// Records `note` (one of the constants).
    pub fn set(&self, note: u8) {
        self.0.fetch_or(note, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether `note` was recorded.
    pub fn has(&self, note: u8) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed) & note != 0
    }
}

impl RequestHead {
    /// Builds a head, deriving `host` and `port` from the URI authority or the Host header.
    pub fn new(
        method: http::Method,
        uri: http::Uri,
        version: http::Version,
        headers: http::HeaderMap,
        default_port: u16,
    ) -> Self {
        let authority = uri.authority().map(|a| a.as_str().to_string()).or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
        let (host, port) = match authority {
            Some(a) => split_host_port(&a, default_port),
            None => (String::new(), default_port),
        };
        RequestHead {
            method,
            uri,
            version,
            headers,
            host,
            port,
            raw: None,
            route: None,
            wire: None,
        }
    }

    /// The path and query, `/` when absent.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    }
}

/// Splits `host[:port]` / `[v6]:port` into a lower-cased host (no brackets) and a port.
pub fn split_host_port(authority: &str, default_port: u16) -> (String, u16) {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return (h.to_ascii_lowercase(), port);
        }
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            (h.to_ascii_lowercase(), p.parse().unwrap_or(default_port))
        }
        _ => (authority.to_ascii_lowercase(), default_port),
    }
}

/// The status line and headers of a response.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    /// Status code.
    pub status: http::StatusCode,
    /// HTTP version on the upstream side.
    pub version: http::Version,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// The reason phrase as the upstream sent it, when it is not the status's canonical one
    /// (an empty phrase included); `None`: the canonical phrase, or none (HTTP/2).
    pub reason: Option<bytes::Bytes>,
    /// The head exactly as the upstream sent it (status line, header lines in their order,
    /// case and spacing, blank line), when the proxy recorded it (HTTP/1).
    pub raw: Option<bytes::Bytes>,
    /// What the proxy saw in a chunked body's framing as the upstream sent it (HTTP/1, as
    /// far as it recorded it), filled in once the body has ended or failed.
    pub wire: Option<std::sync::Arc<WireNotes>>,
}

/// What the gateway learnt from a TLS ClientHello before deciding to decrypt or splice.
#[derive(Clone, Debug, Default)]
pub struct TlsHello {
    /// SNI, lower-cased.
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    pub alpn: Vec<String>,
    /// The ClientHello as received (TLS records), for fingerprints (JA3) and raw-record rules.
    pub raw: bytes::Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("Example.COM:8443", 443),
            ("example.com".into(), 8443)
        );
        assert_eq!(
            split_host_port("example.com", 80),
            ("example.com".into(), 80)
        );
        assert_eq!(split_host_port("[::1]:8080", 80), ("::1".into(), 8080));
        assert_eq!(split_host_port("[::1]", 443), ("::1".into(), 443));
        assert_eq!(split_host_port("user@h:1", 80), ("h".into(), 1));
        assert_eq!(split_host_port("h:notaport", 80), ("h".into(), 80));
        assert_eq!(split_host_port("::1", 80), ("::1".into(), 80));
    }

    #[test]
    fn head_host_from_uri_or_header() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "Origin.Test:8080".parse().unwrap());
        let h = RequestHead::new(
            http::Method::GET,
            "/x?y".parse().unwrap(),
            http::Version::HTTP_11,
            headers.clone(),
            80,
        );
        assert_eq!((h.host.as_str(), h.port), ("origin.test", 8080));
        assert_eq!(h.path_and_query(), "/x?y");
        let h = RequestHead::new(
            http::Method::GET,
            "http://a.test/".parse().unwrap(),
            http::Version::HTTP_11,
            headers,
            80,
        );
        assert_eq!((h.host.as_str(), h.port), ("a.test", 80));
    }
}
