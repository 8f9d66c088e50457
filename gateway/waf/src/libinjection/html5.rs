//! libinjection's HTML5 tokenizer (`libinjection_html5.c`): a cut-down HTML5 tokenizer with
//! some browser quirks (NUL in tag names, `<%…%>` comments, back-quoted values), which can start
//! inside an attribute value. Comments, CDATA and doctypes are in `html5_markup.rs`.
//!
//! The C states call each other directly; here a state returns the next one and
//! [`Html5::next`] loops, so no input can recurse deeply.

use memchr::memchr;

/// The kind of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Text between tags.
    DataText,
    /// `<name` (the name).
    TagNameOpen,
    /// The `>` ending an opening tag.
    TagNameClose,
    /// `/>`.
    TagNameSelfclose,
    /// `</name>` (the name).
    TagClose,
    /// An attribute name.
    AttrName,
    /// An attribute value.
    AttrValue,
    /// A comment, bogus comment or `<%…%>`.
    TagComment,
    /// `<!DOCTYPE…>`.
    Doctype,
}

/// Where tokenizing starts: in text, or inside an attribute value (the input was placed
/// there unquoted or after a `'`, `"` or `` ` ``).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// Text.
    Data,
    /// After `name=`.
    ValueNoQuote,
    /// After `name='`.
    ValueSingleQuote,
    /// After `name="`.
    ValueDoubleQuote,
    /// After ``name=` ``.
    ValueBackQuote,
}

/// The tokenizer states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Eof,
    Data,
    TagOpen,
    EndTagOpen,
    TagName,
    TagNameClose,
    BeforeAttributeName,
    AttributeName,
    AfterAttributeName,
    BeforeAttributeValue,
    ValueQuoted(u8),
    ValueUnquoted,
    AfterValueQuoted,
    SelfClosingStartTag,
    BogusComment,
    BogusComment2,
    MarkupDeclarationOpen,
    Comment,
    Cdata,
    Doctype,
}

/// What a state did.
pub(super) enum Flow {
    /// A token is ready.
    Emit,
    /// No more tokens.
    Done,
    /// Continue in this state.
    Go(State),
}

/// The tokenizer over one input.
pub(super) struct Html5<'a> {
    pub(super) s: &'a [u8],
    pub(super) pos: usize,
    is_close: bool,
    pub(super) state: State,
    /// Where the current token starts.
    pub(super) start: usize,
    /// Its length.
    pub(super) len: usize,
    /// Its kind.
    pub(super) kind: Kind,
}

/// White space for the tokenizer; NUL too (C's `strchr` finds the terminator).
fn is_white(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0)
}

impl<'a> Html5<'a> {
    /// A tokenizer over `s`.
    pub(super) fn new(s: &'a [u8], start: Start) -> Self {
        let state = match start {
            Start::Data => State::Data,
            Start::ValueNoQuote => State::BeforeAttributeName,
            Start::ValueSingleQuote => State::ValueQuoted(b'\''),
            Start::ValueDoubleQuote => State::ValueQuoted(b'"'),
            Start::ValueBackQuote => State::ValueQuoted(b'`'),
        };
        Self {
            s,
            pos: 0,
            is_close: false,
            state,
            start: 0,
            len: 0,
            kind: Kind::DataText,
        }
    }

    /// Reads the next token; false at the end.
    pub(super) fn next(&mut self) -> bool {
        let mut state = self.state;
        // Every hop consumes input or leads to a state that does; the cap is a backstop.
        for _ in 0..self.s.len().saturating_mul(4).saturating_add(16) {
            match self.step(state) {
                Flow::Emit => return true,
                Flow::Done => return false,
                Flow::Go(next) => state = next,
            }
        }
        false
    }

