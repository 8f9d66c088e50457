//! The line machine of v2's `multipart_process_chunk`: bytes gather in a 4096-byte buffer until a
//! LF (or the buffer fills); a buffer that starts a line and begins with `--` may be a boundary,
//! anything else is part header or part data. The line ending before a boundary is held back
//! from the value (v2's "reserve").

use std::collections::HashSet;

use super::disposition::{self, Disposition};
use super::{c_isspace, FilePart, Multipart, Part};
use crate::body::{escape_for_log, Limits};

/// v2's `MULTIPART_BUF_SIZE`.
const BUF: usize = 4096;

/// The part being read.
#[derive(Default)]
struct Building {
    name: Option<Vec<u8>>,
    filename: Option<Vec<u8>>,
    in_data: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    header_names: HashSet<Vec<u8>>,
    last_header: Option<usize>,
    last_header_line: Option<Vec<u8>>,
    header_lines: Vec<Vec<u8>>,
    value: Vec<u8>,
    size: u64,
    reserve: Vec<u8>,
    file_counted: bool,
}

impl Building {
    fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The parser's state across the body.
pub(super) struct Parser<'l> {
    limits: &'l Limits,
    boundary: Vec<u8>,
    /// `--` followed by the boundary, searched for anywhere in a line.
    marker: Vec<u8>,
    buf: Vec<u8>,
    buf_contains_line: bool,
    /// 0 none, 1 after CR, 2 after a bare LF, 3 after CRLF.
    crlf_state: u8,
    crlf_state_buf_end: u8,
    part: Option<Building>,
    data_read: bool,
    boundary_count: usize,
    is_complete: bool,
    seen_data: bool,
    nfiles: usize,
    out: Multipart,
}

impl<'l> Parser<'l> {
    pub(super) fn new(boundary: Vec<u8>, limits: &'l Limits, out: Multipart) -> Self {
        let mut marker = b"--".to_vec();
        marker.extend_from_slice(&boundary);
        Parser {
            limits,
            boundary,
            marker,
            buf: Vec::with_capacity(BUF),
            buf_contains_line: true,
            crlf_state: 0,
            crlf_state_buf_end: 0,
            part: None,
            data_read: false,
            boundary_count: 0,
            is_complete: false,
            seen_data: false,
            nfiles: 0,
            out,
        }
    }

    pub(super) fn into_output(self) -> Multipart {
        self.out
    }

    /// Feeds the whole body; `Err` carries v2's message (without the "Multipart parsing error"
    /// prefix).
    pub(super) fn feed(&mut self, body: &[u8]) -> Result<(), String> {
        if body.is_empty() {
            return Ok(());
        }
        self.seen_data = true;
        let mut i = 0;
        while i < body.len() {
            let c = body[i];
            // A CR is never the last byte of a full buffer: the buffer goes first.
            let process_buffer = c == b'\r' && self.buf.len() == BUF - 1;
            if !process_buffer {
                self.buf.push(c);
                i += 1;
            }
            if c == b'\n' || self.buf.len() == BUF || process_buffer {
                self.line(process_buffer)?;
                self.buf.clear();
                self.buf_contains_line = c == b'\n';
                if c == b'\n' {
                    self.crlf_state = if self.crlf_state == 1 { 3 } else { 2 };
                }
                self.crlf_state_buf_end = self.crlf_state;
            }
            if c == b'\r' {
                self.crlf_state = 1;
            } else if c != b'\n' {
                self.crlf_state = 0;
            }
            if self.is_complete && i < body.len() {
                self.out.flags.data_after = true;
                return Ok(());
            }
        }
        Ok(())
    }

    /// The end of the body: a final boundary without line ending is accepted here.
    pub(super) fn complete(&mut self) -> Result<(), String> {
        if !self.seen_data || self.is_complete {
            return Ok(());
        }
        if self.boundary_count == 0 {
            return Err("Multipart: No boundaries found in payload.".into());
        }
        let final_line = self.buf_contains_line
            && self.buf.len() == self.marker.len() + 2
            && self.buf.starts_with(&self.marker)
            && self.buf.ends_with(b"--");
        if final_line {
            if self.crlf_state_buf_end == 2 {
                self.out.flags.lf_line = true;
            }
            if !self.data_read {
                self.out.flags.invalid_part = true;
            }
            self.boundary(true);
            return Ok(());
        }
        Err("Multipart: Final boundary missing.".into())
    }

