//! The reverse proxy's authorization decision at the network's scale: a route's allowed
//! facilities with 1, 1,000 and 237,000 entries (IDs, plus a few prefix and wildcard patterns),
//! looked up for a listed ID, an ID matched by a prefix, and an unlisted ID. The lookup must not
//! grow with the list (issue 27: a route of 237,000 IDs answered 63 requests/s against 26,215
//! with one). Prints the build time of the 237,000-entry set.

#![allow(missing_docs)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sekisho_proxy::facilities::FacilitySet;

fn ids(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{:02}{:08}", 13 + i % 34, i))
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("facility_decision");
    for n in [1usize, 1_000, 237_000] {
        let mut entries = ids(n);
        entries.extend(["99*".to_string(), "T-*-tokyo".to_string()]);
        let t = Instant::now();
        let set = FacilitySet::new(entries.iter().map(String::as_str));
        if n == 237_000 {
            eprintln!(
                "237,000 entries: set built in {:.1} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
        let listed = entries[n - 1].clone();
        for (what, id) in [
            ("listed", listed.as_str()),
            ("prefix", "9912345678"),
            ("unlisted", "4700000000x"),
        ] {
            g.bench_with_input(BenchmarkId::new(what, n), &id, |b, id| {
                b.iter(|| std::hint::black_box(set.contains(std::hint::black_box(id))))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
