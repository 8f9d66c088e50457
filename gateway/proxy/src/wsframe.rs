//! Reading WebSocket frames (RFC 6455 §5.2) from one direction of an upgraded connection, as
//! Suricata's websocket parser reads them, so the stages judge each frame before it is relayed.
//!
//! - A frame's payload is unmasked and inspected up to `max` bytes (Suricata's
//!   `websocket.max-payload-size`, 65,535 by default); the rest of it is relayed uninspected
//!   and the frame notes [`WsFrame::PAYLOAD_SKIPPED`].
//! - Data frames of a fragmented message are gathered (up to `max` bytes; past that
//!   [`WsFrame::REASSEMBLY_LIMIT`]): each fragment is judged on its own payload and the final
//!   one on the whole message. Control frames may come between fragments.
//! - A final frame of a message whose first frame set RSV1 (permessage-deflate, RFC 7692) is
//!   inflated with the direction's inflater (context kept across messages), output bounded
//!   by `max`; when nothing inflates the payload is given as it came.
//!
//! The reader is sans-I/O: [`WsReader::next`] says what the bytes at the front of the
//! caller's buffer are, and the caller relays them once judged.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress};
use sekisho_core::{Direction, WsFrame};

/// Suricata's default `app-layer.protocols.websocket.max-payload-size`.
pub const DEFAULT_MAX_PAYLOAD: usize = 0xFFFF;

/// The longest frame header: 2 bytes, a 64-bit length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// Inflated bytes produced per step (what is past `max` is dropped, the rest still inflated
/// so that later messages read with the right window).
const INFLATE_STEP: usize = 8192;

/// What the front of the buffer holds.
#[derive(Debug)]
pub enum Next {
    /// A frame to judge; its first `n` bytes (header and inspected payload) go on once it
    /// passes.
    Frame(WsFrame, usize),
    /// `n` bytes of a payload past the inspected size: relayed as they are.
    Pass(usize),
    /// More bytes are needed (at most [`WsReader::wanted`] in the buffer).
    More,
}

/// One direction's frame reader.
pub struct WsReader {
    dir: Direction,
    max: usize,
    /// Payload bytes of the current frame still to pass uninspected.
    skip: u64,
    /// The data message being gathered, and whether its first frame was compressed.
    message: Vec<u8>,
    message_compressed: bool,
    inflater: Option<Decompress>,
}

/// A frame header.
struct Header {
    flags: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    size: usize,
}

impl WsReader {
    /// A reader of frames sent in `dir`, inspecting up to `max` payload bytes each.
    pub fn new(dir: Direction, max: usize) -> Self {
        WsReader {
            dir,
            max: max.max(1),
            skip: 0,
            message: Vec::new(),
            message_compressed: false,
            inflater: None,
        }
    }

    /// The most bytes the caller needs to hold for [`WsReader::next`] to make progress: one
    /// header and the inspected part of a payload.
    pub fn wanted(&self) -> usize {
        MAX_HEADER + self.max
    }

    /// Whether the bytes relayed so far end on a frame boundary (no payload left to pass).
    pub fn at_boundary(&self) -> bool {
        self.skip == 0
    }

    /// What the front of `buf` is (the caller drops the bytes a `Frame` or `Pass` names
    /// before asking again).
    pub fn next(&mut self, buf: &[u8]) -> Next {
        if self.skip > 0 {
            if buf.is_empty() {
                return Next::More;
            }
            let n = usize::try_from(self.skip).map_or(buf.len(), |s| s.min(buf.len()));
            self.skip -= n as u64;
            return Next::Pass(n);
        }
        let Some(h) = header(buf) else {
            return Next::More;
        };
        let take = usize::try_from(h.len).map_or(self.max, |l| l.min(self.max));
        let Some(raw) = buf.get(h.size..h.size + take) else {
            return Next::More;
        };
        let mut payload = raw.to_vec();
        if let Some(m) = h.mask {
            payload
                .iter_mut()
                .zip(m.iter().cycle())
                .for_each(|(b, k)| *b ^= k);
        }
        let mut notes = 0;
        self.skip = h.len - take as u64;
        if self.skip > 0 {
            notes |= WsFrame::PAYLOAD_SKIPPED;
        }
        let payload = self.message_view(&h, payload, &mut notes);
        let raw = Bytes::copy_from_slice(&buf[..h.size + take]);
        let frame = WsFrame {
            direction: self.dir,
            flags: h.flags,
            opcode: h.opcode,
            mask: h.mask.map(u32::from_be_bytes),
            payload: Bytes::from(payload),
            notes,
            raw,
            header_len: h.size,
        };
        Next::Frame(frame, h.size + take)
    }

