//! The Content-Type Go's `http.DetectContentType` gives a body albedo writes without one (the
//! WHATWG sniffing order: HTML and XML after leading whitespace, a few exact signatures, then
//! text unless a binary byte shows). Only the common signatures are listed; anything else is
//! text or `application/octet-stream`, as in Go.

/// The sniffed type of `body`.
pub fn content_type(body: &[u8]) -> &'static str {
    let data = &body[..body.len().min(512)];
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' '))
        .unwrap_or(data.len());
    let trimmed = &data[start..];
    if HTML.iter().any(|sig| html_tag(trimmed, sig)) {
        return "text/html; charset=utf-8";
    }
    if starts_fold(trimmed, b"<?XML") {
        return "text/xml; charset=utf-8";
    }
    if let Some((_, t)) = EXACT.iter().find(|(sig, _)| data.starts_with(sig)) {
        return t;
    }
    if data.iter().any(|&b| is_binary(b)) {
        "application/octet-stream"
    } else {
        "text/plain; charset=utf-8"
    }
}

const HTML: &[&[u8]] = &[
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
];

const EXACT: &[(&[u8], &str)] = &[
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
    (b"\xFE\xFF", "text/plain; charset=utf-16be"),
    (b"\xFF\xFE", "text/plain; charset=utf-16le"),
    (b"\xEF\xBB\xBF", "text/plain; charset=utf-8"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
    (b"\xFF\xD8\xFF", "image/jpeg"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1F\x8B\x08", "application/x-gzip"),
];

/// `sig` (letters in any case) followed by a space or `>`.
fn html_tag(data: &[u8], sig: &[u8]) -> bool {
    starts_fold(data, sig) && matches!(data.get(sig.len()), Some(b' ' | b'>'))
}

fn starts_fold(data: &[u8], sig: &[u8]) -> bool {
    data.len() >= sig.len() && data[..sig.len()].eq_ignore_ascii_case(sig)
}

/// WHATWG "binary data byte".
fn is_binary(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)
}

#[cfg(test)]
mod tests {
    use super::content_type;

    #[test]
    fn sniffs_like_go() {
        assert_eq!(
            content_type(b"<?php echo 1; ?>"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(content_type(b"  <html><body>"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"<htmlx"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"<?xml version"), "text/xml; charset=utf-8");
        assert_eq!(content_type(b"\x00\x01"), "application/octet-stream");
    }
}
