//! The upstream client: pooled HTTP/1.1 and h2 (by ALPN) over verified TLS, TCP_NODELAY, session
//! resumption (rustls' default in-memory cache).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::combinators::UnsyncBoxBody;
use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use tower_service::Service;

use crate::dial::{causes, Guard, GuardedConnector};
use crate::error::{ProxyError, Result};
use crate::guard::Refused;
use crate::preflight::{
    noting_certificate_request, CertificateRequested, NoteCertificateRequest, StashConnector,
};
use crate::rawtap::TapConnector;

/// h2 stream flow-control window offered to peers (upstreams and clients).
pub const H2_STREAM_WINDOW: u32 = 1 << 20;
/// h2 connection flow-control window offered to peers.
pub const H2_CONN_WINDOW: u32 = 4 << 20;
/// Largest h2 frame peers may send us.
pub const H2_MAX_FRAME: u32 = 64 << 10;

/// The body type sent upstream and to clients.
pub type ProxyBody = UnsyncBoxBody<bytes::Bytes, BoxError>;
/// Boxed error of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What dials a new upstream connection.
type Dialler = TapConnector<HttpsConnector<GuardedConnector>>;
/// A pool's connector: its stash of pre-flight connections first, then a new dial.
type Connector = StashConnector<Dialler>;
/// An upstream connection.
type Conn = <Dialler as Service<Uri>>::Response;
/// One pooled hyper client.
type Pool = Client<Connector, ProxyBody>;

/// When requests go upstream over h2 (`[tls] upstream_http2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamH2 {
    /// Only requests that need h2 end to end (gRPC, `TE: trailers`) offer h2; the rest go over
    /// HTTP/1.1, which costs a third less CPU per byte on bulk transfers (the default).
    #[default]
    Auto,
    /// Offer h2 for every request (HTTP/1.1 if the server does not take it).
    Always,
    /// HTTP/1.1 only.
    Never,
}

/// The upstream client: an HTTP/1.1 pool and an h2-capable pool over the same TLS settings.
pub struct UpstreamClient {
    h1: Pool,
    h2: Pool,
    /// The pools' connectors (sharing their stashes), for pre-flight dials.
    dial_h1: Connector,
    dial_h2: Connector,
    mode: UpstreamH2,
}

impl UpstreamClient {
    /// Sends a request on the pool its protocol calls for.
    pub fn request(
        &self,
        req: hyper::Request<ProxyBody>,
    ) -> hyper_util::client::legacy::ResponseFuture {
        // An Upgrade (WebSocket) exists only in HTTP/1.1: it never goes over h2.
        let h2 = match self.mode {
            _ if crate::wire::wants_upgrade(req.headers()) => false,
            UpstreamH2::Always => true,
            UpstreamH2::Never => false,
            UpstreamH2::Auto => needs_h2(req.headers()),
        };
        if h2 {
            self.h2.request(req)
        } else {
            self.h1.request(req)
        }
    }

    /// Dials `host:port` over TLS before the client's handshake is answered, noting whether the
    /// server asks for a client certificate, within `limit` (`crate::preflight`). The dial goes
    /// through the pool's own connector (destination guard, trust, ALPN) that a first request
    /// would use: [`UpstreamClient::hold`] hands it to that request.
    pub(crate) async fn preflight(
        &self,
        host: &str,
        port: u16,
        limit: Duration,
    ) -> Option<Preflight> {
        let h2 = self.mode == UpstreamH2::Always;
        let connector = if h2 { &self.dial_h2 } else { &self.dial_h1 };
        let uri: Uri = format!("https://{}", crate::wire::authority(host, port))
            .parse()
            .ok()?;
        let key = crate::preflight::key(&uri)?;
        let dial = tokio::time::timeout(limit, connector.dial(uri));
        let (dialled, asked) = noting_certificate_request(dial).await;
        let result = dialled.unwrap_or_else(|_| {
            Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TLS session with the server within {limit:?}"),
            )) as BoxError)
        });
        Some(Preflight {
            key,
            h2,
            result,
            asked,
        })
    }

    /// Keeps a pre-flight connection (or the error its dial met; a server that asked for a
    /// client certificate is that error) for the first request to its server.
    /// `outcome` is `p.outcome()`, already read by the caller.
    pub(crate) fn hold(&self, p: Preflight, outcome: &Outcome) {
        let connector = if p.h2 { &self.dial_h2 } else { &self.dial_h1 };
        let held = match outcome {
            Outcome::AskedForCertificate => Err(Box::new(CertificateRequested) as BoxError),
            _ => p.result,
        };
        if !connector.stash().put(p.key, held) {
            tracing::debug!("pre-flight stash full: the connection is dropped");
        }
    }
}

