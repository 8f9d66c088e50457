//! The byte-wise bit reader of the NRV-like coders in Petite, FSG, PESpin and MEW, and FSG's
//! decompressor (ClamAV's `cli_unfsg`, an aPLib relative), which PESpin uses for its sections
//! and MEW (as `unmew`) inside one buffer.

/// Bits read one byte at a time, most significant first, a sentinel bit below them.
pub struct Dl {
    byte: u8,
}

impl Dl {
    /// A reader whose first bit loads a byte (`0x80`: FSG's start) or that holds `byte`.
    pub fn new(byte: u8) -> Self {
        Dl { byte }
    }

    /// The next bit; a new byte is read from `buf` at `s` when the sentinel alone is left
    /// (never the buffer's last byte, as in ClamAV).
    pub fn bit(&mut self, buf: &[u8], s: &mut usize) -> Option<u32> {
        self.bit_in(buf, s, (0, buf.len()))
    }

    /// [`Dl::bit`] reading inside `buf[lo..hi]` only (never its last byte).
    fn bit_in(&mut self, buf: &[u8], s: &mut usize, (lo, hi): (usize, usize)) -> Option<u32> {
        let old = self.byte;
        self.byte = old.wrapping_mul(2);
        if old & 0x7f != 0 {
            return Some(u32::from(old >> 7));
        }
        if *s < lo || *s + 1 >= hi {
            return None;
        }
        let b = *buf.get(*s)?;
        *s += 1;
        self.byte = b.wrapping_mul(2) | 1;
        Some(u32::from(b >> 7))
    }

    /// A gamma-coded number after a start of `v`: a value bit, then a bit saying more follow.
    fn gamma(&mut self, buf: &[u8], s: &mut usize, r: (usize, usize), mut v: u32) -> Option<u32> {
        loop {
            v = v.wrapping_mul(2).wrapping_add(self.bit_in(buf, s, r)?);
            if self.bit_in(buf, s, r)? == 0 {
                return Some(v);
            }
        }
    }
}

/// Decompresses `src` into `size` bytes (zeros where the stream stopped short of it); `None`
/// on damage or when the end mark is not reached.
pub fn unfsg(src: &[u8], size: usize) -> Option<Vec<u8>> {
    if src.is_empty() || size == 0 {
        return None;
    }
    let mut buf = src.to_vec();
    buf.resize(src.len() + size, 0);
    within(&mut buf, (0, src.len()), (src.len(), size))?;
    Some(buf.split_off(src.len()))
}

