//! ASPack 2.x-packed Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s ASPack
//! path and `aspack.c`): recognised by the loader at the entry point (`pusha; call $+8; jmp …`,
//! its `push 0; ret` where 2.12, 2.12-2.42 or 2.42 put it); the image mapped by address; each
//! block of the loader's table decoded in place by ASPack's coder (canonical prefix codes for
//! literals and matches, for distance extras and for the code lengths, sent before each block
//! and again where the stream asks; distances from a table the loader holds, three recent ones
//! kept); calls and jumps in the first block turned back from absolute; the program rebuilt
//! ([`super::rebuild`]) from its sections as mapped, the loader's two dropped where they follow
//! the program's, with the original entry point the loader keeps.

use super::pe::{self, Unpacked};
use super::rebuild;
use super::u32_le;

/// The loader's offsets for one ASPack version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Version {
    /// Where the block table starts (from the entry point - 1).
    blocks: usize,
    /// The bit widths behind the distance bases.
    widths: usize,
    /// The length/distance extras table.
    extras: usize,
    /// The byte that marks the calls and jumps to restore.
    mark: usize,
    /// The original entry point.
    oep: usize,
    /// Whether table entries are 8 bytes (2.12) or 12.
    short_entries: bool,
}

const V212: Version = Version {
    blocks: 0x57c,
    widths: 0x70e,
    extras: 0x6d6,
    mark: 0x148,
    oep: 0x39b,
    short_entries: true,
};
const VOTHER: Version = Version {
    blocks: 0x5d8,
    widths: 0x76a,
    extras: 0x732,
    mark: 0x13a,
    oep: 0x401,
    short_entries: false,
};
const V242: Version = Version {
    blocks: 0x5e4,
    widths: 0x776,
    extras: 0x73e,
    mark: 0x148,
    oep: 0x40d,
    short_entries: false,
};

/// Unpacks the ASPack-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let Some(ep_raw) = h.raw_offset(h.entry) else {
        return Unpacked::NotPacked;
    };
    let ep = h.entry_code(d);
    let push_ret = |at: usize| ep.get(at..at + 6) == Some(b"\x68\x00\x00\x00\x00\xc3");
    let in_file = [58 + 0x70e, 58 + 0x76a, 58 + 0x776]
        .iter()
        .any(|o| ep_raw + o < d.len());
    if !in_file || !ep.starts_with(b"\x60\xe8\x03\x00\x00\x00\xe9\xeb") || ep.len() < 0x3bf {
        return Unpacked::NotPacked;
    }
    let version = if push_ret(0x3b9) {
        V212
    } else if push_ret(0x41f) {
        VOTHER
    } else if push_ret(0x42b) {
        V242
    } else {
        return Unpacked::NotPacked;
    };
    let size = h
        .sections
        .iter()
        .map(|s| u64::from(s.rva) + u64::from(s.vsz))
        .max()
        .unwrap_or(0);
    if size == 0 {
        return Unpacked::NotPacked;
    }
    if size > cap as u64 {
        return Unpacked::OverLimit(size);
    }
    let Some(mut image) = pe::map(d, &h.sections, 0, size as usize) else {
        return Unpacked::NotPacked;
    };
    let at = h.entry.wrapping_sub(1) as usize;
    if !blocks(&mut image, at, version) {
        return Unpacked::Failed;
    }
    let mut count = h.sections.len();
    if count > 2 && at == h.sections[count - 2].rva as usize && h.sections[count - 1].rsz == 0 {
        count -= 2;
    }
    let secs: Option<Vec<rebuild::Unpacked<'_>>> = h.sections[..count]
        .iter()
        .map(|s| {
            let (from, len) = (s.rva as usize, s.vsz as usize);
            Some(rebuild::Unpacked {
                rva: s.rva,
                vsz: s.vsz,
                data: image.get(from..from.checked_add(len)?)?,
            })
        })
        .collect();
    let entry = u32_le(&image, at + version.oep).unwrap_or(0);
    let base = h.image_base as u32;
    match secs.and_then(|s| rebuild::rebuild(&s, base, entry, (0, 0))) {
        Some(img) => Unpacked::Image(img, "ASPack"),
        None => Unpacked::Image(image, "ASPack"),
    }
}

