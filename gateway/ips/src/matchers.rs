//! Non-content keywords: numeric comparisons (`bsize`, `urilen`), `pcre` (linear engine first,
//! PCRE2 with JIT and match limits for what it cannot compile), `byte_test` and `byte_jump`.

use crate::rule::Buf;

/// A numeric comparison: `N`, `<N`, `>N`, `<=N`, `>=N`, `!N`, `N<>M` (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumCmp {
    /// Equal.
    Eq(u64),
    /// Not equal.
    Ne(u64),
    /// Less than.
    Lt(u64),
    /// Less or equal.
    Le(u64),
    /// Greater than.
    Gt(u64),
    /// Greater or equal.
    Ge(u64),
    /// Strictly between.
    Range(u64, u64),
}

impl NumCmp {
    /// Parses the comparison.
    pub fn parse(s: &str) -> Result<NumCmp, String> {
        let s = s.trim();
        let n = |t: &str| -> Result<u64, String> {
            t.trim().parse().map_err(|_| format!("bad number {t:?}"))
        };
        if let Some((a, b)) = s.split_once("<>") {
            let (a, b) = (n(a)?, n(b)?);
            if a >= b {
                return Err(format!("empty range {s:?}"));
            }
            return Ok(NumCmp::Range(a, b));
        }
        Ok(if let Some(r) = s.strip_prefix("<=") {
            NumCmp::Le(n(r)?)
        } else if let Some(r) = s.strip_prefix(">=") {
            NumCmp::Ge(n(r)?)
        } else if let Some(r) = s.strip_prefix('<') {
            NumCmp::Lt(n(r)?)
        } else if let Some(r) = s.strip_prefix('>') {
            NumCmp::Gt(n(r)?)
        } else if let Some(r) = s.strip_prefix('!') {
            NumCmp::Ne(n(r.trim_start_matches('='))?)
        } else if let Some(r) = s.strip_prefix('=') {
            NumCmp::Eq(n(r)?)
        } else {
            NumCmp::Eq(n(s)?)
        })
    }

    /// Applies the comparison.
    pub fn test(self, v: u64) -> bool {
        match self {
            NumCmp::Eq(n) => v == n,
            NumCmp::Ne(n) => v != n,
            NumCmp::Lt(n) => v < n,
            NumCmp::Le(n) => v <= n,
            NumCmp::Gt(n) => v > n,
            NumCmp::Ge(n) => v >= n,
            NumCmp::Range(a, b) => v > a && v < b,
        }
    }
}

/// Limits for the backtracking engine.
#[derive(Clone, Debug)]
pub struct PcreLimits {
    /// PCRE2 match limit (Suricata's default is 3,500).
    pub match_limit: u32,
    /// PCRE2 depth limit (Suricata's default recursion limit is 1,500).
    pub depth_limit: u32,
}

impl Default for PcreLimits {
    fn default() -> Self {
        PcreLimits {
            match_limit: 3500,
            depth_limit: 1500,
        }
    }
}

/// Why a pcre did not load.
#[derive(Debug)]
pub enum PcreError {
    /// Malformed.
    Syntax(String),
    /// Not supported.
    Unsupported(String),
}

/// The compiled expression.
pub enum Regex {
    /// The linear-time engine (`regex-automata`'s meta regex: lazy DFA over a Thompson NFA).
    Linear(regex_automata::meta::Regex),
    /// PCRE2 (JIT when available) with match limits.
    Backtrack(pcre2::bytes::Regex),
}

impl std::fmt::Debug for Regex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Regex::Linear(_) => write!(f, "Linear"),
            Regex::Backtrack(r) => write!(f, "Backtrack({})", r.as_str()),
        }
    }
}

/// The engine hit its match limit: counted, treated as no match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitHit;

/// A `pcre` keyword.
#[derive(Debug)]
pub struct Pcre {
    /// `!`.
    pub negated: bool,
    /// `R`.
    pub relative: bool,
    /// The compiled expression.
    pub re: Regex,
    /// The rule text, for reports.
    pub source: String,
}

