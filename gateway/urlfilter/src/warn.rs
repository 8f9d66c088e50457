//! Warning pages: one-time continue tokens and the acknowledgements they create, remembered per
//! client and host for `warn_ttl_secs`. Both tables are bounded caches; entries carry their
//! expiry. The store outlives reloads (the proxy keeps one for its whole life).
//!
//! In a cluster (`[store]` with Redis) every token issued, spent or turned into a grant is
//! published on the store's bus and copied by the other nodes, so a warning shown by one node
//! can be continued on another (a balancer hashing connections sends the click anywhere) and
//! the grant holds on every node. Every check stays local: the inspector never waits on the
//! network (DESIGN: inspectors do no I/O). A token reaching another node just after it was
//! spent could be spent once more there, by the same client for the same host only (tokens are
//! bound to both): the grant it makes is the one already made.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use sekisho_core::SharedState;

/// The path (on any host, HTTP or decrypted HTTPS) a warning page's continue link points to.
pub const CONTINUE_PATH: &str = "/.sekisho/continue";
/// How long a continue link stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(600);

#[derive(Clone, Debug)]
struct Pending {
    client: IpAddr,
    host: String,
    url: String,
    category: String,
    ttl: Duration,
    expires: Instant,
}

/// What a valid continue link unlocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Where to send the client back to.
    pub url: String,
    /// The host now acknowledged for this client.
    pub host: String,
    /// The category that warned.
    pub category: String,
}

/// Pending continue tokens and acknowledgements.
pub struct WarnStore {
    pending: quick_cache::sync::Cache<String, Pending>,
    acks: quick_cache::sync::Cache<(IpAddr, String), Instant>,
    shared: OnceLock<Arc<dyn SharedState>>,
}

impl std::fmt::Debug for WarnStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarnStore")
            .field("pending", &self.pending.len())
            .field("acks", &self.acks.len())
            .finish()
    }
}

impl Default for WarnStore {
    fn default() -> Self {
        Self::new(100_000)
    }
}

fn norm(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl WarnStore {
    /// A store keeping at most `capacity` tokens and as many acknowledgements.
    pub fn new(capacity: usize) -> Self {
        WarnStore {
            pending: quick_cache::sync::Cache::new(capacity.max(16)),
            acks: quick_cache::sync::Cache::new(capacity.max(16)),
            shared: OnceLock::new(),
        }
    }

    /// Publishes this node's tokens and grants on the cluster's bus and copies the other
    /// nodes' (the first store given stays).
    pub fn share(self: &Arc<Self>, shared: &Arc<dyn SharedState>) {
        if self.shared.set(Arc::clone(shared)).is_err() {
            return;
        }
        let weak: Weak<WarnStore> = Arc::downgrade(self);
        shared.subscribe(
            TOPIC,
            Arc::new(move |p: &[u8]| {
                if let Some(w) = weak.upgrade() {
                    w.receive(p);
                }
            }),
        );
    }

    fn publish(&self, message: String) {
        if let Some(sh) = self.shared.get() {
            sh.publish(TOPIC, message.into_bytes());
        }
    }

    /// Applies another node's message: `t TOKEN` + a pending token, `s TOKEN` (spent),
    /// `g CLIENT HOST SECS` (a grant). Anything else is ignored.
    fn receive(&self, p: &[u8]) {
        let Ok(text) = std::str::from_utf8(p) else {
            return;
        };
        let (head, rest) = text.split_once('\n').unwrap_or((text, ""));
        let mut f = head.split(' ');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("t"), Some(token), None, None) if token.len() <= 64 => {
                if let Some(pending) = Pending::decode(rest.as_bytes()) {
                    self.pending.insert(token.to_string(), pending);
                }
            }
            (Some("s"), Some(token), None, None) => {
                self.pending.remove(token);
            }
            (Some("g"), Some(client), Some(host), Some(secs)) => {
                let (Ok(client), Ok(secs)) = (client.parse::<IpAddr>(), secs.parse::<u64>()) else {
                    return;
                };
                let ttl = Duration::from_secs(secs.min(MAX_GRANT_SECS));
                self.acks
                    .insert((norm(client), host.to_string()), Instant::now() + ttl);
            }
            _ => {}
        }
    }

    /// True while `client` has acknowledged the warning for `host`.
    pub fn acknowledged(&self, client: IpAddr, host: &str) -> bool {
        let key = (norm(client), host.to_string());
        match self.acks.get(&key) {
            Some(until) if until > Instant::now() => true,
            Some(_) => {
                self.acks.remove(&key);
                false
            }
            None => false,
        }
    }

    /// A new continue token for `client` on `host`, sending it back to `url` afterwards; the
    /// acknowledgement will last `ttl`.
    pub fn issue(
        &self,
        client: IpAddr,
        host: &str,
        url: &str,
        category: &str,
        ttl: Duration,
    ) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let p = Pending {
            client: norm(client),
            host: host.to_string(),
            url: url.to_string(),
            category: category.to_string(),
            ttl,
            expires: Instant::now() + TOKEN_TTL,
        };
        if self.shared.get().is_some() {
            let encoded = String::from_utf8_lossy(&p.encode()).into_owned();
            self.publish(format!("t {token}\n{encoded}"));
        }
        self.pending.insert(token.clone(), p);
        token
    }

    /// Redeems a token: it must exist, be fresh, and belong to this client and host. The
    /// token is spent either way.
    pub fn accept(
        &self,
        token: &str,
        client: IpAddr,
        host: &str,
    ) -> Result<Accepted, &'static str> {
        let Some((_, p)) = self.pending.remove(token) else {
            return Err("unknown or already used continue link");
        };
        if token.len() <= 64 {
            self.publish(format!("s {token}"));
        }
        if p.expires <= Instant::now() {
            return Err("the continue link has expired");
        }
        if p.client != norm(client) || p.host != host {
            return Err("the continue link belongs to another client or host");
        }
        self.acks
            .insert((p.client, p.host.clone()), Instant::now() + p.ttl);
        if !p.host.contains([' ', '\n']) {
            self.publish(format!("g {} {} {}", p.client, p.host, p.ttl.as_secs()));
        }
        Ok(Accepted {
            url: p.url,
            host: p.host,
            category: p.category,
        })
    }
}