/// A pre-flight dial: the connection or the error it met, and whether the server asked for a
/// client certificate.
pub(crate) struct Preflight {
    key: String,
    h2: bool,
    result: std::result::Result<Conn, BoxError>,
    asked: bool,
}

/// What a pre-flight dial learnt.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A TLS session the gateway can inspect.
    Ready,
    /// The server asked for a client certificate.
    AskedForCertificate,
    /// The dial failed.
    Failed(UpstreamFailure),
}

impl Preflight {
    /// What the dial learnt.
    ///
    /// A certificate request counts only on a session whose certificate checked out: rustls
    /// asks for a client certificate before it verifies the server's, so a server with a bad or
    /// legacy certificate that also asks for one is judged on its certificate (never spliced for
    /// the request).
    pub(crate) fn outcome(&self) -> Outcome {
        match &self.result {
            Ok(_) if self.asked => Outcome::AskedForCertificate,
            Ok(_) => Outcome::Ready,
            Err(e) if self.asked && refused_after_request(e.as_ref()) => {
                Outcome::AskedForCertificate
            }
            Err(e) => Outcome::Failed(classify(e.as_ref())),
        }
    }
}

/// Whether a dial on which the server asked for a client certificate failed for that: the
/// server ended the handshake after the gateway's empty certificate (TLS 1.2 servers answer
/// `handshake_failure`), not over its own certificate or the connection.
pub(crate) fn refused_after_request(e: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        classify(e),
        UpstreamFailure::Tls(kind, _) if kind != crate::tlserror::Handshake::LegacyCertificate
    )
}

/// gRPC and requests announcing trailers need h2 end to end (HTTP/1.1 has no request trailers in
/// hyper's client and gRPC runs on h2 only).
fn needs_h2(headers: &hyper::HeaderMap) -> bool {
    let grpc = headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.len() >= 16 && v[..16].eq_ignore_ascii_case("application/grpc"));
    grpc || headers
        .get_all(hyper::header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

/// Builds the trust store for upstream certificates: system roots, Mozilla roots, extra PEMs.
pub fn root_store(system: bool, webpki: bool, extra: &[impl AsRef<Path>]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if webpki {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if system {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "system trust store");
        }
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, "system roots");
    }
    for p in extra {
        let p = p.as_ref();
        let certs = crate::clientauth::read_pem_certs(p)?;
        for c in certs {
            roots.add(c).map_err(|e| ProxyError::Cert {
                path: p.to_path_buf(),
                message: format!("unusable root certificate: {e}"),
            })?;
        }
    }
    Ok(roots)
}

/// The verified certificate chains of upstream servers, by server name (lower-case host or IP),
/// bounded: what IPS certificate rules (`tls.cert_subject`, `tls.certs` …) inspect.
pub type CertStore = quick_cache::sync::Cache<String, Arc<[bytes::Bytes]>>;

/// A certificate store for `n` servers.
pub fn cert_store(n: usize) -> Arc<CertStore> {
    Arc::new(CertStore::new(n))
}

/// Upstream hosts whose certificate did not verify but passed (`[tls]
/// allow_invalid_upstream`), with the reason in words; bounded.
pub type InvalidStore = quick_cache::sync::Cache<String, Arc<str>>;

/// What upstream certificate verification records and allows.
#[derive(Clone, Debug)]
pub struct Verification {
    /// Verified chains, by server name.
    pub certs: Arc<CertStore>,
    /// Hosts passed with a certificate that does not verify, and why.
    pub invalid: Arc<InvalidStore>,
    /// `[tls] allow_invalid_upstream`.
    pub allow_invalid: crate::hostmatch::HostMatcher,
}

