//! The boundary of a `multipart/form-data` Content-Type, extracted and checked as v2's
//! `multipart_init` does: one `boundary` parameter, spelled in lower case, after at most one
//! `;`, its value the whole rest of the header, optionally in double quotes, made of RFC 2046
//! characters.

use super::{c_isspace, MultipartFlags};

const MIME: &[u8] = b"multipart/form-data";
const PARAM: &[u8] = b"boundary";

/// The boundary, or v2's error message (`REQBODY_ERROR_MSG`; init errors carry no prefix).
pub(super) fn parse(
    content_type: &[u8],
    flags: &mut MultipartFlags,
) -> Result<Vec<u8>, &'static str> {
    // The header is a C string to v2.
    let ct = until_nul(content_type);
    if ct.len() > 1024 {
        return Err("Multipart: Invalid boundary in C-T (length).");
    }
    if !ct
        .get(..MIME.len())
        .is_some_and(|m| m.eq_ignore_ascii_case(MIME))
    {
        return Err("Multipart: Invalid MIME type.");
    }
    let params = count_params(ct);
    if params > 1 {
        return Err("Multipart: Multiple boundary parameters in C-T.");
    }
    let Some(at) = find(ct, PARAM) else {
        if params > 0 {
            return Err("Multipart: Invalid boundary in C-T (case sensitivity).");
        }
        return Err("Multipart: Boundary not found in C-T.");
    };
    check_before(ct.get(MIME.len()..at).unwrap_or_default(), flags)?;
    let after_name = at + PARAM.len();
    let eq = ct[after_name..]
        .iter()
        .position(|b| *b == b'=')
        .map(|i| after_name + i)
        .ok_or("Multipart: Invalid boundary in C-T (malformed).")?;
    for &b in &ct[after_name..eq] {
        if !c_isspace(b) {
            return Err("Multipart: Invalid boundary in C-T (parameter name).");
        }
        flags.boundary_whitespace = true;
    }
    let value = &ct[eq + 1..];
    if value.first().copied().is_some_and(c_isspace) {
        flags.boundary_whitespace = true;
    }
    let boundary = unquote(value, flags)?;
    if count_params(boundary) != 0 {
        return Err("Multipart: Invalid boundary in C-T (content).");
    }
    if !characters_valid(boundary) {
        return Err("Multipart: Invalid boundary in C-T (characters).");
    }
    if boundary.is_empty() {
        return Err("Multipart: Invalid boundary in C-T (empty).");
    }
    Ok(boundary.to_vec())
}

/// Between the MIME type and `boundary`: whitespace and at most one `;`.
fn check_before(between: &[u8], flags: &mut MultipartFlags) -> Result<(), &'static str> {
    let mut seen_semicolon = false;
    for &b in between {
        if c_isspace(b) {
            continue;
        }
        if b == b';' && !seen_semicolon {
            seen_semicolon = true;
        } else {
            return Err("Multipart: Invalid boundary in C-T (malformed).");
        }
    }
    if !seen_semicolon {
        flags.missing_semicolon = true;
    }
    Ok(())
}

fn unquote<'a>(value: &'a [u8], flags: &mut MultipartFlags) -> Result<&'a [u8], &'static str> {
    let len = value.len();
    if len >= 2 && value[0] == b'"' && value[len - 1] == b'"' {
        flags.boundary_quoted = true;
        return Ok(&value[1..len - 1]);
    }
    if value.first() == Some(&b'"') || (len >= 2 && value[len - 1] == b'"') {
        return Err("Multipart: Invalid boundary in C-T (quote).");
    }
    Ok(value)
}

/// v2's `multipart_count_boundary_params`: occurrences of `boundary` (any case) with a `=`
/// somewhere after them.
fn count_params(text: &[u8]) -> usize {
    let lower = text.to_ascii_lowercase();
    let mut count = 0;
    let mut from = 0;
    while let Some(i) = find(&lower[from..], PARAM) {
        from += i + PARAM.len();
        if lower[from..].contains(&b'=') {
            count += 1;
        }
    }
    count
}

/// RFC 2046's boundary characters; a space anywhere but last.
fn characters_valid(boundary: &[u8]) -> bool {
    boundary.iter().enumerate().all(|(i, &c)| {
        c.is_ascii_alphanumeric()
            || (c == b' ' && i + 1 < boundary.len())
            || b"'()+_,-./:=?".contains(&c)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    &bytes[..end]
}
