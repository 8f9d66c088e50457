//! The syntax tree of a pattern the `regex` crate can run, built from the tokens: literals
//! become one-byte sets (both ASCII cases under caseless), `^`/`$` become the assertions the
//! options give them. Any token only PCRE2 runs stops the build with its reason.

use super::escape::Assertion;
use super::lex::{Greed, Open, Tok, Token};
use super::set::ByteSet;

/// How deep groups may nest here (PCRE2 allows 250); deeper patterns go to PCRE2, which keeps
/// the recursive walks over the tree bounded.
const MAX_DEPTH: usize = 100;

/// A node of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// Matches the empty string.
    Empty,
    /// One byte of the set.
    Set(ByteSet),
    /// A zero-width assertion.
    Assert(Assertion),
    /// Capture group `n` (1-based, numbered by opening parenthesis as PCRE numbers them).
    Capture(u32, Box<Node>),
    /// A non-capturing group.
    Group(Box<Node>),
    /// An atomic group `(?>…)`.
    Atomic(Box<Node>),
    /// A quantified node.
    Repeat {
        /// What is repeated.
        body: Box<Node>,
        /// At least.
        min: u32,
        /// At most (none: unbounded).
        max: Option<u32>,
        /// Greedy, lazy or possessive.
        greed: Greed,
    },
    /// One after the other.
    Concat(Vec<Node>),
    /// The first alternative that leads to a match.
    Alt(Vec<Node>),
}

/// A pattern as a tree.
#[derive(Debug)]
pub(crate) struct Tree {
    /// The root.
    pub(crate) root: Node,
    /// How many capture groups (group 0 not counted).
    pub(crate) groups: u32,
}

/// An open group while building.
struct Frame {
    kind: Open,
    index: u32,
    alts: Vec<Node>,
    seq: Vec<Node>,
    /// Whether a quantifier may follow.
    repeatable: bool,
}

impl Frame {
    fn new(kind: Open, index: u32) -> Frame {
        Frame {
            kind,
            index,
            alts: Vec::new(),
            seq: Vec::new(),
            repeatable: false,
        }
    }

    fn push(&mut self, n: Node, repeatable: bool) {
        self.seq.push(n);
        self.repeatable = repeatable;
    }

    /// The group's contents: its alternatives, or its one sequence.
    fn finish(mut self) -> Node {
        if self.alts.is_empty() {
            return concat(self.seq);
        }
        self.alts.push(concat(self.seq));
        Node::Alt(self.alts)
    }
}

fn concat(mut seq: Vec<Node>) -> Node {
    match seq.len() {
        0 => Node::Empty,
        1 => seq.pop().unwrap_or(Node::Empty),
        _ => Node::Concat(seq),
    }
}

/// Builds the tree; `Err` names the first construct only PCRE2 runs. `dollar_endonly`: `$`
/// outside multiline matches only at the very end.
pub(crate) fn parse(tokens: &[Token], dollar_endonly: bool) -> Result<Tree, &'static str> {
    let mut stack = vec![Frame::new(Open::Group, 0)];
    let mut groups = 0;
    for t in tokens {
        if t.flags.other {
            return Err("option n, U or J");
        }
        let top = stack.last_mut().ok_or("unmatched )")?;
        match &t.tok {
            Tok::Byte(b) if t.flags.caseless => {
                top.push(Node::Set(ByteSet::byte(*b).fold_ascii_case()), true)
            }
            Tok::Byte(b) => top.push(Node::Set(ByteSet::byte(*b)), true),
            Tok::Set(s) => top.push(Node::Set(*s), true),
            Tok::Caret if t.flags.multiline => return Err("^ under multiline"),
            Tok::Caret => top.push(Node::Assert(Assertion::StartText), false),
            Tok::Dollar if t.flags.multiline => top.push(Node::Assert(Assertion::LineEnd), false),
            Tok::Dollar if dollar_endonly => top.push(Node::Assert(Assertion::EndText), false),
            Tok::Dollar => return Err("$ before a final newline (no DOLLAR_ENDONLY)"),
            Tok::Assert(a) => top.push(Node::Assert(*a), false),
            Tok::Alt => {
                let seq = std::mem::take(&mut top.seq);
                top.alts.push(concat(seq));
                top.repeatable = false;
            }
            Tok::Repeat { min, max, greed } => repeat(top, *min, *max, *greed)?,
            Tok::Gap => top.repeatable = false,
            Tok::PcreOnly(why) | Tok::Open(Open::PcreOnly(why)) => return Err(why),
            Tok::Open(kind) => {
                if stack.len() > MAX_DEPTH {
                    return Err("groups nested too deeply");
                }
                groups += u32::from(*kind == Open::Capture);
                stack.push(Frame::new(*kind, groups));
            }
            Tok::Close => close(&mut stack)?,
        }
    }
    match (stack.pop(), stack.is_empty()) {
        (Some(top), true) => Ok(Tree {
            root: top.finish(),
            groups,
        }),
        _ => Err("missing )"),
    }
}

fn repeat(top: &mut Frame, min: u32, max: Option<u32>, greed: Greed) -> Result<(), &'static str> {
    if !top.repeatable {
        return Err("quantifier after something not repeatable");
    }
    if max.is_some_and(|m| m < min) {
        return Err("quantifier range out of order");
    }
    let body = Box::new(top.seq.pop().ok_or("quantifier with nothing to repeat")?);
    top.push(
        Node::Repeat {
            body,
            min,
            max,
            greed,
        },
        false,
    );
    Ok(())
}

fn close(stack: &mut Vec<Frame>) -> Result<(), &'static str> {
    if stack.len() < 2 {
        return Err("unmatched )");
    }
    let frame = stack.pop().ok_or("unmatched )")?;
    let (kind, index) = (frame.kind, frame.index);
    let body = Box::new(frame.finish());
    let node = match kind {
        Open::Capture => Node::Capture(index, body),
        Open::Atomic => Node::Atomic(body),
        _ => Node::Group(body),
    };
    stack.last_mut().ok_or("unmatched )")?.push(node, true);
    Ok(())
}
