//! Atomic groups `(?>…)` and possessive quantifiers (`*+`, `++`, `?+`, `{n,m}+`) become plain
//! ones only where that provably changes no match, because then no path the backtracking
//! engine would have cut off can succeed:
//!
//! * at the very end of the pattern (nothing follows, so the first way the group matches is
//!   the one kept either way);
//! * the group can match in only one way (no alternation, no variable repetition);
//! * a repetition of one byte set `C`, directly followed by a sibling that must start by
//!   consuming a byte outside `C` (or by `\z`): giving back a byte of `C` can never let that
//!   sibling match.
//!
//! Otherwise the pattern goes to PCRE2.

use super::ast::Node;
use super::escape::Assertion;
use super::lex::Greed;
use super::set::ByteSet;

/// What follows a node.
#[derive(Clone, Copy)]
struct Ctx {
    /// Nothing follows: the node ends the pattern.
    at_end: bool,
    /// The bytes the next sibling must start with, if known.
    next: Option<ByteSet>,
}

/// The tree without atomic groups or possessive quantifiers, or why that cannot be done.
pub(crate) fn resolve(root: Node) -> Result<Node, &'static str> {
    walk(
        root,
        Ctx {
            at_end: true,
            next: None,
        },
    )
}

fn walk(node: Node, ctx: Ctx) -> Result<Node, &'static str> {
    let inner = Ctx {
        at_end: ctx.at_end,
        next: None,
    };
    Ok(match node {
        Node::Concat(v) => Node::Concat(sequence(v, ctx.at_end)?),
        Node::Alt(v) => Node::Alt(
            v.into_iter()
                .map(|n| walk(n, inner))
                .collect::<Result<_, _>>()?,
        ),
        Node::Capture(i, b) => Node::Capture(i, Box::new(walk(*b, inner)?)),
        Node::Group(b) => Node::Group(Box::new(walk(*b, inner)?)),
        Node::Atomic(b) => atomic(walk(*b, inner)?, ctx)?,
        Node::Repeat {
            body,
            min,
            max,
            greed,
        } => {
            let body = walk(
                *body,
                Ctx {
                    at_end: false,
                    next: None,
                },
            )?;
            let greed = match greed {
                Greed::Possessive if !possessive_is_greedy(&body, min, max, ctx) => {
                    return Err("possessive quantifier")
                }
                Greed::Possessive => Greed::Greedy,
                g => g,
            };
            Node::Repeat {
                body: Box::new(body),
                min,
                max,
                greed,
            }
        }
        leaf => leaf,
    })
}

fn sequence(v: Vec<Node>, at_end: bool) -> Result<Vec<Node>, &'static str> {
    let nexts: Vec<Option<ByteSet>> = (0..v.len()).map(|i| v.get(i + 1).and_then(first)).collect();
    let last = v.len().saturating_sub(1);
    v.into_iter()
        .zip(nexts)
        .enumerate()
        .map(|(i, (n, next))| {
            let ctx = Ctx {
                at_end: at_end && i == last,
                next,
            };
            walk(n, ctx)
        })
        .collect()
}

fn atomic(body: Node, ctx: Ctx) -> Result<Node, &'static str> {
    let plain = ctx.at_end
        || single_path(&body)
        || matches!(&body, Node::Repeat { body: b, greed: Greed::Greedy, .. }
            if disjoint_next(b, ctx));
    if plain {
        Ok(Node::Group(Box::new(body)))
    } else {
        Err("atomic group")
    }
}

fn possessive_is_greedy(body: &Node, min: u32, max: Option<u32>, ctx: Ctx) -> bool {
    ctx.at_end || (Some(min) == max && single_path(body)) || disjoint_next(body, ctx)
}

/// `body` is one byte set, and the next sibling must start with a byte outside it.
fn disjoint_next(body: &Node, ctx: Ctx) -> bool {
    match (single_set(body), ctx.next) {
        (Some(c), Some(f)) => c.intersect(f).is_empty(),
        _ => false,
    }
}

fn single_set(n: &Node) -> Option<ByteSet> {
    match n {
        Node::Set(s) => Some(*s),
        Node::Group(b) | Node::Capture(_, b) => single_set(b),
        _ => None,
    }
}

/// Whether `n` can match in at most one way from a given position.
fn single_path(n: &Node) -> bool {
    match n {
        Node::Empty | Node::Set(_) | Node::Assert(_) => true,
        Node::Concat(v) => v.iter().all(single_path),
        Node::Capture(_, b) | Node::Group(b) | Node::Atomic(b) => single_path(b),
        Node::Repeat { body, min, max, .. } => Some(*min) == *max && single_path(body),
        Node::Alt(_) => false,
    }
}

/// The bytes every match of `n` must start by consuming (zero-width assertions before it
/// skipped; `\z` allows none), if that can be told.
fn first(n: &Node) -> Option<ByteSet> {
    match n {
        Node::Set(s) => Some(*s),
        Node::Assert(Assertion::EndText) => Some(ByteSet::EMPTY),
        Node::Capture(_, b) | Node::Group(b) | Node::Atomic(b) => first(b),
        Node::Repeat { body, min, .. } if *min >= 1 => first(body),
        Node::Concat(v) => v
            .iter()
            .find(|n| !matches!(n, Node::Assert(a) if *a != Assertion::EndText))
            .and_then(first),
        Node::Alt(v) => v
            .iter()
            .try_fold(ByteSet::EMPTY, |acc, b| Some(acc.union(first(b)?))),
        _ => None,
    }
}
