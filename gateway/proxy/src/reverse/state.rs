//! A reverse listener's state, built from config and swapped on reload: server certificates by
//! SNI, the client-certificate verifier (CAs, CRLs), the facility rule, routes and their pools.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderName;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use crate::clientauth::{self, AttrRule, Recording};
use crate::config::{Balance, ClientAuth, Config, ListenerKind, MissingCert};
use crate::error::{ProxyError, Result};
use crate::hostmatch::HostMatcher;

/// Server certificates of a listener: by SNI (exact or wildcard SAN), else the default.
#[derive(Debug)]
pub(crate) struct SniCerts {
    pub(crate) default: Arc<CertifiedKey>,
    pub(crate) exact: HashMap<String, Arc<CertifiedKey>>,
    pub(crate) wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name().map(str::to_ascii_lowercase) else {
            return Some(Arc::clone(&self.default));
        };
        if let Some(c) = self.exact.get(&name) {
            return Some(Arc::clone(c));
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Some(Arc::clone(c));
            }
        }
        Some(Arc::clone(&self.default))
    }
}

pub(crate) fn cert_err(path: &Path, message: impl Into<String>) -> ProxyError {
    ProxyError::Cert {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Loads a certificate chain and its key; returns the key pair and the leaf's DNS names.
pub(crate) fn load_pair(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, Vec<String>)> {
    let chain = clientauth::read_pem_certs(cert)?;
    let Some(leaf) = chain.first() else {
        return Err(cert_err(cert, "no CERTIFICATE in PEM file"));
    };
    let names = {
        use x509_parser::prelude::*;
        let (_, x) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| cert_err(cert, format!("not an X.509 certificate: {e}")))?;
        let mut names: Vec<String> = match x.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        if names.is_empty() {
            if let Some(cn) = x.subject().iter_common_name().next() {
                if let Ok(cn) = cn.as_str() {
                    names.push(cn.to_ascii_lowercase());
                }
            }
        }
        names
    };
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| cert_err(key, format!("no usable private key: {e}")))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signer = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| cert_err(key, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| cert_err(key, format!("does not match {}: {e}", cert.display())))?;
    Ok((Arc::new(ck), names))
}

/// One upstream of a pool; its health survives reloads (kept by URL in [`Members`]).
#[derive(Debug)]
pub(crate) struct Member {
    /// `scheme://authority`.
    pub(crate) base: String,
    /// Active probe result (true until a probe fails).
    pub(crate) healthy: AtomicBool,
    /// Skipped until this instant (ms since the gateway started) after a connect failure.
    pub(crate) down_until: AtomicU64,
    /// Requests in flight.
    pub(crate) active: AtomicUsize,
    /// Next probe due (ms since start).
    pub(crate) next_probe: AtomicU64,
}

/// Every pool member by URL, shared across reloads.
pub(crate) type Members = Mutex<HashMap<String, Arc<Member>>>;

/// A pool of upstreams.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) members: Vec<Arc<Member>>,
    pub(crate) balance: Balance,
    pub(crate) next: AtomicUsize,
}

/// A compiled `[[route]]`.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    pub(crate) host: Option<HostMatcher>,
    pub(crate) host_text: Option<String>,
    pub(crate) prefix: String,
    pub(crate) pool: Pool,
    /// Allowed facilities (groups expanded); None: any.
    pub(crate) facilities: Option<crate::facilities::FacilitySet>,
    /// Allowed role patterns; None: any.
    pub(crate) roles: Option<Vec<String>>,
    pub(crate) require: Vec<(AttrRule, String, String)>,
    pub(crate) retries: u32,
    pub(crate) fail_timeout: Duration,
    /// The route's response-head timeout (`timeout_secs`), else `[limits]`'s.
    pub(crate) timeout: Option<Duration>,
    pub(crate) preserve_host: bool,
    pub(crate) health: Option<(String, Duration)>,
}

