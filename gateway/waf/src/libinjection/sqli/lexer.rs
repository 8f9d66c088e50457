//! The SQL tokenizer: which parser each byte starts, and the parsers for operators,
//! punctuation and comments (`libinjection_sqli_tokenize` and the `parse_*` functions it calls
//! through its byte table). Strings are in `strings.rs`, words and numbers in `words.rs`.

use super::scan::{at, find, find_pair, is_white, slice};
use super::token::{Kind, Token};

/// How the input is read: as if it followed a quote, and which SQL dialect decides comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Context {
    /// 0, `'` or `"`: the input is read as if that quote came before it.
    pub(super) quote: u8,
    /// MySQL: `#` starts a comment and `--x` is not one (ANSI otherwise).
    pub(super) mysql: bool,
}

/// The tokenizer's state over one input.
pub(super) struct Lexer<'a> {
    /// The input.
    pub(super) s: &'a [u8],
    /// Where the next token starts.
    pub(super) pos: usize,
    /// The reading context.
    pub(super) ctx: Context,
    /// Tokens produced so far (`stats_tokens`).
    pub(super) tokens: usize,
    /// `--x` comments seen in ANSI mode (`stats_comment_ddx`).
    pub(super) comment_ddx: usize,
    /// `#` seen (`stats_comment_hash`).
    pub(super) comment_hash: usize,
}

impl<'a> Lexer<'a> {
    /// A tokenizer at the start of `s`.
    pub(super) fn new(s: &'a [u8], ctx: Context) -> Self {
        Self {
            s,
            pos: 0,
            ctx,
            tokens: 0,
            comment_ddx: 0,
            comment_hash: 0,
        }
    }

    /// The next token into `tok` (cleared first); false at the end of the input.
    pub(super) fn next(&mut self, tok: &mut Token) -> bool {
        if self.s.is_empty() {
            return false;
        }
        *tok = Token::default();
        if self.pos == 0 && self.ctx.quote != 0 {
            self.pos = self.string_core(0, tok, self.ctx.quote, 0);
            self.tokens += 1;
            return true;
        }
        while self.pos < self.s.len() {
            let next = self.dispatch(tok);
            // Every parser consumes a byte; the guard only makes a stall impossible.
            self.pos = next.max(self.pos + 1);
            if tok.kind != Kind::None {
                self.tokens += 1;
                return true;
            }
        }
        false
    }

    /// Runs the parser the current byte selects; returns where the next one starts.
    fn dispatch(&mut self, tok: &mut Token) -> usize {
        let pos = self.pos;
        match at(self.s, pos) {
            0..=32 | 127 | 160 => pos + 1,
            b'!' | b'&' | b'*' | b':' | b'<' | b'=' | b'>' | b'|' => self.operator2(tok),
            q @ (b'"' | b'\'') => self.string_core(pos, tok, q, 1),
            b'#' => self.hash(tok),
            b'$' => self.money(tok),
            c @ (b'%' | b'+' | b'^' | b'~') => operator1(tok, pos, c),
            c @ (b'(' | b')' | b',' | b';' | b'{' | b'}') => punctuation(tok, pos, c),
            b'-' => self.dash(tok),
            b'.' | b'0'..=b'9' => self.number(tok),
            b'/' => self.slash(tok),
            c @ (b'?' | b']') => {
                tok.assign_char(Kind::Unknown, pos, c);
                pos + 1
            }
            b'@' => self.var(tok),
            b'B' | b'b' => self.bstring(tok),
            b'E' | b'e' => self.estring(tok),
            b'N' | b'n' => self.nqstring(tok),
            b'Q' | b'q' => self.qstring(tok, pos),
            b'U' | b'u' => self.ustring(tok),
            b'X' | b'x' => self.xstring(tok),
            b'[' => self.bword(tok),
            b'\\' => self.backslash(tok),
            b'`' => self.tick(tok, pos),
            _ => self.word(tok),
        }
    }

