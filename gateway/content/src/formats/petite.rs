//! Petite 2.x-packed Windows programs unpacked as ClamAV unpacks them (`cli_scanpe`'s Petite
//! path and `petite.c`): recognised by the loader's `mov eax, <its section>` at the entry point
//! (the last section for 2.2, the one before for 2.1); the image mapped from the lowest section
//! address; the loader's table (at 0x1b8 or 0x178 into its section) read in order: entries with
//! bit 31 set move a packed run to the end of its area, the others unpack one original section
//! by Petite's NRV-like coder (literals XORed with the bytes left, distances widened past 64 KiB
//! and 256 KiB); Petite's own code found at the end of a section is cut off; the sections are
//! then compacted and rebuilt as [`super::rebuild`] lays them out. The original entry point is
//! not decrypted (the rebuilt header points at the first section).

use super::pe::{self, Unpacked};
use super::rebuild;
use super::u32_le;
use super::unfsg::Dl;

/// Original sections one program may list (ClamAV's bound).
const MAX_SECTIONS: usize = 96;

/// One original section as the table gives it.
#[derive(Clone, Copy, Debug)]
struct Usect {
    rva: u32,
    vsz: u32,
    rsz: u32,
    raw: u32,
}

/// The loader version's constants: table offset, size of Petite's code, its skew.
struct Version {
    table: u32,
    grown: u32,
    skew: u32,
}

/// Unpacks the Petite-packed PE `d`; the image may not exceed `cap` bytes.
pub fn unpack(d: &[u8], cap: usize) -> Unpacked {
    let Some(h) = pe::parse(d) else {
        return Unpacked::NotPacked;
    };
    let ep = h.entry_code(d);
    if ep.len() < 200 || ep[0] != 0xb8 {
        return Unpacked::NotPacked;
    }
    let base = h.image_base as u32;
    let n = h.sections.len();
    let mov = u32_le(ep, 1);
    let points_at = |i: usize| mov == Some(h.sections[i].rva.wrapping_add(base));
    let (count, version) = if points_at(n - 1) {
        (
            n,
            Version {
                table: 0x1b8,
                grown: 0x355,
                skew: 0x35,
            },
        )
    } else if n >= 2 && points_at(n - 2) {
        (
            n - 1,
            Version {
                table: 0x178,
                grown: 0x323,
                skew: 0x34,
            },
        )
    } else {
        return Unpacked::NotPacked;
    };
    // Level zero (stored) is not supported, as in ClamAV.
    if u32_le(ep, 0x80) == Some(0x163c_988d) {
        return Unpacked::NotPacked;
    }
    let min = h.sections.iter().map(|s| s.rva).min().unwrap_or(0);
    let max = h
        .sections
        .iter()
        .map(|s| u64::from(s.rva) + u64::from(s.rsz))
        .max()
        .unwrap_or(0);
    let size = max.saturating_sub(u64::from(min));
    if size > cap as u64 {
        return Unpacked::OverLimit(size);
    }
    let Some(mut buf) = mapped(d, &h.sections, min, size as usize) else {
        return Unpacked::NotPacked;
    };
    let resources = resource_directory(d, &h);
    let mut p = Petite {
        buf: &mut buf,
        min,
        sections: &h.sections[..count],
        version,
    };
    match p.run() {
        Some(sects) => {
            let secs: Vec<rebuild::Unpacked<'_>> = sects
                .iter()
                .map(|s| rebuild::Unpacked {
                    rva: s.rva,
                    vsz: s.vsz,
                    data: &buf[s.raw as usize..(s.raw + s.rsz) as usize],
                })
                .collect();
            let entry = sects[0].rva;
            match rebuild::rebuild(&secs, base, entry, resources) {
                Some(img) => Unpacked::Image(img, "Petite"),
                None => Unpacked::Failed,
            }
        }
        None => Unpacked::Failed,
    }
}