/// What a reverse listener runs with; swapped whole on reload.
pub(crate) struct ReverseState {
    /// Server certificates and client authentication; `None` for a plain-HTTP listener (no
    /// `cert`).
    pub(crate) tls: Option<TlsSide>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) facility_rule: Option<AttrRule>,
    pub(crate) facility_rule_text: Option<String>,
    pub(crate) facility_header: HeaderName,
    /// `role_id`: where roles are read from.
    pub(crate) role_rule: Option<AttrRule>,
    pub(crate) role_header: HeaderName,
    /// CRLs from the distribution points, checked again on resumed sessions.
    pub(crate) crl_fetch: Option<Arc<crate::crlfetch::Fetcher>>,
    /// `forward_raw_path`: the client's path goes upstream instead of the canonical one.
    pub(crate) forward_raw_path: bool,
    pub(crate) routes: Vec<Arc<Route>>,
}

/// A TLS listener's server side: certificates by SNI, the client-certificate verifier, session
/// resumption state.
pub(crate) struct TlsSide {
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) resolver: Arc<SniCerts>,
    pub(crate) verifier: Arc<dyn ClientCertVerifier>,
    pub(crate) session_storage: Arc<dyn rustls::server::StoresServerSessions>,
    pub(crate) ticketer: Arc<dyn rustls::server::ProducesTickets>,
    pub(crate) provider: Arc<rustls::crypto::CryptoProvider>,
}

impl TlsSide {
    /// Certificates (the first is the default) and the client-certificate rules.
    fn build(
        pairs: &[(Arc<CertifiedKey>, Vec<String>)],
        default: Arc<CertifiedKey>,
        verifier: Arc<dyn ClientCertVerifier>,
    ) -> Result<TlsSide> {
        let (mut exact, mut wild) = (HashMap::new(), HashMap::new());
        // Later certificates do not take a name an earlier one serves.
        for (ck, names) in pairs {
            for n in names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wild.entry(suffix.to_string()),
                    None => exact.entry(n.clone()),
                }
                .or_insert_with(|| Arc::clone(ck));
            }
        }
        let resolver = Arc::new(SniCerts {
            default,
            exact,
            wildcard: wild,
        });
        let session_storage: Arc<dyn rustls::server::StoresServerSessions> =
            rustls::server::ServerSessionMemoryCache::new(20_000);
        let ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = Arc::new(server_config(
            &provider,
            Arc::clone(&verifier),
            Arc::clone(&resolver),
            Arc::clone(&session_storage),
            Arc::clone(&ticketer),
        )?);
        Ok(TlsSide {
            tls,
            resolver,
            verifier,
            session_storage,
            ticketer,
            provider,
        })
    }
}

