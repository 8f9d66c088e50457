//! LHA / LZH archives (LHarc, LHA for Windows, UNLHA32; still how Japanese software and
//! documents are packed): header levels 0 to 3, methods `-lh0-`/`-lh1-`/`-lh4-` to `-lh7-`,
//! `-lhx-`, `-lzs-`/`-lz4-`/`-lz5-` and `-pm0-` to `-pm2-`, read by the maintained `delharc`
//! crate (the reader ClamAV itself uses for LHA since 1.4). Members are bounded by the caps; a
//! member in an unknown method or failing its CRC-16 is reported, and a panic in the decoder is
//! taken for damage.

use std::io::{Cursor, Read};

use super::Bounds;

/// A file the archive holds.
#[derive(Debug)]
pub struct File {
    /// Its path as stored.
    pub name: String,
    /// Its bytes (at most the cap).
    pub data: Vec<u8>,
    /// Cut at a limit, or damaged (see the problem reported beside it).
    pub cut: bool,
}

/// True when `d` starts with an LHA header: a method id `-xxx-` at offset 2 that LHA, LArc
/// or PMarc writes, and a header level from 0 to 3 at offset 20 (ClamAV's `LHA_LZH` magic is
/// the method id).
pub fn is_lha(d: &[u8]) -> bool {
    let Some(id) = d.get(2..7) else {
        return false;
    };
    let known = matches!(
        &id[..4],
        b"-lh0" | b"-lh1" | b"-lh2" | b"-lh3" | b"-lh4" | b"-lh5" | b"-lh6" | b"-lh7"
    ) || matches!(
        &id[..4],
        b"-lhd" | b"-lhx" | b"-lzs" | b"-lz4" | b"-lz5" | b"-pm0" | b"-pm1" | b"-pm2"
    );
    known && id[4] == b'-' && d.get(20).is_some_and(|&level| level <= 3)
}

/// The archive's files, within `b`, and what stopped the listing early: `(true, why)` a
/// limit, `(false, why)` damage. Directories are skipped.
pub fn files(d: &[u8], b: Bounds) -> (Vec<File>, Option<(bool, String)>) {
    let run = std::panic::AssertUnwindSafe(|| read_all(d, b));
    std::panic::catch_unwind(run)
        .unwrap_or_else(|_| (Vec::new(), Some((false, "decoder failed".into()))))
}

fn read_all(d: &[u8], b: Bounds) -> (Vec<File>, Option<(bool, String)>) {
    let mut out = Vec::new();
    let mut lha = match delharc::LhaDecodeReader::new(Cursor::new(d)) {
        Ok(r) => r,
        Err(e) => return (out, Some((false, format!("header: {e}")))),
    };
    let mut total = 0usize;
    let mut problem = None;
    loop {
        let header = lha.header();
        let name = header.parse_pathname_to_str();
        if !header.is_directory() {
            if out.len() >= b.max_files {
                return (
                    out,
                    Some((true, format!("more than {} files", b.max_files))),
                );
            }
            let cap = b.cap.min(b.total.saturating_sub(total));
            let f = read_member(&mut lha, name, cap, &mut problem);
            total = total.saturating_add(f.data.len());
            out.push(f);
        }
        match lha.seek_next_file() {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                problem.get_or_insert((false, format!("header: {e}")));
                break;
            }
        }
    }
    (out, problem)
}

/// One member's bytes, at most `cap`; what went wrong goes in `problem` (the first only).
fn read_member(
    lha: &mut delharc::LhaDecodeReader<Cursor<&[u8]>>,
    name: String,
    cap: usize,
    problem: &mut Option<(bool, String)>,
) -> File {
    let mut data = Vec::new();
    if !lha.is_decoder_supported() {
        let method = String::from_utf8_lossy(&lha.header().compression).into_owned();
        problem.get_or_insert((false, format!("{name}: unknown method {method}")));
        return File {
            name,
            data,
            cut: true,
        };
    }
    let read = lha.by_ref().take(cap as u64).read_to_end(&mut data);
    let over = data.len() == cap && lha.header().original_size > cap as u64;
    let mut cut = over;
    if over {
        problem.get_or_insert((true, format!("{name}: over the limit of {cap} bytes")));
    } else if let Err(e) = read {
        cut = true;
        problem.get_or_insert((false, format!("{name}: {e}")));
    } else if let Err(e) = lha.crc_check() {
        cut = true;
        problem.get_or_insert((false, format!("{name}: {e}")));
    }
    File { name, data, cut }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A level-0 header with an `-lh0-` (stored) member.
    pub(crate) fn stored(name: &str, body: &[u8]) -> Vec<u8> {
        let mut h = vec![0u8, 0];
        h.extend(b"-lh0-");
        h.extend((body.len() as u32).to_le_bytes());
        h.extend((body.len() as u32).to_le_bytes());
        h.extend([0u8; 4]);
        h.push(0x20);
        h.push(0);
        h.push(name.len() as u8);
        h.extend(name.as_bytes());
        h.extend(crc16(body).to_le_bytes());
        h[0] = (h.len() - 2) as u8;
        h[1] = h[2..].iter().fold(0u8, |s, &c| s.wrapping_add(c));
        h.extend(body);
        h
    }

    /// CRC-16/ARC, the checksum LHA keeps of each member.
    fn crc16(d: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in d {
            crc ^= u16::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xa001
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    const WIDE: Bounds = Bounds {
        max_files: 10,
        cap: 1 << 20,
        total: 1 << 20,
    };

    #[test]
    fn reads_stored_members_and_checks_their_crc() {
        let mut d = stored("a.txt", b"first member");
        d.extend(stored("dir\\b.bin", b"second"));
        d.push(0);
        assert!(is_lha(&d));
        let (files, problem) = files(&d, WIDE);
        assert_eq!(problem, None);
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].data, b"second");
        assert!(!files[1].cut);
        let mut bad = stored("a.txt", b"first member");
        let n = bad.len();
        bad[n - 1] ^= 1;
        let (files, problem) = super::files(&bad, WIDE);
        assert!(
            files[0].cut && problem.is_some_and(|p| !p.0),
            "CRC mismatch"
        );
    }

    #[test]
    fn limits_and_damage_are_reported() {
        let d = stored("a.txt", &[b'x'; 100]);
        let tight = Bounds { cap: 10, ..WIDE };
        let (files, problem) = files(&d, tight);
        assert_eq!(files[0].data.len(), 10);
        assert!(problem.is_some_and(|p| p.0), "over the cap is a limit");
        let (files, problem) = super::files(&d[..40], WIDE);
        assert!(problem.is_some() || files.iter().all(|f| f.cut));
        assert!(!is_lha(b"xx-lh9-"));
        assert!(!is_lha(b"\x20\x00-lh5-"), "too short for a level byte");
        let mut two = stored("a", b"1");
        two.extend(stored("b", b"2"));
        let one = Bounds {
            max_files: 1,
            ..WIDE
        };
        let (files, problem) = super::files(&two, one);
        assert_eq!(files.len(), 1);
        assert!(problem.is_some_and(|p| p.0));
    }
}
