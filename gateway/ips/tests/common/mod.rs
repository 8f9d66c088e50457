//! Helpers shared by the IPS tests.

#![allow(dead_code, clippy::unwrap_used)]

use sekisho_ips::ruleset::LoadOptions;
use sekisho_ips::vars::default_vars;
use sekisho_ips::{IpsConfig, RuleSet};

#[path = "../../../../tests/common/public_corpora.rs"]
mod public_corpora;
#[allow(unused_imports)] // not every test binary that shares this module reads the corpora
pub use public_corpora::{corpora, corpus};

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
    // A folder of its own per call: tests run in parallel, and two rule texts of the same
    // length (the earlier name) raced for one folder, each loading the other's rules.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sekisho-ips-kw-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
    let _ = std::fs::remove_dir_all(&dir);
    set
}
