//! Compiled HTML Help (`.chm`, ITSF), read as libmspack's `chmd` and ClamAV's `chmunpack.c`
//! read it: the ITSF header locates the ITSP directory, whose PMGL chunks list every file as
//! (name, section, offset, length). Section 0 is stored; section 1 (`MSCompressed`) is one LZX
//! stream cut into 32 KiB frames, with a reset table giving each frame's packed offset and a
//! control block giving the window and how many frames lie between resets. LZX itself is
//! decoded by the maintained `lzxd` crate (the one `cab` uses).

pub use super::Bounds;
use super::{u32_le, u64_le};
use lzxd::{Lzxd, WindowSize};

const FRAME: usize = 0x8000;
const ITSP_LEN: usize = 0x54;
const CONTENT: &str = "::DataSpace/Storage/MSCompressed/Content";
const CONTROL: &str = "::DataSpace/Storage/MSCompressed/ControlData";
const RESET_TABLE: &str = "::DataSpace/Storage/MSCompressed/Transform/\
{7FC28940-9D31-11D0-9B27-00A0C91E9C7C}/InstanceData/ResetTable";

/// True when `d` starts with an ITSF header (versions 2 and 3).
pub fn is_chm(d: &[u8]) -> bool {
    d.len() >= 0x58 && d.starts_with(b"ITSF") && matches!(u32_le(d, 4), Some(2 | 3))
}

/// A file listed in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its path (`/index.html`).
    pub name: String,
    /// 0 stored, 1 LZX-compressed.
    pub section: u64,
    /// Offset within its section.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// A file's bytes.
#[derive(Debug)]
pub struct File {
    /// Its path.
    pub name: String,
    /// Its bytes (at most the cap).
    pub data: Vec<u8>,
    /// Cut at a limit, or its bytes lie outside what the archive holds or decodes.
    pub cut: bool,
}

/// Reads the directory: (entries, where the content starts). Errors name what is damaged. The
/// listing is bounded by the file itself (every entry takes at least four bytes of a chunk).
pub fn directory(d: &[u8]) -> Result<(Vec<Entry>, usize), String> {
    if !is_chm(d) {
        return Err("no ITSF header".into());
    }
    let dir = u64_le(d, 0x48).ok_or("header cut short")?;
    let dir_len = u64_le(d, 0x50).ok_or("header cut short")?;
    let content = if u32_le(d, 4) == Some(3) && u32_le(d, 8).is_some_and(|l| l >= 0x60) {
        u64_le(d, 0x58).ok_or("header cut short")?
    } else {
        dir.saturating_add(dir_len)
    };
    let dir = usize::try_from(dir).map_err(|_| "directory offset out of range")?;
    let itsp = d
        .get(dir..dir.saturating_add(ITSP_LEN))
        .ok_or("directory past the end")?;
    if !itsp.starts_with(b"ITSP") {
        return Err("no ITSP directory header".into());
    }
    let header_len = u32_le(itsp, 8).unwrap_or(0) as usize;
    let chunk = u32_le(itsp, 0x10).unwrap_or(0) as usize;
    let chunks = u32_le(itsp, 0x2c).unwrap_or(0) as usize;
    if !(0x14..=1 << 20).contains(&chunk) || header_len < ITSP_LEN {
        return Err(format!("directory chunk size {chunk}"));
    }
    let mut entries = Vec::new();
    for i in 0..chunks {
        let start = (dir + header_len).saturating_add(i.saturating_mul(chunk));
        let Some(c) = d.get(start..start.saturating_add(chunk)) else {
            return Err("directory chunk past the end".into());
        };
        if c.starts_with(b"PMGL") {
            pmgl(c, &mut entries)?;
        }
    }
    let content = usize::try_from(content).map_err(|_| "content offset out of range")?;
    Ok((entries, content))
}

