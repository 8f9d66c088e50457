//! The hand-off to the sandbox worker (`sekisho sandbox serve`): a body the signatures pass
//! that is a program or script the sandbox runs (by content) is submitted to the worker's API
//! and the flow is held until its verdict or `hold_timeout_secs`. Malicious blocks,
//! suspicious alerts; a verdict that does not come in time, or a worker that cannot answer,
//! is an `uninspected` event that blocks or delivers by `on_timeout`.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read from the worker (a report with its evidence).
const MAX_ANSWER: u64 = 8 << 20;
/// How often a held task is asked about.
const POLL: Duration = Duration::from_millis(200);

/// What a verdict that does not come in time (or a worker that fails) does to the flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Deliver the file, with an event.
    #[default]
    Alert,
    /// Refuse it.
    Block,
}

/// `[av.sandbox]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// The worker's API, `http://host:port` or `https://host:port`.
    pub url: String,
    /// For `https://`: the CA certificate(s) (PEM) the worker's certificate must chain to
    /// (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// A file holding the worker's token, sent as `Authorization: Bearer TOKEN`.
    pub token_file: Option<std::path::PathBuf>,
    /// How long a flow is held for a verdict (default 30 s: longer than the worker's own
    /// deadline per detonation, 20 s by default, so a sample that runs until it is stopped
    /// still gets its verdict in time).
    #[serde(default = "d_hold")]
    pub hold_timeout_secs: u64,
    /// `alert` (deliver and alert; default) or `block`, when no verdict came in time.
    #[serde(default)]
    pub on_timeout: OnTimeout,
    /// Per file type (`elf`, `sh`, `bash`, `python`, `perl`), overriding `on_timeout`.
    #[serde(default)]
    pub on_timeout_by_type: std::collections::BTreeMap<String, OnTimeout>,
    /// The file types submitted (default: all five).
    #[serde(default = "d_types")]
    pub types: Vec<String>,
    /// Larger bodies are not submitted (default 32 MiB, the worker's own default).
    #[serde(default = "d_max")]
    pub max_file_bytes: u64,
}

fn d_hold() -> u64 {
    30
}
fn d_types() -> Vec<String> {
    ["elf", "sh", "bash", "python", "perl"]
        .map(String::from)
        .to_vec()
}
fn d_max() -> u64 {
    32 << 20
}

impl SandboxConfig {
    /// Checks values; returns `key: problem`.
    pub fn validate(&self) -> Result<(), String> {
        endpoint(&self.url).map(|_| ())?;
        if self.hold_timeout_secs == 0 {
            return Err("av.sandbox.hold_timeout_secs: must be at least 1".into());
        }
        let known = d_types();
        for t in self.types.iter().chain(self.on_timeout_by_type.keys()) {
            if !known.contains(t) {
                return Err(format!(
                    "av.sandbox: unknown file type {t:?}; known: {}",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// What a missing verdict does to a file of `file_type`.
    pub fn on_timeout_for(&self, file_type: &str) -> OnTimeout {
        self.on_timeout_by_type
            .get(file_type)
            .copied()
            .unwrap_or(self.on_timeout)
    }
}

/// `http(s)://host:port` → (whether TLS, `host:port`, the path prefix).
fn endpoint(url: &str) -> Result<(bool, String, String), String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => {
            return Err(format!(
                "av.sandbox.url: {url:?}: http://host:port or https://host:port expected"
            ))
        }
    };
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if auth.is_empty() || !auth.contains(':') {
        return Err(format!("av.sandbox.url: {url:?}: give host:port"));
    }
    Ok((tls, auth.to_string(), path.to_string()))
}

/// The worker's token from `p`: at least 16 printable characters, and never sent in the
/// clear except to this host.
fn read_token(p: &std::path::Path, tls: bool, authority: &str) -> Result<String, String> {
    let err = |why: String| format!("av.sandbox.token_file: {}: {why}", p.display());
    let t = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
    let t = t.trim().to_string();
    if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "the token must be at least 16 printable characters".into()
        ));
    }
    let local = authority.starts_with("127.")
        || authority.starts_with("[::1]")
        || authority.starts_with("localhost:");
    if !tls && !local {
        return Err(err(format!(
            "the token would cross the network in the clear to {authority}: use https://"
        )));
    }
    Ok(t)
}

