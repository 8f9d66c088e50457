//! The folding rules on the two and three tokens at `left`, in libinjection's order (the first
//! that applies wins; most restart the loop, a few let it go on).

use super::fold::{Folder, Next};
use super::scan::lookup;
use super::token::{Kind, Token, VAL_MAX};

/// Words that are functions when `(` follows, though common as column names.
const FUNCTION_WORDS: [&[u8]; 11] = [
    b"USER_ID",
    b"USER_NAME",
    b"DATABASE",
    b"PASSWORD",
    b"USER",
    b"CURRENT_USER",
    b"CURRENT_DATE",
    b"CURRENT_TIME",
    b"CURRENT_TIMESTAMP",
    b"LOCALTIME",
    b"LOCALTIMESTAMP",
];

impl Folder<'_, '_> {
    /// Rules on the tokens at `left` and `left + 1`.
    pub(super) fn two_token_rules(&mut self) -> Next {
        use Kind::*;
        let l = self.left;
        let (a, b) = (self.tok(l), self.tok(l + 1));
        match (a.kind, b.kind) {
            (String, String) | (Semicolon, Semicolon) => self.drop_second(),
            (Operator | Logic, _) if b.is_unary_op() || b.kind == SqlType => {
                self.pos = self.pos.saturating_sub(1);
                self.left = 0;
                Next::Again
            }
            (LeftParen, _) if b.is_unary_op() => self.drop_second_back_one(),
            _ if self.merge_words(l) => self.drop_second_back_one(),
            _ => self.two_token_kinds(a, b),
        }
    }

    /// The rest of the two-token rules, which look at kinds and values.
    fn two_token_kinds(&mut self, a: Token, b: Token) -> Next {
        use Kind::*;
        let l = self.left;
        match (a.kind, b.kind) {
            (Semicolon, Function) if is_if(&b) => {
                self.set_kind(l + 1, Tsql);
                Next::Again
            }
            (Bareword | Variable, LeftParen) if FUNCTION_WORDS.iter().any(|w| a.is(w)) => {
                self.set_kind(l, Function);
                Next::Again
            }
            (Keyword, _) if a.is(b"IN") || a.is(b"NOT IN") => {
                let kind = if b.kind == LeftParen {
                    Operator
                } else {
                    Bareword
                };
                self.set_kind(l, kind);
                Next::Again
            }
            (Operator, _) if a.is(b"LIKE") || a.is(b"NOT LIKE") => {
                if b.kind == LeftParen {
                    self.set_kind(l, Function);
                }
                Next::Through
            }
            (SqlType, Bareword | Number | SqlType | LeftParen | Function | Variable | String) => {
                self.copy(l, l + 1);
                self.pos = self.pos.saturating_sub(1);
                self.left = 0;
                Next::Again
            }
            (Collate, Bareword) => {
                if b.cstr().contains(&b'_') {
                    self.set_kind(l + 1, SqlType);
                    self.left = 0;
                }
                Next::Through
            }
            (Backslash, _) => self.backslash(&b),
            (LeftParen, LeftParen) | (RightParen, RightParen) | (_, RightBrace) => {
                self.pos = self.pos.saturating_sub(1);
                self.left = 0;
                Next::Again
            }
            (LeftBrace, Bareword) => self.brace_word(&b),
            _ => Next::Through,
        }
    }

    /// Drops the second token (`'a' 'b'` reads as one string, `;;` as one `;`).
    fn drop_second(&mut self) -> Next {
        self.pos = self.pos.saturating_sub(1);
        Next::Again
    }

    /// Drops the second token and looks one token further back.
    fn drop_second_back_one(&mut self) -> Next {
        self.pos = self.pos.saturating_sub(1);
        self.left = self.left.saturating_sub(1);
        Next::Again
    }

    /// `\` before an arithmetic operator is a number (T-SQL `\%1`); otherwise it is dropped.
    fn backslash(&mut self, b: &Token) -> Next {
        let l = self.left;
        if b.is_arithmetic_op() {
            self.set_kind(l, Kind::Number);
        } else {
            self.copy(l, l + 1);
            self.pos = self.pos.saturating_sub(1);
        }
        self.left = 0;
        Next::Again
    }

