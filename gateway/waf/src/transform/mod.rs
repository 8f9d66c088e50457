//! Transformation functions (`t:`), byte for byte as ModSecurity 2.9 (Apache) runs them for
//! OWASP CRS, with the best-fit map `unicode.mapping` 20127 loaded as its recommended
//! configuration does. Each reports whether it changed the value, the flag `multiMatch`
//! depends on. The specification we follow is `gateway/waf/notes/transformations.md`.

mod codec;
mod comments;
mod decode;
mod html;
mod path;
mod text;
mod unicode;

#[cfg(test)]
mod tests;

/// One transformation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    /// `none`: discards the transformations before it (the rule engine does that).
    None,
    /// `base64Decode` (APR: decodes the leading run of base64 characters).
    Base64Decode,
    /// `base64DecodeExt`: skips bytes outside the alphabet.
    Base64DecodeExt,
    /// `base64Encode`.
    Base64Encode,
    /// `cmdLine`: Windows and Unix command-line evasions.
    CmdLine,
    /// `compressWhitespace`.
    CompressWhitespace,
    /// `cssDecode`: CSS 2 escapes.
    CssDecode,
    /// `escapeSeqDecode`: ANSI C escapes.
    EscapeSeqDecode,
    /// `hexDecode`.
    HexDecode,
    /// `hexEncode`.
    HexEncode,
    /// `htmlEntityDecode`.
    HtmlEntityDecode,
    /// `jsDecode`: JavaScript escapes.
    JsDecode,
    /// `length`: the value's length in decimal.
    Length,
    /// `lowercase` (ASCII).
    Lowercase,
    /// `md5` (raw digest).
    Md5,
    /// `normalizePath` (`normalisePath`).
    NormalizePath,
    /// `normalizePathWin` (`normalisePathWin`): `\` as `/`.
    NormalizePathWin,
    /// `parityEven7bit`.
    ParityEven7bit,
    /// `parityOdd7bit`.
    ParityOdd7bit,
    /// `parityZero7bit`.
    ParityZero7bit,
    /// `removeComments`.
    RemoveComments,
    /// `removeCommentsChar`.
    RemoveCommentsChar,
    /// `removeNulls`.
    RemoveNulls,
    /// `removeWhitespace`.
    RemoveWhitespace,
    /// `replaceComments`.
    ReplaceComments,
    /// `replaceNulls`.
    ReplaceNulls,
    /// `sha1` (raw digest).
    Sha1,
    /// `sqlHexDecode`.
    SqlHexDecode,
    /// `trim`.
    Trim,
    /// `trimLeft`.
    TrimLeft,
    /// `trimRight`.
    TrimRight,
    /// `uppercase` (ASCII).
    Uppercase,
    /// `urlDecode`.
    UrlDecode,
    /// `urlDecodeUni`: `%uHHHH` too, through the best-fit map.
    UrlDecodeUni,
    /// `urlEncode`.
    UrlEncode,
    /// `utf8toUnicode`: multi-byte UTF-8 as `%uHHHH`.
    Utf8ToUnicode,
}

use Transform as T;

/// Every transformation with its name as ModSecurity spells it (aliases included).
const NAMES: &[(&str, Transform)] = &[
    ("none", T::None),
    ("base64Decode", T::Base64Decode),
    ("base64DecodeExt", T::Base64DecodeExt),
    ("base64Encode", T::Base64Encode),
    ("cmdLine", T::CmdLine),
    ("compressWhitespace", T::CompressWhitespace),
    ("cssDecode", T::CssDecode),
    ("escapeSeqDecode", T::EscapeSeqDecode),
    ("hexDecode", T::HexDecode),
    ("hexEncode", T::HexEncode),
    ("htmlEntityDecode", T::HtmlEntityDecode),
    ("jsDecode", T::JsDecode),
    ("length", T::Length),
    ("lowercase", T::Lowercase),
    ("md5", T::Md5),
    ("normalizePath", T::NormalizePath),
    ("normalisePath", T::NormalizePath),
    ("normalizePathWin", T::NormalizePathWin),
    ("normalisePathWin", T::NormalizePathWin),
    ("parityEven7bit", T::ParityEven7bit),
    ("parityOdd7bit", T::ParityOdd7bit),
    ("parityZero7bit", T::ParityZero7bit),
    ("removeComments", T::RemoveComments),
    ("removeCommentsChar", T::RemoveCommentsChar),
    ("removeNulls", T::RemoveNulls),
    ("removeWhitespace", T::RemoveWhitespace),
    ("replaceComments", T::ReplaceComments),
    ("replaceNulls", T::ReplaceNulls),
    ("sha1", T::Sha1),
    ("sqlHexDecode", T::SqlHexDecode),
    ("trim", T::Trim),
    ("trimLeft", T::TrimLeft),
    ("trimRight", T::TrimRight),
    ("uppercase", T::Uppercase),
    ("urlDecode", T::UrlDecode),
    ("urlDecodeUni", T::UrlDecodeUni),
    ("urlEncode", T::UrlEncode),
    ("utf8toUnicode", T::Utf8ToUnicode),
];

