//! A program rebuilt from unpacked sections, laid out as ClamAV's `cli_rebuildpe` lays it out
//! (so what an embedded-program search finds, and where each file inside ends, is the same):
//! a 0x148-byte DOS and PE header of ours, 16 data directories (the resource one kept), the
//! section table, then each section's data from a 512-byte boundary, padded to the next; a
//! section named `empty` covers the gap when the first section starts past the headers.

/// One unpacked section.
#[derive(Clone, Copy, Debug)]
pub struct Unpacked<'a> {
    /// Virtual address.
    pub rva: u32,
    /// Virtual size.
    pub vsz: u32,
    /// Its data.
    pub data: &'a [u8],
}

/// More sections than a PE holds.
const MAX_SECTIONS: usize = 96;

fn align(v: u32, a: u32) -> u32 {
    super::pe::align_up(v, a)
}

/// The program; `None` with more sections than a PE holds.
pub fn rebuild(
    sections: &[Unpacked<'_>],
    base: u32,
    entry: u32,
    resources: (u32, u32),
) -> Option<Vec<u8>> {
    rebuild_aligned(sections, base, entry, resources, 0)
}

/// [`rebuild`] with each section's sizes and address rounded up to `align` in the table (and
/// its slot in the file), its data copied as it is (ClamAV's `cli_rebuildpe_align`).
pub fn rebuild_aligned(
    sections: &[Unpacked<'_>],
    base: u32,
    entry: u32,
    resources: (u32, u32),
    align_to: u32,
) -> Option<Vec<u8>> {
    let first = sections.first()?;
    let mut count = sections.len();
    let headers = |n: usize| align((0x148 + 0x80 + 0x28 * n) as u32, 0x200);
    let ghost = first.rva > align(headers(count), 0x1000);
    if ghost {
        count += 1;
    }
    if count > MAX_SECTIONS {
        return None;
    }
    let mut raw = headers(count);
    let slot = |len: u32| align(align(len, align_to), 0x200);
    let data: usize = sections
        .iter()
        .map(|s| slot(s.data.len() as u32) as usize)
        .sum();
    let mut out = vec![0u8; raw as usize + data];
    header(&mut out, count as u16, base, entry, raw, resources);
    let mut image = align(raw, 0x1000);
    let mut table = 0x1c8;
    if ghost {
        out[table..table + 5].copy_from_slice(b"empty");
        put(&mut out, table + 8, first.rva.wrapping_sub(image));
        put(&mut out, table + 12, image);
        put(&mut out, table + 0x24, 0xffff_ffff);
        table += 40;
        image = image.wrapping_add(align(first.rva.wrapping_sub(image), 0x1000));
    }
    for (i, s) in sections.iter().enumerate() {
        let name = format!(".clam{:02}", (i + 1) % 100);
        out[table..table + name.len()].copy_from_slice(name.as_bytes());
        let len = s.data.len() as u32;
        let fields = [
            align(s.vsz, align_to),
            align(s.rva, align_to),
            align(len, align_to),
            raw,
        ];
        for (k, v) in fields.into_iter().enumerate() {
            put(&mut out, table + 8 + k * 4, v);
        }
        put(&mut out, table + 0x24, 0xffff_ffff);
        out[raw as usize..raw as usize + s.data.len()].copy_from_slice(s.data);
        table += 40;
        raw += slot(len);
        image = image.wrapping_add(align(align(s.vsz, align_to), 0x1000));
    }
    put(&mut out, 0xd0 + 0x50, image);
    out.truncate(raw as usize);
    Some(out)
}

fn put(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The DOS header and stub (0xd0 bytes), the PE and optional headers up to the directories.
fn header(out: &mut [u8], count: u16, base: u32, entry: u32, headers: u32, res: (u32, u32)) {
    out[..2].copy_from_slice(b"MZ");
    out[0x18] = 0x40;
    out[0x3c] = 0xd0;
    let note = b"Rebuilt by Sekisho from a packed program for scanning; never run it.\r\n$";
    out[0x40..0x40 + note.len()].copy_from_slice(note);
    let pe = 0xd0;
    out[pe..pe + 4].copy_from_slice(b"PE\0\0");
    let put16 = |o: &mut [u8], at: usize, v: u16| o[at..at + 2].copy_from_slice(&v.to_le_bytes());
    put16(out, pe + 4, 0x14c);
    put16(out, pe + 6, count);
    out[pe + 8..pe + 12].copy_from_slice(b"CLAM");
    put16(out, pe + 20, 0xe0);
    put16(out, pe + 22, 0x8f83);
    let opt = pe + 24;
    put16(out, opt, 0x10b);
    for (at, v) in [
        (4, 0x1000),     // SizeOfCode
        (8, 0x1000),     // SizeOfInitializedData
        (16, entry),     // AddressOfEntryPoint
        (20, 0x1000),    // BaseOfCode
        (24, 0x1000),    // BaseOfData
        (28, base),      // ImageBase
        (32, 0x1000),    // SectionAlignment
        (36, 0x200),     // FileAlignment
        (60, headers),   // SizeOfHeaders
        (72, 0x10_0000), // SizeOfStackReserve
        (76, 0x1000),    // SizeOfStackCommit
        (80, 0x10_0000), // SizeOfHeapReserve
        (84, 0x1000),    // SizeOfHeapCommit
        (92, 16),        // NumberOfRvaAndSizes
        (0x70, res.0),   // resource directory
        (0x74, res.1),
    ] {
        put(out, opt + at, v);
    }
    put16(out, opt + 40, 1); // OS version 1.0
    put16(out, opt + 48, 3); // subsystem version 3.10
    put16(out, opt + 50, 10);
    put16(out, opt + 68, 2); // GUI
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::pe;

    #[test]
    fn sections_follow_the_headers_on_512_byte_boundaries() {
        let a = vec![1u8; 0x300];
        let b = vec![2u8; 0x10];
        let secs = [
            Unpacked {
                rva: 0x1000,
                vsz: 0x1000,
                data: &a,
            },
            Unpacked {
                rva: 0x2000,
                vsz: 0x1000,
                data: &b,
            },
        ];
        let img = rebuild(&secs, 0x40_0000, 0x1000, (0x2000, 0x10)).unwrap();
        // Headers to 0x400, then 0x300 bytes padded to 0x400, then 0x10 padded to 0x200.
        assert_eq!(img.len(), 0x400 + 0x400 + 0x200);
        assert_eq!(&img[0x400..0x700], &a[..]);
        assert_eq!(&img[0x800..0x810], &b[..]);
        let h = pe::parse(&img).unwrap();
        assert_eq!((h.entry, h.sections.len()), (0x1000, 2));
        assert_eq!((h.sections[1].raw, h.sections[1].ursz), (0x800, 0x10));
        // A first section far above the headers gets an `empty` one before it.
        let far = [Unpacked {
            rva: 0x8000,
            vsz: 0x1000,
            data: &b,
        }];
        let img = rebuild(&far, 0x40_0000, 0x8000, (0, 0)).unwrap();
        let h = pe::parse(&img).unwrap();
        assert_eq!(h.sections.len(), 2);
        assert_eq!(&img[0x1c8..0x1cd], b"empty");
        assert!(rebuild(&[], 0, 0, (0, 0)).is_none());
    }
}
