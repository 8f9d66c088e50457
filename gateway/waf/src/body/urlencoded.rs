//! `application/x-www-form-urlencoded` bodies and query strings, split and decoded as
//! ModSecurity v2's `parse_arguments` (apache2/msc_parsers.c) and
//! `urldecode_nonstrict_inplace_ex` (apache2/msc_util.c) do.

use super::{ArgList, ArgOrigin};

/// What parsing one urlencoded input found besides its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Urlencoded {
    /// `%` signs not followed by two hex digits (kept as they are); non-zero sets
    /// `URLENCODED_ERROR`.
    pub invalid_escapes: usize,
    /// Arguments refused because the table was full (`SecArgumentsLimit`).
    pub dropped: usize,
}

/// Splits `input` into arguments at `separator` (`SecArgumentSeparator`, `&` by default) and
/// adds them to `args` with `origin`.
///
/// A name runs to the first `=` or separator, a value to the next separator (so `a=b=c` is `a`
/// = `b=c`). A name without `=` gets an empty value, empty names are kept (`&&` gives an
/// argument with empty name and value), a trailing separator adds nothing. Names and values are
/// decoded with [`urldecode_nonstrict`]. For `QUERY_STRING` use [`query_string`], which stops at
/// a NUL byte as v2 does.
pub fn urlencoded(
    input: &[u8],
    separator: u8,
    origin: ArgOrigin,
    args: &mut ArgList,
) -> Urlencoded {
    let mut out = Urlencoded::default();
    let mut i = 0;
    let mut pending_name: Option<Vec<u8>> = None;
    while i < input.len() {
        let start = i;
        match pending_name.take() {
            None => {
                while i < input.len() && input[i] != b'=' && input[i] != separator {
                    i += 1;
                }
                let name = decode_counting(&input[start..i], &mut out);
                if input.get(i) == Some(&separator) {
                    add(args, name, Vec::new(), origin, &mut out);
                } else {
                    pending_name = Some(name);
                }
            }
            Some(name) => {
                while i < input.len() && input[i] != separator {
                    i += 1;
                }
                let value = decode_counting(&input[start..i], &mut out);
                add(args, name, value, origin, &mut out);
            }
        }
        i += 1;
    }
    if let Some(name) = pending_name {
        add(args, name, Vec::new(), origin, &mut out);
    }
    out
}

/// [`urlencoded`] for a query string: v2 measures `QUERY_STRING` with `strlen`, so nothing after
/// a NUL byte becomes an argument.
pub fn query_string(input: &[u8], separator: u8, args: &mut ArgList) -> Urlencoded {
    let end = memchr::memchr(0, input).unwrap_or(input.len());
    urlencoded(&input[..end], separator, ArgOrigin::QueryString, args)
}

fn add(args: &mut ArgList, name: Vec<u8>, value: Vec<u8>, origin: ArgOrigin, out: &mut Urlencoded) {
    if !args.push(name, value, origin) {
        out.dropped += 1;
    }
}

fn decode_counting(raw: &[u8], out: &mut Urlencoded) -> Vec<u8> {
    let (decoded, invalid) = urldecode_nonstrict(raw);
    out.invalid_escapes += invalid;
    decoded
}

/// ModSecurity's non-strict URL decoding: `+` becomes a space, `%` with two hex digits becomes
/// that byte, any other `%` stays as it is (and is counted, the second result).
pub fn urldecode_nonstrict(input: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(input.len());
    let mut invalid = 0;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let Some(byte) = hex_pair(input.get(i + 1..i + 3)) {
                out.push(byte);
                i += 3;
                continue;
            }
            invalid += 1;
            out.push(b);
        } else if b == b'+' {
            out.push(b' ');
        } else {
            out.push(b);
        }
        i += 1;
    }
    (out, invalid)
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    match pair {
        Some(&[hi, lo]) => Some(hex_digit(hi)? << 4 | hex_digit(lo)?),
        _ => None,
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests;
