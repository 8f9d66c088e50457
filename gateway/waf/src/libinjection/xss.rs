//! libinjection's XSS detector (`libinjection_xss.c`, version 3.10.0 as ModSecurity 2.9.x
//! bundles it): tokenize as HTML5 from five starting points and flag doctypes, dangerous tags,
//! event handler and other dangerous attributes, `javascript:`-like URLs, and IE comment tricks.

use std::borrow::Cow;

use super::html5::{Html5, Kind, Start};

/// Tags that run code or load content.
const BLACK_TAGS: [&[u8]; 20] = [
    b"APPLET",
    b"BASE",
    b"COMMENT",
    b"EMBED",
    b"FRAME",
    b"FRAMESET",
    b"HANDLER",
    b"IFRAME",
    b"IMPORT",
    b"ISINDEX",
    b"LINK",
    b"LISTENER",
    b"META",
    b"NOSCRIPT",
    b"OBJECT",
    b"SCRIPT",
    b"STYLE",
    b"VMLFRAME",
    b"XML",
    b"XSS",
];

/// What an attribute name makes of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attr {
    /// Harmless.
    None,
    /// Always XSS (event handlers, `xmlns`, `xlink`).
    Black,
    /// The value is a URL.
    Url,
    /// The value names another attribute (SVG `attributeName`).
    Indirect,
    /// Inline style: any value is XSS.
    Style,
}

/// Attributes whose value matters.
const BLACK_ATTRS: [(&[u8], Attr); 20] = [
    (b"ACTION", Attr::Url),
    (b"ATTRIBUTENAME", Attr::Indirect),
    (b"BY", Attr::Url),
    (b"BACKGROUND", Attr::Url),
    (b"DATAFORMATAS", Attr::Black),
    (b"DATASRC", Attr::Black),
    (b"DYNSRC", Attr::Url),
    (b"FILTER", Attr::Style),
    (b"FORMACTION", Attr::Url),
    (b"FOLDER", Attr::Url),
    (b"FROM", Attr::Url),
    (b"HANDLER", Attr::Url),
    (b"HREF", Attr::Url),
    (b"LOWSRC", Attr::Url),
    (b"POSTER", Attr::Url),
    (b"SRC", Attr::Url),
    (b"STYLE", Attr::Style),
    (b"TO", Attr::Url),
    (b"VALUES", Attr::Url),
    (b"XLINK:HREF", Attr::Url),
];

/// URL schemes that run code or show source.
const BLACK_SCHEMES: [&[u8]; 4] = [b"DATA", b"VIEW-SOURCE", b"JAVA", b"VBSCRIPT"];

/// The input is XSS when read from any of the five starting points.
pub(crate) fn detect(s: &[u8]) -> bool {
    [
        Start::Data,
        Start::ValueNoQuote,
        Start::ValueSingleQuote,
        Start::ValueDoubleQuote,
        Start::ValueBackQuote,
    ]
    .into_iter()
    .any(|start| is_xss(s, start))
}

/// `libinjection_is_xss` for one starting point.
fn is_xss(s: &[u8], start: Start) -> bool {
    let mut h5 = Html5::new(s, start);
    let mut attr = Attr::None;
    while h5.next() {
        let t = h5.token();
        if h5.kind != Kind::AttrValue {
            attr = Attr::None;
        }
        let xss = match h5.kind {
            Kind::Doctype => true,
            Kind::TagNameOpen => is_black_tag(t),
            Kind::AttrName => {
                attr = black_attr(t);
                false
            }
            Kind::AttrValue => std::mem::replace(&mut attr, Attr::None).flags(t),
            Kind::TagComment => is_black_comment(t),
            _ => false,
        };
        if xss {
            return true;
        }
    }
    false
}

impl Attr {
    /// This attribute's value `v` is XSS.
    fn flags(self, v: &[u8]) -> bool {
        match self {
            Attr::None => false,
            Attr::Black | Attr::Style => true,
            Attr::Url => is_black_url(v),
            Attr::Indirect => black_attr(v) != Attr::None,
        }
    }
}

/// `s` without its NUL bytes (borrowed when it has none, the usual case).
fn without_nul(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(0, s).is_none() {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.iter().copied().filter(|&c| c != 0).collect())
}

/// `cstrcasecmp_with_null`: `s` without its NUL bytes equals `upper` ignoring ASCII case.
fn eq_ignoring_nul(upper: &[u8], s: &[u8]) -> bool {
    without_nul(s).eq_ignore_ascii_case(upper)
}

/// The first `n` bytes of `s` are `upper`, ignoring NULs and ASCII case.
fn starts_ignoring_nul(upper: &[u8], s: &[u8], n: usize) -> bool {
    s.get(..n).is_some_and(|head| eq_ignoring_nul(upper, head))
}

