//! ARJ archives (ARJ 2.x and the open-source ARJ 3), read as `unarj` and ClamAV's `unarj.c`
//! read them: a main header, then one local header per file, each introduced by `0x60 0xEA`
//! and a basic header guarded by a CRC-32, followed by extended headers and the packed bytes.
//!
//! Methods: 0 stores; 1 to 3 are LZSS with static Huffman codes, the scheme LHA calls
//! `-lh6-`/`-lh7-` (decoded by the maintained `delharc` crate); 4 ("fastest") is ARJ's own
//! LZSS with unary-prefixed lengths and pointers, decoded here. Garbled (password) members are
//! reported, never guessed.

use super::u32_le;
use delharc::decode::{Decoder, Lh7Decoder};

const MAGIC: [u8; 2] = [0x60, 0xea];
/// The largest basic header ARJ writes.
const MAX_HEADER: usize = 2600;
/// Fixed part of a local header, up to the file name.
const LOCAL_FIXED: usize = 30;
const FLAG_GARBLED: u8 = 0x01;
const TYPE_MAIN: u8 = 2;
const TYPE_DIRECTORY: u8 = 3;
const TYPE_VOLUME_LABEL: u8 = 4;
/// Extended headers read after one basic header before the member counts as corrupt.
const MAX_EXTENDED: usize = 64;

/// A basic header at `at`: its bytes and where what follows it starts. `Ok(None)` is the
/// end-of-archive marker (a header of size 0).
fn header(d: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, String> {
    let h = d.get(at..at + 4).ok_or("header past the end")?;
    if h[..2] != MAGIC {
        return Err(format!("no header signature at byte {at}"));
    }
    let size = usize::from(u16::from_le_bytes([h[2], h[3]]));
    if size == 0 {
        return Ok(None);
    }
    if size > MAX_HEADER {
        return Err(format!("header of {size} bytes at byte {at}"));
    }
    let basic = d
        .get(at + 4..at + 4 + size)
        .ok_or("header cut short".to_string())?;
    let crc = u32_le(d, at + 4 + size).ok_or("header CRC cut short")?;
    if crc32fast::hash(basic) != crc {
        return Err(format!("header CRC mismatch at byte {at}"));
    }
    let mut next = at + 4 + size + 4;
    for _ in 0..=MAX_EXTENDED {
        let ext = d.get(next..next + 2).ok_or("extended header cut short")?;
        let ext = usize::from(u16::from_le_bytes([ext[0], ext[1]]));
        next += 2;
        if ext == 0 {
            return Ok(Some((basic, next)));
        }
        next += ext + 4;
    }
    Err(format!("more than {MAX_EXTENDED} extended headers"))
}

/// True when `d` starts with an ARJ main header (file type 2, ClamAV's `60ea{7}02`) whose CRC
/// holds. The type is looked at before the CRC is taken.
pub fn is_arj(d: &[u8]) -> bool {
    d.starts_with(&MAGIC) && d.get(10) == Some(&TYPE_MAIN) && matches!(header(d, 0), Ok(Some(_)))
}

/// A file an archive holds.
#[derive(Debug)]
pub struct Member<'a> {
    /// Its stored name.
    pub name: String,
    /// Compression method (0 to 4 are known).
    pub method: u8,
    /// Garbled with a password.
    pub encrypted: bool,
    /// The packed bytes (fewer than declared when the archive is cut: see `short`).
    pub packed: &'a [u8],
    /// The size it unpacks to.
    pub size: u32,
    /// CRC-32 of the unpacked bytes.
    pub crc: u32,
    /// The packed bytes run past the end of the archive.
    pub short: bool,
}

/// The members of the archive `d` starts with, in order; an error ends the walk.
pub fn members(d: &[u8]) -> Members<'_> {
    Members {
        d,
        at: 0,
        main: true,
        done: false,
    }
}

/// Iterator over an archive's members (see [`members`]).
pub struct Members<'a> {
    d: &'a [u8],
    at: usize,
    main: bool,
    done: bool,
}