/// The entries of one listing chunk (its free space at the end holds no entries).
fn pmgl(c: &[u8], out: &mut Vec<Entry>) -> Result<(), String> {
    let free = u32_le(c, 4).unwrap_or(0) as usize;
    let end = c
        .len()
        .checked_sub(free)
        .filter(|e| *e >= 0x14)
        .ok_or("PMGL free space")?;
    let mut at = 0x14;
    while at < end {
        let len = encint(c, &mut at)? as usize;
        let name = c
            .get(at..at.saturating_add(len))
            .ok_or("PMGL name past its chunk")?;
        at += len;
        let section = encint(c, &mut at)?;
        let offset = encint(c, &mut at)?;
        let length = encint(c, &mut at)?;
        if at > end {
            return Err("PMGL entry past its chunk".into());
        }
        out.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            section,
            offset,
            length,
        });
    }
    Ok(())
}

/// A big-endian base-128 integer, high bit set on every byte but the last.
fn encint(c: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for _ in 0..9 {
        let b = *c.get(*at).ok_or("number past its chunk")?;
        *at += 1;
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("number too long".into())
}

/// Bytes of section 0 (stored) at `offset`, clamped to what the file holds.
fn stored(d: &[u8], content: usize, offset: u64, length: u64) -> Option<&[u8]> {
    let start = content.checked_add(usize::try_from(offset).ok()?)?;
    let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
    d.get(start..end.min(d.len()))
}

/// The files (not the `::` storage internals, not directories), each at most `cap` bytes;
/// and a problem that stopped the reading: `(true, why)` for a limit, `(false, why)` for damage.
pub fn files(d: &[u8], b: Bounds) -> (Vec<File>, Option<(bool, String)>) {
    let (entries, content) = match directory(d) {
        Ok(v) => v,
        Err(e) => return (Vec::new(), Some((false, e))),
    };
    let mut problem = None;
    let wanted: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.length > 0 && !e.name.starts_with("::") && !e.name.ends_with('/'))
        .collect();
    if wanted.len() > b.max_files {
        problem = Some((true, format!("more than {} files", b.max_files)));
    }
    let mut ends: Vec<usize> = wanted
        .iter()
        .take(b.max_files)
        .filter(|e| e.section == 1)
        .map(|e| e.offset.saturating_add(e.length.min(b.cap as u64)))
        .map(|e| usize::try_from(e).unwrap_or(usize::MAX))
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let mut section1 = Vec::new();
    if !ends.is_empty() {
        let (s, p) = lzx_section(d, &entries, content, &ends, b.total);
        problem = p.or(problem);
        section1 = s;
    }
    let mut out = Vec::new();
    let mut used = section1.len();
    for e in wanted.into_iter().take(b.max_files) {
        let src: &[u8] = match e.section {
            0 => stored(d, content, e.offset, e.length).unwrap_or_default(),
            1 => usize::try_from(e.offset)
                .ok()
                .and_then(|o| section1.get(o..))
                .unwrap_or_default(),
            _ => continue,
        };
        let room = b.total.saturating_sub(used);
        let take = src.len().min(b.cap).min(room).min(e.length as usize);
        if take == 0 && room == 0 {
            problem = Some((
                true,
                format!("decoded bytes over the total limit of {}", b.total),
            ));
            break;
        }
        used += take;
        out.push(File {
            name: e.name.clone(),
            data: src[..take].to_vec(),
            cut: (take as u64) < e.length,
        });
    }
    (out, problem)
}

fn find<'e>(entries: &'e [Entry], name: &str) -> Result<&'e Entry, (bool, String)> {
    entries
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(name) && e.section == 0)
        .ok_or_else(|| damaged(&format!("no {name}")))
}

/// Decodes section 1 from its start up to the last of `ends` (the files' ends, ascending; at
/// most `total` bytes): what decoded, and the limit or damage that stopped it early.
fn lzx_section(
    d: &[u8],
    entries: &[Entry],
    content: usize,
    ends: &[usize],
    total: usize,
) -> (Vec<u8>, Option<(bool, String)>) {
    let mut out = Vec::new();
    let problem = Lzx::open(d, entries, content)
        .and_then(|lzx| lzx.decode(ends, total, &mut out))
        .err();
    (out, problem)
}

