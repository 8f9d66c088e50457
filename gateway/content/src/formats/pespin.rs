//! PESpin 1.1-protected Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s PESpin
//! path and `spin.c`): the loader (the last section, its entry code `call $+5; mov ebx, [esp];
//! add ebx, …`) decrypted in its layers (a byte key counting down, two shift-register keys, the
//! section key less a checksum of the file); the sections its bitmaps name XOR-decrypted, then run
//! through its polymorphic byte decryptor (interpreted), then decompressed ([`super::unfsg`]);
//! compressed resources grown; the program rebuilt ([`super::rebuild`]).

use super::pe::{self, Unpacked};
use super::rebuild;
use super::u32_le;
use super::unfsg::unfsg;

/// The loader's fixed lengths this version has (ClamAV refuses others).
const LAYER1_LEN: u32 = 0x11fe;
const LAYER2_LEN: u32 = 0x5a0;
const LAYER3_LEN: u32 = 0x180;
const POLY_LEN: u32 = 0x1a1;

/// Unpacks the PESpin-protected PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let n = h.sections.len();
    let last = h.sections[n - 1];
    let ep = h.entry_code(d);
    let end = u64::from(last.rva) + u64::from(last.rsz);
    let recognised = n > 1
        && h.entry >= last.rva
        && 0x3217 - 4 <= end
        && u64::from(h.entry) + 0x3217 + 4 < end
        && ep.get(4..14) == Some(b"\xe8\x00\x00\x00\x00\x8b\x1c\x24\x83\xc3");
    if !recognised {
        return Unpacked::NotPacked;
    }
    if d.len() > cap {
        return Unpacked::OverLimit(d.len() as u64);
    }
    let mut src = d.to_vec();
    match unspin(&mut src, &h, cap) {
        Ok(img) => Unpacked::Image(img, "PESpin"),
        Err(Some(size)) => Unpacked::OverLimit(size),
        Err(None) => Unpacked::Failed,
    }
}

/// `Err(Some(size))`: the sections would grow past the cap; `Err(None)`: damage.
fn unspin(src: &mut [u8], h: &pe::Headers, cap: usize) -> Result<Vec<u8>, Option<u64>> {
    let n = h.sections.len() - 1;
    let sections = &h.sections[..n];
    let loader = h.sections[n];
    let (ep, key) = decrypt_loader(src, &loader, h.entry).ok_or(None)?;
    xor_sections(src, sections, ep, key).ok_or(None)?;
    poly_sections(src, sections, ep).ok_or(None)?;
    let grown = u32_le(src, ep + 0x3061).ok_or(None)?;
    let growth: u64 = sections
        .iter()
        .enumerate()
        .filter(|(j, _)| bit(grown, *j))
        .map(|(_, s)| u64::from(s.vsz))
        .sum();
    if growth > cap as u64 {
        return Err(Some(growth));
    }
    let mut data: Vec<Vec<u8>> = Vec::with_capacity(n);
    let mut full = grown;
    for (j, s) in sections.iter().enumerate() {
        let raw = src
            .get(s.raw as usize..(s.raw + s.rsz) as usize)
            .ok_or(None)?;
        if bit(grown, j) {
            data.push(unfsg(raw, s.vsz as usize).ok_or(None)?);
        } else {
            data.push(raw.to_vec());
        }
    }
    if let Some((j, grown_res)) = resources(src, sections, ep, grown) {
        data[j] = grown_res;
        full |= 1 << j;
    }
    let secs: Vec<rebuild::Unpacked<'_>> = sections
        .iter()
        .zip(&data)
        .enumerate()
        .map(|(j, (s, d))| {
            let len = if bit(full, j) { s.vsz } else { s.rsz } as usize;
            rebuild::Unpacked {
                rva: s.rva,
                vsz: s.vsz,
                data: &d[..len.min(d.len())],
            }
        })
        .collect();
    rebuild::rebuild(&secs, 0x40_0000, 0x1000, (0, 0)).ok_or(None)
}