/// Every section with data at its address, from `min`.
fn mapped(d: &[u8], sections: &[pe::Section], min: u32, size: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; size];
    for s in sections.iter().filter(|s| s.raw != 0) {
        if s.rsz == 0 || s.ursz == 0 {
            return None;
        }
        let at = s.rva.checked_sub(min)? as usize;
        let (raw, len) = (s.raw as usize, s.ursz as usize);
        buf.get_mut(at..at.checked_add(len)?)?
            .copy_from_slice(d.get(raw..raw + len)?);
    }
    Some(buf)
}

/// The resource directory entry (address, size) of the packed program's header.
fn resource_directory(d: &[u8], h: &pe::Headers) -> (u32, u32) {
    let dir = h.pe_offset + 0x18 + 0x70;
    (u32_le(d, dir).unwrap_or(0), u32_le(d, dir + 4).unwrap_or(0))
}

struct Petite<'a> {
    buf: &'a mut [u8],
    min: u32,
    sections: &'a [pe::Section],
    version: Version,
}

impl Petite<'_> {
    /// `rva` as an index into the mapped image, when it lands inside with `len` bytes after.
    fn at(&self, rva: u32, len: u64) -> Option<usize> {
        let i = rva.checked_sub(self.min)? as usize;
        (i as u64 + len <= self.buf.len() as u64 && len > 0).then_some(i)
    }

    /// Follows the table; the original sections, compacted at the start of the buffer.
    fn run(&mut self) -> Option<Vec<Usect>> {
        let last = self.sections.last()?;
        let mut packed = last.rva.wrapping_add(self.version.table);
        let mut out: Vec<Usect> = Vec::new();
        let mut bottom = 0u32;
        let mut resources_pass = 0u32;
        loop {
            let entry = self.at(packed, 4)?;
            let srva = u32_le(self.buf, entry)?;
            if srva == 0 {
                return self.finish(out);
            }
            let field = |b: &[u8], o: usize| u32_le(b, entry + o);
            let size = srva & 0x7fff_ffff;
            if srva != size {
                resources_pass = 0;
                self.at(packed.wrapping_add(4), 8)?;
                let end = field(self.buf, 8)?;
                bottom = end.checked_add(4)?;
                let back = size.wrapping_sub(1).wrapping_mul(4);
                let len = u64::from(size.wrapping_mul(4));
                let from = self.at(field(self.buf, 4)?.wrapping_sub(back), len)?;
                let to = self.at(end.wrapping_sub(back), len)?;
                self.buf.copy_within(from..from + len as usize, to);
                packed = packed.wrapping_add(0x0c);
                continue;
            }
            self.at(packed.wrapping_add(4), 8)?;
            let size = field(self.buf, 4)?;
            let rva = field(self.buf, 8)?;
            packed = packed.wrapping_add(0x10);
            if out.len() >= MAX_SECTIONS {
                return None;
            }
            let vsz = if bottom.wrapping_sub(rva) as i32 > 0 {
                bottom.wrapping_sub(rva)
            } else {
                size
            };
            let mut s = Usect {
                rva,
                vsz,
                rsz: size,
                raw: 0,
            };
            if size == 0 {
                out.push(s);
                continue;
            }
            let host = self
                .sections
                .iter()
                .find(|q| contained(q.rva, q.vsz, s.rva, s.vsz))?;
            if resources_pass == 0 {
                s.rva = host.rva;
                s.rsz = rva.wrapping_sub(host.rva).wrapping_add(size);
            }
            out.push(s);
            let end = self.inflate(srva, rva, size)?;
            self.strip_loader(out.last_mut()?, end);
            resources_pass += 1;
        }
    }

    /// Unpacks `size` bytes from `src` to `dst` (addresses); where the output ends.
    fn inflate(&mut self, src: u32, dst: u32, mut size: u32) -> Option<usize> {
        let (check1, check2, goback) = match size {
            0..0x10000 => (0xffff_c060u32 as i32, 0xffff_fc60u32 as i32, 5),
            0x10000..0x40000 => (0xffff_8180u32 as i32, 0xffff_f980u32 as i32, 7),
            _ => (0xffff_8300u32 as i32, 0xffff_fb00u32 as i32, 8),
        };
        let mut s = self.at(src, 1)?;
        let mut o = self.at(dst, 1)?;
        let mut dl = Dl::new(0);
        size -= 1;
        self.buf[o] = self.buf[s];
        (s, o) = (s + 1, o + 1);
        let mut oldback: i32 = 0;
        while size > 0 {
            if dl.bit(self.buf, &mut s)? == 0 {
                let b = *self.buf.get(s)?;
                *self.buf.get_mut(o)? = b ^ size as u8;
                (s, o, size) = (s + 1, o + 1, size - 1);
                continue;
            }
            let mut back: i32 = 1;
            let mut add = 0u32;
            loop {
                let b = dl.bit(self.buf, &mut s)?;
                if back >= i32::MAX / 2 {
                    return None;
                }
                back = back * 2 + b as i32;
                if dl.bit(self.buf, &mut s)? == 0 {
                    break;
                }
            }
            back -= 3;
            let mut len: u32;
            if back >= 0 {
                for _ in 0..goback {
                    let b = dl.bit(self.buf, &mut s)?;
                    if back >= i32::MAX / 2 {
                        return None;
                    }
                    back = back * 2 + b as i32;
                }
                back = !back;
                add += 1 + u32::from(back < check2) + u32::from(back < check1);
                oldback = back;
                len = 0;
            } else {
                len = (back + 1) as u32;
                back = oldback;
            }
            len = len * 2 + dl.bit(self.buf, &mut s)?;
            len = len * 2 + dl.bit(self.buf, &mut s)?;
            if len == 0 {
                len = 1;
                loop {
                    len = len.checked_mul(2)? + dl.bit(self.buf, &mut s)?;
                    if dl.bit(self.buf, &mut s)? == 0 {
                        break;
                    }
                }
                len = len.checked_add(2)?;
            }
            len = len.checked_add(add)?;
            size = size.wrapping_sub(len);
            let from = usize::try_from(o as i64 + i64::from(back)).ok()?;
            let n = len as usize;
            if n == 0 || o.checked_add(n)? > self.buf.len() || from.checked_add(n)? > self.buf.len()
            {
                return None;
            }
            for i in 0..n {
                self.buf[o + i] = self.buf[from + i];
            }
            o += n;
        }
        Some(o)
    }

    /// Petite's own code at the end of an unpacked section (its mark where the version puts
    /// it, or `skew` earlier when the program had relocations) is not the program's.
    fn strip_loader(&self, s: &mut Usect, end: usize) {
        let v = &self.version;
        let mark = |skew: u32| -> bool {
            let at = (end as i64) - i64::from(v.grown) + 5 + 0x4f - i64::from(skew);
            usize::try_from(at).ok().is_some_and(|a| {
                u32_le(self.buf, a) == Some(0x645e_c033)
                    && u32_le(self.buf, a + 4) == Some(0x1b8b_188b)
            })
        };
        let reloc = if s.rsz > v.grown && mark(0) {
            0
        } else if s.rsz > v.grown + v.skew && mark(v.skew) {
            v.skew
        } else {
            return;
        };
        let test_at = (end as i64) - i64::from(v.grown) + 0x0f - 8 - i64::from(reloc);
        if test_at >= 0 && (test_at as usize) + 8 <= self.buf.len() {
            s.rsz = s.rsz.wrapping_sub(v.grown + reloc);
        }
    }

    /// Sections by address, virtual sizes from the gaps between them, data compacted from
    /// offset 0 in table order.
    fn finish(&mut self, mut out: Vec<Usect>) -> Option<Vec<Usect>> {
        if out.is_empty() {
            return None;
        }
        out.sort_by_key(|s| s.rva);
        for t in 0..out.len() - 1 {
            out[t].vsz = out[t + 1].rva.wrapping_sub(out[t].rva);
        }
        for t in 0..out.len() {
            let prev = if t > 0 { Some(out[t - 1]) } else { None };
            out[t].raw = prev.map_or(0, |p| p.raw.wrapping_add(p.rsz));
            if out[t].rsz == 0 {
                continue;
            }
            let (to, len) = (out[t].raw as usize, out[t].rsz as usize);
            let from = self.at(out[t].rva, len as u64);
            match from {
                Some(from) if to.checked_add(len).is_some_and(|e| e <= self.buf.len()) => {
                    self.buf.copy_within(from..from + len, to);
                }
                _ => {
                    out[t].raw = prev.map_or(0, |p| p.raw);
                    out[t].rsz = 0;
                }
            }
        }
        Some(out)
    }
}

