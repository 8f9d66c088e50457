//! ISO 9660 images (CD/DVD `.iso`, and the `.img`/`.iso` attachments used to smuggle
//! executables past mark-of-the-web): the Joliet tree when the image has one (long Unicode
//! names), then the primary volume's, as ClamAV reads both: a file only one tree lists (an
//! empty Joliet tree beside a full primary one) is still found, and a file both list is taken
//! once, under its Joliet name. Directories are read breadth first, each extent once.

use std::collections::{HashSet, VecDeque};

const SECTOR: usize = 2048;
const FIRST_DESCRIPTOR: usize = 16 * SECTOR;
/// Directories deeper than this are not followed (ISO 9660 allows 8; Joliet images go further).
const MAX_DIR_DEPTH: usize = 64;

/// True when `data` holds an ISO 9660 volume descriptor where the standard puts the first one.
pub fn is_iso(data: &[u8]) -> bool {
    data.get(FIRST_DESCRIPTOR + 1..FIRST_DESCRIPTOR + 6) == Some(b"CD001")
}

/// A file of the image.
#[derive(Debug, PartialEq, Eq)]
pub struct File<'a> {
    /// Its path from the root, `/`-separated.
    pub path: String,
    /// Its bytes (cut where the image ends: see `short`).
    pub data: &'a [u8],
    /// The image ends before the file does.
    pub short: bool,
}

/// What was read: the files (at most `max`), and why reading stopped early, if it did.
#[derive(Debug, Default)]
pub struct Listing<'a> {
    /// The files found.
    pub files: Vec<File<'a>>,
    /// A damaged structure, or the file limit.
    pub problem: Option<String>,
}

struct Root {
    extent: usize,
    len: usize,
    block: usize,
    joliet: bool,
}

/// Lists the files of the image in `data`, at most `max`.
pub fn files(data: &[u8], max: usize) -> Listing<'_> {
    let mut out = Listing::default();
    let roots = pick_roots(data);
    if roots.is_empty() {
        out.problem = Some("no primary volume descriptor".into());
        return out;
    }
    let mut taken = HashSet::new();
    for root in roots {
        if !read_tree(data, &root, max, &mut taken, &mut out) {
            break;
        }
    }
    out
}

/// Adds the files of one tree not already `taken` (by extent and length); false when the file
/// limit stopped it.
fn read_tree<'a>(
    data: &'a [u8],
    root: &Root,
    max: usize,
    taken: &mut HashSet<(usize, usize)>,
    out: &mut Listing<'a>,
) -> bool {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(root.extent, root.len, String::new(), 0usize)]);
    while let Some((extent, len, dir, depth)) = queue.pop_front() {
        if !seen.insert(extent) {
            continue;
        }
        let start = extent.saturating_mul(root.block);
        let Some(table) = data.get(start..start.saturating_add(len).min(data.len())) else {
            out.problem = Some(format!("directory {dir:?} past the end of the image"));
            continue;
        };
        for rec in records(table) {
            let path = format!("{dir}/{}", name(rec.name, root.joliet));
            if rec.dir {
                if depth < MAX_DIR_DEPTH {
                    queue.push_back((rec.extent, rec.len, path, depth + 1));
                }
                continue;
            }
            if !taken.insert((rec.extent, rec.len)) {
                continue;
            }
            if out.files.len() >= max {
                out.problem = Some(format!("more than {max} files"));
                return false;
            }
            let from = rec.extent.saturating_mul(root.block).min(data.len());
            let to = from.saturating_add(rec.len);
            out.files.push(File {
                path: path.trim_start_matches('/').to_string(),
                data: &data[from..to.min(data.len())],
                short: to > data.len(),
            });
        }
    }
    true
}

/// The Joliet supplementary descriptor's root if there is one, then the primary's.
fn pick_roots(data: &[u8]) -> Vec<Root> {
    let mut joliet = None;
    let mut primary = None;
    for i in 0..64 {
        let Some(d) = data.get(FIRST_DESCRIPTOR + i * SECTOR..FIRST_DESCRIPTOR + (i + 1) * SECTOR)
        else {
            break;
        };
        if &d[1..6] != b"CD001" || d[0] == 255 {
            break;
        }
        let block = usize::from(u16::from_le_bytes([d[128], d[129]]));
        let block = if block == 0 { SECTOR } else { block };
        let root = &d[156..190];
        let r = Root {
            extent: le32(&root[2..6]),
            len: le32(&root[10..14]),
            block,
            joliet: false,
        };
        let escape = &d[88..91];
        let is_joliet =
            d[0] == 2 && escape.starts_with(b"%/") && matches!(escape[2], b'@' | b'C' | b'E');
        if is_joliet && joliet.is_none() {
            joliet = Some(Root { joliet: true, ..r });
        } else if d[0] == 1 && primary.is_none() {
            primary = Some(r);
        }
    }
    joliet.into_iter().chain(primary).collect()
}

struct Record<'a> {
    extent: usize,
    len: usize,
    dir: bool,
    name: &'a [u8],
}