fn bit(map: u32, j: usize) -> bool {
    j < 32 && map >> j & 1 == 1
}

/// The loader's own layers; the entry point's file offset and the section key.
fn decrypt_loader(src: &mut [u8], loader: &pe::Section, entry: u32) -> Option<(usize, u32)> {
    let (raw, rsz) = (loader.raw as usize, loader.rsz as usize);
    let mut spun = src.get(raw..raw + rsz)?.to_vec();
    let ep = entry.checked_sub(loader.rva)? as usize;
    if *spun.get(ep + 0xdb)? != 0xbb || *spun.get(ep + 0xe0)? != 0xb9 {
        return None;
    }
    let key8 = spun[ep + 0xdc];
    let len = u32_le(&spun, ep + 0xe1)?;
    // ClamAV's bound lets its last byte fall one past the section; this one does not.
    if len != LAYER1_LEN || ep + (len as usize) + 0x1fe5 > spun.len() {
        return None;
    }
    countdown_xor(&mut spun[ep + 0x1fe5..ep + 0x1fe5 + len as usize], key8);
    spun.get(ep + 0x3217..ep + 0x321b)?;
    let key = u32_le(&spun, ep + 0x26eb)?;
    if u32_le(&spun, ep + 0x26f0)? != LAYER2_LEN {
        return None;
    }
    let layer2 = spun.get_mut(ep + 0x2d5..ep + 0x2d5 + LAYER2_LEN as usize)?;
    lfsr_xor(layer2, key, 0x8c32_8834, true);
    let file_len = u32::try_from(src.len()).ok()?;
    let sum_len = file_len.wrapping_sub(u32_le(&spun, ep + 0x429)?);
    if sum_len >= file_len {
        return None;
    }
    let section_key = u32_le(&spun, ep + 0x3217)?.wrapping_sub(checksum(&src[..sum_len as usize]));
    src[raw..raw + rsz].copy_from_slice(&spun);
    let ep = raw + ep;
    src.get(ep + 0x3207..ep + 0x320b)?;
    Some((ep, section_key))
}

/// XORs `bytes` with a key byte counting down from the last byte to the first.
fn countdown_xor(bytes: &mut [u8], mut key: u8) {
    for b in bytes.iter_mut().rev() {
        *b ^= key;
        key = key.wrapping_sub(1);
    }
}

/// XORs `bytes` with the low byte of a shift register, shifted before each byte and fed `poly`
/// when its low bit was set (`when_set`) or clear.
fn lfsr_xor(bytes: &mut [u8], mut key: u32, poly: u32, when_set: bool) {
    for b in bytes {
        let low = key & 1 == 1;
        key >>= 1;
        if low == when_set {
            key ^= poly;
        }
        *b ^= key as u8;
    }
}

/// PESpin's checksum of the file's first bytes.
fn checksum(data: &[u8]) -> u32 {
    let (mut a, mut b) = (u32::MAX, u32::MAX);
    for &x in data {
        a ^= u32::from(x) << 8;
        a = (a >> 3) & 0x1fff_ffff;
        for _ in 0..4 {
            a ^= (b >> 8) & 0xff;
            a = a.wrapping_add(0x7801_a108);
            a ^= b;
            a = a.rotate_right(b & 0xff);
            std::mem::swap(&mut a, &mut b);
        }
    }
    b
}

/// The sections the first bitmap names, XORed with the section key's register.
fn xor_sections(src: &mut [u8], sections: &[pe::Section], ep: usize, key: u32) -> Option<()> {
    let map = u32_le(src, ep + 0x3207)?;
    for (j, s) in sections.iter().enumerate() {
        if !bit(map, j) {
            continue;
        }
        let bytes = src.get_mut(s.raw as usize..(s.raw + s.rsz) as usize)?;
        lfsr_xor(bytes, key, 0xed43_af31, false);
    }
    Some(())
}

