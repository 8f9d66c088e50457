//! The operators that compare bytes without a pattern engine, with libmodsecurity v3's
//! semantics (see `notes/operators.md`): string comparisons, integer comparisons, byte ranges,
//! URL and UTF-8 encoding validation, IP lists, and the constant operators. Parameters that do
//! not change per request (byte ranges, IP lists) are compiled once; the others are compared
//! against the parameter after macro expansion.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::seclang::Operator;

/// An operator of this module, ready to run.
#[derive(Debug, Clone)]
pub enum Simple {
    /// `@streq`: the input equals the parameter.
    Streq,
    /// `@contains`: the parameter occurs in the input.
    Contains,
    /// `@beginsWith`.
    BeginsWith,
    /// `@endsWith`.
    EndsWith,
    /// `@within`: the input occurs in the parameter (an empty input always does).
    Within,
    /// `@containsWord`: the parameter occurs with non-letters (or the ends) around it.
    ContainsWord,
    /// `@eq`, `@ge`, `@gt`, `@lt`, `@le`.
    Compare(Cmp),
    /// `@validateByteRange`: some input byte is outside the allowed set.
    ByteRange(Box<[bool; 256]>),
    /// `@validateUrlEncoding`: a `%` not followed by two hex digits.
    UrlEncoding,
    /// `@validateUtf8Encoding`: the input is not valid UTF-8 (ModSecurity's decoder).
    Utf8Encoding,
    /// `@ipMatch`: the input is an address in one of the networks.
    IpMatch(Vec<IpNet>),
    /// `@unconditionalMatch`.
    Always,
    /// `@noMatch`.
    Never,
}

/// An integer comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `@eq` (both sides as a 32-bit `stoi`: out of range is 0).
    Eq,
    /// `@ge`.
    Ge,
    /// `@gt`.
    Gt,
    /// `@lt`.
    Lt,
    /// `@le`.
    Le,
}

impl Simple {
    /// The compiled operator, `Ok(None)` for one this module does not run (`@rx`, `@pm`, …), or
    /// why its parameter is unusable.
    pub fn compile(op: &Operator) -> Result<Option<Simple>, String> {
        Ok(Some(match op.name {
            "streq" => Simple::Streq,
            "contains" => Simple::Contains,
            "beginsWith" => Simple::BeginsWith,
            "endsWith" => Simple::EndsWith,
            "within" => Simple::Within,
            "containsWord" => Simple::ContainsWord,
            "eq" => Simple::Compare(Cmp::Eq),
            "ge" => Simple::Compare(Cmp::Ge),
            "gt" => Simple::Compare(Cmp::Gt),
            "lt" => Simple::Compare(Cmp::Lt),
            "le" => Simple::Compare(Cmp::Le),
            "validateByteRange" => Simple::ByteRange(byte_ranges(&op.param)?),
            "validateUrlEncoding" => Simple::UrlEncoding,
            "validateUtf8Encoding" => Simple::Utf8Encoding,
            "ipMatch" => Simple::IpMatch(ip_list(&op.param)?),
            "unconditionalMatch" => Simple::Always,
            "noMatch" => Simple::Never,
            _ => return Ok(None),
        }))
    }

    /// Whether `input` matches, `param` being the operator's parameter after macro expansion
    /// (negation is the caller's).
    pub fn matches(&self, param: &[u8], input: &[u8]) -> bool {
        match self {
            Simple::Streq => input == param,
            Simple::Contains => find(input, param).is_some(),
            Simple::BeginsWith => input.starts_with(param),
            Simple::EndsWith => input.ends_with(param),
            Simple::Within => input.is_empty() || find(param, input).is_some(),
            Simple::ContainsWord => contains_word(input, param),
            Simple::Compare(c) => compare(*c, input, param),
            Simple::ByteRange(allowed) => input.iter().any(|b| !allowed[usize::from(*b)]),
            Simple::UrlEncoding => bad_url_encoding(input),
            Simple::Utf8Encoding => bad_utf8(input),
            Simple::IpMatch(nets) => std::str::from_utf8(input)
                .ok()
                .and_then(|s| s.trim().parse::<IpAddr>().ok())
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Simple::Always => true,
            Simple::Never => false,
        }
    }
}

/// The first position of `needle` in `hay` (an empty needle is at 0).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    memchr::memmem::find(hay, needle)
}

/// ModSecurity's `@containsWord`: an empty word always matches; a boundary is anything but an
/// ASCII letter, or either end of the input.
fn contains_word(input: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let boundary = |b: Option<&u8>| !b.is_some_and(|c| c.is_ascii_alphabetic());
    let mut from = 0;
    while let Some(at) = find(&input[from..], word).map(|p| p + from) {
        let before = at.checked_sub(1).and_then(|i| input.get(i));
        let after = input.get(at + word.len());
        if boundary(before) && boundary(after) {
            return true;
        }
        from = at + 1;
    }
    false
}

