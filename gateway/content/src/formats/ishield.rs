//! InstallShield's MSI-based setup programs, as ClamAV's `ishield.c` reads them: after
//! `InstallShield\0`, a 32-byte header (a file count, then zeros), then for each file a
//! 312-byte block (its name in a 260-byte field, its packed size) and its bytes: zlib data
//! with each byte's nibbles swapped and XORed with a key made from the file's name.

use super::u32_le;
use std::io::Read;

/// Where a block starts: the marker ClamAV types `ISHIELD-MSI` by.
pub const MAGIC: &[u8] = b"InstallShield\0";
const HEADER: usize = 0x20;
const NAME: usize = 0x104;
const BLOCK: usize = NAME + 4 + 4 + 8 + 9 * 4;
/// XORed into the name to make the key (`~0x13, ~0x35, ~0x86, ~0x07`).
const SKEY: [u8; 4] = [0xec, 0xca, 0x79, 0xf8];

/// True when `d` starts with the marker and the first file block's fixed fields (ClamAV's
/// `ISHIELD-MSI` signature: `6`, `0`, a size, `0`, `1`).
pub fn is_msi(d: &[u8]) -> bool {
    let first = MAGIC.len() + HEADER + NAME;
    d.starts_with(MAGIC)
        && d.get(first..first + 8) == Some(&[6, 0, 0, 0, 0, 0, 0, 0])
        && d.get(first + 16..first + 21) == Some(&[0, 0, 0, 0, 1])
}

/// One file's packed bytes, still obfuscated.
#[derive(Debug)]
pub struct Packed<'a> {
    /// Its name.
    pub name: String,
    key: Vec<u8>,
    data: &'a [u8],
}

impl<'a> Packed<'a> {
    /// The zlib stream, deobfuscated as it is read.
    pub fn reader(&self) -> Deobfuscated<'_> {
        Deobfuscated {
            key: &self.key,
            data: self.data,
            at: 0,
        }
    }
}

/// A file's bytes with the obfuscation undone (see [`Packed::reader`]).
pub struct Deobfuscated<'a> {
    key: &'a [u8],
    data: &'a [u8],
    at: usize,
}

impl Read for Deobfuscated<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.at);
        for (i, out) in buf[..n].iter_mut().enumerate() {
            let idx = self.at + i;
            let c = self.data[idx].rotate_left(4);
            *out = c ^ self.key[(idx & 0x3ff) % self.key.len()];
        }
        self.at += n;
        Ok(n)
    }
}

/// The files of the block `d` starts with (at most `max`), and what stopped the listing early.
pub fn files(d: &[u8], max: usize) -> (Vec<Packed<'_>>, Option<String>) {
    let mut out = Vec::new();
    let h = MAGIC.len();
    let Some(count) = u32_le(d, h) else {
        return (out, Some("header cut short".into()));
    };
    if (8..HEADER).step_by(4).any(|o| u32_le(d, h + o) != Some(0)) {
        return (out, Some("not an InstallShield MSI header".into()));
    }
    let mut at = h + HEADER;
    for _ in 0..count {
        if out.len() >= max {
            return (out, Some(format!("more than {max} files")));
        }
        let Some(block) = d.get(at..at + BLOCK) else {
            return (out, Some("file block past the end".into()));
        };
        at += BLOCK;
        let field = &block[..NAME - 1];
        let name = &field[..field.iter().position(|b| *b == 0).unwrap_or(field.len())];
        if name.is_empty() {
            return (out, Some("file block without a name".into()));
        }
        let size = u64::from_le_bytes(block[NAME + 8..NAME + 16].try_into().unwrap_or([0; 8]));
        let end = usize::try_from(size).ok().and_then(|s| at.checked_add(s));
        let Some(data) = end.and_then(|e| d.get(at..e)) else {
            return (out, Some("file past the end".into()));
        };
        at += data.len();
        let key = name
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ SKEY[i & 3])
            .collect();
        out.push(Packed {
            name: String::from_utf8_lossy(name).into_owned(),
            key,
            data,
        });
    }
    (out, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A setup block holding `files`, obfuscated as InstallShield writes them.
    fn block(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&(files.len() as u32).to_le_bytes());
        d.extend_from_slice(&[0; HEADER - 4]);
        for (name, plain) in files {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(plain).unwrap();
            let packed = z.finish().unwrap();
            let mut field = name.as_bytes().to_vec();
            field.resize(NAME, 0);
            d.extend_from_slice(&field);
            d.extend_from_slice(&6u32.to_le_bytes());
            d.extend_from_slice(&0u32.to_le_bytes());
            d.extend_from_slice(&(packed.len() as u64).to_le_bytes());
            d.extend_from_slice(&0u32.to_le_bytes());
            d.extend_from_slice(&1u32.to_le_bytes());
            d.extend_from_slice(&[0; 7 * 4]);
            let key: Vec<u8> = name
                .bytes()
                .enumerate()
                .map(|(i, b)| b ^ SKEY[i & 3])
                .collect();
            for (i, b) in packed.iter().enumerate() {
                let c = b ^ key[(i & 0x3ff) % key.len()];
                d.push(c.rotate_left(4));
            }
        }
        d
    }

    #[test]
    fn files_deobfuscate_and_inflate() {
        let big = b"setup data ".repeat(500);
        let d = block(&[("setup.msi", &big), ("clam.exe", b"MZ payload")]);
        assert!(is_msi(&d));
        let (files, problem) = files(&d, 10);
        assert!(problem.is_none());
        assert_eq!(files[1].name, "clam.exe");
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(files[0].reader())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, big);
        let (few, problem) = super::files(&d, 1);
        assert_eq!(few.len(), 1);
        assert!(problem.unwrap().contains("more than"));
    }

    #[test]
    fn cut_and_bent_blocks_stop_cleanly() {
        let d = block(&[("a.exe", b"payload")]);
        for len in 0..d.len() {
            let _ = files(&d[..len], 10);
            let _ = is_msi(&d[..len]);
        }
        let mut bent = d.clone();
        bent[MAGIC.len() + 8] = 1;
        assert!(files(&bent, 10).0.is_empty());
    }

    #[test]
    fn a_setup_inside_a_program_gives_up_its_files() {
        let mut exe = b"MZ\x90\0".to_vec();
        exe.resize(4096, 0);
        let at = exe.len();
        exe.extend(block(&[("clam.exe", b"the payload")]));
        let (seen, issues) = crate::walk::pieces(exe, &crate::Limits::default());
        assert!(issues.is_empty(), "{issues:?}");
        let want = format!("f > embedded:ishield@{at} > ishield:clam.exe");
        assert!(seen.contains(&(want, b"the payload".to_vec())), "{seen:?}");
    }
}
