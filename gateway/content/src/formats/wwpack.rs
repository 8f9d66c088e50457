//! WWPack32-packed Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s WWPack
//! path and `wwunpack.c`): the program is recognised by its loader (the entry point at the
//! last section's start, two fixed code runs); every section but the loader's is laid out at
//! its address, then each block the loader's table lists (at 0x2a1 in its section: source
//! delta, dword count, end of source, a last-block flag) is decoded in place by WWPack's
//! bit coder (literals, two-byte matches, block matches); the headers are then fixed as the
//! loader leaves them (section count, entry point, image size, raw offsets = addresses, the
//! loader's section dropped). A block that does not decode fails the whole unpack, as in
//! ClamAV.

use super::pe::{self, Unpacked};
use super::{u16_le, u32_le};

/// The loader's first bytes and the run at 0x68 (`call $+5; pop eax; sub eax, 0x6d; …`).
const LOADER_START: &[u8] = b"\x53\x55\x8b\xe8\x33\xdb\xeb";
const LOADER_AT_68: &[u8] =
    b"\xe8\x00\x00\x00\x00\x58\x2d\x6d\x00\x00\x00\x50\x60\x33\xc9\x50\x58\x50\x50";

/// Unpacks the WWPack32-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let n = h.sections.len();
    let ep = h.entry_code(d);
    let last = h.sections[n - 1];
    let recognised = n > 1
        && h.entry == last.rva
        && ep.starts_with(LOADER_START)
        && ep.get(0x68..0x68 + LOADER_AT_68.len()) == Some(LOADER_AT_68);
    if !recognised {
        return Unpacked::NotPacked;
    }
    let head = h.sections.iter().map(|s| s.raw).min().unwrap_or(0) as usize;
    let size = h.sections[..n - 1]
        .iter()
        .map(|s| u64::from(s.rva) + u64::from(s.vsz))
        .max()
        .unwrap_or(0);
    if head == 0 || size == 0 || head as u64 > size {
        return Unpacked::NotPacked;
    }
    if size > cap as u64 {
        return Unpacked::OverLimit(size);
    }
    let Some(mut exe) = pe::map(d, &h.sections[..n - 1], head, size as usize) else {
        return Unpacked::Failed;
    };
    let loader = &d[last.raw as usize..(last.raw + last.rsz) as usize];
    if loader.is_empty() || !blocks(&mut exe, loader, last.rva) {
        return Unpacked::Failed;
    }
    match fix_headers(&mut exe, loader, &h) {
        Some(()) => Unpacked::Image(exe, "WWPack32"),
        None => Unpacked::Failed,
    }
}

/// Decodes every block the loader's table lists, in place; false on damage.
fn blocks(exe: &mut [u8], loader: &[u8], loader_rva: u32) -> bool {
    let mut at = 0x2a1usize;
    loop {
        if at + 17 > loader.len() {
            // No (further) table entry: what was decoded stands, as in ClamAV.
            return true;
        }
        let field = |o: usize| u32_le(loader, at + o).unwrap_or(0);
        let src = loader_rva.wrapping_sub(field(0));
        let packed = field(8).wrapping_mul(4) as usize;
        let end = field(12);
        at += 16;
        let start = i64::from(src) + i64::from(end) + 4 - packed as i64;
        let Ok(start) = usize::try_from(start) else {
            return true;
        };
        if packed == 0 || start.checked_add(packed).is_none_or(|e| e > exe.len()) {
            return true;
        }
        let compd = exe[start..start + packed].to_vec();
        exe[start..start + packed].fill(0xff);
        if decode(exe, start, &compd).is_none() {
            return false;
        }
        let more = loader[at] != 0;
        at += 1;
        if !more {
            return true;
        }
    }
}

/// WWPack's bit reader: 32-bit little-endian words, most significant bit first, a new word
/// loaded as soon as the last is used up (running out is damage).
struct Bits<'a> {
    src: &'a [u8],
    pos: usize,
    word: u32,
    left: u32,
}

impl Bits<'_> {
    fn reseed(&mut self) -> Option<()> {
        self.word = u32_le(self.src, self.pos)?;
        self.pos += 4;
        self.left = 32;
        Some(())
    }

    fn bit(&mut self) -> Option<u32> {
        let b = self.word >> 31;
        self.word <<= 1;
        self.left -= 1;
        if self.left == 0 {
            self.reseed()?;
        }
        Some(b)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = self.word >> (32 - n);
        if self.left >= n {
            self.left -= n;
            self.word = self.word.checked_shl(n).unwrap_or(0);
            if self.left == 0 {
                self.reseed()?;
            }
        } else {
            self.word = u32_le(self.src, self.pos)?;
            self.pos += 4;
            self.left += 32 - n;
            v |= self.word >> self.left;
            self.word <<= 32 - self.left;
        }
        Some(v)
    }
}

