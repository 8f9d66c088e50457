//! Warning pages: one-time continue tokens and the acknowledgements they create, remembered per
//! client and host for `warn_ttl_secs`. Both tables are bounded caches; entries carry their
//! expiry. The store outlives reloads (the proxy keeps one for its whole life).
//!
//! In a cluster (`[store]` with Redis) tokens and acknowledgements live in the shared store
//! instead, so a warning shown by one node can be continued on another (a balancer hashing
//! connections sends the click anywhere) and the grant holds on every node; a token is taken
//! atomically, so it is spent once across the cluster.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
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

    /// Keeps tokens and acknowledgements in the cluster's store from now on (the first store
    /// given stays).
    pub fn share(&self, shared: &Arc<dyn SharedState>) {
        let _ = self.shared.set(Arc::clone(shared));
    }

    /// True while `client` has acknowledged the warning for `host`.
    pub fn acknowledged(&self, client: IpAddr, host: &str) -> bool {
        let key = (norm(client), host.to_string());
        if let Some(sh) = self.shared.get() {
            // A grant seen in the store is remembered here a few seconds, so the requests
            // of one page do not each ask Redis.
            if matches!(self.acks.get(&key), Some(until) if until > Instant::now()) {
                return true;
            }
            let granted = sh.get(KIND, &ack_key(key.0, host)).is_some();
            if granted {
                self.acks.insert(key, Instant::now() + GRANT_MEMO);
            }
            return granted;
        }
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
        match self.shared.get() {
            Some(sh) => sh.set(KIND, &token_key(&token), &p.encode(), TOKEN_TTL),
            None => {
                self.pending.insert(token.clone(), p);
            }
        }
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
        let found = match self.shared.get() {
            Some(sh) if !token.is_empty() && token.len() <= 64 => sh
                .take(KIND, &token_key(token))
                .and_then(|b| Pending::decode(&b)),
            Some(_) => None,
            None => self.pending.remove(token).map(|(_, p)| p),
        };
        let Some(p) = found else {
            return Err("unknown or already used continue link");
        };
        if p.expires <= Instant::now() {
            return Err("the continue link has expired");
        }
        if p.client != norm(client) || p.host != host {
            return Err("the continue link belongs to another client or host");
        }
        match self.shared.get() {
            Some(sh) => sh.set(KIND, &ack_key(p.client, &p.host), b"1", p.ttl),
            None => self
                .acks
                .insert((p.client, p.host.clone()), Instant::now() + p.ttl),
        }
        Ok(Accepted {
            url: p.url,
            host: p.host,
            category: p.category,
        })
    }
}

/// The state kind in the store's metrics.
const KIND: &str = "warn";
/// How long a node trusts a grant it read from the cluster's store before asking again.
const GRANT_MEMO: Duration = Duration::from_secs(5);

fn token_key(token: &str) -> String {
    format!("warn:token:{token}")
}

fn ack_key(client: IpAddr, host: &str) -> String {
    format!("warn:ack:{client}|{host}")
}

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
            ttl: ttl.min(Duration::from_secs(86_400 * 30)),
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

    /// One store standing for Redis: keys with expiry, atomic take.
    #[derive(Debug, Default)]
    struct Fake(std::sync::Mutex<std::collections::HashMap<String, (Vec<u8>, Instant)>>);

    impl SharedState for Fake {
        fn get(&self, _: &'static str, key: &str) -> Option<Vec<u8>> {
            let m = self.0.lock().unwrap();
            m.get(key)
                .filter(|(_, t)| *t > Instant::now())
                .map(|(v, _)| v.clone())
        }
        fn set(&self, _: &'static str, key: &str, val: &[u8], ttl: Duration) {
            self.0
                .lock()
                .unwrap()
                .insert(key.into(), (val.to_vec(), Instant::now() + ttl));
        }
        fn take(&self, _: &'static str, key: &str) -> Option<Vec<u8>> {
            self.0.lock().unwrap().remove(key).map(|(v, _)| v)
        }
        fn publish(&self, _: &'static str, _: Vec<u8>) {}
        fn subscribe(&self, _: &'static str, _: sekisho_core::BusHandler) {}
    }

    #[test]
    fn a_cluster_continues_on_any_node_once() {
        let shared: Arc<dyn SharedState> = Arc::new(Fake::default());
        let (a, b, c) = (WarnStore::new(16), WarnStore::new(16), WarnStore::new(16));
        for s in [&a, &b, &c] {
            s.share(&shared);
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
