//! Byte-wise text transformations: case, parity, NULs, whitespace, trimming and `cmdLine`.

use super::is_space;

/// The non-breaking space byte ModSecurity 2 treats as whitespace.
const NBSP: u8 = 0xa0;

/// Maps every byte; changed when any byte changed.
pub fn map_bytes(input: &[u8], out: &mut Vec<u8>, f: impl Fn(u8) -> u8) -> bool {
    out.extend(input.iter().map(|&b| f(b)));
    out.as_slice() != input
}

/// Even parity in bit 7.
pub fn parity_even(b: u8) -> u8 {
    let low = b & 0x7f;
    if low.count_ones() % 2 == 1 {
        low | 0x80
    } else {
        low
    }
}

/// Odd parity in bit 7.
pub fn parity_odd(b: u8) -> u8 {
    let low = b & 0x7f;
    if low.count_ones() % 2 == 0 {
        low | 0x80
    } else {
        low
    }
}

/// `removeNulls`.
pub fn remove_nulls(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.extend(input.iter().copied().filter(|&b| b != 0));
    out.len() != input.len()
}

/// `removeWhitespace`: C whitespace and 0xA0 removed.
pub fn remove_whitespace(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.extend(input.iter().copied().filter(|&b| !is_space(b) && b != NBSP));
    out.len() != input.len()
}

/// `compressWhitespace`: each run of C whitespace or 0xA0 becomes one space; changed only
/// when a run was longer than one byte (the length changed).
pub fn compress_whitespace(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut in_run = false;
    for &b in input {
        if is_space(b) || b == NBSP {
            if !in_run {
                out.push(b' ');
            }
            in_run = true;
        } else {
            out.push(b);
            in_run = false;
        }
    }
    out.len() != input.len()
}

/// `trim`, `trimLeft`, `trimRight` (C whitespace only).
pub fn trim(input: &[u8], out: &mut Vec<u8>, left: bool, right: bool) -> bool {
    let mut s = input;
    if left {
        let n = s.iter().take_while(|&&b| is_space(b)).count();
        s = &s[n..];
    }
    if right {
        let n = s.iter().rev().take_while(|&&b| is_space(b)).count();
        s = &s[..s.len() - n];
    }
    out.extend_from_slice(s);
    s.len() != input.len()
}

/// `cmdLine` as ModSecurity 2 runs it on the C string (it stops at a NUL): `" ' \ ^`
/// deleted; runs of space, `,` `;` TAB CR LF become one space; a space before `/` or `(`
/// removed; everything else lower-cased. ModSecurity 2 always reports a change.
pub fn cmd_line(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut space = false;
    for &b in input.iter().take_while(|&&b| b != 0) {
        match b {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(b);
            }
            _ => {
                out.push(b.to_ascii_lowercase());
                space = false;
            }
        }
    }
    true
}
