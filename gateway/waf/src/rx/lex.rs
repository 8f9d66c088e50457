//! Reading a PCRE2 pattern (non-UTF) into tokens, each with the option flags in force where it
//! stands: inline options (`(?i)`, `(?s:…)`, `(?-m)`) last to the end of their group, across
//! `|`. Everything PCRE2 accepts is read far enough to find where groups, classes, quotes and
//! comments end, so that `$` can be located even in patterns only PCRE2 runs.

use super::class::class;
use super::escape::{escape, Assertion, Esc};
use super::set::ByteSet;

/// Option flags (PCRE2 letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Flags {
    /// `i`: caseless.
    pub(crate) caseless: bool,
    /// `m`: `^`/`$` at line boundaries.
    pub(crate) multiline: bool,
    /// `s`: `.` matches `\n`.
    pub(crate) dotall: bool,
    /// `x`: white space and `#` comments ignored outside classes.
    pub(crate) extended: bool,
    /// `xx`: spaces and tabs ignored in classes too.
    pub(crate) extended_more: bool,
    /// `n`, `U` or `J`: options the translation does not do.
    pub(crate) other: bool,
}

/// How a quantifier repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Greed {
    /// As many as possible, giving back.
    Greedy,
    /// As few as possible (`*?`).
    Lazy,
    /// As many as possible, never giving back (`*+`).
    Possessive,
}

/// What a `(` opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// A numbered (possibly named) capture group.
    Capture,
    /// `(?:…)`, `(?i:…)`.
    Group,
    /// `(?>…)`.
    Atomic,
    /// A group only PCRE2 runs (lookaround, conditional, branch reset).
    PcreOnly(&'static str),
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal byte (not yet case-folded).
    Byte(u8),
    /// One byte of a set (class, `\d`, `.`).
    Set(ByteSet),
    /// `^`.
    Caret,
    /// `$`.
    Dollar,
    /// An escape assertion (`\b`, `\A`, `\z`, `\G`).
    Assert(Assertion),
    /// `(`, `(?:`, `(?<name>`, …
    Open(Open),
    /// `)`.
    Close,
    /// `|`.
    Alt,
    /// `*`, `+?`, `{2,5}+`, …
    Repeat {
        /// The minimum.
        min: u32,
        /// The maximum (none: unbounded).
        max: Option<u32>,
        /// Greedy, lazy or possessive.
        greed: Greed,
    },
    /// Something that stands between tokens without meaning (`(?i)`, a comment, white space
    /// under `x`); a quantifier right after one is left to PCRE2.
    Gap,
    /// A construct only PCRE2 runs (or an error it will report).
    PcreOnly(&'static str),
}

/// A token where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// What it is.
    pub(crate) tok: Tok,
    /// The flags in force.
    pub(crate) flags: Flags,
    /// Its offset in the pattern.
    pub(crate) at: usize,
}

/// Reads `p` with the compile-time flags `base`; `Err` for what PCRE2 would refuse and whose
/// extent cannot be found (an unclosed class or group, an unknown `(?` construct).
pub(crate) fn lex(p: &[u8], base: Flags) -> Result<Vec<Token>, String> {
    let mut lx = Lexer {
        p,
        i: 0,
        flags: base,
        stack: Vec::new(),
        out: Vec::new(),
        quoted: false,
    };
    while lx.i < p.len() {
        lx.step()?;
    }
    if !lx.stack.is_empty() {
        return Err("missing )".into());
    }
    Ok(lx.out)
}

struct Lexer<'a> {
    p: &'a [u8],
    i: usize,
    flags: Flags,
    /// The flags outside each open group.
    stack: Vec<Flags>,
    out: Vec<Token>,
    /// Inside `\Q…\E`.
    quoted: bool,
}

