//! `sekisho run` as a service: builds the gateway, prints its addresses, reloads on SIGHUP,
//! drains on SIGTERM/SIGINT, and tells systemd each step ([`crate::notify`]).

use std::path::PathBuf;
use std::sync::Arc;

use sekisho_assembly::{Assembly, GatewayConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::notify::{self, Notifier};

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn run(assembly: Assembly, cfg: GatewayConfig, path: PathBuf) -> anyhow::Result<()> {
    crate::raise_nofile(&cfg);
    let proxy_cfg = cfg.proxy.clone();
    let (gw, reloader) = Arc::new(assembly)
        .gateway_after(cfg, move || crate::ensure_ca(&proxy_cfg))
        .await?;
    // SIGHUP is caught before the gateway says it serves: a reload sent the moment it is
    // up (a deployment's `systemctl reload` right after start) must not kill it.
    let hup = signal(SignalKind::hangup()).ok();
    let (addrs, metrics) = gw.local_addrs();
    for (name, a) in &addrs {
        println!("listening {name} {a}");
    }
    if let Some(m) = metrics {
        println!("metrics http://{m}/metrics");
    }
    let notifier = Notifier::from_env().map(Arc::new);
    if let Some(n) = &notifier {
        n.send(&format!(
            "READY=1\nSTATUS=serving on {} sockets",
            addrs.len()
        ));
        if let Some(every) = notify::watchdog_interval() {
            tokio::spawn(notify::watchdog(Arc::clone(n), every));
        }
    }
    if let Some(hup) = hup {
        tokio::spawn(reload_on_hup(hup, reloader, path, notifier.clone()));
    }
    let shutdown = async move {
        stop_signal().await;
        tracing::info!("shutting down: draining");
        if let Some(n) = &notifier {
            n.send("STOPPING=1\nSTATUS=draining connections in flight");
        }
    };
    gw.run(shutdown).await?;
    Ok(())
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Reloads the config file on each SIGHUP (off the async workers: engines compile rules).
async fn reload_on_hup(
    mut hup: tokio::signal::unix::Signal,
    reloader: sekisho_assembly::Reloader,
    path: PathBuf,
    notifier: Option<Arc<Notifier>>,
) {
    while hup.recv().await.is_some() {
        if let Some(n) = &notifier {
            n.reloading();
        }
        let (r, p) = (reloader.clone(), path.clone());
        let result = tokio::task::spawn_blocking(move || r.reload_file(&p))
            .await
            .unwrap_or_else(|e| {
                Err(sekisho_proxy::ProxyError::io(
                    "reload task",
                    std::io::Error::other(e),
                ))
            });
        let status = match result {
            Ok(()) => {
                tracing::info!(config = %path.display(), "policy reloaded");
                "STATUS=policy reloaded".to_string()
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the running policy stays");
                format!("STATUS=reload failed, the running policy stays: {e}")
            }
        };
        if let Some(n) = &notifier {
            n.send(&format!("READY=1\n{status}"));
        }
    }
}
