//! OWASP CRS v4, unmodified (`SEKISHO_CORPORA`, default `../shared/corpora` beside the
//! repository; skipped when absent): every `@rx` pattern, regex variable key and tag regex
//! compiles, nearly all on `regex`; the translated ones agree with PCRE2 on CRS's own test
//! payloads.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::super::{end_only_text, Rx, RxOptions};
use super::payloads::inputs;
use crate::seclang::{Action, DirectiveKind, Key, Rule};

/// The CRS directory, or `None` (the test is skipped, saying so; or fails when
/// `SEKISHO_REQUIRE_CORPORA` is set) when its rules are not there.
fn crs() -> Option<PathBuf> {
    crate::public_corpora::corpus("crs/rules").and_then(|r| r.parent().map(Path::to_path_buf))
}

/// A pattern and where it comes from.
struct Pattern {
    text: String,
    opts: RxOptions,
    origin: String,
}

/// Every regex of the rule files and the setup example.
fn patterns(dir: &Path) -> Vec<Pattern> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    files.push(dir.join("crs-setup.conf.example"));
    let mut out = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for d in crate::parse_file(&f).unwrap() {
            let origin = format!("{name}:{}", d.line);
            let mut add = |text: &str, opts| {
                out.push(Pattern {
                    text: text.to_string(),
                    opts,
                    origin: origin.clone(),
                })
            };
            match &d.kind {
                DirectiveKind::Rule(r) => rule(r, &mut add),
                DirectiveKind::Action(a) => actions(a, &mut add),
                DirectiveKind::RemoveByTag(p) | DirectiveKind::RemoveByMsg(p) => {
                    add(p, RxOptions::PLAIN)
                }
                DirectiveKind::UpdateTargetByTag { pattern, .. } => add(pattern, RxOptions::PLAIN),
                _ => {}
            }
        }
    }
    out
}

fn rule(r: &Rule, add: &mut dyn FnMut(&str, RxOptions)) {
    let mut link = Some(r);
    while let Some(n) = link {
        if matches!(n.operator.name, "rx" | "rxGlobal") {
            add(&n.operator.param, RxOptions::OPERATOR);
        }
        for v in &n.variables {
            if let Some(Key::Regex(k)) = &v.key {
                add(k, RxOptions::VARIABLE_KEY);
            }
        }
        actions(&n.actions, add);
        link = n.chained.as_deref();
    }
}

/// `ctl:ruleRemoveByTag=REGEX` and `ctl:ruleRemoveTargetByTag=REGEX;TARGET`.
fn actions(list: &[Action], add: &mut dyn FnMut(&str, RxOptions)) {
    for a in list.iter().filter(|a| a.name == "ctl") {
        let v = a.value.as_deref().unwrap_or("");
        let tag = v
            .strip_prefix("ruleRemoveByTag=")
            .or_else(|| v.strip_prefix("ruleRemoveTargetByTag="));
        if let Some(t) = tag {
            add(t.split(';').next().unwrap_or(t), RxOptions::PLAIN);
        }
    }
}

#[test]
fn every_crs_regex_compiles_nearly_all_on_regex() {
    let Some(dir) = crs() else { return };
    let pats = patterns(&dir);
    let started = Instant::now();
    let compiled: Vec<Rx> = pats
        .iter()
        .map(|p| {
            Rx::compile_with(&p.text, p.opts)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", p.origin, p.text))
        })
        .collect();
    let took = started.elapsed();
    let ops = pats
        .iter()
        .filter(|p| p.opts == RxOptions::OPERATOR)
        .count();
    let on_pcre: Vec<(&Pattern, &Rx)> = pats
        .iter()
        .zip(&compiled)
        .filter(|(_, rx)| rx.engine() == "pcre2")
        .collect();
    println!(
        "CRS: {} regexes ({ops} @rx, {} keys and tags) compiled in {took:?}: {} on regex, {} on pcre2",
        pats.len(),
        pats.len() - ops,
        pats.len() - on_pcre.len(),
        on_pcre.len()
    );
    for (p, rx) in &on_pcre {
        println!(
            "  pcre2: {} ({}): {}",
            p.origin,
            rx.pcre_reason().unwrap_or(""),
            p.text
        );
    }
    assert!(ops > 250, "{ops}");
    assert!(on_pcre.is_empty(), "CRS patterns left to PCRE2");
}

