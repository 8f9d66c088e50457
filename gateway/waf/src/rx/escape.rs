//! Backslash escapes of PCRE2 (10.4x) in non-UTF mode, outside and inside bracket classes:
//! what each one means, or that only PCRE2 itself can run it. Invalid escapes are reported as
//! [`Esc::PcreOnly`] too, so that PCRE2's own compiler names the error.

use super::set::{self, ByteSet};

/// A zero-width assertion written as an escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Assertion {
    /// `\A`, `^` without multiline, and `\G` (every match starts at offset 0).
    StartText,
    /// `\z`, and `$` under DOLLAR_ENDONLY.
    EndText,
    /// `$` under multiline: before any `\n`, or at the end.
    LineEnd,
    /// `\b` (ASCII word characters).
    WordBoundary,
    /// `\B`.
    NotWordBoundary,
}

/// What an escape means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Esc {
    /// One byte.
    Byte(u8),
    /// One byte of a set (`\d`, `\h`, …).
    Set(ByteSet),
    /// A zero-width assertion (outside classes only).
    Assert(Assertion),
    /// `\Q`: what follows is literal up to `\E`.
    QuoteStart,
    /// `\E` outside a quote: ignored.
    Ignored,
    /// Something the translation does not do (backreferences, `\p`, `\K`, `\R`, …) or an
    /// error; the reason is for people.
    PcreOnly(&'static str),
}

/// Reads the escape whose backslash is at `p[i]`; returns its meaning and the index after it.
pub(crate) fn escape(p: &[u8], i: usize, in_class: bool) -> (Esc, usize) {
    let Some(&c) = p.get(i + 1) else {
        return (Esc::PcreOnly("\\ at the end of the pattern"), i + 1);
    };
    let next = i + 2;
    let byte = |b: u8| (Esc::Byte(b), next);
    let set = |s: ByteSet| (Esc::Set(s), next);
    match c {
        b'a' => byte(0x07),
        b'e' => byte(0x1b),
        b'f' => byte(0x0c),
        b'n' => byte(b'\n'),
        b'r' => byte(b'\r'),
        b't' => byte(b'\t'),
        b'0' => octal(p, i + 1, 3),
        b'1'..=b'7' if in_class => octal(p, i + 1, 3),
        b'1'..=b'9' => (Esc::PcreOnly("backreference or octal escape"), next),
        b'o' => braced(p, next, 8),
        b'x' if p.get(next) == Some(&b'{') => braced(p, next, 16),
        b'x' => hex2(p, next),
        b'c' => control(p, next),
        b'd' => set(set::digit()),
        b'D' => set(set::digit().complement()),
        b'w' => set(set::word()),
        b'W' => set(set::word().complement()),
        b's' => set(set::space()),
        b'S' => set(set::space().complement()),
        b'h' => set(set::hspace()),
        b'H' => set(set::hspace().complement()),
        b'v' => set(set::vspace()),
        b'V' => set(set::vspace().complement()),
        b'b' if in_class => byte(0x08),
        b'Q' => (Esc::QuoteStart, next),
        b'E' => (Esc::Ignored, next),
        _ if in_class => (class_only(c), next),
        _ => (outside_only(p, c, next), next),
    }
}

/// Escapes that mean something only outside a class (or an error inside one).
fn class_only(c: u8) -> Esc {
    if c.is_ascii_alphanumeric() {
        Esc::PcreOnly("escape not allowed in a class")
    } else {
        Esc::Byte(c)
    }
}

fn outside_only(p: &[u8], c: u8, next: usize) -> Esc {
    match c {
        b'b' => Esc::Assert(Assertion::WordBoundary),
        b'B' => Esc::Assert(Assertion::NotWordBoundary),
        b'A' | b'G' => Esc::Assert(Assertion::StartText),
        b'z' => Esc::Assert(Assertion::EndText),
        b'Z' => Esc::PcreOnly("\\Z (end or before a final newline)"),
        b'N' if p.get(next) != Some(&b'{') => Esc::Set(ByteSet::byte(b'\n').complement()),
        b'g' | b'k' => Esc::PcreOnly("backreference or subroutine call"),
        b'R' => Esc::PcreOnly("\\R (atomic newline sequence)"),
        b'K' => Esc::PcreOnly("\\K (match start reset)"),
        b'p' | b'P' | b'X' => Esc::PcreOnly("Unicode property"),
        b'C' => Esc::PcreOnly("\\C"),
        _ if c.is_ascii_alphanumeric() => Esc::PcreOnly("unknown escape"),
        _ => Esc::Byte(c),
    }
}

/// Up to `max` octal digits starting at `p[i]` (the first is known to be one).
fn octal(p: &[u8], i: usize, max: usize) -> (Esc, usize) {
    let mut v: u32 = 0;
    let mut j = i;
    while j < p.len() && j - i < max && (b'0'..=b'7').contains(&p[j]) {
        v = v * 8 + u32::from(p[j] - b'0');
        j += 1;
    }
    match u8::try_from(v) {
        Ok(b) => (Esc::Byte(b), j),
        Err(_) => (Esc::PcreOnly("octal value above \\377"), j),
    }
}

/// `\xh` / `\xhh` (with no digit, older PCRE read NUL, PCRE2 10.4x refuses it).
fn hex2(p: &[u8], i: usize) -> (Esc, usize) {
    let mut v: u8 = 0;
    let mut j = i;
    while j < p.len() && j - i < 2 {
        let Some(d) = hex_digit(p[j]) else { break };
        v = v * 16 + d;
        j += 1;
    }
    if j == i {
        return (Esc::PcreOnly("\\x without hex digits"), j);
    }
    (Esc::Byte(v), j)
}

/// `{digits}` in `radix` at `p[i]` (after `\x` or `\o`); the value must fit a byte.
fn braced(p: &[u8], i: usize, radix: u32) -> (Esc, usize) {
    if p.get(i) != Some(&b'{') {
        return (Esc::PcreOnly("\\o without {"), i);
    }
    let Some(len) = p[i + 1..].iter().position(|&b| b == b'}') else {
        return (Esc::PcreOnly("unterminated \\x{ or \\o{"), i + 1);
    };
    let digits = &p[i + 1..i + 1 + len];
    let end = i + len + 2;
    let value = std::str::from_utf8(digits)
        .ok()
        .filter(|d| !d.is_empty() && d.len() <= 8)
        .and_then(|d| u32::from_str_radix(d, radix).ok());
    match value.map(u8::try_from) {
        Some(Ok(b)) => (Esc::Byte(b), end),
        Some(Err(_)) => (
            Esc::PcreOnly("character value above 0xff in non-UTF mode"),
            end,
        ),
        None => (Esc::PcreOnly("malformed \\x{} or \\o{}"), end),
    }
}

/// `\cX`: X upper-cased, bit 6 flipped; X must be printable ASCII.
fn control(p: &[u8], i: usize) -> (Esc, usize) {
    match p.get(i) {
        Some(&x) if (0x20..0x7f).contains(&x) => (Esc::Byte(x.to_ascii_uppercase() ^ 0x40), i + 1),
        _ => (
            Esc::PcreOnly("\\c needs a printable ASCII character"),
            i + 1,
        ),
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
