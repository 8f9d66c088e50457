//! Compressed streams: HTTP Content-Encodings (gzip, deflate, br, zstd) and the single-stream
//! compressors recognised by magic (gzip, bzip2, xz, LZMA alone, zstd).

use bytes::Bytes;
use lzma_rust2::{LzmaReader, XzReader};

use super::{Decoded, Hints, IssueKind, Walker};
use crate::formats::Format;

impl Walker<'_> {
    pub(super) fn decode_encoding(
        &mut self,
        data: &Bytes,
        prov: &str,
        enc: &str,
        depth: u32,
        next: &Hints<'_>,
    ) {
        let cap = self.limits.max_member_bytes;
        let d = match enc {
            "gzip" | "x-gzip" => {
                self.read_limited(flate2::read::MultiGzDecoder::new(&data[..]), cap)
            }
            "deflate" => {
                // RFC 9110 deflate is zlib; some servers send raw deflate.
                let z = self.read_limited(flate2::read::ZlibDecoder::new(&data[..]), cap);
                if z.error.is_some() && z.data.is_empty() {
                    self.total -= z.data.len() as u64;
                    self.read_limited(flate2::read::DeflateDecoder::new(&data[..]), cap)
                } else {
                    z
                }
            }
            "br" => self.read_limited(brotli::Decompressor::new(&data[..], 4096), cap),
            "zstd" => self.read_limited(crate::formats::zstd::Frames::new(data, cap), cap),
            other => {
                self.issue(
                    IssueKind::Corrupt,
                    prov,
                    format!("unsupported Content-Encoding {other:?}"),
                );
                return;
            }
        };
        let p = format!("{prov} > {enc}");
        let cut = self.note(&d, &p, cap, enc);
        self.visit(&Bytes::from(d.data), &p, next.name, depth + 1, cut, next);
    }

    pub(super) fn gzip(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let mut dec = flate2::read::GzDecoder::new(&data[..]);
        let name = dec
            .header()
            .and_then(|h| h.filename())
            .map(|f| String::from_utf8_lossy(f).into_owned());
        let d = self.read_limited(&mut dec, self.limits.max_member_bytes);
        let p = format!("{prov} > gzip");
        let cut = self.note(&d, &p, self.limits.max_member_bytes, "gzip stream");
        let next = Hints {
            name: name.as_deref(),
            ..Hints::default()
        };
        self.visit(
            &Bytes::from(d.data),
            &p,
            name.as_deref(),
            depth + 1,
            cut,
            &next,
        );
    }

    /// bzip2, xz, LZMA-alone and zstd streams: one member, no name. LZMA dictionaries are held to
    /// the member limit (a larger one could not be filled within it anyway).
    pub(super) fn stream(&mut self, f: Format, data: &Bytes, prov: &str, depth: u32) {
        let cap = self.limits.max_member_bytes;
        let mem_kb = u32::try_from(cap / 1024).unwrap_or(u32::MAX).max(1024);
        let d = match f {
            Format::Bzip2 => self.read_limited(bzip2::read::MultiBzDecoder::new(&data[..]), cap),
            Format::Xz => self.read_limited(XzReader::new_mem_limit(&data[..], true, mem_kb), cap),
            Format::Zstd => self.read_limited(crate::formats::zstd::Frames::new(data, cap), cap),
            _ => match LzmaReader::new_mem_limit(&data[..], mem_kb, None) {
                Ok(r) => self.read_limited(r, cap),
                Err(e) => Decoded {
                    data: Vec::new(),
                    over_limit: false,
                    error: Some(e.to_string()),
                },
            },
        };
        let p = format!("{prov} > {}", f.label());
        let cut = self.note(&d, &p, cap, &format!("{} stream", f.label()));
        self.visit(
            &Bytes::from(d.data),
            &p,
            None,
            depth + 1,
            cut,
            &Hints::default(),
        );
    }
}

impl Walker<'_> {
    /// SZDD: one member, expanded up to the member limit.
    pub(super) fn szdd(&mut self, data: &Bytes, prov: &str, depth: u32) {
        let cap = usize::try_from(self.limits.max_member_bytes).unwrap_or(usize::MAX);
        let p = format!("{prov} > szdd");
        match crate::formats::szdd::expand(data, cap) {
            Some((out, short)) => {
                if short {
                    self.issue(IssueKind::Corrupt, &p, "szdd: stream ends before its size");
                }
                self.extracted(out, &p, None, depth + 1, short);
            }
            None => self.issue(IssueKind::Corrupt, prov, "szdd: unknown compression mode"),
        }
    }
}