    /// Two-byte operators (`!=`, `&&`, `::`, …) and `<=>`; otherwise one byte.
    fn operator2(&self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        let c = at(s, pos);
        if pos + 1 >= s.len() {
            return operator1(tok, pos, c);
        }
        if pos + 2 < s.len() && slice(s, pos, pos + 3) == b"<=>" {
            tok.assign(Kind::Operator, pos, b"<=>");
            return pos + 3;
        }
        let two = slice(s, pos, pos + 2);
        if let Some(kind) = super::scan::lookup(two) {
            tok.assign(kind, pos, two);
            return pos + 2;
        }
        if c == b':' {
            tok.assign_char(Kind::Colon, pos, c);
            return pos + 1;
        }
        operator1(tok, pos, c)
    }

    /// `#`: a comment to the end of the line in MySQL, an operator in ANSI.
    fn hash(&mut self, tok: &mut Token) -> usize {
        self.comment_hash += 1;
        if self.ctx.mysql {
            self.comment_hash += 1;
            return self.eol_comment(tok);
        }
        tok.assign_char(Kind::Operator, self.pos, b'#');
        self.pos + 1
    }

    /// `-`: `--` comments (always before white space or the end; in ANSI also before anything
    /// else, counted), else the operator.
    fn dash(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        let dd = at(s, pos + 1) == b'-' && pos + 1 < s.len();
        if dd && pos + 2 < s.len() && is_white(at(s, pos + 2)) {
            return self.eol_comment(tok);
        }
        if dd && pos + 2 == s.len() {
            return self.eol_comment(tok);
        }
        if dd && !self.ctx.mysql {
            self.comment_ddx += 1;
            return self.eol_comment(tok);
        }
        tok.assign_char(Kind::Operator, pos, b'-');
        pos + 1
    }

    /// A comment from here to the next newline (which it consumes) or the end.
    fn eol_comment(&self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        match find(s, pos, b'\n') {
            Some(nl) => {
                tok.assign(Kind::Comment, pos, slice(s, pos, nl));
                nl + 1
            }
            None => {
                tok.assign(Kind::Comment, pos, slice(s, pos, s.len()));
                s.len()
            }
        }
    }

    /// `/`: a C comment (evil when it holds `/*` or is a MySQL `/*!` comment), else the operator.
    fn slash(&self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 1 == s.len() || at(s, pos + 1) != b'*' {
            return operator1(tok, pos, b'/');
        }
        let close = find_pair(s, pos + 2, s.len(), b'*', b'/');
        let end = close.map_or(s.len(), |c| c + 2);
        // Only a closed comment is searched for a nested opening (libinjection 3.10.0 computes
        // the search length from a NULL pointer here; it wraps to an empty search).
        let nested = close.is_some_and(|c| find_pair(s, pos + 2, c + 1, b'/', b'*').is_some());
        let mysql = pos + 2 < s.len() && at(s, pos + 2) == b'!';
        let kind = if nested || mysql {
            Kind::Evil
        } else {
            Kind::Comment
        };
        tok.assign(kind, pos, slice(s, pos, end));
        end
    }

    /// `\`: MySQL's `\N` (NULL) is a number, else a backslash token.
    fn backslash(&self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 1 < s.len() && at(s, pos + 1) == b'N' {
            tok.assign(Kind::Number, pos, slice(s, pos, pos + 2));
            return pos + 2;
        }
        tok.assign_char(Kind::Backslash, pos, b'\\');
        pos + 1
    }
}

/// A one-byte operator.
fn operator1(tok: &mut Token, pos: usize, c: u8) -> usize {
    tok.assign_char(Kind::Operator, pos, c);
    pos + 1
}

/// `( ) , ; { }`: each is its own kind.
fn punctuation(tok: &mut Token, pos: usize, c: u8) -> usize {
    let kind = match c {
        b'(' => Kind::LeftParen,
        b')' => Kind::RightParen,
        b',' => Kind::Comma,
        b';' => Kind::Semicolon,
        b'{' => Kind::LeftBrace,
        _ => Kind::RightBrace,
    };
    tok.assign_char(kind, pos, c);
    pos + 1
}
