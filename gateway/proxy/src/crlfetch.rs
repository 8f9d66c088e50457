//! CRLs fetched from the client certificates' CRL distribution points (`crl_refresh`), for sites
//! that reach their CA: each `http://` distribution point a verified client certificate names
//! (and each URL listed) is fetched, verified against the listener's `client_ca` once, kept as a
//! serial set, written to a cache folder so a restart starts with it, and fetched again every
//! interval. A certificate whose distribution point has no current CRL (none fetched yet, or the
//! last one past its nextUpdate and the refresh failing) is refused by default (`stale =
//! "refuse"`), or let through with a warning (`stale = "accept"`).
//!
//! Bounded: at most [`MAX_URLS`] distribution points per listener, each CRL at most
//! `max_bytes`, each fetch within `timeout_secs`. The fetched CRLs survive a reload (the new
//! configuration verifies them again against its own CAs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use crate::revocation::{Revocation, Revoked};

/// Distribution points kept per listener, at most.
pub const MAX_URLS: usize = 64;
/// Retry delay after a failed fetch (or the interval, if shorter).
const RETRY: Duration = Duration::from_secs(30);

/// `stale`: what a certificate gets when its distribution point has no current CRL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stale {
    /// Refused in the handshake (fail closed; the default).
    #[default]
    Refuse,
    /// Let through, with a warning in the log.
    Accept,
}

/// A reverse listener's `crl_refresh` table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlRefresh {
    /// Seconds between fetches of each distribution point (default 3600).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// `refuse` (default) or `accept`.
    #[serde(default)]
    pub stale: Stale,
    /// Folder where fetched CRLs are kept across restarts (none: memory only).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Distribution points fetched from the start, before any certificate names them.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Seconds one fetch may take (default 10).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Largest CRL accepted, in bytes (default 32 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
}

fn default_interval() -> u64 {
    3600
}
fn default_timeout() -> u64 {
    10
}
fn default_max_bytes() -> u64 {
    32 << 20
}

impl CrlRefresh {
    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 || self.timeout_secs == 0 || self.max_bytes == 0 {
            return Err("interval_secs, timeout_secs and max_bytes must be above 0".into());
        }
        if self.urls.len() > MAX_URLS {
            return Err(format!("urls: at most {MAX_URLS}"));
        }
        for u in &self.urls {
            http_url(u).map_err(|e| format!("urls: {e}"))?;
        }
        Ok(())
    }
}

/// An `http://` URL's parts, or why it is not one.
fn http_url(u: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = u.parse().map_err(|e| format!("{u:?}: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(format!(
            "{u:?}: only http:// distribution points are fetched"
        ));
    }
    Ok(uri)
}

/// One distribution point.
#[derive(Clone)]
struct Entry {
    /// The CRL as fetched (re-verified after a reload) and its serial set.
    raw: Option<Arc<[u8]>>,
    crl: Option<Arc<Revocation>>,
    due: Instant,
    error: Option<String>,
}

impl Entry {
    fn due_now() -> Entry {
        Entry {
            raw: None,
            crl: None,
            due: Instant::now(),
            error: None,
        }
    }
}

/// The distribution points of one listener and their CRLs.
pub struct Fetcher {
    cfg: CrlRefresh,
    anchors: Vec<CertificateDer<'static>>,
    entries: RwLock<HashMap<String, Entry>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("urls", &self.entries.read().map(|e| e.len()).unwrap_or(0))
            .finish()
    }
}

