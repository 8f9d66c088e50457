//! JSON tokens as yajl 2 (ModSecurity's JSON library) reads them: its whitespace, number and
//! literal grammar, structural-only UTF-8 checks, and its string unescaping (including what it
//! does with unpaired surrogates). Error texts are yajl's.

/// A token; strings come decoded, numbers as their text.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Tok<'a> {
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Colon,
    Comma,
    Str(Vec<u8>),
    Num(&'a [u8]),
    Literal(&'static [u8]),
    Eof,
}

/// A lexical failure: yajl's text, and whether it showed only at the end of the input (which
/// v2 reports from its "complete" step).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LexError {
    Lexical { text: &'static str, at_eof: bool },
    PrematureEof,
}

pub(super) struct Lexer<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(input: &'a [u8]) -> Self {
        Lexer { input, pos: 0 }
    }

    pub(super) fn next_token(&mut self) -> Result<Tok<'a>, LexError> {
        while self
            .input
            .get(self.pos)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        {
            self.pos += 1;
        }
        let Some(&c) = self.input.get(self.pos) else {
            return Ok(Tok::Eof);
        };
        self.pos += 1;
        Ok(match c {
            b'{' => Tok::LBrace,
            b'}' => Tok::RBrace,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b':' => Tok::Colon,
            b',' => Tok::Comma,
            b'"' => Tok::Str(self.string()?),
            b'-' | b'0'..=b'9' => Tok::Num(self.number()?),
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'/' => {
                return Err(lexical(
                    "probable comment found in input text, comments are not enabled.",
                    false,
                ))
            }
            _ => return Err(lexical("invalid char in json text.", false)),
        })
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<Tok<'a>, LexError> {
        for &expected in &word[1..] {
            match self.input.get(self.pos) {
                Some(&b) if b == expected => self.pos += 1,
                Some(_) => return Err(lexical("invalid string in json text.", false)),
                None => return Err(lexical("invalid string in json text.", true)),
            }
        }
        Ok(Tok::Literal(word))
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; a number at the very end is
    /// complete (yajl's final step appends a space).
    fn number(&mut self) -> Result<&'a [u8], LexError> {
        let start = self.pos - 1;
        let mut first = self.input[start];
        if first == b'-' {
            self.require_digit(MINUS)?;
            first = self.input[self.pos - 1];
        }
        if first != b'0' {
            self.skip_digits();
        }
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.require_digit(DECIMAL)?;
            self.skip_digits();
        }
        if matches!(self.input.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.input.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.require_digit(EXPONENT)?;
            self.skip_digits();
        }
        Ok(&self.input[start..self.pos])
    }

    fn require_digit(&mut self, missing: &'static str) -> Result<(), LexError> {
        match self.input.get(self.pos) {
            Some(d) if d.is_ascii_digit() => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(lexical(missing, false)),
            None => Err(lexical(missing, true)),
        }
    }

    fn skip_digits(&mut self) {
        while self.input.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, LexError> {
        let start = self.pos;
        loop {
            let Some(&c) = self.input.get(self.pos) else {
                return Err(LexError::PrematureEof);
            };
            self.pos += 1;
            match c {
                b'"' => return Ok(decode(&self.input[start..self.pos - 1])),
                b'\\' => self.escape()?,
                0..=0x1f => return Err(lexical("invalid character inside string.", false)),
                0x80..=0xff => self.utf8_tail(c)?,
                _ => {}
            }
        }
    }

    fn escape(&mut self) -> Result<(), LexError> {
        let Some(&c) = self.input.get(self.pos) else {
            return Err(LexError::PrematureEof);
        };
        self.pos += 1;
        match c {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                for _ in 0..4 {
                    match self.input.get(self.pos) {
                        Some(h) if h.is_ascii_hexdigit() => self.pos += 1,
                        Some(_) => {
                            return Err(lexical(
                                "invalid (non-hex) character occurs after '\\u' inside string.",
                                false,
                            ))
                        }
                        None => return Err(LexError::PrematureEof),
                    }
                }
                Ok(())
            }
            _ => Err(lexical(
                "inside a string, '\\' occurs before a character which it may not.",
                false,
            )),
        }
    }

    /// yajl checks only the shape of a multi-byte sequence: lead byte and continuation bytes.
    fn utf8_tail(&mut self, lead: u8) -> Result<(), LexError> {
        let tail = if lead >> 5 == 0b110 {
            1
        } else if lead >> 4 == 0b1110 {
            2
        } else if lead >> 3 == 0b11110 {
            3
        } else {
            return Err(lexical("invalid bytes in UTF8 string.", false));
        };
        for _ in 0..tail {
            match self.input.get(self.pos) {
                Some(b) if b >> 6 == 0b10 => self.pos += 1,
                Some(_) => return Err(lexical("invalid bytes in UTF8 string.", false)),
                None => return Err(LexError::PrematureEof),
            }
        }
        Ok(())
    }
}

