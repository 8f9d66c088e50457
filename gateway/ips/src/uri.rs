//! Suricata's `http.uri`: the request target normalised as libhtp does it with Suricata's
//! defaults (server personality IDS, `uri-include-all: no`, no double decoding unless
//! [`Decoding`] asks for it). The path is
//! decoded once (`%` and two hex digits, IIS `%u` and four, invalid escapes kept), `\` becomes `/`, runs of `/`
//! collapse, UTF-8 becomes single bytes (best fit, `?` when none), and dot segments go
//! (RFC 3986, with libhtp's quirks: a trailing `/` left by a removed `.` or `..` goes too, and
//! a path that reduces to nothing stays empty). The query and fragment are decoded once and
//! kept otherwise as sent. Scheme, user info, host and port of an absolute target are dropped.
//! Nothing left at all: the buffer is absent.

/// libhtp's optional second decoding pass (`double-decode-path`, `double-decode-query`; both
/// off by default, as in Suricata).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decoding {
    /// Decode the normalised path once more.
    pub double_path: bool,
    /// Decode the query once more.
    pub double_query: bool,
}

/// The normalised URI of a raw request target; `None` when nothing is left.
pub fn normalized(target: &[u8]) -> Option<Vec<u8>> {
    normalized_with(target, Decoding::default()).0
}

/// The normalised URI with the second passes `d` asks for, and whether a second pass decoded
/// something (libhtp's `double_encoded_uri` event: the part got shorter).
pub fn normalized_with(target: &[u8], d: Decoding) -> (Option<Vec<u8>>, bool) {
    let (path, query, fragment) = split(target);
    let mut out = remove_dot_segments(&best_fit_utf8(&decode_path(path)));
    let mut double = false;
    if d.double_path {
        let again = decode_once(&out);
        double |= again.len() < out.len();
        out = again;
    }
    if let Some(q) = query {
        out.push(b'?');
        let mut q = decode_once(q);
        if d.double_query {
            let again = decode_once(&q);
            double |= again.len() < q.len();
            q = again;
        }
        out.extend(q);
    }
    if let Some(f) = fragment {
        out.push(b'#');
        out.extend(decode_once(f));
    }
    ((!out.is_empty()).then_some(out), double)
}

/// Path, query and fragment of a target (the path of an absolute form, without its
/// authority).
fn split(target: &[u8]) -> (&[u8], Option<&[u8]>, Option<&[u8]>) {
    let (rest, fragment) = match memchr::memchr(b'#', target) {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    (strip_authority(path), query, fragment)
}

/// `http://user@host:80/p` → `/p`; a target that does not start with `/` but has a `:` is a
/// scheme, then an authority up to the next `/` (libhtp reads `foo:bar/x` so).
fn strip_authority(path: &[u8]) -> &[u8] {
    if path.starts_with(b"/") {
        return path;
    }
    let Some(colon) = memchr::memchr(b':', path) else {
        return path;
    };
    let after = &path[colon + 1..];
    let after = after.strip_prefix(b"//").unwrap_or(after);
    match memchr::memchr(b'/', after) {
        Some(i) => &after[i..],
        None => &[],
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// An escape at the start of `s`: its byte and length (`%41` is 3 bytes, IIS `%u0041` 6).
fn escape(s: &[u8]) -> Option<(u8, usize)> {
    if s.first() != Some(&b'%') {
        return None;
    }
    if let (Some(h), Some(l)) = (
        s.get(1).and_then(|&b| hex(b)),
        s.get(2).and_then(|&b| hex(b)),
    ) {
        return Some((h << 4 | l, 3));
    }
    if matches!(s.get(1), Some(b'u' | b'U')) && s.len() >= 6 {
        let mut code = 0u32;
        for &b in &s[2..6] {
            code = code << 4 | u32::from(hex(b)?);
        }
        let byte = if code >> 8 == 0 {
            code as u8
        } else {
            best_fit(code)
        };
        return Some((byte, 6));
    }
    None
}

/// One decoding pass over the path: escapes decoded (an invalid `%` kept as it is), `\` made
/// `/`, and a `/` after a `/` dropped.
fn decode_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let (mut b, n) = escape(&path[i..]).unwrap_or((path[i], 1));
        i += n;
        if b == b'\\' {
            b = b'/';
        }
        if b == b'/' && out.last() == Some(&b'/') {
            continue;
        }
        out.push(b);
    }
    out
}

/// One decoding pass over the query or fragment (escapes only).
fn decode_once(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let (b, n) = escape(&s[i..]).unwrap_or((s[i], 1));
        out.push(b);
        i += n;
    }
    out
}

