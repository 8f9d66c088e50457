//! The in-process table: bounded, entries with their expiry (checked when read).

use std::time::{Duration, Instant};

/// Keys with a lifetime, at most a fixed number (the least used go first).
pub struct Local {
    map: quick_cache::sync::Cache<String, (Vec<u8>, Instant)>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("entries", &self.map.len())
            .finish()
    }
}

impl Local {
    /// A table of at most `entries` keys.
    pub fn new(entries: usize) -> Self {
        Local {
            map: quick_cache::sync::Cache::new(entries.max(16)),
        }
    }

    /// The value under `key` while fresh.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.map.get(key) {
            Some((v, until)) if until > Instant::now() => Some(v),
            Some(_) => {
                self.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `val` under `key` for `ttl`.
    pub fn set(&self, key: &str, val: &[u8], ttl: Duration) {
        let now = Instant::now();
        let until = now
            .checked_add(ttl)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        self.map.insert(key.to_string(), (val.to_vec(), until));
    }

    /// Removes `key`, returning its value while fresh.
    pub fn take(&self, key: &str) -> Option<Vec<u8>> {
        let (_, (v, until)) = self.map.remove(key)?;
        (until > Instant::now()).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_takes_once() {
        let l = Local::new(4);
        l.set("a", b"1", Duration::from_secs(60));
        l.set("b", b"2", Duration::from_millis(0));
        assert_eq!(l.get("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(l.get("b"), None);
        assert_eq!(l.take("a").as_deref(), Some(&b"1"[..]));
        assert_eq!(l.take("a"), None);
        for i in 0..1000 {
            l.set(&i.to_string(), b"x", Duration::from_secs(60));
        }
        assert!(l.map.len() <= 64, "bounded: {}", l.map.len());
    }
}
