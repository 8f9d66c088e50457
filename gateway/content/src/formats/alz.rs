//! ALZip archives (`.alz`, ESTsoft's format, common in Korea), read as ClamAV's `alz.rs` and
//! unalz read them: an `ALZ\x01` file header, then records each led by a signature: a local
//! file header (`BLZ\x01`) with its data, central directory records (`CLZ\x01`, skipped) and
//! the end (`CLZ\x02`). Methods: 0 stored, 1 bzip2, 2 raw deflate (decoded by the walker).
//! No maintained crate reads the format, hence this reader; it only slices, so every size is
//! checked against the file.

use super::{u16_le, u32_le};

/// The file header's magic.
pub const MAGIC: &[u8; 4] = b"ALZ\x01";
const LOCAL: &[u8; 4] = b"BLZ\x01";
const CENTRAL: &[u8; 4] = b"CLZ\x01";
const END: &[u8; 4] = b"CLZ\x02";
/// Bytes of the check block before an encrypted entry's data.
const ENCRYPTION_HEADER: usize = 12;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its name as stored (lossily decoded; ALZip writes the system code page).
    pub name: String,
    /// 0 stored, 1 bzip2, 2 deflate.
    pub method: u8,
    /// Encrypted with a password.
    pub encrypted: bool,
    /// Sizes in a data descriptor (no ALZip reader supports it).
    pub descriptor: bool,
    /// A directory.
    pub directory: bool,
    /// Its packed bytes.
    pub packed: &'a [u8],
    /// The size it unpacks to.
    pub size: u64,
}

/// True when `d` starts with an ALZ file header.
pub fn is_alz(d: &[u8]) -> bool {
    d.starts_with(MAGIC) && d.len() >= 8
}

/// The entries of the archive, at most `max`, and why the listing stopped early: `(true, why)`
/// more than `max`, `(false, why)` damage (an unknown record, an entry past the end).
pub fn entries(d: &[u8], max: usize) -> (Vec<Entry<'_>>, Option<(bool, String)>) {
    let mut out = Vec::new();
    let mut at = 8;
    while let Some(sig) = d.get(at..at + 4) {
        at += 4;
        match sig {
            s if s == LOCAL => {
                if out.len() >= max {
                    return (out, Some((true, format!("more than {max} entries"))));
                }
                match local(d, at) {
                    Ok((e, next)) => {
                        out.push(e);
                        at = next;
                    }
                    Err(why) => return (out, Some((false, why))),
                }
            }
            // A directory record: 8 bytes (ClamAV and unalz skip them).
            s if s == CENTRAL => at += 8,
            s if s == END => return (out, None),
            _ => {
                let why = format!("unknown record at offset {}", at - 4);
                return (out, Some((false, why)));
            }
        }
    }
    (out, None)
}

/// The local file header at `at` (after its signature): the entry and where the next record
/// starts.
fn local(d: &[u8], at: usize) -> Result<(Entry<'_>, usize), String> {
    let cut = || format!("entry at offset {} cut short", at - 4);
    let name_len = usize::from(u16_le(d, at).ok_or_else(cut)?);
    let attr = *d.get(at + 2).ok_or_else(cut)?;
    let descriptor = *d.get(at + 7).ok_or_else(cut)?;
    if name_len == 0 {
        return Err(format!("entry at offset {} has no name", at - 4));
    }
    let mut p = at + 9;
    let width = usize::from(descriptor >> 4);
    let (method, packed_len, size) = match width {
        0 => (0, 0, 0),
        1 | 2 | 4 | 8 => {
            let method = *d.get(p).ok_or_else(cut)?;
            p += 6; // method, a byte ALZip leaves unexplained, CRC-32
            let packed = sized(d, p, width).ok_or_else(cut)?;
            let size = sized(d, p + width, width).ok_or_else(cut)?;
            p += 2 * width;
            (method, packed, size)
        }
        w => return Err(format!("entry at offset {}: size width {w}", at - 4)),
    };
    let name = d.get(p..p + name_len).ok_or_else(cut)?;
    p += name_len;
    let encrypted = descriptor & 1 != 0;
    if encrypted {
        p += ENCRYPTION_HEADER;
    }
    let end = usize::try_from(packed_len)
        .ok()
        .and_then(|n| p.checked_add(n))
        .filter(|&e| e <= d.len())
        .ok_or_else(cut)?;
    let entry = Entry {
        name: String::from_utf8_lossy(name).into_owned(),
        method,
        encrypted,
        descriptor: descriptor & 8 != 0,
        directory: attr & 0x10 != 0,
        packed: &d[p..end],
        size,
    };
    Ok((entry, end))
}

/// A little-endian size of `width` bytes (1, 2, 4 or 8).
fn sized(d: &[u8], at: usize, width: usize) -> Option<u64> {
    Some(match width {
        1 => u64::from(*d.get(at)?),
        2 => u64::from(u16_le(d, at)?),
        4 => u64::from(u32_le(d, at)?),
        _ => u64::from_le_bytes(d.get(at..at + 8)?.try_into().ok()?),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An archive of stored entries, with a central record and the end marker, as ALZip
    /// lays them out (4-byte sizes).
    pub(crate) fn alz_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.extend(10u32.to_le_bytes());
        for (name, body) in entries {
            d.extend(LOCAL);
            d.extend((name.len() as u16).to_le_bytes());
            d.push(0x20);
            d.extend([0u8; 4]);
            d.push(0x40);
            d.push(0);
            d.push(0);
            d.push(0);
            d.extend(crc32fast::hash(body).to_le_bytes());
            d.extend((body.len() as u32).to_le_bytes());
            d.extend((body.len() as u32).to_le_bytes());
            d.extend(name.as_bytes());
            d.extend(*body);
        }
        d.extend(CENTRAL);
        d.extend([0u8; 8]);
        d.extend(END);
        d
    }

    #[test]
    fn lists_entries_and_their_data() {
        let d = alz_of(&[("a/one.txt", b"first"), ("two.bin", b"second entry")]);
        assert!(is_alz(&d));
        let (e, problem) = entries(&d, 10);
        assert_eq!(problem, None);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "a/one.txt");
        assert_eq!(e[1].packed, b"second entry");
        assert_eq!(e[1].size, 12);
        let (e, problem) = entries(&d, 1);
        assert_eq!(e.len(), 1);
        assert!(problem.is_some_and(|(limit, p)| limit && p.contains("more than 1")));
    }

    #[test]
    fn damage_stops_the_listing_with_a_reason() {
        let d = alz_of(&[("a.txt", b"0123456789")]);
        let (e, problem) = entries(&d[..d.len() - 20], 10);
        assert!(e.is_empty() && problem.is_some(), "data past the end");
        let mut bad = d.clone();
        bad[8] = b'X';
        assert!(entries(&bad, 10)
            .1
            .is_some_and(|(_, p)| p.contains("unknown record")));
        let mut wide = d.clone();
        wide[19] = 0x30;
        assert!(entries(&wide, 10).1.is_some(), "a 3-byte size width");
        assert!(!is_alz(b"ALZ\x01"));
        for n in 0..d.len() {
            let _ = entries(&d[..n], 10);
        }
    }
}
