//! Helpers shared by the criterion benches.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/corpora`, or `SEKISHO_CORPORA`.
pub fn corpora() -> PathBuf {
    std::env::var_os("SEKISHO_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"))
}

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
