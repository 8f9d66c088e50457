//! systemd's readiness protocol (sd_notify(3)) for `Type=notify` units: `READY=1` once every
//! socket is bound, `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` when draining
//! starts, `STATUS=` lines, and `WATCHDOG=1` at half of `WATCHDOG_USEC` from a task on the
//! gateway's runtime (a runtime that stops scheduling stops the pings, and systemd restarts it).
//! Without `NOTIFY_SOCKET` in the environment nothing is sent.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The socket `NOTIFY_SOCKET` names (a path, or `@name` in the abstract namespace); `None`
    /// when the variable is absent or unusable (logged).
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy().into_owned();
        match Notifier::open(&name) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(socket = %name, error = %e, "NOTIFY_SOCKET unusable: systemd will not hear readiness");
                None
            }
        }
    }

    fn open(name: &str) -> std::io::Result<Notifier> {
        let addr = match name.strip_prefix('@') {
            Some(abs) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abs.as_bytes())?
            }
            None => SocketAddr::from_pathname(name)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.set_write_timeout(Some(Duration::from_secs(1)))?;
        Ok(Notifier { sock, addr })
    }

    /// Sends one message (newline-separated assignments); failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        if let Err(e) = self.sock.send_to_addr(msg.as_bytes(), &self.addr) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }

    /// `RELOADING=1` with the monotonic time systemd 253's `Type=notify-reload` asks for.
    pub fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }
}

/// Half the watchdog period systemd set for this process (`WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `every` for as long as the runtime runs it.
pub async fn watchdog(n: std::sync::Arc<Notifier>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        n.send("WATCHDOG=1");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("sekisho-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier::open(path.to_str().expect("utf-8")).expect("open");
        n.send("READY=1");
        n.reloading();
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        let len = rx.recv(&mut buf).expect("recv");
        let text = String::from_utf8_lossy(&buf[..len]);
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn abstract_names_are_accepted() {
        let name = format!("sekisho-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        let n = Notifier::open(&format!("@{name}")).expect("open");
        n.send("STOPPING=1");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