    /// One buffer: a boundary, or header or data of the current part.
    fn line(&mut self, process_buffer: bool) -> Result<(), String> {
        let processed = if self.buf_contains_line && looks_like_boundary(&self.buf) {
            self.boundary_line()?
        } else {
            if self.buf_contains_line && memchr::memmem::find(&self.buf, &self.marker).is_some() {
                self.out.flags.unmatched_boundary = true;
            }
            false
        };
        if processed {
            return Ok(());
        }
        match &self.part {
            None => self.out.flags.data_before = true,
            Some(part) if !part.in_data => {
                if self.buf.len() == BUF || process_buffer {
                    return Err(format!("Multipart: Part header line over {BUF} bytes long"));
                }
                self.header_line()?;
            }
            Some(_) => self.data_line(),
        }
        Ok(())
    }

    /// A line starting with `--`: whether it was taken as a boundary.
    fn boundary_line(&mut self) -> Result<bool, String> {
        let line = until_nul(&self.buf);
        let rest = line
            .get(2..)
            .and_then(|r| r.strip_prefix(self.boundary.as_slice()));
        let Some(rest) = rest.map(<[u8]>::to_vec) else {
            self.not_our_boundary()?;
            return Ok(false);
        };
        if self.crlf_state_buf_end == 2 {
            self.out.flags.lf_line = true;
        }
        if !self.data_read && self.boundary_count > 0 {
            // Where part data should begin: v2 treats it as data, and flags the part.
            self.out.flags.invalid_part = true;
            return Ok(false);
        }
        let (is_final, ending) = match rest.strip_prefix(b"--") {
            Some(ending) => (true, ending),
            None => (false, rest.as_slice()),
        };
        if is_final && self.is_complete {
            return Err("Multipart: Invalid boundary (final duplicate).".into());
        }
        match ending {
            b"\n" => self.out.flags.lf_line = true,
            b"\r\n" => self.out.flags.crlf_line = true,
            _ => {
                let line = until_nul(&self.buf);
                return Err(format!(
                    "Multipart: Invalid boundary: {}",
                    escape_for_log(line)
                ));
            }
        }
        self.boundary(is_final);
        self.boundary_count += 1;
        Ok(true)
    }

    /// `--` not followed by the boundary: quotes or whitespace before it are errors.
    fn not_our_boundary(&mut self) -> Result<(), String> {
        let rest = until_nul(&self.buf).get(2..).unwrap_or_default();
        if self.out.flags.boundary_quoted
            && rest.first() == Some(&b'"')
            && rest[1..].starts_with(&self.boundary)
        {
            return Err("Multipart: Invalid boundary (quotes).".into());
        }
        let blanks = rest.iter().take_while(|b| c_isspace(**b)).count();
        if blanks > 0 && rest[blanks..].starts_with(&self.boundary) {
            return Err("Multipart: Invalid boundary (whitespace).".into());
        }
        self.out.flags.unmatched_boundary = true;
        Ok(())
    }

    /// Ends the current part (kept if it has a name) and, unless final, starts the next.
    fn boundary(&mut self, is_final: bool) {
        if let Some(part) = self.part.take() {
            self.finish(part);
        }
        if is_final {
            self.is_complete = true;
        } else {
            self.part = Some(Building::default());
            self.data_read = false;
        }
    }

    fn finish(&mut self, part: Building) {
        let Some(name) = part.name.clone() else {
            self.out.flags.invalid_part = true;
            return;
        };
        let file = part.filename.clone().map(|filename| FilePart {
            filename,
            size: part.size,
            content_type: part.header(b"Content-Type").map(<[u8]>::to_vec),
        });
        let value = if file.is_some() {
            Vec::new()
        } else {
            part.value
        };
        self.out.parts.push(Part {
            name,
            headers: part.headers,
            header_lines: part.header_lines,
            value,
            file,
        });
    }

    fn header_line(&mut self) -> Result<(), String> {
        if self.buf.contains(&0) {
            return Err("Multipart: Nul byte in part headers.".into());
        }
        self.out.no_files_length += self.buf.len() as u64;
        let len = self.buf.len();
        if len > 1 && self.buf[len - 2] == b'\r' {
            self.out.flags.crlf_line = true;
        } else {
            self.out.flags.lf_line = true;
        }
        if self.buf == b"\r\n" || self.buf == b"\n" {
            return self.end_of_headers();
        }
        if self.buf.first().copied().is_some_and(c_isspace) {
            return self.folded_header();
        }
        self.new_header()
    }

