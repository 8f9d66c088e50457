//! PDF, read the tolerant way AV engines read it (ClamAV's pdf.c scans objects in file order
//! rather than trusting the cross-reference table, which malicious files break on purpose):
//! every `stream … endstream` decoded through its `/Filter` chain (FlateDecode, LZWDecode,
//! ASCIIHexDecode, ASCII85Decode, RunLengthDecode; image codecs left as they are), `/JS`
//! strings as scripts; an encrypted document decrypted when its user password is empty (see
//! [`pdfcrypt`]), else reported. Names with `#xx` escapes are decoded first.

use std::io::Read;

use super::pdfcrypt::{self, Security};

/// True when `%PDF-` appears in the first 1024 bytes (where readers accept it).
pub fn is_pdf(data: &[u8]) -> bool {
    memchr::memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some()
}

/// A decoded stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Stream {
    /// The object number (`12` of `12 0 obj`), when the stream sits in a numbered object.
    pub object: Option<u32>,
    /// The dictionary says `/Type /EmbeddedFile`.
    pub embedded_file: bool,
    /// The decoded bytes.
    pub data: Vec<u8>,
    /// A filter failed or was unknown, or the cap was reached: `data` is what decoded.
    pub problem: Option<String>,
}

/// What a PDF holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Document {
    /// Every stream, decoded.
    pub streams: Vec<Stream>,
    /// The literal-string `/JS` scripts.
    pub scripts: Vec<Vec<u8>>,
    /// The document is encrypted so that it cannot be read here: why.
    pub encrypted: Option<String>,
}

/// A stream found, not yet decoded.
struct Found {
    /// `N G` of the object it sits in.
    id: Option<(u32, u16)>,
    /// Where its dictionary is (names unescaped when it is read: a copy of every stream's
    /// dictionary held at once would be up to 4 KiB each, for streams of a few bytes).
    dict: std::ops::Range<usize>,
    /// Its data's place in the file.
    data: std::ops::Range<usize>,
}

/// Reads up to `max` streams and scripts, each decoded to at most `cap` bytes. An encrypted
/// document whose user password is empty is decrypted first (see [`pdfcrypt`]).
pub fn read(pdf: &[u8], max: usize, cap: usize) -> Document {
    let found = find_streams(pdf, max);
    let mut doc = Document::default();
    // The trailer (or an XRef stream's dictionary) names the encryption dictionary: an
    // `/Encrypt` inside stream data (a page's text, an image's bytes) is not one.
    let outside = |at: usize| !found.iter().any(|f| f.data.contains(&at));
    let security = match pdfcrypt::parts(pdf, outside) {
        Some((dict, id0)) => pdfcrypt::security(&dict, &id0),
        None if memchr::memmem::find_iter(pdf, b"/Encrypt").any(outside) => {
            Security::Locked("encrypted PDF (its /Encrypt dictionary does not read)".into())
        }
        None => Security::None,
    };
    let mut objstm = Vec::new();
    for f in &found {
        let dict = unescape_names(&pdf[f.dict.clone()]);
        let raw = &pdf[f.data.clone()];
        let clear;
        let raw = match (&security, f.id) {
            (Security::Open(d), Some((num, gen))) if !d.leaves_clear(&dict) => {
                clear = d.stream(num, gen, raw).unwrap_or_default();
                &clear[..]
            }
            _ => raw,
        };
        let (data, problem) = decode(raw, &filters(&dict), cap);
        if contains(&dict, b"/ObjStm") {
            objstm.push(data.clone());
        }
        doc.streams.push(Stream {
            object: f.id.map(|(n, _)| n),
            embedded_file: contains(&dict, b"/EmbeddedFile"),
            data,
            problem,
        });
    }
    // Strings in the file are encrypted like streams; those inside object streams are not
    // (the object stream itself was).
    let dec = match &security {
        Security::Open(d) => Some(d),
        _ => None,
    };
    scripts(pdf, max, cap, &mut doc.scripts, dec);
    for text in &objstm {
        scripts(text, max, cap, &mut doc.scripts, None);
    }
    if let Security::Locked(why) = security {
        doc.encrypted = Some(why);
    }
    doc
}