/// `strtol`'s reading: leading whitespace, a sign, then digits up to the first non-digit; no
/// digits is 0; saturating.
fn leading_int(s: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = s[i..].iter().take_while(|c| c.is_ascii_digit());
    let mut any = false;
    let mut v: i64 = 0;
    for d in digits {
        any = true;
        let d = i64::from(d - b'0');
        v = v.saturating_mul(10);
        v = if neg {
            v.saturating_sub(d)
        } else {
            v.saturating_add(d)
        };
    }
    any.then_some(v)
}

fn compare(c: Cmp, input: &[u8], param: &[u8]) -> bool {
    // @eq reads both sides as `stoi` does: no digits or outside the 32-bit range is 0.
    let eq_side = |s: &[u8]| {
        leading_int(s)
            .filter(|v| i32::try_from(*v).is_ok())
            .unwrap_or(0)
    };
    let other_side = |s: &[u8]| leading_int(s).unwrap_or(0);
    match c {
        Cmp::Eq => eq_side(input) == eq_side(param),
        Cmp::Ge => other_side(input) >= other_side(param),
        Cmp::Gt => other_side(input) > other_side(param),
        Cmp::Lt => other_side(input) < other_side(param),
        Cmp::Le => other_side(input) <= other_side(param),
    }
}

/// `9,10,13,32-126,128-255` as a table; a value outside 0-255 is an error.
fn byte_ranges(param: &str) -> Result<Box<[bool; 256]>, String> {
    let mut allowed = Box::new([false; 256]);
    for token in param.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u8>()
                .map_err(|_| format!("@validateByteRange: {t:?} is not a byte value (0-255)"))
        };
        let (lo, hi) = match token.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(token)?, num(token)?),
        };
        if lo > hi {
            return Err(format!("@validateByteRange: {token:?} is an empty range"));
        }
        for b in lo..=hi {
            allowed[usize::from(b)] = true;
        }
    }
    Ok(allowed)
}

/// `127.0.0.1,::1,10.0.0.0/8`: entries trimmed, networks masked, a bad entry an error.
fn ip_list(param: &str) -> Result<Vec<IpNet>, String> {
    let mut nets = Vec::new();
    for entry in param.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let net = match entry.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => entry
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("@ipMatch: {entry:?} is not an address or network"))?,
        };
        nets.push(net);
    }
    Ok(nets)
}