/// The TLS client for an `https://` worker at `authority`: its name, and the roots it trusts.
fn tls_client(
    authority: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<
    (
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    ),
    String,
> {
    use rustls_pki_types::pem::PemObject;
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("av.sandbox.url: {host:?}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            for c in rustls_pki_types::CertificateDer::pem_file_iter(p)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("av.sandbox.ca_file: {}: {e}", p.display()))?
            {
                roots
                    .add(c)
                    .map_err(|e| format!("av.sandbox.ca_file: {}: {e}", p.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        name,
    ))
}

/// What the worker said about a file.
#[derive(Debug)]
pub enum Judged {
    /// Its report (the worker's JSON).
    Report(serde_json::Value),
    /// No verdict by the hold deadline (the task may still finish).
    Timeout(String),
    /// No verdict by the hold deadline for a task the worker has: it can be followed.
    Pending {
        /// Why there is no verdict.
        why: String,
        /// The worker's task id.
        task: String,
    },
    /// The worker could not be asked or answered with an error.
    Failed(String),
}

/// Most tasks followed for a late verdict at once (past it a task is not followed).
const FOLLOWED: usize = 256;
/// How long a task is followed after its flow stopped waiting.
const FOLLOW_FOR: Duration = Duration::from_secs(600);
/// How often a followed task is asked about.
const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// How long a followed task's worker may stay out of reach (refused connections, no answer)
/// before the follow is given up as lost (a restarting worker is waited for).
const FOLLOW_UNREACHABLE: Duration = Duration::from_secs(60);

/// The worker's client.
#[derive(Clone)]
pub struct SandboxClient {
    /// The settings.
    pub config: SandboxConfig,
    addr: String,
    prefix: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    token: Option<String>,
    following: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for SandboxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        f.debug_struct("SandboxClient")
            .field("url", &self.config.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl SandboxClient {
    /// A client for `config` (validated).
    pub fn new(config: SandboxConfig) -> Result<SandboxClient, String> {
        config.validate()?;
        let (tls, addr, prefix) = endpoint(&config.url)?;
        let tls = match tls {
            true => Some(tls_client(&addr, config.ca_file.as_deref())?),
            false => None,
        };
        let token = match &config.token_file {
            Some(p) => Some(read_token(p, tls.is_some(), &addr)?),
            None => None,
        };
        Ok(SandboxClient {
            config,
            addr,
            prefix,
            tls,
            token,
            following: std::sync::Arc::new(tokio::sync::Semaphore::new(FOLLOWED)),
        })
    }

    /// The file type the sandbox would run `data` as, when it is one submitted (whatever
    /// its size: see [`Self::too_large`]).
    pub fn eligible(&self, data: &[u8]) -> Option<&'static str> {
        let t = sekisho_sandbox::sniff::runner(data)?.name();
        self.config.types.iter().any(|x| x == t).then_some(t)
    }

    /// Whether files the sandbox runs as `kind` (`elf`, `sh`, …) are submitted (`types`).
    pub fn wants(&self, kind: &str) -> bool {
        self.config.types.iter().any(|x| x == kind)
    }

    /// Whether `data` is over `max_file_bytes` (not submitted: an `uninspected` event).
    pub fn too_large(&self, data: &[u8]) -> bool {
        data.len() as u64 > self.config.max_file_bytes
    }

    /// Submits `data` and waits for its report, at most `budget` (and the hold timeout).
    pub async fn judge(&self, data: &[u8], budget: Duration) -> Judged {
        let budget = budget.min(Duration::from_secs(self.config.hold_timeout_secs));
        let deadline = Instant::now() + budget;
        let path = format!("{}/tasks", self.prefix);
        let answer = match self.call("POST", &path, data, deadline).await {
            Ok(a) => a,
            Err(e) => return e,
        };
        let id = match answer {
            (200, v) if v["status"] == "done" => return Judged::Report(v["report"].clone()),
            (202, v) => match v["task"].as_str() {
                Some(id) => id.to_string(),
                None => return Judged::Failed("the worker gave no task id".into()),
            },
            (status, v) => return Judged::Failed(format!("the worker answered {status}: {v}")),
        };
        loop {
            if Instant::now() + POLL >= deadline {
                return Judged::Pending {
                    why: format!("no verdict within {budget:?} (task {id})"),
                    task: id,
                };
            }
            tokio::time::sleep(POLL).await;
            let path = format!("{}/tasks/{id}", self.prefix);
            match self.call("GET", &path, &[], deadline).await {
                Ok((200, v)) if v["status"] == "done" => {
                    return Judged::Report(v["report"].clone())
                }
                Ok((200, v)) if v["status"] == "failed" => {
                    return Judged::Failed(format!("the detonation failed: {}", v["error"]))
                }
                Ok((200, v)) if v["status"] == "queued" || v["status"] == "running" => {}
                Ok((200, v)) => {
                    return Judged::Failed(format!("the worker answered an unknown state: {v}"))
                }
                Ok((status, v)) => {
                    return Judged::Failed(format!("the worker answered {status}: {v}"))
                }
                Err(e) => return e,
            }
        }
    }

    /// Follows `task` after its flow stopped waiting (every second, up to ten minutes) and hands
    /// `then` its report once it is done, or why none will come: the detonation failed, the
    /// worker no longer knows the task (it restarted), it stayed out of reach (or answered
    /// 5xx) for a minute, ten minutes passed, or 256 tasks are followed already (then at
    /// once). A worker out of reach for less is asked again. `then` is called exactly once.
    pub fn follow(
        &self,
        task: String,
        then: impl FnOnce(Result<serde_json::Value, String>) + Send + 'static,
    ) {
        let Ok(permit) = self.following.clone().try_acquire_owned() else {
            then(Err(format!(
                "{FOLLOWED} tasks are followed already; task {task} is not"
            )));
            return;
        };
        let client = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            then(client.follow_until_done(&task).await);
        });
    }

    async fn follow_until_done(&self, task: &str) -> Result<serde_json::Value, String> {
        let end = Instant::now() + FOLLOW_FOR;
        let path = format!("{}/tasks/{task}", self.prefix);
        let mut unreachable_since: Option<Instant> = None;
        loop {
            if Instant::now() >= end {
                return Err(format!("no verdict for task {task} within {FOLLOW_FOR:?}"));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let answer = match self.call("GET", &path, &[], deadline).await {
                // A worker (or a proxy before it) that is restarting or overloaded answers
                // 5xx: asked again, as one out of reach.
                Ok((status, v)) if status >= 500 => Err(format!("it answered {status}: {v}")),
                Ok(answer) => Ok(answer),
                Err(Judged::Failed(why) | Judged::Timeout(why)) => Err(why),
                Err(other) => return Err(format!("{other:?}")),
            };
            let (status, v) = match answer {
                Ok(answer) => answer,
                Err(why) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= FOLLOW_UNREACHABLE {
                        return Err(format!(
                            "the worker was out of reach for {FOLLOW_UNREACHABLE:?} (task {task}): {why}"
                        ));
                    }
                    continue;
                }
            };
            unreachable_since = None;
            match (status, v["status"].as_str()) {
                (200, Some("done")) => return Ok(v["report"].clone()),
                (200, Some("queued" | "running")) => {}
                (200, Some("failed")) => {
                    return Err(format!(
                        "the detonation of task {task} failed: {}",
                        v["error"]
                    ))
                }
                (404, _) => {
                    return Err(format!(
                        "the worker no longer knows task {task} (restarted?)"
                    ))
                }
                _ => return Err(format!("the worker answered {status} for task {task}: {v}")),
            }
        }
    }

    /// One request (`Connection: close`), its status and JSON body, by `deadline`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<(u16, serde_json::Value), Judged> {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.exchange(method, path, body)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(Judged::Failed(format!("{}: {e}", self.config.url))),
            Err(_) => Err(Judged::Timeout(format!(
                "{} did not answer in time",
                self.config.url
            ))),
        }
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, serde_json::Value)> {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await?;
        let auth = match &self.token {
            Some(t) => format!("Authorization: Bearer {t}\r\n"),
            None => String::new(),
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{auth}\
             Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        let answer = match &self.tls {
            None => ask(tcp, head.as_bytes(), body).await?,
            Some((connector, name)) => {
                let s = connector.connect(name.clone(), tcp).await?;
                ask(s, head.as_bytes(), body).await?
            }
        };
        let bad =
            |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of the answer's head"))?;
        let head = String::from_utf8_lossy(&answer[..end]);
        let status: u16 = head
            .split_ascii_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status"))?;
        if answer.len() as u64 > MAX_ANSWER {
            return Err(bad("the answer is over 8 MiB"));
        }
        let got = answer.len() - (end + 4);
        if let Some(want) = content_length(&head) {
            // A connection cut before the end (TLS without close_notify included) is not
            // read as a whole answer.
            if want != got as u64 {
                return Err(bad(&format!(
                    "the answer was cut short: {got} of {want} bytes"
                )));
            }
        }
        let json = serde_json::from_slice(&answer[end + 4..])
            .map_err(|e| bad(&format!("the answer is not JSON: {e}")))?;
        Ok((status, json))
    }
}

/// The `Content-Length` of an answer's head, when it has one.
fn content_length(head: &str) -> Option<u64> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// Writes a request and reads the whole answer (at most [`MAX_ANSWER`] and one byte): the
/// worker closes the connection after it (a TLS peer that ends without close_notify after a
/// whole answer is read as ended).
async fn ask<S>(mut s: S, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(head).await?;
    s.write_all(body).await?;
    s.flush().await?;
    let mut answer = Vec::new();
    match (&mut s).take(MAX_ANSWER + 1).read_to_end(&mut answer).await {
        Ok(_) => Ok(answer),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => Ok(answer),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<SandboxClient, String> {
        let c: SandboxConfig = toml::from_str(&format!("url = \"http://127.0.0.1:8470\"\n{extra}"))
            .map_err(|e| e.to_string())?;
        SandboxClient::new(c)
    }

    #[test]
    fn settings_and_eligible_files() {
        let c =
            config("types = [\"elf\", \"sh\"]\non_timeout_by_type = { elf = \"block\" }").unwrap();
        assert_eq!(c.eligible(b"#!/bin/sh\nid\n"), Some("sh"));
        assert_eq!(
            c.eligible(b"#!/usr/bin/perl\n"),
            None,
            "not a type submitted"
        );
        assert_eq!(c.eligible(b"%PDF-1.7"), None);
        assert_eq!(c.config.on_timeout_for("elf"), OnTimeout::Block);
        assert_eq!(c.config.on_timeout_for("sh"), OnTimeout::Alert);
        assert!(config("types = [\"exe\"]").is_err());
        assert!(config("hold_timeout_secs = 0").is_err());
        assert_eq!(config("").unwrap().config.hold_timeout_secs, 30);
        assert_eq!(
            content_length("HTTP/1.1 200 OK\r\ncontent-length: 12"),
            Some(12)
        );
        assert_eq!(content_length("HTTP/1.1 200 OK\r\nX: y"), None);
        let dir = std::env::temp_dir().join(format!("sekisho-av-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
        let with = |url: &str| {
            SandboxClient::new(SandboxConfig {
                url: url.into(),
                token_file: Some(token.clone()),
                ..config("").unwrap().config
            })
        };
        assert!(
            with("http://127.0.0.1:8470").is_ok(),
            "loopback in the clear"
        );
        let clear = with("http://10.0.0.5:8470").unwrap_err();
        assert!(clear.contains("in the clear"), "{clear}");
        std::fs::write(&token, "short\n").unwrap();
        assert!(with("http://127.0.0.1:8470").is_err(), "too short");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(SandboxClient::new(SandboxConfig {
            url: "ftp://x:1".into(),
            ..config("").unwrap().config
        })
        .is_err());
    }
}