/// The compressed section: its packed frames, where each starts, and how to decode them.
struct Lzx<'a> {
    packed: &'a [u8],
    offsets: Vec<usize>,
    length: usize,
    window: WindowSize,
    frames_per_reset: usize,
}

fn damaged(why: &str) -> (bool, String) {
    (false, why.to_string())
}

impl<'a> Lzx<'a> {
    /// Reads the control data and the reset table.
    fn open(d: &'a [u8], entries: &[Entry], content: usize) -> Result<Self, (bool, String)> {
        let part = |name: &str| -> Result<&'a [u8], (bool, String)> {
            let e = find(entries, name)?;
            stored(d, content, e.offset, e.length).ok_or_else(|| damaged("storage past the end"))
        };
        let (control, table, packed) = (part(CONTROL)?, part(RESET_TABLE)?, part(CONTENT)?);
        if control.get(4..8) != Some(b"LZXC") {
            return Err(damaged("no LZXC control data"));
        }
        let unit = if u32_le(control, 8) == Some(2) {
            FRAME
        } else {
            1
        };
        let reset = (u32_le(control, 12).unwrap_or(0) as usize).saturating_mul(unit);
        let window = (u32_le(control, 16).unwrap_or(0) as usize).saturating_mul(unit);
        let window = window_size(window).ok_or_else(|| damaged("LZX window size"))?;
        if reset < FRAME || reset % FRAME != 0 {
            return Err(damaged("LZX reset interval"));
        }
        let (offsets, length) = reset_table(table, packed.len())?;
        Ok(Lzx {
            packed,
            offsets,
            length: usize::try_from(length).unwrap_or(usize::MAX),
            window,
            frames_per_reset: reset / FRAME,
        })
    }

    /// Decodes frame `i`, `len` bytes of it, with `dec` (in order since its last reset).
    fn frame<'d>(
        &self,
        dec: &'d mut Lzxd,
        i: usize,
        len: usize,
        chunk: &mut Vec<u8>,
    ) -> Result<&'d [u8], String> {
        let (Some(&from), Some(&to)) = (self.offsets.get(i), self.offsets.get(i + 1)) else {
            return Err("LZX frame past the reset table".into());
        };
        let bytes = self
            .packed
            .get(from..to)
            .ok_or("LZX frame past the content")?;
        // A frame may end in the middle of the bits the decoder reads ahead; libmspack feeds
        // zeros past the end of its input, and so does this.
        chunk.clear();
        chunk.extend_from_slice(bytes);
        chunk.extend_from_slice(&[0; 8]);
        dec.decompress_next(chunk, len)
            .map_err(|e| format!("LZX frame {i}: {e}"))
    }

    /// Frames in order up to the last end (at most `total` bytes) into `out`. A frame that does
    /// not decode stops the section; what of it lies before a file's end is salvaged first.
    fn decode(
        &self,
        ends: &[usize],
        total: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), (bool, String)> {
        let want = ends.last().copied().unwrap_or(0).min(self.length);
        let mut dec = Lzxd::new(self.window);
        let mut chunk = Vec::new();
        out.reserve(want.min(total).min(self.packed.len().saturating_mul(16)));
        for i in 0..self.offsets.len().saturating_sub(1) {
            // The last frame decoded is cut where the files asked for end.
            let len = want.saturating_sub(i * FRAME).min(FRAME);
            if len == 0 {
                break;
            }
            if out.len() >= total {
                let why = format!("decoded bytes over the total limit of {total}");
                return Err((true, why));
            }
            if i > 0 && i % self.frames_per_reset == 0 {
                dec.reset();
            }
            let got = match self.frame(&mut dec, i, len, &mut chunk) {
                Ok(got) => Ok(got.to_vec()),
                Err(e) => self.overshoot(i, len).ok_or(e),
            };
            match got {
                Ok(got) => out.extend_from_slice(&got[..got.len().min(total - out.len())]),
                Err(e) => {
                    let salvaged = self.salvage(i, ends);
                    out.extend_from_slice(&salvaged[..salvaged.len().min(total - out.len())]);
                    return Err(damaged(&e));
                }
            }
        }
        if out.len() < want.min(total) {
            return Err(damaged("LZX content ends early"));
        }
        Ok(())
    }

    /// Frame `i` decoded a little further than `len` and cut back: a last match may run past
    /// where the frame's bytes end (Free Pascal's chmcmd ends its stream so; 7-Zip takes it,
    /// libmspack does not). Tries each overrun up to the longest match (257 bytes), replaying
    /// the frames since the last reset, within a budget of frame decodes.
    fn overshoot(&self, i: usize, len: usize) -> Option<Vec<u8>> {
        const LONGEST_MATCH: usize = 257;
        let reset_at = i - i % self.frames_per_reset;
        if (i - reset_at + 1) * LONGEST_MATCH > RETRY_BUDGET {
            return None;
        }
        let mut chunk = Vec::new();
        for more in (len + 1..=len + LONGEST_MATCH).take_while(|l| *l <= FRAME) {
            let mut dec = Lzxd::new(self.window);
            if (reset_at..i).any(|j| self.frame(&mut dec, j, FRAME, &mut chunk).is_err()) {
                return None;
            }
            if let Ok(got) = self.frame(&mut dec, i, more, &mut chunk) {
                return Some(got[..len].to_vec());
            }
        }
        None
    }

    /// Frame `i` decoded only up to the latest file end inside it that decodes (a producer
    /// that lists files its stream does not hold, as Free Pascal's chmcmd does with its index
    /// files, still gives up the ones before). At most 8 tries, each from the last reset, and
    /// no more frame decodes than the retry budget.
    fn salvage(&self, i: usize, ends: &[usize]) -> Vec<u8> {
        let start = i * FRAME;
        let reset_at = i - i % self.frames_per_reset;
        let tries = (RETRY_BUDGET / (i - reset_at + 1)).min(8);
        let inside = ends
            .iter()
            .rev()
            .filter(|e| **e > start && **e < start + FRAME);
        let mut chunk = Vec::new();
        for &end in inside.take(tries) {
            let mut dec = Lzxd::new(self.window);
            if (reset_at..i).any(|j| self.frame(&mut dec, j, FRAME, &mut chunk).is_err()) {
                return Vec::new();
            }
            if let Ok(got) = self.frame(&mut dec, i, end - start, &mut chunk) {
                return got.to_vec();
            }
        }
        Vec::new()
    }
}