/// The decryptor's own layer, the decryptor run over itself, then over the sections the
/// second bitmap names.
fn poly_sections(src: &mut [u8], sections: &[pe::Section], ep: usize) -> Option<()> {
    if u32_le(src, ep + 0x644)? != LAYER3_LEN {
        return None;
    }
    let key = u32_le(src, ep + 0x650)?;
    let layer3 = src.get_mut(ep + 0x28d3..ep + 0x28d3 + LAYER3_LEN as usize)?;
    lfsr_xor(layer3, key, 0xed43_af32, true);
    if u32_le(src, ep + 0x28dd)? != POLY_LEN {
        return None;
    }
    let first = src.get(ep + 0x28ec..ep + 0x28ec + 0x25)?.to_vec();
    run_poly(src, ep + 0x6d4, POLY_LEN as usize, &first)?;
    let map = u32_le(src, ep + 0x6f1)?;
    let code = src.get(ep + 0x755..ep + 0x755 + 0x25)?.to_vec();
    for (j, s) in sections.iter().enumerate() {
        if bit(map, j) {
            run_poly(src, s.raw as usize, s.rsz as usize, &code)?;
        }
    }
    Some(())
}

/// `len` bytes from `at`, each through the decryptor `code` with `cl` counting down from `len`.
fn run_poly(src: &mut [u8], at: usize, len: usize, code: &[u8]) -> Option<()> {
    let bytes = src.get_mut(at..at.checked_add(len)?)?;
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = exec86(*b, (len - i) as u8, code)?;
    }
    Some(())
}

/// PESpin's byte decryptor: 0x24 bytes of `add/sub/xor al, cl|imm`, `inc/dec al`,
/// `rol/ror al, imm` and fillers, ending on `stosb`.
fn exec86(mut al: u8, cl: u8, code: &[u8]) -> Option<u8> {
    let at = |i: usize| code.get(i).copied();
    let mut i = 0usize;
    while i < 0x24 {
        let op = at(i)?;
        i += 1;
        match op {
            0xeb => i += 2,
            0x0a => i += 1,
            0x90 | 0xf8 | 0xf9 => {}
            0x02 => (al, i) = (al.wrapping_add(cl), i + 1),
            0x2a => (al, i) = (al.wrapping_sub(cl), i + 1),
            0x04 => (al, i) = (al.wrapping_add(at(i)?), i + 1),
            0x2c => (al, i) = (al.wrapping_sub(at(i)?), i + 1),
            0x32 => (al, i) = (al ^ cl, i + 1),
            0x34 => (al, i) = (al ^ at(i)?, i + 1),
            0xfe => {
                al = if at(i)? == 0xc0 {
                    al.wrapping_add(1)
                } else {
                    al.wrapping_sub(1)
                };
                i += 1;
            }
            0xc0 => {
                let left = at(i)? == 0xc0;
                let by = u32::from(at(i + 1)?) % 8;
                al = if left {
                    al.rotate_left(by)
                } else {
                    al.rotate_right(by)
                };
                i += 2;
            }
            _ => return None,
        }
    }
    (i == 0x24 && at(i)? == 0xaa).then_some(al)
}

