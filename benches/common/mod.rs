//! Helpers shared by the criterion benches.
#![allow(dead_code)]

use std::path::PathBuf;

/// The public corpora: `SEKISHO_CORPORA`, else `../shared/corpora` beside the repository.
/// Benches reach them through [`corpus`].
pub fn corpora() -> PathBuf {
    std::env::var_os("SEKISHO_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora"))
}

/// `rel` under the public corpora ([`corpora`]) when it exists. When it does not: `None`, after
/// a `SKIPPED <bench>: …` line on stderr naming the missing path, so that the bench function
/// returns before its groups (`let Some(crs) = corpus("crs") else { return };`); but a panic
/// when `SEKISHO_REQUIRE_CORPORA` is set (`scripts/test.sh` sets it whenever the corpora folder
/// is there, as in CI, so that a missing file fails instead of skipping).
pub fn corpus(rel: &str) -> Option<PathBuf> {
    let path = corpora().join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("SEKISHO_REQUIRE_CORPORA").is_none(),
        "needs the public corpora: {} not found, and SEKISHO_REQUIRE_CORPORA is set",
        path.display()
    );
    eprintln!(
        "SKIPPED bench {}: needs the public corpora: {} not found (put them at ../shared/corpora or set SEKISHO_CORPORA)",
        bench_name(),
        path.display()
    );
    None
}

/// This bench's name: its executable's, without the hash cargo appends (`waf-0123…` is `waf`).
fn bench_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe
        .as_deref()
        .and_then(|p| p.file_stem())
        .map_or_else(|| "?".to_string(), |s| s.to_string_lossy().into_owned());
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    }
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
