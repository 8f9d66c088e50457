//! Words (looked up as keywords, functions, …), `[bracket]` names, `@variables`, and numbers
//! (decimal, `0x`/`0b`, `x'…'`/`b'…'` literals, exponents, Oracle's `d`/`f` suffixes).

use super::lexer::Lexer;
use super::scan::{at, byte_set, cspan, find, is_white, lookup, slice, span, ByteSet};
use super::token::{Kind, Token, VAL_MAX};

/// Bytes that end a word.
const WORD_END: ByteSet = byte_set(b" []{}<>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r\"\xa0");
/// Bytes that end a variable name.
const VAR_END: ByteSet = byte_set(b" <>:\\?=@!#~+-*/&|^%(),';\t\n\x0b\x0c\r'`\"");
/// Hexadecimal digits.
const HEX: ByteSet = byte_set(b"0123456789ABCDEFabcdef");
/// Binary digits.
const BIN: ByteSet = byte_set(b"01");

impl Lexer<'_> {
    /// A word; a `.` or `` ` `` inside splits it when the part before is a known word
    /// (`SELECT.1`, ``SELECT`col` ``). The kind comes from the keyword table.
    pub(super) fn word(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        let wlen = cspan(s, pos, &WORD_END);
        tok.assign(Kind::Bareword, pos, slice(s, pos, pos + wlen));
        for i in 0..tok.len {
            if matches!(tok.byte(i), b'.' | b'`') {
                let head = lookup(tok.val().get(..i).unwrap_or(&[]));
                if let Some(kind) = head.filter(|k| *k != Kind::Bareword) {
                    *tok = Token::default();
                    tok.assign(kind, pos, slice(s, pos, pos + i));
                    return pos + i;
                }
            }
        }
        if wlen <= VAL_MAX {
            tok.kind = lookup(tok.val()).unwrap_or(Kind::Bareword);
        }
        pos + wlen
    }

    /// SQL Server's `[name]`, brackets included (to the end when not closed).
    pub(super) fn bword(&self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        let end = find(s, pos, b']').map_or(s.len(), |e| e + 1);
        tok.assign(Kind::Bareword, pos, slice(s, pos, end));
        end
    }

    /// `@name`, `@@name`, ``@@`name` ``, `@'name'`; the `@` are counted, not kept.
    pub(super) fn var(&mut self, tok: &mut Token) -> usize {
        let s = self.s;
        let mut pos = self.pos + 1;
        if at(s, pos) == b'@' && pos < s.len() {
            pos += 1;
            tok.count = 2;
        } else {
            tok.count = 1;
        }
        if pos < s.len() {
            let quoted = match at(s, pos) {
                b'`' => Some(self.tick(tok, pos)),
                q @ (b'\'' | b'"') => Some(self.string_core(pos, tok, q, 1)),
                _ => None,
            };
            if let Some(end) = quoted {
                tok.kind = Kind::Variable;
                return end;
            }
        }
        let xlen = cspan(s, pos, &VAR_END);
        tok.assign(Kind::Variable, pos, slice(s, pos, pos + xlen));
        pos + xlen
    }

    /// `b'0101'`: a number; otherwise a word.
    pub(super) fn bstring(&mut self, tok: &mut Token) -> usize {
        self.quoted_digits(tok, &BIN)
    }

    /// `x'1F'`: a number; otherwise a word.
    pub(super) fn xstring(&mut self, tok: &mut Token) -> usize {
        self.quoted_digits(tok, &HEX)
    }

    /// A letter, a quote, `digits` and a closing quote make a number; else the word parser.
    fn quoted_digits(&mut self, tok: &mut Token, digits: &ByteSet) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 >= s.len() || at(s, pos + 1) != b'\'' {
            return self.word(tok);
        }
        let wlen = span(s, pos + 2, digits);
        if pos + 2 + wlen >= s.len() || at(s, pos + 2 + wlen) != b'\'' {
            return self.word(tok);
        }
        tok.assign(Kind::Number, pos, slice(s, pos, pos + wlen + 3));
        pos + wlen + 3
    }

    /// A number: `0x…`, `0b…`, digits with an optional fraction and exponent and an Oracle
    /// `d`/`f` suffix. A lone `.` is a dot; an exponent without digits makes a word.
    pub(super) fn number(&mut self, tok: &mut Token) -> usize {
        let (s, start) = (self.s, self.pos);
        if at(s, start) == b'0' && start + 1 < s.len() {
            let digits = match at(s, start + 1) {
                b'X' | b'x' => Some(&HEX),
                b'B' | b'b' => Some(&BIN),
                _ => None,
            };
            if let Some(digits) = digits {
                let xlen = span(s, start + 2, digits);
                let kind = if xlen == 0 {
                    Kind::Bareword
                } else {
                    Kind::Number
                };
                tok.assign(kind, start, slice(s, start, start + 2 + xlen));
                return start + 2 + xlen;
            }
        }
        let mut pos = skip_digits(s, start);
        if at(s, pos) == b'.' && pos < s.len() {
            pos = skip_digits(s, pos + 1);
            if pos - start == 1 {
                tok.assign_char(Kind::Dot, start, b'.');
                return pos;
            }
        }
        let (pos, bare_e) = exponent(s, pos);
        let pos = pos + oracle_suffix(s, pos);
        let kind = if bare_e { Kind::Bareword } else { Kind::Number };
        tok.assign(kind, start, slice(s, start, pos));
        pos
    }
}

/// The position after the ASCII digits from `pos`.
fn skip_digits(s: &[u8], pos: usize) -> usize {
    pos + s
        .get(pos..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count()
}

/// An `e`/`E` exponent with an optional sign: the position after it, and whether it had an
/// `e` but no digits (`1.e`, which libinjection calls a word).
fn exponent(s: &[u8], pos: usize) -> (usize, bool) {
    if pos >= s.len() || !matches!(at(s, pos), b'E' | b'e') {
        return (pos, false);
    }
    let mut p = pos + 1;
    if p < s.len() && matches!(at(s, p), b'+' | b'-') {
        p += 1;
    }
    let end = skip_digits(s, p);
    (end, end == p)
}

/// 1 when an Oracle `d`/`D`/`f`/`F` suffix ends the number here: at the end of the input,
/// before white space or `;`, or before `u`/`U` (so `1fUNION` reads `1f UNION`).
fn oracle_suffix(s: &[u8], pos: usize) -> usize {
    if pos >= s.len() || !matches!(at(s, pos), b'd' | b'D' | b'f' | b'F') {
        return 0;
    }
    if pos + 1 == s.len() {
        return 1;
    }
    let next = at(s, pos + 1);
    usize::from(is_white(next) || matches!(next, b';' | b'u' | b'U'))
}
