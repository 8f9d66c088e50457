//! The PE header fields an unpacker and the embedded-program search need, read as ClamAV's
//! `cli_peheader` reads them: section addresses and sizes aligned (virtual to the section
//! alignment, raw to the file alignment, falling back to 512 when a section breaks the declared
//! one), raw extents clipped to the file, and the entry point's file offset.

use super::{u16_le, u32_le, u64_le};

/// One section, aligned and clipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Virtual address (aligned down to the section alignment).
    pub rva: u32,
    /// Virtual size (aligned up; the raw size when the header gives none).
    pub vsz: u32,
    /// File offset of its data (aligned down to the file alignment).
    pub raw: u32,
    /// Bytes of data in the file (aligned up, clipped to the file; 0 when outside it).
    pub rsz: u32,
    /// `SizeOfRawData` as written, clipped to the file from `PointerToRawData`.
    pub ursz: u32,
}

/// A PE's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Headers {
    /// File offset of `PE\0\0`.
    pub pe_offset: usize,
    /// Entry point RVA.
    pub entry: u32,
    /// ImageBase (PE32 and PE32+).
    pub image_base: u64,
    /// The sections in header order.
    pub sections: Vec<Section>,
}

/// What an unpacker ([`super::upx`], [`super::wwpack`]) made of a program.
#[derive(Debug, PartialEq, Eq)]
pub enum Unpacked {
    /// Not that packer's layout (or not a PE).
    NotPacked,
    /// The layout is there but no method decoded it.
    Failed,
    /// The unpacked image would be larger than the cap (its size).
    OverLimit(u64),
    /// The unpacked image, and the method that gave it.
    Image(Vec<u8>, &'static str),
}

/// The program as loaded, `size` bytes: its first `head` bytes (the headers), then each
/// section's data (its aligned extent) at its address; `None` when one does not fit.
pub fn map(d: &[u8], sections: &[Section], head: usize, size: usize) -> Option<Vec<u8>> {
    let mut image = vec![0u8; size];
    image.get_mut(..head)?.copy_from_slice(d.get(..head)?);
    for s in sections.iter().filter(|s| s.rsz != 0) {
        let (at, len, raw) = (s.rva as usize, s.rsz as usize, s.raw as usize);
        image
            .get_mut(at..at.checked_add(len)?)?
            .copy_from_slice(d.get(raw..raw + len)?);
    }
    Some(image)
}

/// Sections beyond this are refused (the format's own limit).
const MAX_SECTIONS: usize = 96;

/// `o` rounded down to a multiple of `a` (unchanged when `a` is 0).
pub fn align_down(o: u32, a: u32) -> u32 {
    o.checked_div(a).map_or(o, |q| q * a)
}

/// `o` rounded up to a multiple of `a` (unchanged when `a` is 0), saturating.
pub fn align_up(o: u32, a: u32) -> u32 {
    if a == 0 || o % a == 0 {
        o
    } else {
        (o / a).saturating_add(1).saturating_mul(a)
    }
}

/// Reads the headers of the PE `d` starts with; `None` when it is none.
pub fn parse(d: &[u8]) -> Option<Headers> {
    if !d.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_le(d, 0x3c)? as usize;
    if d.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let count = u16_le(d, pe + 6)? as usize;
    let opt_size = u16_le(d, pe + 20)? as usize;
    let opt = pe + 24;
    let (entry, image_base) = match u16_le(d, opt)? {
        0x10b => (u32_le(d, opt + 16)?, u64::from(u32_le(d, opt + 28)?)),
        0x20b => (u32_le(d, opt + 16)?, u64_le(d, opt + 24)?),
        _ => return None,
    };
    if count == 0 || count > MAX_SECTIONS {
        return None;
    }
    let salign = u32_le(d, opt + 32)?;
    let declared = u32_le(d, opt + 36)?;
    let table = opt + opt_size;
    let raw_headers: Vec<[u32; 4]> = (0..count)
        .map(|i| {
            let at = table + i * 40;
            Some([
                u32_le(d, at + 8)?,
                u32_le(d, at + 12)?,
                u32_le(d, at + 16)?,
                u32_le(d, at + 20)?,
            ])
        })
        .collect::<Option<_>>()?;
    let falign = file_alignment(declared, &raw_headers);
    let fsize = u32::try_from(d.len()).unwrap_or(u32::MAX);
    let sections = raw_headers
        .iter()
        .map(|&[vsize, va, rsize, ptr]| section(vsize, va, rsize, ptr, salign, falign, fsize))
        .collect();
    Some(Headers {
        pe_offset: pe,
        entry,
        image_base,
        sections,
    })
}

/// The file alignment, or 512 when a section's data sits off it but on a 512 boundary.
fn file_alignment(declared: u32, raw_headers: &[[u32; 4]]) -> u32 {
    let off = |&[_, _, rsize, ptr]: &[u32; 4]| {
        declared != 0 && rsize != 0 && ptr % declared != 0 && ptr % 0x200 == 0
    };
    if declared != 0x200 && raw_headers.iter().any(off) {
        0x200
    } else {
        declared
    }
}

fn section(
    vsize: u32,
    va: u32,
    rsize: u32,
    ptr: u32,
    salign: u32,
    falign: u32,
    fsize: u32,
) -> Section {
    let mut s = Section {
        rva: align_down(va, salign),
        vsz: align_up(vsize, salign),
        raw: align_down(ptr, falign),
        rsz: align_up(rsize, falign),
        ursz: rsize.min(fsize.saturating_sub(ptr)),
    };
    if s.rsz != 0 {
        if s.raw >= fsize || ptr >= fsize {
            s.rsz = 0;
        } else if u64::from(s.raw) + u64::from(s.rsz) > u64::from(fsize) {
            s.rsz = fsize - s.raw;
        }
    }
    if s.vsz == 0 && s.rsz != 0 {
        s.vsz = align_up(s.ursz, salign);
    }
    s
}

impl Headers {
    /// The bytes at the entry point, at most 4 KiB as ClamAV reads them; empty when the entry
    /// point is in no section's data.
    pub fn entry_code<'a>(&self, d: &'a [u8]) -> &'a [u8] {
        self.raw_offset(self.entry)
            .and_then(|at| d.get(at..(at + 4096).min(d.len())))
            .unwrap_or_default()
    }

    /// The first section with no data in the file but a virtual size and the filled one after
    /// it: the layout UPX, FSG and MEW leave (the unpacked image goes to the first).
    pub fn packed_pair(&self) -> Option<(Section, Section)> {
        self.sections
            .windows(2)
            .find(|w| w[0].rsz == 0 && w[0].vsz != 0 && w[1].rsz != 0 && w[1].vsz != 0)
            .map(|w| (w[0], w[1]))
    }

    /// The file offset of `rva` in a section's raw data (the last section that holds it).
    pub fn raw_offset(&self, rva: u32) -> Option<usize> {
        self.sections.iter().rev().find_map(|s| {
            let into = rva.checked_sub(s.rva)?;
            (s.rsz != 0 && into < s.rsz).then(|| (s.raw + into) as usize)
        })
    }
}

