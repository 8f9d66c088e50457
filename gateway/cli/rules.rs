//! `sekisho rules check`: compile the `[ips]` rule files and report what loads.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sekisho_ips::{IpsConfig, RuleSet};

/// Prints per-file counts, one line per skipped rule (`sid N skipped: unsupported keyword K`)
/// and per broken rule (`file:line: sid N: syntax error: …`), and a total; only the per-rule
/// lines say "skipped" or "unsupported", so tools can collect SIDs from them. Exit status 1 when
/// any rule has a syntax error (or a classification/threshold line is broken), 0 otherwise.
pub fn check(ips: &IpsConfig, config_path: &Path) -> anyhow::Result<ExitCode> {
    let opts = ips
        .load_options(config_path.parent())
        .with_context(|| format!("{}: [ips]", config_path.display()))?;
    let set = RuleSet::load(&opts)?;
    let r = set.report();
    for f in &r.files {
        println!(
            "{}: {} loaded, {} not run, {} broken, {} disabled (commented out)",
            f.path, f.loaded, f.skipped, f.errors, f.disabled
        );
    }
    for s in &r.skipped {
        println!("{s}");
    }
    for e in &r.errors {
        println!("{e}");
    }
    for e in &r.config_errors {
        println!("{e}");
    }
    println!(
        "total: {} rules loaded, {} not run, {} broken; pcre: {} linear, {} PCRE2; compiled in {} ms",
        r.loaded,
        r.skipped.len(),
        r.errors.len(),
        r.linear_pcres,
        r.backtracking_pcres,
        r.compile_ms
    );
    Ok(
        if r.errors.is_empty() && r.config_errors.iter().all(|e| e.contains("not supported")) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
