//! `sekisho collector`: a small collector for pilots and tests. It receives syslog over TCP and
//! TLS (RFC 6587 octet counting or newline framing) and HTTP(S) JSON batches (Splunk HEC
//! envelopes or bare JSON objects) and appends what it receives to files in one folder:
//! `syslog.log` (one message per line) and `http.log` (one event per line).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

/// What to listen on and where to write.
#[derive(Clone, Debug, Default)]
pub struct CollectorConfig {
    /// Output folder.
    pub out: PathBuf,
    /// Syslog over TCP.
    pub syslog_tcp: Vec<SocketAddr>,
    /// Syslog over TLS (RFC 5425); needs `cert` and `key`.
    pub syslog_tls: Vec<SocketAddr>,
    /// HTTP batches.
    pub http: Vec<SocketAddr>,
    /// HTTPS batches; needs `cert` and `key`.
    pub https: Vec<SocketAddr>,
    /// Server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Require client certificates chaining to this bundle.
    pub client_ca: Option<PathBuf>,
    /// `Authorization: Splunk <token>` required on HTTP batches.
    pub token: Option<String>,
}

/// Largest syslog message or HTTP batch accepted.
pub const MAX_MESSAGE: usize = 1 << 20;
const MAX_BATCH: usize = 64 << 20;
const IDLE: Duration = Duration::from_secs(600);
const MAX_CONNECTIONS: usize = 1024;

fn tls_config(cfg: &CollectorConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) else {
        return Err("TLS listeners need --cert and --key".into());
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let k = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let b = match &cfg.client_ca {
        None => b.with_no_client_auth(),
        Some(p) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(p)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", p.display()))?
            {
                roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("{}: {e}", p.display()))?;
            b.with_client_cert_verifier(v)
        }
    };
    let mut c = b
        .with_single_cert(chain, k)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

async fn writer(path: PathBuf, mut rx: mpsc::Receiver<String>) {
    let f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .await;
    let mut f = match f {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "collector: cannot open");
            return;
        }
    };
    let mut lines = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(1 << 16);
    while rx.recv_many(&mut lines, 1024).await > 0 {
        buf.clear();
        for l in lines.drain(..) {
            buf.extend_from_slice(l.replace('\n', "\\n").as_bytes());
            buf.push(b'\n');
        }
        if let Err(e) = f.write_all(&buf).await.and(f.flush().await) {
            tracing::error!(file = %path.display(), error = %e, "collector: cannot write");
        }
    }
}

/// Splits syslog frames from `buf`: octet counting (`LEN SP MSG`) when a frame starts with a
/// digit, else up to a newline. Returns the messages and how many bytes were consumed, or an
/// error for a frame over [`MAX_MESSAGE`].
pub fn split_frames(buf: &[u8]) -> Result<(Vec<String>, usize), String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest[0] == b'\n' || rest[0] == b'\r' {
            pos += 1;
            continue;
        }
        if rest[0].is_ascii_digit() {
            let Some(sp) = rest.iter().take(10).position(|b| *b == b' ') else {
                if rest.len() >= 10 {
                    return Err("bad octet count".into());
                }
                break;
            };
            let len: usize = std::str::from_utf8(&rest[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad octet count")?;
            if len > MAX_MESSAGE {
                return Err(format!("message of {len} bytes (limit {MAX_MESSAGE})"));
            }
            if rest.len() < sp + 1 + len {
                break;
            }
            out.push(String::from_utf8_lossy(&rest[sp + 1..sp + 1 + len]).into_owned());
            pos += sp + 1 + len;
        } else {
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                if rest.len() > MAX_MESSAGE {
                    return Err("line over the size limit".into());
                }
                break;
            };
            let line = rest[..nl].strip_suffix(b"\r").unwrap_or(&rest[..nl]);
            out.push(String::from_utf8_lossy(line).into_owned());
            pos += nl + 1;
        }
    }
    Ok((out, pos))
}

async fn syslog_conn<S: AsyncRead + Unpin>(mut s: S, peer: SocketAddr, tx: mpsc::Sender<String>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let n = match tokio::time::timeout(IDLE, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Err(_) => return,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "collector: syslog connection");
                return;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        match split_frames(&buf) {
            Ok((msgs, used)) => {
                buf.drain(..used);
                for m in msgs {
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "collector: bad syslog framing; closing");
                return;
            }
        }
    }
}

/// The events of one HTTP batch, one line each: HEC envelopes give their `event` (a string
/// as is, an object as JSON); bare objects are kept whole.
pub fn batch_events(body: &[u8]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for v in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let v = v.map_err(|e| e.to_string())?;
        let items = match v {
            Value::Array(a) => a,
            other => vec![other],
        };
        for it in items {
            let ev = match it {
                Value::Object(mut o) if o.contains_key("event") => {
                    o.remove("event").unwrap_or(Value::Null)
                }
                other => other,
            };
            out.push(match ev {
                Value::String(s) => s,
                other => other.to_string(),
            });
        }
    }
    Ok(out)
}

