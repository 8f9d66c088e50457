//! The store against a real `redis-server` (Debian's redis-server, started here on a free
//! loopback port): keys and single-use takes across two nodes, the bus, and what happens when
//! Redis stops answering (SIGSTOP: every call falls back within the timeout), dies, and comes
//! back.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sekisho_core::{SharedState, StoreBackend, StoreConfig};
use sekisho_store::Store;

#[path = "../../../tests/common/redis.rs"]
mod redis_server;
use redis_server::Redis;

fn store(port: u16, prefix: &str) -> Arc<Store> {
    Store::open(&StoreConfig {
        backend: StoreBackend::Redis,
        url: Some(format!("redis://127.0.0.1:{port}/")),
        prefix: prefix.into(),
        timeout_ms: 100,
        retry_secs: 1,
        ..StoreConfig::default()
    })
    .unwrap()
}

fn counter(s: &Store, name: &str, label: (&str, &str)) -> u64 {
    let mut n = 0;
    for c in s.collectors() {
        for fam in c.collect() {
            if fam.name() != name {
                continue;
            }
            for m in fam.get_metric() {
                if m.get_label()
                    .iter()
                    .any(|l| l.name() == label.0 && l.value() == label.1)
                {
                    n += m.get_counter().get_value() as u64;
                }
            }
        }
    }
    n
}

fn redis_or_skip() -> Option<Redis> {
    Redis::start("store redis tests")
}

fn eventually(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_nodes_share_keys_takes_and_the_bus() {
    let Some(redis) = redis_or_skip() else { return };
    let (a, b) = (store(redis.port, "t1:"), store(redis.port, "t1:"));
    // Redis is connected in the background: the first calls may fall back.
    eventually("node a reaches Redis", || {
        a.set("warn", "probe", b"1", Duration::from_secs(5));
        b.get("warn", "probe").is_some()
    });
    a.set("warn", "grant", b"yes", Duration::from_secs(60));
    assert_eq!(b.get("warn", "grant").as_deref(), Some(&b"yes"[..]));
    a.set("warn", "token", b"t", Duration::from_secs(60));
    assert_eq!(b.take("warn", "token").as_deref(), Some(&b"t"[..]));
    assert_eq!(
        a.take("warn", "token"),
        None,
        "a single-use key is taken once"
    );
    a.set("warn", "short", b"x", Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(b.get("warn", "short"), None, "expired in Redis");

    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    b.subscribe(
        "t.topic",
        Arc::new(move |p: &[u8]| {
            assert_eq!(p, b"hello");
            g.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let own = Arc::new(AtomicUsize::new(0));
    let o = own.clone();
    a.subscribe(
        "t.topic",
        Arc::new(move |_: &[u8]| {
            o.fetch_add(1, Ordering::SeqCst);
        }),
    );
    eventually("b hears a on the bus", || {
        a.publish("t.topic", b"hello".to_vec());
        got.load(Ordering::SeqCst) > 0
    });
    assert_eq!(own.load(Ordering::SeqCst), 0, "a node does not hear itself");
    assert!(
        counter(
            &a,
            "sekisho_store_bus_messages_total",
            ("direction", "sent")
        ) > 0
    );
    assert!(
        counter(
            &b,
            "sekisho_store_bus_messages_total",
            ("direction", "received")
        ) > 0
    );
}

#[test]
fn a_stalled_or_dead_redis_falls_back_within_the_timeout_and_recovers() {
    let Some(redis) = redis_or_skip() else { return };
    let port = redis.port;
    let (a, witness) = (store(port, "t2:"), store(port, "t2:"));
    // Reached only when a second node sees the key: a's own reads may be answered from its
    // local table while the first connection is still being made.
    eventually("a reaches Redis", || {
        a.set("warn", "probe", b"1", Duration::from_secs(5));
        witness.get("warn", "probe").is_some()
    });
    drop(witness);
    let timeouts0 = counter(&a, "sekisho_store_fallback_total", ("reason", "timeout"));
    let downs0 = counter(&a, "sekisho_store_fallback_total", ("reason", "down"));

    // Stalled: each call is answered from this node's table within the timeout; three in a
    // row without an answer mark Redis down, and calls then fall back at once. A write that
    // timed out is not kept here (it may still land in Redis: a single-use key must not exist
    // twice); one made while Redis is marked down is.
    redis.signal("-STOP");
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(a.get("warn", "probe-stalled"), None);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    // Two or three time out; a third may find the connection already given up (down).
    let timeouts = counter(&a, "sekisho_store_fallback_total", ("reason", "timeout")) - timeouts0;
    let downs = counter(&a, "sekisho_store_fallback_total", ("reason", "down")) - downs0;
    assert!(timeouts >= 2 && timeouts + downs == 3, "{timeouts} {downs}");
    let t1 = Instant::now();
    a.set("warn", "during", b"local", Duration::from_secs(60));
    assert_eq!(a.get("warn", "during").as_deref(), Some(&b"local"[..]));
    assert!(
        t1.elapsed() < Duration::from_millis(50),
        "down: at once, {:?}",
        t1.elapsed()
    );
    assert!(counter(&a, "sekisho_store_fallback_total", ("reason", "down")) > downs0 + downs);
    assert_eq!(a.take("warn", "during").as_deref(), Some(&b"local"[..]));
    redis.signal("-CONT");

    // Dead: refused at once, then marked down (no connection attempt per call).
    drop(redis);
    let t0 = Instant::now();
    for i in 0..200 {
        a.set("warn", &format!("k{i}"), b"v", Duration::from_secs(60));
        assert_eq!(a.get("warn", &format!("k{i}")).as_deref(), Some(&b"v"[..]));
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(counter(&a, "sekisho_store_fallback_total", ("kind", "warn")) >= 400);

    // Back: Redis answers again after retry_secs.
    let _redis = Redis::on(port, "store redis tests").unwrap();
    let b = store(port, "t2:");
    eventually("a uses Redis again", || {
        a.set("warn", "after", b"remote", Duration::from_secs(60));
        b.get("warn", "after").is_some()
    });
}
