//! Load rate over the Emerging Threats Open corpus (../shared/corpora/et-open).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use sekisho_ips::rule::RuleError;
use sekisho_ips::RuleSet;

mod common;
use common::{corpus, et_config};

/// SIDs of enabled rules that are HTTP, TLS or file rules, read straight from the text.
fn enabled_http_tls_file(et: &std::path::Path) -> HashSet<u32> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir(et).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("rules") {
            continue;
        }
        for l in std::fs::read_to_string(&p).unwrap().lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let proto = l.split_whitespace().nth(1).unwrap_or("");
            let file = l.contains("file.data;") || l.contains("file_data;");
            if matches!(proto, "http" | "http1" | "http2" | "tls") || file {
                if let Some(sid) = sekisho_ips::rule::sniff_sid(l) {
                    out.insert(sid);
                }
            }
        }
    }
    out
}

#[test]
fn et_open_loads_at_least_99_percent_of_http_tls_file_rules() {
    let Some(et) = corpus("et-open") else {
        return;
    };
    let opts = et_config().load_options(None).unwrap();
    let set = RuleSet::load(&opts).unwrap();
    let r = set.report();
    let wanted = enabled_http_tls_file(&et);
    let loaded: HashSet<u32> = (0..set.len()).map(|i| set.rule(i).rule.sid).collect();
    let got = wanted.iter().filter(|s| loaded.contains(s)).count();
    let share = got as f64 / wanted.len() as f64;
    let mut why = std::collections::BTreeMap::<String, usize>::new();
    for s in &r.skipped {
        if s.sid.is_some_and(|sid| wanted.contains(&sid)) {
            if let RuleError::Unsupported { keyword, .. } = &s.error {
                *why.entry(keyword.clone()).or_default() += 1;
            }
        }
    }
    eprintln!(
        "ET Open: {} loaded, {} skipped, {} errors, {} linear / {} PCRE2 pcres, compiled in {} ms; \
         HTTP/TLS/file: {got}/{} = {:.2}%; skipped by keyword: {why:?}",
        r.loaded,
        r.skipped.len(),
        r.errors.len(),
        r.linear_pcres,
        r.backtracking_pcres,
        r.compile_ms,
        wanted.len(),
        share * 100.0
    );
    eprintln!(
        "index (phase, automata, patterns, indicators, always): {:?}",
        set.index_stats()
    );
    for e in r.errors.iter() {
        eprintln!("error: {e}");
    }
    assert!(share >= 0.99, "only {:.2}% loaded", share * 100.0);
    assert!(
        r.errors.is_empty(),
        "ET Open rules reported as broken: {}",
        r.errors.len()
    );
    assert!(r.backtracking_pcres > 0 && r.linear_pcres > r.backtracking_pcres);
}