/// Decodes every block the loader's table lists; false when one fails or the table does not
/// end with a zero address.
fn blocks(image: &mut [u8], ep: usize, v: Version) -> bool {
    let Some(widths) = image.get(ep + v.widths..) else {
        return false;
    };
    let mut bases = [0u32; 58];
    let mut j = 0u32;
    for (i, b) in bases.iter_mut().enumerate() {
        *b = j;
        if let Some(&w) = widths.get(i) {
            j = j.wrapping_add(1u32.checked_shl(u32::from(w)).unwrap_or(0));
        }
    }
    let Some(extras) = image
        .get(ep + v.extras..ep + v.extras + 0x72)
        .map(<[u8]>::to_vec)
    else {
        return false;
    };
    let mark = image.get(ep + v.mark).copied();
    let mut table = ep + v.blocks;
    let mut first = 0usize;
    let mut hash = 0x10000u32;
    loop {
        let (Some(rva), Some(size)) = (u32_le(image, table), u32_le(image, table + 4)) else {
            return false;
        };
        if rva == 0 {
            return true;
        }
        let (rva, size) = (rva as usize, size as usize);
        if size == 0 || rva.checked_add(size).is_none_or(|e| e > image.len()) {
            return false;
        }
        let mut input = image[rva..rva + size].to_vec();
        input.resize(size + 0x10e, 0);
        let mut s = Stream::new(&input, hash);
        let ok = s.block(&extras, &bases, &mut image[rva..rva + size]);
        hash = s.hash;
        if ok.is_none() {
            return false;
        }
        if first == 0 && size > 7 {
            first = restore_calls(&mut image[rva..rva + size], mark);
        }
        if v.short_entries {
            table += 8;
        } else {
            table += 12;
            while u32_le(image, table + 4).is_some_and(|s| s.wrapping_add(0x10e) == 0) {
                table += 12;
            }
        }
    }
}

/// The first block's `call`/`jmp` operands marked by the loader's byte, turned back from the
/// absolute form ASPack stores them in; returns where the scan stopped (never 0).
fn restore_calls(block: &mut [u8], mark: Option<u8>) -> usize {
    let mut i = 0;
    while i < block.len() - 6 {
        if matches!(block[i], 0xe8 | 0xe9) && Some(block[i + 1]) == mark {
            let target = u32_le(block, i + 1).unwrap_or(0) & 0xffff_ff00;
            let value = target.rotate_left(24).wrapping_sub(i as u32);
            block[i + 1..i + 5].copy_from_slice(&value.to_le_bytes());
            i += 4;
        }
        i += 1;
    }
    i
}

/// One canonical prefix code as ASPack's decoder tables hold it.
#[derive(Clone)]
struct Code {
    /// Symbols by code order.
    starts: Vec<u32>,
    /// Code length by the code's first 8 bits (for codes of 8 bits and less).
    ends: [u8; 256],
    /// Left-aligned (24-bit) code limits by length.
    limit: [u32; 24],
    /// First index into `starts` by length.
    base: [u32; 24],
}

impl Code {
    fn new(size: usize) -> Self {
        Code {
            starts: vec![0; size],
            ends: [0; 256],
            limit: [0; 24],
            base: [0; 24],
        }
    }

    /// Builds the code from symbol lengths (ClamAV's `build_decrypt_array`); false when the
    /// lengths do not make a complete code.
    fn build(&mut self, lengths: &[u8]) -> bool {
        let mut count = [0u32; 18];
        for &l in lengths {
            if l > 17 {
                return false;
            }
            count[usize::from(l)] += 1;
        }
        let mut next = [0u32; 18];
        self.limit[0] = 0;
        self.base[0] = 0;
        let (mut sum, mut end) = (0u32, 0usize);
        for (i, shift) in (9..=23u32).rev().enumerate() {
            sum = sum.wrapping_add(count[i + 1] << shift);
            if sum > 0x100_0000 {
                return false;
            }
            self.limit[i + 1] = sum;
            self.base[i + 1] = count[i].wrapping_add(self.base[i]);
            next[i + 1] = self.base[i + 1];
            if shift >= 16 {
                let old = end;
                end = (sum >> 16) as usize;
                if end < old || end > 0x100 {
                    return false;
                }
                self.ends[old..end].fill(i as u8 + 1);
            }
        }
        if sum != 0x100_0000 {
            return false;
        }
        for (sym, &l) in lengths.iter().enumerate() {
            if l == 0 {
                continue;
            }
            let slot = &mut next[usize::from(l)];
            let Some(entry) = self.starts.get_mut(*slot as usize) else {
                return false;
            };
            *entry = sym as u32;
            *slot = slot.wrapping_add(1);
        }
        true
    }
}

/// ASPack's bit stream (most significant first, through a 32-bit window) and its codes.
struct Stream<'a> {
    input: &'a [u8],
    pos: usize,
    bitpos: u32,
    hash: u32,
    codes: [Code; 4],
    lengths: [u8; 757],
    dict_ok: bool,
}

impl<'a> Stream<'a> {
    fn new(input: &'a [u8], hash: u32) -> Self {
        Stream {
            input,
            pos: 0,
            bitpos: 0x20,
            hash,
            codes: [Code::new(721), Code::new(28), Code::new(8), Code::new(19)],
            lengths: [0; 757],
            dict_ok: false,
        }
    }

