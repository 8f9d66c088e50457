//! Encodings and digests: base64 (APR's and the forgiving decoder), hex, SQL hex, URL
//! encoding, `length`, MD5 and SHA-1 (raw digests, as ModSecurity returns them).

use super::{at, x2c};
use md5::Digest as _;

/// The value of a base64 alphabet byte, or `None`.
fn sextet(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Accumulates sextets into bytes, emitting every completed byte.
#[derive(Default)]
struct Bits {
    acc: u32,
    n: u8,
}

impl Bits {
    fn push(&mut self, s: u8, out: &mut Vec<u8>) {
        self.acc = (self.acc << 6) | u32::from(s);
        self.n += 6;
        if self.n >= 8 {
            self.n -= 8;
            out.push((self.acc >> self.n) as u8);
            self.acc &= (1 << self.n) - 1;
        }
    }
}

/// `base64Decode` as ModSecurity 2 (APR) runs it: the leading run of alphabet bytes is
/// decoded, a trailing partial group giving its whole bytes; anything after the first other
/// byte (`=`, space, NUL) is ignored. Changed when the output is not empty.
pub fn base64_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut bits = Bits::default();
    for &b in input {
        let Some(s) = sextet(b) else { break };
        bits.push(s, out);
    }
    !out.is_empty()
}

/// `base64DecodeExt`: bytes outside the alphabet are skipped (it stops at NUL, as the C
/// string ends there); an `=` after one sextet of a group, not followed by another `=`, makes
/// the result empty, as does the reference's check of its last processed value (a final `9`
/// decodes to 61, the code of `=`).
pub fn base64_decode_ext(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut bits, mut count, mut last) = (Bits::default(), 0usize, 0u8);
    for (i, &b) in input.iter().enumerate() {
        if b == 0 {
            break;
        }
        if b == b'=' {
            last = b'=';
            if at(input, i + 1) != b'=' && count % 4 == 1 {
                out.clear();
                return !input.is_empty();
            }
            continue;
        }
        let Some(s) = sextet(b) else { continue };
        last = s;
        bits.push(s, out);
        count += 1;
    }
    if last == b'=' && count % 4 == 1 {
        out.clear();
    }
    !input.is_empty()
}

/// `base64Encode`, padded.
pub fn base64_encode(input: &[u8], out: &mut Vec<u8>) -> bool {
    use base64::Engine as _;
    let s = base64::engine::general_purpose::STANDARD.encode(input);
    out.extend_from_slice(s.as_bytes());
    !input.is_empty()
}

/// `hexDecode`: pairs decoded without validation (ModSecurity's `x2c` arithmetic on other
/// bytes), an odd last byte ignored.
pub fn hex_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    for pair in input.chunks_exact(2) {
        out.push(x2c(pair[0], pair[1]));
    }
    !input.is_empty()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `hexEncode`, lower case.
pub fn hex_encode(input: &[u8], out: &mut Vec<u8>) -> bool {
    for &b in input {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    !input.is_empty()
}

/// `length`: the byte count in decimal; always changed.
pub fn length(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(input.len().to_string().as_bytes());
    true
}

/// `md5`: the raw 16-byte digest.
pub fn md5(input: &[u8], out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(&md5::Md5::digest(input));
    true
}

/// `sha1`: the raw 20-byte digest.
pub fn sha1(input: &[u8], out: &mut Vec<u8>) -> bool {
    use sha1::Digest as _;
    out.extend_from_slice(&sha1::Sha1::digest(input));
    true
}

/// `sqlHexDecode`: `0x` followed by hex pairs becomes the bytes; a trailing odd digit and
/// anything else stay.
pub fn sql_hex_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut changed) = (0, false);
    let hex = |i: usize| at(input, i).is_ascii_hexdigit() && i < input.len();
    while i < input.len() {
        let starts =
            input[i] == b'0' && matches!(at(input, i + 1), b'x' | b'X') && hex(i + 2) && hex(i + 3);
        if !starts {
            out.push(input[i]);
            i += 1;
            continue;
        }
        changed = true;
        i += 2;
        while hex(i) && hex(i + 1) {
            out.push(x2c(input[i], input[i + 1]));
            i += 2;
        }
    }
    changed
}

/// `urlEncode`: space as `+`, letters, digits and `*-._` kept, every other byte `%hh`.
pub fn url_encode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    for &b in input {
        match b {
            b' ' => {
                out.push(b'+');
                changed = true;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
            _ => {
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
                changed = true;
            }
        }
    }
    changed
}
