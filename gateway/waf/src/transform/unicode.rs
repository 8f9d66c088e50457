//! `utf8toUnicode` and the best-fit map `urlDecodeUni` uses for `%uHHHH`.

#[path = "unicode_map.rs"]
mod map;

use super::at;

/// The byte the best-fit map gives a code point, if it has one.
pub fn best_fit(code: u16) -> Option<u8> {
    map::MAP_20127
        .binary_search_by_key(&code, |&(c, _)| c)
        .ok()
        .map(|i| map::MAP_20127[i].1)
}

fn continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// `utf8toUnicode` as ModSecurity runs it: each valid multi-byte sequence becomes `%u` and at
/// least four lower-case hex digits; an invalid lead byte is dropped; a stray continuation or
/// 0xF8..0xFF byte passes through; an overlong or surrogate form is encoded and followed by
/// its raw lead byte; a lead byte 0xF5..0xF7 is written raw before its sequence; NUL bytes are
/// dropped except a final one. Changed when a sequence was encoded.
pub fn utf8_to_unicode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut changed) = (0, false);
    while i < input.len() {
        let c = input[i];
        let (len, min) = match c {
            0x00..=0x7f => {
                if c != 0 || i + 1 == input.len() {
                    out.push(c);
                }
                i += 1;
                continue;
            }
            0xc0..=0xdf => (2, 0x80),
            0xe0..=0xef => (3, 0x800),
            0xf0..=0xf7 => (4, 0x1_0000),
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        };
        if c >= 0xf5 {
            out.push(c);
        }
        if !(1..len).all(|k| continuation(at(input, i + k))) {
            i += 1;
            continue;
        }
        let lead = u32::from(c) & (0x7f >> len);
        let d = (1..len).fold(lead, |d, k| (d << 6) | u32::from(input[i + k] & 0x3f));
        out.extend_from_slice(format!("%u{d:04x}").as_bytes());
        if (0xd800..=0xdfff).contains(&d) || d < min {
            out.push(c);
        }
        changed = true;
        i += len;
    }
    changed
}