    fn fill(&mut self) -> Option<()> {
        while self.bitpos >= 8 {
            let b = *self.input.get(self.pos)?;
            self.hash = (self.hash << 8) | u32::from(b);
            self.pos += 1;
            self.bitpos -= 8;
        }
        Some(())
    }

    /// The next 24 bits, left-aligned.
    fn window(&mut self) -> Option<u32> {
        self.fill()?;
        Some((self.hash >> (8 - self.bitpos)) & 0xff_ffff)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 24 {
            return None;
        }
        let v = self.window()?.checked_shr(24 - n).unwrap_or(0);
        self.bitpos += n;
        Some(v)
    }

    /// One symbol of code `which`.
    fn symbol(&mut self, which: usize) -> Option<u32> {
        let w = self.window()? & 0xff_fe00;
        let c = &self.codes[which];
        let len = if w < c.limit[8] {
            let l = c.ends[(w >> 16) as usize];
            if l == 0 || l >= 24 {
                return None;
            }
            l as usize
        } else {
            (9..15).find(|&l| w < c.limit[l]).unwrap_or(15)
        };
        self.bitpos += len as u32;
        let index = (w.wrapping_sub(c.limit[len - 1]) >> (24 - len)).wrapping_add(c.base[len]);
        c.starts.get(index as usize).copied()
    }

    /// The code lengths for the next stretch, and the codes built from them.
    fn tables(&mut self) -> Option<()> {
        if self.bits(1)? == 0 {
            self.lengths = [0; 757];
        }
        let mut meta = [0u8; 19];
        for m in meta.iter_mut() {
            *m = self.bits(4)? as u8;
        }
        if !self.codes[3].build(&meta) {
            return None;
        }
        let mut fresh = [0u8; 758];
        let mut n = 0usize;
        while n < 757 {
            let sym = self.symbol(3)?;
            match sym {
                0..=15 => {
                    fresh[1 + n] = (self.lengths[n] + sym as u8) & 0xf;
                    n += 1;
                }
                16 => {
                    let repeat = 3 + self.bits(2)? as usize;
                    for _ in 0..repeat.min(757 - n) {
                        fresh[1 + n] = fresh[n];
                        n += 1;
                    }
                }
                _ => {
                    let zeros = if sym == 17 {
                        3 + self.bits(3)?
                    } else {
                        11 + self.bits(7)?
                    };
                    let zeros = (zeros as usize).min(757 - n);
                    n += zeros;
                }
            }
        }
        let l = &fresh[1..];
        if !(self.codes[0].build(&l[..721])
            && self.codes[1].build(&l[721..749])
            && self.codes[2].build(&l[749..757]))
        {
            return None;
        }
        self.dict_ok = l[749..757].iter().any(|&x| x != 3);
        self.lengths.copy_from_slice(l);
        Some(())
    }