/// `inner` (start, size) lies within `outer` (start, size), both non-empty.
fn contained(outer: u32, osize: u32, inner: u32, isize: u32) -> bool {
    let (o, os, i, is) = (
        u64::from(outer),
        u64::from(osize),
        u64::from(inner),
        u64::from(isize),
    );
    os > 0 && is > 0 && is <= os && i >= o && i + is <= o + os
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe::sample::pe32;

    /// Petite's coding of `data` as literals: the first byte as it is, then a 0 bit and the
    /// byte XORed with the count left, bits in bytes read lazily (most significant first).
    fn literals(data: &[u8]) -> Vec<u8> {
        let mut out = vec![data[0]];
        for (k, &b) in data.iter().enumerate().skip(1) {
            // A byte of bits (all 0: literals) before every eighth literal.
            if (k - 1) % 8 == 0 {
                out.push(0);
            }
            out.push(b ^ (data.len() - k) as u8);
        }
        out.push(0);
        out
    }

    /// Petite 2.2's layout: `.text` at 0x1000 (no data in the file), the loader's section at
    /// 0x2000 (0xa00 bytes; the entry point, `mov eax, 0x402000`), its table at 0x1b8 naming one
    /// section packed at 0x2300.
    fn sample(data: &[u8]) -> Vec<u8> {
        let sections = [(0x1000, 0x1000, 0, 0), (0x1000, 0x2000, 0xa00, 0x600)];
        let mut d = pe32(&sections, 0x2000, 0x1000);
        let l = 0x600;
        d[l] = 0xb8;
        d[l + 1..l + 5].copy_from_slice(&0x40_2000u32.to_le_bytes());
        let t = l + 0x1b8;
        for (k, v) in [0x2300u32, data.len() as u32, 0x1000]
            .into_iter()
            .enumerate()
        {
            d[t + k * 4..t + k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let packed = literals(data);
        d[l + 0x300..l + 0x300 + packed.len()].copy_from_slice(&packed);
        d
    }

    #[test]
    fn sections_unpack_and_are_rebuilt() {
        let data: Vec<u8> = (0..0x300u32).map(|i| (i * 13 % 256) as u8).collect();
        let Unpacked::Image(img, method) = unpack(&sample(&data), 1 << 20) else {
            panic!("not unpacked");
        };
        assert_eq!(method, "Petite");
        assert_eq!(img.len(), 0x200 + 0x400);
        assert_eq!(&img[0x200..0x200 + data.len()], &data[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!(
            (h.sections[0].rva, h.sections[0].raw, h.entry),
            (0x1000, 0x200, 0x1000)
        );
    }

    #[test]
    fn limits_damage_and_lookalikes() {
        let d = sample(b"a short section");
        assert_eq!(unpack(&d, 0x1000), Unpacked::OverLimit(0x1a00));
        // A table naming a section no original section holds.
        let mut bad = d.clone();
        bad[0x600 + 0x1b8 + 8..0x600 + 0x1b8 + 12].copy_from_slice(&0x9000u32.to_le_bytes());
        assert!(matches!(unpack(&bad, 1 << 20), Unpacked::Failed));
        let mut other = d.clone();
        other[0x600] = 0x90;
        assert!(matches!(unpack(&other, 1 << 20), Unpacked::NotPacked));
        for n in [0x300, 0x700, 0x7c0, d.len() - 1] {
            let _ = unpack(&d[..n], 1 << 20);
        }
    }
}
