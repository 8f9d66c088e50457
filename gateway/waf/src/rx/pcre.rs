//! Patterns the translation does not run go to PCRE2 (the `pcre2` crate, its bundled library,
//! interpreter only as ModSecurity v2 builds by default), with ModSecurity's options: no UTF,
//! DOTALL / CASELESS as asked, DOLLAR_ENDONLY by rewriting each such `$` to `\z` (the crate
//! has no switch for it), and the match and depth limits as `(*LIMIT_MATCH=…)` /
//! `(*LIMIT_DEPTH=…)` start-of-pattern items (the crate has no match context setters; a
//! pattern's own lower limits still win, as with `pcre2_set_match_limit`).

use pcre2::bytes::{Regex, RegexBuilder};

use super::{RxError, RxOptions};

/// Compiles `pattern` for PCRE2; `dollars` are the offsets of the `$` to read as `\z`.
pub(crate) fn build(pattern: &str, dollars: &[usize], opts: &RxOptions) -> Result<Regex, RxError> {
    let text = with_limits(&end_only(pattern, dollars)?, opts);
    RegexBuilder::new()
        .caseless(opts.caseless)
        .dotall(opts.dotall)
        .build(&text)
        .map_err(|e| RxError::Compile(e.to_string()))
}

/// Maps a PCRE2 matching error: the match and depth limits are [`RxError::MatchLimit`].
pub(crate) fn match_error(e: pcre2::Error) -> RxError {
    match e.code() {
        pcre2_sys::PCRE2_ERROR_MATCHLIMIT | pcre2_sys::PCRE2_ERROR_DEPTHLIMIT => {
            RxError::MatchLimit
        }
        _ => RxError::Match(e.to_string()),
    }
}

/// `pattern` with the `$` at `dollars` written `\z`.
pub(super) fn end_only(pattern: &str, dollars: &[usize]) -> Result<String, RxError> {
    let mut out = String::with_capacity(pattern.len() + dollars.len());
    let mut last = 0;
    for &at in dollars {
        let before = pattern
            .get(last..at)
            .filter(|_| pattern.as_bytes().get(at) == Some(&b'$'))
            .ok_or_else(|| RxError::Compile(format!("internal: no $ at offset {at}")))?;
        out.push_str(before);
        out.push_str(r"\z");
        last = at + 1;
    }
    out.push_str(pattern.get(last..).unwrap_or(""));
    Ok(out)
}

/// The pattern with our limits after its own start-of-pattern items (the last setting of a
/// limit is the one PCRE2 keeps, so ours go last, lowered to the pattern's own if smaller).
fn with_limits(pattern: &str, opts: &RxOptions) -> String {
    let (mut m, mut d) = (opts.match_limit, opts.depth_limit);
    let mut at = 0;
    while let Some((len, name, value)) = start_item(&pattern[at..]) {
        match (name, value) {
            ("LIMIT_MATCH", Some(v)) if m == 0 || v < m => m = v,
            ("LIMIT_DEPTH" | "LIMIT_RECURSION", Some(v)) if d == 0 || v < d => d = v,
            _ => {}
        }
        at += len;
    }
    let mut out = String::with_capacity(pattern.len() + 48);
    out.push_str(&pattern[..at]);
    if m > 0 {
        out.push_str(&format!("(*LIMIT_MATCH={m})"));
    }
    if d > 0 {
        out.push_str(&format!("(*LIMIT_DEPTH={d})"));
    }
    out.push_str(&pattern[at..]);
    out
}

/// A start-of-pattern item at the start of `s`: its length, name and numeric value.
fn start_item(s: &str) -> Option<(usize, &str, Option<u32>)> {
    const NAMES: [&str; 19] = [
        "UTF",
        "UCP",
        "NO_AUTO_POSSESS",
        "NO_DOTSTAR_ANCHOR",
        "NO_JIT",
        "NO_START_OPT",
        "NOTEMPTY",
        "NOTEMPTY_ATSTART",
        "CR",
        "LF",
        "CRLF",
        "ANYCRLF",
        "ANY",
        "NUL",
        "BSR_ANYCRLF",
        "BSR_UNICODE",
        "LIMIT_HEAP",
        "LIMIT_MATCH",
        "LIMIT_DEPTH",
    ];
    let body = s.strip_prefix("(*")?;
    let close = body.find(')')?;
    let item = &body[..close];
    let (name, value) = match item.split_once('=') {
        Some((n, v)) => (n, Some(v.parse::<u32>().ok()?)),
        None => (item, None),
    };
    let known = NAMES.contains(&name) || name == "LIMIT_RECURSION";
    known.then_some((close + 3, name, value))
}
