//! Connections to collectors: TCP, or TLS with server verification and an optional client
//! certificate (RFC 5425 for syslog).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to a collector.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// A boxed stream.
pub type Stream = Box<dyn Conn>;

/// How to reach one collector.
pub struct Connector {
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Splits `host:port` / `[v6]:port`.
pub fn split_addr(addr: &str) -> Result<(String, u16), String> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr}: expected host:port"))?;
    let port: u16 = p.parse().map_err(|_| format!("{addr}: bad port {p:?}"))?;
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if h.is_empty() {
        return Err(format!("{addr}: no host"));
    }
    Ok((h.to_string(), port))
}

fn read_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let v: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
        .map_err(|e| format!("{}: cannot read: {e}", p.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", p.display()))?;
    if v.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", p.display()));
    }
    Ok(v)
}

/// TLS settings of a sink.
#[derive(Debug, Default, Clone)]
pub struct TlsSettings<'a> {
    /// CA bundle (else the system store).
    pub ca: Option<&'a Path>,
    /// Name to verify (else the host).
    pub server_name: Option<&'a str>,
    /// Client certificate chain and key.
    pub client: Option<(&'a Path, &'a Path)>,
}

impl Connector {
    /// A connector to `host:port`, with TLS when `tls` is set.
    pub fn new(
        host: &str,
        port: u16,
        tls: Option<TlsSettings<'_>>,
        timeout: Duration,
    ) -> Result<Connector, String> {
        let tls = match tls {
            None => None,
            Some(t) => {
                let mut roots = RootCertStore::empty();
                match t.ca {
                    Some(p) => {
                        for c in read_certs(p)? {
                            roots
                                .add(c)
                                .map_err(|e| format!("{}: unusable CA: {e}", p.display()))?;
                        }
                    }
                    None => {
                        let found = rustls_native_certs::load_native_certs();
                        roots.add_parsable_certificates(found.certs);
                        if roots.is_empty() {
                            return Err("no system trust store; set ca".into());
                        }
                    }
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let b = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots);
                let cfg = match t.client {
                    None => b.with_no_client_auth(),
                    Some((cert, key)) => {
                        let chain = read_certs(cert)?;
                        let k = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                            format!("{}: no usable private key: {e}", key.display())
                        })?;
                        b.with_client_auth_cert(chain, k)
                            .map_err(|e| format!("{}: {e}", cert.display()))?
                    }
                };
                let name = t.server_name.unwrap_or(host).to_string();
                let sn = ServerName::try_from(name.clone())
                    .map_err(|e| format!("server name {name:?}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), sn))
            }
        };
        Ok(Connector {
            host: host.to_string(),
            port,
            tls,
            timeout,
        })
    }

    /// `host:port` (for logs).
    pub fn peer(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Connects (and completes the TLS handshake) within the timeout.
    pub async fn connect(&self) -> std::io::Result<Stream> {
        let go = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port)).await?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Box::new(tcp) as Stream),
                Some((c, sn)) => {
                    let s = c.connect(sn.clone(), tcp).await?;
                    Ok(Box::new(s) as Stream)
                }
            }
        };
        tokio::time::timeout(self.timeout, go)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }
}