/// WebPKI verification that also records each verified chain.
#[derive(Debug)]
struct Recording {
    /// `None` when no trust anchor is configured: every upstream certificate is refused.
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
    v: Verification,
}

impl Recording {
    /// A certificate error the operator allows for this host: recorded, and the chain passes
    /// (the handshake signature is still checked against the presented key).
    fn allowed(&self, name: &str, e: &rustls::Error) -> bool {
        let rustls::Error::InvalidCertificate(c) = e else {
            return false;
        };
        if !self.v.allow_invalid.matches(name) {
            return false;
        }
        self.v
            .invalid
            .insert(name.to_string(), Arc::from(certificate_in_words(c)));
        true
    }
}

impl rustls::client::danger::ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let name = match server_name {
            rustls_pki_types::ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
            rustls_pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => String::new(),
        };
        let verdict = match &self.inner {
            Some(inner) => {
                inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        };
        let ok = match verdict {
            Ok(ok) => {
                self.v.invalid.remove(&name);
                ok
            }
            Err(e) if !name.is_empty() && self.allowed(&name, &e) => {
                rustls::client::danger::ServerCertVerified::assertion()
            }
            Err(e) => return Err(crate::legacycert::chain_error(e, end_entity, intermediates)),
        };
        if name.is_empty() {
            return Ok(ok);
        }
        let chain: Vec<bytes::Bytes> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| bytes::Bytes::copy_from_slice(c.as_ref()))
            .collect();
        self.v.certs.insert(name, Arc::from(chain));
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
            .map_err(|e| crate::legacycert::handshake_error(e, cert))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
            .map_err(|e| crate::legacycert::handshake_error(e, cert))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Builds the pooled upstream client; verified chains are recorded in `v.certs`, allowed
/// invalid ones in `v.invalid`. With a `guard`, only destinations it allows are dialled (the
/// forward proxy's client).
pub(crate) fn client(
    roots: RootCertStore,
    connect_timeout: Duration,
    idle: Duration,
    v: Verification,
    mode: UpstreamH2,
    guard: Guard,
) -> Result<UpstreamClient> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let algs = provider.signature_verification_algorithms;
    let inner = if roots.is_empty() {
        tracing::warn!("no upstream trust anchors: every upstream TLS certificate will be refused");
        None
    } else {
        Some(
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| ProxyError::Cert {
                path: std::path::PathBuf::from("[tls] upstream roots"),
                message: format!("unusable trust anchors: {e}"),
            })?,
        )
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recording { inner, algs, v }))
        .with_client_cert_resolver(Arc::new(NoteCertificateRequest));
    let http = GuardedConnector::new(guard, connect_timeout);
    let connector = |h2: bool| {
        let b = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http();
        let https = if h2 {
            b.enable_http1().enable_http2().wrap_connector(http.clone())
        } else {
            b.enable_http1().wrap_connector(http.clone())
        };
        StashConnector::new(TapConnector::new(https))
    };
    let pool = |connector: Connector| {
        Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(256)
            // Bulk transfers: larger h2 windows than the 64 KiB default (fewer WINDOW_UPDATE
            // round trips), frames up to 64 KiB from the upstream.
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONN_WINDOW)
            .http2_max_frame_size(H2_MAX_FRAME)
            .build(connector)
    };
    let (dial_h1, dial_h2) = (connector(false), connector(true));
    Ok(UpstreamClient {
        h1: pool(dial_h1.clone()),
        h2: pool(dial_h2.clone()),
        dial_h1,
        dial_h2,
        mode,
    })
}

/// Why an upstream request failed, for metrics, events and the page the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The upstream's certificate did not verify: its `tls.error` code and the reason in words.
    Certificate(&'static str, String),
    /// Another TLS failure: what kind, and a sentence.
    Tls(crate::tlserror::Handshake, String),
    /// Could not connect.
    Connect(String),
    /// The upstream name did not resolve.
    Unresolved(String),
    /// The destination policy refused the address (nothing was sent to it).
    Denied(Refused),
    /// Anything else (protocol error, reset).
    Other(String),
}

impl UpstreamFailure {
    /// The metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamFailure::Certificate(..) => "tls_cert",
            UpstreamFailure::Tls(..) => "tls",
            UpstreamFailure::Connect(_) => "connect",
            UpstreamFailure::Denied(_) => "denied",
            UpstreamFailure::Unresolved(_) => "dns",
            UpstreamFailure::Other(_) => "protocol",
        }
    }
}

