//! Running as a service (issue 25) against the real binary: SIGTERM drains (listeners close,
//! /readyz answers 503, flows in flight finish, idle connections close, the drain deadline cuts
//! what is left), /readyz names a check that fails, systemd's notification protocol (READY,
//! WATCHDOG, RELOADING, STOPPING) and the environment's overrides.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `kill -SIG pid`.
fn signal(gw: &Gateway, sig: &str) {
    let pid = gw.child.id().to_string();
    assert!(Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

/// GET `path` of the metrics listener: (status, body); status 0 when it does not answer.
async fn health(gw: &Gateway, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", gw.metrics);
    let c = curl(&["-s", "--max-time", "5", "-w", "\n%{http_code}", &url]).await;
    let (body, code) = c.stdout.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Waits (bounded, 10 s) for the gateway process to end; its exit status.
fn wait_exit(gw: &mut Gateway, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = gw.child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "gateway still running {within:?} after SIGTERM: {}",
            std::fs::read_to_string(&gw.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends one keep-alive request on a new connection to the proxy and reads its answer; the
/// connection stays open and idle.
async fn idle_connection(gw: &Gateway, origin_port: u16) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    let req = format!(
        "GET http://127.0.0.1:{origin_port}/hello HTTP/1.1\r\nHost: 127.0.0.1:{origin_port}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).ends_with("hello") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("answer in time")
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// Starts `path` through the proxy (curl, the status on the last line) and waits (bounded) until
/// the origin has it.
async fn slow_request(gw: &Gateway, origin: &Origin, path: &str) -> tokio::task::JoinHandle<Curl> {
    let url = format!("http://127.0.0.1:{}{path}", origin.port);
    let proxy = gw.proxy_url();
    let slow =
        tokio::spawn(
            async move { curl(&["-s", "-x", &proxy, "-w", "\n%{http_code}", &url]).await },
        );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !origin.seen.lock().unwrap().iter().any(|p| p.contains(path)) {
        assert!(Instant::now() < deadline, "{path} never reached the origin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    slow
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_flows_in_flight_then_stops() {
    let origin = Origin::start(None).await;
    let mut gw = Gateway::start("drain", "", "[limits]\ndrain_timeout_secs = 20\n");
    let (code, body) = health(&gw, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("ready\n"), "{body}");
    assert!(body.contains("ok   resolver: localhost has"), "{body}");
    assert!(body.contains("writable"), "{body}");
    let mut idle = idle_connection(&gw, origin.port).await;
    // A slow request, in flight (the origin saw it) before the signal.
    let slow = slow_request(&gw, &origin, "/sleep/2").await;
    let term_at = Instant::now();
    signal(&gw, "-TERM");
    // Draining: not ready, the listener closed, the idle connection closed by the gateway.
    let mut drained_ready = (0, String::new());
    while term_at.elapsed() < Duration::from_secs(2) {
        drained_ready = health(&gw, "/readyz").await;
        if drained_ready.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(drained_ready.0, 503, "{}", drained_ready.1);
    assert!(
        drained_ready.1.contains("FAIL draining"),
        "{}",
        drained_ready.1
    );
    assert!(
        tokio::net::TcpStream::connect(gw.proxy).await.is_err(),
        "the listener still accepts while draining"
    );
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle keep-alive connection is closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "idle connection got data instead of a close");
    // The request in flight completes; then the process ends cleanly, its flow logged.
    let c = slow.await.unwrap();
    assert!(c.stdout.ends_with("\n200"), "{} {}", c.stdout, c.stderr);
    let status = wait_exit(&mut gw, Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}");
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(log.contains("drained: every connection finished"), "{log}");
    let flows = gw.read_lines("flows.jsonl");
    assert!(
        flows.iter().any(|f| f.to_string().contains("/sleep/2")),
        "{flows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_deadline_cuts_what_is_left() {
    let origin = Origin::start(None).await;
    let mut gw = Gateway::start("drain-deadline", "", "[limits]\ndrain_timeout_secs = 1\n");
    // A slow request, in flight (the origin saw it) before the signal.
    let slow = slow_request(&gw, &origin, "/sleep/30").await;
    signal(&gw, "-TERM");
    // One second of drain, up to seven of event flushing: far before the origin's 30 s.
    let status = wait_exit(&mut gw, Duration::from_secs(12));
    assert!(status.success(), "exit {status:?}");
    let c = slow.await.unwrap();
    assert!(
        !c.stdout.ends_with("\n200"),
        "the cut request completed: {}",
        c.stdout
    );
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(log.contains("drain deadline passed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_folder_it_cannot_write() {
    let probe_dir = TempDir::new("readyz-logs");
    let logs = probe_dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let comm = logs.join("flows.jsonl");
    let comm = comm.to_str().unwrap();
    let listener = "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n";
    let gw = Gateway::start_env("readyz", listener, "", "", &[("SEKISHO_COMM_LOG", comm)]);
    assert_eq!(health(&gw, "/readyz").await.0, 200);
    assert_eq!(health(&gw, "/healthz").await, (200, "ok\n".to_string()));
    let moved = probe_dir.path().join("moved");
    std::fs::rename(&logs, &moved).unwrap();
    let (code, body) = health(&gw, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    let line = format!("FAIL {} not writable", logs.display());
    assert!(body.contains(&line), "{body}");
    // Alive all the same: /healthz is about the process, /readyz about traffic.
    assert_eq!(health(&gw, "/healthz").await.0, 200);
    std::fs::rename(&moved, &logs).unwrap();
    assert_eq!(health(&gw, "/readyz").await.0, 200);
}

/// The notification socket a test plays systemd on.
struct FakeSystemd {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl FakeSystemd {
    fn bind(dir: &std::path::Path) -> (FakeSystemd, String) {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let fake = FakeSystemd {
            sock,
            seen: Vec::new(),
        };
        (fake, path.to_str().unwrap().to_string())
    }

    /// Reads messages until one satisfies `pred` (bounded, 10 s); returns it.
    fn wait(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
        panic!("no {what} notification; got {:#?}", self.seen);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_reload_and_stopping() {
    let sd_dir = TempDir::new("sd-notify");
    let (mut sd, path) = FakeSystemd::bind(sd_dir.path());
    let listener = "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n";
    let env = [
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", "200000"),
        ("SEKISHO_NODE_NAME", "gw-env-7"),
    ];
    let mut gw = Gateway::start_env("sd-notify", listener, "", "", &env);
    let ready = sd.wait("READY", |m| m.starts_with("READY=1"));
    assert!(ready.contains("STATUS=serving on 1 sockets"), "{ready}");
    // Pings at half the period: several within a second.
    let start = Instant::now();
    for _ in 0..3 {
        sd.wait("WATCHDOG", |m| m == "WATCHDOG=1");
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "watchdog pings too slow"
    );
    // A reload that fails: RELOADING, then READY with the reason; the event names this node.
    let cfg_path = gw.dir.path().join("sekisho.toml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    std::fs::write(&cfg_path, format!("{good}\nbogus_key = 1\n")).unwrap();
    signal(&gw, "-HUP");
    let reloading = sd.wait("RELOADING", |m| m.starts_with("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let after = sd.wait("READY after reload", |m| m.starts_with("READY=1"));
    assert!(after.contains("STATUS=reload failed"), "{after}");
    let ev = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "reload-failed");
    assert_eq!(ev["observer"]["node"], "gw-env-7", "{ev}");
    std::fs::write(&cfg_path, good).unwrap();
    signal(&gw, "-HUP");
    sd.wait("RELOADING", |m| m.starts_with("RELOADING=1"));
    let ok = sd.wait("READY after reload", |m| m.starts_with("READY=1"));
    assert!(ok.contains("STATUS=policy reloaded"), "{ok}");
    signal(&gw, "-TERM");
    sd.wait("STOPPING", |m| m.starts_with("STOPPING=1"));
    assert!(wait_exit(&mut gw, Duration::from_secs(10)).success());
}

#[test]
fn a_misspelt_environment_override_is_named_and_a_bad_one_refused() {
    let dir = TempDir::new("env-check");
    let cfg = dir.path().join("sekisho.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nkind = \"forward\"\naddr = \"127.0.0.1:0\"\n[tls]\nca_cert = \"ca.crt\"\nca_key = \"ca.key\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["check-config"])
        .env("SEKISHO_CONFIG", &cfg)
        .env("SEKISHO_METRICS_ADDR", "not-an-address")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SEKISHO_METRICS_ADDR") && err.contains("metrics.addr"),
        "{err}"
    );
    let out = Command::new(bin())
        .args(["check-config"])
        .env("SEKISHO_CONFIG", &cfg)
        .env("SEKISHO_METRICS_ADDR", "127.0.0.1:9191")
        .env("SEKISHO_NODENAME", "typo")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("SEKISHO_NODENAME") && err.contains("not a setting"),
        "{err}"
    );
}

/// The unit file in the repository.
fn unit_text() -> String {
    std::fs::read_to_string(repo().join("deploy/systemd/sekisho.service")).unwrap()
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = TempDir::new("unit");
    // `verify` wants the programs the unit names to exist: this build's binary stands in.
    let unit = unit_text().replace("/usr/local/bin/sekisho", bin());
    let path = dir.path().join("sekisho.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian: systemd)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sekisho.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level: {text}"));
    // systemd's scale: 0 (locked down) to 10 (exposed); "OK" is below 2.
    assert!(score < 2.0, "exposure {score}: {text}");
    for want in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit_text().contains(want), "the unit lost {want:?}");
    }
}

/// The `Environment=` assignments of the unit, with its folders moved under `root`.
fn unit_env(root: &std::path::Path) -> Vec<(String, String)> {
    unit_text()
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), format!("{}{v}", root.display())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundled_config_runs_with_only_the_units_state_folders_writable() {
    let dir = TempDir::new("ro-root");
    let root = dir.path();
    // /etc/sekisho: the repository's config (its listener on a free port) and rules.
    let etc = root.join("etc/sekisho");
    std::fs::create_dir_all(&etc).unwrap();
    let cfg = std::fs::read_to_string(repo().join("sekisho.toml"))
        .unwrap()
        .replace(
            "addr = [\"127.0.0.1:3128\", \"[::1]:3128\"]",
            "addr = \"127.0.0.1:0\"",
        );
    std::fs::write(etc.join("sekisho.toml"), cfg).unwrap();
    let copy = Command::new("cp")
        .arg("-r")
        .arg(repo().join("rules"))
        .arg(&etc)
        .status()
        .unwrap();
    assert!(copy.success());
    let state: Vec<_> = ["var/lib/sekisho", "var/log/sekisho", "var/cache/sekisho"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    // What ProtectSystem=strict with ReadWritePaths does: everything read-only but these.
    let mut cmd = Command::new("bwrap");
    cmd.args([
        "--die-with-parent",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]);
    for d in &state {
        std::fs::create_dir_all(d).unwrap();
        cmd.arg("--bind").arg(d).arg(d);
    }
    cmd.arg("--").arg(bin()).args(["run", "--config"]);
    cmd.arg(etc.join("sekisho.toml"));
    cmd.envs(unit_env(root))
        .env("SEKISHO_METRICS_ADDR", "127.0.0.1:0")
        .stderr(std::fs::File::create(root.join("stderr.log")).unwrap());
    let launched = launch_command(cmd, &root.join("stderr.log"));
    let (proxy, metrics) = (launched.proxy, launched.metrics);
    let _child = ChildGuard(launched.child);
    let origin = Origin::start(None).await;
    // The bundled policy refuses loopback destinations: the block page proves the pipeline
    // judged the request, and the event lands in the unit's log folder.
    let url = format!("http://127.0.0.1:{}/hello", origin.port);
    let c = curl(&[
        "-s",
        "-x",
        &format!("http://{proxy}"),
        "-w",
        "\n%{http_code}",
        &url,
    ])
    .await;
    assert!(c.stdout.ends_with("\n403"), "{} {}", c.stdout, c.stderr);
    let ready = curl(&[
        "-s",
        "-w",
        "\n%{http_code}",
        &format!("http://{metrics}/readyz"),
    ])
    .await;
    assert!(ready.stdout.ends_with("\n200"), "{}", ready.stdout);
    assert!(
        root.join("var/lib/sekisho/ca/ca.key").exists(),
        "CA not made"
    );
    let flows = root.join("var/log/sekisho/flows.jsonl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&flows)
        .unwrap_or_default()
        .contains("/hello")
    {
        assert!(
            Instant::now() < deadline,
            "no flow logged in {}",
            flows.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::fs::read_dir(root.join("var/cache/sekisho/av")).is_ok(),
        "compiled AV rules not cached"
    );
}

/// Kills the child on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
