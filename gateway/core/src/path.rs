//! The one canonical form of a request path, on which routes, facility policy, engines and logs
//! decide, and which is what goes upstream.
//!
//! Computed once per request from the path as received (no query):
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other
//!   percent-encoding is kept, with upper-case hex (RFC 3986 §6.2.2);
//! - empty segments are merged (`//` → `/`, nginx `merge_slashes`);
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4); a trailing slash is kept.
//!
//! Refused, each with its own rule id (as nginx's `ngx_http_parse_complex_uri` and Envoy's
//! `normalize_path` + `path_with_escaped_slashes_action = REJECT_REQUEST` refuse them): an encoded
//! slash or backslash (`%2F`, `%5C`), a raw backslash, NUL and other control characters raw or
//! encoded, a malformed `%` escape, overlong or otherwise invalid UTF-8 in escapes, a dot segment
//! spelled with an encoded dot (`%2e%2e`), a dot segment carrying parameters (`..;x`, which
//! servlet containers resolve), and `..` above the root. A client that means well sends none of
//! these; an upstream might read any of them as a second spelling of another path.

use std::fmt;

/// Why a path has no single meaning; `rule_id` names the ambiguity in events and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathRefusal {
    /// `%2F` / `%2f`: an upstream may decode it into a separator.
    EncodedSlash,
    /// `%5C`: an upstream may decode it into a (Windows) separator.
    EncodedBackslash,
    /// A raw `\`: some servers treat it as `/`.
    Backslash,
    /// `%00` or a raw NUL.
    Nul,
    /// Another control character, raw or encoded.
    ControlChar,
    /// `%` not followed by two hex digits.
    BadPercent,
    /// An overlong UTF-8 encoding in escapes (`%C0%AF` for `/`).
    OverlongUtf8,
    /// Escapes or raw bytes that are not UTF-8.
    InvalidUtf8,
    /// `.` or `..` written with an encoded dot.
    EncodedDotSegment,
    /// `..;x` or `.;x`: a dot segment with path parameters.
    DotSegmentParams,
    /// More `..` than segments.
    AboveRoot,
    /// Not origin-form (does not start with `/`).
    NotOriginForm,
}

impl PathRefusal {
    /// The rule id of the event that reports it.
    pub fn rule_id(self) -> &'static str {
        match self {
            PathRefusal::EncodedSlash => "path-encoded-slash",
            PathRefusal::EncodedBackslash => "path-encoded-backslash",
            PathRefusal::Backslash => "path-backslash",
            PathRefusal::Nul => "path-nul",
            PathRefusal::ControlChar => "path-control-char",
            PathRefusal::BadPercent => "path-bad-percent",
            PathRefusal::OverlongUtf8 => "path-overlong-utf8",
            PathRefusal::InvalidUtf8 => "path-invalid-utf8",
            PathRefusal::EncodedDotSegment => "path-encoded-dot-segment",
            PathRefusal::DotSegmentParams => "path-dot-segment-params",
            PathRefusal::AboveRoot => "path-above-root",
            PathRefusal::NotOriginForm => "path-not-origin-form",
        }
    }
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            PathRefusal::EncodedSlash => "an encoded slash (%2F)",
            PathRefusal::EncodedBackslash => "an encoded backslash (%5C)",
            PathRefusal::Backslash => "a backslash",
            PathRefusal::Nul => "a NUL byte",
            PathRefusal::ControlChar => "a control character",
            PathRefusal::BadPercent => "a malformed percent escape",
            PathRefusal::OverlongUtf8 => "an overlong UTF-8 sequence",
            PathRefusal::InvalidUtf8 => "invalid UTF-8",
            PathRefusal::EncodedDotSegment => "a dot segment written with an encoded dot",
            PathRefusal::DotSegmentParams => "a dot segment with parameters (..;)",
            PathRefusal::AboveRoot => "a '..' above the root",
            PathRefusal::NotOriginForm => "a path that does not start with '/'",
        };
        write!(f, "the path has {what}")
    }
}

impl std::error::Error for PathRefusal {}

