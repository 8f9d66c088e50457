//! Profiling loop (not a benchmark): CRS PL1 on a benign GET and a 4 KB form, µs per
//! transaction, best of several rounds. `cargo run --release -p sekisho-waf --example
//! crs_loop -- <crs dir> [get|form|both] [rounds]`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sekisho_waf::engine::Waf;

#[path = "../../../benches/common/waf_crs.rs"]
mod waf_crs;
use waf_crs::{benign_get, crs_files, form, form_head, run};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let crs = PathBuf::from(&args[1]);
    let which = args.get(2).map_or("both", String::as_str);
    let rounds: usize = args.get(3).map_or(5, |s| s.parse().expect("rounds"));
    let waf = Arc::new(Waf::load(&crs_files(&crs)).expect("CRS loads"));
    let get = benign_get();
    let post = form_head();
    let body = form();
    assert_eq!(run(&waf, &get, b""), 0);
    assert_eq!(run(&waf, &post, &body), 0);
    let sweep = vec![1u8; 8 << 20];
    for (name, h, b, n, cold) in [
        ("get", &get, &b""[..], 20_000, false),
        ("form", &post, &body[..], 2_000, false),
        ("get-cold", &get, &b""[..], 3_000, true),
    ] {
        if which != "both" && name != which {
            continue;
        }
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..n {
                if cold {
                    let s: u64 = sweep.iter().step_by(64).map(|&x| u64::from(x)).sum();
                    std::hint::black_box(s);
                }
                let t = Instant::now();
                std::hint::black_box(run(&waf, h, b));
                total += t.elapsed();
            }
            best = best.min(total.as_secs_f64() * 1e6 / n as f64);
        }
        println!("{name}: {best:.1} µs");
    }
}