/// Compile time and resident memory of the whole set; run alone, in release, for the numbers
/// in `notes/regex.md`.
#[test]
#[ignore]
fn crs_compile_cost() {
    let Some(dir) = crs() else { return };
    let pats = patterns(&dir);
    let before = resident_kib();
    let started = Instant::now();
    let compiled: Vec<Rx> = pats
        .iter()
        .filter_map(|p| Rx::compile_with(&p.text, p.opts).ok())
        .collect();
    let took = started.elapsed();
    let after_compile = resident_kib();
    let payloads = inputs(&dir);
    let started = Instant::now();
    let mut hits = 0usize;
    for rx in &compiled {
        hits += payloads
            .iter()
            .filter(|s| rx.is_match(s).unwrap_or(false))
            .count();
    }
    let matching = started.elapsed();
    println!(
        "{} patterns compiled in {took:?}, resident +{} KiB; {} inputs x patterns matched in \
         {matching:?} ({hits} hits), resident +{} KiB after matching",
        compiled.len(),
        after_compile - before,
        payloads.len(),
        resident_kib() - before,
    );
}

/// Resident set size from `/proc/self/status` (0 where there is none).
fn resident_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// PCRE2 as ModSecurity would compile `p` (with the JIT, only for speed here).
fn oracle(text: &str, opts: RxOptions) -> pcre2::bytes::Regex {
    pcre2::bytes::RegexBuilder::new()
        .caseless(opts.caseless)
        .dotall(opts.dotall)
        .jit_if_available(true)
        .build(text)
        .unwrap_or_else(|e| panic!("PCRE2 refuses {text:?}: {e}"))
}

type Groups = Vec<Option<Vec<u8>>>;

fn groups(re: &pcre2::bytes::Regex, s: &[u8]) -> Result<Option<Groups>, pcre2::Error> {
    let n = re.captures_len().min(10);
    Ok(re.captures(s)?.map(|c| {
        (0..n)
            .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()))
            .collect()
    }))
}

/// Every CRS pattern that runs on `regex` against PCRE2 compiled from the original text:
/// `is_match` and groups 0..=9 on every input. The original text answers for inputs without a
/// final newline (where `$` cannot tell DOLLAR_ENDONLY apart); inputs with one are checked
/// against the text with `$` written `\z`, which is itself checked to agree with the original
/// on every other input.
#[test]
fn crs_translations_agree_with_pcre2() {
    let Some(dir) = crs() else { return };
    let payloads = inputs(&dir);
    let started = Instant::now();
    let (mut checked, mut compared, mut gave_up, mut matched) = (0, 0usize, 0usize, 0usize);
    for p in patterns(&dir) {
        let rx = Rx::compile_with(&p.text, p.opts).unwrap();
        if rx.engine() != "regex" {
            continue;
        }
        checked += 1;
        let plain = oracle(&p.text, p.opts);
        let end_only = oracle(&end_only_text(&p.text, &p.opts).unwrap(), p.opts);
        for s in &payloads {
            let nl = s.last() == Some(&b'\n');
            let (Ok(want), Ok(other)) = (
                groups(if nl { &end_only } else { &plain }, s),
                groups(if nl { &plain } else { &end_only }, s),
            ) else {
                gave_up += 1;
                continue;
            };
            if !nl {
                assert_eq!(want, other, "{}: $ rewrite changed {s:?}", p.origin);
            }
            let what = || {
                format!(
                    "{}: {:?} on {:?}",
                    p.origin,
                    p.text,
                    String::from_utf8_lossy(s)
                )
            };
            assert_eq!(rx.is_match(s).unwrap(), want.is_some(), "{}", what());
            if want.is_some() {
                assert_eq!(rx.captures(s).unwrap(), want, "{}", what());
                matched += 1;
            }
            compared += 1;
        }
    }
    println!(
        "{checked} patterns x {} inputs: {compared} comparisons agree ({matched} matches), \
         PCRE2 gave up on {gave_up}, in {:?}",
        payloads.len(),
        started.elapsed()
    );
    assert!(checked > 250 && matched > 10_000, "{checked} {matched}");
    assert!(gave_up * 1000 < compared.max(1), "{gave_up}");
}
