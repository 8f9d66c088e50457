//! `[mss]` and `[[mss.sink]]`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::encode::Format;
use crate::mask::MaskConfig;

/// `[mss]`: where threat events and communication logs go besides the local files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MssConfig {
    /// The disk spool: one folder per network sink, with `threat/` and `flow/` inside.
    pub spool_dir: PathBuf,
    /// Bytes each spool (per sink, per class) may hold (default 1 GiB).
    #[serde(default = "d_spool_max")]
    pub spool_max_bytes: u64,
    /// Bytes per spool segment file (default 16 MiB).
    #[serde(default = "d_segment")]
    pub segment_bytes: u64,
    /// 0 (default): fsync every batch before sending it; N: at most one fsync per N ms.
    #[serde(default)]
    pub fsync_interval_ms: u64,
    /// Events held in memory ahead of each sink (default 65,536).
    #[serde(default = "d_queue")]
    pub queue: usize,
    /// Events per write or HTTP request (default 1,000).
    #[serde(default = "d_batch")]
    pub batch: usize,
    /// Syslog: records written this long ago on a connection still alive count as delivered
    /// (default 500 ms).
    #[serde(default = "d_ack_delay")]
    pub ack_delay_ms: u64,
    /// Reconnect backoff: first delay (default 200 ms), doubled up to `backoff_max_ms` (default
    /// 30 s), each with jitter (a random delay between half and all of it).
    #[serde(default = "d_backoff_min")]
    pub backoff_min_ms: u64,
    /// See `backoff_min_ms`.
    #[serde(default = "d_backoff_max")]
    pub backoff_max_ms: u64,
    /// Connect, write and HTTP response timeout (default 10 s).
    #[serde(default = "d_timeout")]
    pub timeout_secs: u64,
    /// Syslog facility (default 13, log audit).
    #[serde(default = "d_facility")]
    pub facility: u8,
    /// The key for masking (and keyed chains): at least 16 bytes; created (32 random bytes, mode
    /// 0600) when missing. Default `<spool_dir>/mss.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Chain file-sink lines with HMAC-SHA-256 under the key instead of SHA-256 (verifying then
    /// needs `--key`).
    #[serde(default)]
    pub keyed_chain: bool,
    /// Masking (`[mss.mask]`).
    #[serde(default)]
    pub mask: MaskConfig,
    /// Sinks (`[[mss.sink]]`).
    #[serde(default, rename = "sink")]
    pub sinks: Vec<SinkConfig>,
}

fn d_spool_max() -> u64 {
    1 << 30
}
fn d_segment() -> u64 {
    16 << 20
}
fn d_queue() -> usize {
    65_536
}
fn d_batch() -> usize {
    1000
}
fn d_ack_delay() -> u64 {
    500
}
fn d_backoff_min() -> u64 {
    200
}
fn d_backoff_max() -> u64 {
    30_000
}
fn d_timeout() -> u64 {
    10
}
fn d_facility() -> u8 {
    13
}
fn d_rotate_bytes() -> u64 {
    100 << 20
}
fn d_rotate_secs() -> u64 {
    86_400
}
fn d_keep() -> usize {
    30
}
fn d_logs() -> Vec<LogClass> {
    vec![LogClass::Threat, LogClass::Flow]
}

/// `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines in a local file, chained and rotated.
    File,
    /// Syslog (RFC 5424, octet counting) over TCP or TLS (RFC 5425).
    Syslog,
    /// HTTP(S) JSON batches (Splunk HEC envelope); a 2xx acknowledges the batch.
    Http,
    /// Kafka (builds with the cargo feature `kafka`): `addr` lists the brokers, `topic` names
    /// the topic; a batch is acknowledged when every record's delivery report succeeds.
    Kafka,
}

/// `transport`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Tcp,
    /// TLS with server verification.
    Tls,
}

/// What a sink receives (`logs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogClass {
    /// Threat events (and `log_loss` events).
    Threat,
    /// Communication-log lines.
    Flow,
}

impl LogClass {
    /// `threat` or `flow`.
    pub fn name(self) -> &'static str {
        match self {
            LogClass::Threat => "threat",
            LogClass::Flow => "flow",
        }
    }
}

