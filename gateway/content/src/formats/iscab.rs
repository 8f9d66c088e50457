//! InstallShield setup programs that carry their disk in the program's overlay, as ClamAV's
//! `ishield.c` reads them: records of `name\0 path\0 version\0 size-in-decimal\0` then the
//! bytes. Plain records are files; `data1.hdr` and `dataN.cab` form an InstallShield cabinet
//! (`ISc(`): the header lists every file (name, directory, size, packed size, offset in its
//! cabinet, which cabinet), and a file's bytes are raw-deflate chunks, each behind a 16-bit
//! length.

pub use super::Bounds;
use super::{u16_le, u32_le, u64_le};
/// Where the overlay of a PE file starts (after its last section's raw data), if it has one.
pub fn pe_overlay(d: &[u8]) -> Option<usize> {
    if !d.starts_with(b"MZ") {
        return None;
    }
    let pe = u32_le(d, 0x3c)? as usize;
    if d.get(pe..pe + 4)? != b"PE\0\0" {
        return None;
    }
    let sections = usize::from(u16_le(d, pe + 6)?);
    let optional = usize::from(u16_le(d, pe + 20)?);
    let table = pe + 24 + optional;
    let mut end = 0usize;
    for i in 0..sections {
        let s = table + i * 40;
        let size = u32_le(d, s + 16)? as usize;
        let ptr = u32_le(d, s + 20)? as usize;
        if size > 0 {
            end = end.max(ptr.saturating_add(size));
        }
    }
    (end > 0 && end < d.len()).then_some(end)
}

/// A file in the overlay.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its name (`setup.ini`, `data1.cab`).
    pub name: String,
    /// Its bytes.
    pub data: &'a [u8],
}

/// A NUL-terminated string of at most 2048 bytes at `at`, and where the next one starts.
fn cstr(d: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = d.get(at..)?;
    let end = memchr::memchr(0, &rest[..rest.len().min(2048)])?;
    Some((&rest[..end], at + end + 1))
}

/// The records the overlay `d` starts with (at most `max`); none when it is not a setup's.
pub fn records(d: &[u8], max: usize) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while out.len() < max {
        let Some((name, next)) = cstr(d, at) else {
            break;
        };
        let Some((_path, next)) = cstr(d, next) else {
            break;
        };
        let Some((_version, next)) = cstr(d, next) else {
            break;
        };
        let Some((size, next)) = cstr(d, next) else {
            break;
        };
        let plausible = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
        let size = std::str::from_utf8(size)
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        let (true, Some(size)) = (plausible, size) else {
            break;
        };
        let Some(data) = d.get(next..next.saturating_add(size)) else {
            break;
        };
        out.push(Record {
            name: String::from_utf8_lossy(name).into_owned(),
            data,
        });
        at = next + size;
    }
    out
}

/// `dataN.cab` → N; `data1.hdr` is the header.
pub fn cabinet_number(name: &str) -> Option<u16> {
    let lower = name.to_ascii_lowercase();
    let n = lower.strip_prefix("data")?.strip_suffix(".cab")?;
    n.parse().ok().filter(|n| *n > 0)
}

/// A file a cabinet holds.
#[derive(Debug)]
pub struct CabFile {
    /// `DIR\NAME` as the header gives them.
    pub name: String,
    /// Its bytes (at most the cap).
    pub data: Vec<u8>,
    /// Cut at the cap, or its chunks did not inflate to the end.
    pub cut: bool,
}

/// Sizes of the header's file entries and objects table.
const FILE_ITEM: usize = 87;
const HDR_MAGIC: u32 = 0x2863_5349;