/// Fetchers by listener name, newest last, so a reload keeps what was fetched (from the newest
/// one still alive: a reload that failed after building its fetcher leaves the running one).
fn registry() -> &'static Mutex<HashMap<String, Vec<Weak<Fetcher>>>> {
    static R: OnceLock<Mutex<HashMap<String, Vec<Weak<Fetcher>>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Fetcher {
    /// The fetcher of `listener`: the CRLs its previous configuration fetched and the cache
    /// folder's, verified against `anchors`, and the listed URLs; its loop is started when a
    /// runtime is running.
    pub fn new(
        listener: &str,
        cfg: CrlRefresh,
        anchors: Vec<CertificateDer<'static>>,
    ) -> Arc<Fetcher> {
        let f = Arc::new(Fetcher {
            cfg,
            anchors,
            entries: RwLock::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        });
        let previous = registry().lock().ok().and_then(|r| {
            r.get(listener)
                .and_then(|all| all.iter().rev().find_map(Weak::upgrade))
        });
        let mut inherited: HashMap<String, Entry> = match previous {
            Some(p) => p.entries.read().map(|e| e.clone()).unwrap_or_default(),
            None => f.read_cache(),
        };
        for u in &f.cfg.urls {
            inherited.entry(u.clone()).or_insert_with(Entry::due_now);
        }
        for (url, e) in inherited.iter_mut().take(MAX_URLS) {
            e.crl = e
                .raw
                .as_ref()
                .and_then(|raw| verify(&f.anchors, url, raw).ok())
                .map(Arc::new);
        }
        if let Ok(mut m) = f.entries.write() {
            *m = inherited.into_iter().take(MAX_URLS).collect();
        }
        if let Ok(mut r) = registry().lock() {
            let all = r.entry(listener.to_string()).or_default();
            all.retain(|w| w.strong_count() > 0);
            all.push(Arc::downgrade(&f));
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(run(Arc::downgrade(&f)));
        }
        f
    }

    /// The cached CRLs (`<key>.url` holds the URL, `<key>.crl` the CRL), due by file age.
    fn read_cache(&self) -> HashMap<String, Entry> {
        let mut out = HashMap::new();
        let Some(dir) = &self.cfg.cache_dir else {
            return out;
        };
        let Ok(list) = std::fs::read_dir(dir) else {
            return out;
        };
        for f in list.flatten().take(4 * MAX_URLS) {
            let p = f.path();
            if p.extension().is_none_or(|e| e != "url") {
                continue;
            }
            let (Ok(url), Ok(raw)) = (
                std::fs::read_to_string(&p),
                std::fs::read(p.with_extension("crl")),
            ) else {
                continue;
            };
            let age = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .unwrap_or(Duration::MAX);
            let wait = Duration::from_secs(self.cfg.interval_secs).saturating_sub(age);
            out.insert(
                url.trim().to_string(),
                Entry {
                    raw: Some(raw.into()),
                    crl: None,
                    due: Instant::now() + wait,
                    error: None,
                },
            );
        }
        out
    }

    /// Checks a verified leaf against the CRLs of its distribution points: the sentence of a
    /// refusal, or Ok.
    pub fn check(
        &self,
        cert: &X509Certificate<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let urls = distribution_points(cert);
        if urls.is_empty() {
            return Ok(());
        }
        let (mut fresh, mut stale, mut missing) = (false, None, Vec::new());
        if let Ok(map) = self.entries.read() {
            for u in &urls {
                match map.get(u) {
                    Some(Entry {
                        crl: Some(crl),
                        error,
                        ..
                    }) => match crl.check(cert, chain, now) {
                        Err(Revoked::Stale) => stale = Some((u.clone(), error.clone())),
                        Err(r) => return Err(r.error()),
                        Ok(()) => fresh = true,
                    },
                    Some(e) => missing.push((u.clone(), e.error.clone(), false)),
                    None => missing.push((u.clone(), None, true)),
                }
            }
        }
        if fresh {
            return Ok(());
        }
        let new: Vec<&String> = missing.iter().filter(|m| m.2).map(|m| &m.0).collect();
        if !new.is_empty() {
            if let Ok(mut map) = self.entries.write() {
                for u in new {
                    if map.len() < MAX_URLS {
                        map.entry(u.clone()).or_insert_with(Entry::due_now);
                    }
                }
            }
            self.wake.notify_one();
        }
        let why = match (stale, missing.first()) {
            (Some((u, e)), _) => format!(
                "revocation status unknown: the CRL from {u} is past its nextUpdate and was not refreshed ({})",
                e.as_deref().unwrap_or("not fetched again yet")
            ),
            (None, Some((u, e, _))) => format!(
                "revocation status unknown: no CRL fetched yet from {u} ({})",
                e.as_deref().unwrap_or("fetching it now")
            ),
            (None, None) => return Ok(()),
        };
        match self.cfg.stale {
            Stale::Refuse => Err(crate::clientauth::unfit("crl_unavailable", why)),
            Stale::Accept => {
                tracing::warn!(reason = %why, "client certificate let through (crl_refresh stale = \"accept\")");
                Ok(())
            }
        }
    }

    /// [`Fetcher::check`] on a chain as the client sent it (leaf first), now: for sessions
    /// resumed without a verification (a revocation fetched since must still apply).
    pub fn check_chain(&self, chain: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
        use x509_parser::prelude::FromDer;
        let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        let (leaf, rest) = chain.split_first().ok_or_else(bad)?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref()).map_err(|_| bad())?;
        self.check(&cert, rest, UnixTime::now())
    }

    /// URLs due for a fetch.
    fn due(&self) -> Vec<String> {
        let now = Instant::now();
        self.entries
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| e.due <= now)
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fetches one URL, verifies it (on the blocking pool: a large CRL takes a while), caches
    /// it, and keeps it; or records the failure. No lock is held while fetching, verifying or
    /// writing.
    async fn refresh(&self, url: &str) {
        let interval = Duration::from_secs(self.cfg.interval_secs);
        let timeout = Duration::from_secs(self.cfg.timeout_secs);
        let got = match fetch(url, timeout, self.cfg.max_bytes).await {
            Ok(raw) => {
                let (anchors, name) = (self.anchors.clone(), url.to_string());
                let dir = self.cfg.cache_dir.clone();
                tokio::task::spawn_blocking(move || {
                    let r = verify(&anchors, &name, &raw).map_err(|e| e.to_string())?;
                    if let Some(dir) = dir {
                        write_cache(&dir, &name, &raw);
                    }
                    Ok((raw, r))
                })
                .await
                .unwrap_or_else(|e| Err(format!("verifying: {e}")))
            }
            Err(why) => Err(why),
        };
        let Ok(mut map) = self.entries.write() else {
            return;
        };
        let Some(e) = map.get_mut(url) else {
            return;
        };
        match got {
            Ok((raw, crl)) => {
                tracing::info!(%url, revoked = crl.len(), "CRL fetched from the distribution point");
                e.raw = Some(raw.into());
                e.crl = Some(Arc::new(crl));
                e.error = None;
                e.due = Instant::now() + interval;
            }
            Err(why) => {
                tracing::warn!(%url, reason = %why, "CRL fetch failed: the last CRL stays until its nextUpdate");
                e.error = Some(why);
                e.due = Instant::now() + interval.min(RETRY);
            }
        }
    }
}

