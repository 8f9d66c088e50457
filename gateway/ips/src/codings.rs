//! Content-Encoding as libhtp-rs decodes it for Suricata: the header's values (repeated
//! headers joined with `, `) name the layers; each layer tries its coding, then the next of
//! gzip → deflate → zlib → gzip on error, and passes its input through when none decodes, so a
//! body labelled gzip that is not compressed is still inspected as sent. The gzip header is
//! read leniently (reserved flags and the header CRC are not checked), as libhtp does. A
//! value that is exactly `br` or `lzma` decodes Brotli or LZMA (the `.lzma` format, a
//! dictionary of at most 1 MiB, libhtp's `lzma-memlimit`), each restarting with deflate →
//! zlib → gzip; in a list of codings `br` is unknown and `lzma` stops the decoding
//! (libhtp's `lzma-enabled: no`, its default).

use std::io::Read;

/// A coding one layer tries first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// gzip (RFC 1952), header read leniently.
    Gzip,
    /// Raw deflate (RFC 1951).
    Deflate,
    /// zlib-wrapped deflate (RFC 1950).
    Zlib,
    /// Brotli (RFC 7932).
    Brotli,
    /// LZMA (the `.lzma` "alone" format).
    Lzma,
}

/// libhtp's `lzma-memlimit`: the dictionary an LZMA body may grow.
const LZMA_MEMLIMIT: usize = 1 << 20;

/// Every `Content-Encoding` value of `headers`, joined as libhtp joins repeated headers.
pub fn joined(headers: &http::HeaderMap) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for v in headers.get_all(http::header::CONTENT_ENCODING) {
        let o = out.get_or_insert_with(Vec::new);
        if !o.is_empty() {
            o.extend_from_slice(b", ");
        }
        o.extend_from_slice(v.as_bytes());
    }
    out
}

