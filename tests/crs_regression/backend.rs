//! An albedo-compatible backend (github.com/coreruleset/albedo): 200 with a small body on every
//! path; `POST /reflect` answers with the status, headers and body its JSON asks for. Like
//! albedo (Go's net/http), a body written without a Content-Type gets a sniffed one.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::sniff;

/// The largest request body the backend reads.
const MAX_BODY: usize = 16 << 20;

/// A running backend.
pub struct Backend {
    pub port: u16,
    /// Requests answered so far.
    pub seen: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Binds 127.0.0.1:0 and serves on `rt`.
    pub fn start(rt: &tokio::runtime::Runtime) -> Backend {
        let sock = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind backend");
        let port = sock.local_addr().expect("backend address").port();
        let seen = Arc::new(AtomicU64::new(0));
        let task = rt.spawn(accept(sock, Arc::clone(&seen)));
        Backend { port, seen, task }
    }

    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

async fn accept(sock: TcpListener, seen: Arc<AtomicU64>) {
    loop {
        let Ok((tcp, _)) = sock.accept().await else {
            continue;
        };
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                seen.fetch_add(1, Ordering::SeqCst);
                answer(req)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reflect =
        req.method() == hyper::Method::POST && matches!(req.uri().path(), "/reflect" | "/reflect/");
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !reflect {
        return Ok(reply(200, &[], b"ok\n".to_vec()));
    }
    Ok(match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(spec) => reflect_spec(&spec),
        Err(_) => reply(400, &[], b"Invalid JSON in request body".to_vec()),
    })
}

/// albedo's `doReflect`: status (0 → 200; outside 100..=599 → 400), headers, then `body` or
/// else `encodedBody`.
fn reflect_spec(spec: &serde_json::Value) -> Response<Full<Bytes>> {
    let status = spec["status"].as_u64().unwrap_or(0);
    if status != 0 && !(100..600).contains(&status) {
        return reply(
            400,
            &[],
            format!("Invalid status code: {status}").into_bytes(),
        );
    }
    let status = if status == 0 { 200 } else { status as u16 };
    let headers: Vec<(String, String)> = spec["headers"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let body = match spec["body"].as_str().filter(|b| !b.is_empty()) {
        Some(b) => b.as_bytes().to_vec(),
        None => match spec["encodedBody"].as_str() {
            Some(e) => match base64::engine::general_purpose::STANDARD.decode(e) {
                Ok(b) => b,
                Err(_) => {
                    return reply(
                        400,
                        &[],
                        b"invalid base64 encoding of response body".to_vec(),
                    )
                }
            },
            None => Vec::new(),
        },
    };
    reply(status, &headers, body)
}

/// A response; headers hyper refuses are dropped (as albedo drops invalid ones); a body
/// without a Content-Type gets Go's sniffed type.
fn reply(status: u16, headers: &[(String, String)], body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    let no_body = status < 200 || status == 204 || status == 304;
    if !no_body && !body.is_empty() && !r.headers().contains_key(hyper::header::CONTENT_TYPE) {
        let sniffed = hyper::header::HeaderValue::from_static(sniff::content_type(&body));
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, sniffed);
    }
    if !no_body {
        *r.body_mut() = Full::new(Bytes::from(body));
    }
    r
}