/// Frame decodes a failed frame may cost in retries (overrun tries, salvage tries), each
/// replaying the frames since the last reset: at most 64 MiB of LZX output.
const RETRY_BUDGET: usize = 2048;

/// Frame offsets into the content, with the content's end appended, and the uncompressed
/// length. Offsets must rise and stay inside the content.
fn reset_table(t: &[u8], packed: usize) -> Result<(Vec<usize>, u64), (bool, String)> {
    let count = u32_le(t, 4).ok_or_else(|| damaged("reset table cut short"))? as usize;
    let entry = u32_le(t, 8).unwrap_or(0) as usize;
    let at = u32_le(t, 12).unwrap_or(0) as usize;
    let length = u64_le(t, 0x10).ok_or_else(|| damaged("reset table cut short"))?;
    let frame_len = u64_le(t, 0x20).unwrap_or(0);
    if entry != 8 || frame_len != FRAME as u64 {
        return Err(damaged("reset table layout"));
    }
    if count.saturating_mul(8) > t.len().saturating_sub(at) {
        return Err(damaged("reset table past its entry"));
    }
    let mut offsets = Vec::with_capacity(count + 1);
    for i in 0..count {
        let o = u64_le(t, at + i * 8).unwrap_or(u64::MAX);
        let o = usize::try_from(o).unwrap_or(usize::MAX);
        if o > packed || offsets.last().is_some_and(|l| *l > o) {
            return Err(damaged("reset table offsets"));
        }
        offsets.push(o);
    }
    offsets.push(packed);
    Ok((offsets, length))
}