/// A secret string: `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `[[mss.sink]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Name in metrics, logs and the spool folder (default `<kind>-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `file`, `syslog` or `http`.
    pub kind: SinkKind,
    /// `host:port` (syslog; http without `url`).
    #[serde(default)]
    pub addr: Option<String>,
    /// The file (file sinks).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The collector URL (http), e.g. `https://siem:8088/services/collector/event`.
    #[serde(default)]
    pub url: Option<String>,
    /// Kafka topic (default `sekisho`).
    #[serde(default)]
    pub topic: Option<String>,
    /// `tcp` (default) or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// `json`, `cef` or `rfc5424-json` (default: `rfc5424-json` for syslog, `json` otherwise).
    #[serde(default)]
    pub format: Option<Format>,
    /// PEM bundle the collector's certificate must chain to (default: the system store).
    /// Also accepted as `ca_file`, `ca_cert` or `tls_ca`.
    #[serde(default, alias = "ca_file", alias = "ca_cert", alias = "tls_ca")]
    pub ca: Option<PathBuf>,
    /// Name to verify in the collector's certificate (default: the host of `addr`/`url`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// Client certificate (PEM chain) for mutual TLS (also `cert`).
    #[serde(default, alias = "cert")]
    pub client_cert: Option<PathBuf>,
    /// Its key (also `key`).
    #[serde(default, alias = "key")]
    pub client_key: Option<PathBuf>,
    /// HTTP: sent as `Authorization: Splunk <token>` (never logged).
    #[serde(default)]
    pub token: Option<Secret>,
    /// File: rotate at this size (default 100 MiB).
    #[serde(default = "d_rotate_bytes")]
    pub rotate_bytes: u64,
    /// File: rotate at this age (default 86,400 s).
    #[serde(default = "d_rotate_secs")]
    pub rotate_secs: u64,
    /// File: rotated files kept (default 30).
    #[serde(default = "d_keep")]
    pub keep: usize,
    /// What this sink receives: `threat`, `flow` (default both).
    #[serde(default = "d_logs")]
    pub logs: Vec<LogClass>,
}

impl SinkConfig {
    /// The format in effect.
    pub fn format(&self) -> Format {
        self.format.unwrap_or(match self.kind {
            SinkKind::Syslog => Format::Rfc5424Json,
            _ => Format::Json,
        })
    }

    /// `host:port` or the URL this sink delivers to, or its file.
    pub fn target(&self) -> String {
        match self.kind {
            SinkKind::File => self
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            SinkKind::Syslog => self.addr.clone().unwrap_or_default(),
            SinkKind::Http => self.http_url().unwrap_or_default(),
            SinkKind::Kafka => format!(
                "{}/{}",
                self.addr.clone().unwrap_or_default(),
                self.topic.as_deref().unwrap_or("sekisho")
            ),
        }
    }

    /// The HTTP URL: `url`, else `http(s)://addr/services/collector/event`.
    pub fn http_url(&self) -> Option<String> {
        self.url.clone().or_else(|| {
            self.addr.as_ref().map(|a| {
                let scheme = match self.transport {
                    Transport::Tcp => "http",
                    Transport::Tls => "https",
                };
                format!("{scheme}://{a}/services/collector/event")
            })
        })
    }
}

impl MssConfig {
    /// The name of sink `i`.
    pub fn sink_name(&self, i: usize) -> String {
        let s = &self.sinks[i];
        s.name.clone().unwrap_or_else(|| {
            let k = match s.kind {
                SinkKind::File => "file",
                SinkKind::Syslog => "syslog",
                SinkKind::Http => "http",
                SinkKind::Kafka => "kafka",
            };
            format!("{k}-{i}")
        })
    }