/// PE samples for tests.
#[cfg(test)]
pub(crate) mod sample {
    /// A PE32 with `sections` as (vsize, va, rsize, ptr), file alignment 0x200.
    pub fn pe32(sections: &[(u32, u32, u32, u32)], entry: u32, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len.max(0x400)];
        d[..2].copy_from_slice(b"MZ");
        d[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        d[0x84..0x86].copy_from_slice(&0x14cu16.to_le_bytes());
        d[0x86..0x88].copy_from_slice(&(sections.len() as u16).to_le_bytes());
        d[0x94..0x96].copy_from_slice(&0xe0u16.to_le_bytes());
        let opt = 0x98;
        d[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        d[opt + 16..opt + 20].copy_from_slice(&entry.to_le_bytes());
        d[opt + 28..opt + 32].copy_from_slice(&0x400000u32.to_le_bytes());
        d[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes());
        d[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes());
        for (i, (vs, va, rs, ptr)) in sections.iter().enumerate() {
            let at = opt + 0xe0 + i * 40;
            for (k, v) in [vs, va, rs, ptr].iter().enumerate() {
                d[at + 8 + k * 4..at + 12 + k * 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::sample::pe32;
    use super::*;

    #[test]
    fn sections_are_aligned_clipped_and_located() {
        let d = pe32(
            &[(0x3000, 0x1000, 0, 0), (0x800, 0x4000, 0x300, 0x400)],
            0x4010,
            0x600,
        );
        let h = parse(&d).unwrap();
        assert_eq!(
            (h.entry, h.image_base, h.pe_offset),
            (0x4010, 0x400000, 0x80)
        );
        assert_eq!(
            h.sections,
            vec![
                Section {
                    rva: 0x1000,
                    vsz: 0x3000,
                    raw: 0,
                    rsz: 0,
                    ursz: 0
                },
                // 0x300 rounds up to 0x400 and is clipped to the file's 0x600 bytes.
                Section {
                    rva: 0x4000,
                    vsz: 0x1000,
                    raw: 0x400,
                    rsz: 0x200,
                    ursz: 0x200
                },
            ]
        );
        assert_eq!(h.raw_offset(0x4010), Some(0x410));
        assert_eq!(h.raw_offset(0x1000), None);
    }

    #[test]
    fn non_pe_and_broken_headers_are_none() {
        assert!(parse(b"MZ").is_none());
        assert!(parse(b"\x7fELF").is_none());
        let mut d = pe32(&[(0x1000, 0x1000, 0x200, 0x200)], 0x1000, 0x400);
        d[0x3c] = 0xf0;
        assert!(parse(&d).is_none());
        assert_eq!(align_up(u32::MAX, 0x1000), u32::MAX);
    }
}