impl Pcre {
    /// Parses `"/pattern/flags"`; returns the buffer named by a buffer flag (`U`, `H`, …).
    pub fn parse(v: &str, limits: &PcreLimits) -> Result<(Pcre, Option<Buf>), PcreError> {
        // Quoted as the documentation asks, or bare (`pcre:/x/U;`), which Suricata's parser
        // also reads: its pattern regex finds the `/…/flags` either way.
        let (negated, inner) = match crate::content::negated_quoted(v) {
            Ok(q) => q,
            Err(e) => {
                let t = v.trim();
                let (negated, rest) = match t.strip_prefix('!') {
                    Some(r) => (true, r.trim_start()),
                    None => (false, t),
                };
                if !rest.starts_with('/') {
                    return Err(PcreError::Syntax(e));
                }
                (negated, rest)
            }
        };
        let body = inner
            .strip_prefix('/')
            .ok_or_else(|| PcreError::Syntax("pattern must start with '/'".into()))?;
        let end = body
            .rfind('/')
            .ok_or_else(|| PcreError::Syntax("pattern must end with '/flags'".into()))?;
        let (pat, flags) = (&body[..end], &body[end + 1..]);
        let mut f = Flags::default();
        let mut buf = None;
        for c in flags.chars() {
            match c {
                'i' => f.i = true,
                's' => f.s = true,
                'm' => f.m = true,
                'x' => f.x = true,
                'A' => f.anchored = true,
                'E' => f.dollar_endonly = true,
                'G' => f.ungreedy = true,
                'R' => f.relative = true,
                'O' | 'B' => {}
                c => match Buf::pcre_flag(c) {
                    Some(b) => buf = Some(b),
                    None => return Err(PcreError::Syntax(format!("unknown flag {c:?}"))),
                },
            }
        }
        let re = compile(pat, &f, limits)?;
        Ok((
            Pcre {
                negated,
                relative: f.relative,
                re,
                source: inner.to_string(),
            },
            buf,
        ))
    }

    /// Searches the subject `hay[base..]` from `from` (relative to `base`, so `^` keeps
    /// anchoring at `base` on a retry); the match is returned in `hay` coordinates.
    pub fn find_at(
        &self,
        hay: &[u8],
        base: usize,
        from: usize,
    ) -> Result<Option<(usize, usize)>, LimitHit> {
        let sub = hay.get(base..).unwrap_or_default();
        if from > sub.len() {
            return Ok(None);
        }
        match &self.re {
            Regex::Linear(r) => Ok(r
                .find(regex_automata::Input::new(sub).range(from..))
                .map(|m| (base + m.start(), base + m.end()))),
            Regex::Backtrack(r) => match r.find_at(sub, from) {
                Ok(m) => Ok(m.map(|m| (base + m.start(), base + m.end()))),
                Err(_) => Err(LimitHit),
            },
        }
    }

    /// True when the expression runs on the backtracking engine.
    pub fn is_backtracking(&self) -> bool {
        matches!(self.re, Regex::Backtrack(_))
    }
}

#[derive(Default)]
struct Flags {
    i: bool,
    s: bool,
    m: bool,
    x: bool,
    anchored: bool,
    dollar_endonly: bool,
    ungreedy: bool,
    relative: bool,
}

/// PCRE's `$` without `m`: the end, or before a final newline.
const PCRE_DOLLAR: &str = r"(?:\n?\z)";

