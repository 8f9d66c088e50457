//! Helpers shared by the IPS tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use sekisho_ips::ruleset::LoadOptions;
use sekisho_ips::vars::default_vars;
use sekisho_ips::{IpsConfig, RuleSet};

/// The public corpora: `SEKISHO_CORPORA`, else `../shared/corpora` beside the repository.
/// Tests reach them through [`corpus`].
pub fn corpora() -> PathBuf {
    std::env::var_os("SEKISHO_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
        })
}

/// `rel` under the public corpora ([`corpora`]) when it exists. When it does not: `None`, after
/// a `SKIPPED <test>: …` line on stderr naming the missing path, so that the test returns early
/// (`let Some(et) = corpus("et-open") else { return };`); but a panic when
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
    let thread = std::thread::current();
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {}: needs the public corpora: {} not found (put them at ../shared/corpora or set SEKISHO_CORPORA)",
        thread.name().unwrap_or("test"),
        path.display()
    );
    None
}

/// An `[ips]` table over every ET Open rule file and its classification: only called by tests
/// that checked `corpus("et-open")` first.
pub fn et_config() -> IpsConfig {
    let et = corpora().join("et-open");
    assert!(et.is_dir(), "ET Open corpus missing at {}", et.display());
    toml::from_str(&format!(
        "rules = [{:?}]\nclassification = {:?}\n",
        et.join("*.rules").display().to_string(),
        et.join("classification.config").display().to_string()
    ))
    .unwrap()
}

/// Loads `rules` (and an optional threshold.config) from a temporary folder, with a
/// classification for `web-application-attack`; asserts nothing was broken or skipped.
pub fn load_with(rules: &str, threshold: Option<&str>) -> RuleSet {
    let dir = std::env::temp_dir().join(format!(
        "sekisho-ips-kw-{}-{}",
        std::process::id(),
        rules.len() + threshold.map_or(0, str::len)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("t.rules");
    std::fs::write(&f, rules).unwrap();
    let t = threshold.map(|t| {
        let p = dir.join("threshold.config");
        std::fs::write(&p, t).unwrap();
        p
    });
    let c = dir.join("classification.config");
    std::fs::write(
        &c,
        "config classification: web-application-attack,Web Application Attack,1\n",
    )
    .unwrap();
    let set = RuleSet::load(&LoadOptions {
        rules: vec![f],
        classification: Some(c),
        threshold: t,
        vars: default_vars(),
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(set.report().errors.is_empty(), "{:?}", set.report().errors);
    assert!(
        set.report().skipped.is_empty(),
        "{:?}",
        set.report().skipped
    );
    set
}
