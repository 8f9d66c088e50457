//! Every base64 body in a mail, found by its headers rather than by the MIME tree. Mail that
//! bends MIME (a comment in a header name, `Content-Type(x):`; two `boundary` parameters; a
//! boundary the parts do not use) leads a strict parser to a tree without the attachment, while
//! a mail client still shows it. This sweep reads every header block that declares
//! `Content-Transfer-Encoding: base64` and decodes the lines that follow it until the first
//! line that is not base64, whatever the boundaries say.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// A base64 body and the file name its headers gave.
#[derive(Debug, PartialEq, Eq)]
pub struct Section {
    /// `filename=` or `name=` of its header block.
    pub name: Option<String>,
    /// The decoded bytes (at most the cap).
    pub data: Vec<u8>,
}

/// A header line's name, lower-cased, with RFC 822 comments (`(…)`) removed.
fn header_name(line: &[u8]) -> Option<String> {
    let colon = memchr::memchr(b':', line)?;
    let raw = &line[..colon];
    if raw.is_empty() || raw[0].is_ascii_whitespace() {
        return None;
    }
    let mut name = String::new();
    let mut depth = 0u32;
    for &b in raw {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            b if b.is_ascii_graphic() => name.push(b.to_ascii_lowercase() as char),
            b' ' | b'\t' => {}
            _ => return None,
        }
    }
    (!name.is_empty()).then_some(name)
}

fn is_base64_line(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    !t.is_empty()
        && t.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// `filename=` or `name=` in a header value.
fn file_name(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let lower = text.to_ascii_lowercase();
    let at = lower
        .find("filename=")
        .map(|i| i + 9)
        .or_else(|| lower.find("name=").map(|i| i + 5))?;
    let v = text[at..].trim_start();
    let v = match v.strip_prefix('"') {
        Some(q) => q.split('"').next().unwrap_or(""),
        None => v.split([';', ' ', '\t']).next().unwrap_or(""),
    };
    (!v.is_empty()).then(|| v.to_string())
}

/// The base64 bodies of `mail` (at most `max`, each at most `cap` bytes decoded), except those
/// `known` says were decoded already (it is given the offset of a body's first line).
pub fn sections(
    mail: &[u8],
    max: usize,
    cap: usize,
    known: &dyn Fn(usize) -> bool,
) -> Vec<Section> {
    let mut offsets = Vec::new();
    let mut at = 0usize;
    let lines: Vec<&[u8]> = mail
        .split(|b| *b == b'\n')
        .map(|l| {
            offsets.push(at);
            at += l.len() + 1;
            l.strip_suffix(b"\r").unwrap_or(l)
        })
        .collect();
    let mut out = Vec::new();
    let (mut base64, mut name, mut in_headers) = (false, None, false);
    let mut i = 0;
    while i < lines.len() && out.len() < max {
        let line = lines[i];
        i += 1;
        if line.is_empty() {
            if in_headers && base64 {
                let start = i;
                while i < lines.len() && is_base64_line(lines[i]) {
                    i += 1;
                }
                if offsets.get(start).is_some_and(|o| known(*o)) {
                    (base64, name, in_headers) = (false, None, false);
                    continue;
                }
                let data = decode(&lines[start..i], cap);
                if !data.is_empty() {
                    out.push(Section {
                        name: name.take(),
                        data,
                    });
                }
            }
            (base64, name, in_headers) = (false, None, false);
            continue;
        }
        if in_headers && line[0].is_ascii_whitespace() {
            if name.is_none() {
                name = file_name(line);
            }
            continue;
        }
        match header_name(line) {
            Some(h) => {
                in_headers = true;
                let value = &line[memchr::memchr(b':', line).map_or(0, |c| c + 1)..];
                if h == "content-transfer-encoding" {
                    base64 |= value
                        .to_ascii_lowercase()
                        .windows(6)
                        .any(|w| w == b"base64");
                } else if (h == "content-type" || h == "content-disposition") && name.is_none() {
                    name = file_name(value);
                }
            }
            None => (base64, name, in_headers) = (false, None, false),
        }
    }
    out
}

fn decode(lines: &[&[u8]], cap: usize) -> Vec<u8> {
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut text: Vec<u8> = Vec::new();
    for l in lines {
        text.extend(l.iter().filter(|b| !b.is_ascii_whitespace()));
        // Four characters make three bytes: stop reading once the cap is covered.
        if text.len() / 4 * 3 > cap {
            break;
        }
    }
    // Padding inside the text ends the data there (a second `=`-padded block is not decoded).
    if let Some(p) = memchr::memchr(b'=', &text) {
        text.truncate(p);
    }
    if text.len() % 4 == 1 {
        text.pop();
    }
    let mut data = engine.decode(&text).unwrap_or_default();
    data.truncate(cap);
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXE_B64: &str = "TVpQAAIAAAAEAA8A//8AALgAAAAhAAAAQAAaAAAA";

    #[test]
    fn bodies_found_whatever_the_boundaries_say() {
        let mail = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type(meow): multipart/mixed; boundary=\"Y\"\r\n\r\n\
             --X\r\nContent-Type: text/plain\r\n\r\nhello\r\n--X--\r\n--Y\r\n\
             Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment;\r\n filename=\"clam.exe\"\r\n\r\n{EXE_B64}\r\n{EXE_B64}\r\n--Y--\r\n"
        );
        let s = sections(mail.as_bytes(), 10, 1 << 20, &|_| false);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name.as_deref(), Some("clam.exe"));
        assert!(s[0].data.starts_with(b"MZP\0"));
        assert_eq!(s[0].data.len(), 60);
        assert_eq!(
            sections(mail.as_bytes(), 10, 7, &|_| false)[0].data.len(),
            7
        );
        assert!(sections(mail.as_bytes(), 0, 100, &|_| false).is_empty());
        // A body the MIME parser decoded already is left alone.
        let at = mail.find("TVpQ").unwrap();
        assert!(sections(mail.as_bytes(), 10, 100, &|o| o == at).is_empty());
    }

    #[test]
    fn headers_with_comments_and_odd_lines() {
        assert_eq!(
            header_name(b"Content-Transfer-Encoding (x) : base64").as_deref(),
            Some("content-transfer-encoding")
        );
        assert_eq!(header_name(b" folded: no"), None);
        assert_eq!(header_name(b"no colon"), None);
        // A base64 declaration in a body text, not in a header block, is not followed.
        let text = b"Dear all,\n\nContent-Transfer-Encoding: base64 is used below\n\nTVpQ\n";
        assert_eq!(
            sections(text, 10, 100, &|_| false).len(),
            1,
            "a header-like first line counts"
        );
        let prose = b"Hello\nThe header Content-Transfer-Encoding: base64\n\nTVpQ\n";
        assert!(sections(prose, 10, 100, &|_| false).is_empty());
    }
}
