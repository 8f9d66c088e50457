//! cpio archives in the four layouts GNU cpio and ClamAV read: `newc` and `crc` (ASCII hex
//! headers, 4-byte alignment), `odc` (ASCII octal, no alignment) and the old binary layout in
//! either byte order (2-byte alignment). Only regular files are members; the walk stops at the
//! `TRAILER!!!` entry or at the first header that does not parse.

/// The 16-bit magic of the binary layout (octal 070707).
const BIN_MAGIC: u16 = 0o070707;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Which header layout an archive uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `070701` / `070702`: SVR4 with ASCII hex fields.
    Newc,
    /// `070707`: POSIX.1 portable, ASCII octal fields.
    Odc,
    /// Old binary, little-endian words.
    BinLe,
    /// Old binary, big-endian words.
    BinBe,
}

/// The layout `data` starts with, if it is a cpio archive.
pub fn layout(data: &[u8]) -> Option<Layout> {
    if data.starts_with(b"070701") || data.starts_with(b"070702") {
        Some(Layout::Newc)
    } else if data.starts_with(b"070707") {
        Some(Layout::Odc)
    } else if data.len() >= 26 && u16::from_le_bytes([data[0], data[1]]) == BIN_MAGIC {
        Some(Layout::BinLe)
    } else if data.len() >= 26 && u16::from_be_bytes([data[0], data[1]]) == BIN_MAGIC {
        Some(Layout::BinBe)
    } else {
        None
    }
}

/// One entry of the archive.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The stored path.
    pub name: String,
    /// True for a regular file.
    pub regular: bool,
    /// The entry's bytes (cut when the archive ends early: see `short`).
    pub data: &'a [u8],
    /// The archive ended before the declared size.
    pub short: bool,
}

/// Why reading stopped before the trailer.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    /// Byte offset of the header that failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: &'static str,
}

/// Iterates the entries of a cpio archive.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `data` (which starts with a cpio header).
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            done: false,
        }
    }
}

/// The fields every layout gives.
struct Header {
    mode: u32,
    name_len: usize,
    size: usize,
    /// Bytes of the fixed header.
    fixed: usize,
    /// Alignment of the name's end and of the data's end.
    align: usize,
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<Entry<'a>, Broken>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.data.len() {
            return None;
        }
        let at = self.pos;
        let fail = |reason| Broken { offset: at, reason };
        let rest = &self.data[at..];
        let parsed = match layout(rest) {
            Some(l) => header(rest, l).ok_or("unreadable header"),
            None => Err("bad magic"),
        };
        let h = match parsed {
            Ok(h) => h,
            Err(reason) => {
                self.done = true;
                return Some(Err(fail(reason)));
            }
        };
        let name_end = h.fixed.saturating_add(h.name_len);
        let Some(raw_name) = rest.get(h.fixed..name_end) else {
            self.done = true;
            return Some(Err(fail("name past the end")));
        };
        let name_bytes = raw_name.split(|b| *b == 0).next().unwrap_or(raw_name);
        let name = String::from_utf8_lossy(name_bytes).into_owned();
        if name == "TRAILER!!!" {
            self.done = true;
            return None;
        }
        let start = align_up(name_end, h.align);
        let body = rest.get(start..).unwrap_or(&[]);
        let short = body.len() < h.size;
        let data = &body[..h.size.min(body.len())];
        self.pos = at.saturating_add(align_up(start.saturating_add(h.size), h.align));
        if short {
            self.done = true;
        }
        Some(Ok(Entry {
            name,
            regular: h.mode & S_IFMT == S_IFREG,
            data,
            short,
        }))
    }
}

fn align_up(n: usize, to: usize) -> usize {
    n.div_ceil(to).saturating_mul(to)
}

fn header(d: &[u8], layout: Layout) -> Option<Header> {
    match layout {
        Layout::Newc => {
            let f = |i: usize| ascii_num(d.get(6 + 8 * i..14 + 8 * i)?, 16);
            Some(Header {
                mode: u32::try_from(f(1)?).ok()?,
                size: usize::try_from(f(6)?).ok()?,
                name_len: usize::try_from(f(11)?).ok()?,
                fixed: 110,
                align: 4,
            })
        }
        Layout::Odc => Some(Header {
            mode: u32::try_from(ascii_num(d.get(18..24)?, 8)?).ok()?,
            name_len: usize::try_from(ascii_num(d.get(59..65)?, 8)?).ok()?,
            size: usize::try_from(ascii_num(d.get(65..76)?, 8)?).ok()?,
            fixed: 76,
            align: 1,
        }),
        Layout::BinLe | Layout::BinBe => {
            let w = |i: usize| {
                let b = [*d.get(2 * i)?, *d.get(2 * i + 1)?];
                Some(u32::from(if layout == Layout::BinLe {
                    u16::from_le_bytes(b)
                } else {
                    u16::from_be_bytes(b)
                }))
            };
            Some(Header {
                mode: w(3)?,
                name_len: w(10)? as usize,
                size: ((w(11)? << 16) | w(12)?) as usize,
                fixed: 26,
                align: 2,
            })
        }
    }
}

