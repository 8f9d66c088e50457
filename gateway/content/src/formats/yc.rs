//! yoda's Crypter (yC 1.x) programs decrypted as ClamAV decrypts them (`cli_scanpe`'s yC path
//! and `yc.c`): the loader at the last section's start + 0x60 (three known layouts) gives the
//! length of its own encrypted part; its polymorphic byte decryptor (a 0x30-byte run of
//! `add/sub/xor al, imm|cl`, `dec al`, `rol/ror al, imm|cl`, short jumps) is interpreted over that
//! part, then the second decryptor it reveals over every section's data but resources,
//! relocations, export/import/TLS data and the loader's own; the loader's section is cut off and
//! the headers point back at the original entry point. What comes out is the program as it was
//! before yC (often itself packed: the walk unpacks it again).

use super::pe::{self, Unpacked};
use super::{u16_le, u32_le};

/// The length of the decryptor run interpreted per byte.
const DECRYPTOR_LEN: usize = 0x30;
/// Short jumps interpreted for one byte. A 0x30-byte run holds at most 24 jumps going forward;
/// more is a loop, which no decryptor runs per byte (ClamAV allows 10^8 per pass, which a
/// hostile loop would spend in full; this bound keeps the work proportional to the file).
const MAX_JUMPS_PER_BYTE: u32 = 64;

/// Section names (first four bytes, little-endian) the second layer leaves alone.
const KEPT: [u32; 8] = [
    0x6372_7372, // rsrc
    0x7273_722e, // .rsr
    0x6f6c_6572, // relo
    0x6c65_722e, // .rel
    0x6164_652e, // .eda
    0x6164_722e, // .rda
    0x6164_692e, // .ida
    0x736c_742e, // .tls
];

/// Decrypts the yC-protected PE `d`; the output may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let n = h.sections.len();
    let last = h.sections[n - 1];
    if n < 2 || h.entry != last.rva.wrapping_add(0x60) {
        return Unpacked::NotPacked;
    }
    let ep = h.entry_code(d);
    let Some((ecx, offset)) = loader(ep) else {
        return Unpacked::NotPacked;
    };
    let marked =
        ep.get((0x63 + offset) as usize..(0x66 + offset) as usize) == Some(b"\xaa\xe2\xcc");
    let fits = d.len() as i64 >= i64::from(last.raw) + 0xc6 + i64::from(ecx) + offset;
    if !(ecx > 0x800 && ecx < 0x2000 && marked && fits) {
        return Unpacked::NotPacked;
    }
    if d.len() > cap {
        return Unpacked::OverLimit(d.len() as u64);
    }
    let mut buf = d.to_vec();
    match decrypt(&mut buf, &h, ecx, offset) {
        Some(len) => {
            buf.truncate(len);
            Unpacked::Image(buf, "yC")
        }
        None => Unpacked::Failed,
    }
}