fn eq_nozero(value: &[u8], want: &[u8]) -> bool {
    let mut v = value.iter().filter(|&&b| b != 0);
    let mut w = want.iter();
    loop {
        match (v.next(), w.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
}

/// The layers to undo, in decoding order (the last coding named is undone first), at most
/// `limit` of them; unknown codings and `identity` add none.
pub fn layers(ce: &[u8], limit: usize) -> Vec<Coding> {
    if eq_nozero(ce, b"gzip") || eq_nozero(ce, b"x-gzip") {
        return vec![Coding::Gzip];
    }
    if eq_nozero(ce, b"deflate") || eq_nozero(ce, b"x-deflate") {
        return vec![Coding::Deflate];
    }
    if eq_nozero(ce, b"br") {
        return vec![Coding::Brotli];
    }
    if eq_nozero(ce, b"lzma") {
        return vec![Coding::Lzma];
    }
    let mut out = Vec::new();
    let named = ce
        .split(|&b| b == b',' || b == b' ')
        .filter(|t| !t.is_empty());
    for (n, t) in named.enumerate() {
        if n >= limit {
            break;
        }
        if crate::events::contains_nocase(t, b"gzip") {
            out.push(Coding::Gzip);
        } else if crate::events::contains_nocase(t, b"deflate") {
            out.push(Coding::Deflate);
        } else if t == b"lzma" {
            // More LZMA layers than libhtp allows (none by default): decoding stops here.
            break;
        }
    }
    out.reverse();
    out
}

/// `raw` with `layers` undone, at most `max` bytes.
pub fn decode(raw: &[u8], layers: &[Coding], max: usize) -> Vec<u8> {
    let mut data = raw.to_vec();
    for &c in layers {
        data = layer(&data, c, max);
    }
    data.truncate(max);
    data
}

/// One layer: `first`, then the codings libhtp restarts with, else the input as it is. The
/// coding named keeps what it decoded before an error (libhtp stops there); a restart must
/// decode without error (what it made before one is discarded).
fn layer(data: &[u8], first: Coding, max: usize) -> Vec<u8> {
    use Coding::*;
    let order: &[Coding] = match first {
        Gzip => &[Gzip, Deflate, Zlib],
        Deflate => &[Deflate, Zlib, Gzip],
        Zlib => &[Zlib, Gzip, Deflate],
        Brotli => &[Brotli, Deflate, Zlib, Gzip],
        Lzma => &[Lzma, Deflate, Zlib, Gzip],
    };
    for (i, &c) in order.iter().enumerate() {
        let (out, ok) = match c {
            Gzip => match gzip_body(data) {
                Some(b) => inflate(flate2::read::DeflateDecoder::new(b), max),
                None => (Vec::new(), false),
            },
            Deflate => inflate(flate2::read::DeflateDecoder::new(data), max),
            Zlib => inflate(flate2::read::ZlibDecoder::new(data), max),
            Brotli => inflate(brotli::Decompressor::new(data, 4096), max),
            Lzma => lzma(data, max),
        };
        if ok || (i == 0 && !out.is_empty()) {
            return out;
        }
    }
    data.to_vec()
}

/// The deflate stream after a gzip header: magic and method, then the optional fields its
/// flags announce; other flag bits are ignored.
fn gzip_body(d: &[u8]) -> Option<&[u8]> {
    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    if d.len() < 10 || d[..3] != [0x1f, 0x8b, 0x08] {
        return None;
    }
    let flags = d[3];
    let mut rest = &d[10..];
    if flags & FEXTRA != 0 {
        let n = usize::from(u16::from_le_bytes([*rest.first()?, *rest.get(1)?]));
        rest = rest.get(2 + n..)?;
    }
    for f in [FNAME, FCOMMENT] {
        if flags & f != 0 {
            let nul = memchr::memchr(0, rest)?;
            rest = &rest[nul + 1..];
        }
    }
    if flags & FHCRC != 0 {
        rest = rest.get(2..)?;
    }
    Some(rest)
}

/// Up to `max` bytes of an LZMA body (what decoded before an error included), and whether it
/// decoded without error (stopping at `max` is none).
fn lzma(data: &[u8], max: usize) -> (Vec<u8>, bool) {
    let opts = lzma_rs::decompress::Options {
        memlimit: Some(LZMA_MEMLIMIT),
        ..Default::default()
    };
    let mut out = Capped {
        out: Vec::new(),
        max,
    };
    let done = lzma_rs::lzma_decompress_with_options(&mut &data[..], &mut out, &opts);
    let full = out.out.len() >= max;
    (out.out, done.is_ok() || full)
}

/// A writer that keeps the first `max` bytes and refuses the rest (which ends a decoder).
struct Capped {
    out: Vec<u8>,
    max: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.max.saturating_sub(self.out.len());
        if room == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let n = buf.len().min(room);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Up to `max` bytes of a decoded stream (what decoded before an error or a truncation),
/// and whether it decoded without error (a stream cut short is not an error).
fn inflate(r: impl Read, max: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let ok = match r.take(max as u64).read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::UnexpectedEof,
    };
    (out, ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn layers_follow_libhtp() {
        use Coding::*;
        assert_eq!(layers(b"GZ\0IP", 2), [Gzip]);
        assert_eq!(layers(b"x-deflate", 2), [Deflate]);
        assert_eq!(layers(b"gzip, deflate", 2), [Deflate, Gzip]);
        assert_eq!(layers(b"identity,gzip", 2), [Gzip]);
        assert_eq!(layers(b"gzip_x", 2), [Gzip]);
        assert_eq!(layers(b"gzip,deflate,gzip", 2), [Deflate, Gzip]);
        assert_eq!(layers(b"gzip,deflate,gzip", 3), [Gzip, Deflate, Gzip]);
        assert!(layers(b"br2", 2).is_empty());
        assert_eq!(layers(b"br", 2), [Brotli]);
        assert_eq!(layers(b"LZMA", 2), [Lzma]);
        // In a list, `br` is unknown and `lzma` stops the decoding.
        assert_eq!(layers(b"gzip, br", 2), [Gzip]);
        assert_eq!(layers(b"gzip, lzma, deflate", 3), [Gzip]);
    }

    #[test]
    fn decodes_layers_leniently() {
        let body = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR";
        let two = deflate(&gz(body));
        assert_eq!(decode(&two, &layers(b"gzip, deflate", 2), 1 << 20), body);
        // A gzip header with a reserved flag bit is still read.
        let mut odd = gz(body);
        odd[3] |= 0x20;
        assert_eq!(decode(&odd, &[Coding::Gzip], 1 << 20), body);
        // Labelled deflate but gzip, labelled gzip but raw deflate: the restarts find them.
        assert_eq!(decode(&gz(body), &[Coding::Deflate], 1 << 20), body);
        assert_eq!(decode(&deflate(body), &[Coding::Gzip], 1 << 20), body);
        // Not compressed at all: passed through.
        assert_eq!(decode(body, &[Coding::Gzip], 1 << 20), body);
        let json = br#"{"sdk_version":11026,"app_package":"com.x","app_version":"1.7.4"}"#;
        assert_eq!(decode(json, &[Coding::Gzip], 1 << 20), json);
        assert_eq!(decode(&gz(body), &[Coding::Gzip], 5), &body[..5]);
    }

    #[test]
    fn decodes_brotli_and_lzma() {
        let body = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
        let mut br = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
            w.write_all(body).unwrap();
        }
        assert_eq!(decode(&br, &layers(b"br", 2), 1 << 20), body);
        let mut xz = Vec::new();
        lzma_rs::lzma_compress(&mut &body[..], &mut xz).unwrap();
        assert_eq!(decode(&xz, &layers(b"lzma", 2), 1 << 20), body);
        assert_eq!(decode(&xz, &[Coding::Lzma], 10), &body[..10], "capped");
        // Cut short: nothing decodes to the end (the decoder hands out its window only then),
        // so the body is inspected as sent.
        let cut = &xz[..xz.len() - 8];
        assert_eq!(decode(cut, &[Coding::Lzma], 1 << 20), cut);
        // Labelled lzma but gzip: the restarts find it.
        assert_eq!(decode(&gz(body), &[Coding::Lzma], 1 << 20), body);
    }
}
