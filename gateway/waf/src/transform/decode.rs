//! Escape decoders: URL (`%HH`, `%uHHHH`, `+`), JavaScript, CSS and ANSI C escapes.

use super::{at, is_space, unicode, x2c, xsingle2c};

fn hex(input: &[u8], from: usize, n: usize) -> bool {
    from + n <= input.len() && input[from..from + n].iter().all(u8::is_ascii_hexdigit)
}

/// The full-width rule: a low byte in 0x01..0x5E under a high byte `FF` is shifted to ASCII
/// (U+FF01..U+FF5E are the full-width forms of `!`..`~`).
fn full_width(lo: u8, h1: u8, h2: u8) -> u8 {
    if lo > 0 && lo < 0x5f && matches!(h1, b'f' | b'F') && matches!(h2, b'f' | b'F') {
        lo + 0x20
    } else {
        lo
    }
}

/// `urlDecode` / `urlDecodeUni`: `+` as space, `%HH` as a byte; with `uni`, `%uHHHH` through
/// the best-fit map or as its low byte (full-width forms folded). Invalid escapes stay as
/// written. Changed when anything was decoded.
pub fn url(input: &[u8], out: &mut Vec<u8>, uni: bool) -> bool {
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        let b = input[i];
        if b == b'+' {
            out.push(b' ');
            changed = true;
            i += 1;
        } else if b != b'%' {
            out.push(b);
            i += 1;
        } else if uni && matches!(at(input, i + 1), b'u' | b'U') {
            if hex(input, i + 2, 4) {
                out.push(percent_u(&input[i + 2..i + 6]));
                changed = true;
                i += 6;
            } else {
                out.extend_from_slice(&input[i..i + 2]);
                i += 2;
            }
        } else if hex(input, i + 1, 2) {
            out.push(x2c(input[i + 1], input[i + 2]));
            changed = true;
            i += 3;
        } else {
            out.push(b'%');
            i += 1;
        }
    }
    changed
}

/// The byte a `%uHHHH` escape (its four hex digits) decodes to.
fn percent_u(d: &[u8]) -> u8 {
    let code = (u16::from(x2c(d[0], d[1])) << 8) | u16::from(x2c(d[2], d[3]));
    unicode::best_fit(code).unwrap_or_else(|| full_width(x2c(d[2], d[3]), d[0], d[1]))
}

/// `jsDecode`: `\uHHHH` (low byte, full-width folded), `\xHH`, octal `\NNN` (at most 0377),
/// the C letter escapes, and any other escaped byte without its backslash.
pub fn js(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        changed = true;
        let next = input[i + 1];
        if next == b'u' && hex(input, i + 2, 4) {
            let lo = x2c(input[i + 4], input[i + 5]);
            out.push(full_width(lo, input[i + 2], input[i + 3]));
            i += 6;
        } else if next == b'x' && hex(input, i + 2, 2) {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if is_octal(next) {
            let mut n = input[i + 1..]
                .iter()
                .take(3)
                .take_while(|&&b| is_octal(b))
                .count();
            if n == 3 && next > b'3' {
                n = 2;
            }
            out.push(octal(&input[i + 1..i + 1 + n]));
            i += 1 + n;
        } else {
            out.push(c_letter(next).unwrap_or(next));
            i += 2;
        }
    }
    changed
}

fn is_octal(b: u8) -> bool {
    (b'0'..=b'7').contains(&b)
}

/// Octal digits as a byte (mod 256).
fn octal(digits: &[u8]) -> u8 {
    digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0')) as u8
}

/// The C escapes `\a \b \f \n \r \t \v`.
fn c_letter(b: u8) -> Option<u8> {
    Some(match b {
        b'a' => 0x07,
        b'b' => 0x08,
        b'f' => 0x0c,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'v' => 0x0b,
        _ => return None,
    })
}

/// `escapeSeqDecode`: ANSI C escapes (`\n`, `\\`, `\?`, `\'`, `\"`, `\xHH`, up to three octal
/// digits); an unrecognised escape gives the escaped byte; a trailing backslash stays.
pub fn escape_seq(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        if input[i] != b'\\' || i + 1 >= input.len() {
            out.push(input[i]);
            i += 1;
            continue;
        }
        changed = true;
        let next = input[i + 1];
        if let Some(c) = c_letter(next) {
            out.push(c);
            i += 2;
        } else if matches!(next, b'x' | b'X') && i + 3 < input.len() && hex(input, i + 2, 2) {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if is_octal(next) {
            let n = input[i + 1..]
                .iter()
                .take(3)
                .take_while(|&&b| is_octal(b))
                .count();
            out.push(octal(&input[i + 1..i + 1 + n]));
            i += 1 + n;
        } else {
            out.push(next);
            i += 2;
        }
    }
    changed
}

/// `cssDecode`: `\` and up to six hex digits give the last two digits' byte (full-width
/// forms folded), swallowing one whitespace byte after; `\` and a newline vanish; any other
/// escaped byte loses its backslash (without counting as a change).
pub fn css(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= input.len() {
            changed = true;
            i += 1;
            continue;
        }
        let d = &input[i + 1..];
        let j = d
            .iter()
            .take(6)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if j > 0 {
            changed = true;
            out.push(css_hex(&d[..j]));
            i += 1 + j;
            if i < input.len() && is_space(input[i]) {
                i += 1;
            }
        } else if d[0] == b'\n' {
            changed = true;
            i += 2;
        } else {
            out.push(d[0]);
            i += 2;
        }
    }
    changed
}

/// The byte of a CSS hex escape of 1 to 6 digits.
fn css_hex(d: &[u8]) -> u8 {
    let j = d.len();
    if j == 1 {
        return xsingle2c(d[0]);
    }
    let b = x2c(d[j - 2], d[j - 1]);
    let fold = match j {
        4 => true,
        5 => d[0] == b'0',
        6 => d[0] == b'0' && d[1] == b'0',
        _ => false,
    };
    if fold {
        full_width(b, d[j - 4], d[j - 3])
    } else {
        b
    }
}
