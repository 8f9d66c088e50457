//! Warning pages: one-time continue tokens and the acknowledgements they create, remembered per
//! client and host for `warn_ttl_secs`. Both tables are bounded caches; entries carry their
//! expiry. The store outlives reloads (the proxy keeps one for its whole life).

use std::net::IpAddr;
use std::time::{Duration, Instant};

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
        self.pending.insert(
            token.clone(),
            Pending {
                client: norm(client),
                host: host.to_string(),
                url: url.to_string(),
                category: category.to_string(),
                ttl,
                expires: Instant::now() + TOKEN_TTL,
            },
        );
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
        if p.expires <= Instant::now() {
            return Err("the continue link has expired");
        }
        if p.client != norm(client) || p.host != host {
            return Err("the continue link belongs to another client or host");
        }
        self.acks
            .insert((p.client, p.host.clone()), Instant::now() + p.ttl);
        Ok(Accepted {
            url: p.url,
            host: p.host,
            category: p.category,
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
}