    /// The payload a frame is judged on: its own, or for the final frame of a fragmented
    /// data message the message; inflated when the message is compressed.
    fn message_view(&mut self, h: &Header, payload: Vec<u8>, notes: &mut u8) -> Vec<u8> {
        let fin = h.flags & WsFrame::FIN != 0;
        let mut compressed = h.flags & WsFrame::COMPRESSED != 0;
        if compressed && self.inflater.is_none() {
            self.inflater = Some(Decompress::new(false));
        }
        let data = h.opcode < 8;
        if data && (!self.message.is_empty() || !fin) {
            if self.message.is_empty() {
                self.message_compressed = compressed;
            }
            // As Suricata: a fragment that fits is added whole, one that does not is cut (and
            // noted); once full, nothing more is added.
            if self.message.len() + payload.len() < self.max {
                self.message.extend_from_slice(&payload);
            } else if self.message.len() < self.max {
                let room = self.max - self.message.len();
                self.message.extend_from_slice(&payload[..room]);
                *notes |= WsFrame::REASSEMBLY_LIMIT;
            }
        }
        let mut out = payload;
        if data && fin && !self.message.is_empty() {
            compressed = self.message_compressed;
            out = std::mem::take(&mut self.message);
        }
        if compressed && fin {
            self.message_compressed = false;
            out.extend_from_slice(&[0, 0, 0xff, 0xff]);
            if let Some(inflated) = self
                .inflater
                .as_mut()
                .and_then(|d| inflate(d, &out, self.max))
            {
                out = inflated;
            }
        }
        out
    }
}

/// The frame header at the front of `buf`, once complete.
fn header(buf: &[u8]) -> Option<Header> {
    let (&b0, rest) = buf.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    let (len, rest, ext) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            &rest[2..],
            2,
        ),
        127 => (
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?),
            &rest[8..],
            8,
        ),
        n => (u64::from(n), rest, 0),
    };
    let mask = if b1 & 0x80 != 0 {
        Some(<[u8; 4]>::try_from(rest.get(..4)?).ok()?)
    } else {
        None
    };
    Some(Header {
        flags: b0 & 0xf0,
        opcode: b0 & 0x0f,
        len,
        size: 2 + ext + if mask.is_some() { 4 } else { 0 },
        mask,
    })
}

