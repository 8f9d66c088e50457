//! ICAP servers (RFC 3507) as one more AV backend: operators add the scanners they already run
//! (c-icap with ClamAV, commercial AV and DLP servers). Each `[[av.icap]]` server is shown
//! request bodies (`reqmod`) or response bodies (`respmod`); its verdict becomes a finding like
//! the engine's own.

mod client;
mod config;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use client::IcapClient;
pub use config::{IcapConfig, IcapMethod, IcapTarget};
use sekisho_core::OnError;
pub use wire::Message;

use crate::{Detection, ScanHit};

/// What a server said about a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// `204 No Content`, or the message echoed back unchanged.
    Clean,
    /// A threat named in `X-Infection-Found`, `X-Violations-Found`, `X-Virus-ID` or
    /// `X-Virus-Name`.
    Threat(String),
    /// The server replaced the message or changed the body without naming a threat.
    Blocked(String),
    /// Not sent: the server's OPTIONS list this file's extension in `Transfer-Ignore`.
    Ignored,
}

/// Why a server could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IcapError {
    /// The connection could not be opened.
    #[error("connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection before answering.
    #[error("the server closed the connection before answering")]
    Closed,
    /// The server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered with an error status.
    #[error("ICAP status {0} {1}")]
    Status(u16, String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service does not offer the configured method.
    #[error("the service does not offer {0} (its OPTIONS Methods: {1})")]
    Method(&'static str, String),
}

impl IcapError {
    /// True when a kept-alive connection turned out closed before any answer.
    fn is_stale(&self) -> bool {
        match self {
            IcapError::Closed => true,
            IcapError::Io(e) => matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// One server's reply to one body.
#[derive(Debug)]
pub struct Asked {
    /// The server's label.
    pub server: String,
    /// Its URL.
    pub url: String,
    /// What its configuration says to do when it cannot answer.
    pub on_error: OnError,
    /// The answer.
    pub result: Result<Answer, IcapError>,
    /// How long it took.
    pub elapsed: Duration,
}

impl Asked {
    /// The outcome's name for metrics: `clean`, `threat`, `blocked`, `ignored`, `error`.
    pub fn outcome(&self) -> &'static str {
        match &self.result {
            Ok(Answer::Clean) => "clean",
            Ok(Answer::Ignored) => "ignored",
            Ok(Answer::Threat(_)) => "threat",
            Ok(Answer::Blocked(_)) => "blocked",
            Err(_) => "error",
        }
    }

    /// The detection, as the engine's own hits are reported: rule = the threat the server
    /// named (`ICAP.Blocked` when it named none).
    pub fn hit(&self, provenance: &str, name: Option<&str>, body: &[u8]) -> Option<ScanHit> {
        let (rule, why) = match &self.result {
            Ok(Answer::Threat(t)) => (t.clone(), format!("ICAP server {}", self.server)),
            Ok(Answer::Blocked(why)) => (
                "ICAP.Blocked".to_string(),
                format!("ICAP server {}: {why}", self.server),
            ),
            _ => return None,
        };
        use sha2::Digest as _;
        Some(ScanHit {
            detection: Detection {
                engine: "icap",
                rule,
                source_file: Some(self.url.clone()),
                line: None,
                description: Some(why),
            },
            provenance: provenance.to_string(),
            name: name.map(str::to_string),
            size: body.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(body)),
            mime: sekisho_content::sniff_mime(body).to_string(),
        })
    }
}

/// The configured servers.
#[derive(Clone, Default)]
pub struct Icap {
    clients: Vec<Arc<IcapClient>>,
}

impl Icap {
    /// Clients for `[[av.icap]]`; `key: problem` for a bad one.
    pub fn new(cfgs: &[IcapConfig]) -> Result<Self, String> {
        let clients = cfgs
            .iter()
            .map(|c| IcapClient::new(c.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Icap { clients })
    }

    /// True when no server is configured for `method`.
    pub fn none_for(&self, method: IcapMethod) -> bool {
        !self.clients.iter().any(|c| c.config().method == method)
    }

    /// Asks every server configured for `method`, all at once, each within `limit`.
    pub async fn ask(
        &self,
        method: IcapMethod,
        m: &Message<'_>,
        body: &[u8],
        limit: Duration,
    ) -> Vec<Asked> {
        let asks = self
            .clients
            .iter()
            .filter(|c| c.config().method == method)
            .map(|c| async move {
                let started = Instant::now();
                let result = c.ask(m, body, limit).await;
                Asked {
                    server: c.label().to_string(),
                    url: c.config().url.clone(),
                    on_error: c.config().on_error,
                    result,
                    elapsed: started.elapsed(),
                }
            });
        futures_util::future::join_all(asks).await
    }
}
