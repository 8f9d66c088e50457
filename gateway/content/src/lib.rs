//! `sekisho-content`: turns an HTTP body into the pieces every engine inspects, each with its
//! provenance (`response.body > gzip > zip:docs/a.pdf`), under ClamAV-like limits.
//!
//! Decoders: Content-Encoding gzip / deflate / br; multipart/form-data; multipart/related
//! (MTOM/XOP) with `cid:` resolution; IHE XDS.b SOAP `Document` elements (namespace
//! `urn:ihe:iti:xds-b:2007`), inline base64 or `xop:Include`; by magic, never by name: gzip,
//! bzip2, xz, LZMA-alone, zip (stored, deflate, zip64), tar, 7z (encrypted archives are issues),
//! cabinet (MSZIP, LZX), cpio (newc, crc, odc, binary in both byte orders), mail and mbox (MIME,
//! base64, quoted-printable, RFC 2231, nested messages, uuencoded files in text parts; an MTOM
//! package saved as a message file goes through the multipart/related decoder); nesting up to
//! a depth limit. Decoding uses maintained crates (flate2, brotli, bzip2, lzma-rust2, zip, tar,
//! sevenz-rust2, cab, mail-parser, base64, quick-xml, multer); cpio and uuencode are read by
//! hand ([`formats`]); no DTD is ever processed.
//!
//! [`walk`] hands every piece to a sink as soon as it is decoded, so memory stays bounded by the
//! nesting chain, not the whole tree. A limit exceeded, an encrypted member or a corrupt container
//! becomes an [`Issue`]; the partial data decoded before it is still handed to the sink.

pub mod formats;
mod walk;

pub use walk::{walk, Control, Hints, Issue, IssueKind, Limits, Piece};

/// The MIME type of `data` by its magic bytes (`application/octet-stream` when unknown; text
/// when it looks like text).
pub fn sniff_mime(data: &[u8]) -> &'static str {
    if let Some(t) = infer::get(data) {
        return t.mime_type();
    }
    let head = &data[..data.len().min(512)];
    let trimmed = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &head[i..])
        .unwrap_or(head);
    if trimmed.starts_with(b"<?xml") || trimmed.starts_with(b"<soap") || trimmed.starts_with(b"<S:")
    {
        return "application/xml";
    }
    if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
        return "application/json";
    }
    if !head.is_empty() && std::str::from_utf8(head).is_ok() {
        return "text/plain";
    }
    "application/octet-stream"
}