/// The loader layouts ClamAV knows: (bytes to decrypt in the first layer, offset of the
/// loader's tables from the usual place).
fn loader(ep: &[u8]) -> Option<(u32, i64)> {
    let at = |o: usize, n: usize| ep.get(o..o + n);
    let r32 = |o: usize| u32_le(ep, o);
    let r16 = |o: usize| u16_le(ep, o);
    // yC 1.3.
    if at(0, 15) == Some(b"\x55\x8b\xec\x53\x56\x57\x60\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && at(0x26, 13) == Some(b"\x8d\x3a\x8b\xf7\x33\xc0\xeb\x04\x90\xeb\x01\xc2\xac")
        && ep.get(0x13) == Some(&0xb9)
        && r16(0x18) == Some(0xe981)
        && at(0x1e, 4) == Some(b"\x8b\xd5\x81\xc2")
        && 0x6cu32.wrapping_sub(r32(0xf)?).wrapping_add(r32(0x22)?) == 0xc6
    {
        let ecx = r32(0x14)?.wrapping_sub(r32(0x1a)?);
        if ecx != 0 {
            return Some((ecx, 0));
        }
    }
    // yC 1.3, a variant.
    if at(0, 9) == Some(b"\x55\x8b\xec\x83\xec\x40\x53\x56\x57")
        && at(0x17, 8) == Some(b"\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && ep.get(0x23) == Some(&0xb9)
        && 0x6cu32.wrapping_sub(r32(0x1f)?).wrapping_add(r32(0x32)?) == 0xc6
    {
        let ecx = r32(0x24)?.wrapping_sub(r32(0x2a)?);
        if ecx != 0 {
            return Some((ecx, 0x10));
        }
    }
    // yC 1.x, modified.
    if at(0, 9) == Some(b"\x60\xe8\x00\x00\x00\x00\x5d\x81\xed")
        && ep.get(0xd) == Some(&0xb9)
        && r16(0x12) == Some(0xbd8d)
        && at(0x18, 3) == Some(b"\x8b\xf7\xac")
        && 0x66u32.wrapping_sub(r32(0x9)?).wrapping_add(r32(0x14)?) == 0xae
    {
        let ecx = r32(0xe)?;
        if ecx != 0 {
            return Some((ecx, -0x18));
        }
    }
    None
}

/// Both layers; the decrypted file's length.
fn decrypt(buf: &mut [u8], h: &pe::Headers, ecx: u32, offset: i64) -> Option<usize> {
    let n = h.sections.len() - 1;
    let last = h.sections[n];
    let yc = usize::try_from(i64::from(last.raw) + offset).ok()?;
    let first = Layer {
        decryptor: yc + 0x93,
        code: yc + 0xc6,
        len: ecx,
        max: ecx,
    };
    first.run(buf)?;
    // The loader's section is what is cut off (its data as the header gives it).
    let len = buf.len().checked_sub(raw_size(buf, h, n)?)?;
    let table = h.pe_offset + 0x18 + usize::from(u16_le(buf, h.pe_offset + 0x14)?);
    let second = yc + if offset == -0x18 { 0x3ea } else { 0x457 };
    for (i, s) in h.sections[..n].iter().enumerate() {
        let name = u32_le(buf, table + i * 0x28)?;
        if s.raw == 0 || s.rsz == 0 || KEPT.contains(&name) || name & 0xffff == 0x4379 {
            continue;
        }
        let max = u32::try_from(len).ok()?.checked_sub(s.raw)?;
        let layer = Layer {
            decryptor: second,
            code: s.raw as usize,
            len: raw_size(buf, h, i)? as u32,
            max,
        };
        layer.run(buf)?;
    }
    fix_headers(buf, h, yc)?;
    Some(len)
}

/// A section's `SizeOfRawData` as the header gives it, clipped to the file.
fn raw_size(buf: &[u8], h: &pe::Headers, i: usize) -> Option<usize> {
    let table = h.pe_offset + 0x18 + usize::from(u16_le(buf, h.pe_offset + 0x14)?);
    let at = table + i * 0x28;
    let (size, ptr) = (
        u32_le(buf, at + 16)? as usize,
        u32_le(buf, at + 20)? as usize,
    );
    Some(size.min(buf.len().saturating_sub(ptr)))
}

/// One decryption pass: every byte of `code..code+len` (at most `max`) run through the
/// decryptor at `decryptor`, with `cl` counting down from the length's low byte.
struct Layer {
    decryptor: usize,
    code: usize,
    len: u32,
    max: u32,
}

impl Layer {
    fn run(&self, buf: &mut [u8]) -> Option<()> {
        let mut cl = self.len as u8;
        for i in 0..self.len.min(self.max) as usize {
            let at = self.code.checked_add(i)?;
            let al = *buf.get(at)?;
            let out = self.emulate(buf, al, cl)?;
            buf[at] = out;
            cl = cl.wrapping_sub(1);
        }
        Some(())
    }

    /// The decryptor run over one byte; `None` on an opcode outside yC's set or past the file.
    fn emulate(&self, buf: &[u8], mut al: u8, cl: u8) -> Option<u8> {
        let op = |j: usize| buf.get(self.decryptor.checked_add(j)?).copied();
        let mut j = 0usize;
        let mut jumps = MAX_JUMPS_PER_BYTE;
        while j < DECRYPTOR_LEN {
            match op(j)? {
                0xeb => {
                    j += 1;
                    jumps = jumps.checked_sub(1)?;
                    j = j.wrapping_add(op(j)? as i8 as isize as usize);
                }
                0xfe => {
                    al = al.wrapping_sub(1);
                    j += 1;
                }
                0x2a => {
                    al = al.wrapping_sub(cl);
                    j += 1;
                }
                0x02 => {
                    al = al.wrapping_add(cl);
                    j += 1;
                }
                0x32 => {
                    al ^= cl;
                    j += 1;
                }
                0x04 => {
                    j += 1;
                    al = al.wrapping_add(op(j)?);
                }
                0x34 => {
                    j += 1;
                    al ^= op(j)?;
                }
                0x2c => {
                    j += 1;
                    al = al.wrapping_sub(op(j)?);
                }
                0xc0 => {
                    j += 1;
                    let left = op(j)? == 0xc0;
                    j += 1;
                    let by = u32::from(op(j)?) % 8;
                    al = if left {
                        al.rotate_left(by)
                    } else {
                        al.rotate_right(by)
                    };
                }
                0xd2 => {
                    j += 1;
                    let right = op(j)? == 0xc8;
                    // ClamAV steps over one byte more here; its decryptors pad for it.
                    j += 1;
                    let by = u32::from(cl) % 8;
                    al = if right {
                        al.rotate_right(by)
                    } else {
                        al.rotate_left(by)
                    };
                }
                0x90 | 0xf8 | 0xf9 => {}
                _ => return None,
            }
            j = j.wrapping_add(1);
        }
        Some(al)
    }
}

/// The loader's section dropped from the count, the import directory cleared, the original
/// entry point (kept at 0xa0f in the loader) restored, the image size reduced.
fn fix_headers(buf: &mut [u8], h: &pe::Headers, yc: usize) -> Option<()> {
    let pe = h.pe_offset;
    let n = h.sections.len() - 1;
    let opt = pe + 0x18;
    let entry = u32_le(buf, yc + 0xa0f)?;
    let image = u32_le(buf, opt + 0x38)?.wrapping_sub(h.sections[n].vsz);
    buf.get_mut(pe + 6..pe + 8)?
        .copy_from_slice(&(n as u16).to_le_bytes());
    buf.get_mut(opt + 0x68..opt + 0x70)?.fill(0);
    buf.get_mut(opt + 16..opt + 20)?
        .copy_from_slice(&entry.to_le_bytes());
    buf.get_mut(opt + 0x38..opt + 0x3c)?
        .copy_from_slice(&image.to_le_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe::sample::pe32;

    const KEY: u8 = 0x5a;
    const TEXT: &[u8] = b"the program before yC encrypted it";
    const RSRC: &[u8] = b"resources stay as they are";

    /// A yC 1.x ("modified") layout: `.text` and `.rsrc`, then the loader's section at 0x3000
    /// (file 0x800) with the entry point 0x60 into it; both decryptors `xor al, 0x5a`.
    fn sample() -> Vec<u8> {
        let sections = [
            (0x1000, 0x1000, 0x200, 0x400),
            (0x1000, 0x2000, 0x200, 0x600),
            (0x1000, 0x3000, 0xc00, 0x800),
        ];
        let mut d = pe32(&sections, 0x3060, 0x1400);
        for (i, name) in [&b".text\0\0\0"[..], b".rsrc\0\0\0", b"yC\0\0\0\0\0\0"]
            .iter()
            .enumerate()
        {
            d[0x178 + i * 40..0x178 + i * 40 + 8].copy_from_slice(name);
        }
        let xor = |b: &[u8]| b.iter().map(|x| x ^ KEY).collect::<Vec<u8>>();
        d[0x400..0x400 + TEXT.len()].copy_from_slice(&xor(TEXT));
        d[0x600..0x600 + RSRC.len()].copy_from_slice(RSRC);
        let yc = 0x800 - 0x18;
        let ep = 0x860;
        let ecx = 0x980u32;
        d[ep..ep + 9].copy_from_slice(b"\x60\xe8\x00\x00\x00\x00\x5d\x81\xed");
        d[ep + 9..ep + 13].copy_from_slice(&0x100u32.to_le_bytes());
        d[ep + 0xd] = 0xb9;
        d[ep + 0xe..ep + 0x12].copy_from_slice(&ecx.to_le_bytes());
        d[ep + 0x12..ep + 0x14].copy_from_slice(&[0x8d, 0xbd]);
        d[ep + 0x14..ep + 0x18].copy_from_slice(&0x148u32.to_le_bytes());
        d[ep + 0x18..ep + 0x1b].copy_from_slice(b"\x8b\xf7\xac");
        let mut decryptor = vec![0x90u8; 0x30];
        decryptor[..2].copy_from_slice(&[0x34, KEY]);
        d[yc + 0x93..yc + 0xc3].copy_from_slice(&decryptor);
        d[ep + 0x4b..ep + 0x4e].copy_from_slice(b"\xaa\xe2\xcc");
        // Inside the first layer: the second decryptor and the original entry point.
        d[yc + 0x3ea..yc + 0x41a].copy_from_slice(&xor(&decryptor));
        d[yc + 0xa0f..yc + 0xa13].copy_from_slice(&xor(&0x1000u32.to_le_bytes()));
        d
    }

    #[test]
    fn both_layers_decrypt_and_the_loader_is_cut_off() {
        let Unpacked::Image(out, method) = unpack(&sample(), 1 << 20) else {
            panic!("not decrypted");
        };
        assert_eq!((out.len(), method), (0x800, "yC"));
        assert_eq!(&out[0x400..0x400 + TEXT.len()], TEXT);
        assert_eq!(&out[0x600..0x600 + RSRC.len()], RSRC);
        let h = pe::parse(&out).unwrap();
        assert_eq!((h.sections.len(), h.entry), (2, 0x1000));
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let d = sample();
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x1400));
        // An opcode outside yC's set in the decryptor: no output.
        let mut bad = d.clone();
        bad[0x800 - 0x18 + 0x95] = 0xcc;
        assert!(matches!(unpack(&bad, 1 << 20), Unpacked::Failed));
        // A jump back onto itself runs out of its budget instead of looping for ever.
        let mut spin = d.clone();
        spin[0x800 - 0x18 + 0x95..0x800 - 0x18 + 0x97].copy_from_slice(&[0xeb, 0xfe]);
        assert!(matches!(unpack(&spin, 1 << 20), Unpacked::Failed));
        let mut other = d.clone();
        other[0x860 + 0x4b] = 0;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x200, 0x870, 0x900, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
    }
}