fn reply(status: u16, text: &str, code: u8) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(format!(
        "{{\"text\":\"{text}\",\"code\":{code}}}"
    ))));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn http_conn<S>(s: S, tx: mpsc::Sender<String>, token: Option<Arc<str>>)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let tx = tx.clone();
        let token = token.clone();
        async move {
            if req.method() != http::Method::POST {
                return Ok::<_, std::convert::Infallible>(reply(405, "POST only", 4));
            }
            if let Some(t) = &token {
                let ok = req
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .is_some_and(|h| h == format!("Splunk {t}"));
                if !ok {
                    return Ok(reply(401, "Invalid authorization", 3));
                }
            }
            let body = match http_body_util::Limited::new(req.into_body(), MAX_BATCH)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(reply(413, "Batch too large", 6)),
            };
            match batch_events(&body) {
                Ok(lines) => {
                    for l in lines {
                        if tx.send(l).await.is_err() {
                            return Ok(reply(503, "Shutting down", 9));
                        }
                    }
                    Ok(reply(200, "Success", 0))
                }
                Err(_) => Ok(reply(400, "Invalid data format", 6)),
            }
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Duration::from_secs(30))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
        .await;
}

#[derive(Clone, Copy)]
enum Proto {
    Syslog,
    Http,
}

/// Binds every listener; returns the addresses bound (in the order given: syslog-tcp,
/// syslog-tls, http, https) and a future serving them until `shutdown` completes.
pub async fn bind(
    cfg: CollectorConfig,
) -> Result<
    (
        Vec<(String, SocketAddr)>,
        impl std::future::Future<Output = ()>,
    ),
    String,
> {
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    let tls = if cfg.syslog_tls.is_empty() && cfg.https.is_empty() {
        None
    } else {
        Some(tokio_rustls::TlsAcceptor::from(tls_config(&cfg)?))
    };
    let (stx, srx) = mpsc::channel::<String>(65_536);
    let (htx, hrx) = mpsc::channel::<String>(65_536);
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    for (label, addrs, proto, use_tls) in [
        ("syslog-tcp", &cfg.syslog_tcp, Proto::Syslog, false),
        ("syslog-tls", &cfg.syslog_tls, Proto::Syslog, true),
        ("http", &cfg.http, Proto::Http, false),
        ("https", &cfg.https, Proto::Http, true),
    ] {
        for a in addrs {
            let l = TcpListener::bind(a)
                .await
                .map_err(|e| format!("binding {label} on {a}: {e}"))?;
            let local = l.local_addr().map_err(|e| e.to_string())?;
            bound.push((label.to_string(), local));
            listeners.push((l, proto, use_tls));
        }
    }
    let out: PathBuf = cfg.out.clone();
    let token: Option<Arc<str>> = cfg.token.as_deref().map(Arc::from);
    let serve = async move {
        let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let w1 = tokio::spawn(writer(out.join("syslog.log"), srx));
        let w2 = tokio::spawn(writer(out.join("http.log"), hrx));
        let mut tasks = Vec::new();
        for (l, proto, use_tls) in listeners {
            let tls = if use_tls { tls.clone() } else { None };
            let tx = match proto {
                Proto::Syslog => stx.clone(),
                Proto::Http => htx.clone(),
            };
            let limit = Arc::clone(&limit);
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((sock, peer)) = l.accept().await else {
                        continue;
                    };
                    let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                        tracing::warn!(%peer, "collector: too many connections");
                        continue;
                    };
                    let tls = tls.clone();
                    let tx = tx.clone();
                    let token = token.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        match (tls, proto) {
                            (None, Proto::Syslog) => syslog_conn(sock, peer, tx).await,
                            (None, Proto::Http) => http_conn(sock, tx, token).await,
                            (Some(acc), p) => {
                                let hs = tokio::time::timeout(
                                    Duration::from_secs(10),
                                    acc.accept(sock),
                                )
                                .await;
                                let s = match hs {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::warn!(%peer, error = %e, "collector: TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::warn!(%peer, "collector: TLS handshake timed out");
                                        return;
                                    }
                                };
                                match p {
                                    Proto::Syslog => syslog_conn(s, peer, tx).await,
                                    Proto::Http => http_conn(s, tx, token).await,
                                }
                            }
                        }
                    });
                }
            }));
        }
        drop(stx);
        drop(htx);
        for t in tasks {
            let _ = t.await;
        }
        let _ = w1.await;
        let _ = w2.await;
    };
    Ok((bound, serve))
}

/// Files the collector writes in `out`.
pub fn output_files(out: &Path) -> [PathBuf; 2] {
    [out.join("syslog.log"), out.join("http.log")]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn frames_octet_counted_and_newline() {
        let (m, used) = split_frames(b"5 hello3 abc<13>x y\npartial").unwrap();
        assert_eq!(m, vec!["hello", "abc", "<13>x y"]);
        assert_eq!(used, 20);
        let (m, used) = split_frames(b"10 abc").unwrap();
        assert!(m.is_empty() && used == 0);
        assert!(split_frames(b"99999999 x").is_err());
        assert!(split_frames(b"12345678901234 x").is_err());
    }

    #[test]
    fn hec_batches() {
        let b = br#"{"event":{"a":1},"time":1}
{"event":"CEF:0|x"}{"b":2}[{"event":{"c":3}}]"#;
        assert_eq!(
            batch_events(b).unwrap(),
            vec!["{\"a\":1}", "CEF:0|x", "{\"b\":2}", "{\"c\":3}"]
        );
        assert!(batch_events(b"{\"a\":").is_err());
    }
}