/// Milliseconds since the first call (a monotonic clock for member state).
pub(crate) fn now_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl ReverseState {
    /// Builds listener `index`'s state from config (reads certificates, CAs and CRLs).
    pub(crate) fn build(cfg: &Config, index: usize, members: &Members) -> Result<ReverseState> {
        let l = &cfg.listeners[index];
        let name = cfg.listener_name(index);
        let mut pairs: Vec<(Arc<CertifiedKey>, Vec<String>)> = Vec::new();
        if let (Some(c), Some(k)) = (&l.cert, &l.key) {
            pairs.push(load_pair(c, k)?);
        }
        for p in &l.certificates {
            pairs.push(load_pair(&p.cert, &p.key)?);
        }
        let mandatory = l.client_auth == ClientAuth::Required && l.missing_cert == MissingCert::Tls;
        let mut crl_fetch = None;
        let tls = match pairs.first().map(|(c, _)| Arc::clone(c)) {
            Some(default) => {
                let (verifier, fetch) = clientauth::verifier_with(
                    l.client_auth,
                    mandatory,
                    &l.client_ca,
                    &l.crl,
                    &l.client_policies,
                    l.crl_refresh.as_ref().map(|r| (name.as_str(), r)),
                )?;
                crl_fetch = fetch;
                Some(TlsSide::build(&pairs, default, verifier)?)
            }
            None => None,
        };
        let facility_rule = l
            .facility_id
            .as_deref()
            .map(AttrRule::parse)
            .transpose()
            .map_err(|e| ProxyError::Config {
                file: cfg.path.clone(),
                message: format!("listener {name}: facility_id: {e}"),
            })?;
        let config_err = |key: &str, e: String| ProxyError::Config {
            file: cfg.path.clone(),
            message: format!("listener {name}: {key}: {e}"),
        };
        let role_rule = l
            .role_id
            .as_deref()
            .map(AttrRule::parse)
            .transpose()
            .map_err(|e| config_err("role_id", e))?;
        let facility_header = HeaderName::from_bytes(l.facility_header_name().as_bytes())
            .map_err(|e| config_err("facility_header", e.to_string()))?;
        let role_header = HeaderName::from_bytes(l.role_header_name().as_bytes())
            .map_err(|e| config_err("role_header", e.to_string()))?;
        let uses_groups = cfg
            .routes
            .iter()
            .filter(|r| r.listener == name)
            .flat_map(|r| r.facilities.iter().flatten())
            .any(|f| f.starts_with('@'));
        let groups = if uses_groups {
            crate::facilities::load_groups(cfg)?
        } else {
            Default::default()
        };
        let mut routes = Vec::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            if r.listener != name {
                continue;
            }
            let rname = cfg.route_name(i);
            let err = |m: String| ProxyError::Config {
                file: cfg.path.clone(),
                message: format!("route[{i}] ({rname}): {m}"),
            };
            let host = r
                .host
                .as_ref()
                .map(|h| HostMatcher::new(std::slice::from_ref(h)))
                .transpose()
                .map_err(|e| err(format!("host: {e}")))?;
            let mut pool_members = Vec::new();
            for u in &r.upstreams {
                let base =
                    crate::config::upstream_base(u).map_err(|e| err(format!("upstreams: {e}")))?;
                let m = {
                    let mut reg = members.lock().unwrap_or_else(|p| p.into_inner());
                    Arc::clone(reg.entry(base.clone()).or_insert_with(|| {
                        Arc::new(Member {
                            base,
                            healthy: AtomicBool::new(true),
                            down_until: AtomicU64::new(0),
                            active: AtomicUsize::new(0),
                            next_probe: AtomicU64::new(0),
                        })
                    }))
                };
                pool_members.push(m);
            }
            if pool_members.is_empty() {
                return Err(err(
                    "upstreams: at least one upstream URL is required".into()
                ));
            }
            let mut require = Vec::new();
            for (k, v) in &r.require {
                let rule = AttrRule::parse(k).map_err(|e| err(format!("require: {e}")))?;
                require.push((rule, k.clone(), v.clone()));
            }
            routes.push(Arc::new(Route {
                name: Arc::from(rname.as_str()),
                host,
                host_text: r.host.clone(),
                prefix: r.path_prefix.clone(),
                pool: Pool {
                    members: pool_members,
                    balance: r.balance,
                    next: AtomicUsize::new(0),
                },
                facilities: r
                    .facilities
                    .as_ref()
                    .map(|f| crate::facilities::route_set(f, &groups))
                    .transpose()
                    .map_err(|e| err(format!("facilities: {e}")))?,
                roles: r.roles.clone(),
                require,
                retries: r.retries,
                fail_timeout: Duration::from_secs(r.fail_timeout_secs),
                timeout: r.timeout_secs.map(Duration::from_secs),
                preserve_host: r.preserve_host,
                health: r
                    .health_check
                    .clone()
                    .map(|p| (p, Duration::from_secs(r.health_interval_secs))),
            }));
        }
        Ok(ReverseState {
            tls,
            client_auth: l.client_auth,
            facility_rule,
            facility_rule_text: l.facility_id.clone(),
            facility_header,
            role_rule,
            role_header,
            crl_fetch,
            forward_raw_path: l.forward_raw_path,
            routes,
        })
    }

    /// One line for `check-config`: certificates, client authentication, routes.
    pub(crate) fn describe(&self) -> String {
        let names = match &self.tls {
            Some(t) => {
                let mut names = t
                    .resolver
                    .exact
                    .keys()
                    .cloned()
                    .chain(t.resolver.wildcard.keys().map(|w| format!("*.{w}")))
                    .collect::<Vec<String>>();
                names.sort_unstable();
                format!("certificates for {names:?}")
            }
            None => "plain HTTP (no certificate)".to_string(),
        };
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| {
                format!(
                    "{} {}{} -> {} upstream(s){}{}{}",
                    r.name,
                    r.host_text.as_deref().unwrap_or("*"),
                    r.prefix,
                    r.pool.members.len(),
                    match &r.facilities {
                        Some(f) => format!(", {} facility entries", f.len()),
                        None => String::new(),
                    },
                    match &r.roles {
                        Some(roles) => format!(", roles {roles:?}"),
                        None => String::new(),
                    },
                    match r.timeout {
                        Some(t) => format!(", timeout {}s", t.as_secs()),
                        None => String::new(),
                    }
                )
            })
            .collect();
        format!(
            "{}; client_auth {:?}; facility_id {}; role_id {}; routes: {}",
            names,
            self.client_auth,
            self.facility_rule_text.as_deref().unwrap_or("none"),
            self.role_rule
                .as_ref()
                .map_or("none".to_string(), |r| format!("{r:?}")),
            routes.join("; ")
        )
    }

    /// The route for `host` and `path`: among routes whose host matches, the longest prefix.
    pub(crate) fn route(&self, host: &str, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| r.host.as_ref().is_none_or(|h| h.matches(host)))
            .filter(|r| prefix_matches(&r.prefix, path))
            .max_by_key(|r| r.prefix.len())
    }

    /// A TLS config for one connection whose verifier records a refused certificate; `None`
    /// for a plain-HTTP listener.
    #[allow(clippy::type_complexity)]
    pub(crate) fn connection_tls(
        &self,
    ) -> Result<Option<(Arc<rustls::ServerConfig>, Option<Arc<Recording>>)>> {
        let Some(t) = &self.tls else {
            return Ok(None);
        };
        if self.client_auth == ClientAuth::None {
            return Ok(Some((Arc::clone(&t.tls), None)));
        }
        let rec = Recording::new(Arc::clone(&t.verifier));
        let cfg = server_config(
            &t.provider,
            rec.clone(),
            Arc::clone(&t.resolver),
            Arc::clone(&t.session_storage),
            Arc::clone(&t.ticketer),
        )?;
        Ok(Some((Arc::new(cfg), Some(rec))))
    }
}