/// FSG's decoder inside one buffer, as MEW runs it: reads `src` (start, length), writes from
/// `dst` (start, room); where each ended (the source just past the end mark).
pub fn within(buf: &mut [u8], src: (usize, usize), dst: (usize, usize)) -> Option<(usize, usize)> {
    let r = (src.0, src.0.checked_add(src.1)?);
    let w = (dst.0, dst.0.checked_add(dst.1)?.min(buf.len()));
    let byte = |buf: &[u8], s: usize| (s >= r.0 && s < r.1).then(|| buf.get(s).copied()).flatten();
    let (mut s, mut o) = (r.0, w.0);
    if o >= w.1 {
        return None;
    }
    buf[o] = byte(buf, s)?;
    (s, o) = (s + 1, o + 1);
    let mut dl = Dl::new(0x80);
    let (mut oldback, mut lostbit) = (0u32, 1u32);
    loop {
        if dl.bit_in(buf, &mut s, r)? == 0 {
            if o >= w.1 {
                return None;
            }
            buf[o] = byte(buf, s)?;
            (o, s, lostbit) = (o + 1, s + 1, 1);
            continue;
        }
        let (back, len);
        if dl.bit_in(buf, &mut s, r)? == 1 {
            if dl.bit_in(buf, &mut s, r)? == 1 {
                // A byte from up to 15 back (0: a zero byte).
                let mut b = 0x10u32;
                while b < 0x100 {
                    b = b * 2 + dl.bit_in(buf, &mut s, r)?;
                }
                lostbit = 1;
                if b & 0xff == 0 {
                    if o >= w.1 {
                        return None;
                    }
                    buf[o] = 0;
                    o += 1;
                    continue;
                }
                (back, len) = (b & 0xff, 1);
            } else {
                // A short match: 7 bits of distance, 1 of length; distance 0 ends the stream.
                let b = u32::from(byte(buf, s)?);
                s += 1;
                if b >> 1 == 0 {
                    return Some((s, o));
                }
                (back, len) = (b >> 1, (b & 1) + 2);
                oldback = back;
                lostbit = 0;
            }
        } else {
            let high = dl.gamma(buf, &mut s, r, 1)?.wrapping_sub(1 + lostbit);
            if high == 0 {
                (back, len) = (oldback, dl.gamma(buf, &mut s, r, 1)?);
            } else {
                let b = u32::from(byte(buf, s)?).wrapping_add(high.wrapping_sub(1) << 8);
                s += 1;
                let mut n = dl.gamma(buf, &mut s, r, 1)?;
                let extra =
                    u32::from(b >= 0x7d00) + u32::from(b >= 0x500) + 2 * u32::from(b <= 0x7f);
                n = n.wrapping_add(extra);
                (back, len) = (b, n);
                oldback = b;
            }
            lostbit = 0;
        }
        let (back, len) = (back as usize, len as usize);
        let from = o.checked_sub(back).filter(|f| *f >= w.0)?;
        if len == 0 || o.checked_add(len)? > w.1 {
            return None;
        }
        for i in 0..len {
            buf[o + i] = buf[from + i];
        }
        o += len;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// FSG's coding of `data` as literals (0 bits, bits read lazily) and the end mark (1, 1,
    /// 0, then a byte whose upper seven bits are 0).
    pub fn literals(data: &[u8]) -> Vec<u8> {
        let mut out = vec![data[0]];
        let mut bits: Vec<u32> = vec![0; data.len() - 1];
        bits.extend([1, 1, 0]);
        let mut lits = data[1..].iter();
        let mut slot = 0;
        for (k, &b) in bits.iter().enumerate() {
            if k % 8 == 0 {
                slot = out.len();
                out.push(0);
            }
            out[slot] |= (b as u8) << (7 - k % 8);
            if k < data.len() - 1 {
                out.push(*lits.next().unwrap());
            }
        }
        out.push(0);
        // One more byte: the reader never takes a buffer's last byte.
        out.push(0);
        out
    }

    /// A fuzzer find: a length whose extra counts overflowed a u32 (a panic before the fix).
    #[test]
    fn huge_lengths_wrap_and_fail_instead_of_panicking() {
        let input = [
            0x0a, 0x23, 0x26, 0xff, 0xff, 0x0f, 0xff, 0xf1, 0xfb, 0xff, 0xff, 0xff, 0xff, 0x3d,
            0x64, 0x64, 0x64, 0x64, 0x01, 0x06, 0xff, 0x26, 0x20, 0x20, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0x5d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13, 0xff,
            0xff,
        ];
        assert!(unfsg(&input, 1 << 16).is_none_or(|o| o.len() == 1 << 16));
    }

    #[test]
    fn literals_and_the_end_mark() {
        let data: Vec<u8> = (0..100u8).collect();
        assert_eq!(unfsg(&literals(&data), 100).unwrap(), data);
        // Room for more: the rest stays zero.
        let out = unfsg(&literals(&data), 120).unwrap();
        assert_eq!((&out[..100], &out[100..]), (&data[..], &[0u8; 20][..]));
        // Too little room, no end mark, nothing at all.
        assert!(unfsg(&literals(&data), 50).is_none());
        assert!(unfsg(&literals(&data)[..60], 100).is_none());
        assert!(unfsg(&[], 10).is_none());
    }
}