/// A `%` without two hex digits after it.
fn bad_url_encoding(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let ok = input.len() > i + 2
                && input[i + 1].is_ascii_hexdigit()
                && input[i + 2].is_ascii_hexdigit();
            if !ok {
                return true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    false
}

/// ModSecurity's UTF-8 check: overlongs, surrogates, bad continuations, truncated sequences
/// and lead bytes F5-FF are invalid; F4 90-BF (above U+10FFFF) is accepted, as it does.
fn bad_utf8(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        let (len, min) = match b {
            0x00..=0x7f => {
                i += 1;
                continue;
            }
            0xc0..=0xdf => (2, 0x80),
            0xe0..=0xef => (3, 0x800),
            0xf0..=0xf4 => (4, 0x10000),
            _ => return true,
        };
        let Some(seq) = input.get(i..i + len) else {
            return true;
        };
        if seq[1..].iter().any(|c| c & 0xc0 != 0x80) {
            return true;
        }
        let lead_bits = u32::from(b) & (0x7f >> len);
        let cp = seq[1..]
            .iter()
            .fold(lead_bits, |acc, c| (acc << 6) | u32::from(c & 0x3f));
        if cp < min || (0xd800..=0xdfff).contains(&cp) {
            return true;
        }
        i += len;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, param: &str) -> Simple {
        let o = crate::seclang::parse_operator(&format!("@{name} {param}"))
            .unwrap_or_else(|e| panic!("{e}"));
        Simple::compile(&o)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("{name} not here"))
    }

    fn m(name: &str, param: &str, input: &[u8]) -> bool {
        op(name, param).matches(param.as_bytes(), input)
    }

    /// The shared vectors of owasp-modsecurity/secrules-language-tests (as notes/operators.md
    /// lists them): (parameter, input) → match.
    #[test]
    fn string_operators_follow_the_shared_vectors() {
        assert!(m("beginsWith", "", b""));
        assert!(!m("beginsWith", "TestCase", b""));
        assert!(m("beginsWith", "", b"TestCase"));
        assert!(!m("beginsWith", "abcdef", b"abc"));
        assert!(m("contains", "", b""));
        assert!(!m("contains", "TestCase", b""));
        assert!(m("endsWith", "ghi", b"abcdef\0ghi"));
        assert!(m("streq", "", b""));
        assert!(!m("streq", "", b"TestCase"));
        assert!(m("within", "", b""));
        assert!(m("within", "TestCase", b""));
        assert!(!m("within", "", b"TestCase"));
        assert!(!m("within", "abcdefghi", b"ghij"));
        assert!(m("within", "|GET|POST|", b"GE"), "a raw substring test");
        assert!(m("containsWord", "abc", b"abc\0def ghi"));
        assert!(!m("containsWord", "y", b"xyz"));
        assert!(m("containsWord", "x", b" x "));
        assert!(m("containsWord", "hiding", b"hidingX<-not->hiding"));
        assert!(m("containsWord", "", b""));
        assert!(!m("containsWord", "a", b""));
    }

    #[test]
    fn integers_are_read_as_modsecurity_reads_them() {
        // (parameter, input) → match, as the shared vectors write them.
        let cases: &[(&str, &str, &[u8], bool)] = &[
            ("eq", "0", b"", true),
            ("eq", "xxx", b"0", true),
            ("eq", "xxx", b"-1", false),
            ("eq", "0", b"xxx", true),
            ("eq", "0", b"-5", false),
            ("gt", "-1", b"xxx", true),
            ("gt", "xxx", b"-1", false),
            ("lt", "xxx", b"-1", true),
            ("lt", "5", b"", true),
            ("ge", "xxx", b"5", true),
            ("le", "5", b"xxx", true),
            // stoi for @eq: outside 32 bits reads 0; a leading number is read.
            ("eq", "0", b"99999999999", true),
            ("eq", "12", b" 12abc", true),
            // atoll for the others: 64 bits.
            ("gt", "100", b"99999999999", true),
        ];
        for (name, param, input, want) in cases {
            assert_eq!(m(name, param, input), *want, "{name} {param:?} {input:?}");
        }
    }

    #[test]
    fn byte_ranges_urls_and_utf8() {
        assert!(!m("validateByteRange", "0-255", b""));
        assert!(m("validateByteRange", "97-105", b"abcdefghij"));
        assert!(!m("validateByteRange", "0-255", "\u{410}".as_bytes()));
        assert!(!m("validateByteRange", "9,10,13,32-126,128-255", b"a b\tc"));
        assert!(m("validateByteRange", "32-126", b"a\x01"));
        for bad in ["256", "9-1", "x", "1-300"] {
            let o = crate::seclang::parse_operator(&format!("@validateByteRange {bad}"))
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(Simple::compile(&o).is_err(), "{bad}");
        }
        for ok in ["%00", "%ff", "Hello%20World!%00", ""] {
            assert!(!m("validateUrlEncoding", "", ok.as_bytes()), "{ok}");
        }
        for bad in ["%0", "%f", "%", "%0z", "%z0", "%0%", "x=new %w20$"] {
            assert!(m("validateUrlEncoding", "", bad.as_bytes()), "{bad}");
        }
        assert!(!m("validateUtf8Encoding", "", "日本語 ümlaut".as_bytes()));
        for bad in [
            &b"\xe4"[..],
            b"\0\xe4",
            b"\x03\xbf",
            b"\xc9\x3b",
            b"\xff\0",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf5\x80\x80\x80",
        ] {
            assert!(m("validateUtf8Encoding", "", bad), "{bad:?}");
        }
        assert!(
            !m("validateUtf8Encoding", "", b"\xf4\x90\x80\x80"),
            "ModSecurity accepts above U+10FFFF"
        );
    }

    #[test]
    fn ip_lists() {
        let o = op("ipMatch", "127.0.0.1, ::1,10.10.10.0/21,156.149.249.1/8");
        let t = |ip: &str| o.matches(b"", ip.as_bytes());
        assert!(t("127.0.0.1") && t("::1") && t("0:0:0:0:0:0:0:1"));
        assert!(t("10.10.8.1") && !t("10.10.16.1"));
        assert!(t("156.149.152.152"));
        assert!(!t("127.0.0.2") && !t("not an ip") && !t(""));
        let o = crate::seclang::parse_operator("@ipMatch 10.0.0.0/100")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(Simple::compile(&o).is_err());
    }

    #[test]
    fn constants_and_others() {
        assert!(m("unconditionalMatch", "", b"x"));
        assert!(!m("noMatch", "", b"x"));
        let rx = crate::seclang::parse_operator("@rx a").unwrap_or_else(|e| panic!("{e}"));
        assert!(Simple::compile(&rx)
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none());
    }
}
