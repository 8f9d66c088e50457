//! Folding (`libinjection_sqli_fold`): tokens are read in a window of up to eight slots and
//! combined (`1+1` becomes `1`, `UNION ALL` one word, …) until at most five remain. The rules
//! on two and three tokens are in `fold_rules.rs`.

use super::lexer::Lexer;
use super::token::{Kind, Token};

/// The most tokens a fingerprint has.
pub(super) const MAX_TOKENS: usize = 5;
/// Slots: five plus one read ahead, plus room the C layout has.
pub(super) const SLOTS: usize = MAX_TOKENS + 3;

/// What a folding rule asks the main loop to do next.
pub(super) enum Next {
    /// Start the loop again (`continue`).
    Again,
    /// No rule applied: go on to the next stage.
    Through,
    /// Stop folding with this many tokens.
    Stop(usize),
}

/// The folding state over one tokenizer.
pub(super) struct Folder<'l, 'a> {
    lx: &'l mut Lexer<'a>,
    /// The token slots.
    pub(super) tv: [Token; SLOTS],
    /// Where the next token goes.
    pub(super) pos: usize,
    /// How many tokens are final.
    pub(super) left: usize,
    more: bool,
    last_comment: Token,
}

/// Folds the tokens of `lx`; returns the slots and how many tokens make the fingerprint.
pub(super) fn fold(lx: &mut Lexer<'_>) -> ([Token; SLOTS], usize) {
    let mut f = Folder {
        lx,
        tv: [Token::default(); SLOTS],
        pos: 0,
        left: 0,
        more: true,
        last_comment: Token::default(),
    };
    let n = f.run();
    (f.tv, n)
}

impl Folder<'_, '_> {
    /// The kind in slot `i`.
    pub(super) fn kind(&self, i: usize) -> Kind {
        self.tv.get(i).map_or(Kind::None, |t| t.kind)
    }

    /// The token in slot `i` (a cleared token past the slots).
    pub(super) fn tok(&self, i: usize) -> Token {
        self.tv.get(i).copied().unwrap_or_default()
    }

    /// Sets the kind in slot `i`.
    pub(super) fn set_kind(&mut self, i: usize, kind: Kind) {
        if let Some(t) = self.tv.get_mut(i) {
            t.kind = kind;
        }
    }

    /// Copies slot `src` over slot `dst`.
    pub(super) fn copy(&mut self, dst: usize, src: usize) {
        let t = self.tok(src);
        if let Some(d) = self.tv.get_mut(dst) {
            *d = t;
        }
    }

    /// Tokens read but not final.
    pub(super) fn pending(&self) -> usize {
        self.pos.saturating_sub(self.left)
    }

    fn run(&mut self) -> usize {
        if !self.skip_leading() {
            return 0;
        }
        self.pos = 1;
        // Every pass reads a token, drops one, or changes a kind for good; the budget only
        // makes a loop impossible.
        let mut budget = self.lx.s.len().saturating_mul(8).saturating_add(64);
        loop {
            self.five_token_shapes();
            budget = budget.saturating_sub(1);
            if !self.more || self.left >= MAX_TOKENS || budget == 0 {
                self.left = self.pos;
                break;
            }
            if !self.read_until(2) {
                continue;
            }
            match self.two_token_rules() {
                Next::Again => continue,
                Next::Stop(n) => return n,
                Next::Through => {}
            }
            if !self.read_until(3) {
                continue;
            }
            if !self.three_token_rules() {
                self.left += 1;
            }
        }
        self.finish()
    }

    /// Skips leading comments, `(`, type names and unary operators; false when nothing else.
    fn skip_leading(&mut self) -> bool {
        while self.more {
            let mut t = Token::default();
            self.more = self.lx.next(&mut t);
            self.tv[0] = t;
            let skip = matches!(t.kind, Kind::Comment | Kind::LeftParen | Kind::SqlType)
                || t.is_unary_op();
            if !skip {
                break;
            }
        }
        self.more
    }

    /// Reads tokens until `n` are pending (comments are set aside); false, with all pending
    /// made final, when there are fewer.
    fn read_until(&mut self, n: usize) -> bool {
        while self.more && self.pos <= MAX_TOKENS && self.pending() < n {
            let mut t = Token::default();
            self.more = self.lx.next(&mut t);
            if let Some(slot) = self.tv.get_mut(self.pos) {
                *slot = t;
            }
            if self.more {
                if t.kind == Kind::Comment {
                    self.last_comment = t;
                } else {
                    self.last_comment.kind = Kind::None;
                    self.pos += 1;
                }
            }
        }
        if self.pending() < n {
            self.left = self.pos;
            return false;
        }
        true
    }

    /// With five tokens read, a few shapes (`1,(1)`, `n)o(n`, …) restart from the first.
    fn five_token_shapes(&mut self) {
        if self.pos < MAX_TOKENS {
            return;
        }
        let k: [u8; 5] = std::array::from_fn(|i| self.kind(i).code());
        let shape = matches!(k, [b'1', b'o' | b',', b'(', b'1', b')'])
            || matches!(k, [b'n', b'o', b'(', b'n' | b'1', b')'])
            || matches!(k, [b'1', b')', b',', b'(', b'1'])
            || matches!(k, [b'n', b')', b'o', b'(', b'n']);
        if !shape {
            return;
        }
        if self.pos > MAX_TOKENS {
            self.copy(1, MAX_TOKENS);
            self.pos = 2;
        } else {
            self.pos = 1;
        }
        self.left = 0;
    }

    /// Puts back a trailing comment when there is room, and caps the count at five.
    fn finish(&mut self) -> usize {
        if self.left < MAX_TOKENS && self.last_comment.kind == Kind::Comment {
            let c = self.last_comment;
            if let Some(slot) = self.tv.get_mut(self.left) {
                *slot = c;
            }
            self.left += 1;
        }
        self.left.min(MAX_TOKENS)
    }
}