impl Lexer<'_> {
    fn push(&mut self, tok: Tok, at: usize) {
        self.out.push(Token {
            tok,
            flags: self.flags,
            at,
        });
    }

    /// Reads one token (or skips white space / a comment), advancing at least one byte.
    fn step(&mut self) -> Result<(), String> {
        let (at, c) = (self.i, self.p[self.i]);
        if self.quoted {
            self.quoted_byte(at, c);
            return Ok(());
        }
        if self.flags.extended && self.skip_extended(c) {
            self.push(Tok::Gap, at);
            return Ok(());
        }
        self.i += 1;
        match c {
            b'\\' => self.escape(at),
            b'[' => {
                let cls = class(self.p, at, self.flags.caseless, self.flags.extended_more)?;
                self.i = cls.end;
                let tok = match cls.set {
                    Ok(s) => Tok::Set(s),
                    Err(why) => Tok::PcreOnly(why),
                };
                self.push(tok, at);
            }
            b'(' => self.open(at)?,
            b')' => {
                self.flags = self.stack.pop().ok_or("unmatched )")?;
                self.push(Tok::Close, at);
            }
            b'|' => self.push(Tok::Alt, at),
            b'*' | b'+' | b'?' => {
                let (min, max) = match c {
                    b'*' => (0, None),
                    b'+' => (1, None),
                    _ => (0, Some(1)),
                };
                self.repeat(min, max, at);
            }
            b'{' => self.brace(at),
            b'.' if self.flags.dotall => self.push(Tok::Set(ByteSet::ALL), at),
            b'.' => self.push(Tok::Set(ByteSet::byte(b'\n').complement()), at),
            b'^' => self.push(Tok::Caret, at),
            b'$' => self.push(Tok::Dollar, at),
            _ => self.push(Tok::Byte(c), at),
        }
        Ok(())
    }

    fn quoted_byte(&mut self, at: usize, c: u8) {
        if self.p[at..].starts_with(b"\\E") {
            self.quoted = false;
            self.i += 2;
        } else {
            self.i += 1;
            self.push(Tok::Byte(c), at);
        }
    }

    /// Under `x`: white space (NEL 0x85 too), or a `#` comment up to the next newline.
    fn skip_extended(&mut self, c: u8) -> bool {
        if matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x85) {
            self.i += 1;
            return true;
        }
        if c != b'#' {
            return false;
        }
        self.i = match self.p[self.i..].iter().position(|&b| b == b'\n') {
            Some(n) => self.i + n + 1,
            None => self.p.len(),
        };
        true
    }

    fn escape(&mut self, at: usize) {
        let (esc, next) = escape(self.p, at, false);
        self.i = next;
        let tok = match esc {
            Esc::Byte(b) => Tok::Byte(b),
            Esc::Set(s) => Tok::Set(s),
            Esc::Assert(a) => Tok::Assert(a),
            // `\Q`, `\E`: nothing, not even for a quantifier (`\Q.*\E+` repeats the `*`).
            Esc::QuoteStart => {
                self.quoted = true;
                return;
            }
            Esc::Ignored => return,
            Esc::PcreOnly(why) => Tok::PcreOnly(why),
        };
        self.push(tok, at);
    }

    /// Opens a group: the current flags are saved until its `)`; `inner` applies inside.
    fn group(&mut self, kind: Open, at: usize, inner: Flags) {
        self.push(Tok::Open(kind), at);
        self.stack.push(self.flags);
        self.flags = inner;
    }

    /// Moves past the next `)` (or fails); returns the text before it.
    fn through_paren(&mut self) -> Result<&[u8], String> {
        let start = self.i;
        let n = self.p[start..]
            .iter()
            .position(|&b| b == b')')
            .ok_or("missing ) after (?")?;
        self.i = start + n + 1;
        Ok(&self.p[start..start + n])
    }

    /// After `(`: a group, a comment, a verb, an option setting, a call.
    fn open(&mut self, at: usize) -> Result<(), String> {
        match self.p.get(self.i) {
            Some(b'*') => return self.verb(at),
            Some(b'?') => self.i += 1,
            _ => {
                self.group(Open::Capture, at, self.flags);
                return Ok(());
            }
        }
        let c = *self.p.get(self.i).ok_or("(? at the end")?;
        let c2 = self.p.get(self.i + 1).copied();
        let only = |why| Open::PcreOnly(why);
        let (kind, skip) = match (c, c2) {
            (b'#', _) => {
                self.through_paren()?;
                self.push(Tok::Gap, at);
                return Ok(());
            }
            (b':', _) => (Open::Group, 1),
            (b'>', _) => (Open::Atomic, 1),
            (b'|', _) => (only("branch reset group"), 1),
            (b'=' | b'!', _) => (only("lookahead"), 1),
            (b'*', _) => (only("non-atomic lookahead"), 1),
            (b'<', Some(b'=' | b'!')) => (only("lookbehind"), 2),
            (b'<', Some(b'*')) => (only("non-atomic lookbehind"), 2),
            (b'<', _) => return self.named(b'>', at, 1),
            (b'\'', _) => return self.named(b'\'', at, 1),
            (b'P', Some(b'<')) => return self.named(b'>', at, 2),
            (b'P', Some(b'=' | b'>')) | (b'R' | b'&' | b'+' | b'0'..=b'9', _) => {
                return self.call(at)
            }
            (b'-', Some(b'0'..=b'9')) => return self.call(at),
            (b'C', _) => return self.callout(at),
            (b'(', _) => return self.conditional(at),
            _ => return self.options(at),
        };
        self.i += skip;
        self.group(kind, at, self.flags);
        Ok(())
    }

    /// `(?<name>`, `(?'name'`, `(?P<name>`: a capture group.
    fn named(&mut self, close: u8, at: usize, skip: usize) -> Result<(), String> {
        self.i += skip;
        let n = self.p[self.i..]
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .filter(|&n| n > 0 && self.p.get(self.i + n) == Some(&close))
            .ok_or("malformed group name")?;
        self.i += n + 1;
        self.group(Open::Capture, at, self.flags);
        Ok(())
    }

    /// `(?R)`, `(?1)`, `(?-1)`, `(?&name)`, `(?P=name)`, `(?P>name)`.
    fn call(&mut self, at: usize) -> Result<(), String> {
        self.through_paren()?;
        self.push(
            Tok::PcreOnly("backreference, recursion or subroutine call"),
            at,
        );
        Ok(())
    }

    /// `(?C)`, `(?C12)`, `(?C"text")` (a delimiter doubled inside is literal; `{` ends
    /// with `}`).
    fn callout(&mut self, at: usize) -> Result<(), String> {
        self.i += 1;
        if let Some(&d) = self.p.get(self.i).filter(|d| b"`'\"^%#${".contains(d)) {
            let end = if d == b'{' { b'}' } else { d };
            let mut j = self.i + 1;
            loop {
                match self.p.get(j) {
                    None => return Err("unterminated callout string".into()),
                    Some(&b) if b == end && self.p.get(j + 1) == Some(&end) => j += 2,
                    Some(&b) if b == end => break,
                    Some(_) => j += 1,
                }
            }
            self.i = j + 1;
        }
        self.through_paren()?;
        self.push(Tok::PcreOnly("callout"), at);
        Ok(())
    }

    /// `(?(`: the condition is a group of its own when it is an assertion, else a reference
    /// up to `)`.
    fn conditional(&mut self, at: usize) -> Result<(), String> {
        let assertion = matches!(self.p.get(self.i + 1), Some(b'?' | b'*'));
        self.group(Open::PcreOnly("conditional group"), at, self.flags);
        if !assertion {
            self.i += 1;
            self.through_paren()?;
        }
        Ok(())
    }

    /// `(*VERB)`, `(*VERB:NAME)`, start-of-pattern options, or an alphabetic assertion
    /// (`(*pla:…)`, `(*atomic:…)`) which opens a group.
    fn verb(&mut self, at: usize) -> Result<(), String> {
        self.i += 1;
        let rest = &self.p[self.i..];
        let name = rest
            .iter()
            .position(|&b| !(b.is_ascii_alphabetic() || b == b'_'))
            .map_or(rest, |n| &rest[..n]);
        if rest.get(name.len()) == Some(&b':') && is_alpha_assertion(name) {
            self.i += name.len() + 1;
            self.group(Open::PcreOnly("alphabetic assertion"), at, self.flags);
            return Ok(());
        }
        self.through_paren()?;
        self.push(Tok::PcreOnly("verb or start-of-pattern option"), at);
        Ok(())
    }

    /// `(?imsx-imsx)` or `(?imsx-imsx:…)`, with `^`, `n`, `U`, `J`, `xx`.
    fn options(&mut self, at: usize) -> Result<(), String> {
        let mut f = self.flags;
        let mut on = true;
        if self.p.get(self.i) == Some(&b'^') {
            (
                f.caseless,
                f.multiline,
                f.dotall,
                f.extended,
                f.extended_more,
            ) = (false, false, false, false, false);
            self.i += 1;
        }
        loop {
            let c = *self.p.get(self.i).ok_or("unterminated (? options")?;
            self.i += 1;
            match c {
                b')' => {
                    self.flags = f;
                    self.push(Tok::Gap, at);
                    return Ok(());
                }
                b':' => {
                    self.group(Open::Group, at, f);
                    return Ok(());
                }
                b'-' if on => on = false,
                b'i' => f.caseless = on,
                b'm' => f.multiline = on,
                b's' => f.dotall = on,
                b'x' if self.p.get(self.i) == Some(&b'x') => {
                    self.i += 1;
                    (f.extended, f.extended_more) = (on, on);
                }
                b'x' => (f.extended, f.extended_more) = (on, on && f.extended_more),
                b'n' | b'U' | b'J' => f.other |= on,
                _ => return Err(format!("unknown option letter {:?}", char::from(c))),
            }
        }
    }

    /// A quantifier's optional `?` (lazy) or `+` (possessive) suffix.
    fn repeat(&mut self, min: u32, max: Option<u32>, at: usize) {
        let greed = match self.p.get(self.i) {
            Some(b'?') => Greed::Lazy,
            Some(b'+') => Greed::Possessive,
            _ => Greed::Greedy,
        };
        self.i += usize::from(greed != Greed::Greedy);
        self.push(Tok::Repeat { min, max, greed }, at);
    }

    /// `{n}`, `{n,}`, `{n,m}` are quantifiers; `{` followed by anything else that starts a
    /// number (`{,3}`, `{ 1}`) differs between PCRE2 versions and is left to PCRE2; otherwise
    /// `{` is a literal.
    fn brace(&mut self, at: usize) {
        let rest = &self.p[self.i..];
        let Some((bounds, len)) = braces(rest) else {
            return self.brace_literal(rest, at);
        };
        self.i += len;
        match bounds {
            Some((min, max)) => self.repeat(min, max, at),
            None => self.push(Tok::PcreOnly("quantifier number too big"), at),
        }
    }

    fn brace_literal(&mut self, rest: &[u8], at: usize) {
        if matches!(rest.first(), Some(b'0'..=b'9' | b',' | b' ' | b'\t')) {
            self.push(Tok::PcreOnly("{ that PCRE2 versions read differently"), at);
        } else {
            self.push(Tok::Byte(b'{'), at);
        }
    }
}