impl<'a> Iterator for Members<'a> {
    type Item = Result<Member<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let parsed = header(self.d, self.at);
            let (basic, next) = match parsed {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            if std::mem::take(&mut self.main) {
                self.at = next;
                continue;
            }
            let member = local(self.d, basic, next);
            match member {
                Ok((m, after)) => {
                    self.at = after;
                    if let Some(m) = m {
                        return Some(Ok(m));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.done = true;
        None
    }
}

/// A local header's member (none for directories and volume labels) and where the next
/// header starts.
fn local<'a>(
    d: &'a [u8],
    basic: &[u8],
    data: usize,
) -> Result<(Option<Member<'a>>, usize), String> {
    let first = usize::from(basic[0]);
    if basic.len() < LOCAL_FIXED || first < LOCAL_FIXED || first > basic.len() {
        return Err("local header too short".into());
    }
    let packed_len = u32_le(basic, 12).unwrap_or(0) as usize;
    let end = data.saturating_add(packed_len);
    let packed = &d[data.min(d.len())..end.min(d.len())];
    if matches!(basic[6], TYPE_DIRECTORY | TYPE_VOLUME_LABEL) {
        return Ok((None, end));
    }
    let name_bytes = &basic[first..];
    let name_end = name_bytes
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(name_bytes.len());
    let member = Member {
        name: String::from_utf8_lossy(&name_bytes[..name_end]).into_owned(),
        method: basic[5],
        encrypted: basic[4] & FLAG_GARBLED != 0,
        packed,
        size: u32_le(basic, 16).unwrap_or(0),
        crc: u32_le(basic, 20).unwrap_or(0),
        short: end > d.len(),
    };
    Ok((Some(member), end))
}

/// What unpacking a member gave.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// The bytes (at most the cap).
    pub data: Vec<u8>,
    /// Stopped at the cap before the member's size.
    pub over_cap: bool,
    /// Why unpacking stopped early or failed its check.
    pub error: Option<String>,
}

/// Unpacks `m`, at most `cap` bytes, and checks its CRC when it was unpacked whole.
pub fn unpack(m: &Member<'_>, cap: usize) -> Unpacked {
    let want = (m.size as usize).min(cap);
    let mut out = Unpacked {
        over_cap: (m.size as usize) > cap,
        ..Unpacked::default()
    };
    let result = match m.method {
        0 => {
            out.data = m.packed[..want.min(m.packed.len())].to_vec();
            (out.data.len() < want)
                .then(|| "stored data cut short".to_string())
                .map_or(Ok(()), Err)
        }
        1..=3 => lzh(m.packed, want, &mut out.data),
        4 => fastest(m.packed, want, &mut out.data),
        n => Err(format!("unknown method {n}")),
    };
    if let Err(e) = result {
        out.error = Some(e);
    } else if !out.over_cap && crc32fast::hash(&out.data) != m.crc {
        out.error = Some("CRC mismatch".into());
    }
    out
}

/// Methods 1 to 3: LZSS over a 26,624-byte window with static Huffman codes in blocks, the
/// layout of LHA's `-lh7-` (510 literal/length codes, 17 position codes).
/// A panic in the decoder is taken for damage, like any other decoding error.
fn lzh(packed: &[u8], want: usize, out: &mut Vec<u8>) -> Result<(), String> {
    let run = std::panic::AssertUnwindSafe(|| lzh_blocks(packed, want, out));
    std::panic::catch_unwind(run).unwrap_or_else(|_| Err("packed data: decoder failed".into()))
}

fn lzh_blocks(packed: &[u8], want: usize, out: &mut Vec<u8>) -> Result<(), String> {
    const STEP: usize = 16 << 10;
    let mut dec = Lh7Decoder::new(packed);
    let mut buf = vec![0u8; STEP.min(want)];
    while out.len() < want {
        let n = STEP.min(want - out.len());
        dec.fill_buffer(&mut buf[..n])
            .map_err(|e| format!("packed data: {e:?}"))?;
        out.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// MSB-first bits, as ARJ's `fill_buf` reads them; a few zero bits past the end are allowed
/// (the decoder's look-ahead), more is a cut stream.
struct Bits<'a> {
    d: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> Result<usize, String> {
        let mut v = 0usize;
        for _ in 0..n {
            let byte = self.pos / 8;
            let bit = match self.d.get(byte) {
                Some(b) => (b >> (7 - self.pos % 8)) & 1,
                None if byte < self.d.len() + 2 => 0,
                None => return Err("packed data ends early".into()),
            };
            v = (v << 1) | usize::from(bit);
            self.pos += 1;
        }
        Ok(v)
    }

    /// A value coded as a run of 1 bits (each adding the next power of two from `2^start`),
    /// a 0 unless the run reaches `stop`, then `width` bits.
    fn unary(&mut self, start: u32, stop: u32) -> Result<usize, String> {
        let (mut plus, mut pwr, mut width) = (0usize, 1usize << start, start);
        while width < stop {
            if self.get(1)? == 0 {
                break;
            }
            plus += pwr;
            pwr <<= 1;
            width += 1;
        }
        Ok(self.get(width)? + plus)
    }
}

/// Method 4: a length (0 for a literal byte), then for a match a pointer back into the window.
fn fastest(packed: &[u8], want: usize, out: &mut Vec<u8>) -> Result<(), String> {
    const THRESHOLD: usize = 3;
    let mut bits = Bits { d: packed, pos: 0 };
    while out.len() < want {
        let len = bits.unary(0, 7)?;
        if len == 0 {
            out.push(bits.get(8)? as u8);
            continue;
        }
        let back = bits.unary(9, 13)? + 1;
        let from = out
            .len()
            .checked_sub(back)
            .ok_or("match points before the start")?;
        for i in 0..(len - 1 + THRESHOLD).min(want - out.len()) {
            out.push(out[from + i]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A basic header block: magic, size, bytes, CRC, no extended headers.
    fn block(basic: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&(basic.len() as u16).to_le_bytes());
        v.extend_from_slice(basic);
        v.extend_from_slice(&crc32fast::hash(basic).to_le_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    }

    fn fixed(kind: u8, method: u8, flags: u8, packed: u32, size: u32, crc: u32) -> Vec<u8> {
        let mut b = vec![LOCAL_FIXED as u8, 11, 1, 2, flags, method, kind, 0];
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&packed.to_le_bytes());
        b.extend_from_slice(&size.to_le_bytes());
        b.extend_from_slice(&crc.to_le_bytes());
        b.extend_from_slice(&[0; 6]);
        b
    }

    /// (name, method, flags, packed bytes, plain bytes).
    type Spec<'a> = (&'a str, u8, u8, &'a [u8], &'a [u8]);

    fn archive(members: &[Spec<'_>]) -> Vec<u8> {
        let mut main = fixed(TYPE_MAIN, 0, 0, 0, 0, 0);
        main.extend_from_slice(b"t.arj\0\0");
        let mut a = block(&main);
        for (name, method, flags, packed, plain) in members {
            let crc = crc32fast::hash(plain);
            let mut h = fixed(
                0,
                *method,
                *flags,
                packed.len() as u32,
                plain.len() as u32,
                crc,
            );
            h.extend_from_slice(name.as_bytes());
            h.extend_from_slice(b"\0\0");
            a.extend_from_slice(&block(&h));
            a.extend_from_slice(packed);
        }
        a.extend_from_slice(&[0x60, 0xea, 0, 0]);
        a
    }

    #[test]
    fn stored_members_and_crc() {
        let a = archive(&[
            ("a.txt", 0, 0, b"hello", b"hello"),
            ("b", 0, 0, b"xy", b"xz"),
        ]);
        assert!(is_arj(&a));
        let got: Vec<_> = members(&a).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name, "a.txt");
        let u = unpack(&got[0], 100);
        assert_eq!(u.data, b"hello");
        assert!(u.error.is_none() && !u.over_cap);
        assert_eq!(unpack(&got[1], 100).error.as_deref(), Some("CRC mismatch"));
        let cut = unpack(&got[0], 3);
        assert_eq!(cut.data, b"hel");
        assert!(cut.over_cap && cut.error.is_none());
    }

    #[test]
    fn bad_crc_wrong_magic_and_cut_archives_are_errors() {
        let mut a = archive(&[("a", 0, 0, b"hello", b"hello")]);
        assert!(!is_arj(b"\x60\xea\x05\x00abc"));
        assert!(!is_arj(b"PK\x03\x04"));
        for len in 0..a.len() {
            let _ = members(&a[..len]).count();
        }
        let at = a.len() - 12;
        a[at] ^= 0xff;
        assert!(members(&a).any(|m| m.is_err()));
    }

    #[test]
    fn garbled_members_are_marked() {
        let a = archive(&[("s", 0, FLAG_GARBLED, b"zzz", b"abc")]);
        let m = members(&a).next().unwrap().unwrap();
        assert!(m.encrypted);
    }

    /// Method 4 by hand: literals `a` `b` `c`, then a match of length 4 at distance 3.
    #[test]
    fn fastest_literals_and_matches() {
        let mut bits = String::new();
        for c in b"abc" {
            bits.push('0');
            bits.push_str(&format!("{c:08b}"));
        }
        // length code 2 → "10" + 1 bit (value 1, plus 1) → 2; copies 2 - 1 + 3 = 4 bytes.
        bits.push_str("101");
        // pointer 2 (back 3): "0" then 9 bits of 2.
        bits.push_str("0000000010");
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let packed: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        let mut out = Vec::new();
        fastest(&packed, 7, &mut out).unwrap();
        assert_eq!(out, b"abcabca");
        let mut out = Vec::new();
        assert!(fastest(&[0xff; 4], 100, &mut out).is_err());
    }
}