/// The files `hdr` (`data1.hdr`) lists in the cabinets `cabs` (number, bytes), within `b`;
/// and a problem that stopped the reading.
pub fn cab_files(
    hdr: &[u8],
    cabs: &[(u16, &[u8])],
    b: Bounds,
) -> (Vec<CabFile>, Option<(bool, String)>) {
    let Bounds {
        max_files: max,
        cap,
        total,
    } = b;
    let mut out = Vec::new();
    if u32_le(hdr, 0) != Some(HDR_MAGIC) {
        return (out, Some((false, "no ISc( header".into())));
    }
    let Some(base) = u32_le(hdr, 12).map(|v| v as usize) else {
        return (out, Some((false, "header cut short".into())));
    };
    let (Some(dirs), Some(count), Some(dir_sz2)) = (
        u32_le(hdr, base + 0xc).map(|v| v as usize),
        u32_le(hdr, base + 0x28).map(|v| v as usize),
        u32_le(hdr, base + 0x2c).map(|v| v as usize),
    ) else {
        return (out, Some((false, "objects table cut short".into())));
    };
    let strings = base + dirs;
    let mut at = strings + dir_sz2;
    let mut used = 0usize;
    for _ in 0..count {
        let Some(item) = hdr.get(at..at + FILE_ITEM) else {
            return (out, Some((false, "file entry past the header".into())));
        };
        at += FILE_ITEM;
        // flags 4: the file is in a cabinet; bit 0 of the dup flag: a copy of an earlier one.
        if u16_le(item, 0) != Some(4) || item[84] & 1 != 0 {
            continue;
        }
        if out.len() >= max {
            return (out, Some((true, format!("more than {max} files"))));
        }
        let size = u64_le(item, 2).unwrap_or(0);
        let csize = u64_le(item, 10).unwrap_or(0) as usize;
        let offset = u64_le(item, 18).unwrap_or(0) as usize;
        let cabno = u16_le(item, 85).unwrap_or(0);
        let name_at = u32_le(item, 58).map(|o| strings.saturating_add(o as usize));
        let dir_at = u16_le(item, 62)
            .and_then(|id| u32_le(hdr, strings + 4 * usize::from(id)))
            .map(|o| strings.saturating_add(o as usize));
        let text = |at: Option<usize>| {
            at.and_then(|a| cstr(hdr, a))
                .map(|(s, _)| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default()
        };
        let (dir, name) = (text(dir_at), text(name_at));
        let name = if dir.is_empty() {
            name
        } else {
            format!("{dir}\\{name}")
        };
        if size == 0 {
            continue;
        }
        let Some(packed) = cabs
            .iter()
            .find(|(n, _)| *n == cabno)
            .and_then(|(_, c)| c.get(offset..offset.checked_add(csize)?))
        else {
            return (out, Some((false, format!("{name}: outside its cabinet"))));
        };
        let want = cap.min(total.saturating_sub(used));
        let (data, ok) = chunks(packed, want);
        used += data.len();
        let cut = !ok || (data.len() as u64) < size;
        out.push(CabFile { name, data, cut });
    }
    (out, None)
}

/// Raw-deflate chunks, each behind a little-endian 16-bit length, at most `want` bytes out:
/// (bytes, every chunk inflated).
fn chunks(mut p: &[u8], want: usize) -> (Vec<u8>, bool) {
    use std::io::Read;
    let mut out = Vec::new();
    while p.len() >= 2 && out.len() < want {
        let n = usize::from(u16::from_le_bytes([p[0], p[1]]));
        p = &p[2..];
        if n == 0 {
            continue;
        }
        let Some(chunk) = p.get(..n) else {
            return (out, false);
        };
        p = &p[n..];
        let room = (want - out.len()) as u64;
        let mut z = flate2::read::DeflateDecoder::new(chunk).take(room);
        if z.read_to_end(&mut out).is_err() {
            return (out, false);
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn bounds(max_files: usize, cap: usize, total: usize) -> Bounds {
        Bounds {
            max_files,
            cap,
            total,
        }
    }

    fn deflate(d: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(d).unwrap();
        z.finish().unwrap()
    }

    /// A header listing `files` (name, cabinet, bytes) in directory `DIR`, and the cabinets.
    fn cabinet(files: &[(&str, u16, &[u8])]) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
        let base = 0x200usize;
        let dirs = 0x100usize;
        let mut strings = vec![0u8; 4];
        let dir_name_at = strings.len();
        strings.extend_from_slice(b"DIR\0");
        strings[..4].copy_from_slice(&(dir_name_at as u32).to_le_bytes());
        let mut name_at = Vec::new();
        for (n, _, _) in files {
            name_at.push(strings.len());
            strings.extend_from_slice(n.as_bytes());
            strings.push(0);
        }
        let mut hdr = vec![0u8; base + dirs];
        hdr[..4].copy_from_slice(&HDR_MAGIC.to_le_bytes());
        hdr[12..16].copy_from_slice(&(base as u32).to_le_bytes());
        hdr[base + 0xc..base + 0x10].copy_from_slice(&(dirs as u32).to_le_bytes());
        hdr[base + 0x28..base + 0x2c].copy_from_slice(&(files.len() as u32).to_le_bytes());
        hdr[base + 0x2c..base + 0x30].copy_from_slice(&(strings.len() as u32).to_le_bytes());
        hdr.extend_from_slice(&strings);
        let mut cabs: Vec<(u16, Vec<u8>)> = Vec::new();
        for (i, (_, cab, data)) in files.iter().enumerate() {
            let packed = deflate(data);
            let mut stream = (packed.len() as u16).to_le_bytes().to_vec();
            stream.extend_from_slice(&packed);
            if !cabs.iter().any(|(n, _)| n == cab) {
                cabs.push((*cab, Vec::new()));
            }
            let c = &mut cabs.iter_mut().find(|(n, _)| n == cab).unwrap().1;
            let mut item = vec![0u8; FILE_ITEM];
            item[0..2].copy_from_slice(&4u16.to_le_bytes());
            item[2..10].copy_from_slice(&(data.len() as u64).to_le_bytes());
            item[10..18].copy_from_slice(&(stream.len() as u64).to_le_bytes());
            item[18..26].copy_from_slice(&(c.len() as u64).to_le_bytes());
            item[58..62].copy_from_slice(&(name_at[i] as u32).to_le_bytes());
            item[85..87].copy_from_slice(&cab.to_le_bytes());
            hdr.extend_from_slice(&item);
            c.extend_from_slice(&stream);
        }
        (hdr, cabs)
    }

    #[test]
    fn cabinet_files_inflate_with_their_directory() {
        let big = b"install data ".repeat(300);
        let (hdr, cabs) = cabinet(&[("readme.txt", 1, &big), ("clam.exe", 2, b"MZ payload")]);
        let cabs: Vec<(u16, &[u8])> = cabs.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let (files, problem) = cab_files(&hdr, &cabs, bounds(10, 1 << 20, 1 << 20));
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(files[0].name, "DIR\\readme.txt");
        assert_eq!(files[0].data, big);
        assert_eq!(files[1].data, b"MZ payload");
        assert!(!files[1].cut);
        let (files, _) = cab_files(&hdr, &cabs, bounds(10, 5, 1 << 20));
        assert_eq!(files[0].data, b"insta");
        assert!(files[0].cut);
        for len in 0..hdr.len() {
            let _ = cab_files(&hdr[..len], &cabs, bounds(10, 100, 1000));
        }
        let (_, problem) = cab_files(&hdr, &cabs[..1], bounds(10, 100, 1000));
        assert!(problem.is_some());
    }

    #[test]
    fn overlay_records_and_cabinet_numbers() {
        let record = |name: &str, data: &str| {
            format!("{name}\0Disk1\\{name}\x000.0.0.0\x00{}\0{data}", data.len())
        };
        let mut o = record("data1.hdr", "abc").into_bytes();
        o.extend_from_slice(record("setup.ini", "xy").as_bytes());
        o.extend_from_slice(b"\x00\x01 not a record");
        let r = records(&o, 10);
        assert_eq!(r.len(), 2);
        assert_eq!((r[1].name.as_str(), r[1].data), ("setup.ini", &b"xy"[..]));
        assert_eq!(cabinet_number("DATA2.CAB"), Some(2));
        assert_eq!(cabinet_number("data1.hdr"), None);
        assert!(records(b"garbage without NULs", 10).is_empty());
    }
}
