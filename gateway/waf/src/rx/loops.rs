//! Unbounded repetitions of something that can match the empty string (`(?:a?b??)*`,
//! `(a|)+`). When an iteration matches nothing, PCRE leaves the loop there and goes on with
//! what follows; the `regex` crate drops that path (it is back at the loop's start at the same
//! place) and tries the iteration's later alternatives first. The overall match is the same
//! when the loop is lazy (the empty iteration only retries the way out already tried) or when
//! the empty way through the body is its last resort (`(?:a?b?)*`, `(?:x|y*)*`); the groups
//! inside such a loop can differ in either case (which iteration they come from). Anything
//! else goes to PCRE2. Bounded repetitions are copies in both engines (no loop), and kept.

use super::ast::Node;
use super::lex::Greed;

/// `Err` for a loop whose empty iterations the two engines treat differently.
pub(crate) fn check(n: &Node) -> Result<(), &'static str> {
    match n {
        Node::Repeat {
            body,
            max: None,
            greed,
            ..
        } if nullable(body) && (captures(body) || (*greed != Greed::Lazy && !empty_last(body))) => {
            Err("unbounded repetition that can match empty")
        }
        Node::Repeat { body: b, .. } | Node::Capture(_, b) | Node::Group(b) | Node::Atomic(b) => {
            check(b)
        }
        Node::Concat(v) | Node::Alt(v) => v.iter().try_for_each(check),
        Node::Empty | Node::Set(_) | Node::Assert(_) => Ok(()),
    }
}

/// Whether `n` can match the empty string.
fn nullable(n: &Node) -> bool {
    match n {
        Node::Empty | Node::Assert(_) => true,
        Node::Set(_) => false,
        Node::Capture(_, b) | Node::Group(b) | Node::Atomic(b) => nullable(b),
        Node::Repeat { body, min, .. } => *min == 0 || nullable(body),
        Node::Concat(v) => v.iter().all(nullable),
        Node::Alt(v) => v.iter().any(nullable),
    }
}

/// Whether `n` has at most one way to match empty, and it is the one tried last.
fn empty_last(n: &Node) -> bool {
    if !nullable(n) {
        return true;
    }
    match n {
        Node::Empty | Node::Assert(_) | Node::Set(_) => true,
        Node::Capture(_, b) | Node::Group(b) | Node::Atomic(b) => empty_last(b),
        Node::Repeat {
            body, min, greed, ..
        } => *greed != Greed::Lazy && *min == 0 && !nullable(body),
        Node::Concat(v) => v.iter().all(empty_last),
        Node::Alt(v) => match v.split_last() {
            Some((last, rest)) => rest.iter().all(|b| !nullable(b)) && empty_last(last),
            None => true,
        },
    }
}

fn captures(n: &Node) -> bool {
    match n {
        Node::Capture(..) => true,
        Node::Group(b) | Node::Atomic(b) | Node::Repeat { body: b, .. } => captures(b),
        Node::Concat(v) | Node::Alt(v) => v.iter().any(captures),
        Node::Empty | Node::Set(_) | Node::Assert(_) => false,
    }
}
