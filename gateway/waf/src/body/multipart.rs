//! `multipart/form-data` bodies, parsed as ModSecurity v2's line-oriented parser does
//! (apache2/msc_multipart.c): lines of at most 4096 bytes, boundaries recognised only at the
//! start of a line, part headers and values built line by line, and every irregularity recorded
//! in the `MULTIPART_*` flags. The whole body is one chunk.

mod boundary;
mod disposition;
mod lines;

use super::{ArgList, ArgOrigin, Limits, ARGUMENTS_LIMIT_MSG};

/// The `MULTIPART_*` flag variables, each `1` when set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MultipartFlags {
    /// The parser stopped on an error (part of `MULTIPART_STRICT_ERROR` only).
    pub error: bool,
    /// `MULTIPART_BOUNDARY_QUOTED`: the C-T boundary was in double quotes.
    pub boundary_quoted: bool,
    /// `MULTIPART_BOUNDARY_WHITESPACE`: whitespace around the `=` of the C-T boundary.
    pub boundary_whitespace: bool,
    /// `MULTIPART_DATA_BEFORE`: bytes before the first boundary.
    pub data_before: bool,
    /// `MULTIPART_DATA_AFTER`: bytes after the final boundary's line.
    pub data_after: bool,
    /// `MULTIPART_HEADER_FOLDING`: a part header continued on a line starting with whitespace.
    pub header_folding: bool,
    /// `MULTIPART_LF_LINE`: a line ended in a bare LF.
    pub lf_line: bool,
    /// `MULTIPART_CRLF_LINE`: a line ended in CRLF.
    pub crlf_line: bool,
    /// `MULTIPART_MISSING_SEMICOLON`: no `;` before the C-T boundary parameter.
    pub missing_semicolon: bool,
    /// `MULTIPART_INVALID_QUOTING`: single quotes in a Content-Disposition header.
    pub invalid_quoting: bool,
    /// `MULTIPART_INVALID_PART`: a part without a name, or a boundary where data should start.
    pub invalid_part: bool,
    /// `MULTIPART_INVALID_HEADER_FOLDING`: folding with whitespace other than SP and HT.
    pub invalid_header_folding: bool,
    /// `MULTIPART_FILE_LIMIT_EXCEEDED`: more files than `SecUploadFileLimit` (when extracting).
    pub file_limit_exceeded: bool,
    /// `MULTIPART_UNMATCHED_BOUNDARY`: something like `--boundary` that was not a boundary line.
    pub unmatched_boundary: bool,
}

impl MultipartFlags {
    /// `MULTIPART_STRICT_ERROR`: any flag but `crlf_line` and `unmatched_boundary`.
    pub fn strict_error(&self) -> bool {
        self.error
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
    }

    /// `MULTIPART_CRLF_LF_LINES`: both line endings were seen.
    pub fn crlf_lf_lines(&self) -> bool {
        self.lf_line && self.crlf_line
    }
}

/// A file part: one with a `filename` in its Content-Disposition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    /// The filename as sent (`FILES`).
    pub filename: Vec<u8>,
    /// Bytes of content (`FILES_SIZES`), the line ending before the boundary excluded.
    pub size: u64,
    /// The part's `Content-Type` header, if any.
    pub content_type: Option<Vec<u8>>,
}

/// A complete part with a name, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its Content-Disposition (`FILES_NAMES` for files, the argument name else).
    pub name: Vec<u8>,
    /// Its headers after folding, names as sent.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// `MULTIPART_PART_HEADERS:name` values: each header line as sent (a folded header as
    /// `Name: value continuation`), without its line ending; only lines followed by another
    /// header or the blank line are recorded, as in v2.
    pub header_lines: Vec<Vec<u8>>,
    /// The value of a form field (empty for a file).
    pub value: Vec<u8>,
    /// Set for a file part.
    pub file: Option<FilePart>,
}

/// What a multipart body yields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Multipart {
    /// The parts completed before the end or an error.
    pub parts: Vec<Part>,
    /// The `MULTIPART_*` flags.
    pub flags: MultipartFlags,
    /// `REQBODY_ERROR_MSG` when the body sets `REQBODY_ERROR`.
    pub error: Option<String>,
    /// `MULTIPART_NAME`: the last `name` parsed from a Content-Disposition.
    pub last_name: Option<Vec<u8>>,
    /// `MULTIPART_FILENAME`: the last `filename` parsed.
    pub last_filename: Option<Vec<u8>>,
    /// Bytes counted against `SecRequestBodyNoFilesLimit` (part headers and field values).
    pub no_files_length: u64,
}

impl Multipart {
    /// The file parts (`FILES`, `FILES_NAMES`, `FILES_SIZES`), in body order.
    pub fn files(&self) -> impl Iterator<Item = (&Part, &FilePart)> {
        self.parts
            .iter()
            .filter_map(|p| p.file.as_ref().map(|f| (p, f)))
    }

    /// `FILES_COMBINED_SIZE`.
    pub fn files_combined_size(&self) -> u64 {
        self.files().map(|(_, f)| f.size).sum()
    }

    /// `MULTIPART_PART_HEADERS`: (part name, header line) pairs in body order.
    pub fn part_headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.parts.iter().flat_map(|p| {
            p.header_lines
                .iter()
                .map(|l| (p.name.as_slice(), l.as_slice()))
        })
    }
}

/// Parses a multipart body sent with the request header `content_type`, adding its form fields
/// to `args` (origin [`ArgOrigin::Body`]) when the whole body parsed.
///
/// As in v2, a Content-Type the parser refuses leaves the body unparsed, an error while parsing
/// keeps the parts completed before it but adds no argument, and a missing final boundary is an
/// error after all parts were read.
pub fn multipart(
    content_type: &[u8],
    body: &[u8],
    limits: &Limits,
    args: &mut ArgList,
) -> Multipart {
    let mut out = Multipart::default();
    let boundary = match boundary::parse(trim_end(content_type), &mut out.flags) {
        Ok(boundary) => boundary,
        Err(msg) => {
            out.flags.error = true;
            out.error = Some(msg.to_string());
            return out;
        }
    };
    let mut parser = lines::Parser::new(boundary, limits, out);
    if let Err(msg) = parser.feed(body) {
        let mut out = parser.into_output();
        out.flags.error = true;
        out.error = Some(format!("Multipart parsing error: {msg}"));
        return out;
    }
    let completed = parser.complete();
    let mut out = parser.into_output();
    if let Err(msg) = completed {
        out.error = Some(format!("Multipart parsing error: {msg}"));
        return out;
    }
    add_fields(&mut out, args);
    out
}

fn add_fields(out: &mut Multipart, args: &mut ArgList) {
    for part in out.parts.iter().filter(|p| p.file.is_none()) {
        if !args.push(part.name.clone(), part.value.clone(), ArgOrigin::Body) && out.error.is_none()
        {
            out.error = Some(ARGUMENTS_LIMIT_MSG.to_string());
        }
    }
}

/// Apache hands ModSecurity header values without trailing whitespace.
fn trim_end(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(0, |i| i + 1);
    &value[..end]
}

/// C's `isspace` in the "C" locale.
pub(super) fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[cfg(test)]
mod tests;
