//! SQL tokens: their kind (one character of the fingerprint) and the value, which like
//! libinjection's is cut to 31 bytes.

/// The longest value a token keeps; longer ones are cut (the C token has 32 bytes with a NUL).
pub(super) const VAL_MAX: usize = 31;

/// A token kind; its discriminant is the character it adds to a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub(super) enum Kind {
    /// No token (the kind of an unused slot).
    #[default]
    None = 0,
    /// A keyword such as `SELECT`'s relatives `INTO`, `ORDER BY`, ….
    Keyword = b'k',
    /// `UNION` and its phrases.
    Union = b'U',
    /// `GROUP BY` and friends.
    Group = b'B',
    /// An expression starter such as `SELECT`.
    Expression = b'E',
    /// A type name.
    SqlType = b't',
    /// A function name.
    Function = b'f',
    /// Any other word.
    Bareword = b'n',
    /// A number.
    Number = b'1',
    /// An `@variable`.
    Variable = b'v',
    /// A string literal.
    String = b's',
    /// An operator.
    Operator = b'o',
    /// `AND`, `OR`, `&&`, `||`.
    Logic = b'&',
    /// A comment.
    Comment = b'c',
    /// `COLLATE`.
    Collate = b'A',
    /// `(`.
    LeftParen = b'(',
    /// `)`.
    RightParen = b')',
    /// `{`.
    LeftBrace = b'{',
    /// `}`.
    RightBrace = b'}',
    /// `.`.
    Dot = b'.',
    /// `,`.
    Comma = b',',
    /// `:`.
    Colon = b':',
    /// `;`.
    Semicolon = b';',
    /// A Transact-SQL statement start.
    Tsql = b'T',
    /// `?`, `]`.
    Unknown = b'?',
    /// Input that cannot be parsed consistently (nested or MySQL version comments).
    Evil = b'X',
    /// `\`.
    Backslash = b'\\',
}

impl Kind {
    /// The fingerprint character.
    pub(super) fn code(self) -> u8 {
        self as u8
    }
}

/// One token, laid out as libinjection's `stoken_t`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Token {
    /// The kind.
    pub(super) kind: Kind,
    /// The opening quote of a string (`'`, `"`, `` ` ``, `$`, `q`, `u`), 0 when none.
    pub(super) str_open: u8,
    /// The closing quote, 0 when the string ran to the end of the input.
    pub(super) str_close: u8,
    /// Number of `@` before a variable.
    pub(super) count: u8,
    /// Where the value starts in the input.
    pub(super) pos: usize,
    /// Length of the kept value.
    pub(super) len: usize,
    /// The value, NUL after `len` like the C string.
    pub(super) val: [u8; VAL_MAX + 1],
}

impl Token {
    /// The kept value.
    pub(super) fn val(&self) -> &[u8] {
        self.val.get(..self.len).unwrap_or(&[])
    }

    /// The value as C sees it through `strcmp`/`strchr`: up to the first NUL.
    pub(super) fn cstr(&self) -> &[u8] {
        let v = self.val();
        let end = memchr::memchr(0, v).unwrap_or(v.len());
        v.get(..end).unwrap_or(&[])
    }

    /// Byte `i` of the value buffer (0 past the end).
    pub(super) fn byte(&self, i: usize) -> u8 {
        self.val.get(i).copied().unwrap_or(0)
    }

    /// `st_assign`: kind, position and value (cut to [`VAL_MAX`] bytes); quotes and count stay.
    pub(super) fn assign(&mut self, kind: Kind, pos: usize, value: &[u8]) {
        let n = value.len().min(VAL_MAX);
        self.kind = kind;
        self.pos = pos;
        self.len = n;
        if let (Some(dst), Some(src)) = (self.val.get_mut(..n), value.get(..n)) {
            dst.copy_from_slice(src);
        }
        if let Some(end) = self.val.get_mut(n) {
            *end = 0;
        }
    }

    /// `st_assign_char`: a one-byte value.
    pub(super) fn assign_char(&mut self, kind: Kind, pos: usize, c: u8) {
        self.assign(kind, pos, &[c]);
    }

    /// The value equals `word` (upper case) ignoring ASCII case, as `cstrcasecmp(word, val, len)`.
    pub(super) fn is(&self, word: &[u8]) -> bool {
        self.val().eq_ignore_ascii_case(word)
    }

    /// A one-character arithmetic operator (`st_is_arithmetic_op`).
    pub(super) fn is_arithmetic_op(&self) -> bool {
        self.kind == Kind::Operator
            && self.len == 1
            && matches!(self.byte(0), b'*' | b'/' | b'-' | b'+' | b'%')
    }

    /// A unary operator: `+ - ! ~`, `!!`, `NOT` (`st_is_unary_op`).
    pub(super) fn is_unary_op(&self) -> bool {
        if self.kind != Kind::Operator {
            return false;
        }
        match self.len {
            1 => matches!(self.byte(0), b'+' | b'-' | b'!' | b'~'),
            2 => self.byte(0) == b'!' && self.byte(1) == b'!',
            3 => self.is(b"NOT"),
            _ => false,
        }
    }
}
