//! Health and readiness (`/healthz`, `/readyz` on the metrics listener) and draining on
//! shutdown: once [`Health::start_drain`] is called, `/readyz` answers 503 so a load balancer
//! takes the node out, and every client connection is asked to finish ([`until_drained!`]):
//! an idle HTTP/1.1 connection closes, a busy one after its response, an h2 one gets GOAWAY.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::shared::Shared;

/// How long `/readyz` waits for its resolver check.
const RESOLVE_WAIT: Duration = Duration::from_secs(2);

/// What `/readyz` checks, and the drain signal.
pub(crate) struct Health {
    drain: watch::Sender<bool>,
    /// Folders the gateway must be able to write: the events file's and the MSS spool.
    writable: Vec<PathBuf>,
    /// `[metrics] readyz_resolve`.
    resolve: Option<String>,
}

/// One readiness check's outcome.
struct Check {
    ok: bool,
    line: String,
}

impl Health {
    /// The checks `cfg` calls for.
    pub(crate) fn new(cfg: &Config) -> Health {
        let mut writable: Vec<PathBuf> = [&cfg.events.file, &cfg.events.comm_log]
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        if let Some(m) = &cfg.mss {
            writable.push(m.spool_dir.clone());
        }
        writable.sort();
        writable.dedup();
        Health {
            drain: watch::channel(false).0,
            writable,
            resolve: cfg.metrics.readyz_resolve.clone(),
        }
    }

    /// Starts draining: readiness fails and every connection is asked to finish.
    pub(crate) fn start_drain(&self) {
        self.drain.send_replace(true);
    }

    /// The drain signal, for [`until_drained!`].
    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Whether the gateway is draining.
    pub(crate) fn draining(&self) -> bool {
        *self.drain.borrow()
    }

    /// `/readyz`: (ready, one line per check).
    pub(crate) async fn readiness(&self, shared: &Shared) -> (bool, String) {
        let mut checks = vec![Check {
            ok: !self.draining(),
            line: if self.draining() {
                "draining: shutting down, finishing connections in flight".into()
            } else {
                "serving: listeners open".into()
            },
        }];
        checks.extend(self.writable.iter().map(|d| write_check(d)));
        if let Some(host) = &self.resolve {
            checks.push(resolve_check(host).await);
        }
        let ready = checks.iter().all(|c| c.ok);
        let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
        for c in checks {
            body.push_str(if c.ok { "ok   " } else { "FAIL " });
            body.push_str(&c.line);
            body.push('\n');
        }
        // What runs, for the operator (not a check: a gateway without its pipelines does not
        // answer at all).
        body.push_str("info ");
        body.push_str(&pipelines(shared));
        body.push('\n');
        (ready, body)
    }
}

/// Each listener's stages in service.
fn pipelines(shared: &Shared) -> String {
    let lines: Vec<String> = (0..shared.pipelines.len())
        .map(|i| {
            let p = shared.pipeline(i);
            format!("#{i}: {}", p.stage_names().join(" "))
        })
        .collect();
    format!("pipelines: {}", lines.join("; "))
}

/// A folder takes a new file (a full or read-only disk fails here).
fn write_check(dir: &Path) -> Check {
    let probe = dir.join(format!(".sekisho-ready-{}", std::process::id()));
    let r = std::fs::write(&probe, b"ready\n");
    let _ = std::fs::remove_file(&probe);
    match r {
        Ok(()) => Check {
            ok: true,
            line: format!("{} writable", dir.display()),
        },
        Err(e) => Check {
            ok: false,
            line: format!("{} not writable: {e}", dir.display()),
        },
    }
}

/// The system resolver (the one upstreams are dialled with) answers for `host`.
async fn resolve_check(host: &str) -> Check {
    let r = tokio::time::timeout(RESOLVE_WAIT, tokio::net::lookup_host((host, 443))).await;
    match r {
        Ok(Ok(addrs)) => Check {
            ok: true,
            line: format!("resolver: {host} has {} addresses", addrs.count()),
        },
        Ok(Err(e)) => Check {
            ok: false,
            line: format!("resolver: {host} did not resolve: {e}"),
        },
        Err(_) => Check {
            ok: false,
            line: format!("resolver: no answer for {host} in {RESOLVE_WAIT:?}"),
        },
    }
}

/// A future that runs a hyper server connection until it ends; once the gateway drains, the
/// connection is asked to finish (its `graceful_shutdown`) and awaited to its end. (A macro, not
/// a generic function: the connection types' bounds defeat the compiler's `Send` proof through
/// a closure.)
macro_rules! until_drained {
    ($shared:expr, $conn:expr) => {
        async {
            let mut drain = $shared.health.subscribe();
            let mut conn = std::pin::pin!($conn);
            tokio::select! {
                out = conn.as_mut() => out,
                _ = async { drop(drain.wait_for(|d| *d).await) } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
}
pub(crate) use until_drained;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_check_fails_on_a_missing_folder() {
        let dir = std::env::temp_dir().join(format!("sekisho-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        assert!(write_check(&dir).ok);
        assert!(dir.read_dir().expect("read").next().is_none(), "probe left");
        let c = write_check(&dir.join("gone"));
        let _ = std::fs::remove_dir(&dir);
        assert!(!c.ok && c.line.contains("not writable"), "{}", c.line);
    }

    #[tokio::test]
    async fn resolve_check_reports_failure() {
        assert!(resolve_check("localhost").await.ok);
        let c = resolve_check("no-such-name.invalid").await;
        assert!(
            !c.ok && c.line.contains("no-such-name.invalid"),
            "{}",
            c.line
        );
    }
}
