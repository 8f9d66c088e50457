//! Helpers shared by the criterion benches.
#![allow(dead_code)]

#[path = "../../tests/common/public_corpora.rs"]
mod public_corpora;
#[allow(unused_imports)] // not every test binary that shares this module reads the corpora
pub use public_corpora::{corpora, corpus};

/// This process's resident memory, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The allocator the `sekisho` binary runs with (gateway/cli/main.rs), so that the benches
/// measure the engines as deployed.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