impl Transform {
    /// The transformation named `name` (case-insensitive, as ModSecurity 2 accepts it).
    pub fn from_name(name: &str) -> Option<Transform> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, t)| *t)
    }

    /// The name as ModSecurity spells it.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("none", |(n, _)| n)
    }

    /// Transforms `input` into `out` (cleared first); returns whether the value changed, as
    /// the reference engine reports it (some report only a change of length).
    pub fn apply(self, input: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        out.reserve(input.len());
        match self {
            T::None => {
                out.extend_from_slice(input);
                false
            }
            T::Base64Decode => codec::base64_decode(input, out),
            T::Base64DecodeExt => codec::base64_decode_ext(input, out),
            T::Base64Encode => codec::base64_encode(input, out),
            T::HexDecode => codec::hex_decode(input, out),
            T::HexEncode => codec::hex_encode(input, out),
            T::Length => codec::length(input, out),
            T::Md5 => codec::md5(input, out),
            T::Sha1 => codec::sha1(input, out),
            T::SqlHexDecode => codec::sql_hex_decode(input, out),
            T::UrlEncode => codec::url_encode(input, out),
            T::CmdLine => text::cmd_line(input, out),
            T::CompressWhitespace => text::compress_whitespace(input, out),
            T::RemoveWhitespace => text::remove_whitespace(input, out),
            T::Lowercase => text::map_bytes(input, out, |b| b.to_ascii_lowercase()),
            T::Uppercase => text::map_bytes(input, out, |b| b.to_ascii_uppercase()),
            T::ParityEven7bit => text::map_bytes(input, out, text::parity_even),
            T::ParityOdd7bit => text::map_bytes(input, out, text::parity_odd),
            T::ParityZero7bit => text::map_bytes(input, out, |b| b & 0x7f),
            T::RemoveNulls => text::remove_nulls(input, out),
            T::ReplaceNulls => text::map_bytes(input, out, |b| if b == 0 { b' ' } else { b }),
            T::Trim => text::trim(input, out, true, true),
            T::TrimLeft => text::trim(input, out, true, false),
            T::TrimRight => text::trim(input, out, false, true),
            T::RemoveComments => comments::remove_comments(input, out),
            T::RemoveCommentsChar => comments::remove_comments_char(input, out),
            T::ReplaceComments => comments::replace_comments(input, out),
            T::CssDecode => decode::css(input, out),
            T::EscapeSeqDecode => decode::escape_seq(input, out),
            T::JsDecode => decode::js(input, out),
            T::UrlDecode => decode::url(input, out, false),
            T::UrlDecodeUni => decode::url(input, out, true),
            T::HtmlEntityDecode => html::entity_decode(input, out),
            T::NormalizePath => path::normalize(input, out, false),
            T::NormalizePathWin => path::normalize(input, out, true),
            T::Utf8ToUnicode => unicode::utf8_to_unicode(input, out),
        }
    }
}

/// C's `isspace` in the C locale.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// ModSecurity's `xsingle2c`: a hex digit's value, with its arithmetic on other bytes.
pub(crate) fn xsingle2c(c: u8) -> u8 {
    if c >= b'A' {
        (c & 0xdf).wrapping_sub(b'A').wrapping_add(10)
    } else {
        c.wrapping_sub(b'0')
    }
}

/// ModSecurity's `x2c`: two hex digits as a byte (garbage math on other bytes, as the
/// reference does where it does not validate).
pub(crate) fn x2c(a: u8, b: u8) -> u8 {
    xsingle2c(a).wrapping_mul(16).wrapping_add(xsingle2c(b))
}

/// The byte at `i`, or 0 past the end (C strings end in NUL; the reference reads it).
pub(crate) fn at(input: &[u8], i: usize) -> u8 {
    input.get(i).copied().unwrap_or(0)
}
