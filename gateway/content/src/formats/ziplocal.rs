//! Zip entries found by their local headers where the central directory does not list them,
//! as ClamAV's `index_local_file_headers` adds them to what the directory lists: the segments
//! of a split or spanned archive (the first, `.z01`, has no directory; the last lists entries
//! on other disks), a second archive appended after a first, and entries left out of the
//! directory that a streaming extractor would still unpack.

use super::{u16_le, u32_le};

/// The local header's magic.
pub const MAGIC: &[u8; 4] = b"PK\x03\x04";
/// Bytes of a local header before its name.
const FIXED: usize = 30;

/// One entry found by its local header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Local<'a> {
    /// Where its local header starts.
    pub offset: usize,
    /// Its name as stored (CP437 or UTF-8; lossily decoded).
    pub name: String,
    /// General purpose flags (bit 0: encrypted; bit 3: sizes in a data descriptor).
    pub flags: u16,
    /// Compression method.
    pub method: u16,
    /// Uncompressed size the header states (0 when it is in a data descriptor).
    pub size: u64,
    /// Where its data starts.
    pub data_start: usize,
    /// Its compressed data: `compressed size` bytes, or everything to the end of the file
    /// when the size is in a data descriptor (see [`Local::sized`]).
    pub data: &'a [u8],
}

impl Local<'_> {
    /// Whether the entry is encrypted.
    pub fn encrypted(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether the header gives the compressed size (no data descriptor).
    pub fn sized(&self) -> bool {
        self.flags & 8 == 0
    }
}

/// The local header at `at`, when it is plausible: version needed below 10.0, a compression
/// method zip defines, a name without NUL, and (unless its sizes follow in a data descriptor)
/// its data inside the file.
pub fn local_at(d: &[u8], at: usize) -> Option<Local<'_>> {
    if d.get(at..at.checked_add(4)?)? != MAGIC {
        return None;
    }
    let version = u16_le(d, at + 4)?;
    let flags = u16_le(d, at + 6)?;
    let method = u16_le(d, at + 8)?;
    let packed = u32_le(d, at + 18)? as usize;
    let size = u64::from(u32_le(d, at + 22)?);
    let name_len = usize::from(u16_le(d, at + 26)?);
    let extra_len = usize::from(u16_le(d, at + 28)?);
    if version >= 100 || !matches!(method, 0..=10 | 12 | 14 | 18..=20 | 93..=99) {
        return None;
    }
    let name_at = at + FIXED;
    let name = d.get(name_at..name_at + name_len)?;
    if name.is_empty() || name.contains(&0) {
        return None;
    }
    let data_start = name_at + name_len + extra_len;
    let data = if flags & 8 == 0 {
        d.get(data_start..data_start.checked_add(packed)?)?
    } else {
        d.get(data_start..)?
    };
    Some(Local {
        offset: at,
        name: String::from_utf8_lossy(name).into_owned(),
        flags,
        method,
        size,
        data_start,
        data,
    })
}

/// The plausible local headers of `d` outside the `covered` byte ranges (the entries the
/// central directory listed, as `[start, end)`), in file order, at most `max`. An entry found
/// covers its own data in turn, so a zip stored inside a stored entry is left to its own walk.
pub fn uncovered<'a>(d: &'a [u8], covered: &[(usize, usize)], max: usize) -> Vec<Local<'a>> {
    let mut ranges = covered.to_vec();
    ranges.sort_unstable();
    let mut out: Vec<Local<'a>> = Vec::new();
    let mut r = 0;
    let mut skip_to = 0;
    for at in memchr::memmem::find_iter(d, MAGIC) {
        if out.len() >= max {
            break;
        }
        while r < ranges.len() && ranges[r].1 <= at {
            r += 1;
        }
        let inside = ranges.get(r).is_some_and(|&(s, e)| s <= at && at < e);
        if inside || at < skip_to {
            continue;
        }
        if let Some(l) = local_at(d, at) {
            if l.sized() {
                skip_to = l.data_start + l.data.len();
            }
            out.push(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored local entry.
    fn stored(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend(10u16.to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h.extend([0u8; 8]);
        h.extend((body.len() as u32).to_le_bytes());
        h.extend((body.len() as u32).to_le_bytes());
        h.extend((name.len() as u16).to_le_bytes());
        h.extend(0u16.to_le_bytes());
        h.extend(name.as_bytes());
        h.extend(body);
        h
    }

    #[test]
    fn finds_entries_outside_the_covered_ranges() {
        let mut d = b"PK\x07\x08".to_vec();
        let first = d.len();
        d.extend(stored("a.txt", b"first"));
        let second = d.len();
        d.extend(stored("b.txt", b"second PK\x03\x04 inside"));
        let all = uncovered(&d, &[], 10);
        assert_eq!(
            all.len(),
            2,
            "the magic inside b.txt's data is not an entry"
        );
        assert_eq!(all[0].offset, first);
        assert_eq!(all[0].data, b"first");
        assert_eq!(all[1].name, "b.txt");
        let rest = uncovered(&d, &[(first, second)], 10);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].offset, second);
        assert_eq!(uncovered(&d, &[], 1).len(), 1, "bounded by max");
    }

    #[test]
    fn implausible_or_cut_headers_are_not_entries() {
        let mut d = stored("a.txt", b"0123456789");
        d.truncate(d.len() - 1);
        assert!(local_at(&d, 0).is_none(), "data past the end");
        let mut d = stored("a.txt", b"x");
        d[8] = 77;
        assert!(local_at(&d, 0).is_none(), "unknown method");
        assert!(local_at(b"PK\x03\x04", 0).is_none());
        assert!(local_at(&stored("", b"x"), 0).is_none(), "no name");
        let mut d = stored("a.txt", b"x");
        d[6] = 8;
        let l = local_at(&d, 0).expect("sizes in a descriptor");
        assert!(!l.sized());
        assert_eq!(l.data, b"x", "to the end of the file");
    }
}