/// An ASCII number in `radix`, all digits (GNU cpio writes them zero-padded).
fn ascii_num(field: &[u8], radix: u32) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    if s.is_empty() || !s.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(s, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newc(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        )
        .into_bytes();
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        h.extend_from_slice(data);
        while h.len() % 4 != 0 {
            h.push(0);
        }
        h
    }

    fn odc(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "070707{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:06o}{:011o}{:06o}{:011o}",
            0,
            1,
            mode,
            0,
            0,
            1,
            0,
            0,
            name.len() + 1,
            data.len()
        )
        .into_bytes();
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        h.extend_from_slice(data);
        h
    }

    fn bin(name: &str, mode: u32, data: &[u8], le: bool) -> Vec<u8> {
        let size = data.len() as u32;
        let words: [u16; 13] = [
            BIN_MAGIC,
            0,
            1,
            mode as u16,
            0,
            0,
            1,
            0,
            0,
            0,
            (name.len() + 1) as u16,
            (size >> 16) as u16,
            size as u16,
        ];
        let mut h = Vec::new();
        for w in words {
            h.extend_from_slice(&if le { w.to_le_bytes() } else { w.to_be_bytes() });
        }
        h.extend_from_slice(name.as_bytes());
        h.push(0);
        if h.len() % 2 != 0 {
            h.push(0);
        }
        h.extend_from_slice(data);
        if h.len() % 2 != 0 {
            h.push(0);
        }
        h
    }

    fn archive(make: impl Fn(&str, u32, &[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut a = make("dir", 0o040755, b"");
        a.extend(make("dir/a.txt", 0o100644, b"hello"));
        a.extend(make("b.bin", 0o100600, b"xyz\x00\x01"));
        a.extend(make("TRAILER!!!", 0, b""));
        a.extend([0u8; 64]);
        a
    }

    fn files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
        Reader::new(data)
            .map(|e| e.unwrap())
            .filter(|e| e.regular)
            .map(|e| (e.name, e.data.to_vec()))
            .collect()
    }

    #[test]
    fn every_layout_lists_its_regular_files() {
        let want = vec![
            ("dir/a.txt".to_string(), b"hello".to_vec()),
            ("b.bin".to_string(), b"xyz\x00\x01".to_vec()),
        ];
        let cases = [
            (archive(newc), Layout::Newc),
            (archive(odc), Layout::Odc),
            (archive(|n, m, d| bin(n, m, d, true)), Layout::BinLe),
            (archive(|n, m, d| bin(n, m, d, false)), Layout::BinBe),
        ];
        for (a, l) in cases {
            assert_eq!(layout(&a), Some(l));
            assert_eq!(files(&a), want, "{l:?}");
        }
    }

    #[test]
    fn a_cut_archive_gives_what_it_has_then_stops() {
        let a = archive(newc);
        // "dir": 110 + 4 bytes of name = 116; "dir/a.txt": 110 + 10 = 120, data at 236.
        let cut = &a[..236 + 2];
        let got: Vec<_> = Reader::new(cut).collect();
        let last = got.last().unwrap().as_ref().unwrap();
        assert_eq!(last.name, "dir/a.txt");
        assert!(last.short);
        assert_eq!(last.data, b"he");
    }

    #[test]
    fn garbage_after_an_entry_is_a_broken_header() {
        let mut a = newc("x", 0o100644, b"1");
        a.extend_from_slice(b"0707019999zzzz");
        let got: Vec<_> = Reader::new(&a).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().offset, 116);
    }

    #[test]
    fn huge_declared_sizes_do_not_overflow() {
        let mut h = b"070701".to_vec();
        for i in 0..13 {
            h.extend_from_slice(if i == 6 || i == 11 {
                b"ffffffff"
            } else {
                b"00000000"
            });
        }
        let got: Vec<_> = Reader::new(&h).collect();
        assert!(got.iter().all(|e| e.is_err()));
    }
}