fn compile(pat: &str, f: &Flags, limits: &PcreLimits) -> Result<Regex, PcreError> {
    if let Some(t) = translate(pat, f) {
        let wrapped = if f.anchored {
            format!("^(?:{t}{})", if f.x { "\n" } else { "" })
        } else {
            t
        };
        // Lazy DFA only: no eagerly built full or one-pass DFAs, no backtracker (thousands of
        // expressions stay small; searches only need match bounds).
        let built = regex_automata::meta::Regex::builder()
            .syntax(
                regex_automata::util::syntax::Config::new()
                    .unicode(false)
                    .utf8(false)
                    .case_insensitive(f.i)
                    .dot_matches_new_line(f.s)
                    .multi_line(f.m)
                    .ignore_whitespace(f.x)
                    .swap_greed(f.ungreedy),
            )
            .configure(
                regex_automata::meta::Config::new()
                    .dfa(false)
                    .onepass(false)
                    .backtrack(false)
                    .nfa_size_limit(Some(8 << 20))
                    .hybrid_cache_capacity(1 << 20),
            )
            .build(&wrapped);
        if let Ok(r) = built {
            return Ok(Regex::Linear(r));
        }
    }
    // PCRE2: exact PCRE semantics, bounded by start-of-pattern limits.
    let mut p = format!(
        "(*LIMIT_MATCH={})(*LIMIT_DEPTH={})",
        limits.match_limit, limits.depth_limit
    );
    if f.ungreedy {
        p.push_str("(?U)");
    }
    let body = if f.dollar_endonly && !f.m {
        dollar_to_end(pat)
    } else {
        pat.to_string()
    };
    if f.anchored {
        p.push_str(r"\A(?:");
        p.push_str(&body);
        p.push_str(if f.x { "\n)" } else { ")" });
    } else {
        p.push_str(&body);
    }
    pcre2::bytes::RegexBuilder::new()
        .caseless(f.i)
        .dotall(f.s)
        .multi_line(f.m)
        .extended(f.x)
        .utf(false)
        .jit_if_available(true)
        .build(&p)
        .map(Regex::Backtrack)
        .map_err(|e| PcreError::Syntax(format!("{e}")))
}

/// Rewrites a PCRE pattern into `regex` syntax, or `None` when the linear engine cannot keep
/// PCRE's meaning (then PCRE2 runs it).
fn translate(pat: &str, f: &Flags) -> Option<String> {
    if pat.contains("{,") || pat.contains("(?#") {
        return None;
    }
    let mut out = String::with_capacity(pat.len() + 16);
    let mut chars = pat.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = class_start;
        class_start = false;
        match c {
            '\\' => {
                let n = chars.next()?;
                if n.is_ascii_alphanumeric() {
                    match n {
                        'Z' if !in_class => {
                            out.push_str(if f.dollar_endonly { r"\z" } else { PCRE_DOLLAR })
                        }
                        'h' => out.push_str(if in_class { r"\t " } else { r"[\t ]" }),
                        'd' | 'D' | 'w' | 'W' | 's' | 'S' | 'n' | 'r' | 't' | 'f' | 'v' | 'x'
                        | 'b' | 'B' | 'A' | 'z' => {
                            out.push('\\');
                            out.push(n);
                        }
                        _ => return None,
                    }
                } else if regex_syntax::is_meta_character(n) {
                    out.push('\\');
                    out.push(n);
                } else if n.is_ascii() {
                    out.push(n);
                } else {
                    return None;
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
                if chars.peek() == Some(&']') {
                    chars.next();
                    out.push_str(r"\]");
                }
            }
            '[' if in_class => {
                // POSIX classes `[:alpha:]` pass; a lone '[' is a literal in PCRE.
                if chars.peek() == Some(&':') {
                    out.push('[');
                } else {
                    out.push_str(r"\[");
                }
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '$' if !in_class => {
                if f.dollar_endonly {
                    out.push_str(r"\z");
                } else if f.m {
                    out.push('$');
                } else {
                    out.push_str(PCRE_DOLLAR);
                }
            }
            '(' if !in_class && chars.peek() == Some(&'?') => {
                out.push('(');
                // Lookaround, atomic groups, conditionals, recursion: PCRE2.
                let mut look = chars.clone();
                look.next();
                match look.next() {
                    Some('=' | '!' | '>' | '|' | '(' | 'R' | '+' | '&' | 'C') => return None,
                    Some('<') if matches!(look.next(), Some('=' | '!')) => return None,
                    Some('P') if matches!(look.next(), Some('=' | '>')) => return None,
                    _ => {}
                }
            }
            '+' if !in_class
                && matches!(out.chars().last(), Some('*' | '+' | '?' | '}'))
                && !out.ends_with("\\+") =>
            {
                // Possessive quantifier.
                return None;
            }
            _ => out.push(c),
        }
    }
    if in_class {
        return None;
    }
    Some(out)
}

/// `$` → `\z` outside character classes (PCRE's `E` flag for PCRE2).
fn dollar_to_end(pat: &str) -> String {
    let mut out = String::with_capacity(pat.len() + 4);
    let (mut in_class, mut esc) = (false, false);
    for c in pat.chars() {
        if esc {
            esc = false;
            out.push(c);
            continue;
        }
        match c {
            '\\' => {
                esc = true;
                out.push(c);
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            '$' if !in_class => out.push_str(r"\z"),
            _ => out.push(c),
        }
    }
    out
}

/// Why a byte keyword did not parse.
#[derive(Debug)]
pub enum ByteError {
    /// Malformed.
    Syntax(String),
    /// Not supported.
    Unsupported(String),
}

/// How bytes become a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Big-endian binary.
    Big,
    /// Little-endian binary.
    Little,
    /// ASCII digits in a base.
    String(u32),
}

/// Reads `n` bytes at `at` as a number (`n` 0 with a string: the digits there, up to 20).
pub(crate) fn read_number(buf: &[u8], at: i64, n: usize, enc: Encoding) -> Option<u64> {
    if at < 0 {
        return None;
    }
    let at = usize::try_from(at).ok()?;
    let n = if n == 0 {
        buf.len().saturating_sub(at).min(20)
    } else {
        n
    };
    let bytes = buf.get(at..at.checked_add(n)?)?;
    match enc {
        Encoding::Big => Some(bytes.iter().fold(0u64, |a, &b| a << 8 | u64::from(b))),
        Encoding::Little => Some(bytes.iter().rev().fold(0u64, |a, &b| a << 8 | u64::from(b))),
        Encoding::String(base) => {
            let s = std::str::from_utf8(bytes).ok()?;
            // Suricata converts the leading digits of the window.
            let digits: String = s
                .trim_start()
                .chars()
                .take_while(|c| c.is_digit(base))
                .collect();
            u64::from_str_radix(&digits, base).ok()
        }
    }
}

fn parse_value(s: &str) -> Result<u64, ByteError> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| {
        if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
            ByteError::Unsupported(format!("value from an extracted variable {s:?}"))
        } else {
            ByteError::Syntax(format!("bad number {s:?}"))
        }
    })
}

