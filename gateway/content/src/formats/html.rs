//! HTML: the parts a browser would turn into files or run, handed on as pieces of their own —
//! base64 `data:` URIs (HTML smuggling puts whole executables there) and the text of
//! `<script>` blocks.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// True when `data` is HTML: it opens like a document (after whitespace and a UTF-8 BOM), or,
/// as ClamAV types HTML, carries a tag a browser acts on anywhere in it (`<html>`, `<head>`,
/// `<script`, `<iframe`, `<img`, `<object`, `<table`, `<a … href`), so a fragment that starts
/// with a link (`<a href="data:…">`) is opened too.
pub fn is_html(data: &[u8]) -> bool {
    opens_like_html(data) || has_html_tag(data)
}

fn opens_like_html(data: &[u8]) -> bool {
    let head = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = &head[start..head.len().min(start + 64)];
    let lower: Vec<u8> = head.iter().map(u8::to_ascii_lowercase).collect();
    [
        &b"<!doctype html"[..],
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<!--",
        b"<meta",
        b"<iframe",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
}

/// ClamAV's HTML markers (`filetypes_int.h`): tags followed by `>`, whitespace or `/`, and an
/// anchor with an `href` within its first 256 bytes.
fn has_html_tag(data: &[u8]) -> bool {
    memchr::memchr_iter(b'<', data).any(|at| tag_at(&data[at + 1..]))
}

fn tag_at(rest: &[u8]) -> bool {
    let starts = |t: &[u8]| rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t);
    if starts(b"html>") || starts(b"head>") {
        return true;
    }
    for t in [&b"script"[..], b"iframe", b"img", b"object", b"table"] {
        if starts(t)
            && matches!(
                rest.get(t.len()),
                Some(b'>' | b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b'/')
            )
        {
            return true;
        }
    }
    if starts(b"a") && rest.get(1).is_some_and(u8::is_ascii_whitespace) {
        let window = &rest[2..rest.len().min(258)];
        let tag_end = memchr::memchr(b'>', window).unwrap_or(window.len());
        return window[..tag_end]
            .windows(4)
            .any(|w| w.eq_ignore_ascii_case(b"href"));
    }
    false
}

/// What HTML carries: decoded `data:` URIs and script texts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parts {
    /// (media type, decoded bytes) of each base64 `data:` URI.
    pub data_uris: Vec<(String, Vec<u8>)>,
    /// The text of each `<script>` element.
    pub scripts: Vec<Vec<u8>>,
}

/// Finds up to `max` of each, each at most `cap` bytes.
pub fn parts(html: &[u8], max: usize, cap: usize) -> Parts {
    let mut out = Parts::default();
    let lower: Vec<u8> = html.iter().map(u8::to_ascii_lowercase).collect();
    for at in memchr::memmem::find_iter(&lower, b"data:") {
        if out.data_uris.len() >= max {
            break;
        }
        if let Some(uri) = data_uri(&html[at + 5..], cap) {
            out.data_uris.push(uri);
        }
    }
    let mut from = 0;
    while out.scripts.len() < max {
        let Some(open) = memchr::memmem::find(&lower[from..], b"<script") else {
            break;
        };
        let open = from + open;
        let Some(gt) = memchr::memchr(b'>', &lower[open..]) else {
            break;
        };
        let body = open + gt + 1;
        let end =
            memchr::memmem::find(&lower[body..], b"</script").map_or(html.len(), |e| body + e);
        let text = &html[body..end];
        if !text.iter().all(u8::is_ascii_whitespace) {
            out.scripts.push(text[..text.len().min(cap)].to_vec());
        }
        from = end;
    }
    out
}

/// `[<media type>][;params];base64,<data>` up to the first character base64 cannot hold.
fn data_uri(rest: &[u8], cap: usize) -> Option<(String, Vec<u8>)> {
    let comma = rest.iter().take(256).position(|b| *b == b',')?;
    let meta = String::from_utf8_lossy(&rest[..comma]).to_ascii_lowercase();
    // As browsers read it (WHATWG "data: URL processor"): `;` then optional spaces then
    // `base64` ends the metadata.
    let (media, flag) = meta.rsplit_once(';')?;
    if flag.trim_start() != "base64" {
        return None;
    }
    let media = media
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    // The body runs to the attribute's end; browsers percent-decode it, then drop ASCII
    // whitespace before decoding base64, so `TVq%51` and `TVqQ AAMA` are whole files.
    let max_chars = cap.saturating_mul(4) / 3 + 4;
    let raw: Vec<u8> = rest[comma + 1..]
        .iter()
        .copied()
        .take_while(|b| !matches!(b, b'"' | b'\'' | b'>' | b'<' | b')' | b'`'))
        .take(max_chars.saturating_mul(3))
        .collect();
    let mut text: Vec<u8> = super::unescape_hex(&raw, b'%')
        .into_iter()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .take(max_chars)
        .collect();
    if text.len() % 4 == 1 {
        text.pop();
    }
    let lenient = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let decoded = lenient.decode(&text).ok()?;
    (!decoded.is_empty()).then(|| (media, decoded[..decoded.len().min(cap)].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smuggled_files_and_scripts() {
        let page = b"\xef\xbb\xbf  <!DOCTYPE html><html><body>\
            <a href=\"data:application/octet-stream;base64,TVqQAAMAAAAEAAAA\" download=\"a.exe\">x</a>\
            <img src='data:image/png;base64,iVBORw0KGgo='>\
            <a href=\"data:text/plain,not base64\">y</a>\
            <SCRIPT type=\"text/javascript\">var b = atob('TVqQ');</SCRIPT><script src=x.js></script>\
            </body></html>";
        assert!(is_html(page));
        let p = parts(page, 10, 1 << 20);
        assert_eq!(p.data_uris.len(), 2);
        assert_eq!(p.data_uris[0].0, "application/octet-stream");
        assert!(p.data_uris[0].1.starts_with(b"MZ"));
        assert_eq!(p.data_uris[1].1, b"\x89PNG\r\n\x1a\n");
        assert_eq!(p.scripts, vec![b"var b = atob('TVqQ');".to_vec()]);
        // Tags a browser acts on, anywhere (as ClamAV types HTML); not lookalikes.
        for yes in [
            &b"plain text <html>"[..],
            b"<a href=\"data:x\">",
            b"x <A\n class=1 HREF=y>",
            b"1 <IMG/src=x>",
            b"<script>",
        ] {
            assert!(is_html(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in [
            &b"a < b and c > d"[..],
            b"see <imgur> or <tablet>",
            b"<a name=x>href later",
            b"x <html",
        ] {
            assert!(!is_html(no), "{}", String::from_utf8_lossy(no));
        }
        assert_eq!(parts(page, 1, 4).data_uris[0].1, b"MZ\x90\x00");
        // Spelled as browsers still read it: spaces, line breaks and %-escapes inside the
        // base64, `; base64` with a space.
        for spelled in [
            &b"<a href='data:application/x-msdownload;base64,TVqQ AAMA\nAAAE AAAA'>"[..],
            b"<a href='data:application/x-msdownload; base64,TVq%51AAMAAAAEAAAA'>",
        ] {
            let p = parts(spelled, 10, 1 << 20);
            assert_eq!(p.data_uris.len(), 1, "{}", String::from_utf8_lossy(spelled));
            assert_eq!(
                p.data_uris[0].1,
                b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00"
            );
        }
    }
}
