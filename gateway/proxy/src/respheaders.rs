//! libhtp-rs's grammar for response header fields, which [`crate::respread`] follows to read a
//! response hyper refused the way Suricata reads it.
//!
//! Line ends are CRLF, LF-CR, LF or a lone CR, plus two deformed forms (`\n\r\r\n` before a
//! line end, `\r\n\r` followed by CRs, spaces or tabs); a line end followed by a space, tab or
//! NUL folds the value onto the next line, unless that line reads `token:` (a new field); a
//! name runs over line ends followed by spaces (`Name\r\n :value`); a line without a colon is a
//! field without a name. The block ends at an empty line after a field.

/// A header field: name and value (both trimmed).
pub(crate) type Field = (Vec<u8>, Vec<u8>);

/// Folded continuations libhtp joins at most.
const MAX_FOLDS: u8 = 128;

/// The fields at the start of `b` and the offset after the block; without an end of block, all
/// of `b` is taken.
pub(crate) fn fields(b: &[u8], max: usize) -> (Vec<Field>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        match header(&b[at..]) {
            Some((used, f)) => {
                at += used;
                if out.len() < max {
                    out.push(f);
                }
                if let Some(n) = eol_regular(&b[at..]) {
                    return (out, at + n);
                }
            }
            None => {
                if out.is_empty() {
                    if let Some((n, _)) = eol_complete(&b[at..]) {
                        return (out, at + n);
                    }
                }
                return (out, b.len());
            }
        }
    }
}

fn starts(b: &[u8], p: &[u8]) -> bool {
    b.starts_with(p)
}

/// `\r\n`, `\n\r`, `\n` or `\r`: its length.
fn eol_regular(b: &[u8]) -> Option<usize> {
    [&b"\r\n"[..], b"\n\r", b"\n", b"\r"]
        .into_iter()
        .find(|p| starts(b, p))
        .map(<[u8]>::len)
}

/// The deformed line ends libhtp accepts on responses.
fn eol_deformed(b: &[u8]) -> Option<usize> {
    if starts(b, b"\n\r\r\n") && (starts(&b[4..], b"\n") || starts(&b[4..], b"\r\n")) {
        return Some(4);
    }
    if starts(b, b"\r\n\r") {
        let run = b[3..]
            .iter()
            .take_while(|&&c| matches!(c, b'\r' | b' ' | b'\t'))
            .count();
        if run > 0 {
            let mut n = 3 + run;
            if b.get(n) == Some(&b'\n') {
                n += 1;
            }
            if !(starts(&b[n..], b"\n") || starts(&b[n..], b"\r\n")) {
                return Some(n);
            }
        }
    }
    None
}

/// A line end, deformed or regular: its length and whether it was a single byte.
fn eol_complete(b: &[u8]) -> Option<(usize, bool)> {
    eol_deformed(b)
        .or_else(|| eol_regular(b))
        .map(|n| (n, n == 1))
}

fn is_fold(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | 0)
}

/// After a value: a fold (regular line end then whitespace or NUL: the fold byte) or a
/// terminator (a NUL, or a line end not followed by a fold). Bytes used, line-end length,
/// fold byte.
fn fold_or_end(b: &[u8]) -> Option<(usize, usize, Option<u8>)> {
    if let Some(n) = eol_regular(b) {
        if let Some(&f) = b.get(n).filter(|&&c| is_fold(c)) {
            return Some((n + 1, n, Some(f)));
        }
    }
    if b.first() == Some(&0) {
        return Some((1, 1, None));
    }
    // A line end (deformed ones first) that a fold byte does not follow.
    let (n, _) = eol_complete(b)?;
    if b.get(n).is_some_and(|&c| is_fold(c)) {
        return None;
    }
    Some((n, n, None))
}

/// A value's bytes to its line end, then what follows them.
fn value_bytes(b: &[u8]) -> Option<(usize, &[u8], usize, Option<u8>)> {
    let n = b.iter().take_while(|&&c| c != b'\n' && c != b'\r').count();
    let (used, eol, fold) = fold_or_end(&b[n..])?;
    Some((n + used, &b[..n], eol, fold))
}

fn is_token(c: u8) -> bool {
    (32..=126).contains(&c) && !b"()<>@,;:\\\"/[]?={} \t".contains(&c)
}

/// `  token  :`: a new field starts here even after a fold.
fn new_field_here(b: &[u8]) -> bool {
    let sp = |c: &&u8| **c == b' ' || **c == b'\t';
    let a = b.iter().take_while(sp).count();
    let t = b[a..].iter().take_while(|&&c| is_token(c)).count();
    if t == 0 {
        return false;
    }
    let s = b[a + t..].iter().take_while(sp).count();
    b.get(a + t + s) == Some(&b':')
}

