//! The run's report: passed/total per rule family and overall, printed; the failures that are
//! not overridden, with details; overrides that pass again; and, when `CRS_REPORT` names a
//! file, the same as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::overrides::Overrides;
use crate::run::{CaseResult, StageResult};

/// Passed and total.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub passed: usize,
    pub total: usize,
}

/// Per family, and overall.
pub fn tally(results: &[CaseResult]) -> (BTreeMap<String, Tally>, Tally) {
    let mut fam: BTreeMap<String, Tally> = BTreeMap::new();
    let mut all = Tally::default();
    for r in results {
        let t = fam.entry(r.family.clone()).or_default();
        t.total += 1;
        all.total += 1;
        if r.pass() {
            t.passed += 1;
            all.passed += 1;
        }
    }
    (fam, all)
}

fn pct(t: Tally) -> f64 {
    if t.total == 0 {
        0.0
    } else {
        100.0 * t.passed as f64 / t.total as f64
    }
}

/// Prints the tallies.
pub fn print_tally(results: &[CaseResult], elapsed: Duration) {
    let (fam, all) = tally(results);
    println!("\nCRS regression: passed/total per family");
    for (f, t) in &fam {
        println!("  {f:<45} {:>5}/{:<5} {:>5.1}%", t.passed, t.total, pct(*t));
    }
    println!(
        "  {:<45} {:>5}/{:<5} {:>5.1}%   in {:.0} s",
        "OVERALL",
        all.passed,
        all.total,
        pct(all),
        elapsed.as_secs_f64()
    );
}

/// One stage in a few lines.
pub fn stage_details(s: &StageResult) -> String {
    let o = &s.observed;
    format!(
        "      problems: {}\n      status {:?} (expected {:?}), reached backend: {}, fired: {:?}{}{}",
        s.verdict.problems.join("; "),
        o.exchange.status,
        s.expected_status,
        o.reached_backend,
        o.fired,
        o.exchange
            .error
            .as_deref()
            .map(|e| format!(", error: {e}"))
            .unwrap_or_default(),
        if o.other_events.is_empty() {
            String::new()
        } else {
            format!(", other events: {}", o.other_events.join(","))
        }
    )
}

/// Prints failures outside the overrides and stale overrides.
pub fn print_failures(new: &[&CaseResult], stale: &[&CaseResult]) {
    if !new.is_empty() {
        println!(
            "\n{} failing tests not in tests/crs-overrides.yaml:",
            new.len()
        );
        for r in new {
            println!("  {} ({})", r.id, r.desc);
            if let Some(s) = r.failing() {
                println!("{}", stage_details(s));
            }
        }
    }
    if !stale.is_empty() {
        println!(
            "\n{} overridden tests now pass (stale overrides):",
            stale.len()
        );
        for r in stale {
            println!("  {}", r.id);
        }
    }
}

/// The JSON report.
pub fn json(results: &[CaseResult], overrides: &Overrides, elapsed: Duration) -> serde_json::Value {
    let (fam, all) = tally(results);
    let families: serde_json::Map<String, serde_json::Value> = fam
        .iter()
        .map(|(f, t)| {
            (
                f.clone(),
                serde_json::json!({"passed": t.passed, "total": t.total}),
            )
        })
        .collect();
    let tests: Vec<serde_json::Value> = results
        .iter()
        .map(|r| test_json(r, overrides.get(&r.id)))
        .collect();
    serde_json::json!({
        "passed": all.passed,
        "total": all.total,
        "elapsed_secs": elapsed.as_secs_f64(),
        "families": families,
        "tests": tests,
    })
}

fn test_json(r: &CaseResult, overridden: Option<&String>) -> serde_json::Value {
    let s = r.failing().or(r.stages.last());
    let o = s.map(|s| &s.observed);
    serde_json::json!({
        "id": r.id,
        "family": r.family,
        "pass": r.pass(),
        "override": overridden,
        "problems": s.map(|s| s.verdict.problems.clone()).unwrap_or_default(),
        "missing": s.map(|s| s.verdict.missing.clone()).unwrap_or_default(),
        "unexpected": s.map(|s| s.verdict.unexpected.clone()).unwrap_or_default(),
        "status": o.and_then(|o| o.exchange.status),
        "expected_status": s.map(|s| s.expected_status.clone()).unwrap_or_default(),
        "fired": o.map(|o| o.fired.iter().copied().collect::<Vec<_>>()).unwrap_or_default(),
        "reached_backend": o.map(|o| o.reached_backend),
        "error": o.and_then(|o| o.exchange.error.clone()),
        "other_events": o.map(|o| o.other_events.clone()).unwrap_or_default(),
        "log": o.filter(|_| !r.pass()).map(|o| o.lines.clone()).unwrap_or_default(),
    })
}
