//! The shared store's cost per call against a real `redis-server` on loopback (started here;
//! skipped without one): a grant lookup (`get`, what a request to a warn-category host costs
//! once its node's five-second memo has lapsed), a write (`set`), a single-use `take`, a bus
//! `publish` (what an IPS xbit change or threshold hit adds to the rule that made it), and the
//! fallback when Redis is down (what every call costs then).
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sekisho_core::{SharedState, StoreBackend, StoreConfig};
use sekisho_store::Store;

#[path = "../../../tests/common/redis.rs"]
mod redis_server;
use redis_server::Redis;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(16379)
}

fn config(port: u16) -> StoreConfig {
    StoreConfig {
        backend: StoreBackend::Redis,
        url: Some(format!("redis://127.0.0.1:{port}/")),
        timeout_ms: 200,
        ..StoreConfig::default()
    }
}

fn bench(c: &mut Criterion) {
    let Some(redis) = Redis::start("store bench") else {
        return;
    };
    let port = redis.port;
    let t0 = Instant::now();
    let Ok(store) = Store::open(&config(port)) else {
        return;
    };
    let hour = Duration::from_secs(3600);
    while store.get("bench", "probe").is_none() && t0.elapsed() < Duration::from_secs(10) {
        store.set("bench", "probe", b"1", hour);
    }
    store.set("bench", "grant", b"1", hour);
    let mut g = c.benchmark_group("store");
    g.bench_function("redis_get_hit", |b| b.iter(|| store.get("warn", "grant")));
    g.bench_function("redis_set", |b| {
        b.iter(|| {
            store.set(
                "warn",
                "token",
                b"10.0.0.1\nhost\nurl\ncat\n3600\n600",
                hour,
            )
        })
    });
    g.bench_function("redis_take_miss", |b| {
        b.iter(|| store.take("warn", "no-such-token"))
    });
    g.bench_function("bus_publish", |b| {
        b.iter(|| store.publish("bench.topic", b"s 60 h 10.0.0.1 marked".to_vec()))
    });
    if let Ok(down) = Store::open(&config(free_port())) {
        let _ = down.get("warn", "x"); // the refused connection marks it down
        std::thread::sleep(Duration::from_millis(50));
        g.bench_function("fallback_down_get", |b| {
            b.iter(|| down.get("warn", "grant"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