/// A value with its folded continuations: bytes used and the value.
fn value(b: &[u8]) -> Option<(usize, Vec<u8>)> {
    let (mut rest, first, _, fold) = value_bytes(b)?;
    let mut value = first.to_vec();
    let Some(mut ofold) = fold else {
        return Some((rest, value));
    };
    let mut i = rest;
    for _ in 0..MAX_FOLDS {
        if new_field_here(&b[i..]) {
            return Some((i, value));
        }
        let (used, piece, eol, fold) = value_bytes(&b[i..])?;
        let next = i + used;
        if !value.is_empty() {
            value.push(ofold);
        }
        if !piece.is_empty() || eol > 1 {
            rest = next;
            value.extend_from_slice(piece);
        } else if b.get(next) == Some(&b'\n') {
            rest = next;
        }
        i = next;
        match fold {
            Some(f) => ofold = f,
            None => return Some((rest, value)),
        }
    }
    Some((rest, value))
}

/// libhtp's name scan: up to a colon, across line ends followed by spaces. The name's
/// length; 0 when no colon precedes a line end followed by something else.
fn name_end(b: &[u8]) -> usize {
    let mut eol = 0u8;
    for (i, &c) in b.iter().enumerate() {
        if eol == 0 {
            if c == b':' {
                return i;
            }
            if c == b'\n' || c == b'\r' {
                eol = c;
            }
        } else if c == b' ' {
            eol = 0;
        } else if c == b'\n' && eol == b'\r' {
            eol = c;
        } else {
            return i - 1;
        }
    }
    0
}

fn trimmed(b: &[u8]) -> Vec<u8> {
    let sp = |c: &u8| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c);
    let s = b.iter().take_while(|c| sp(c)).count();
    let e = b[s..].iter().rev().take_while(|c| sp(c)).count();
    b[s..b.len() - e].to_vec()
}

/// One field: with a colon, else (not at a CRLF) a nameless one.
fn header(b: &[u8]) -> Option<(usize, Field)> {
    let n = name_end(b);
    if b.get(n) == Some(&b':') {
        let sp = b[n + 1..]
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        let at = n + 1 + sp;
        if let Some((used, v)) = value(&b[at..]) {
            return Some((at + used, (trimmed(&b[..n]), trimmed(&v))));
        }
    }
    if starts(b, b"\r\n") {
        return None;
    }
    let (used, v) = value(b)?;
    Some((used, (Vec::new(), trimmed(&v))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> (Vec<(String, String)>, String) {
        let (f, at) = fields(b, 100);
        let f = f
            .into_iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(&n).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
            .collect();
        (f, String::from_utf8_lossy(&b[at..]).into_owned())
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn libhtp_header_cases() {
        // libhtp's own `flags` case, response side.
        let (f, rest) =
            parse(b"k1:v1\r\n:v2\r\n v2+\r\nk3: v3\r\nk4 v4\r\nk\r5:v\r5\n\rmore\r\n\r\nbody");
        assert_eq!(
            f,
            pairs(&[
                ("k1", "v1"),
                ("", "v2 v2+"),
                ("k3", "v3"),
                ("", "k4 v4"),
                ("", "k"),
                ("5", "v"),
                ("", "5"),
                ("", "more"),
            ])
        );
        assert_eq!(rest, "body");
        let (f, rest) = parse(b"\r\nbody");
        assert!(f.is_empty());
        assert_eq!(rest, "body");
    }

    #[test]
    fn evader_line_ends() {
        let (f, rest) =
            parse(b"Connection: close\r\n\r\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n");
        assert_eq!(
            f,
            pairs(&[("Connection", "close"), ("Transfer-Encoding", "chunked")])
        );
        assert_eq!(rest, "4\r\n");
        let (f, rest) = parse(b"A: 1\n\rB: 2\r\n\r\nX");
        assert_eq!(f, pairs(&[("A", "1"), ("B", "2")]));
        assert_eq!(rest, "X");
        let (f, rest) = parse(b"Content-length: 68\n \nX5O!P");
        assert_eq!(f, pairs(&[("Content-length", "68")]));
        assert_eq!(rest, "X5O!P");
        let (f, _) = parse(b"Transfer-Encoding\r\n \r\n :\r\n chunked\r\nY: foo\r\n\r\n");
        assert_eq!(f, pairs(&[("Transfer-Encoding", "chunked"), ("Y", "foo")]));
        let (f, _) = parse(b"A: 1\r\n  B: 2\r\n\r\n");
        assert_eq!(f, pairs(&[("A", "1"), ("B", "2")]));
    }
}