/// Classifies an upstream client error by walking its causes.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    let mut connect = false;
    for e in causes(err) {
        if e.downcast_ref::<CertificateRequested>().is_some() {
            return UpstreamFailure::Tls(
                crate::tlserror::Handshake::ClientCertificateRequired,
                crate::tlserror::CLIENT_CERTIFICATE.into(),
            );
        }
        if let Some(r) = e.downcast_ref::<Refused>() {
            return UpstreamFailure::Denied(r.clone());
        }
        if let Some(u) = e.downcast_ref::<crate::dial::Unresolved>() {
            return UpstreamFailure::Unresolved(u.to_string());
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return match t {
                rustls::Error::InvalidCertificate(c) if crate::legacycert::words(c).is_some() => {
                    let words = crate::legacycert::words(c).unwrap_or_default();
                    UpstreamFailure::Tls(
                        crate::tlserror::Handshake::LegacyCertificate,
                        format!("{words}: {}", crate::tlserror::LEGACY_WAY),
                    )
                }
                rustls::Error::InvalidCertificate(c) => UpstreamFailure::Certificate(
                    crate::tlserror::certificate_code(c),
                    certificate_in_words(c),
                ),
                other => {
                    let (kind, words) = crate::tlserror::upstream_handshake(other);
                    UpstreamFailure::Tls(kind, words)
                }
            };
        }
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= h.is_connect();
        }
    }
    let text = error_chain(err);
    if connect {
        UpstreamFailure::Connect(text)
    } else {
        UpstreamFailure::Other(text)
    }
}

/// Why a certificate was refused, in words (rustls' own text is its Debug form).
pub fn certificate_in_words(c: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let when = |t: &rustls_pki_types::UnixTime| {
        time::OffsetDateTime::from_unix_timestamp(t.as_secs() as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "?".into())
    };
    match c {
        E::NotValidForName => "certificate not valid for this name".into(),
        E::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = match expected {
                rustls_pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
                rustls_pki_types::ServerName::IpAddress(a) => {
                    std::net::IpAddr::from(*a).to_string()
                }
                _ => "this name".into(),
            };
            format!(
                "certificate not valid for {expected} (it names {})",
                if presented.is_empty() {
                    "no host".to_string()
                } else {
                    presented.join(", ")
                }
            )
        }
        E::Expired => "certificate expired".into(),
        E::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", when(not_after))
        }
        E::NotValidYet => "certificate not yet valid".into(),
        E::NotValidYetContext { not_before, .. } => {
            format!("certificate not valid before {}", when(not_before))
        }
        E::UnknownIssuer => "certificate issued by an authority the gateway does not trust".into(),
        E::Revoked => "certificate revoked by its issuer".into(),
        E::BadSignature => "certificate signature does not verify".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
            "certificate not issued for server authentication".into()
        }
        E::BadEncoding => "certificate is malformed".into(),
        E::UnknownRevocationStatus => "certificate revocation status unknown".into(),
        E::ExpiredRevocationList | E::ExpiredRevocationListContext { .. } => {
            "the issuer's revocation list has expired".into()
        }
        other => format!("certificate refused: {other}"),
    }
}

/// `a: b: c` from an error and its sources.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let t = e.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::needs_h2;
    use hyper::header::{HeaderValue, CONTENT_TYPE, TE};
    use hyper::HeaderMap;

    #[test]
    fn grpc_and_trailers_need_h2_the_rest_does_not() {
        let h = |pairs: &[(hyper::header::HeaderName, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(k.clone(), HeaderValue::from_static(v));
            }
            needs_h2(&m)
        };
        assert!(h(&[(CONTENT_TYPE, "application/grpc")]));
        assert!(h(&[(CONTENT_TYPE, "Application/GRPC+proto")]));
        assert!(h(&[(TE, "gzip, trailers")]));
        assert!(!h(&[]));
        assert!(!h(&[(CONTENT_TYPE, "application/json")]));
        assert!(!h(&[(CONTENT_TYPE, "application/grp")]));
        assert!(!h(&[(TE, "gzip")]));
    }
}