pub(crate) fn server_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Arc<SniCerts>,
    session_storage: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Arc<dyn rustls::server::ProducesTickets>,
) -> Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    cfg.session_storage = session_storage;
    cfg.ticketer = ticketer;
    Ok(cfg)
}

/// `/claims` matches `/claims`, `/claims/…` and `/claims?…`, not `/claimsx`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" || prefix.is_empty() {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => {
            prefix.ends_with('/')
                || rest.is_empty()
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

impl Route {
    pub(crate) fn usable(m: &Member, now: u64) -> bool {
        m.healthy.load(Ordering::Relaxed) && m.down_until.load(Ordering::Relaxed) <= now
    }

    /// Picks a member not in `tried`: usable ones first; when none is usable, any.
    pub(crate) fn pick(&self, tried: &[usize]) -> Option<usize> {
        let ms = &self.pool.members;
        let now = now_ms();
        let fresh: Vec<usize> = (0..ms.len()).filter(|i| !tried.contains(i)).collect();
        let usable: Vec<usize> = fresh
            .iter()
            .copied()
            .filter(|&i| Self::usable(&ms[i], now))
            .collect();
        let cands = if usable.is_empty() { fresh } else { usable };
        if cands.is_empty() {
            return None;
        }
        let start = self.pool.next.fetch_add(1, Ordering::Relaxed);
        match self.pool.balance {
            Balance::RoundRobin => Some(cands[start % cands.len()]),
            Balance::LeastConnections => (0..cands.len())
                .map(|k| cands[(start + k) % cands.len()])
                .min_by_key(|&i| ms[i].active.load(Ordering::Relaxed)),
        }
    }
}

/// Builds every reverse listener's state, by listener index (None for other kinds).
pub(crate) fn build_all(
    cfg: &Config,
    members: &Members,
) -> Result<Vec<Option<ArcSwap<ReverseState>>>> {
    let all = cfg
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| match l.kind {
            ListenerKind::Reverse => {
                ReverseState::build(cfg, i, members).map(|s| Some(ArcSwap::from_pointee(s)))
            }
            ListenerKind::Forward => Ok(None),
        })
        .collect::<Result<Vec<_>>>()?;
    // Members no state uses any more (after earlier reloads) are forgotten: the registry holds
    // at most the current and the previous configuration's upstreams.
    members
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|_, m| Arc::strong_count(m) > 1);
    Ok(all)
}
