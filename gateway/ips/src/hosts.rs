//! State the IPS keeps per host and host pair beyond one flow: `xbits` and the counters of
//! `threshold` / `detection_filter`. It lives in the engine, so a reload keeps it (as
//! Suricata's host and ippair tables outlive a rule reload), and in a cluster (`[store]` with
//! Redis) every change is published on the store's bus and applied by the other nodes: a bit
//! set on one node is seen by rules on all, and a threshold counts the hits of every node.
//! The hot path never waits: changes are sent without waiting and applied as they arrive
//! (eventually consistent, within a bus round trip); a node that misses messages while Redis is
//! away goes on with its own state.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use sekisho_core::SharedState;

use crate::state::{Owner, Xbit, XbitChange, XbitStore};

/// Threshold counters held at most; past it the expired go, then all.
const THRESHOLD_ENTRIES: usize = 65_536;
/// The longest window or bit lifetime a bus message may carry (rules' values are u32 seconds;
/// anything longer did not come from a node).
pub(crate) const MAX_SECS: u64 = 86_400 * 30;
/// The bus topics.
const XBITS: &str = "ips.xbits";
const HITS: &str = "ips.hits";

/// (gid, sid, tracked source, tracked destination).
pub type ThresholdKey = (u32, u32, Option<IpAddr>, Option<IpAddr>);

/// xbits and threshold counters, shared by every rule set the engine builds.
#[derive(Debug, Default)]
pub struct HostState {
    xbits: Mutex<XbitStore>,
    thresholds: Mutex<HashMap<ThresholdKey, (Instant, u32)>>,
    bus: OnceLock<Arc<dyn SharedState>>,
}

impl HostState {
    /// Publishes this node's changes on `shared`'s bus and applies the other nodes' (the first
    /// store given stays).
    pub fn share(self: &Arc<Self>, shared: &Arc<dyn SharedState>) {
        if self.bus.set(Arc::clone(shared)).is_err() {
            return;
        }
        let weak: Weak<HostState> = Arc::downgrade(self);
        let w = weak.clone();
        shared.subscribe(
            XBITS,
            Arc::new(move |p: &[u8]| {
                if let (Some(h), Some(c)) = (w.upgrade(), XbitChange::decode(p)) {
                    h.lock_xbits().receive(c, Instant::now());
                }
            }),
        );
        shared.subscribe(
            HITS,
            Arc::new(move |p: &[u8]| {
                if let (Some(h), Some((key, window))) = (weak.upgrade(), decode_hit(p)) {
                    h.count(key, window, None);
                }
            }),
        );
    }

    fn lock_xbits(&self) -> std::sync::MutexGuard<'_, XbitStore> {
        self.xbits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when every `isset` / `isnotset` condition of `bits` holds for `src` → `dst`.
    pub fn xbits_hold(&self, bits: &[Xbit], src: IpAddr, dst: Option<IpAddr>) -> bool {
        let mut store = self.lock_xbits();
        let now = Instant::now();
        bits.iter().all(|x| store.holds(x, src, dst, now))
    }

    /// Makes `set` / `unset` / `toggle` changes; returns how many sets found no room.
    pub fn xbits_apply<'a>(
        &self,
        changes: impl Iterator<Item = &'a Xbit>,
        src: IpAddr,
        dst: Option<IpAddr>,
    ) -> u64 {
        let mut store = self.lock_xbits();
        let (now, full) = (Instant::now(), store.full);
        let bus = self.bus.get();
        let mut made = Vec::new();
        for x in changes {
            let change = store.apply(x, src, dst, now);
            if bus.is_some() {
                made.extend(change);
            }
        }
        let refused = store.full - full;
        drop(store);
        if let Some(bus) = bus {
            for c in made {
                bus.publish(XBITS, c.encode());
            }
        }
        refused
    }

    /// One more hit of `key` in a window of `window`: the hits counted in the current window,
    /// this one included. With `every` (`type threshold`: alert on every `count`-th hit) the
    /// count starts again once it reaches `count`, under the same lock. Other nodes are told of
    /// the hit while it can still change their decision (always with `every`, otherwise up to
    /// `count + 1`).
    pub fn hit(&self, key: ThresholdKey, window: Duration, count: u32, every: bool) -> u32 {
        let n = self.count(key, window, every.then_some(count));
        if every || n <= count.saturating_add(1) {
            if let Some(bus) = self.bus.get() {
                bus.publish(HITS, encode_hit(key, window));
            }
        }
        n
    }

    fn count(&self, key: ThresholdKey, window: Duration, reset_at: Option<u32>) -> u32 {
        let now = Instant::now();
        let mut map = self.thresholds.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= THRESHOLD_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, (start, _)| now.duration_since(*start) <= window);
            if map.len() >= THRESHOLD_ENTRIES {
                map.clear();
            }
        }
        let e = map.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) > window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        let n = e.1;
        if reset_at.is_some_and(|c| n >= c) {
            e.1 = 0;
        }
        n
    }

    /// xbits held (for tests and metrics).
    pub fn xbits_len(&self) -> usize {
        self.lock_xbits().len()
    }
}