    /// `{ ``` is MySQL's odd `{``.``.id}`: evil, stop. Otherwise ODBC `{foo expr}` drops both.
    fn brace_word(&mut self, b: &Token) -> Next {
        let l = self.left;
        if b.len == 0 {
            self.set_kind(l + 1, Kind::Evil);
            return Next::Stop(l + 2);
        }
        self.left = 0;
        self.pos = self.pos.saturating_sub(2);
        Next::Again
    }

    /// `syntax_merge_words`: two words that form a known phrase (`UNION ALL`, `NOT IN`, …)
    /// become one token in slot `l`.
    fn merge_words(&mut self, l: usize) -> bool {
        use Kind::*;
        let (a, b) = (self.tok(l), self.tok(l + 1));
        let word = |k| {
            matches!(
                k,
                Keyword | Bareword | Operator | Union | Function | Expression | Tsql | SqlType
            )
        };
        if !word(a.kind) || !(word(b.kind) || b.kind == Logic) {
            return false;
        }
        let n = a.len + b.len + 1;
        if n > VAL_MAX {
            return false;
        }
        let mut phrase = [0u8; VAL_MAX];
        let (head, tail) = phrase.split_at_mut(a.len);
        head.copy_from_slice(a.val());
        if let Some((space, rest)) = tail.split_first_mut() {
            *space = b' ';
            if let Some(dst) = rest.get_mut(..b.len) {
                dst.copy_from_slice(b.val());
            }
        }
        let phrase = phrase.get(..n).unwrap_or(&[]);
        let Some(kind) = lookup(phrase) else {
            return false;
        };
        if let Some(t) = self.tv.get_mut(l) {
            t.assign(kind, a.pos, phrase);
        }
        true
    }

    /// Rules on the tokens at `left`, `left + 1`, `left + 2`; true when the loop restarts.
    pub(super) fn three_token_rules(&mut self) -> bool {
        use Kind::*;
        let l = self.left;
        let (a, b, c) = (self.tok(l), self.tok(l + 1), self.tok(l + 2));
        let value = |k| matches!(k, Bareword | Number | Variable | String);
        match (a.kind, b.kind, c.kind) {
            (Number, Operator, Number)
            | (Operator, _, Operator)
            | (Logic, _, Logic)
            | (Variable, Operator, Variable | Number | Bareword)
            | (Bareword | Number, Operator, Number | Bareword)
            | (Bareword, Dot, Bareword)
                if !(a.kind == Operator && b.kind == LeftParen) =>
            {
                self.drop_two()
            }
            (Bareword | Number | Variable | String, Operator, SqlType) if b.cstr() == b"::" => {
                self.drop_two()
            }
            (_, Comma, _) if value(a.kind) && value(c.kind) => self.drop_two(),
            (Expression | Group | Comma, _, LeftParen) if b.is_unary_op() => self.drop_middle(),
            (Keyword | Expression | Group, _, Number | Bareword | Variable | String | Function)
                if b.is_unary_op() =>
            {
                self.drop_middle()
            }
            (Comma, _, Number | Bareword | Variable | String) if b.is_unary_op() => {
                self.copy(l + 1, l + 2);
                self.left = 0;
                self.pos = self.pos.saturating_sub(3);
                true
            }
            (Comma, _, Function) if b.is_unary_op() => self.drop_middle(),
            (Expression, Dot, Bareword) => self.drop_middle(),
            (Function, LeftParen, k) if k != RightParen => {
                if a.is(b"USER") {
                    self.set_kind(l, Bareword);
                }
                false
            }
            _ => false,
        }
    }

    /// Keeps the first of three tokens (`1+1` reads as `1`).
    fn drop_two(&mut self) -> bool {
        self.pos = self.pos.saturating_sub(2);
        self.left = 0;
        true
    }

    /// Drops the middle of three tokens (a unary operator, a dot).
    fn drop_middle(&mut self) -> bool {
        let l = self.left;
        self.copy(l + 1, l + 2);
        self.pos = self.pos.saturating_sub(1);
        self.left = 0;
        true
    }
}

/// A function token spelled `IF` (first two bytes, any case).
fn is_if(t: &Token) -> bool {
    matches!(t.byte(0), b'I' | b'i') && matches!(t.byte(1), b'F' | b'f')
}
