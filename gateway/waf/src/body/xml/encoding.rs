//! The document's encoding, found as libxml2 finds it (byte order mark, then the `encoding` of
//! the XML declaration), and the document turned into UTF-8 with XML's line-end normalization
//! (CRLF and lone CR become LF). Only UTF-8, US-ASCII, ISO-8859-1 and UTF-16 are understood;
//! libxml2 knows more through iconv, and another declared encoding is refused here.

/// The document as UTF-8 with normalized line ends, or why it cannot be read.
pub(super) fn to_utf8(body: &[u8]) -> Result<String, String> {
    let decoded = match body {
        [0xEF, 0xBB, 0xBF, rest @ ..] => utf8(rest)?,
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes)?,
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes)?,
        [0x00, b'<', 0x00, b'?', ..] => utf16(body, u16::from_be_bytes)?,
        [b'<', 0x00, b'?', 0x00, ..] => utf16(body, u16::from_le_bytes)?,
        _ => by_declaration(body)?,
    };
    Ok(normalize_line_ends(&decoded))
}

fn by_declaration(body: &[u8]) -> Result<String, String> {
    let Some(name) = declared_encoding(body) else {
        return utf8(body);
    };
    match name.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" => utf8(body),
        "us-ascii" | "ascii" => {
            if body.is_ascii() {
                utf8(body)
            } else {
                Err("input is not proper US-ASCII".into())
            }
        }
        "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" => {
            Ok(body.iter().map(|b| char::from(*b)).collect())
        }
        other => Err(format!("unsupported encoding {other}")),
    }
}

/// The `encoding` pseudo-attribute of a leading `<?xml ...?>`.
fn declared_encoding(body: &[u8]) -> Option<String> {
    let rest = body.strip_prefix(b"<?xml")?;
    let end = memchr::memmem::find(rest, b"?>")?;
    let decl = &rest[..end];
    let at = memchr::memmem::find(decl, b"encoding")?;
    let after = &decl[at + b"encoding".len()..];
    let after = after
        .trim_ascii_start()
        .strip_prefix(b"=")?
        .trim_ascii_start();
    let quote = *after.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let value = &after[1..];
    let close = value.iter().position(|b| *b == quote)?;
    String::from_utf8(value[..close].to_vec()).ok()
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "input is not proper UTF-8".to_string())
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, String> {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| unit([pair[0], pair.get(1).copied().unwrap_or(0)]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| "input is not proper UTF-16".to_string())
}

fn normalize_line_ends(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}
