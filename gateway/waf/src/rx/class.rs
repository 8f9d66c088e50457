//! Bracket classes (`[^a-z\d[:punct:]]`) of PCRE2 in non-UTF mode, as byte sets: a leading `]`
//! is literal, `-` first or last is literal, escapes as in [`super::escape`] (`\b` is
//! backspace), `\Q…\E` quoting, POSIX classes (C locale), ASCII-only case folding under
//! caseless. Anything else the translation does not do still has its end found, so the rest of
//! the pattern can be read.

use super::escape::{escape, Esc};
use super::set::{self, ByteSet};

/// A bracket class read from the pattern.
pub(crate) struct Class {
    /// The bytes it matches, or why only PCRE2 can run it.
    pub(crate) set: Result<ByteSet, &'static str>,
    /// The index after the closing `]`.
    pub(crate) end: usize,
}

/// One item between the brackets.
enum Item {
    Byte(u8),
    Set(ByteSet),
    Skip,
}

/// Reads the class whose `[` is at `p[i]`; `Err` when the class is never closed.
pub(crate) fn class(
    p: &[u8],
    i: usize,
    caseless: bool,
    ignore_space: bool,
) -> Result<Class, String> {
    if p[i..].starts_with(b"[[:<:]]") || p[i..].starts_with(b"[[:>:]]") {
        return Ok(Class {
            set: Err("[[:<:]] word boundary"),
            end: i + 7,
        });
    }
    let mut j = i + 1;
    let negated = p.get(j) == Some(&b'^');
    j += usize::from(negated);
    let mut acc = Acc::default();
    let mut quoted = false;
    let mut first = true;
    loop {
        let Some(&c) = p.get(j) else {
            return Err(format!("missing ] for the class at offset {i}"));
        };
        if quoted {
            // PCRE2 reads `\Q…\E` in classes; not translated (how `-` acts there is subtle).
            acc.fail("\\Q…\\E in a class");
            quoted = !p[j..].starts_with(b"\\E");
            j += if quoted { 1 } else { 2 };
            continue;
        }
        if c == b']' && !first {
            break;
        }
        first = false;
        let (item, next) = item(p, j, caseless, ignore_space);
        j = next;
        match item {
            Ok(Some(Item::Skip)) => {}
            Ok(Some(it)) => acc.item(it, p, &mut j, caseless),
            Ok(None) => quoted = true,
            Err(why) => acc.fail(why),
        }
    }
    let set = acc
        .finish(caseless)
        .map(|s| if negated { s.complement() } else { s });
    Ok(Class { set, end: j + 1 })
}

/// One item at `p[j]`: `Ok(None)` for `\Q`.
fn item(
    p: &[u8],
    j: usize,
    caseless: bool,
    ignore_space: bool,
) -> (Result<Option<Item>, &'static str>, usize) {
    match p[j] {
        b' ' | b'\t' if ignore_space => (Ok(Some(Item::Skip)), j + 1),
        b'[' => match posix(p, j, caseless) {
            Some((set, end)) => (set.map(|s| Some(Item::Set(s))), end),
            None => (Ok(Some(Item::Byte(b'['))), j + 1),
        },
        b'\\' => match escape(p, j, true) {
            (Esc::Byte(b), n) => (Ok(Some(Item::Byte(b))), n),
            (Esc::Set(s), n) => (Ok(Some(Item::Set(s))), n),
            (Esc::QuoteStart, n) => (Ok(None), n),
            (Esc::Ignored, n) => (Ok(Some(Item::Skip)), n),
            (Esc::PcreOnly(why), n) => (Err(why), n),
            (Esc::Assert(_), n) => (Err("assertion in a class"), n),
        },
        c => (Ok(Some(Item::Byte(c))), j + 1),
    }
}

/// `[:name:]` / `[:^name:]` at `p[j]`, if the syntax is POSIX's (PCRE2's rule: a `:` (or `.`
/// `=`) right after `[`, then the same character followed by `]` before any other `]` or `[:`;
/// `\]` and `\\` are skipped). `[.x.]` and `[=x=]` are errors in PCRE2.
fn posix(p: &[u8], j: usize, caseless: bool) -> Option<(Result<ByteSet, &'static str>, usize)> {
    let term = *p.get(j + 1)?;
    if !matches!(term, b':' | b'.' | b'=') {
        return None;
    }
    let mut k = j + 2;
    let close = loop {
        let c = *p.get(k)?;
        let next = p.get(k + 1).copied();
        if c == b'\\' && matches!(next, Some(b']' | b'\\')) {
            k += 2;
        } else if (c == b'[' && next == Some(term)) || c == b']' {
            return None;
        } else if c == term && next == Some(b']') {
            break k;
        } else {
            k += 1;
        }
    };
    let end = close + 2;
    if term != b':' {
        return Some((Err("POSIX collating element"), end));
    }
    let name = &p[j + 2..close];
    let (neg, name) = match name.strip_prefix(b"^") {
        Some(n) => (true, n),
        None => (false, name),
    };
    let set = set::posix(name, caseless)
        .map(|s| if neg { s.complement() } else { s })
        .ok_or("unknown POSIX class");
    Some((set, end))
}

/// The class being built: its bytes so far, or the first reason it cannot be translated.
#[derive(Default)]
struct Acc {
    set: ByteSet,
    /// Single bytes and ranges (folded under caseless), as opposed to escape classes.
    chars: ByteSet,
    failed: Option<&'static str>,
}

impl Acc {
    fn fail(&mut self, why: &'static str) {
        self.failed.get_or_insert(why);
    }

    /// Adds an item; a byte followed by `-` and another byte is a range.
    fn item(&mut self, it: Item, p: &[u8], j: &mut usize, caseless: bool) {
        let lo = match it {
            Item::Byte(b) => b,
            Item::Set(s) => {
                self.set = self.set.union(s);
                if p.get(*j) == Some(&b'-') && p.get(*j + 1) != Some(&b']') {
                    self.fail("range after a class escape");
                }
                return;
            }
            Item::Skip => return,
        };
        if p.get(*j) != Some(&b'-') || matches!(p.get(*j + 1), Some(b']') | None) {
            self.chars.insert(lo);
            return;
        }
        let (hi, next) = item(p, *j + 1, caseless, false);
        *j = next;
        match hi {
            Ok(Some(Item::Byte(hi))) if hi >= lo => {
                self.chars = self.chars.union(ByteSet::range(lo, hi));
            }
            _ => self.fail("irregular range"),
        }
    }

    fn finish(self, caseless: bool) -> Result<ByteSet, &'static str> {
        if let Some(why) = self.failed {
            return Err(why);
        }
        let chars = if caseless {
            self.chars.fold_ascii_case()
        } else {
            self.chars
        };
        Ok(self.set.union(chars))
    }
}
