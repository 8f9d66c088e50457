//! Reverse-listener fixtures: certificates from the real CLI, and curl with a client
//! certificate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{bin, curl, Curl, Files, TestPki};

/// Runs the real `sekisho` with `args`; it must succeed.
pub fn sekisho(args: &[&str]) {
    let out = Command::new(bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sekisho {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issues a facility's client certificate with the CLI (more `extra` arguments: `--role` …);
/// returns its folder.
pub fn issue_with(ca: &Path, facility: &str, out: &Path, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "ca",
        "issue-client",
        "--ca",
        ca.to_str().unwrap(),
        "--facility",
        facility,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    sekisho(&args);
    out.to_path_buf()
}

/// Issues a facility's client certificate with the CLI; returns its folder.
pub fn issue(ca: &Path, facility: &str, out: &Path) -> PathBuf {
    issue_with(ca, facility, out, &[])
}

/// An origin's files from (path, body) pairs.
pub fn files(pairs: &[(&str, &str)]) -> Files {
    pairs
        .iter()
        .map(|(p, b)| (p.to_string(), (Vec::new(), b.as_bytes().to_vec())))
        .collect()
}

/// Writes a test PKI's server certificate, key and CA as `name.crt`, `name.key`, `name-ca.pem`.
pub fn write_pair(dir: &Path, name: &str, pki: &TestPki) -> (PathBuf, PathBuf, PathBuf) {
    let (c, k, ca) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}-ca.pem")),
    );
    std::fs::write(&c, &pki.cert_pem).unwrap();
    std::fs::write(&k, &pki.key_pem).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    (c, k, ca)
}

/// curl to `https://host<path>` at `port` (resolved to `ip`) with a client certificate; the
/// last output line is `<status> <http version>`.
pub async fn get(
    port: u16,
    ip: &str,
    host: &str,
    path: &str,
    ca: &Path,
    client: Option<&Path>,
    extra: &[&str],
) -> Curl {
    let resolve = format!("{host}:{port}:{ip}");
    let url = format!("https://{host}:{port}{path}");
    let (crt, key) = client
        .map(|c| {
            (
                c.join("client.crt").display().to_string(),
                c.join("client.key").display().to_string(),
            )
        })
        .unwrap_or_default();
    let proto = if extra.contains(&"--http2") {
        "--http2"
    } else {
        "--http1.1"
    };
    let mut args: Vec<&str> = vec![
        proto,
        "--resolve",
        &resolve,
        "--cacert",
        ca.to_str().unwrap(),
        "-w",
        "\n%{http_code} %{http_version}",
    ];
    if client.is_some() {
        args.extend(["--cert", &crt, "--key", &key]);
    }
    args.extend(extra);
    args.push(&url);
    curl(&args).await
}

/// The `<status> <http version>` line of a [`get`].
pub fn status(c: &Curl) -> String {
    c.stdout.lines().last().unwrap_or("").to_string()
}

/// A Python http.server (which unquotes and normalises paths as most servers do) serving `dir`
/// on a free loopback port; killed on drop.
pub struct PyServer(pub std::process::Child, pub u16);

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn python_upstream(dir: &Path) -> PyServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "python http.server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    PyServer(child, port)
}
