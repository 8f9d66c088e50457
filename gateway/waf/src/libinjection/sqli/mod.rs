//! libinjection's SQL injection detector: tokenize, fold to at most five tokens, and check the
//! string of token kinds (the fingerprint) against a blacklist, reading the input as it is and
//! as if it followed a `'` or a `"` (`libinjection_is_sqli`).

mod fingerprints;
mod fold;
mod fold_rules;
mod keywords;
mod lexer;
mod scan;
mod strings;
mod token;
mod verdict;
mod words;

use std::fmt;

use fold::{fold, MAX_TOKENS, SLOTS};
use lexer::{Context, Lexer};
use token::{Kind, Token};
use verdict::Reading;

/// A libinjection fingerprint: one character per folded token (`s&1`, `1UE`, `X`, …), as
/// ModSecurity reports it ("detected SQLi using libinjection with fingerprint 's&1'").
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    chars: [u8; MAX_TOKENS],
    len: u8,
}

impl Fingerprint {
    /// The fingerprint text.
    pub fn as_str(&self) -> &str {
        let bytes = self.chars.get(..usize::from(self.len)).unwrap_or(&[]);
        // Token kinds are ASCII characters.
        std::str::from_utf8(bytes).unwrap_or("")
    }

    fn new(kinds: &[u8]) -> Self {
        let mut chars = [0u8; MAX_TOKENS];
        let n = kinds.len().min(MAX_TOKENS);
        if let (Some(dst), Some(src)) = (chars.get_mut(..n), kinds.get(..n)) {
            dst.copy_from_slice(src);
        }
        Self {
            chars,
            len: n as u8,
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:?})", self.as_str())
    }
}

/// The readings libinjection tries, in order: as is (ANSI, then MySQL when the ANSI reading
/// saw `--x` or `#`), after a `'` (the same pair), after a `"` (MySQL only).
pub(crate) fn detect(s: &[u8]) -> Option<Fingerprint> {
    if s.is_empty() {
        return None;
    }
    let ansi = |quote| Context {
        quote,
        mysql: false,
    };
    let mysql = |quote| Context { quote, mysql: true };
    let single = memchr::memchr(b'\'', s).is_some();
    for quote in [Some(0), single.then_some(b'\'')].into_iter().flatten() {
        let (fp, reparse) = check(s, ansi(quote));
        if fp.is_some() {
            return fp;
        }
        if reparse {
            if let (Some(fp), _) = check(s, mysql(quote)) {
                return Some(fp);
            }
        }
    }
    if memchr::memchr(b'"', s).is_some() {
        return check(s, mysql(b'"')).0;
    }
    None
}

/// One reading: the fingerprint when it is SQLi, and whether a MySQL reading should follow.
fn check(s: &[u8], ctx: Context) -> (Option<Fingerprint>, bool) {
    let mut lx = Lexer::new(s, ctx);
    let (tv, n) = fingerprint(&mut lx);
    let mut codes = [0u8; SLOTS];
    for (c, t) in codes.iter_mut().zip(tv.iter().take(n)) {
        *c = t.kind.code();
    }
    let kinds = codes.get(..n).unwrap_or(&[]);
    let reading = Reading {
        s,
        fp: kinds,
        tv: &tv,
        tokens: lx.tokens,
    };
    let fp = verdict::is_sqli(&reading).then(|| Fingerprint::new(kinds));
    (fp, lx.comment_ddx > 0 || lx.comment_hash > 0)
}

/// `libinjection_sqli_fingerprint`: the folded tokens and how many make the fingerprint; a
/// fingerprint holding an evil token becomes the single token `X`.
fn fingerprint(lx: &mut Lexer<'_>) -> ([Token; SLOTS], usize) {
    let (mut tv, n) = fold(lx);
    // An empty, unclosed backtick name at the end is PHP-style comment.
    if n > 2 {
        if let Some(last) = tv.get_mut(n - 1) {
            if last.kind == Kind::Bareword
                && last.str_open == b'`'
                && last.len == 0
                && last.str_close == 0
            {
                last.kind = Kind::Comment;
            }
        }
    }
    if tv.iter().take(n).any(|t| t.kind == Kind::Evil) {
        let mut evil = Token::default();
        evil.assign_char(Kind::Evil, tv[0].pos, b'X');
        tv[0] = evil;
        tv[1].kind = Kind::None;
        return (tv, 1);
    }
    (tv, n)
}

#[cfg(test)]
pub(super) mod testing {
    //! Hooks for the upstream test files: raw tokens and folded tokens in ANSI, no quote.

    use super::lexer::{Context, Lexer};
    use super::token::Token;

    /// A token as libinjection's test driver prints it (`k SELECT`, `s 'a'`, `v @@x`).
    pub(crate) fn print(t: &TokenView, out: &mut Vec<u8>) {
        out.push(t.0.kind.code());
        out.push(b' ');
        let quoted = |out: &mut Vec<u8>| {
            if t.0.str_open != 0 {
                out.push(t.0.str_open);
            }
            out.extend_from_slice(t.0.cstr());
            if t.0.str_close != 0 {
                out.push(t.0.str_close);
            }
        };
        match t.0.kind.code() {
            b's' => quoted(out),
            b'v' => {
                out.extend(std::iter::repeat_n(b'@', usize::from(t.0.count.min(2))));
                quoted(out);
            }
            _ => out.extend_from_slice(t.0.cstr()),
        }
        out.push(b'\n');
    }

    /// A token seen from outside the module.
    pub(crate) struct TokenView(Token);

    const ANSI: Context = Context {
        quote: 0,
        mysql: false,
    };

    /// Every token of `s`, unfolded.
    pub(crate) fn tokens(s: &[u8]) -> Vec<TokenView> {
        let mut lx = Lexer::new(s, ANSI);
        let mut out = Vec::new();
        let mut t = Token::default();
        while lx.next(&mut t) && out.len() <= s.len() {
            out.push(TokenView(t));
        }
        out
    }

    /// The folded tokens of `s`.
    pub(crate) fn folded(s: &[u8]) -> Vec<TokenView> {
        let mut lx = Lexer::new(s, ANSI);
        let (tv, n) = super::fold::fold(&mut lx);
        tv.iter().take(n).map(|t| TokenView(*t)).collect()
    }
}