const MINUS: &str = "malformed number, a digit is required after the minus sign.";
const DECIMAL: &str = "malformed number, a digit is required after the decimal point.";
const EXPONENT: &str = "malformed number, a digit is required after the exponent.";

fn lexical(text: &'static str, at_eof: bool) -> LexError {
    LexError::Lexical { text, at_eof }
}

/// yajl's `yajl_string_decode` of a lexed string body.
fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let escaped = raw.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match escaped {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => i = unicode_escape(raw, i, &mut out),
            other => out.push(other),
        }
    }
    out
}

/// `\uHHHH` whose hex digits start at `i`; the position after what it consumed. A high
/// surrogate followed by `\u` combines with it (whatever it is); one that is not becomes `?` and
/// swallows the next byte, as yajl does.
fn unicode_escape(raw: &[u8], i: usize, out: &mut Vec<u8>) -> usize {
    let cp = hex4(raw, i);
    let after = i + 4;
    if cp & 0xFC00 != 0xD800 {
        utf32_to_utf8(cp, out);
        return after;
    }
    if raw.get(after) == Some(&b'\\') && raw.get(after + 1) == Some(&b'u') {
        let low = hex4(raw, after + 2);
        let combined = ((cp & 0x3F) << 10) | ((((cp >> 6) & 0xF) + 1) << 16) | (low & 0x3FF);
        utf32_to_utf8(combined, out);
        return after + 6;
    }
    out.push(b'?');
    after + 1
}

fn hex4(raw: &[u8], i: usize) -> u32 {
    raw.get(i..i + 4)
        .unwrap_or_default()
        .iter()
        .filter_map(|h| char::from(*h).to_digit(16))
        .fold(0, |acc, d| acc << 4 | d)
}

/// yajl's `Utf32toUtf8`, whose three-byte branch stops below 0xFFFF.
fn utf32_to_utf8(cp: u32, out: &mut Vec<u8>) {
    let byte = |v: u32| u8::try_from(v & 0xFF).unwrap_or(b'?');
    if cp < 0x80 {
        out.push(byte(cp));
    } else if cp < 0x800 {
        out.extend([byte((cp >> 6) | 0xC0), byte((cp & 0x3F) | 0x80)]);
    } else if cp < 0xFFFF {
        out.extend([
            byte((cp >> 12) | 0xE0),
            byte(((cp >> 6) & 0x3F) | 0x80),
            byte((cp & 0x3F) | 0x80),
        ]);
    } else if cp < 0x1F_FFFF {
        out.extend([
            byte((cp >> 18) | 0xF0),
            byte(((cp >> 12) & 0x3F) | 0x80),
            byte(((cp >> 6) & 0x3F) | 0x80),
            byte((cp & 0x3F) | 0x80),
        ]);
    } else {
        out.push(b'?');
    }
}