    /// The current token's bytes.
    pub(super) fn token(&self) -> &'a [u8] {
        self.s.get(self.start..self.start + self.len).unwrap_or(&[])
    }

    /// Byte `i` (0 past the end).
    pub(super) fn at(&self, i: usize) -> u8 {
        self.s.get(i).copied().unwrap_or(0)
    }

    /// Sets the token and the state the next call starts in.
    pub(super) fn emit(&mut self, kind: Kind, start: usize, len: usize, then: State) -> Flow {
        self.kind = kind;
        self.start = start;
        self.len = len;
        self.state = then;
        Flow::Emit
    }

    /// Emits the rest of the input as one token and ends.
    pub(super) fn emit_rest(&mut self, kind: Kind) -> Flow {
        let (pos, n) = (self.pos, self.s.len());
        self.pos = n;
        self.emit(kind, pos, n.saturating_sub(pos), State::Eof)
    }

    /// Index of the next `c` at or after `from`.
    pub(super) fn find(&self, from: usize, c: u8) -> Option<usize> {
        memchr(c, self.s.get(from..)?).map(|i| from + i)
    }

    fn step(&mut self, state: State) -> Flow {
        match state {
            State::Eof => Flow::Done,
            State::Data => self.data(),
            State::TagOpen => self.tag_open(),
            State::EndTagOpen => self.end_tag_open(),
            State::TagName => self.tag_name(),
            State::TagNameClose => self.tag_name_close(),
            State::BeforeAttributeName => self.before_attribute_name(),
            State::AttributeName => self.attribute_name(),
            State::AfterAttributeName => self.after_attribute_name(),
            State::BeforeAttributeValue => self.before_attribute_value(),
            State::ValueQuoted(q) => self.value_quoted(q),
            State::ValueUnquoted => self.value_unquoted(),
            State::AfterValueQuoted => self.after_value_quoted(),
            State::SelfClosingStartTag => self.self_closing_start_tag(),
            State::BogusComment => self.bogus_comment(),
            State::BogusComment2 => self.bogus_comment2(),
            State::MarkupDeclarationOpen => self.markup_declaration_open(),
            State::Comment => self.comment(),
            State::Cdata => self.cdata(),
            State::Doctype => self.doctype(),
        }
    }

    /// Skips white space (and NUL); `None` at the end, and for byte 0xFF, which the C code
    /// returns as a signed `char` equal to its EOF marker -1.
    fn skip_white(&mut self) -> Option<u8> {
        while self.pos < self.s.len() {
            match self.at(self.pos) {
                0 | 0x20 | 0x09 | 0x0a | 0x0b | 0x0c | 0x0d => self.pos += 1,
                0xff => return None,
                c => return Some(c),
            }
        }
        None
    }

    fn data(&mut self) -> Flow {
        let pos = self.pos;
        match self.find(pos, b'<') {
            None => {
                let n = self.s.len().saturating_sub(pos);
                if n == 0 {
                    self.state = State::Eof;
                    return Flow::Done;
                }
                self.emit(Kind::DataText, pos, n, State::Eof)
            }
            Some(lt) => {
                self.pos = lt + 1;
                if lt == pos {
                    self.state = State::TagOpen;
                    return Flow::Go(State::TagOpen);
                }
                self.emit(Kind::DataText, pos, lt - pos, State::TagOpen)
            }
        }
    }

    fn tag_open(&mut self) -> Flow {
        if self.pos >= self.s.len() {
            return Flow::Done;
        }
        let next = match self.at(self.pos) {
            b'!' => State::MarkupDeclarationOpen,
            b'/' => {
                self.is_close = true;
                State::EndTagOpen
            }
            b'?' => State::BogusComment,
            b'%' => State::BogusComment2,
            c if c.is_ascii_alphabetic() || c == 0 => return Flow::Go(State::TagName),
            _ if self.pos == 0 => return Flow::Go(State::Data),
            _ => return self.emit(Kind::DataText, self.pos - 1, 1, State::Data),
        };
        self.pos += 1;
        Flow::Go(next)
    }

    fn end_tag_open(&mut self) -> Flow {
        if self.pos >= self.s.len() {
            return Flow::Done;
        }
        match self.at(self.pos) {
            b'>' => Flow::Go(State::Data),
            c if c.is_ascii_alphabetic() => Flow::Go(State::TagName),
            _ => {
                self.is_close = false;
                Flow::Go(State::BogusComment)
            }
        }
    }

    fn tag_name_close(&mut self) -> Flow {
        self.is_close = false;
        let pos = self.pos;
        self.pos += 1;
        let then = if self.pos < self.s.len() {
            State::Data
        } else {
            State::Eof
        };
        self.emit(Kind::TagNameClose, pos, 1, then)
    }

    fn tag_name(&mut self) -> Flow {
        let start = self.pos;
        let mut p = start;
        while p < self.s.len() {
            let c = self.at(p);
            if c != 0 && (is_white(c) || c == b'/') {
                self.pos = p + 1;
                let then = if c == b'/' {
                    State::SelfClosingStartTag
                } else {
                    State::BeforeAttributeName
                };
                return self.emit(Kind::TagNameOpen, start, p - start, then);
            }
            if c == b'>' {
                return self.tag_name_end(start, p);
            }
            p += 1;
        }
        self.emit(Kind::TagNameOpen, start, self.s.len() - start, State::Eof)
    }

    /// A tag name ended by `>` at `gt`: a closing tag is complete, an opening one emits its
    /// name and then the `>`.
    fn tag_name_end(&mut self, start: usize, gt: usize) -> Flow {
        if self.is_close {
            self.pos = gt + 1;
            self.is_close = false;
            return self.emit(Kind::TagClose, start, gt - start, State::Data);
        }
        self.pos = gt;
        self.emit(Kind::TagNameOpen, start, gt - start, State::TagNameClose)
    }

    fn before_attribute_name(&mut self) -> Flow {
        match self.skip_white() {
            None => Flow::Done,
            Some(b'/') => {
                self.pos += 1;
                Flow::Go(State::SelfClosingStartTag)
            }
            Some(b'>') => {
                let pos = self.pos;
                self.pos += 1;
                self.emit(Kind::TagNameClose, pos, 1, State::Data)
            }
            Some(_) => Flow::Go(State::AttributeName),
        }
    }

    fn attribute_name(&mut self) -> Flow {
        let start = self.pos;
        let mut p = start + 1;
        while p < self.s.len() {
            let (then, skip) = match self.at(p) {
                c if is_white(c) => (State::AfterAttributeName, 1),
                b'/' => (State::SelfClosingStartTag, 1),
                b'=' => (State::BeforeAttributeValue, 1),
                b'>' => (State::TagNameClose, 0),
                _ => {
                    p += 1;
                    continue;
                }
            };
            self.pos = p + skip;
            return self.emit(Kind::AttrName, start, p - start, then);
        }
        self.emit_rest(Kind::AttrName)
    }

    fn after_attribute_name(&mut self) -> Flow {
        match self.skip_white() {
            None => Flow::Done,
            Some(b'/') => {
                self.pos += 1;
                Flow::Go(State::SelfClosingStartTag)
            }
            Some(b'=') => {
                self.pos += 1;
                Flow::Go(State::BeforeAttributeValue)
            }
            Some(b'>') => Flow::Go(State::TagNameClose),
            Some(_) => Flow::Go(State::AttributeName),
        }
    }

    fn before_attribute_value(&mut self) -> Flow {
        match self.skip_white() {
            None => {
                self.state = State::Eof;
                Flow::Done
            }
            Some(q @ (b'"' | b'\'' | b'`')) => Flow::Go(State::ValueQuoted(q)),
            Some(_) => Flow::Go(State::ValueUnquoted),
        }
    }

    /// A quoted value; at position 0 (a start inside the value) there is no quote to skip.
    fn value_quoted(&mut self, quote: u8) -> Flow {
        if self.pos > 0 {
            self.pos += 1;
        }
        let start = self.pos;
        match self.find(start, quote) {
            None => self.emit_rest(Kind::AttrValue),
            Some(q) => {
                self.pos = q + 1;
                self.emit(Kind::AttrValue, start, q - start, State::AfterValueQuoted)
            }
        }
    }

    fn value_unquoted(&mut self) -> Flow {
        let start = self.pos;
        for p in start..self.s.len() {
            let c = self.at(p);
            if is_white(c) {
                self.pos = p + 1;
                return self.emit(
                    Kind::AttrValue,
                    start,
                    p - start,
                    State::BeforeAttributeName,
                );
            }
            if c == b'>' {
                self.pos = p;
                return self.emit(Kind::AttrValue, start, p - start, State::TagNameClose);
            }
        }
        let n = self.s.len().saturating_sub(start);
        self.emit(Kind::AttrValue, start, n, State::Eof)
    }

    fn after_value_quoted(&mut self) -> Flow {
        if self.pos >= self.s.len() {
            return Flow::Done;
        }
        match self.at(self.pos) {
            c if is_white(c) => {
                self.pos += 1;
                Flow::Go(State::BeforeAttributeName)
            }
            b'/' => {
                self.pos += 1;
                Flow::Go(State::SelfClosingStartTag)
            }
            b'>' => {
                let pos = self.pos;
                self.pos += 1;
                self.emit(Kind::TagNameClose, pos, 1, State::Data)
            }
            _ => Flow::Go(State::BeforeAttributeName),
        }
    }

    fn self_closing_start_tag(&mut self) -> Flow {
        if self.pos >= self.s.len() {
            return Flow::Done;
        }
        if self.at(self.pos) == b'>' {
            let start = self.pos.saturating_sub(1);
            self.pos += 1;
            return self.emit(Kind::TagNameSelfclose, start, 2, State::Data);
        }
        Flow::Go(State::BeforeAttributeName)
    }
}
