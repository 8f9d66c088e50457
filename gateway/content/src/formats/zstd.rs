//! Zstandard (RFC 8878): `.zst` files and `Content-Encoding: zstd` (browsers ask for it). A
//! stream may hold several frames one after another, and skippable frames anywhere (ClamAV
//! 1.5's `concat` and `skip_prefix` samples); [`Frames`] reads them all as one stream,
//! decoding each frame with the pure-Rust `ruzstd` decoder.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use super::u32_le;

/// A frame's magic number (little-endian `0xFD2FB528`).
const MAGIC: u32 = 0xfd2f_b528;
/// Frames decoded from one stream (skippable ones included) before it counts as damaged.
const MAX_FRAMES: usize = 100_000;

/// Whether `magic` starts a skippable frame (`0x184D2A50` to `0x184D2A5F`).
fn skippable(magic: u32) -> bool {
    magic & 0xffff_fff0 == 0x184d_2a50
}

/// True when `d` starts with a Zstandard frame, or with skippable frames and then one.
pub fn is_zstd(d: &[u8]) -> bool {
    let mut at = 0;
    for _ in 0..4 {
        match u32_le(d, at) {
            Some(MAGIC) => return true,
            Some(m) if skippable(m) => {
                let Some(len) = u32_le(d, at + 4) else {
                    return false;
                };
                at = at.saturating_add(8).saturating_add(len as usize);
            }
            _ => return false,
        }
    }
    false
}

/// The bytes of the stream not yet read, shared between [`Frames`] and the frame decoder
/// reading from it, so the next frame starts where the last one ended.
struct Source<'a> {
    data: &'a [u8],
    at: Rc<Cell<usize>>,
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.at.get().min(self.data.len());
        let n = buf.len().min(self.data.len() - at);
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.at.set(at + n);
        Ok(n)
    }
}

/// Every frame of a Zstandard stream, decoded in order, as one reader.
pub struct Frames<'a> {
    data: &'a [u8],
    at: Rc<Cell<usize>>,
    frame: Option<StreamingDecoder<Source<'a>, FrameDecoder>>,
    frames: usize,
    max_window: u64,
}

impl<'a> Frames<'a> {
    /// A reader of the stream `data` whose frames may declare windows of at most
    /// `max_window` bytes (the decoder allocates the window a frame declares: a frame asking
    /// for more is damage, as an LZMA dictionary over the member limit is).
    pub fn new(data: &'a [u8], max_window: u64) -> Self {
        Frames {
            data,
            at: Rc::new(Cell::new(0)),
            frame: None,
            frames: 0,
            max_window,
        }
    }

    /// Moves to the next frame that has data; false at the end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            let at = self.at.get();
            if at >= self.data.len() {
                return Ok(false);
            }
            self.frames += 1;
            if self.frames > MAX_FRAMES {
                return Err(damaged(format!("more than {MAX_FRAMES} frames")));
            }
            let magic = u32_le(self.data, at).ok_or_else(|| damaged("trailing bytes"))?;
            if skippable(magic) {
                let len = u32_le(self.data, at + 4).ok_or_else(|| damaged("frame cut short"))?;
                self.at
                    .set(at.saturating_add(8).saturating_add(len as usize));
                continue;
            }
            if magic != MAGIC {
                return Err(damaged(format!("no frame at offset {at}")));
            }
            let source = Source {
                data: self.data,
                at: Rc::clone(&self.at),
            };
            let mut decoder = FrameDecoder::new();
            decoder.set_max_window_size(self.max_window);
            let frame = StreamingDecoder::new_with_decoder(source, decoder)
                .map_err(|e| damaged(e.to_string()))?;
            self.frame = Some(frame);
            return Ok(true);
        }
    }
}

fn damaged(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {}", why.into()))
}

impl Read for Frames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(frame) = self.frame.as_mut() {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.frame = None;
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(d: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(d, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn decode(d: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Frames::new(d, 1 << 20).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn concatenated_and_skippable_frames_read_as_one_stream() {
        let mut d = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, b'x', b'y', b'z'];
        assert!(!is_zstd(&d), "only a skippable frame");
        d.extend(compress(b"first frame, "));
        d.extend([0x5f, 0x2a, 0x4d, 0x18, 0, 0, 0, 0]);
        d.extend(compress(b"second frame"));
        assert!(is_zstd(&d));
        assert_eq!(decode(&d).unwrap(), b"first frame, second frame");
    }

    #[test]
    fn damage_is_an_error_after_what_decoded() {
        let mut d = compress(&[b'a'; 5000]);
        d.extend(b"junk");
        let mut out = Vec::new();
        assert!(Frames::new(&d, 1 << 20).read_to_end(&mut out).is_err());
        assert_eq!(out.len(), 5000);
        let whole = compress(b"hello hello hello");
        for n in 0..whole.len() {
            let _ = decode(&whole[..n]);
        }
        assert!(!is_zstd(b"\x28\xb5\x2f"));
    }

    #[test]
    fn a_window_over_the_limit_is_refused() {
        let d = compress(&[b'z'; 300_000]);
        let mut out = Vec::new();
        let e = Frames::new(&d, 1024).read_to_end(&mut out);
        assert!(e.is_err() && out.is_empty(), "{e:?}");
        assert_eq!(decode(&compress(b"small")).unwrap(), b"small");
    }
}
