//! The accept loops: a listener's sockets (allow_clients, max_connections, TCP_NODELAY) hand
//! each connection to the forward or reverse proxy; the metrics endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::shared::Shared;
use crate::{config, conn, forward, reverse, shed};

pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    index: usize,
    kind: config::ListenerKind,
    name: Arc<str>,
    sock: TcpListener,
    allow: Arc<Vec<IpNet>>,
    limit: Arc<Semaphore>,
) {
    let local = sock
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let what = match kind {
        config::ListenerKind::Forward => "forward proxy listening",
        config::ListenerKind::Reverse => "reverse proxy listening",
    };
    tracing::info!(listener = %name, addr = %local, "{what}");
    loop {
        let (tcp, peer) = match sock.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = conn::canonical_ip(peer.ip());
        if !allow.iter().any(|n| n.contains(&ip)) {
            shared
                .metrics
                .connections_refused
                .with_label_values(&[&name, "not_allowed"])
                .inc();
            tracing::info!(listener = %name, client = %peer, "client not in allow_clients: refused");
            continue;
        }
        let Some(client_slot) = shared.clients.take(ip) else {
            shared
                .metrics
                .connections_refused
                .with_label_values(&[&name, "per_client_limit"])
                .inc();
            let detail = format!(
                "{ip} holds max_connections_per_client = {} connections",
                shared.clients_limit
            );
            tokio::spawn(shed::report_at(
                Arc::clone(&shared),
                shed::Peer::new(&name, peer, local),
                shed::Attack::ConnectionFlood,
                detail,
            ));
            continue;
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            shared
                .metrics
                .connections_refused
                .with_label_values(&[&name, "limit"])
                .inc();
            tracing::warn!(listener = %name, client = %peer, "max_connections reached: refused");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        shared.metrics.connections.with_label_values(&[&name]).inc();
        shared.metrics.connections_active.inc();
        // The connection slot lives as long as anything serving this client does, including a
        // CONNECT tunnel that outlives the HTTP/1.1 connection it was upgraded from.
        let id = shared.next_conn_id();
        let conn = Arc::new(conn::ConnInfo {
            id,
            index,
            listener: Arc::clone(&name),
            client: peer,
            local,
            _slot: conn::Slot {
                _permit: permit,
                _client: client_slot,
                metrics: Arc::clone(&shared.metrics),
                shared: Arc::downgrade(&shared),
                index,
                id,
            },
        });
        let shared = Arc::clone(&shared);
        match kind {
            config::ListenerKind::Forward => {
                tokio::spawn(forward::serve_client(shared, tcp, conn));
            }
            config::ListenerKind::Reverse => {
                tokio::spawn(reverse::serve_client(shared, tcp, conn));
            }
        }
    }
}

/// The metrics listener: `/metrics` (Prometheus text), `/healthz` (200 while the process
/// serves) and `/readyz` (200 when the node should get traffic, 503 while draining or when a
/// check fails; the body lists each check).
pub(crate) async fn metrics_loop(shared: Arc<Shared>, sock: TcpListener) {
    use hyper::service::service_fn;
    if let Ok(addr) = sock.local_addr() {
        tracing::info!(addr = %addr, "metrics endpoint listening");
    }
    loop {
        let Ok((tcp, _)) = sock.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(answer(&shared, req.uri().path()).await) }
            });
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
            )
            .await;
        });
    }
}

/// One answer of the metrics listener.
async fn answer(shared: &Shared, path: &str) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, ctype, body) = match path {
        "/metrics" => (200, "text/plain; version=0.0.4", shared.metrics.render()),
        "/healthz" => (200, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let (ready, body) = shared.health.readiness(shared).await;
            (if ready { 200 } else { 503 }, "text/plain", body)
        }
        _ => (404, "text/plain", "not found\n".to_string()),
    };
    let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(ctype),
    );
    r
}
