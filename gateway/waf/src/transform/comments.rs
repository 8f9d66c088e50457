//! Comment transformations: `replaceComments`, `removeComments`, `removeCommentsChar`.

use super::at;

/// `replaceComments`: each C comment `/* … */` (or an unterminated one at the end) becomes
/// one space; a stray `*/` stays.
pub fn replace_comments(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut inside, mut changed) = (0, false, false);
    while i < input.len() {
        if !inside {
            if input[i] == b'/' && input.get(i + 1) == Some(&b'*') {
                inside = true;
                changed = true;
                i += 2;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i] == b'*' && input.get(i + 1) == Some(&b'/') {
            inside = false;
            out.push(b' ');
            i += 2;
        } else {
            i += 1;
        }
    }
    if inside {
        out.push(b' ');
    }
    changed
}

/// `removeComments`: `/* */` and `<!-- -->` comments removed, and the byte right after a
/// closing marker copied unexamined (a NUL when the comment closes at the very end, as the
/// reference reads the C string's terminator); `--` and `#` cut the rest of the value; an
/// unterminated comment leaves one space.
pub fn remove_comments(input: &[u8], out: &mut Vec<u8>) -> bool {
    let (mut i, mut inside, mut changed) = (0, false, false);
    let n = input.len();
    while i < n {
        let (b, next) = (input[i], at(input, i + 1));
        if !inside {
            if (b == b'/' && next == b'*') || input[i..].starts_with(b"<!--") {
                inside = true;
                changed = true;
                i += if b == b'/' { 2 } else { 4 };
            } else if (b == b'-' && next == b'-') || b == b'#' {
                return true;
            } else {
                out.push(b);
                i += 1;
            }
            continue;
        }
        let close = if b == b'*' && next == b'/' {
            2
        } else if input[i..].starts_with(b"-->") {
            3
        } else {
            0
        };
        if close == 0 {
            i += 1;
            continue;
        }
        inside = false;
        i += close;
        out.push(at(input, i));
        i += 1;
    }
    if inside {
        out.push(b' ');
    }
    changed
}

/// `removeCommentsChar`: the markers `/*`, `*/`, `<!--`, `-->`, `--` and `#` deleted, the text
/// between them kept.
pub fn remove_comments_char(input: &[u8], out: &mut Vec<u8>) -> bool {
    let mut i = 0;
    while i < input.len() {
        let rest = &input[i..];
        let skip = [&b"/*"[..], b"*/", b"<!--", b"-->", b"--", b"#"]
            .iter()
            .find(|m| rest.starts_with(m))
            .map_or(0, |m| m.len());
        if skip > 0 {
            i += skip;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out.len() != input.len()
}