fn ip_text(a: Option<IpAddr>) -> String {
    a.map_or_else(|| "-".into(), |a| a.to_string())
}

fn ip_parse(s: &str) -> Option<Option<IpAddr>> {
    if s == "-" {
        Some(None)
    } else {
        s.parse().ok().map(Some)
    }
}

/// `gid sid src dst window_secs` (`-` for an untracked side).
fn encode_hit(k: ThresholdKey, window: Duration) -> Vec<u8> {
    format!(
        "{} {} {} {} {}",
        k.0,
        k.1,
        ip_text(k.2),
        ip_text(k.3),
        window.as_secs()
    )
    .into_bytes()
}

fn decode_hit(p: &[u8]) -> Option<(ThresholdKey, Duration)> {
    let text = std::str::from_utf8(p).ok()?;
    let f: Vec<&str> = text.split(' ').collect();
    let [gid, sid, src, dst, secs] = f.as_slice() else {
        return None;
    };
    let key = (
        gid.parse().ok()?,
        sid.parse().ok()?,
        ip_parse(src)?,
        ip_parse(dst)?,
    );
    let secs: u64 = secs.parse().ok()?;
    (secs <= MAX_SECS).then(|| (key, Duration::from_secs(secs)))
}

/// An owner as text: `h IP` or `p IP IP`.
pub(crate) fn owner_text(o: &Owner) -> String {
    match o {
        Owner::Host(a) => format!("h {a}"),
        Owner::Pair(a, b) => format!("p {a} {b}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hits_round_trip() {
        let k = (1, 2_000_001, Some("10.0.0.1".parse().unwrap()), None);
        let w = Duration::from_secs(60);
        assert_eq!(decode_hit(&encode_hit(k, w)), Some((k, w)));
        assert_eq!(decode_hit(b"1 2 x - 60"), None);
        assert_eq!(decode_hit(b"junk"), None);
        assert_eq!(
            decode_hit(b"1 2 - - 99999999999"),
            None,
            "no window beyond 30 days"
        );
    }

    /// Two engines joined by a bus: a bit set on one holds on the other, a threshold counts both.
    #[test]
    fn two_nodes_share_bits_and_counts() {
        let bus = Arc::new(sekisho_core::LoopbackBus::default());
        let (a, b) = (
            Arc::new(HostState::default()),
            Arc::new(HostState::default()),
        );
        let (sa, sb): (Arc<dyn SharedState>, Arc<dyn SharedState>) = (bus.node(0), bus.node(1));
        a.share(&sa);
        b.share(&sb);
        let set = bit("set,seen,track ip_src,expire 60");
        let isset = bit("isset,seen,track ip_src");
        let src: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(!b.xbits_hold(std::slice::from_ref(&isset), src, None));
        a.xbits_apply([&set].into_iter(), src, None);
        assert!(b.xbits_hold(std::slice::from_ref(&isset), src, None));
        let unset = bit("unset,seen,track ip_src");
        b.xbits_apply([&unset].into_iter(), src, None);
        assert!(!a.xbits_hold(&[isset], src, None));
        let k = (1, 9, Some(src), None);
        let w = Duration::from_secs(60);
        assert_eq!(a.hit(k, w, 5, false), 1);
        assert_eq!(b.hit(k, w, 5, false), 2);
        assert_eq!(a.hit(k, w, 5, false), 3);
        // `type threshold`: the count starts again at `count`, on the node that reached it.
        let t = (1, 10, Some(src), None);
        assert_eq!(a.hit(t, w, 2, true), 1);
        assert_eq!(a.hit(t, w, 2, true), 2);
        assert_eq!(a.hit(t, w, 2, true), 1);
        // An unset made where the bit never arrived still reaches the others.
        a.xbits_apply([&set].into_iter(), src, None);
        let fresh = Arc::new(HostState::default());
        let sc = bus.node(2);
        fresh.share(&sc);
        fresh.xbits_apply([&unset].into_iter(), src, None);
        assert!(!a.xbits_hold(&[bit("isset,seen,track ip_src")], src, None));
    }

    fn bit(v: &str) -> Xbit {
        match Xbit::parse(v).unwrap() {
            crate::state::XbitsOption::Bit(b) => b,
            crate::state::XbitsOption::NoAlert => unreachable!("{v}"),
        }
    }
}
