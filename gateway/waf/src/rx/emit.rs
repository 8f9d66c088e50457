//! The tree written in the `regex` crate's syntax, for a builder with Unicode off: every byte
//! and class spelled out (`\x{e2}`, `[0-9A-Z_a-z]`), so that none of that crate's own flags
//! (case, dot, multi-line) matter. Capture groups keep PCRE's numbering.

use std::fmt::Write;

use super::ast::Node;
use super::escape::Assertion;
use super::lex::Greed;
use super::set::{self, ByteSet};

/// The pattern in `regex` syntax.
pub(crate) fn emit(n: &Node) -> String {
    let mut out = String::new();
    node(n, &mut out);
    out
}

fn node(n: &Node, out: &mut String) {
    match n {
        Node::Empty => {}
        Node::Set(s) => byte_set(s, out),
        Node::Assert(a) => out.push_str(assertion(*a)),
        Node::Capture(_, b) => group("(", b, out),
        Node::Group(b) | Node::Atomic(b) => group("(?:", b, out),
        Node::Repeat {
            body,
            min,
            max,
            greed,
        } => {
            match **body {
                Node::Set(_) | Node::Capture(..) | Node::Group(_) => node(body, out),
                _ => group("(?:", body, out),
            }
            quantifier(*min, *max, out);
            if *greed == Greed::Lazy {
                out.push('?');
            }
        }
        Node::Concat(v) => v.iter().for_each(|n| node(n, out)),
        Node::Alt(v) => {
            for (i, b) in v.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                node(b, out);
            }
        }
    }
}

fn group(open: &str, body: &Node, out: &mut String) {
    out.push_str(open);
    node(body, out);
    out.push(')');
}

fn assertion(a: Assertion) -> &'static str {
    match a {
        Assertion::StartText => r"\A",
        Assertion::EndText => r"\z",
        Assertion::LineEnd => "(?m:$)",
        Assertion::WordBoundary => r"\b",
        Assertion::NotWordBoundary => r"\B",
    }
}

fn quantifier(min: u32, max: Option<u32>, out: &mut String) {
    let _ = match (min, max) {
        (0, None) => write!(out, "*"),
        (1, None) => write!(out, "+"),
        (0, Some(1)) => write!(out, "?"),
        (n, None) => write!(out, "{{{n},}}"),
        (n, Some(m)) if n == m => write!(out, "{{{n}}}"),
        (n, Some(m)) => write!(out, "{{{n},{m}}}"),
    };
}

fn byte_set(s: &ByteSet, out: &mut String) {
    let named = [
        (set::digit(), r"\d"),
        (set::digit().complement(), r"\D"),
        (set::word(), r"\w"),
        (set::word().complement(), r"\W"),
        (set::space(), r"\s"),
        (set::space().complement(), r"\S"),
        (ByteSet::ALL, r"[\x00-\xFF]"),
        (ByteSet::EMPTY, r"[^\x00-\xFF]"),
    ];
    if let Some((_, name)) = named.iter().find(|(n, _)| n == s) {
        out.push_str(name);
        return;
    }
    let ranges = s.ranges();
    if let [(lo, hi)] = ranges[..] {
        if lo == hi {
            return byte(lo, out);
        }
    }
    out.push('[');
    for (lo, hi) in ranges {
        byte(lo, out);
        if hi > lo {
            if hi > lo + 1 {
                out.push('-');
            }
            byte(hi, out);
        }
    }
    out.push(']');
}

/// A byte: ASCII letters and digits as themselves, anything else as `\xHH` (a byte, with
/// Unicode off).
fn byte(b: u8, out: &mut String) {
    if b.is_ascii_alphanumeric() {
        out.push(char::from(b));
    } else {
        let _ = write!(out, r"\x{b:02X}");
    }
}
