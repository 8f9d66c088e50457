//! yajl's parser states, kept on a heap stack (never recursion), driving the naming callbacks.

use super::lexer::{LexError, Lexer, Tok};
use super::naming::{Cancel, Naming};

/// Where the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Complete,
    MapStart,
    MapNeedKey,
    MapSep,
    MapNeedVal,
    MapGotVal,
    ArrayStart,
    ArrayNeedVal,
    ArrayGotVal,
}

/// Why parsing stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// A yajl error: kind (`lexical`, `parse`), text, and whether it showed at the end.
    Yajl {
        kind: &'static str,
        text: &'static str,
        at_eof: bool,
    },
    /// A callback stopped the parse (depth, argument limit).
    Cancelled(Cancel),
}

impl Failure {
    /// v2's `REQBODY_ERROR_MSG`: yajl's own text ends in a newline.
    pub(super) fn message(&self) -> String {
        match self {
            Failure::Yajl {
                kind,
                text,
                at_eof: false,
            } => format!("JSON parsing error: {kind} error: {text}\n"),
            Failure::Yajl {
                kind,
                text,
                at_eof: true,
            } => format!("JSON parser error: {kind} error: {text}\n"),
            Failure::Cancelled(cancel) => format!("JSON parsing error: {}", cancel.message()),
        }
    }
}

fn parse_error(text: &'static str, at_eof: bool) -> Failure {
    Failure::Yajl {
        kind: "parse",
        text,
        at_eof,
    }
}

impl From<LexError> for Failure {
    fn from(e: LexError) -> Self {
        match e {
            LexError::Lexical { text, at_eof } => Failure::Yajl {
                kind: "lexical",
                text,
                at_eof,
            },
            LexError::PrematureEof => parse_error("premature EOF", true),
        }
    }
}

impl From<Cancel> for Failure {
    fn from(c: Cancel) -> Self {
        Failure::Cancelled(c)
    }
}

pub(super) fn parse(body: &[u8], names: &mut Naming) -> Result<(), Failure> {
    let mut lexer = Lexer::new(body);
    let mut stack = vec![State::Start];
    while let Some(&state) = stack.last() {
        if state == State::Complete {
            return match lexer.next_token() {
                Ok(Tok::Eof) => Ok(()),
                _ => Err(parse_error("trailing garbage", false)),
            };
        }
        let tok = lexer.next_token()?;
        if tok == Tok::Eof {
            return Err(parse_error("premature EOF", true));
        }
        step(state, tok, &mut stack, names)?;
    }
    Ok(())
}

/// One token in `state` (the top of `stack`).
fn step(
    state: State,
    tok: Tok<'_>,
    stack: &mut Vec<State>,
    names: &mut Naming,
) -> Result<(), Failure> {
    match state {
        State::Start | State::MapNeedVal | State::ArrayNeedVal | State::ArrayStart => {
            value(state, tok, stack, names)
        }
        State::MapStart | State::MapNeedKey => match tok {
            Tok::Str(key) => {
                names.key(key);
                set_top(stack, State::MapSep);
                Ok(())
            }
            Tok::RBrace if state == State::MapStart => close(stack, |n| n.end_map(), names),
            _ => Err(parse_error("invalid object key (must be a string)", false)),
        },
        State::MapSep => match tok {
            Tok::Colon => {
                set_top(stack, State::MapNeedVal);
                Ok(())
            }
            _ => Err(parse_error(
                "object key and value must be separated by a colon (':')",
                false,
            )),
        },
        State::MapGotVal => match tok {
            Tok::RBrace => close(stack, |n| n.end_map(), names),
            Tok::Comma => {
                set_top(stack, State::MapNeedKey);
                Ok(())
            }
            _ => Err(parse_error(
                "after key and value, inside map, I expect ',' or '}'",
                false,
            )),
        },
        State::ArrayGotVal => match tok {
            Tok::RBracket => close(stack, |n| n.end_array(), names),
            Tok::Comma => {
                set_top(stack, State::ArrayNeedVal);
                Ok(())
            }
            _ => Err(parse_error(
                "after array element, I expect ',' or ']'",
                false,
            )),
        },
        State::Complete => Err(parse_error("trailing garbage", false)),
    }
}

/// A token where a value is expected.
fn value(
    state: State,
    tok: Tok<'_>,
    stack: &mut Vec<State>,
    names: &mut Naming,
) -> Result<(), Failure> {
    let after = match state {
        State::Start => State::Complete,
        State::MapNeedVal => State::MapGotVal,
        _ => State::ArrayGotVal,
    };
    match tok {
        Tok::Str(s) => scalar(&s, after, stack, names),
        Tok::Num(n) => scalar(n, after, stack, names),
        Tok::Literal(b"null") => scalar(b"", after, stack, names),
        Tok::Literal(word) => scalar(word, after, stack, names),
        Tok::LBrace => {
            set_top(stack, after);
            stack.push(State::MapStart);
            names.start_map().map_err(Failure::from)
        }
        Tok::LBracket => {
            set_top(stack, after);
            stack.push(State::ArrayStart);
            names.start_array().map_err(Failure::from)
        }
        Tok::RBracket if state == State::ArrayStart => close(stack, |n| n.end_array(), names),
        _ => Err(parse_error(
            "unallowed token at this point in JSON text",
            false,
        )),
    }
}

fn scalar(
    value: &[u8],
    after: State,
    stack: &mut [State],
    names: &mut Naming,
) -> Result<(), Failure> {
    names.scalar(value)?;
    set_top(stack, after);
    Ok(())
}

fn close(
    stack: &mut Vec<State>,
    end: impl FnOnce(&mut Naming),
    names: &mut Naming,
) -> Result<(), Failure> {
    stack.pop();
    end(names);
    Ok(())
}

fn set_top(stack: &mut [State], state: State) {
    if let Some(top) = stack.last_mut() {
        *top = state;
    }
}