/// The records of a directory extent, without `.` and `..`. A zero length byte pads to the
/// next sector.
fn records(table: &[u8]) -> Vec<Record<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < table.len() {
        let n = usize::from(table[i]);
        if n == 0 {
            i = (i / SECTOR + 1) * SECTOR;
            continue;
        }
        let Some(r) = table.get(i..i + n).filter(|r| r.len() >= 34) else {
            break;
        };
        i += n;
        let name_len = usize::from(r[32]);
        let Some(name) = r.get(33..33 + name_len) else {
            continue;
        };
        if name == [0] || name == [1] {
            continue;
        }
        out.push(Record {
            extent: le32(&r[2..6]),
            len: le32(&r[10..14]),
            dir: r[25] & 2 != 0,
            name,
        });
    }
    out
}

fn le32(b: &[u8]) -> usize {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// A record's name: UCS-2 big-endian for Joliet, else d-characters; the `;1` version dropped.
fn name(raw: &[u8], joliet: bool) -> String {
    let s = if joliet {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(raw).into_owned()
    };
    let s = s.split(';').next().unwrap_or_default();
    let s = s.strip_suffix('.').unwrap_or(s);
    s.replace('/', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_image_and_does_not_panic() {
        assert!(!is_iso(b"CD001"));
        let mut d = vec![0u8; FIRST_DESCRIPTOR + SECTOR];
        d[FIRST_DESCRIPTOR] = 1;
        d[FIRST_DESCRIPTOR + 1..FIRST_DESCRIPTOR + 6].copy_from_slice(b"CD001");
        assert!(is_iso(&d));
        // Root extent pointing at itself and past the end.
        let root = FIRST_DESCRIPTOR + 156;
        d[root + 2..root + 6].copy_from_slice(&16u32.to_le_bytes());
        d[root + 10..root + 14].copy_from_slice(&u32::MAX.to_le_bytes());
        let l = files(&d, 10);
        assert!(l.files.is_empty());
    }

    /// A directory record: extent, length, flags, name.
    fn record(extent: u32, len: u32, dir: bool, name: &[u8]) -> Vec<u8> {
        let n = 33 + name.len() + (name.len() + 1) % 2;
        let mut r = vec![0u8; n];
        r[0] = n as u8;
        r[2..6].copy_from_slice(&extent.to_le_bytes());
        r[10..14].copy_from_slice(&len.to_le_bytes());
        r[25] = if dir { 2 } else { 0 };
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    /// An image whose Joliet tree (sector 21) is empty and whose primary tree (sector 20)
    /// lists one file (sector 22), as ClamAV's `iso_no_joliet` sample is laid out; with
    /// `both`, the Joliet tree lists the same file under a long name.
    fn image(both: bool) -> Vec<u8> {
        let mut d = vec![0u8; 23 * SECTOR];
        for (i, kind, root) in [(16usize, 1u8, 20u32), (17, 2, 21), (18, 255, 0)] {
            let v = &mut d[i * SECTOR..(i + 1) * SECTOR];
            v[0] = kind;
            v[1..6].copy_from_slice(b"CD001");
            v[128..130].copy_from_slice(&2048u16.to_le_bytes());
            if kind == 2 {
                v[88..91].copy_from_slice(b"%/E");
            }
            if kind != 255 {
                let r = record(root, SECTOR as u32, true, &[0]);
                v[156..156 + 34].copy_from_slice(&r[..34]);
            }
        }
        for (sector, own) in [(20usize, 20u32), (21, 21)] {
            let mut t = record(own, SECTOR as u32, true, &[0]);
            t.extend(record(own, SECTOR as u32, true, &[1]));
            if sector == 20 {
                t.extend(record(22, 5, false, b"EICAR.PNG;1"));
            } else if both {
                let long: Vec<u8> = "logo-long.png"
                    .encode_utf16()
                    .flat_map(u16::to_be_bytes)
                    .collect();
                t.extend(record(22, 5, false, &long));
            }
            d[sector * SECTOR..sector * SECTOR + t.len()].copy_from_slice(&t);
        }
        d[22 * SECTOR..22 * SECTOR + 5].copy_from_slice(b"hello");
        d
    }

    #[test]
    fn both_trees_are_read_and_a_shared_file_is_taken_once() {
        let d = image(false);
        let l = files(&d, 10);
        assert_eq!(l.files.len(), 1, "{l:?}");
        assert_eq!(l.files[0].path, "EICAR.PNG");
        assert_eq!(l.files[0].data, b"hello");
        let d = image(true);
        let l = files(&d, 10);
        assert_eq!(l.files.len(), 1, "{l:?}");
        assert_eq!(l.files[0].path, "logo-long.png");
    }

    #[test]
    fn names_drop_versions_and_decode_joliet() {
        assert_eq!(name(b"README.TXT;1", false), "README.TXT");
        assert_eq!(name(b"NOEXT.;1", false), "NOEXT");
        assert_eq!(name(&[0, b'a', 0x30, 0x42], true), "a\u{3042}");
    }
}
