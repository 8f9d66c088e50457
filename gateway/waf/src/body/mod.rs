//! Request body processors and argument parsing, with ModSecurity v2's semantics (see
//! `notes/bodies.md`): `application/x-www-form-urlencoded` bodies and query strings, multipart
//! form data with its strictness flags, JSON flattened into argument names, and XML reduced to
//! what `XML:/*` and `XML://@*` yield. Every parser is total: any input gives a result and, where
//! ModSecurity would set `REQBODY_ERROR`, an error message, after work bounded by the input size
//! and the [`Limits`].

mod args;
pub use urlencoded::query_string;
pub mod json;
pub mod multipart;
pub mod urlencoded;
pub mod xml;

pub use args::{Arg, ArgList, ArgOrigin, ARGUMENTS_LIMIT_MSG};
pub use json::json;
pub use multipart::{multipart, FilePart, Multipart, MultipartFlags, Part};
pub use urlencoded::{urldecode_nonstrict, urlencoded, Urlencoded};
pub use xml::{xml, Xml, XmlOutcome, XML_ERROR_MSG};

/// The limits the body processors obey; the defaults are ModSecurity v2's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `SecArgumentsLimit`: arguments kept in `ARGS` (query string and body together); v2's
    /// default is 1000.
    pub max_args: usize,
    /// `SecRequestBodyJsonDepthLimit`: nesting allowed in a JSON body (default 10000).
    pub json_max_depth: usize,
    /// Bytes of flattened JSON argument names a body may produce in total. ModSecurity has no
    /// such limit; names repeat their parents' keys, so without it a deep document of long keys
    /// would cost its size times its argument count.
    pub json_max_name_bytes: usize,
    /// Element nesting allowed in an XML body: libxml2's limit without `XML_PARSE_HUGE` (256).
    pub xml_max_depth: usize,
    /// Bytes that internal entity references of an XML body may expand to, beyond five times the
    /// body's size (libxml2's amplification check allows about as much).
    pub xml_max_expansion: usize,
    /// `SecUploadFileLimit` (default 100); it applies only when files are extracted.
    pub upload_file_limit: usize,
    /// Whether uploaded files are extracted (v2 does so with `SecUploadKeepFiles` or a rule
    /// using `@inspectFile`); only then does `SecUploadFileLimit` count files.
    pub extract_files: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_args: 1000,
            json_max_depth: 10_000,
            json_max_name_bytes: 16 << 20,
            xml_max_depth: 256,
            xml_max_expansion: 1_000_000,
            upload_file_limit: 100,
            extract_files: false,
        }
    }
}

/// ModSecurity's `log_escape_nq`-like rendering of bytes for error messages: printable ASCII
/// as is, everything else as `\xHH`.
pub(crate) fn escape_for_log(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod fuzz_tests;