/// UTF-8 to single bytes: a code point below 256 is itself, others their best fit; an
/// invalid byte is `?`; overlong forms are decoded. A sequence cut by the end of the path
/// is dropped when one byte long, else a `?` for each byte after its first.
fn best_fit_utf8(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        let len = match b {
            0x00..=0x7f => {
                out.push(b);
                i += 1;
                continue;
            }
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => {
                out.push(b'?');
                i += 1;
                continue;
            }
        };
        let avail = path[i + 1..]
            .iter()
            .take(len - 1)
            .take_while(|&&c| c & 0xc0 == 0x80)
            .count();
        if avail < len - 1 {
            if i + 1 + avail == path.len() {
                // Cut by the end of the path.
                out.extend(std::iter::repeat_n(b'?', avail));
                break;
            }
            out.push(b'?');
            i += 1;
            continue;
        }
        let mut code = u32::from(b) & (0x7f >> len);
        for &c in &path[i + 1..i + len] {
            code = code << 6 | u32::from(c & 0x3f);
        }
        out.push(if code < 0x100 {
            code as u8
        } else {
            best_fit(code)
        });
        i += len;
    }
    out
}

/// A code point's best fit in code page 1252: its own byte for the Windows-1252 letters and
/// signs above U+00FF, ASCII for the full-width forms; `?` otherwise (libhtp's replacement).
/// Narrower than Windows' full best-fit table, which also maps accented letters of other
/// scripts to their base letter.
fn best_fit(code: u32) -> u8 {
    const CP1252: [(u32, u8); 27] = [
        (0x20ac, 0x80),
        (0x201a, 0x82),
        (0x0192, 0x83),
        (0x201e, 0x84),
        (0x2026, 0x85),
        (0x2020, 0x86),
        (0x2021, 0x87),
        (0x02c6, 0x88),
        (0x2030, 0x89),
        (0x0160, 0x8a),
        (0x2039, 0x8b),
        (0x0152, 0x8c),
        (0x017d, 0x8e),
        (0x2018, 0x91),
        (0x2019, 0x92),
        (0x201c, 0x93),
        (0x201d, 0x94),
        (0x2022, 0x95),
        (0x2013, 0x96),
        (0x2014, 0x97),
        (0x02dc, 0x98),
        (0x2122, 0x99),
        (0x0161, 0x9a),
        (0x203a, 0x9b),
        (0x0153, 0x9c),
        (0x017e, 0x9e),
        (0x0178, 0x9f),
    ];
    match code {
        0xff01..=0xff5e => (code - 0xfee0) as u8,
        _ => CP1252
            .iter()
            .find(|(c, _)| *c == code)
            .map_or(b'?', |(_, b)| *b),
    }
}