/// The names PCRE2 accepts in `(*name:…)` assertions.
fn is_alpha_assertion(name: &[u8]) -> bool {
    const NAMES: [&str; 16] = [
        "pla",
        "plb",
        "nla",
        "nlb",
        "napla",
        "naplb",
        "positive_lookahead",
        "positive_lookbehind",
        "negative_lookahead",
        "negative_lookbehind",
        "non_atomic_positive_lookahead",
        "non_atomic_positive_lookbehind",
        "atomic",
        "sr",
        "asr",
        "script_run",
    ];
    NAMES.iter().any(|n| n.as_bytes() == name) || name == b"atomic_script_run"
}

/// A quantifier's minimum and maximum (none: unbounded).
type Bounds = (u32, Option<u32>);

/// `n}`, `n,}`, `n,m}` at the start of `rest` (just after `{`): the bounds (`None` when a
/// number is above PCRE2's 65535) and the length through `}`.
fn braces(rest: &[u8]) -> Option<(Option<Bounds>, usize)> {
    let close = rest.iter().position(|&b| b == b'}')?;
    let body = &rest[..close];
    let (lo, hi) = match body.iter().position(|&b| b == b',') {
        Some(c) => (&body[..c], Some(&body[c + 1..])),
        None => (body, None),
    };
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    if lo.is_empty() || !digits(lo) || !hi.is_none_or(digits) {
        return None;
    }
    let bounds = match (number(lo), hi) {
        (Some(n), None) => Some((n, Some(n))),
        (Some(n), Some([])) => Some((n, None)),
        (Some(n), Some(h)) => number(h).map(|m| (n, Some(m))),
        (None, _) => None,
    };
    Some((bounds, close + 1))
}

/// A quantifier bound; `None` above PCRE2's 65535.
fn number(d: &[u8]) -> Option<u32> {
    let v = d.iter().try_fold(0u32, |v, &c| {
        v.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })?;
    (v <= 65535).then_some(v)
}