/// Resources compressed from the offset the loader keeps (in a section the bitmap left
/// alone): that section with its tail grown; `None` when there are none or they do not grow.
fn resources(
    src: &[u8],
    sections: &[pe::Section],
    ep: usize,
    grown: u32,
) -> Option<(usize, Vec<u8>)> {
    let at = u32_le(src, ep + 0x2fee)?;
    if at == 0 {
        return None;
    }
    let (j, s) = sections.iter().enumerate().find(|(_, s)| {
        let off = at.wrapping_sub(s.rva);
        s.rva <= at && off < s.vsz && off > 0 && off <= s.rsz
    })?;
    if bit(grown, j) || j >= 32 {
        return None;
    }
    let off = (at - s.rva) as usize;
    let raw = src.get(s.raw as usize..(s.raw + s.rsz) as usize)?;
    let tail = unfsg(&raw[off..], s.vsz as usize - off)?;
    let mut out = raw[..off].to_vec();
    out.extend_from_slice(&tail);
    Some((j, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe::sample::pe32;
    use crate::formats::unfsg::tests::literals;

    fn put(d: &mut [u8], at: usize, v: u32) {
        d[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// PESpin 1.1's layout around `data`: `.text` at 0x1000 compressed (the grow bitmap's
    /// bit 0), the loader's section at 0x2000 (file 0x600, the entry point), its three layers
    /// encrypted, a decryptor of no-ops, no section XORed or run through it.
    fn sample(data: &[u8]) -> Vec<u8> {
        let sections = [
            (0x1000, 0x1000, 0x200, 0x400),
            (0x4000, 0x2000, 0x3400, 0x600),
        ];
        let mut d = pe32(&sections, 0x2000, 0x3a00);
        let packed = literals(data);
        d[0x400..0x400 + packed.len()].copy_from_slice(&packed);
        let len = d.len() as u32;
        let ep = 0x600;
        d[ep + 4..ep + 14].copy_from_slice(b"\xe8\x00\x00\x00\x00\x8b\x1c\x24\x83\xc3");
        d[ep + 0xdb] = 0xbb;
        d[ep + 0xdc] = 0x77;
        d[ep + 0xe0] = 0xb9;
        put(&mut d, ep + 0xe1, LAYER1_LEN);
        put(&mut d, ep + 0x26eb, 0x1234_5678);
        put(&mut d, ep + 0x26f0, LAYER2_LEN);
        put(&mut d, ep + 0x429, len - 16);
        put(&mut d, ep + 0x644, LAYER3_LEN);
        put(&mut d, ep + 0x650, 0xcafe_babe);
        put(&mut d, ep + 0x28dd, POLY_LEN);
        for code in [ep + 0x28ec, ep + 0x755] {
            d[code..code + 0x24].fill(0x90);
            d[code + 0x24] = 0xaa;
        }
        put(&mut d, ep + 0x3061, 1);
        // Encrypted as the loader decrypts, last layer first.
        lfsr_xor(
            &mut d[ep + 0x28d3..ep + 0x28d3 + 0x180],
            0xcafe_babe,
            0xed43_af32,
            true,
        );
        lfsr_xor(
            &mut d[ep + 0x2d5..ep + 0x2d5 + 0x5a0],
            0x1234_5678,
            0x8c32_8834,
            true,
        );
        countdown_xor(&mut d[ep + 0x1fe5..ep + 0x1fe5 + 0x11fe], 0x77);
        d
    }

    #[test]
    fn layers_decrypt_and_sections_grow() {
        let data: Vec<u8> = (0..0x180u32).map(|i| (i * 5 % 256) as u8).collect();
        let Unpacked::Image(img, method) = unpack(&sample(&data), 1 << 20) else {
            panic!("not unpacked");
        };
        assert_eq!((method, img.len()), ("PESpin", 0x200 + 0x1000));
        assert_eq!(&img[0x200..0x200 + data.len()], &data[..]);
        assert!(img[0x200 + data.len()..].iter().all(|&b| b == 0));
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let d = sample(b"a section that grows");
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x3a00));
        // A wrong key byte garbles every layer.
        let mut bad = d.clone();
        bad[0x600 + 0xdc] ^= 1;
        assert!(matches!(unpack(&bad, 1 << 20), Unpacked::Failed));
        let mut other = d.clone();
        other[0x600 + 4] = 0x90;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x300, 0x700, 0x2700, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
        assert_eq!(exec86(5, 1, &[0x90; 0x24]), None, "no stosb after the code");
    }
}