fn parse_common(
    opt: &str,
    it: &mut std::iter::Peekable<std::slice::Iter<'_, &str>>,
    enc: &mut Encoding,
    relative: &mut bool,
    bitmask: &mut Option<u64>,
) -> Result<bool, ByteError> {
    match opt {
        "relative" => *relative = true,
        "big" => *enc = Encoding::Big,
        "little" => *enc = Encoding::Little,
        "string" => {
            *enc = Encoding::String(10);
            if let Some(&&t) = it.peek() {
                let base = match t {
                    "hex" => Some(16),
                    "dec" => Some(10),
                    "oct" => Some(8),
                    _ => None,
                };
                if let Some(b) = base {
                    it.next();
                    *enc = Encoding::String(b);
                }
            }
        }
        "hex" => *enc = Encoding::String(16),
        "dec" => *enc = Encoding::String(10),
        "oct" => *enc = Encoding::String(8),
        "dce" => return Err(ByteError::Unsupported("dce (DCERPC) byte order".into())),
        o if o.starts_with("bitmask") => {
            *bitmask = Some(parse_value(o.trim_start_matches("bitmask").trim())?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `byte_test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteTest {
    /// Bytes to read.
    pub nbytes: usize,
    /// Operator (`<`, `>`, `=`, `<=`, `>=`, `&`, `^`).
    pub op: String,
    /// `!`.
    pub negated: bool,
    /// Compared value.
    pub value: u64,
    /// Offset (may be negative when relative).
    pub offset: i64,
    /// Relative to the previous match.
    pub relative: bool,
    /// Encoding.
    pub enc: Encoding,
    /// `bitmask`.
    pub bitmask: Option<u64>,
    /// The value from a `byte_extract` / `byte_math` variable.
    pub value_var: Option<u8>,
    /// The offset from a variable.
    pub offset_var: Option<u8>,
}

fn split_args(v: &str) -> Vec<&str> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn mask(v: u64, bitmask: Option<u64>) -> u64 {
    match bitmask {
        Some(m) if m != 0 => (v & m) >> m.trailing_zeros(),
        _ => v,
    }
}

impl ByteTest {
    /// Parses `bytes, [!]op, value, offset [, options]`.
    pub fn parse(v: &str) -> Result<ByteTest, ByteError> {
        let a = split_args(v);
        if a.len() < 4 {
            return Err(ByteError::Syntax(
                "needs bytes, operator, value, offset".into(),
            ));
        }
        let nbytes: usize = a[0]
            .parse()
            .map_err(|_| ByteError::Syntax(format!("bad byte count {:?}", a[0])))?;
        let (negated, op) = match a[1].strip_prefix('!') {
            Some("") => (true, "="),
            Some(r) => (true, r),
            None => (false, a[1]),
        };
        if !matches!(op, "<" | ">" | "=" | "<=" | ">=" | "&" | "^") {
            return Err(ByteError::Syntax(format!("bad operator {:?}", a[1])));
        }
        let value = parse_value(a[2])?;
        let offset: i64 = a[3].parse().map_err(|_| {
            if a[3].chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                ByteError::Unsupported("offset from an extracted variable".into())
            } else {
                ByteError::Syntax(format!("bad offset {:?}", a[3]))
            }
        })?;
        let (mut enc, mut relative, mut bitmask) = (Encoding::Big, false, None);
        let mut it = a[4..].iter().peekable();
        while let Some(o) = it.next() {
            if !parse_common(o, &mut it, &mut enc, &mut relative, &mut bitmask)? {
                return Err(ByteError::Syntax(format!("unknown option {o:?}")));
            }
        }
        check_nbytes(nbytes, enc)?;
        Ok(ByteTest {
            nbytes,
            op: op.to_string(),
            negated,
            value,
            offset,
            relative,
            enc,
            bitmask,
            value_var: None,
            offset_var: None,
        })
    }

    /// Runs the test with the cursor at `prev` and the rule's variables.
    pub fn test_vars(&self, buf: &[u8], prev: usize, vars: &crate::bytevars::Vars) -> bool {
        if self.value_var.is_none() && self.offset_var.is_none() {
            return self.test(buf, prev);
        }
        let mut t = self.clone();
        if let Some(i) = self.value_var {
            t.value = vars[usize::from(i) % vars.len()];
        }
        if let Some(i) = self.offset_var {
            t.offset = vars[usize::from(i) % vars.len()] as i64;
        }
        t.test(buf, prev)
    }

    /// Runs the test with the cursor at `prev`.
    pub fn test(&self, buf: &[u8], prev: usize) -> bool {
        let base = if self.relative { prev as i64 } else { 0 };
        let Some(at) = base.checked_add(self.offset) else {
            return false;
        };
        let Some(v) = read_number(buf, at, self.nbytes, self.enc) else {
            return false;
        };
        let v = mask(v, self.bitmask);
        let r = match self.op.as_str() {
            "<" => v < self.value,
            ">" => v > self.value,
            "=" => v == self.value,
            "<=" => v <= self.value,
            ">=" => v >= self.value,
            "&" => v & self.value != 0,
            "^" => v ^ self.value != 0,
            _ => false,
        };
        r != self.negated
    }
}

fn check_nbytes(n: usize, enc: Encoding) -> Result<(), ByteError> {
    let string = matches!(enc, Encoding::String(_));
    let max = if string { 10 } else { 8 };
    // `0` with `string`: the digits at the offset, however many there are (up to 20).
    if (n == 0 && !string) || n > max {
        return Err(ByteError::Syntax(format!(
            "byte count {n} outside 1..={max}"
        )));
    }
    Ok(())
}

/// `byte_jump`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteJump {
    /// Bytes to read.
    pub nbytes: usize,
    /// Offset.
    pub offset: i64,
    /// Relative.
    pub relative: bool,
    /// Encoding.
    pub enc: Encoding,
    /// `multiplier`.
    pub multiplier: u64,
    /// `align` (to 4).
    pub align: bool,
    /// `from_beginning`.
    pub from_beginning: bool,
    /// `from_end`.
    pub from_end: bool,
    /// `post_offset`.
    pub post_offset: i64,
    /// `bitmask`.
    pub bitmask: Option<u64>,
    /// The offset from a `byte_extract` / `byte_math` variable.
    pub offset_var: Option<u8>,
}

impl ByteJump {
    /// Parses `bytes, offset [, options]`.
    pub fn parse(v: &str) -> Result<ByteJump, ByteError> {
        let a = split_args(v);
        if a.len() < 2 {
            return Err(ByteError::Syntax("needs bytes, offset".into()));
        }
        let nbytes: usize = a[0]
            .parse()
            .map_err(|_| ByteError::Syntax(format!("bad byte count {:?}", a[0])))?;
        let offset: i64 = a[1].parse().map_err(|_| {
            if a[1].chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
                ByteError::Unsupported("offset from an extracted variable".into())
            } else {
                ByteError::Syntax(format!("bad offset {:?}", a[1]))
            }
        })?;
        let mut j = ByteJump {
            nbytes,
            offset,
            relative: false,
            enc: Encoding::Big,
            multiplier: 1,
            align: false,
            from_beginning: false,
            from_end: false,
            post_offset: 0,
            bitmask: None,
            offset_var: None,
        };
        let mut it = a[2..].iter().peekable();
        while let Some(o) = it.next() {
            if parse_common(o, &mut it, &mut j.enc, &mut j.relative, &mut j.bitmask)? {
                continue;
            }
            match *o {
                "align" => j.align = true,
                "from_beginning" => j.from_beginning = true,
                "from_end" => j.from_end = true,
                o if o.starts_with("multiplier") => {
                    j.multiplier = parse_value(o.trim_start_matches("multiplier").trim())?;
                }
                o if o.starts_with("post_offset") => {
                    j.post_offset = o
                        .trim_start_matches("post_offset")
                        .trim()
                        .parse()
                        .map_err(|_| ByteError::Syntax(format!("bad post_offset {o:?}")))?;
                }
                o => return Err(ByteError::Syntax(format!("unknown option {o:?}"))),
            }
        }
        check_nbytes(nbytes, j.enc)?;
        Ok(j)
    }

    /// Returns the new cursor, or `None` when the jump fails.
    /// Jumps with the rule's variables.
    pub fn jump_vars(
        &self,
        buf: &[u8],
        prev: usize,
        vars: &crate::bytevars::Vars,
    ) -> Option<usize> {
        match self.offset_var {
            None => self.jump(buf, prev),
            Some(i) => ByteJump {
                offset: vars[usize::from(i) % vars.len()] as i64,
                ..self.clone()
            }
            .jump(buf, prev),
        }
    }

    /// Jumps from the cursor `prev`: the new cursor.
    pub fn jump(&self, buf: &[u8], prev: usize) -> Option<usize> {
        let start = (if self.relative { prev as i64 } else { 0 }).checked_add(self.offset)?;
        let v = read_number(buf, start, self.nbytes, self.enc)?;
        let mut v = mask(v, self.bitmask).checked_mul(self.multiplier)?;
        if self.align && v % 4 != 0 {
            v = v.checked_add(4 - v % 4)?;
        }
        let v = i64::try_from(v).ok()?;
        let base = if self.from_beginning {
            0
        } else if self.from_end {
            buf.len() as i64
        } else {
            start.checked_add(self.nbytes as i64)?
        };
        let pos = base.checked_add(v)?.checked_add(self.post_offset)?;
        if pos < 0 || pos > buf.len() as i64 {
            return None;
        }
        usize::try_from(pos).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcre(v: &str) -> Pcre {
        Pcre::parse(v, &PcreLimits::default()).unwrap().0
    }

    #[test]
    fn numcmp_forms() {
        assert!(NumCmp::parse("5").unwrap().test(5));
        assert!(NumCmp::parse(">5").unwrap().test(6));
        assert!(NumCmp::parse("<5").unwrap().test(4));
        assert!(NumCmp::parse(">=5").unwrap().test(5));
        assert!(NumCmp::parse("<=5").unwrap().test(5));
        assert!(NumCmp::parse("!5").unwrap().test(4));
        let r = NumCmp::parse("2<>5").unwrap();
        assert!(r.test(3) && !r.test(2) && !r.test(5));
        assert!(NumCmp::parse("5<>2").is_err());
        assert!(NumCmp::parse("x").is_err());
    }

    #[test]
    fn pcre_linear_and_backtracking() {
        let p = pcre(r#""/^GET\s+\/a[0-9]+$/i""#);
        assert!(!p.is_backtracking());
        assert!(p.find_at(b"get /a12", 0, 0).unwrap().is_some());
        // PCRE `$` matches before a final newline.
        assert!(p.find_at(b"GET /a12\n", 0, 0).unwrap().is_some());
        assert!(p.find_at(b"GET /a12\nx", 0, 0).unwrap().is_none());
        // E: only at the very end.
        let e = pcre(r#""/a$/E""#);
        assert!(e.find_at(b"a\n", 0, 0).unwrap().is_none());
        // Backreference and lookahead go to PCRE2.
        let b = pcre(r#""/(\w)\1(?=z)/""#);
        assert!(b.is_backtracking());
        assert_eq!(b.find_at(b"xaaz", 0, 0).unwrap(), Some((1, 3)));
        // Relative search slices the subject: ^ anchors at the cursor.
        let r = pcre(r#""/^b/R""#);
        assert!(r.relative);
        assert_eq!(r.find_at(b"ab", 1, 0).unwrap(), Some((1, 2)));
        // Anchored flag.
        let a = pcre(r#""/b/A""#);
        assert!(a.find_at(b"ab", 0, 0).unwrap().is_none());
        // Buffer flag.
        let (_, buf) = Pcre::parse(r#""/x/U""#, &PcreLimits::default()).unwrap();
        assert_eq!(buf, Some(Buf::Uri));
        // Escaped punctuation keeps PCRE's literal meaning (`\<` is not a word boundary).
        let lt = pcre(r#""/\<script/""#);
        assert!(lt.find_at(b"x<script", 0, 0).unwrap().is_some());
        // `[` inside a class is a literal in PCRE.
        let cls = pcre(r#""/[[a]+/""#);
        assert!(cls.find_at(b"[[a", 0, 0).unwrap().is_some());
        // Non-UTF-8 bytes.
        let bin = pcre(r#""/\x00\xff.{2}/s""#);
        assert!(bin.find_at(&[0, 0xff, 1, 2], 0, 0).unwrap().is_some());
        assert!(Pcre::parse(r#""/a/q""#, &PcreLimits::default()).is_err());
        assert!(Pcre::parse(r#""/(a/""#, &PcreLimits::default()).is_err());
    }

    #[test]
    fn pcre_match_limit_is_a_limit_not_a_hang() {
        let p = pcre(r#""/^(\w+\s?)*(?=x)$/""#);
        assert!(p.is_backtracking());
        let mut hay = vec![b'a'; 64];
        hay.push(b'!');
        assert_eq!(p.find_at(&hay, 0, 0), Err(LimitHit));
    }

    #[test]
    fn byte_test_and_jump() {
        let t = ByteTest::parse("2,>,0x100,1").unwrap();
        assert!(t.test(&[0, 0x01, 0x01], 0));
        let t = ByteTest::parse("4,=,1234,0,string,dec").unwrap();
        assert!(t.test(b"1234", 0));
        let t = ByteTest::parse("1,!&,0x80,0,relative").unwrap();
        assert!(t.test(&[0xff, 0x01], 1));
        let t = ByteTest::parse("2,=,1,0,little").unwrap();
        assert!(t.test(&[1, 0], 0));
        assert!(!ByteTest::parse("2,=,1,5").unwrap().test(&[1, 0], 0));
        assert!(matches!(
            ByteTest::parse("2,=,1,0,dce"),
            Err(ByteError::Unsupported(_))
        ));
        let j = ByteJump::parse("1,0,relative").unwrap();
        assert_eq!(j.jump(&[2, 9, 9, 7], 0), Some(3));
        let j = ByteJump::parse("2,0,little,align").unwrap();
        assert_eq!(j.jump(&[3, 0, 0, 0, 0, 0, 0], 0), Some(6));
        let j = ByteJump::parse("1,-1,relative,from_beginning").unwrap();
        assert_eq!(j.jump(&[0, 2, 0, 0], 2), Some(2));
        assert_eq!(ByteJump::parse("1,0").unwrap().jump(&[200], 0), None);
        // Extreme offsets fail the test instead of overflowing.
        let big = format!("1,{},relative", i64::MAX);
        assert_eq!(ByteJump::parse(&big).unwrap().jump(&[1, 2, 3], 3), None);
        let big = format!("1,=,1,{},relative", i64::MAX);
        assert!(!ByteTest::parse(&big).unwrap().test(&[1, 2, 3], 3));
        let mul = ByteJump::parse("8,0,multiplier 4294967296").unwrap();
        assert_eq!(mul.jump(&[0xff; 8], 0), None);
    }
}