    /// Decodes one block into `out` (its size is the block's).
    fn block(&mut self, extras: &[u8], bases: &[u32; 58], out: &mut [u8]) -> Option<()> {
        self.lengths = [0; 757];
        self.tables()?;
        let size = out.len();
        let mut n = 0usize;
        let mut recent = [0u32; 3];
        while n < size {
            let sym = self.symbol(0)?;
            if sym < 256 {
                out[n] = sym as u8;
                n += 1;
                continue;
            }
            if sym >= 720 {
                self.tables()?;
                continue;
            }
            let slot = ((sym - 256) >> 3) as usize;
            let mut len = ((sym - 256) & 7) as usize + 2;
            if len == 9 {
                let e = self.symbol(1)? as usize;
                if e >= 0x56 {
                    return None;
                }
                let width = u32::from(extras[e + 0x1c]);
                len += usize::from(extras[e]) + self.bits(width)? as usize;
            }
            let mut dist = bases[slot];
            let width = u32::from(extras[slot + 0x38]);
            if !self.dict_ok || width < 3 {
                dist = dist.wrapping_add(self.bits(width)?);
            } else {
                dist = dist.wrapping_add(self.bits(width - 3)?.wrapping_mul(8));
                dist = dist.wrapping_add(self.symbol(2)?);
            }
            let back = if dist < 3 {
                let b = recent[dist as usize];
                if dist != 0 {
                    recent[dist as usize] = recent[0];
                    recent[0] = b;
                }
                b
            } else {
                recent = [dist - 3, recent[0], recent[1]];
                dist - 3
            };
            let back = back.wrapping_add(1) as usize;
            if back == 0 || back > n || len > size - n {
                return None;
            }
            for _ in 0..len {
                out[n] = out[n - back];
                n += 1;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe::sample::pe32;

    /// Bits most significant first.
    #[derive(Default)]
    struct Bits {
        out: Vec<u8>,
        used: u32,
    }

    impl Bits {
        fn put(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                if self.used % 8 == 0 {
                    self.out.push(0);
                }
                let last = self.out.len() - 1;
                self.out[last] |= (((v >> i) & 1) as u8) << (7 - self.used % 8);
                self.used += 1;
            }
        }
    }

    /// One block of ASPack's coding holding `data` as literals: length codes sent with a code
    /// of eight 3-bit symbols, literals 8 bits each (code = byte), two 1-bit distance codes.
    fn literal_block(data: &[u8]) -> Vec<u8> {
        let mut b = Bits::default();
        b.put(0, 1);
        // Meta code lengths (19 symbols): 0, 1, 2, 3, 8, 16, 17, 18 get 3 bits.
        for sym in 0..19u32 {
            b.put(
                if matches!(sym, 0..=3 | 8 | 16..=18) {
                    3
                } else {
                    0
                },
                4,
            );
        }
        let meta = |b: &mut Bits, sym: u32| {
            let order = [0, 1, 2, 3, 8, 16, 17, 18];
            let code = order.iter().position(|&s| s == sym).unwrap() as u32;
            b.put(code, 3);
        };
        // 256 literals of length 8: 8, then 42 repeats of 6 and one of 3.
        meta(&mut b, 8);
        for _ in 0..42 {
            meta(&mut b, 16);
            b.put(3, 2);
        }
        meta(&mut b, 16);
        b.put(0, 2);
        // 465 unused symbols: three runs of 138 zeros and one of 51.
        for run in [138u32, 138, 138, 51] {
            meta(&mut b, 18);
            b.put(run - 11, 7);
        }
        // Extras code (28): two 1-bit codes, then 26 zeros; distance code (8): two, six zeros.
        meta(&mut b, 1);
        meta(&mut b, 1);
        meta(&mut b, 18);
        b.put(26 - 11, 7);
        meta(&mut b, 1);
        meta(&mut b, 1);
        meta(&mut b, 17);
        b.put(6 - 3, 3);
        for &x in data {
            b.put(u32::from(x), 8);
        }
        b.out
    }

    /// ASPack 2.12's layout: `.text` at 0x1000 holding the packed block, the loader's section
    /// at 0x2000 (entry point 0x2001) with its tables, an empty `.adata` after it.
    fn sample(data: &[u8]) -> Vec<u8> {
        let sections = [
            (0x1000, 0x1000, 0x400, 0x400),
            (0x1000, 0x2000, 0x800, 0x800),
            (0x1000, 0x3000, 0, 0),
        ];
        let mut d = pe32(&sections, 0x2001, 0x1000);
        let block = literal_block(data);
        d[0x400..0x400 + block.len()].copy_from_slice(&block);
        let ep = 0x800; // the file offset of address 0x2000, the entry point - 1
        d[ep + 1..ep + 9].copy_from_slice(b"\x60\xe8\x03\x00\x00\x00\xe9\xeb");
        d[ep + 1 + 0x3b9..ep + 1 + 0x3bf].copy_from_slice(b"\x68\x00\x00\x00\x00\xc3");
        d[ep + 0x148] = 0xab;
        d[ep + 0x39b..ep + 0x39f].copy_from_slice(&0x1000u32.to_le_bytes());
        let t = ep + 0x57c;
        d[t..t + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        d[t + 4..t + 8].copy_from_slice(&(data.len() as u32).to_le_bytes());
        d
    }

    #[test]
    fn blocks_decode_and_calls_are_restored() {
        // Ends in zeros: the packed block is longer than the block, and ASPack reads zeros
        // past its end.
        let mut data: Vec<u8> = (0..0x200u32).map(|i| (i * 31 % 251) as u8).collect();
        data[0x20..0x25].copy_from_slice(&[0xe8, 0xab, 0x10, 0x00, 0x00]);
        data.extend_from_slice(&[0; 0x80]);
        let Unpacked::Image(img, method) = unpack(&sample(&data), 1 << 20) else {
            panic!("not unpacked");
        };
        assert_eq!((method, img.len()), ("ASPack", 0x200 + 0x1000));
        let mut expected = data.clone();
        // The call's operand: 0x1000 rotated back to 0x10, less its offset 0x20.
        expected[0x21..0x25].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(&img[0x200..0x200 + data.len()], &expected[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!((h.sections.len(), h.entry), (1, 0x1000));
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let mut data = b"a block".to_vec();
        data.extend_from_slice(&[0; 0x80]);
        let d = sample(&data);
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x4000));
        // Lengths that make no complete code.
        let mut bad = d.clone();
        bad[0x400] = 0xff;
        assert!(matches!(unpack(&bad, 1 << 20), Unpacked::Failed));
        let mut other = d.clone();
        other[0x801 + 0x3b9] = 0x90;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x300, 0x900, 0xc00, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
    }
}