/// Decodes one block into `exe` from `at`; `None` on damage.
fn decode(exe: &mut [u8], mut at: usize, compd: &[u8]) -> Option<()> {
    let mut r = Bits {
        src: compd,
        pos: 0,
        word: 0,
        left: 0,
    };
    r.reseed()?;
    loop {
        if r.bit()? == 0 {
            let b = *compd.get(r.pos)?;
            r.pos += 1;
            *exe.get_mut(at)? = b;
            at += 1;
            continue;
        }
        let kind = r.bits(2)?;
        if kind == 3 {
            let sel = r.bits(2)?;
            let (shift, sub) = if sel >= 2 {
                (sel + 6, 31 + 0x80)
            } else {
                (sel + 5, 31)
            };
            let v = r.bits(shift)?;
            if v == 0x1ff {
                return Some(());
            }
            let back = ((1u32 << shift) - sub + v) as usize;
            copy_back(exe, &mut at, back, 2)?;
            continue;
        }
        let back = distance(&mut r)? as usize;
        let len = if kind == 0 { length(&mut r)? } else { kind + 2 };
        copy_back(exe, &mut at, back, len as usize)?;
    }
}

/// A block match's distance.
fn distance(r: &mut Bits<'_>) -> Option<u32> {
    let sel = r.bits(3)?;
    Some(match sel {
        0..=5 => {
            let width = match sel {
                0..=2 => sel + 5,
                3 => 8 + r.bit()?,
                4 => 10 + r.bit()?,
                _ => 12,
            };
            r.bits(width)? + (1 << width) - 31
        }
        6 => r.bits(14)? + 0x1fe1,
        _ => r.bits(15)? + 0x5fe1,
    })
}

/// A block match's length (when the match kind does not give it).
fn length(r: &mut Bits<'_>) -> Option<u32> {
    if r.bit()? == 0 {
        return Some(r.bit()? + 5);
    }
    let v = r.bits(3)?;
    if v != 0 {
        return Some(v + 6);
    }
    let v = r.bits(4)?;
    if v != 0 {
        return Some(v + 13);
    }
    let (mut width, mut base) = (4u32, 0x0du32);
    loop {
        if width == 7 {
            width = 14;
            base = 0;
            break;
        }
        base = ((base + 2) << 1) - 1;
        width += 1;
        if r.bit()? == 1 {
            break;
        }
    }
    Some(r.bits(width)? + base)
}

/// Copies `len` bytes from `back` bytes behind `at` (overlapping as it goes); an empty copy is
/// damage, as ClamAV's bounds check makes it.
fn copy_back(exe: &mut [u8], at: &mut usize, back: usize, len: usize) -> Option<()> {
    let from = at.checked_sub(back)?;
    if len == 0 || at.checked_add(len)? > exe.len() {
        return None;
    }
    for i in 0..len {
        exe[*at + i] = exe[from + i];
    }
    *at += len;
    Some(())
}

/// The headers as the loader leaves them: its section gone, the entry point restored, raw
/// offsets equal to addresses (the image is laid out as mapped).
fn fix_headers(exe: &mut [u8], loader: &[u8], h: &pe::Headers) -> Option<()> {
    let pe = h.pe_offset;
    let count = h.sections.len() - 1;
    let last = h.sections[count];
    let put = |exe: &mut [u8], at: usize, v: u32| -> Option<()> {
        exe.get_mut(at..at + 4)?.copy_from_slice(&v.to_le_bytes());
        Some(())
    };
    let image_size = u32_le(exe, pe + 0x50)?;
    let entry = u32_le(loader, 0x295)?
        .wrapping_add(last.rva)
        .wrapping_add(0x299);
    exe.get_mut(pe + 6..pe + 8)?
        .copy_from_slice(&(count as u16).to_le_bytes());
    put(exe, pe + 0x28, entry)?;
    put(exe, pe + 0x50, image_size.wrapping_sub(last.vsz))?;
    let mut table = pe + 0x18 + usize::from(u16_le(exe, pe + 0x14)?);
    for s in &h.sections[..count] {
        exe.get(table..table + 0x28)?;
        for (k, v) in [s.vsz, s.rva, s.vsz, s.rva].into_iter().enumerate() {
            put(exe, table + 8 + k * 4, v)?;
        }
        table += 0x28;
    }
    exe.get_mut(table..table + 0x28)?.fill(0);
    Some(())
}