/// A CRL from `url`, verified against `anchors`, as a serial set.
fn verify(
    anchors: &[CertificateDer<'static>],
    url: &str,
    raw: &[u8],
) -> crate::error::Result<Revocation> {
    let mut r = Revocation::default();
    r.add(Path::new(url), raw, anchors)?;
    Ok(r)
}

/// Keeps a verified CRL in the cache folder (`<key>.crl`, and its URL in `<key>.url`).
fn write_cache(dir: &Path, url: &str, raw: &[u8]) {
    let key = format!("{:016x}", fnv64(url.as_bytes()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!("{key}.tmp"));
        std::fs::write(&tmp, raw)?;
        std::fs::rename(&tmp, dir.join(format!("{key}.crl")))?;
        std::fs::write(dir.join(format!("{key}.url")), url)
    };
    if let Err(e) = write() {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot write the CRL cache");
    }
}

/// FNV-1a (64 bits): a cache file name for a URL (the URL itself is kept beside it).
fn fnv64(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, x| {
        (h ^ u64::from(*x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The fetch loop of one fetcher; ends when its configuration is gone.
async fn run(f: Weak<Fetcher>) {
    loop {
        let Some(f) = f.upgrade() else {
            return;
        };
        for url in f.due() {
            f.refresh(&url).await;
        }
        tokio::select! {
            _ = f.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The `http://` distribution points a certificate names.
pub fn distribution_points(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for e in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = e.parsed_extension() else {
            continue;
        };
        for p in points.iter() {
            if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                for n in names {
                    if let GeneralName::URI(u) = n {
                        if u.starts_with("http://") && out.len() < 8 {
                            out.push(u.to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

/// GET `url` (http only) within `timeout`; the body, at most `max` bytes, of a 200.
async fn fetch(url: &str, timeout: Duration, max: u64) -> Result<Vec<u8>, String> {
    let uri = http_url(url)?;
    let host = uri.host().unwrap_or_default().to_string();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let work = async move {
        let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(conn);
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::USER_AGENT, "sekisho-crl-fetch")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), usize::try_from(max).unwrap_or(usize::MAX))
            .collect()
            .await
            .map_err(|e| format!("body: {e} (limit {max} bytes)"))?;
        Ok(body.to_bytes().to_vec())
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no CRL within {timeout:?}"))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use x509_parser::prelude::FromDer;

    #[test]
    fn distribution_points_of_an_issued_certificate() {
        let d = std::env::temp_dir().join(format!("sekisho-crlfetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        crate::ca::init_ca(&d.join("ca"), "CDP CA").unwrap();
        let spec = crate::ca::ClientCertSpec {
            crl_urls: vec!["http://127.0.0.1:9/ca.crl".into(), "ldap://x/y".into()],
            ..crate::ca::ClientCertSpec::facility("H-1")
        };
        crate::ca::issue_client(&d.join("ca"), &spec, &d.join("c")).unwrap();
        let der = crate::clientauth::read_pem_certs(&d.join("c/client.crt"))
            .unwrap()
            .remove(0);
        let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
        assert_eq!(distribution_points(&cert), ["http://127.0.0.1:9/ca.crl"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
