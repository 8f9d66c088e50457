//! `htmlEntityDecode` as ModSecurity 2 runs it: numeric entities with any number of digits
//! (the value taken as C's `strtol` gives it, saturated, then cut to a byte) and the five
//! names `quot amp lt gt nbsp` matched exactly, case-insensitively; `;` optional.

/// Decodes entities; changed when one was decoded (the length changed).
pub fn entity_decode(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < input.len() {
        match entity(input, i) {
            Entity::Decoded(byte, next) => {
                out.push(byte);
                i = next;
            }
            Entity::Copy(n) => {
                let end = (i + n).min(input.len());
                out.extend_from_slice(&input[i..end]);
                i = end;
            }
        }
    }
    out.len() != input.len()
}

enum Entity {
    /// The byte and where scanning resumes.
    Decoded(u8, usize),
    /// Copy this many bytes literally.
    Copy(usize),
}

fn entity(input: &[u8], i: usize) -> Entity {
    if input[i] != b'&' || i + 1 >= input.len() {
        return Entity::Copy(1);
    }
    let mut j = i + 1;
    if input[j] != b'#' {
        return named(input, j);
    }
    if j + 1 >= input.len() {
        return Entity::Copy(2);
    }
    j += 1;
    let (radix, copy) = if matches!(input[j], b'x' | b'X') {
        if j + 1 >= input.len() {
            return Entity::Copy(3);
        }
        j += 1;
        (16, 3)
    } else {
        (10, 2)
    };
    let n = input[j..]
        .iter()
        .take_while(|b| {
            if radix == 16 {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count();
    if n == 0 {
        return Entity::Copy(copy);
    }
    let byte = strtol_byte(&input[j..j + n], radix);
    Entity::Decoded(byte, skip_semicolon(input, j + n))
}

fn named(input: &[u8], start: usize) -> Entity {
    let n = input[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if n == 0 {
        return Entity::Copy(1);
    }
    let name = &input[start..start + n];
    let byte = [
        (&b"quot"[..], b'"'),
        (b"amp", b'&'),
        (b"lt", b'<'),
        (b"gt", b'>'),
        (b"nbsp", 0xa0),
    ]
    .iter()
    .find(|(k, _)| k.eq_ignore_ascii_case(name))
    .map(|(_, v)| *v);
    match byte {
        Some(b) => Entity::Decoded(b, skip_semicolon(input, start + n)),
        None => Entity::Copy(n + 1),
    }
}

fn skip_semicolon(input: &[u8], j: usize) -> usize {
    if input.get(j) == Some(&b';') {
        j + 1
    } else {
        j
    }
}

/// `(unsigned char) strtol(digits, NULL, radix)`: the value saturates at `LONG_MAX` (whose
/// low byte is 0xFF) on overflow.
fn strtol_byte(digits: &[u8], radix: u32) -> u8 {
    let mut v: i64 = 0;
    for &d in digits {
        let x = char::from(d).to_digit(radix).unwrap_or(0);
        match v
            .checked_mul(i64::from(radix))
            .and_then(|v| v.checked_add(i64::from(x)))
        {
            Some(n) => v = n,
            None => return 0xff,
        }
    }
    v as u8
}