/// A WWPack32 writer for tests: literals and the end mark (no WWPack32 on the test hosts).
#[cfg(test)]
pub(crate) mod sample {
    use super::{LOADER_AT_68, LOADER_START};
    use crate::formats::pe::sample::pe32;

    /// Bits as the unpacker reads them: 32-bit words, most significant bit first, the next
    /// word placed as soon as the last is full.
    struct Writer {
        out: Vec<u8>,
        word_at: usize,
        word: u32,
        used: u32,
    }

    impl Writer {
        fn bit(&mut self, b: u32) {
            self.word |= b << (31 - self.used);
            self.used += 1;
            if self.used == 32 {
                self.flush();
                self.word_at = self.out.len();
                self.out.extend_from_slice(&[0; 4]);
                self.word = 0;
                self.used = 0;
            }
        }
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1);
            }
        }
        fn flush(&mut self) {
            let at = self.word_at;
            self.out[at..at + 4].copy_from_slice(&self.word.to_le_bytes());
        }
    }

    /// `data` as WWPack literals and the end mark, padded to whole dwords.
    pub fn literals(data: &[u8]) -> Vec<u8> {
        let mut w = Writer {
            out: vec![0; 4],
            word_at: 0,
            word: 0,
            used: 0,
        };
        for &b in data {
            w.bit(0);
            w.out.push(b);
        }
        // A two-byte match (1, 3) of the widest kind (3: nine bits) reading 0x1ff ends it.
        w.bit(1);
        w.bits(3, 2);
        w.bits(3, 2);
        w.bits(0x1ff, 9);
        w.flush();
        w.out.resize(w.out.len().div_ceil(4) * 4 + 4, 0);
        w.out
    }

    /// A WWPack32 layout: `.text` at 0x1000 holding the packed block of `data`, the loader's
    /// section at 0x2000 (the entry point) with its table naming that one block.
    pub fn packed(data: &[u8]) -> Vec<u8> {
        let block = literals(data);
        assert!(block.len() <= 0x600, "sample too large");
        let sections = [
            (0x1000, 0x1000, 0x600, 0x400),
            (0x1000, 0x2000, 0x400, 0xa00),
        ];
        let mut d = pe32(&sections, 0x2000, 0xe00);
        d[0x400..0x400 + block.len()].copy_from_slice(&block);
        let l = 0xa00;
        d[l..l + LOADER_START.len()].copy_from_slice(LOADER_START);
        d[l + 0x68..l + 0x68 + LOADER_AT_68.len()].copy_from_slice(LOADER_AT_68);
        // The original entry point, 0x1000, as the loader computes it.
        let entry = 0x1000u32.wrapping_sub(0x2000 + 0x299);
        d[l + 0x295..l + 0x299].copy_from_slice(&entry.to_le_bytes());
        // One block: source 0x2000 - 0x1000, its dwords, its end (so it starts at 0x1000), last.
        let t = l + 0x2a1;
        d[t..t + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        d[t + 8..t + 12].copy_from_slice(&(block.len() as u32 / 4).to_le_bytes());
        d[t + 12..t + 16].copy_from_slice(&(block.len() as u32 - 4).to_le_bytes());
        d[t + 16] = 0;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::sample::packed;
    use super::*;

    #[test]
    fn blocks_decode_in_place_and_the_headers_are_restored() {
        let data: Vec<u8> = (0..0x500u32).map(|i| (i * 7 % 256) as u8).collect();
        let Unpacked::Image(img, method) = unpack(&packed(&data), 1 << 20) else {
            panic!("not unpacked");
        };
        assert_eq!((img.len(), method), (0x2000, "WWPack32"));
        assert_eq!(&img[0x1000..0x1000 + data.len()], &data[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!(h.entry, 0x1000);
        assert_eq!(h.sections.len(), 1);
        assert_eq!((h.sections[0].rva, h.sections[0].raw), (0x1000, 0x1000));
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let d = packed(b"some code and data");
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x2000));
        // A cut block: the decoder runs out of words before the end mark.
        let mut cut = d.clone();
        let t = 0xa00 + 0x2a1;
        cut[t + 8..t + 12].copy_from_slice(&2u32.to_le_bytes());
        cut[t + 12..t + 16].copy_from_slice(&4u32.to_le_bytes());
        assert!(matches!(unpack(&cut, 1 << 20), Unpacked::Failed));
        // The loader's code changed: not WWPack.
        let mut other = d.clone();
        other[0xa00 + 0x68] = 0x90;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x300, 0xa10, 0xca0, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
    }
}