fn window_size(bytes: usize) -> Option<WindowSize> {
    Some(match bytes {
        0x8000 => WindowSize::KB32,
        0x1_0000 => WindowSize::KB64,
        0x2_0000 => WindowSize::KB128,
        0x4_0000 => WindowSize::KB256,
        0x8_0000 => WindowSize::KB512,
        0x10_0000 => WindowSize::MB1,
        0x20_0000 => WindowSize::MB2,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(mut v: u64) -> Vec<u8> {
        let mut out = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            out.insert(0, (v & 0x7f) as u8 | 0x80);
            v >>= 7;
        }
        out
    }

    /// An ITSF v3 file with one PMGL chunk and section 0 entries only.
    fn chm(files: &[(&str, &[u8])]) -> Vec<u8> {
        const CHUNK: usize = 0x200;
        let mut listing = Vec::new();
        let mut content = Vec::new();
        for (name, data) in files {
            listing.extend(enc(name.len() as u64));
            listing.extend_from_slice(name.as_bytes());
            listing.extend(enc(0));
            listing.extend(enc(content.len() as u64));
            listing.extend(enc(data.len() as u64));
            content.extend_from_slice(data);
        }
        let mut c = b"PMGL".to_vec();
        c.extend_from_slice(&((CHUNK - 0x14 - listing.len()) as u32).to_le_bytes());
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(&(-1i32).to_le_bytes());
        c.extend_from_slice(&(-1i32).to_le_bytes());
        c.extend(listing);
        c.resize(CHUNK, 0);
        let dir = 0x60usize;
        let dir_len = ITSP_LEN + CHUNK;
        let mut f = b"ITSF".to_vec();
        f.extend_from_slice(&3u32.to_le_bytes());
        f.extend_from_slice(&0x60u32.to_le_bytes());
        f.resize(0x48, 0);
        f.extend_from_slice(&(dir as u64).to_le_bytes());
        f.extend_from_slice(&(dir_len as u64).to_le_bytes());
        f.extend_from_slice(&((dir + dir_len) as u64).to_le_bytes());
        let mut itsp = b"ITSP".to_vec();
        itsp.extend_from_slice(&1u32.to_le_bytes());
        itsp.extend_from_slice(&(ITSP_LEN as u32).to_le_bytes());
        itsp.extend_from_slice(&10u32.to_le_bytes());
        itsp.extend_from_slice(&(CHUNK as u32).to_le_bytes());
        itsp.resize(0x2c, 0);
        itsp.extend_from_slice(&1u32.to_le_bytes());
        itsp.resize(ITSP_LEN, 0);
        f.extend(itsp);
        f.extend(c);
        f.extend(content);
        f
    }

    #[test]
    fn stored_files_are_listed_and_read() {
        let f = chm(&[
            ("/a.html", b"<p>hi</p>"),
            ("/dir/", b""),
            ("/b.exe", b"MZ..."),
        ]);
        assert!(is_chm(&f));
        let b = Bounds {
            max_files: 10,
            cap: 100,
            total: 1000,
        };
        let (files, problem) = files(&f, b);
        assert!(problem.is_none(), "{problem:?}");
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["/a.html", "/b.exe"]);
        assert_eq!(files[1].data, b"MZ...");
        let (files, _) = super::files(&f, Bounds { cap: 2, ..b });
        assert_eq!(files[0].data, b"<p");
        assert!(files[0].cut);
        let (files, problem) = super::files(&f, Bounds { max_files: 1, ..b });
        assert_eq!(files.len(), 1);
        assert!(problem.unwrap().0);
    }

    #[test]
    fn damage_is_reported_not_panicked() {
        let f = chm(&[("/a.html", b"<p>hi</p>")]);
        let b = Bounds {
            max_files: 10,
            cap: 100,
            total: 1000,
        };
        for len in 0..f.len() {
            let _ = files(&f[..len], b);
        }
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0xa5;
            let _ = files(&g, b);
        }
        assert!(files(b"ITSF\x03\0\0\0", b).1.is_some());
    }

    #[test]
    fn encint_reads_base_128() {
        let mut at = 0;
        assert_eq!(encint(&[0x81, 0x00], &mut at), Ok(128));
        assert_eq!(at, 2);
        assert!(encint(&[0xff; 12], &mut 0).is_err());
    }
}
