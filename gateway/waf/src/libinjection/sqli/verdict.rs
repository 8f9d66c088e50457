//! Deciding on one fingerprint: it must be on the blacklist, and then not be one of the short
//! shapes libinjection lets through unless the input shows more (`libinjection_sqli_blacklist`
//! and `libinjection_sqli_not_whitelist`).

use super::scan::{at, find_sub, is_blacklisted};
use super::token::{Kind, Token};

/// One fingerprinted reading of the input.
pub(super) struct Reading<'a> {
    /// The input.
    pub(super) s: &'a [u8],
    /// The fingerprint characters.
    pub(super) fp: &'a [u8],
    /// The folded tokens (at least as many as the fingerprint has).
    pub(super) tv: &'a [Token],
    /// Tokens the tokenizer produced before folding.
    pub(super) tokens: usize,
}

/// The reading is SQL injection.
pub(super) fn is_sqli(r: &Reading<'_>) -> bool {
    !r.fp.is_empty() && is_blacklisted(r.fp) && !whitelisted(r)
}

/// The token in slot `i`.
fn tok(r: &Reading<'_>, i: usize) -> Token {
    r.tv.get(i).copied().unwrap_or_default()
}

/// A blacklisted fingerprint that is still let through.
fn whitelisted(r: &Reading<'_>) -> bool {
    let n = r.fp.len();
    if n > 1 && r.fp.last() == Some(&Kind::Comment.code()) {
        // SQL Server's audit log skips statements mentioning sp_password.
        if find_sub(r.s, 0, r.s.len(), b"sp_password").is_some() {
            return false;
        }
    }
    match n {
        2 => two_tokens(r),
        3 => three_tokens(r),
        _ => false,
    }
}

/// Two-token fingerprints: `1U`, `nc`, `1c`, `n#`, … are common in harmless input.
fn two_tokens(r: &Reading<'_>) -> bool {
    let (a, b) = (tok(r, 0), tok(r, 1));
    if r.fp.get(1) == Some(&Kind::Union.code()) {
        // "1 union" alone is ordinary text; with folding or comments around it is not.
        return r.tokens == 2;
    }
    if b.byte(0) == b'#' {
        return true;
    }
    if a.kind == Kind::Bareword && b.kind == Kind::Comment && b.byte(0) != b'/' {
        return true;
    }
    if a.kind == Kind::Number && b.kind == Kind::Comment {
        return !number_then_comment(r, &a, &b);
    }
    // "1--" is a scan; "1-- foo" is likely prose.
    b.len > 2 && b.byte(0) == b'-'
}

/// `1c`: SQLi when the comment is `/*`, when folding happened, or when the number is really
/// followed by white space, `/*` or `--` in the input (not `1234-ABCD--`).
fn number_then_comment(r: &Reading<'_>, a: &Token, b: &Token) -> bool {
    if b.byte(0) == b'/' || r.tokens > 2 {
        return true;
    }
    let next = at(r.s, a.len);
    let after = at(r.s, a.len + 1);
    // A signed char in C: bytes from 0x80 are "<= 32" too.
    next <= 32 || next >= 0x80 || (next == b'/' && after == b'*') || (next == b'-' && after == b'-')
}

/// Three-token fingerprints: string-operator-string, `1&1` without more, keywords other than
/// `INTO OUTFILE`/`INTO DUMPFILE`.
fn three_tokens(r: &Reading<'_>) -> bool {
    let (a, b, c) = (tok(r, 0), tok(r, 1), tok(r, 2));
    match r.fp {
        b"sos" | b"s&s" => {
            // ...foo' + 'bar...: quotes that close and reopen around the operator.
            let spliced = a.str_open == 0 && c.str_close == 0 && a.str_close == c.str_open;
            !spliced
        }
        b"s&n" | b"n&1" | b"1&1" | b"1&v" | b"1&s" => r.tokens == 3,
        _ if b.kind == Kind::Keyword => {
            let into = b
                .val()
                .get(..4)
                .is_some_and(|v| v.eq_ignore_ascii_case(b"INTO"));
            b.len < 5 || !into
        }
        _ => false,
    }
}