/// The first three bytes of `s` are `lower`, ignoring ASCII case.
fn starts3(s: &[u8], lower: &[u8; 3]) -> bool {
    s.get(..3).is_some_and(|h| h.eq_ignore_ascii_case(lower))
}

/// A dangerous tag name (any `svg…` or `xsl…` too).
fn is_black_tag(s: &[u8]) -> bool {
    if s.len() < 3 {
        return false;
    }
    let name = without_nul(s);
    BLACK_TAGS.iter().any(|t| name.eq_ignore_ascii_case(t))
        || starts3(s, b"svg")
        || starts3(s, b"xsl")
}

/// What an attribute name makes of its value; every `on…` name of five or more bytes is an
/// event handler in 3.10.0 (later versions check a list of event names).
fn black_attr(s: &[u8]) -> Attr {
    if s.len() < 2 {
        return Attr::None;
    }
    if s.len() >= 5 {
        let on = s.get(..2).is_some_and(|h| h.eq_ignore_ascii_case(b"on"));
        if on || starts_ignoring_nul(b"XMLNS", s, 5) || starts_ignoring_nul(b"XLINK", s, 5) {
            return Attr::Black;
        }
    }
    let s = without_nul(s);
    BLACK_ATTRS
        .iter()
        .find(|(name, _)| s.eq_ignore_ascii_case(name))
        .map_or(Attr::None, |(_, attr)| *attr)
}

/// A URL value whose scheme (after white space, control and non-ASCII bytes, HTML entities
/// decoded) is `data`, `view-source`, `java…` or `vbscript`.
fn is_black_url(s: &[u8]) -> bool {
    let skip = s.iter().take_while(|&&c| c <= 32 || c >= 127).count();
    let v = s.get(skip..).unwrap_or(&[]);
    BLACK_SCHEMES
        .iter()
        .any(|scheme| html_starts_with(scheme, v))
}

/// A dangerous comment: `` ` `` (IE ends tags with it), `[if` conditional comments, `xml`,
/// `<?import`, `<!ENTITY`.
fn is_black_comment(t: &[u8]) -> bool {
    if memchr::memchr(b'`', t).is_some() {
        return true;
    }
    if t.len() > 3 {
        let cond =
            t.first() == Some(&b'[') && t.get(1..3).is_some_and(|h| h.eq_ignore_ascii_case(b"if"));
        if cond || starts3(t, b"xml") {
            return true;
        }
    }
    t.len() > 5 && (starts_ignoring_nul(b"IMPORT", t, 6) || starts_ignoring_nul(b"ENTITY", t, 6))
}

/// `htmlencode_startswith`: the HTML-entity-decoded `s` starts with `upper`, ignoring leading
/// white space and control characters, NULs and newlines, and ASCII case. A decoded code point
/// is compared by its low byte, as the C code casts it to `char`.
fn html_starts_with(upper: &[u8], s: &[u8]) -> bool {
    let mut want = upper.iter();
    let mut rest = s;
    let mut first = true;
    while !rest.is_empty() {
        let Some(&u) = want.as_slice().first() else {
            return true;
        };
        let (cp, used) = decode_char(rest);
        rest = rest.get(used.max(1)..).unwrap_or(&[]);
        if (first && cp <= 32) || cp == 0 || cp == 10 {
            continue;
        }
        first = false;
        let cp = if (u32::from(b'a')..=u32::from(b'z')).contains(&cp) {
            cp - 0x20
        } else {
            cp
        };
        if (cp & 0xff) as u8 != u {
            return false;
        }
        want.next();
    }
    want.as_slice().is_empty()
}

/// `html_decode_char_at`: the code point at the start of `s` (`&#…;` and `&#x…;` decoded, other
/// entities left as `&`) and the bytes it used.
fn decode_char(s: &[u8]) -> (u32, usize) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let c = at(0);
    if c != b'&' || s.len() < 2 {
        return (u32::from(c), 1);
    }
    if at(1) != b'#' {
        return (u32::from(b'&'), 1);
    }
    let (radix, first) = if matches!(at(2), b'x' | b'X') {
        (16, 3)
    } else {
        (10, 2)
    };
    let Some(d) = char::from(at(first)).to_digit(radix) else {
        return (u32::from(b'&'), 1);
    };
    let mut val = d;
    for i in first + 1..s.len() {
        let c = at(i);
        if c == b';' {
            return (val, i + 1);
        }
        let Some(d) = char::from(c).to_digit(radix) else {
            return (val, i);
        };
        val = val * radix + d;
        if val > 0x0010_00ff {
            return (u32::from(b'&'), 1);
        }
    }
    (val, s.len().max(first + 1))
}