/// Every `stream … endstream` in file order (at most `max`), with its dictionary and object.
fn find_streams(pdf: &[u8], max: usize) -> Vec<Found> {
    let mut out = Vec::new();
    let mut from = 0;
    while out.len() < max {
        let Some(at) = memchr::memmem::find(&pdf[from..], b"stream") else {
            break;
        };
        let kw = from + at;
        from = kw + 6;
        if kw >= 3 && &pdf[kw - 3..kw] == b"end" {
            continue;
        }
        let Some(start) = data_start(pdf, from) else {
            continue;
        };
        let head_from = memchr::memmem::rfind(&pdf[kw.saturating_sub(4096)..kw], b"obj")
            .map_or(kw.saturating_sub(4096), |i| kw.saturating_sub(4096) + i);
        let dict = unescape_names(&pdf[head_from..kw]);
        let (raw, end) = stream_bytes(pdf, start, &dict);
        out.push(Found {
            id: object_id(pdf, head_from),
            dict: head_from..kw,
            data: start..start + raw.len(),
        });
        from = end;
    }
    out
}

/// Where the stream's bytes begin: after `stream` and its end of line.
fn data_start(pdf: &[u8], after: usize) -> Option<usize> {
    match pdf.get(after..after + 2)? {
        [b'\r', b'\n'] => Some(after + 2),
        [b'\n', _] | [b'\r', _] => Some(after + 1),
        _ => None,
    }
}

/// The stream's bytes and where its `endstream` is: `/Length` when it is a direct number that
/// lands on `endstream` (compressed data may end in bytes that look like line ends), else up to
/// `endstream` less the one end of line before it.
fn stream_bytes<'a>(pdf: &'a [u8], start: usize, dict: &[u8]) -> (&'a [u8], usize) {
    if let Some(n) = direct_length(dict) {
        let end = start.saturating_add(n);
        if let Some(after) = pdf.get(end..) {
            let eol = after.len() - strip_eol_start(after).len();
            if after[eol..].starts_with(b"endstream") {
                return (&pdf[start..end], end + eol);
            }
        }
    }
    let end = memchr::memmem::find(&pdf[start..], b"endstream").map_or(pdf.len(), |e| start + e);
    let data = &pdf[start..end];
    let data = data
        .strip_suffix(b"\r\n")
        .or_else(|| data.strip_suffix(b"\n"))
        .or_else(|| data.strip_suffix(b"\r"))
        .unwrap_or(data);
    (data, end)
}

fn strip_eol_start(b: &[u8]) -> &[u8] {
    b.strip_prefix(b"\r\n")
        .or_else(|| b.strip_prefix(b"\n"))
        .or_else(|| b.strip_prefix(b"\r"))
        .unwrap_or(b)
}

