//! UCL's NRV2B, NRV2D and NRV2E decompressors as UPX's 32-bit loaders run them (little-endian
//! 32-bit bit buffer with a sentinel bit, offsets complemented, the end mark an offset of
//! all ones). The three differ only in how offsets and lengths are coded. Every copy is checked
//! against what was already written and the output capacity; running out of input before the end
//! mark is a failure, as it is for ClamAV.

use super::u32_le;

/// Which of the three codings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// NRV2B (UPX's `--nrv2b`, the default of old releases).
    B,
    /// NRV2D.
    D,
    /// NRV2E (the default of UPX 2 and later).
    E,
}

struct Bits<'a> {
    src: &'a [u8],
    pos: usize,
    buf: u32,
}

impl Bits<'_> {
    /// The next bit: the buffer doubles, and when only the sentinel is left it reloads 32 bits
    /// (with a new sentinel below them).
    fn bit(&mut self) -> Option<u32> {
        let old = self.buf;
        self.buf = old.wrapping_mul(2);
        if old & 0x7fff_ffff != 0 {
            return Some(old >> 31);
        }
        let v = u32_le(self.src, self.pos)?;
        self.pos += 4;
        self.buf = v.wrapping_mul(2) | 1;
        Some(v >> 31)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.src.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// `v * 2 + bit`, refused past what an i32 offset or length can hold.
    fn grow(&mut self, v: u32) -> Option<u32> {
        let b = self.bit()?;
        (v <= 0x3fff_ffff).then(|| v * 2 + b)
    }
}

/// Decompresses `src` into at most `cap` bytes; `None` when the stream is damaged or cut.
pub fn decompress(method: Method, src: &[u8], cap: usize) -> Option<Vec<u8>> {
    let mut r = Bits {
        src,
        pos: 0,
        buf: 0,
    };
    let mut out: Vec<u8> = Vec::new();
    // The last match's offset as UPX keeps it: negative, -1 at the start.
    let mut last: i32 = -1;
    loop {
        while r.bit()? == 1 {
            if out.len() >= cap {
                return None;
            }
            out.push(r.byte()?);
        }
        let mut off = 1u32;
        loop {
            off = r.grow(off)?;
            if r.bit()? == 1 {
                break;
            }
            if method != Method::B {
                off = r.grow(off - 1)?;
            }
        }
        // The bit a new offset's low bit (D, E) or the next coded bit carries.
        let mut carry = None;
        if off >= 3 {
            let high = off - 3;
            if high & 0xff00_0000 != 0 {
                return None;
            }
            let w = !((high << 8) | u32::from(r.byte()?)) as i32;
            if w == 0 {
                return Some(out);
            }
            if method == Method::B {
                last = w;
            } else {
                carry = Some((w & 1) as u32);
                last = w >> 1;
            }
        }
        let len = match method {
            Method::B => length_b(&mut r, last)?,
            Method::D => length_d(&mut r, last, carry)?,
            Method::E => length_e(&mut r, last, carry)?,
        };
        copy_match(&mut out, last, len, cap)?;
    }
}

/// A gamma-coded number after a start of 1: bits until a stop bit of 1.
fn gamma(r: &mut Bits<'_>, mut v: u32) -> Option<u32> {
    loop {
        v = r.grow(v)?;
        if r.bit()? == 1 {
            return Some(v);
        }
    }
}

fn length_b(r: &mut Bits<'_>, last: i32) -> Option<u32> {
    let mut len = r.bit()?;
    len = r.grow(len)?;
    if len == 0 {
        len = gamma(r, 1)?.checked_add(2)?;
    }
    Some(len + u32::from((last as u32) < 0xffff_f300) + 1)
}

fn length_d(r: &mut Bits<'_>, last: i32, carry: Option<u32>) -> Option<u32> {
    let first = match carry {
        Some(c) => c,
        None => r.bit()?,
    };
    let mut len = r.grow(first)?;
    if len == 0 {
        len = gamma(r, 1)?.checked_add(2)?;
    }
    Some(len + u32::from((last as u32) < 0xffff_fb00) + 1)
}

fn length_e(r: &mut Bits<'_>, last: i32, carry: Option<u32>) -> Option<u32> {
    let first = match carry {
        Some(c) => c,
        None => r.bit()?,
    };
    let len = if first == 1 {
        r.bit()?
    } else if r.bit()? == 1 {
        2 + r.bit()?
    } else {
        gamma(r, 1)?.checked_add(2)?
    };
    len.checked_add(u32::from((last as u32) < 0xffff_fb00) + 2)
}

