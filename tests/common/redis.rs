//! A `redis-server` (Debian's redis-server) for one test, on a free loopback port, killed on
//! drop: included by path by the tests and benches of the shared store, the cluster test and
//! the sandbox workers' test.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server and its port.
pub struct Redis {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl Redis {
    /// A server on a free port, or `None` with a SKIPPED line naming `who` when redis-server is
    /// not installed and SEKISHO_REQUIRE_REDIS is not set (then it panics).
    pub fn start(who: &str) -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        Redis::on(port, who)
    }

    /// A server on `port` (one started again where its clients know it).
    pub fn on(port: u16, who: &str) -> Option<Redis> {
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if std::env::var_os("SEKISHO_REQUIRE_REDIS").is_some() => {
                panic!("{who}: redis-server is required (SEKISHO_REQUIRE_REDIS): {e}")
            }
            Err(_) => {
                eprintln!("SKIPPED {who}: redis-server not installed (Debian: redis-server)");
                return None;
            }
        };
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{who}: redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }

    /// `kill SIG` to the server (`-STOP`, `-CONT`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
