//! Symbian installation files (SIS, EPOC releases 3 to 6), as ClamAV reads them: a header of
//! four UIDs and counts, then file records (simple or one file per language) naming where each
//! file's bytes lie, zlib-compressed unless the header says `NoCompress`.

use super::{u16_le, u32_le};
use std::io::Read;

const UID3: u32 = 0x1000_0419;
const UID2_R3: u32 = 0x1000_006d;
const UID2_R6: u32 = 0x1000_3a12;
const OPT_UNICODE: u16 = 0x1;
const OPT_NO_COMPRESS: u16 = 0x8;

/// True when `d` starts with a SIS header.
pub fn is_sis(d: &[u8]) -> bool {
    d.len() >= 0x44 && u32_le(d, 8) == Some(UID3) && matches!(u32_le(d, 4), Some(UID2_R3 | UID2_R6))
}

/// A file an installation carries.
#[derive(Debug, PartialEq, Eq)]
pub struct File {
    /// Its destination name.
    pub name: String,
    /// Its bytes, at most the cap.
    pub data: Vec<u8>,
    /// Cut at the cap, or its bytes lie outside the file or do not inflate.
    pub cut: bool,
}

/// The files (at most `max`, each at most `cap` bytes, `total` bytes in all), and a problem
/// that stopped the reading: `(true, why)` for a limit, `(false, why)` for damage.
pub fn files(
    d: &[u8],
    max: usize,
    cap: usize,
    total: usize,
) -> (Vec<File>, Option<(bool, String)>) {
    let r6 = u32_le(d, 4) == Some(UID2_R6);
    let (Some(langs), Some(count), Some(options), Some(at)) = (
        u16_le(d, 0x12),
        u16_le(d, 0x14),
        u16_le(d, 0x24),
        u32_le(d, 0x34),
    ) else {
        return (Vec::new(), Some((false, "header cut short".into())));
    };
    let compressed = options & OPT_NO_COMPRESS == 0;
    let mut at = at as usize;
    let mut out = Vec::new();
    let mut used = 0usize;
    for _ in 0..count {
        let base = at;
        let Some(kind) = u32_le(d, base) else {
            return (out, Some((false, "file record past the end".into())));
        };
        let copies = match kind {
            0 => 1,
            1 => usize::from(langs.max(1)),
            // Option, #if and #elsif records carry a length; #else and #endif none (as ClamAV
            // reads them).
            2 => {
                let n = u32_le(d, base + 4).unwrap_or(0) as usize;
                at = (base + 8)
                    .saturating_add(n.saturating_mul(usize::from(langs)).saturating_mul(8));
                continue;
            }
            3 | 4 => {
                let n = u32_le(d, base + 4).unwrap_or(0) as usize;
                at = (base + 8).saturating_add(n);
                continue;
            }
            _ => {
                at = base + 4;
                continue;
            }
        };
        let name = name(d, base, options & OPT_UNICODE != 0);
        let lengths = base + 28;
        let ptrs = lengths + 4 * copies;
        for i in 0..copies {
            if out.len() >= max || used >= total {
                return (out, Some((true, "more files than the limits allow".into())));
            }
            let (Some(len), Some(ptr)) = (u32_le(d, lengths + 4 * i), u32_le(d, ptrs + 4 * i))
            else {
                return (out, Some((false, "file record cut short".into())));
            };
            let room = cap.min(total - used);
            let f = payload(
                d,
                ptr as usize,
                len as usize,
                compressed,
                room,
                name.clone(),
            );
            used += f.data.len();
            out.push(f);
        }
        let extra = if r6 { 4 * copies + 8 } else { 0 };
        at = ptrs + 4 * copies + extra;
    }
    (out, None)
}

fn name(d: &[u8], record: usize, unicode: bool) -> String {
    let (Some(len), Some(ptr)) = (u32_le(d, record + 20), u32_le(d, record + 24)) else {
        return String::new();
    };
    let raw = d
        .get(ptr as usize..(ptr as usize).saturating_add(len.min(1024) as usize))
        .unwrap_or_default();
    let full = if unicode {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    full.rsplit(['\\', '/'])
        .next()
        .unwrap_or_default()
        .to_string()
}

fn payload(d: &[u8], ptr: usize, len: usize, compressed: bool, cap: usize, name: String) -> File {
    let end = ptr.saturating_add(len);
    let raw = d.get(ptr..end.min(d.len())).unwrap_or_default();
    let outside = end > d.len();
    if !compressed {
        return File {
            name,
            data: raw[..raw.len().min(cap)].to_vec(),
            cut: outside || raw.len() > cap,
        };
    }
    let mut data = Vec::new();
    let failed = flate2::read::ZlibDecoder::new(raw)
        .take((cap as u64).saturating_add(1))
        .read_to_end(&mut data)
        .is_err();
    let over = data.len() > cap;
    data.truncate(cap);
    File {
        name,
        data,
        cut: outside || failed || over,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A release-6 SIS with one compressed file, laid out as ClamAV's clam.sis is.
    fn sample(payload: &[u8], record_type: u32) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(payload).unwrap();
        let packed = z.finish().unwrap();
        let mut d = vec![0u8; 0x66];
        d[0..4].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        d[4..8].copy_from_slice(&UID2_R6.to_le_bytes());
        d[8..12].copy_from_slice(&UID3.to_le_bytes());
        d[0x12..0x14].copy_from_slice(&1u16.to_le_bytes());
        d[0x14..0x16].copy_from_slice(&1u16.to_le_bytes());
        d[0x24..0x26].copy_from_slice(&OPT_UNICODE.to_le_bytes());
        d[0x34..0x38].copy_from_slice(&0x66u32.to_le_bytes());
        let name: Vec<u8> = "C:\\sys\\bin\\clam.exe"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let name_at = 0x66 + 48;
        let data_at = name_at + name.len();
        for v in [
            record_type,
            0,
            0,
            0,
            0,
            name.len() as u32,
            name_at as u32,
            packed.len() as u32,
            data_at as u32,
            payload.len() as u32,
            0,
            0,
        ] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&name);
        d.extend_from_slice(&packed);
        d
    }

    #[test]
    fn reads_compressed_files() {
        let d = sample(b"MZ the program", 0);
        assert!(is_sis(&d));
        let (files, problem) = files(&d, 10, 1 << 20, 1 << 20);
        assert_eq!(problem, None);
        assert_eq!(
            files,
            vec![File {
                name: "clam.exe".into(),
                data: b"MZ the program".to_vec(),
                cut: false
            }]
        );
        assert!(files_cut(&d[..d.len() - 4]));
        // A record type past #endif is stepped over (as ClamAV does), not a reason to stop.
        let (got, problem) = super::files(&sample(b"x", 7), 10, 100, 100);
        assert!(got.is_empty() && problem.is_none());
        let (got, problem) = super::files(&d, 10, 4, 6);
        assert_eq!(got.len(), 1);
        assert!(problem.is_none());
        assert!(matches!(super::files(&d, 0, 4, 6).1, Some((true, _))));
        assert!(!is_sis(&d[..0x40]));
    }

    fn files_cut(d: &[u8]) -> bool {
        files(d, 10, 100, 100).0.iter().all(|f| f.cut)
    }
}