/// One decoded unit of a segment.
struct Seg {
    text: String,
    /// A `.` in it came from `%2e`.
    encoded_dot: bool,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks a run of bytes ≥ 0x80 (decoded from escapes or raw): UTF-8, not overlong.
fn check_utf8(run: &[u8]) -> Result<(), PathRefusal> {
    // Overlong forms (C0/C1 leads, E0 80–9F, F0 80–8F) are refused by name: they are the
    // classic way to smuggle '/' or '.' past a decoder.
    for w in run.windows(2) {
        if matches!((w[0], w[1]), (0xE0, 0x80..=0x9F) | (0xF0, 0x80..=0x8F)) {
            return Err(PathRefusal::OverlongUtf8);
        }
    }
    if run.iter().any(|b| matches!(b, 0xC0 | 0xC1)) {
        return Err(PathRefusal::OverlongUtf8);
    }
    std::str::from_utf8(run)
        .map(|_| ())
        .map_err(|_| PathRefusal::InvalidUtf8)
}

/// Decodes one segment's bytes into its canonical text.
fn segment(raw: &[u8]) -> Result<Seg, PathRefusal> {
    let mut text = String::with_capacity(raw.len());
    let mut encoded_dot = false;
    let mut high: Vec<u8> = Vec::new();
    let mut i = 0;
    let flush = |high: &mut Vec<u8>, text: &mut String| -> Result<(), PathRefusal> {
        if !high.is_empty() {
            check_utf8(high)?;
            for b in high.drain(..) {
                text.push_str(&format!("%{b:02X}"));
            }
        }
        Ok(())
    };
    while i < raw.len() {
        let (b, escaped) = if raw[i] == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathRefusal::BadPercent);
            };
            i += 3;
            (h << 4 | l, true)
        } else {
            i += 1;
            (raw[i - 1], false)
        };
        if b >= 0x80 {
            high.push(b);
            continue;
        }
        flush(&mut high, &mut text)?;
        match b {
            0 => return Err(PathRefusal::Nul),
            b'/' if escaped => return Err(PathRefusal::EncodedSlash),
            b'\\' if escaped => return Err(PathRefusal::EncodedBackslash),
            b'\\' => return Err(PathRefusal::Backslash),
            0x01..=0x1f | 0x7f => return Err(PathRefusal::ControlChar),
            b'.' if escaped => {
                encoded_dot = true;
                text.push('.');
            }
            _ if escaped && !unreserved(b) => text.push_str(&format!("%{b:02X}")),
            _ => text.push(b as char),
        }
    }
    flush(&mut high, &mut text)?;
    Ok(Seg { text, encoded_dot })
}

/// The canonical form of `path` (the request target's path, without query), or why it has none.
pub fn canonical_path(path: &str) -> Result<String, PathRefusal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathRefusal::NotOriginForm);
    };
    let mut out: Vec<String> = Vec::new();
    let raw_segments: Vec<&[u8]> = rest.as_bytes().split(|b| *b == b'/').collect();
    let last = raw_segments.len() - 1;
    let mut trailing = false;
    for (n, raw) in raw_segments.into_iter().enumerate() {
        let seg = segment(raw)?;
        let is_last = n == last;
        match seg.text.as_str() {
            "" => trailing = is_last,
            "." | ".." if seg.encoded_dot => return Err(PathRefusal::EncodedDotSegment),
            "." => trailing = is_last,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathRefusal::AboveRoot);
                }
                trailing = is_last;
            }
            t if t.starts_with(".;") || t.starts_with("..;") => {
                return Err(PathRefusal::DotSegmentParams)
            }
            _ => {
                out.push(seg.text);
                trailing = false;
            }
        }
    }
    let mut s = String::with_capacity(path.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if trailing || out.is_empty() {
        s.push('/');
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/admin/secret.txt", "/api/admin/secret.txt"),
            ("/api/x/../admin/secret.txt", "/api/admin/secret.txt"),
            ("/api//admin/secret.txt", "/api/admin/secret.txt"),
            ("/api/./admin/secret.txt", "/api/admin/secret.txt"),
            ("/api/%61dmin/secret.txt", "/api/admin/secret.txt"),
            ("/api/%7euser", "/api/~user"),
            ("/api/file%2etxt", "/api/file.txt"),
            ("/a%20b/%3f%23", "/a%20b/%3F%23"),
            ("/api/admin/", "/api/admin/"),
            ("/api/admin/.", "/api/admin/"),
            ("/api/admin/..", "/api/"),
            ("/api/..", "/"),
            ("//", "/"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/api;v=1/x", "/api;v=1/x"),
        ] {
            assert_eq!(canonical_path(raw).as_deref(), Ok(want), "{raw}");
            assert_eq!(
                canonical_path(want).as_deref(),
                Ok(want),
                "idempotent: {want}"
            );
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/api%2fadmin", PathRefusal::EncodedSlash),
            ("/api%2Fadmin", PathRefusal::EncodedSlash),
            ("/api%5cadmin", PathRefusal::EncodedBackslash),
            ("/api\\admin", PathRefusal::Backslash),
            ("/api%00.txt", PathRefusal::Nul),
            ("/api%0d%0a", PathRefusal::ControlChar),
            ("/api%zz", PathRefusal::BadPercent),
            ("/api%2", PathRefusal::BadPercent),
            ("/api/%c0%af/admin", PathRefusal::OverlongUtf8),
            ("/api/%e0%80%af", PathRefusal::OverlongUtf8),
            ("/api/%ff", PathRefusal::InvalidUtf8),
            ("/api/%c3", PathRefusal::InvalidUtf8),
            (
                "/api/%2e%2e/api/admin/secret.txt",
                PathRefusal::EncodedDotSegment,
            ),
            ("/api/.%2e/admin", PathRefusal::EncodedDotSegment),
            ("/api/%2e/admin", PathRefusal::EncodedDotSegment),
            ("/api/x/..;/admin", PathRefusal::DotSegmentParams),
            ("/..", PathRefusal::AboveRoot),
            ("/api/../../admin", PathRefusal::AboveRoot),
            ("api/admin", PathRefusal::NotOriginForm),
        ] {
            assert_eq!(canonical_path(raw), Err(why), "{raw}");
            assert!(why.rule_id().starts_with("path-"));
        }
    }
}
