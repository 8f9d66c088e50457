//! Suricata rule text, threshold.config and classification.config: parsed line by line, then
//! loaded and compiled as a rule set (prefilter, regex, PCRE2) from files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_ips::matchers::PcreLimits;
use sekisho_ips::rule::{parse_rule, sniff_sid, split_options};
use sekisho_ips::vars::default_vars;
use sekisho_ips::{LoadOptions, RuleSet};

fuzz_target!(|data: &[u8]| {
    let parts = sekisho_fuzz::split_n(data, 0, 3);
    let rules = String::from_utf8_lossy(parts[0]);
    let vars = default_vars();
    let limits = PcreLimits::default();
    for (i, line) in rules.lines().enumerate() {
        let _ = sniff_sid(line);
        if let Some(open) = line.find('(') {
            let _ = split_options(line[open + 1..].trim_end().trim_end_matches(')'));
        }
        let _ = parse_rule(line, &vars, &limits, "fuzz.rules", i as u32 + 1);
    }
    let dir = sekisho_fuzz::scratch_dir("ips_rule");
    let files = ["fuzz.rules", "threshold.config", "classification.config"];
    for (name, part) in files.iter().zip(&parts) {
        std::fs::write(dir.join(name), part).expect("write");
    }
    let opts = LoadOptions {
        rules: vec![dir.join(files[0])],
        threshold: Some(dir.join(files[1])),
        classification: Some(dir.join(files[2])),
        vars,
        ..LoadOptions::default()
    };
    if let Ok(set) = RuleSet::load(&opts) {
        // Rules loaded, each counted once (a directionless rule compiles once per side).
        let report = set.report();
        assert!(report.loaded <= rules.lines().count(), "{report:?}");
    }
});