/// RFC 3986 `remove_dot_segments`, except that a `/` a removed `.` or `..` leaves at the end
/// is dropped (`/a/./` → `/a`, `/a/../` → nothing).
fn remove_dot_segments(path: &[u8]) -> Vec<u8> {
    let mut input: Vec<u8> = path.to_vec();
    let mut pos = 0;
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    let mut from_dot = false;
    while pos < input.len() {
        let rest = &input[pos..];
        if rest.starts_with(b"../") {
            pos += 3;
        } else if rest.starts_with(b"./") {
            pos += 2;
        } else if rest.starts_with(b"/./") || rest == b"/." {
            // "/./" and "/." become "/".
            pos += rest.len().min(3) - 1;
            input[pos] = b'/';
            from_dot = true;
        } else if rest.starts_with(b"/../") || rest == b"/.." {
            // "/../" and "/.." become "/", and the last output segment goes.
            pos += rest.len().min(4) - 1;
            input[pos] = b'/';
            let cut = memchr::memrchr(b'/', &out).unwrap_or(0);
            out.truncate(cut);
            from_dot = true;
        } else if rest == b"." || rest == b".." || (rest == b"/" && from_dot) {
            break;
        } else {
            let end = memchr::memchr(b'/', &rest[1..]).map_or(rest.len(), |e| e + 1);
            out.extend_from_slice(&rest[..end]);
            pos += end;
            from_dot = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(raw: &[u8]) -> Option<Vec<u8>> {
        normalized(raw)
    }

    /// libhtp's own tests of `double-decode-path` / `-query` (DoubleEncodedUriPath, …Query),
    /// and suricata-verify's `curl http://oisf.net/evil%2527sqli`.
    #[test]
    fn second_passes_decode_again_and_say_so() {
        let both = Decoding {
            double_path: true,
            double_query: true,
        };
        let path = Decoding {
            double_path: true,
            ..Decoding::default()
        };
        let cases: &[(&[u8], Decoding, &[u8], bool)] = &[
            (b"/%2500", path, b"/\0", true),
            (b"/%2500", Decoding::default(), b"/%00", false),
            (b"/?a=%2500", both, b"/?a=\0", true),
            (b"/?a=%2500", path, b"/?a=%00", false),
            (b"/evil%2527sqli", both, b"/evil'sqli", true),
            (b"/plain/path?q=1", both, b"/plain/path?q=1", false),
            // A `%` left by the first pass that is no escape stays, and is no double encoding.
            (b"/100%25", both, b"/100%", false),
        ];
        for &(raw, d, want, double) in cases {
            let (got, flagged) = normalized_with(raw, d);
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(got.as_deref(), Some(want), "{shown}");
            assert_eq!(flagged, double, "{shown}");
        }
    }

    #[test]
    fn paths_as_libhtp_normalises_them() {
        // Raw target → http.uri, as libhtp 8.0.6 gives them with Suricata's defaults.
        let cases: &[(&[u8], &[u8])] = &[
            (b"/A/B%2fC", b"/A/B/C"),
            (b"/a%2Fb%5cc\\d", b"/a/b/c/d"),
            (b"/a//b///c", b"/a/b/c"),
            (b"//a", b"/a"),
            (b"/a/./b/../c", b"/a/c"),
            (b"/../../etc/passwd", b"/etc/passwd"),
            (b"/%2e%2e/%2e%2e/etc", b"/etc"),
            (b"/a/..%2f..%2fb", b"/b"),
            (b"/a\\..\\b", b"/b"),
            (b"/a/.%2e/b", b"/b"),
            (b"a/../b", b"/b"),
            (b"/a/b/", b"/a/b/"),
            (b"/a/b/..", b"/a"),
            (b"/a/./", b"/a"),
            (b"/..?x=1", b"?x=1"),
            (b"/a/.../b", b"/a/.../b"),
            (b"/a/.b/..c", b"/a/.b/..c"),
            (b"/%zz%4", b"/%zz%4"),
            (b"/%uzzzz%u12", b"/%uzzzz%u12"),
            (b"/%252f", b"/%2f"),
            (b"/%u0041%u002f%uFF0F%u4e2d", b"/A/?"),
            (b"/x%uFF21%uff0e", b"/xA."),
            (b"/%U0041%u0000z", b"/A\0z"),
            (b"/a+b%20c", b"/a+b c"),
            (b"/caf\xc3\xa9", b"/caf\xe9"),
            (b"/%C3%A9t%E9x", b"/\xe9t?x"),
            (b"/%e4%b8%ad", b"/?"),
            (b"/%80%ff", b"/??"),
            (b"/caf\xe9x", b"/caf?x"),
            (b"/caf\xe9", b"/caf"),
            (b"/%e2%82", b"/?"),
            (b"/%ef%bc%8f", b"//"),
            (b"/%c0%af", b"//"),
            (b"/p?a=%2500&b=%2F+x%u0041%zz", b"/p?a=%00&b=/+xA%zz"),
            (b"/p?q=\\..\\x", b"/p?q=\\..\\x"),
            (b"/p?", b"/p?"),
            (b"/p?q=1#frag%41", b"/p?q=1#fragA"),
            (b"/p#fr/../x", b"/p#fr/../x"),
            (b"http://Host.COM:8080/a/../b?x=%41", b"/b?x=A"),
            (b"http://user:pw@host.com/p", b"/p"),
            (b"foo:bar/x", b"/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(
                n(raw).as_deref(),
                Some(*want),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        for absent in [
            &b"/a/../"[..],
            b"/./",
            b"/..",
            b"/a/%2e%2e",
            b"http://host.com",
            b"index.php:1",
        ] {
            assert_eq!(n(absent), None, "{}", String::from_utf8_lossy(absent));
        }
    }
}
