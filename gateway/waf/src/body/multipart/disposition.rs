//! A part's Content-Disposition header, read as v2's `multipart_parse_content_disposition`:
//! `form-data` then `;`-separated `name` and `filename` parameters, values quoted with `"` or
//! (flagged) `'` or bare tokens, `\` escaping only the quote and itself. Errors are v2's negative
//! codes, which end up in the error message.

use super::MultipartFlags;

/// The parameters found, and the last values seen (`MULTIPART_NAME`, `MULTIPART_FILENAME`),
/// which v2 records even when the header is then refused.
#[derive(Debug, Default)]
pub(super) struct Disposition {
    pub name: Option<Vec<u8>>,
    pub filename: Option<Vec<u8>>,
    pub last_name: Option<Vec<u8>>,
    pub last_filename: Option<Vec<u8>>,
}

/// Parses `value` (a header value without line ending).
pub(super) fn parse(
    value: &[u8],
    flags: &mut MultipartFlags,
    out: &mut Disposition,
) -> Result<(), i32> {
    let v = match memchr::memchr(0, value) {
        Some(end) => &value[..end],
        None => value,
    };
    if !v.starts_with(b"form-data") {
        return Err(-1);
    }
    let mut p = skip_blanks(v, 9);
    if p == v.len() {
        return Ok(());
    }
    if v[p] != b';' {
        return Err(-2);
    }
    p += 1;
    while p < v.len() {
        p = parameter(v, p, flags, out)?;
    }
    Ok(())
}

/// One `name=value` parameter starting at `p`; the position after it and its `;`.
fn parameter(
    v: &[u8],
    p: usize,
    flags: &mut MultipartFlags,
    out: &mut Disposition,
) -> Result<usize, i32> {
    let mut p = skip_blanks(v, p);
    if p == v.len() {
        return Err(-3);
    }
    let start = p;
    while p < v.len() && !matches!(v[p], b'=' | b' ' | b'\t') {
        p += 1;
    }
    if p == v.len() {
        return Err(-4);
    }
    let name = &v[start..p];
    p = skip_blanks(v, p);
    if p == v.len() {
        return Err(-5);
    }
    if v[p] != b'=' {
        return Err(-13);
    }
    p = skip_blanks(v, p + 1);
    if p == v.len() {
        return Err(-6);
    }
    let (value, quote, next) = param_value(v, p, flags)?;
    p = next;
    assign(name, value, quote, flags, out)?;
    if p == v.len() {
        return Ok(p);
    }
    p = skip_blanks(v, p);
    if p == v.len() {
        return Ok(p);
    }
    if v[p] != b';' {
        if p.checked_sub(1)
            .and_then(|i| v.get(i))
            .is_some_and(|c| matches!(c, b'\'' | b'"'))
        {
            flags.invalid_quoting = true;
        }
        return Err(-12);
    }
    Ok(p + 1)
}

/// The value at `p`: quoted (with its quote character) or a token; and the position after it.
fn param_value(
    v: &[u8],
    mut p: usize,
    flags: &mut MultipartFlags,
) -> Result<(Vec<u8>, u8, usize), i32> {
    let quote = v[p];
    if quote != b'"' && quote != b'\'' {
        let start = p;
        while p < v.len() && is_token_char(v[p]) {
            p += 1;
        }
        return Ok((v[start..p].to_vec(), 0, p));
    }
    if quote == b'\'' {
        flags.invalid_quoting = true;
    }
    p += 1;
    if p == v.len() {
        return Err(-7);
    }
    let mut value = Vec::new();
    loop {
        let Some(&c) = v.get(p) else {
            return Err(-10);
        };
        if c == b'\\' {
            let Some(&next) = v.get(p + 1) else {
                return Err(-8);
            };
            // Only the quote and the backslash are escaped; other backslashes stay (IE sends them).
            if next == quote || next == b'\\' {
                p += 1;
            }
        } else if c == quote {
            return Ok((value, quote, p + 1));
        }
        value.push(v[p]);
        p += 1;
    }
}

fn assign(
    name: &[u8],
    value: Vec<u8>,
    quote: u8,
    flags: &mut MultipartFlags,
    out: &mut Disposition,
) -> Result<(), i32> {
    match name {
        b"name" => {
            flag_single_quote(&value, quote, flags);
            out.last_name = Some(value.clone());
            if out.name.is_some() {
                return Err(-14);
            }
            out.name = Some(value);
        }
        b"filename" => {
            flag_single_quote(&value, quote, flags);
            out.last_filename = Some(value.clone());
            if out.filename.is_some() {
                return Err(-15);
            }
            out.filename = Some(value);
        }
        _ => return Err(-11),
    }
    Ok(())
}

/// v2's `validate_quotes`: a `'` inside a value that was not in double quotes is flagged.
fn flag_single_quote(value: &[u8], quote: u8, flags: &mut MultipartFlags) {
    if quote != b'"' && value.contains(&b'\'') {
        flags.invalid_quoting = true;
    }
}

fn skip_blanks(v: &[u8], mut p: usize) -> usize {
    while p < v.len() && (v[p] == b' ' || v[p] == b'\t') {
        p += 1;
    }
    p
}

/// RFC 2616 token characters (v2's `is_token_char`).
fn is_token_char(c: u8) -> bool {
    c > 32 && c < 127 && !b"()<>@,;:\\\"/[]?=".contains(&c)
}