/// Inflates a message (its input wholly, so the window stays right for the next one);
/// keeps at most `max` bytes of output. `None` when nothing came out.
fn inflate(d: &mut Decompress, input: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut step = vec![0u8; INFLATE_STEP];
    let mut at = 0usize;
    while at < input.len() {
        let (in0, out0) = (d.total_in(), d.total_out());
        let r = d.decompress(&input[at..], &mut step, FlushDecompress::Sync);
        let used = (d.total_in() - in0) as usize;
        let made = (d.total_out() - out0) as usize;
        let room = max.saturating_sub(out.len());
        out.extend_from_slice(&step[..made.min(room)]);
        at += used;
        if r.is_err() || (used == 0 && made == 0) {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    fn frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![b0];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => v.push(m | n as u8),
            n if n <= 0xffff => {
                v.push(m | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(m | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                v.extend_from_slice(&k);
                v.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
            }
            None => v.extend_from_slice(payload),
        }
        v
    }

    /// Every frame of `wire` fed in pieces of `step` bytes: (frame, bytes it named) and the
    /// bytes passed uninspected.
    fn read_all(r: &mut WsReader, wire: &[u8], step: usize) -> (Vec<(WsFrame, usize)>, usize) {
        let (mut frames, mut passed) = (Vec::new(), 0);
        let (mut buf, mut fed) = (Vec::new(), 0);
        loop {
            match r.next(&buf) {
                Next::Frame(f, n) => {
                    buf.drain(..n);
                    frames.push((f, n));
                }
                Next::Pass(n) => {
                    buf.drain(..n);
                    passed += n;
                }
                Next::More if fed < wire.len() => {
                    let end = (fed + step).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
                Next::More => return (frames, passed),
            }
        }
    }

    #[test]
    fn masked_and_unmasked_frames_read_alike_in_any_pieces() {
        let key = [0xe2, 0xb6, 0x2d, 0xed];
        let mut wire = frame(0x81, Some(key), b"version,hybi-draft-13");
        wire.extend(frame(0x89, None, b"ping"));
        wire.extend(frame(0x82, Some(key), &[7u8; 300]));
        for step in [1, 2, 3, 7, 64, 4096] {
            let mut r = WsReader::new(Direction::Request, DEFAULT_MAX_PAYLOAD);
            let (frames, passed) = read_all(&mut r, &wire, step);
            assert_eq!(passed, 0);
            assert_eq!(frames.len(), 3, "step {step}");
            let (f, n) = &frames[0];
            assert_eq!((f.opcode, f.flags, *n), (1, 0x80, 6 + 21));
            assert_eq!(f.mask, Some(0xe2b6_2ded));
            assert_eq!(&f.payload[..], b"version,hybi-draft-13");
            assert_eq!(&f.raw[..], &wire[..*n]);
            assert_eq!(&f.raw_header()[..], &wire[..6]);
            assert_eq!((frames[1].0.opcode, frames[1].0.mask), (9, None));
            assert_eq!(&frames[2].0.payload[..], &[7u8; 300][..]);
            assert_eq!(frames[2].1, 2 + 2 + 4 + 300);
        }
    }

    #[test]
    fn payload_past_the_limit_passes_uninspected_and_is_noted() {
        let wire = frame(0x82, Some([1, 2, 3, 4]), &[b'a'; 1000]);
        let mut r = WsReader::new(Direction::Request, 100);
        let (frames, passed) = read_all(&mut r, &wire, 33);
        assert_eq!(frames.len(), 1);
        let (f, n) = &frames[0];
        assert_eq!(f.payload.len(), 100);
        assert!(f.payload.iter().all(|&b| b == b'a'));
        assert!(f.has(WsFrame::PAYLOAD_SKIPPED));
        assert_eq!(n + passed, wire.len());
    }

    #[test]
    fn fragments_are_judged_alone_and_the_final_one_on_the_message() {
        let mut wire = frame(0x01, None, b"MALWARE_DOWN");
        wire.extend(frame(0x89, None, b"p")); // a control frame between fragments
        wire.extend(frame(0x00, None, b"LOAD cmd.exe"));
        wire.extend(frame(0x80, None, b" /c powershell"));
        let mut r = WsReader::new(Direction::Response, DEFAULT_MAX_PAYLOAD);
        let (frames, _) = read_all(&mut r, &wire, 5);
        let payloads: Vec<&[u8]> = frames.iter().map(|(f, _)| &f.payload[..]).collect();
        assert_eq!(
            payloads,
            [
                &b"MALWARE_DOWN"[..],
                b"p",
                b"LOAD cmd.exe",
                b"MALWARE_DOWNLOAD cmd.exe /c powershell"
            ]
        );
        let mut r = WsReader::new(Direction::Response, 20);
        let (frames, _) = read_all(&mut r, &wire, 5);
        assert!(frames[2].0.has(WsFrame::REASSEMBLY_LIMIT));
        assert_eq!(&frames[3].0.payload[..], b"MALWARE_DOWNLOAD cmd");
    }

    fn deflate(c: &mut Compress, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0xff, 0xff]);
        out.truncate(out.len() - 4);
        out
    }

    #[test]
    fn compressed_messages_inflate_with_the_window_kept() {
        let mut c = Compress::new(Compression::default(), false);
        let first = deflate(&mut c, b"TOGGLE=5659131662f54334 and more TOGGLE");
        let second = deflate(&mut c, b"TOGGLE=5659131662f54334 again");
        let mut wire = frame(0xc1, Some([9, 8, 7, 6]), &first);
        // The second message, fragmented: RSV1 on its first frame only.
        let (a, b) = second.split_at(second.len() / 2);
        wire.extend(frame(0x41, Some([1, 1, 1, 1]), a));
        wire.extend(frame(0x80, Some([2, 2, 2, 2]), b));
        let mut r = WsReader::new(Direction::Request, DEFAULT_MAX_PAYLOAD);
        let (frames, _) = read_all(&mut r, &wire, 3);
        assert_eq!(
            &frames[0].0.payload[..],
            b"TOGGLE=5659131662f54334 and more TOGGLE"
        );
        assert_eq!(&frames[2].0.payload[..], b"TOGGLE=5659131662f54334 again");
    }

    #[test]
    fn inflated_output_is_bounded() {
        let mut c = Compress::new(Compression::default(), false);
        let bomb = deflate(&mut c, &vec![b'A'; 1 << 19]);
        assert!(bomb.len() < 1000, "the compressed frame is inspected whole");
        let after = deflate(&mut c, b"still read right");
        let mut wire = frame(0xc2, None, &bomb);
        wire.extend(frame(0xc1, None, &after));
        let mut r = WsReader::new(Direction::Response, 1000);
        let (frames, _) = read_all(&mut r, &wire, 4096);
        assert_eq!(frames[0].0.payload.len(), 1000);
        assert_eq!(&frames[1].0.payload[..], b"still read right");
    }

    #[test]
    fn what_does_not_inflate_is_given_as_it_came() {
        let wire = frame(0xc1, None, b"\xff\xfenot deflate");
        let mut r = WsReader::new(Direction::Response, DEFAULT_MAX_PAYLOAD);
        let (frames, _) = read_all(&mut r, &wire, 4096);
        assert_eq!(&frames[0].0.payload[..], b"\xff\xfenot deflate\0\0\xff\xff");
    }

    #[test]
    fn huge_declared_lengths_do_not_grow_the_buffer() {
        let mut wire = vec![0x82, 127];
        wire.extend_from_slice(&u64::MAX.to_be_bytes());
        wire.extend_from_slice(&[0u8; 64]);
        let mut r = WsReader::new(Direction::Response, 16);
        assert!(matches!(r.next(&wire[..10]), Next::More));
        let Next::Frame(f, n) = r.next(&wire) else {
            panic!("a frame")
        };
        assert_eq!((f.payload.len(), n), (16, 26));
        assert!(matches!(r.next(&wire[n..]), Next::Pass(48)));
        assert!(r.wanted() <= MAX_HEADER + 16);
    }
}