    /// The key file in effect.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.spool_dir.join("mss.key"))
    }

    /// Makes relative paths relative to `base` (the config file's folder).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.spool_dir);
        if let Some(k) = self.key_file.as_mut() {
            fix(k);
        }
        for s in &mut self.sinks {
            for p in [
                s.path.as_mut(),
                s.ca.as_mut(),
                s.client_cert.as_mut(),
                s.client_key.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                fix(p);
            }
        }
    }

    /// Checks what serde cannot: each message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 4096 {
            return Err("mss.segment_bytes: at least 4096".into());
        }
        if self.spool_max_bytes < 2 * self.segment_bytes {
            return Err(format!(
                "mss.spool_max_bytes: at least twice segment_bytes ({})",
                2 * self.segment_bytes
            ));
        }
        if self.queue == 0 || self.batch == 0 {
            return Err("mss.queue and mss.batch: at least 1".into());
        }
        if self.facility > 23 {
            return Err("mss.facility: 0..=23".into());
        }
        if self.backoff_min_ms == 0 || self.backoff_max_ms < self.backoff_min_ms {
            return Err("mss.backoff_min_ms: at least 1, and at most backoff_max_ms".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let name = self.sink_name(i);
            let e = |m: &str| format!("mss.sink[{i}] ({name}): {m}");
            if !names.insert(name.clone()) {
                return Err(e("name used twice"));
            }
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
                || name.starts_with('.')
            {
                return Err(e("name: letters, digits, '-', '_' and '.' only"));
            }
            match s.kind {
                SinkKind::File => {
                    if s.path.is_none() {
                        return Err(e("kind = \"file\" needs path"));
                    }
                    if s.rotate_bytes < 1024 || s.rotate_secs == 0 {
                        return Err(e("rotate_bytes at least 1024, rotate_secs at least 1"));
                    }
                }
                SinkKind::Syslog => {
                    if s.addr.is_none() {
                        return Err(e("kind = \"syslog\" needs addr (host:port)"));
                    }
                }
                SinkKind::Kafka => {}
                SinkKind::Http => {
                    let u = s
                        .http_url()
                        .ok_or_else(|| e("kind = \"http\" needs url or addr"))?;
                    let uri: http::Uri = u.parse().map_err(|x| e(&format!("url {u}: {x}")))?;
                    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                        return Err(e(&format!("url {u}: http:// or https:// with a host")));
                    }
                }
            }
            if s.kind == SinkKind::Kafka {
                if !cfg!(feature = "kafka") {
                    return Err(e(
                        "kind = \"kafka\": this build has no Kafka support (build with --features kafka)",
                    ));
                }
                if s.addr.as_deref().is_none_or(|a| a.trim().is_empty()) {
                    return Err(e(
                        "kind = \"kafka\" needs addr (broker list host:port,host:port)",
                    ));
                }
            }
            if s.client_cert.is_some() != s.client_key.is_some() {
                return Err(e("client_cert and client_key go together"));
            }
            if s.logs.is_empty() {
                return Err(e("logs: name threat, flow or both"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_issue_keys() {
        let c: MssConfig = toml::from_str(
            r#"
spool_dir = "spool"
[[sink]]
kind = "syslog"
addr = "127.0.0.1:6514"
transport = "tls"
format = "rfc5424-json"
[[sink]]
kind = "file"
path = "logs/mss.jsonl"
format = "json"
[[sink]]
kind = "http"
addr = "127.0.0.1:8088"
format = "cef"
logs = ["threat"]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.sink_name(0), "syslog-0");
        let with_token: MssConfig = toml::from_str(
            "spool_dir = \"s\"\n[[sink]]\nkind = \"http\"\naddr = \"h:1\"\ntoken = \"hunter2\"\n",
        )
        .unwrap();
        assert!(!format!("{with_token:?}").contains("hunter2"));
        assert_eq!(c.sinks[0].transport, Transport::Tls);
        assert_eq!(c.sinks[2].format(), Format::Cef);
        assert_eq!(
            c.sinks[2].http_url().unwrap(),
            "http://127.0.0.1:8088/services/collector/event"
        );
        let bad: MssConfig =
            toml::from_str("spool_dir = \"s\"\n[[sink]]\nkind = \"syslog\"\n").unwrap();
        assert!(bad.validate().unwrap_err().contains("needs addr"));
        let kafka: MssConfig =
            toml::from_str("spool_dir = \"s\"\n[[sink]]\nkind = \"kafka\"\naddr = \"x:1\"\n")
                .unwrap();
        if cfg!(feature = "kafka") {
            kafka.validate().unwrap();
        } else {
            assert!(kafka.validate().unwrap_err().contains("--features kafka"));
        }
        assert!(toml::from_str::<MssConfig>(
            "spool_dir = \"s\"\n[[sink]]\nkind = \"amqp\"\naddr = \"x:1\"\n"
        )
        .is_err());
    }
}
