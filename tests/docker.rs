//! The container images and the compose stack (docker/): a base image made here with
//! mmdebstrap + `docker import` (no registry image can be pulled on these machines), the
//! gateway, sandbox-worker and demo-origin images built from docker/Dockerfile with this build's
//! binary (`--target prebuilt`, `sandbox-prebuilt`), `docker-compose up`, and traffic through
//! the published proxy port: a page from the demo origin, a blocked host, an EICAR upload whose
//! event reaches the MSS collector container through the gateway's spool, a script held for
//! the sandbox container's verdict and refused. Also checked: the
//! HEALTHCHECK turns healthy, the gateway runs as its own user on a read-only root, and a
//! SIGTERM (`docker-compose stop`) drains and exits 0.
//!
//! Needs the Docker engine (Debian docker.io with a running dockerd), docker-compose and
//! mmdebstrap; without them the test says SKIPPED, unless SEKISHO_REQUIRE_DOCKER is set
//! (scripts/test.sh sets it when it could start the engine).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The imported base image (kept between runs: it only changes with the suite).
const BASE: &str = "sekisho-test/base:bookworm-1";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn docker_ready() -> bool {
    let engine = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let tools = ["docker-compose", "mmdebstrap"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if engine && tools {
        return true;
    }
    if std::env::var_os("SEKISHO_REQUIRE_DOCKER").is_some() {
        panic!("SEKISHO_REQUIRE_DOCKER is set but docker (engine {engine}), docker-compose or mmdebstrap is missing");
    }
    eprintln!("SKIPPED docker: needs a running Docker engine, docker-compose and mmdebstrap");
    false
}

/// The base image: Debian minbase with what the images would otherwise install from the
/// network (libmagic1, ca-certificates; busybox for the demo origin; the sandbox's tools).
fn base_image() {
    let have = Command::new("docker")
        .args(["image", "inspect", BASE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if have {
        return;
    }
    let dir = TempDir::new("docker-base");
    let tar = dir.path().join("base.tar");
    run(Command::new("mmdebstrap")
        .args(["--variant=minbase", "--quiet"])
        .arg("--include=ca-certificates,libmagic1,busybox,bubblewrap,strace,iproute2")
        .arg("bookworm")
        .arg(&tar));
    run(Command::new("docker").args(["import"]).arg(&tar).arg(BASE));
}

/// A build context like the repository's: docker/, rules/ and the binary (debug info
/// stripped) as dist/sekisho.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(ctx.join("dist")).unwrap();
    run(Command::new("cp")
        .args(["-r"])
        .arg(repo().join("docker"))
        .arg(repo().join("rules"))
        .arg(&ctx));
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(ctx.join("dist/sekisho"))
        .arg(bin()));
    ctx
}

fn build(ctx: &Path, target: &str, tag: &str) {
    run(Command::new("docker")
        .args(["build", "-q", "-f"])
        .arg(ctx.join("docker/Dockerfile"))
        .args(["--target", target, "-t", tag])
        .args(["--build-arg", &format!("RUNTIME_IMAGE={BASE}")])
        .args(["--build-arg", "SEKISHO_BINARY=dist/sekisho"])
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0"));
}

/// docker-compose for this run's project; `down -v` and the images removed on drop.
struct Stack {
    project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
    images: Vec<String>,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker-compose");
        c.args(["-p", &self.project, "-f"])
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn container(&self, service: &str) -> String {
        let out = run(&mut self.compose(&["ps", "-q", service]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn exec(&self, service: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", "-T", service];
        all.extend_from_slice(args);
        self.compose(&all).output().unwrap()
    }

    fn inspect(&self, service: &str, format: &str) -> String {
        let out = run(Command::new("docker")
            .args(["inspect", "-f", format])
            .arg(self.container(service)));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(out) = self
                .compose(&["logs", "--no-color", "--tail", "60"])
                .output()
            {
                eprintln!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        let _ = self
            .compose(&["down", "-v", "--timeout", "5"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for i in &self.images {
            let _ = Command::new("docker")
                .args(["rmi", "-f", i])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn eventually(what: &str, secs: u64, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_compose_stack_serve_and_log_end_to_end() {
    if !docker_ready() {
        return;
    }
    base_image();
    let dir = TempDir::new("docker");
    let ctx = context(dir.path());
    let id = std::process::id();
    let tags = [
        ("prebuilt", format!("sekisho-test/gateway:{id}")),
        ("sandbox-prebuilt", format!("sekisho-test/sandbox:{id}")),
        ("demo-origin", format!("sekisho-test/origin:{id}")),
    ];
    for (target, tag) in &tags {
        build(&ctx, target, tag);
    }
    let (proxy_port, metrics_port) = (free_port(), free_port());
    let stack = Stack {
        project: format!("sekishotest{id}"),
        file: ctx.join("docker/compose.yaml"),
        env: vec![
            ("SEKISHO_IMAGE".into(), tags[0].1.clone()),
            ("SEKISHO_SANDBOX_IMAGE".into(), tags[1].1.clone()),
            ("SEKISHO_ORIGIN_IMAGE".into(), tags[2].1.clone()),
            ("SEKISHO_PROXY_PORT".into(), proxy_port.to_string()),
            ("SEKISHO_METRICS_PORT".into(), metrics_port.to_string()),
        ],
        images: tags.iter().map(|(_, t)| t.clone()).collect(),
    };
    run(&mut stack.compose(&["up", "-d"]));
    eventually("the gateway's HEALTHCHECK turns healthy", 90, || {
        stack.inspect("gateway", "{{.State.Health.Status}}") == "healthy"
    });
    eventually("the sandbox worker's HEALTHCHECK turns healthy", 60, || {
        stack.inspect("sandbox", "{{.State.Health.Status}}") == "healthy"
    });
    // Hardening as compose.yaml asks: own user, read-only root, no capabilities.
    assert_eq!(
        stack.inspect("gateway", "{{.HostConfig.ReadonlyRootfs}}"),
        "true"
    );
    assert_eq!(stack.inspect("gateway", "{{.Config.User}}"), "sekisho");
    let uid = stack.exec("gateway", &["id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&uid.stdout).trim(), "10001");
    let touch = stack.exec("gateway", &["touch", "/etc/sekisho/x"]);
    assert!(!touch.status.success(), "the root filesystem is read-only");

    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let r = curl(&["-x", &proxy, "http://origin:8080/"]).await;
    assert_eq!(
        r.stdout.trim(),
        "hello from the demo origin",
        "{}",
        r.stderr
    );
    let r = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &proxy,
        "http://blocked.example/",
    ])
    .await;
    assert_eq!(r.stdout, "403");
    let upload = |name: &str, body: &[u8]| {
        let file = dir.path().join(name);
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let proxy = proxy.clone();
        async move {
            let args = ["-o", "/dev/null", "-w", "%{http_code}", "-x", &proxy];
            let url = "http://origin:8080/upload";
            curl(&[&args[..], &["--data-binary", &data, url]].concat())
                .await
                .stdout
        }
    };
    assert_eq!(
        upload("eicar.com", &eicar()).await,
        "403",
        "EICAR upload blocked"
    );
    // A script the signatures pass is held for the sandbox container's verdict: it reads the
    // password hashes and plants a cron job, so the upload is refused.
    let script = b"#!/bin/sh\ncat /etc/shadow\necho '* * * * * x' > /etc/cron.d/y\n";
    assert_eq!(
        upload("steal.sh", script).await,
        "403",
        "the sandbox worker's verdict blocks the script"
    );
    let r = curl(&[&format!("http://127.0.0.1:{metrics_port}/readyz")]).await;
    assert!(r.stdout.starts_with("ready"), "{}", r.stdout);

    // The events reach the collector container through the gateway's spool.
    eventually("the EICAR event reaches the MSS collector", 30, || {
        let out = stack.exec("collector", &["cat", "/var/log/sekisho/mss/syslog.log"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.contains("Eicar") || text.contains("EICAR")
    });
    let events = stack.exec("gateway", &["cat", "/var/log/sekisho/events.jsonl"]);
    let events = String::from_utf8_lossy(&events.stdout).into_owned();
    assert!(
        events.contains("\"node\":\"gw-compose-1\""),
        "SEKISHO_NODE_NAME applied: {events}"
    );
    assert!(events.contains("blocked.example"), "{events}");
    assert!(events.contains("Sandbox.Malicious"), "{events}");

    // SIGTERM drains and exits 0 (stop_grace_period leaves room for the drain).
    run(&mut stack.compose(&["stop", "-t", "40", "gateway"]));
    assert_eq!(stack.inspect("gateway", "{{.State.ExitCode}}"), "0");
}
