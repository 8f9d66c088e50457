//! Quoted things: `'…'` and `"…"` (with `\` and doubled-quote escapes), MySQL backtick names,
//! `N'…'`/`E'…'`, `U&'…'`, Oracle `q'[…]'`, and PostgreSQL `$$…$$` / `$tag$…$tag$`.

use super::lexer::Lexer;
use super::scan::{at, byte_set, find, find_pair, find_sub, lookup, slice, span, ByteSet};
use super::token::{Kind, Token};

/// Digits, `.` and `,` after `$` (money: `$1,000.00`).
const MONEY: ByteSet = byte_set(b"0123456789.,");
/// ASCII letters (a `$tag$`).
const LETTERS: ByteSet = byte_set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");

impl Lexer<'_> {
    /// `parse_string_core`: a string starting at `pos + offset` (offset 1 skips the opening
    /// quote, 0 is the simulated quote of a context) up to an unescaped `delim`.
    pub(super) fn string_core(
        &self,
        pos: usize,
        tok: &mut Token,
        delim: u8,
        offset: usize,
    ) -> usize {
        let s = self.s;
        let start = pos + offset;
        tok.str_open = if offset > 0 { delim } else { 0 };
        let mut q = find(s, start, delim);
        while let Some(qpos) = q {
            if backslashes_before(s, start, qpos) % 2 == 1 {
                q = find(s, qpos + 1, delim);
            } else if qpos + 1 < s.len() && at(s, qpos + 1) == delim {
                q = find(s, qpos + 2, delim);
            } else {
                tok.assign(Kind::String, start, slice(s, start, qpos));
                tok.str_close = delim;
                return qpos + 1;
            }
        }
        tok.assign(Kind::String, start, slice(s, start, s.len()));
        tok.str_close = 0;
        s.len()
    }

    /// `N'…'` and `E'…'`: a single-quoted string after the letter; otherwise a word.
    pub(super) fn estring(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 >= s.len() || at(s, pos + 1) != b'\'' {
            return self.word(tok);
        }
        self.string_core(pos, tok, b'\'', 2)
    }

    /// `U&'…'`: a string marked `u`; otherwise a word.
    pub(super) fn ustring(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 < s.len() && at(s, pos + 1) == b'&' && at(s, pos + 2) == b'\'' {
            let end = self.string_core(pos + 2, tok, b'\'', 1);
            tok.str_open = b'u';
            if tok.str_close == b'\'' {
                tok.str_close = b'u';
            }
            return end;
        }
        self.word(tok)
    }

    /// `N…`: `N'…'` as [`Self::estring`], else Oracle's `nq'…'`.
    pub(super) fn nqstring(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 2 < s.len() && at(s, pos + 1) == b'\'' {
            return self.estring(tok);
        }
        self.qstring(tok, pos + 1)
    }

    /// Oracle's `q'X…X'` with `q` at `qpos` (brackets close with their pair); else a word.
    pub(super) fn qstring(&mut self, tok: &mut Token, qpos: usize) -> usize {
        let s = self.s;
        let is_q = matches!(at(s, qpos), b'q' | b'Q');
        if qpos >= s.len() || !is_q || qpos + 2 >= s.len() || at(s, qpos + 1) != b'\'' {
            return self.word(tok);
        }
        let open = at(s, qpos + 2);
        // C compares a signed char: bytes from 0x80 are below 33 too.
        if !(33..0x80).contains(&open) {
            return self.word(tok);
        }
        let close = match open {
            b'(' => b')',
            b'[' => b']',
            b'{' => b'}',
            b'<' => b'>',
            c => c,
        };
        let start = qpos + 3;
        tok.str_open = b'q';
        match find_pair(s, start, s.len(), close, b'\'') {
            Some(end) => {
                tok.assign(Kind::String, start, slice(s, start, end));
                tok.str_close = b'q';
                end + 2
            }
            None => {
                tok.assign(Kind::String, start, slice(s, start, s.len()));
                tok.str_close = 0;
                s.len()
            }
        }
    }

    /// MySQL's backtick name: a bareword, or a function when its text names one.
    pub(super) fn tick(&self, tok: &mut Token, pos: usize) -> usize {
        let end = self.string_core(pos, tok, b'`', 1);
        tok.kind = if lookup(tok.val()) == Some(Kind::Function) {
            Kind::Function
        } else {
            Kind::Bareword
        };
        end
    }

    /// `$`: money (`$1,000.00`), `$$…$$`, `$tag$…$tag$`, or a bareword `$`.
    pub(super) fn money(&mut self, tok: &mut Token) -> usize {
        let (s, pos) = (self.s, self.pos);
        if pos + 1 == s.len() {
            tok.assign_char(Kind::Bareword, pos, b'$');
            return s.len();
        }
        let digits = span(s, pos + 1, &MONEY);
        if digits == 1 && at(s, pos + 1) == b'.' {
            return self.word(tok);
        }
        if digits > 0 {
            tok.assign(Kind::Number, pos, slice(s, pos, pos + 1 + digits));
            return pos + 1 + digits;
        }
        if at(s, pos + 1) == b'$' {
            let close = find_pair(s, pos + 2, s.len(), b'$', b'$');
            return dollar_string(s, tok, pos + 2, close, 2);
        }
        let tag = span(s, pos + 1, &LETTERS);
        if tag == 0 || pos + tag + 1 == s.len() || at(s, pos + tag + 1) != b'$' {
            tok.assign_char(Kind::Bareword, pos, b'$');
            return pos + 1;
        }
        let start = pos + tag + 2;
        dollar_string(s, tok, start, tag_close(s, pos, tag), tag + 2)
    }
}

/// Where `$tag$` (at `pos`, `tag` letters) closes, as libinjection 3.10.0 (ModSecurity 2.9.x)
/// finds it: its search window is shifted back by `pos` (fixed upstream in 2020), and a match
/// before the string start counts as none.
fn tag_close(s: &[u8], pos: usize, tag: usize) -> Option<usize> {
    let needle = slice(s, pos, pos + tag + 2);
    let window_end = s.len() - pos;
    find_sub(s, tag + 2, window_end, needle).filter(|&at| at >= pos + tag + 2)
}

/// A `$`-quoted string from `start` to `close` (or to the end); `close_len` bytes close it.
fn dollar_string(
    s: &[u8],
    tok: &mut Token,
    start: usize,
    close: Option<usize>,
    close_len: usize,
) -> usize {
    tok.str_open = b'$';
    match close {
        Some(end) => {
            tok.assign(Kind::String, start, slice(s, start, end));
            tok.str_close = b'$';
            end + close_len
        }
        None => {
            tok.assign(Kind::String, start, slice(s, start, s.len()));
            tok.str_close = 0;
            s.len()
        }
    }
}

/// How many backslashes come right before `qpos`, not looking before `start`.
fn backslashes_before(s: &[u8], start: usize, qpos: usize) -> usize {
    slice(s, start, qpos)
        .iter()
        .rev()
        .take_while(|&&c| c == b'\\')
        .count()
}