/// Copies `len` bytes from `-last` bytes back (byte by byte: a match may overlap itself).
fn copy_match(out: &mut Vec<u8>, last: i32, len: u32, cap: usize) -> Option<()> {
    if last >= 0 {
        return None;
    }
    let back = last.unsigned_abs() as usize;
    let len = len as usize;
    if back > out.len() || out.len().checked_add(len)? > cap {
        return None;
    }
    let from = out.len() - back;
    for i in 0..len {
        out.push(out[from + i]);
    }
    Some(())
}

/// An NRV2B writer for tests: UPX-layout samples are built with it (no UPX on the test hosts).
#[cfg(test)]
pub(crate) mod encode {
    /// A bit writer laid out as UPX's loaders read: 32-bit little-endian words, most significant
    /// bit first, each word placed before the bytes read after it was loaded.
    pub struct Writer {
        out: Vec<u8>,
        word_at: Option<usize>,
        word: u32,
        used: u32,
    }

    #[allow(clippy::new_without_default)]
    impl Writer {
        pub fn new() -> Self {
            Writer {
                out: Vec::new(),
                word_at: None,
                word: 0,
                used: 32,
            }
        }
        pub fn bit(&mut self, b: u32) {
            if self.used == 32 {
                self.flush();
                self.word_at = Some(self.out.len());
                self.out.extend_from_slice(&[0; 4]);
                self.word = 0;
                self.used = 0;
            }
            self.word |= b << (31 - self.used);
            self.used += 1;
        }
        fn flush(&mut self) {
            if let Some(at) = self.word_at {
                self.out[at..at + 4].copy_from_slice(&self.word.to_le_bytes());
            }
        }
        pub fn byte(&mut self, b: u8) {
            self.out.push(b);
        }
        /// NRV2B's gamma code of `v` (v >= 2).
        pub fn gamma(&mut self, v: u32) {
            let bits = 32 - v.leading_zeros();
            for i in (0..bits - 1).rev() {
                self.bit((v >> i) & 1);
                self.bit(u32::from(i == 0));
            }
        }
        pub fn finish(mut self) -> Vec<u8> {
            self.flush();
            self.out
        }
    }

    /// `data` as NRV2B literals and the end mark.
    pub fn literals(data: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        for &b in data {
            w.bit(1);
            w.byte(b);
        }
        w.bit(0);
        w.gamma(0x00ff_ffff + 3);
        w.byte(0xff);
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::encode::Writer;
    use super::*;

    /// NRV2B for literals and one match of `len` (>= 3) at distance `dist` (<= 0xd00).
    fn nrv2b(lits: &[u8], dist: u32, len: u32) -> Vec<u8> {
        let mut w = Writer::new();
        for &b in lits {
            w.bit(1);
            w.byte(b);
        }
        // Match: offset code ((dist - 1) >> 8) + 3, then the low byte of dist - 1.
        w.bit(0);
        w.gamma(((dist - 1) >> 8) + 3);
        w.byte((dist - 1) as u8);
        // Length: len - 1 (short distance), coded as 2 bits when 1..=3, else 0 0 + gamma(len - 3).
        let l = len - 1;
        if l <= 3 {
            w.bit(l >> 1);
            w.bit(l & 1);
        } else {
            w.bit(0);
            w.bit(0);
            w.gamma(l - 2);
        }
        // End mark: an offset of all ones (high part 0xffffff, low byte 0xff).
        w.bit(0);
        w.gamma(0x00ff_ffff + 3);
        w.byte(0xff);
        w.finish()
    }

    #[test]
    fn nrv2b_literals_and_an_overlapping_match() {
        let src = nrv2b(b"abc", 3, 9);
        assert_eq!(
            decompress(Method::B, &src, 64).unwrap(),
            b"abcabcabcabc".to_vec()
        );
        let src = nrv2b(b"xyz", 1, 20);
        let out = decompress(Method::B, &src, 64).unwrap();
        assert_eq!(out, [b"xyz".as_slice(), &[b'z'; 20]].concat());
    }

    #[test]
    fn damage_and_limits_fail_without_panic() {
        let src = nrv2b(b"abc", 3, 9);
        // Output over the capacity, input cut before the end mark, a match before any output.
        assert!(decompress(Method::B, &src, 8).is_none());
        assert!(decompress(Method::B, &src[..src.len() - 3], 64).is_none());
        assert!(decompress(Method::B, &nrv2b(b"", 1, 4), 64).is_none());
        for m in [Method::B, Method::D, Method::E] {
            for seed in 0..200u32 {
                let junk: Vec<u8> = (0..64u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40503)) as u8)
                    .collect();
                if let Some(out) = decompress(m, &junk, 4096) {
                    assert!(out.len() <= 4096);
                }
            }
        }
    }
}
