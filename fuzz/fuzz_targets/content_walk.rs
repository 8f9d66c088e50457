//! Body decoding and extraction: Content-Encoding (gzip, deflate, br), multipart/form-data,
//! multipart/related (MTOM/XOP), SOAP/IHE `Document` base64, zip, tar and gzip members, nested.
//! The first byte picks what the HTTP layer would say about the body. Never panics, and every
//! piece stays within the walk's limits.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sekisho_content::{walk, Control, Hints, Limits};

const TYPES: &[Option<&str>] = &[
    None,
    Some("multipart/form-data; boundary=b"),
    Some("multipart/related; type=\"application/xop+xml\"; boundary=b; start=\"<root>\""),
    Some("application/soap+xml; charset=utf-8"),
    Some("text/xml"),
    Some("application/zip"),
    Some("application/octet-stream"),
    Some("multipart/mixed; boundary=\"b\""),
];
const ENCODINGS: &[Option<&str>] = &[
    None,
    Some("gzip"),
    Some("deflate"),
    Some("br"),
    Some("gzip, br"),
];
const NAMES: &[Option<&str>] = &[None, Some("a.zip"), Some("a.tar.gz"), Some("a.exe")];

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let first = usize::from(first);
    let hints = Hints {
        content_type: TYPES[first % TYPES.len()],
        content_encoding: ENCODINGS[(first / 8) % ENCODINGS.len()],
        name: NAMES[(first / 40) % NAMES.len()],
    };
    let limits = Limits {
        max_depth: 8,
        max_files: 64,
        max_member_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_soap_document_bytes: 1 << 20,
    };
    let body = Bytes::copy_from_slice(rest);
    let mut pieces = 0usize;
    let mut sink = |p: &sekisho_content::Piece<'_>| {
        pieces += 1;
        assert!(
            p.depth <= limits.max_depth + 1,
            "{} at depth {}",
            p.provenance,
            p.depth
        );
        if p.depth > 0 {
            let cap = limits.max_member_bytes.max(rest.len() as u64) as usize;
            assert!(
                p.data.len() <= cap,
                "{}: {} bytes",
                p.provenance,
                p.data.len()
            );
        }
        assert!(p.provenance.starts_with("fuzz"));
        Control::Continue
    };
    let issues = walk(&body, "fuzz", &hints, &limits, None, &mut sink);
    assert!(pieces >= 1);
    let _ = issues;
});