/// `/Length 123`, not an indirect `/Length 12 0 R`.
fn direct_length(dict: &[u8]) -> Option<usize> {
    let at = memchr::memmem::find(dict, b"/Length")?;
    let text = String::from_utf8_lossy(&dict[at + 7..dict.len().min(at + 40)]).into_owned();
    let words: Vec<&str> = text
        .split(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .filter(|w| !w.is_empty())
        .take(3)
        .collect();
    let n = words.first()?.parse().ok()?;
    let indirect =
        words.get(2) == Some(&"R") && words.get(1).is_some_and(|w| w.parse::<u32>().is_ok());
    (!indirect).then_some(n)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// `12 0` of `12 0 obj` ending at `obj_at`.
fn object_id(pdf: &[u8], obj_at: usize) -> Option<(u32, u16)> {
    // Bytes, not text: a binary comment line (`%\xe2\xe3\xcf\xd3`) may come just before.
    let before = &pdf[obj_at.saturating_sub(24)..obj_at];
    let mut words = before
        .split(u8::is_ascii_whitespace)
        .filter(|w| !w.is_empty())
        .rev();
    let number = |w: &[u8]| std::str::from_utf8(w).ok()?.parse::<u32>().ok();
    let gen = u16::try_from(number(words.next()?)?).ok()?;
    Some((number(words.next()?)?, gen))
}

/// Decodes `#xx` escapes in names (`/J#61vaScript` is `/JavaScript`).
fn unescape_names(b: &[u8]) -> Vec<u8> {
    super::unescape_hex(b, b'#')
}

/// The filter names of a dictionary, in order (`/Filter /X` or `/Filter [/X /Y]`).
fn filters(dict: &[u8]) -> Vec<String> {
    let Some(at) = memchr::memmem::find(dict, b"/Filter") else {
        return Vec::new();
    };
    let rest = &dict[at + 7..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let text = String::from_utf8_lossy(&rest[..rest.len().min(256)]).into_owned();
    let t = text.trim_start();
    let body = match t.strip_prefix('[') {
        Some(list) => list.split(']').next().unwrap_or_default(),
        None => t
            .split(|c: char| c != '/' && !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default(),
    };
    body.split('/')
        .map(|n| {
            n.trim()
                .trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        })
        .filter(|n| !n.is_empty())
        .map(|n| n.split_ascii_whitespace().next().unwrap_or(n).to_string())
        .take(8)
        .collect()
}

/// Runs the filter chain; stops (keeping what decoded) at an unknown or failing filter.
fn decode(raw: &[u8], chain: &[String], cap: usize) -> (Vec<u8>, Option<String>) {
    let mut data = raw[..raw.len().min(cap)].to_vec();
    for f in chain {
        let out = match f.as_str() {
            "FlateDecode" | "Fl" => flate(&data, cap),
            "LZWDecode" | "LZW" => lzw(&data, cap),
            "ASCIIHexDecode" | "AHx" => Ok(ascii_hex(&data, cap)),
            "ASCII85Decode" | "A85" => Ok(ascii85(&data, cap)),
            "RunLengthDecode" | "RL" => Ok(run_length(&data, cap)),
            // Image codecs: the bytes are the image; a scanner looks at them as they are.
            "DCTDecode" | "DCT" | "JPXDecode" | "CCITTFaxDecode" | "CCF" | "JBIG2Decode" => {
                return (data, None)
            }
            "Crypt" => return (data, Some("Crypt filter (encrypted stream)".into())),
            other => return (data, Some(format!("unknown filter {other}"))),
        };
        match out {
            Ok(d) => data = d,
            Err((partial, why)) => return (partial, Some(format!("{f}: {why}"))),
        }
    }
    (data, None)
}

type Decoded = Result<Vec<u8>, (Vec<u8>, String)>;

/// zlib-wrapped as the specification says, else raw deflate as some producers write it.
/// Streams cut or damaged near the end are common: what inflated before the error is kept.
fn flate(data: &[u8], cap: usize) -> Decoded {
    match inflate(flate2::read::ZlibDecoder::new(data), cap) {
        Err((out, _)) if out.is_empty() => inflate(flate2::read::DeflateDecoder::new(data), cap),
        other => other,
    }
}

fn inflate(r: impl Read, cap: usize) -> Decoded {
    let mut out = Vec::new();
    match r.take(cap as u64).read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(e) => Err((out, e.to_string())),
    }
}

fn lzw(data: &[u8], cap: usize) -> Decoded {
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let mut out = Vec::new();
    let mut input = data;
    let mut buf = vec![0u8; 64 << 10];
    while out.len() < cap {
        let r = dec.decode_bytes(input, &mut buf);
        out.extend_from_slice(&buf[..r.consumed_out.min(cap - out.len())]);
        input = &input[r.consumed_in..];
        match r.status {
            Ok(weezl::LzwStatus::Ok) if r.consumed_in > 0 || r.consumed_out > 0 => {}
            Ok(_) => break,
            Err(e) => return Err((out, e.to_string())),
        }
    }
    Ok(out)
}

fn ascii_hex(data: &[u8], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut high = None;
    for &c in data {
        if c == b'>' || out.len() >= cap {
            break;
        }
        let Some(v) = (c as char).to_digit(16) else {
            continue;
        };
        match high.take() {
            Some(h) => out.push((h << 4 | v) as u8),
            None => high = Some(v),
        }
    }
    if let (Some(h), true) = (high, out.len() < cap) {
        out.push((h << 4) as u8);
    }
    out
}

fn ascii85(data: &[u8], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut group = [0u32; 5];
    let mut n = 0;
    let data = data.strip_prefix(b"<~").unwrap_or(data);
    for &c in data {
        if out.len() >= cap || c == b'~' {
            break;
        }
        if c == b'z' && n == 0 {
            out.extend_from_slice(&[0; 4]);
            continue;
        }
        if !(b'!'..=b'u').contains(&c) {
            continue;
        }
        group[n] = u32::from(c - b'!');
        n += 1;
        if n == 5 {
            out.extend_from_slice(&base85_word(&group).to_be_bytes());
            n = 0;
        }
    }
    if n > 1 {
        for g in group.iter_mut().skip(n) {
            *g = 84;
        }
        out.extend_from_slice(&base85_word(&group).to_be_bytes()[..n - 1]);
    }
    out.truncate(cap);
    out
}

fn base85_word(g: &[u32; 5]) -> u32 {
    g.iter()
        .fold(0u32, |acc, d| acc.wrapping_mul(85).wrapping_add(*d))
}

fn run_length(data: &[u8], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() && out.len() < cap {
        let l = data[i];
        i += 1;
        match l {
            128 => break,
            0..=127 => {
                let n = usize::from(l) + 1;
                let end = (i + n).min(data.len());
                out.extend_from_slice(&data[i..end]);
                i = end;
            }
            _ => {
                let Some(&b) = data.get(i) else { break };
                i += 1;
                out.extend(std::iter::repeat_n(b, 257 - usize::from(l)));
            }
        }
    }
    out.truncate(cap);
    out
}

/// `/JS (literal string)` and `/JS <hex string>` scripts, escapes decoded. In a document
/// decrypted with `dec`, each string is decrypted with the key of the object it sits in (the
/// text is then searched as it is: a `#xx` inside a ciphertext is no name escape).
fn scripts(
    text: &[u8],
    max: usize,
    cap: usize,
    out: &mut Vec<Vec<u8>>,
    dec: Option<&pdfcrypt::Decryptor>,
) {
    let owned;
    let text = match dec {
        Some(_) => text,
        None => {
            owned = unescape_names(text);
            &owned[..]
        }
    };
    for at in memchr::memmem::find_iter(text, b"/JS") {
        if out.len() >= max {
            return;
        }
        let rest = &text[at + 3..];
        let Some(s) = rest.iter().take(16).position(|b| !b.is_ascii_whitespace()) else {
            continue;
        };
        let value = &rest[s..];
        if value.starts_with(b"<<") {
            continue;
        }
        let Some(mut js) = super::pdfdict::string(value) else {
            continue;
        };
        if let Some((d, (num, gen))) = dec.zip(enclosing_object(text, at)) {
            js = d.string(num, gen, &js).unwrap_or_default();
        }
        js.truncate(cap);
        out.push(js);
    }
}

/// `N G` of the object whose `N G obj` last precedes `at` (within 64 KiB).
fn enclosing_object(text: &[u8], at: usize) -> Option<(u32, u16)> {
    let from = at.saturating_sub(64 << 10);
    let mut end = at;
    loop {
        let i = from + memchr::memmem::rfind(&text[from..end], b"obj")?;
        if i < 3 || &text[i - 3..i] != b"end" {
            return object_id(text, i);
        }
        end = i;
    }
}

/// A PDF literal string after its `(`: balanced parentheses, backslash escapes.
pub(super) fn literal(s: &[u8], cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut i = 0;
    while i < s.len() && out.len() < cap {
        let c = s[i];
        i += 1;
        match c {
            b'\\' => {
                let Some(&e) = s.get(i) else { break };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match s.get(i) {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(v as u8);
                    }
                    b'\r' | b'\n' => {}
                    other => out.push(other),
                }
            }
            b'(' => {
                depth += 1;
                out.push(c);
            }
            b')' if depth == 0 => break,
            b')' => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(d: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn streams_filters_scripts_and_encryption() {
        let mut pdf = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /OpenAction << /S /JavaScript /JS (app.alert\\(1\\); \\101) >> >>\nendobj\n".to_vec();
        let inner = zlib(b"embedded payload");
        pdf.extend_from_slice(
            format!(
                "7 0 obj\n<< /Type /EmbeddedFile /Length {} /Fi#6cter [/FlateDecode] >>\nstream\r\n",
                inner.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&inner);
        pdf.extend_from_slice(b"\r\nendstream\nendobj\n");
        pdf.extend_from_slice(b"8 0 obj << /Filter [/AHx /A85] >> stream\n");
        pdf.extend_from_slice(b"3c7e357364707e3e>\nendstream endobj\n");
        pdf.extend_from_slice(
            b"9 0 obj << /Filter /RunLengthDecode >>\nstream\n\x02abc\xfdz\x80\nendstream\n",
        );
        let doc = read(&pdf, 10, 1 << 20);
        assert!(is_pdf(&pdf));
        assert!(doc.encrypted.is_none());
        assert_eq!(doc.scripts, vec![b"app.alert(1); A".to_vec()]);
        assert_eq!(doc.streams.len(), 3);
        assert_eq!(doc.streams[0].object, Some(7));
        assert!(doc.streams[0].embedded_file);
        assert_eq!(doc.streams[0].data, b"embedded payload");
        assert_eq!(doc.streams[1].data, b"ABC");
        assert_eq!(doc.streams[2].data, b"abczzzz");
        assert_eq!(doc.streams[2].problem, None);
    }

    #[test]
    fn object_numbers_after_a_binary_comment() {
        let pdf = b"%PDF-1.7\n%\xbf\xf7\xa2\xfe\n1 0 obj";
        assert_eq!(object_id(pdf, pdf.len() - 3), Some((1, 0)));
        assert_eq!(object_id(b"x 99999999999 0 obj", 16), None);
        let text = b"3 0 obj << /JS (a) >> endobj 4 0 obj << /JS (b) >>";
        assert_eq!(enclosing_object(text, 11), Some((3, 0)));
        assert_eq!(
            enclosing_object(text, 45),
            Some((4, 0)),
            "endobj is no object start"
        );
    }

    #[test]
    fn stream_data_may_end_in_line_end_bytes() {
        let data = b"abc\r\n\n";
        let pdf = [
            &b"%PDF-1.4\n1 0 obj << /Length 6 >> stream\n"[..],
            data,
            b"\nendstream\n2 0 obj << /Length 9 0 R >> stream\r\nxyz\r\nendstream",
        ]
        .concat();
        let doc = read(&pdf, 10, 100);
        assert_eq!(doc.streams[0].data, data);
        assert_eq!(doc.streams[1].data, b"xyz");
    }

    #[test]
    fn encrypt_in_page_text_is_not_encryption() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Length 30 >> stream\nBT (see /Encrypt in the spec) ET\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF";
        assert!(read(pdf, 10, 100).encrypted.is_none());
        let xref =
            b"%PDF-1.5\n9 0 obj << /Type /XRef /Encrypt 8 0 R /Length 3 >> stream\nabc\nendstream";
        assert!(read(xref, 10, 100).encrypted.is_some());
    }

    #[test]
    fn broken_and_bounded() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Filter /Foo >> stream\nxyz\nendstream trailer << /Encrypt 5 0 R >>";
        let doc = read(pdf, 10, 100);
        assert!(doc.encrypted.is_some());
        assert_eq!(doc.streams[0].data, b"xyz");
        assert!(doc.streams[0].problem.is_some());
        assert_eq!(ascii85(b"<~87cURD]j7BEbo80~>", 100), b"Hello world!");
        assert_eq!(run_length(&[129, b'x'], 10).len(), 10);
        assert_eq!(ascii_hex(b"41 4", 10), b"A@");
    }
}
