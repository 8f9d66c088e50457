//! Chunk-size lines of a chunked HTTP/1 body as libhtp reads them (libhtp-rs
//! `parse_chunked_length` and its request and response callers), for the anomaly events
//! Suricata raises on them and hyper's decoding hides: it drops chunk extensions and refuses
//! a length that does not read.

use sekisho_core::WireNotes;

/// One chunk-size line.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkLine {
    /// Only CR, LF, spaces, tabs, VT and FF: skipped.
    Blank,
    /// A length, and whether an extension (`;`) follows it.
    Length(u64, bool),
    /// A length over `i32::MAX` (libhtp's limit).
    Huge,
    /// No hexadecimal digits, or more than a `u64` holds.
    Unreadable,
}

/// Reads a chunk-size line (with its line ending): control characters and whitespace,
/// hexadecimal digits, whitespace, then anything (an extension when it holds a `;`).
pub fn read(line: &[u8]) -> ChunkLine {
    let ctl = |b: &u8| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0x0b | 0x0c);
    let rest = &line[line.iter().take_while(|b| ctl(b)).count()..];
    if rest.is_empty() {
        return ChunkLine::Blank;
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let length = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| u64::from_str_radix(d, 16).ok());
    match length {
        Some(n) if n <= i32::MAX as u64 => ChunkLine::Length(n, rest[digits..].contains(&b';')),
        Some(_) => ChunkLine::Huge,
        None => ChunkLine::Unreadable,
    }
}

/// The notes on a chunked response body from its first bytes as received (the recording may
/// stop anywhere): an extension on any chunk-size line read, and a length that does not read
/// (libhtp's `invalid_response_chunk_len`; it then reads the rest as a plain body, so the
/// walk stops). A length over `i32::MAX` is skipped as libhtp skips it on responses.
pub fn response_notes(body: &[u8]) -> u8 {
    let mut notes = 0;
    let mut at = 0;
    while let Some(nl) = memchr::memchr(b'\n', body.get(at..).unwrap_or_default()) {
        let line = &body[at..=at + nl];
        at += nl + 1;
        match read(line) {
            ChunkLine::Blank | ChunkLine::Huge => {}
            ChunkLine::Unreadable => return notes | WireNotes::INVALID_CHUNK_LEN,
            ChunkLine::Length(n, ext) => {
                if ext {
                    notes |= WireNotes::CHUNK_EXTENSION;
                }
                if n == 0 {
                    break;
                }
                // The chunk's data, then whatever precedes the next LF.
                let Some(after) = usize::try_from(n).ok().and_then(|n| at.checked_add(n)) else {
                    break;
                };
                match body.get(after..).and_then(|r| memchr::memchr(b'\n', r)) {
                    Some(end) => at = after + end + 1,
                    None => break,
                }
            }
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_libhtp_reads_them() {
        // libhtp-rs parsers.rs test_parse_chunked_length, and the lengths it refuses.
        assert_eq!(
            read(b"0 ; qw3=asd3; zc3=\"rt\"y3\"\n"),
            ChunkLine::Length(0, true)
        );
        assert_eq!(read(b"12a5\r\n"), ChunkLine::Length(0x12a5, false));
        assert_eq!(read(b"12a5;ext=value\r\n"), ChunkLine::Length(0x12a5, true));
        assert_eq!(
            read(b"    \t12a5    \r\n"),
            ChunkLine::Length(0x12a5, false)
        );
        assert_eq!(read(b"    \t    \r\n"), ChunkLine::Blank);
        assert_eq!(read(b"8 \n"), ChunkLine::Length(8, false));
        assert_eq!(read(b"3xyz\r\n"), ChunkLine::Length(3, false));
        assert_eq!(read(b"zz\r\n"), ChunkLine::Unreadable);
        assert_eq!(read(b"80000000\r\n"), ChunkLine::Huge);
        assert_eq!(read(b"1ffffffffffffffff\r\n"), ChunkLine::Unreadable);
    }

    #[test]
    fn response_walks_notes_extensions_and_stops_at_a_bad_length() {
        let ext = WireNotes::CHUNK_EXTENSION;
        let bad = WireNotes::INVALID_CHUNK_LEN;
        assert_eq!(response_notes(b"3\r\nabc\r\n0\r\n\r\n"), 0);
        assert_eq!(response_notes(b"3\r\nabc\r\n0;last\r\n\r\n"), ext);
        assert_eq!(response_notes(b"3;a\nabc\n\n2\nde\n0\n\n"), ext);
        assert_eq!(response_notes(b"3\r\nabc\r\nqq\r\n1;x\r\n"), bad);
        assert_eq!(response_notes(b"1;x\r\na\r\nqq\r\n"), ext | bad);
        // Data that holds what looks like a bad line is skipped whole.
        assert_eq!(response_notes(b"4\r\nq\r\nq\r\n0\r\n\r\n"), 0);
        // A recording cut anywhere: what was read counts.
        assert_eq!(response_notes(b"3;a\r\nab"), ext);
        assert_eq!(response_notes(b"ffffffff\r\n"), 0);
        assert_eq!(response_notes(b""), 0);
    }
}
