//! Finding the public corpora (OWASP CRS, ET Open, UT1, IHE samples, YARA rule sets) from any
//! test or bench of the workspace: one file, included with `#[path]` by each crate's tests (they
//! cannot share a module otherwise). `SEKISHO_CORPORA`, else `../shared/corpora` beside the
//! workspace.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The workspace root: the nearest folder above this crate holding `Cargo.lock`.
fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .unwrap_or(here)
        .to_path_buf()
}

/// The corpora folder: `SEKISHO_CORPORA`, else `../shared/corpora` beside the workspace.
pub fn corpora() -> PathBuf {
    std::env::var_os("SEKISHO_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/corpora"))
}

/// `rel` under [`corpora`] when it exists. When it does not: `None`, after a `SKIPPED <test>: …`
/// line on stderr naming the missing path, so that the caller returns early
/// (`let Some(crs) = corpus("crs") else { return };`); but a panic when
/// `SEKISHO_REQUIRE_CORPORA` is set (`scripts/test.sh` sets it whenever the corpora folder is
/// there, as in CI, so that a missing file fails instead of skipping).
pub fn corpus(rel: &str) -> Option<PathBuf> {
    use std::io::Write as _;
    let path = corpora().join(rel);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("SEKISHO_REQUIRE_CORPORA").is_none(),
        "needs the public corpora: {} not found, and SEKISHO_REQUIRE_CORPORA is set",
        path.display()
    );
    // Straight to stderr: the test harness captures `eprintln!`, and this line is meant to be
    // seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}: needs the public corpora: {} not found (put them at ../shared/corpora or set SEKISHO_CORPORA)",
        std::thread::current().name().unwrap_or("bench"),
        path.display()
    );
    None
}