/// The bus topic of warning-page tokens and grants.
const TOPIC: &str = "url.warn";
/// The longest grant a bus message may carry.
const MAX_GRANT_SECS: u64 = 86_400 * 30;

impl Pending {
    /// Lines: client, host, url, category, ttl seconds, the token's seconds left (URLs and hosts
    /// reaching here are canonical: no line breaks).
    fn encode(&self) -> Vec<u8> {
        let left = self.expires.saturating_duration_since(Instant::now());
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.client,
            self.host,
            self.url.replace('\n', "%0A"),
            self.category,
            self.ttl.as_secs(),
            left.as_secs()
        )
        .into_bytes()
    }

    fn decode(b: &[u8]) -> Option<Pending> {
        let text = std::str::from_utf8(b).ok()?;
        let mut it = text.split('\n');
        let client = it.next()?.parse().ok()?;
        let host = it.next()?.to_string();
        let url = it.next()?.to_string();
        let category = it.next()?.to_string();
        let ttl = Duration::from_secs(it.next()?.parse().ok()?);
        let left = Duration::from_secs(it.next()?.parse().ok()?).min(TOKEN_TTL);
        Some(Pending {
            client,
            host,
            url,
            category,
            ttl: ttl.min(Duration::from_secs(MAX_GRANT_SECS)),
            expires: Instant::now() + left,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_bind_client_and_host_and_are_single_use() {
        let s = WarnStore::new(100);
        let c: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let t = s.issue(
            c,
            "shop.test",
            "https://shop.test/x",
            "shopping",
            Duration::from_secs(60),
        );
        assert!(!s.acknowledged(c, "shop.test"));
        assert!(s.accept(&t, other, "shop.test").is_err());
        let t = s.issue(
            c,
            "shop.test",
            "https://shop.test/x",
            "shopping",
            Duration::from_secs(60),
        );
        assert!(s.accept(&t, c, "evil.test").is_err());
        let t = s.issue(
            c,
            "shop.test",
            "https://shop.test/x",
            "shopping",
            Duration::from_secs(60),
        );
        let a = s
            .accept(&t, "::ffff:10.0.0.1".parse().unwrap(), "shop.test")
            .unwrap();
        assert_eq!(a.url, "https://shop.test/x");
        assert!(s.acknowledged(c, "shop.test"));
        assert!(!s.acknowledged(other, "shop.test"));
        assert!(s.accept(&t, c, "shop.test").is_err(), "single use");
        let t = s.issue(c, "b.test", "http://b.test/", "x", Duration::ZERO);
        s.accept(&t, c, "b.test").unwrap();
        assert!(!s.acknowledged(c, "b.test"), "expired at once");
    }

    #[test]
    fn a_cluster_continues_on_any_node_once() {
        let bus = Arc::new(sekisho_core::LoopbackBus::default());
        let (a, b, c) = (
            Arc::new(WarnStore::new(16)),
            Arc::new(WarnStore::new(16)),
            Arc::new(WarnStore::new(16)),
        );
        for (i, s) in [&a, &b, &c].into_iter().enumerate() {
            let node = bus.node(i);
            s.share(&node);
        }
        let client: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let t = a.issue(
            client,
            "shop.test",
            "http://shop.test/x?a=1",
            "shopping",
            Duration::from_secs(60),
        );
        assert!(!c.acknowledged(client, "shop.test"));
        let got = b
            .accept(&t, "10.0.0.1".parse().unwrap(), "shop.test")
            .unwrap();
        assert_eq!(got.url, "http://shop.test/x?a=1");
        assert_eq!(got.category, "shopping");
        assert!(
            c.acknowledged(client, "shop.test"),
            "the grant holds on every node"
        );
        assert!(
            a.accept(&t, client, "shop.test").is_err(),
            "spent once across nodes"
        );
        let long = "x".repeat(65);
        assert!(a.accept(&long, client, "shop.test").is_err());
    }
}
