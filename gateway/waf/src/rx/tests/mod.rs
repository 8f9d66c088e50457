//! Tests of the regex engine: every translation rule checked against PCRE2 itself (the
//! `pcre2` crate, compiled from the original pattern with DOTALL), the odd cases asserted
//! explicitly, and random patterns compared the same way.

#![allow(clippy::unwrap_used)]

mod crs;
mod payloads;
mod random;
mod rules;

use super::{Rx, RxOptions};

/// Groups 0..=9 of the first match, as [`Rx::captures`] reports them.
type Caps = Option<Vec<Option<Vec<u8>>>>;

/// PCRE2 with `@rx`'s options except DOLLAR_ENDONLY, which the crate cannot set: write `\z`
/// for a `$` in the oracle pattern.
fn oracle(p: &str) -> pcre2::bytes::Regex {
    pcre2::bytes::RegexBuilder::new()
        .dotall(true)
        .build(p)
        .unwrap_or_else(|e| panic!("oracle {p:?}: {e}"))
}

/// PCRE2's groups, `None` when it gives up (its own match limit).
fn oracle_caps(re: &pcre2::bytes::Regex, hay: &[u8]) -> Option<Caps> {
    let n = re.captures_len().min(10);
    let c = re.captures(hay).ok()?;
    Some(c.map(|c| {
        (0..n)
            .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()))
            .collect()
    }))
}

/// `p` runs on `regex` and agrees with PCRE2 running `oracle_p` on every subject, in
/// `is_match` and in every group.
fn agree(p: &str, oracle_p: &str, subjects: &[&[u8]]) {
    let rx = Rx::compile(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    assert_eq!(
        rx.engine(),
        "regex",
        "{p:?} on PCRE2: {:?}",
        rx.pcre_reason()
    );
    assert_eq!(compare(p, &rx, oracle_p, subjects), 0, "PCRE2 gave up");
}

/// `rx` (compiled from `p`) agrees with PCRE2 running `oracle_p`; returns on how many
/// subjects PCRE2 gave up.
fn compare(p: &str, rx: &Rx, oracle_p: &str, subjects: &[&[u8]]) -> usize {
    let re = oracle(oracle_p);
    let mut gave_up = 0;
    for s in subjects {
        let Some(want) = oracle_caps(&re, s) else {
            gave_up += 1;
            continue;
        };
        let what = format!("{p:?} ({}) on {s:?}", rx.as_str());
        assert_eq!(rx.is_match(s).unwrap(), want.is_some(), "{what}");
        assert_eq!(rx.captures(s).unwrap(), want, "{what}");
    }
    gave_up
}

/// `p` (without `$`) agrees with PCRE2 compiled from the same text.
fn same(p: &str, subjects: &[&[u8]]) {
    agree(p, p, subjects);
}

/// `p` runs on PCRE2 for the given reason (a prefix of it).
fn on_pcre(p: &str, opts: RxOptions, reason: &str) -> Rx {
    let rx = Rx::compile_with(p, opts).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    assert_eq!(rx.engine(), "pcre2", "{p:?} became {}", rx.as_str());
    let why = rx.pcre_reason().unwrap_or_default();
    assert!(why.starts_with(reason), "{p:?}: {why:?}");
    rx
}

fn is_match(p: &str, hay: &[u8]) -> bool {
    Rx::compile(p).unwrap().is_match(hay).unwrap()
}