    fn end_of_headers(&mut self) -> Result<(), String> {
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        let value = part
            .header(b"Content-Disposition")
            .ok_or("Multipart: Part missing Content-Disposition header.")?
            .to_vec();
        let mut found = Disposition::default();
        let parsed = disposition::parse(&value, &mut self.out.flags, &mut found);
        if let Some(name) = found.last_name.take() {
            self.out.last_name = Some(name);
        }
        if let Some(filename) = found.last_filename.take() {
            self.out.last_filename = Some(filename);
        }
        if let Err(code) = parsed {
            return Err(format!(
                "Multipart: Invalid Content-Disposition header ({code}): {}.",
                escape_for_log(&value)
            ));
        }
        if found.name.is_none() {
            return Err("Multipart: Content-Disposition header missing name field.".into());
        }
        if found.filename.is_some() && memchr::memmem::find(&value, b"filename=").is_none() {
            return Err("Multipart: Invalid Content-Disposition header (filename).".into());
        }
        part.name = found.name;
        part.filename = found.filename;
        part.in_data = true;
        part.last_header = None;
        if let Some(line) = part.last_header_line.take() {
            part.header_lines.push(line);
        }
        self.data_read = false;
        Ok(())
    }

    fn folded_header(&mut self) -> Result<(), String> {
        let flags = &mut self.out.flags;
        flags.header_folding = true;
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        let Some(index) = part.last_header else {
            return Err("Multipart: Invalid part header (folding error).".into());
        };
        let blanks = self.buf.iter().take_while(|b| c_isspace(**b)).count();
        if self.buf[..blanks].iter().any(|b| *b != b' ' && *b != b'\t') {
            flags.invalid_header_folding = true;
        }
        let more = strip_line_end(&self.buf[blanks..]);
        let Some((name, value)) = part.headers.get_mut(index) else {
            return Ok(());
        };
        value.push(b' ');
        value.extend_from_slice(more);
        if value.len() > BUF {
            return Err("Multipart: Part header too long.".into());
        }
        let mut line = name.clone();
        line.extend_from_slice(b": ");
        line.extend_from_slice(value);
        part.last_header_line = Some(line);
        Ok(())
    }

    fn new_header(&mut self) -> Result<(), String> {
        let Some(part) = self.part.as_mut() else {
            return Ok(());
        };
        if let Some(line) = part.last_header_line.take() {
            part.header_lines.push(line);
        }
        let line = strip_line_end(&self.buf);
        part.last_header_line = Some(line.to_vec());
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err(format!(
                "Multipart: Invalid part header (colon missing): {}.",
                escape_for_log(&self.buf)
            ));
        };
        let name = &line[..colon];
        if name.is_empty() {
            return Err("Multipart: Invalid part header (header name missing).".into());
        }
        if name.iter().any(|b| !(33..=126).contains(b)) {
            return Err("Multipart: Invalid part header (contains invalid character).".into());
        }
        let start = colon
            + 1
            + line[colon + 1..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
        if !part.header_names.insert(name.to_ascii_lowercase()) {
            return Err(format!(
                "Multipart: Duplicate part header: {}.",
                escape_for_log(name)
            ));
        }
        part.headers.push((name.to_vec(), line[start..].to_vec()));
        part.last_header = Some(part.headers.len() - 1);
        Ok(())
    }

    /// A line of part data; its line ending is held back until the next line shows it was data.
    fn data_line(&mut self) {
        self.data_read = true;
        let held = if self.buf.ends_with(b"\r\n") {
            2
        } else {
            usize::from(self.buf.ends_with(b"\n"))
        };
        let data_len = self.buf.len() - held;
        let Some(part) = self.part.as_mut() else {
            return;
        };
        if part.filename.is_some() {
            self.count_file(data_len);
        } else {
            self.out.no_files_length += (data_len + part.reserve.len()) as u64;
            let reserve = std::mem::take(&mut part.reserve);
            part.value.extend_from_slice(&reserve);
            part.value.extend_from_slice(&self.buf[..data_len]);
        }
        if let Some(part) = self.part.as_mut() {
            part.reserve = self.buf[data_len..].to_vec();
        }
    }

    /// File content is only measured; v2 counts files (`SecUploadFileLimit`) only when it
    /// extracts them, and checks the limit on every line.
    fn count_file(&mut self, data_len: usize) {
        let Some(part) = self.part.as_mut() else {
            return;
        };
        let mut extract = self.limits.extract_files;
        if extract && self.nfiles >= self.limits.upload_file_limit {
            self.out.flags.file_limit_exceeded = true;
            extract = false;
        }
        if extract && !part.file_counted {
            part.file_counted = true;
            self.nfiles += 1;
        }
        part.size += (data_len + part.reserve.len()) as u64;
    }
}

/// At least four bytes before any NUL, starting with `--`.
fn looks_like_boundary(buf: &[u8]) -> bool {
    let line = until_nul(buf);
    line.len() > 3 && line.starts_with(b"--")
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = memchr::memchr(0, bytes).unwrap_or(bytes.len());
    &bytes[..end]
}

/// v2's `remove_lf_crlf_inplace`: one trailing LF, and a CR before it.
fn strip_line_end(line: &[u8]) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(rest) => rest.strip_suffix(b"\r").unwrap_or(rest),
        None => line,
    }
}
