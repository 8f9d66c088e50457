//! Containers inside other files: self-extracting archives and installers carry a cabinet, a
//! zip, a RAR, a 7z, an ARJ, an MSI, InstallShield's or NSIS data or a compiled AutoIt script
//! after their program, programs carry other programs, and polyglots append an archive to an
//! image. ClamAV types these (`ZIPSFX`, `CABSFX`, `RARSFX`, `7ZSFX`, `ARJSFX`, `PE`, …) anywhere in a file
//! and opens them where they start; so does this search. Only starts with a strong magic and a
//! plausible header count.

use super::Format;

/// A container found inside a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// Where it starts.
    pub offset: usize,
    /// What it is.
    pub format: Format,
}

const OLE2: [u8; 8] = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1];
const SEVENZ: [u8; 6] = [b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c];

fn plausible(d: &[u8], at: usize, f: Format) -> bool {
    let h = &d[at..];
    match f {
        // CFHEADER: reserved 0, cbCabinet > header, versionMinor 3, versionMajor 1.
        Format::Cab => {
            h.len() >= 36
                && u32::from_le_bytes([h[8], h[9], h[10], h[11]]) > 36
                && h[24] == 3
                && h[25] == 1
        }
        // Local file header: version needed below 10.0, a known compression method.
        Format::Zip => {
            h.len() >= 30
                && h[4] < 100
                && h[5] == 0
                && matches!(h[8], 0 | 8 | 9 | 12 | 14 | 93 | 95 | 98)
        }
        // Major version 0.
        Format::SevenZ => h.len() >= 32 && h[6] == 0,
        Format::Rar => super::is_rar(h) && h.len() >= 20,
        // Compound file header: minor/major version 3 or 4, byte order FFFE.
        Format::Ole2 => h.len() >= 512 && matches!(h[26], 3 | 4) && h[28] == 0xfe && h[29] == 0xff,
        // A main header whose CRC-32 holds (ARJ's self-extractors, `ARJSFX` in ClamAV).
        Format::Arj => super::arj::is_arj(h),
        // The fixed fields of the first file block (ClamAV's `ISHIELD-MSI`).
        Format::IsMsi => super::ishield::is_msi(h),
        // The marker's version (ClamAV's `AUTOIT`).
        Format::AutoIt => super::autoit::is_autoit(h),
        _ => false,
    }
}

/// Containers starting after offset 0 in `d` (at most `max`). A zip is taken once, at its
/// first local header: its central directory lists the rest, and the entries of a second zip
/// appended after it are found by their local headers (see [`super::ziplocal`]).
pub fn find(d: &[u8], max: usize) -> Vec<Found> {
    static PATTERNS: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> =
        std::sync::OnceLock::new();
    let Some(ac) = PATTERNS
        .get_or_init(|| {
            aho_corasick::AhoCorasick::new([
                &b"MSCF\0\0\0\0"[..],
                b"PK\x03\x04",
                &SEVENZ,
                &OLE2,
                b"Rar!\x1a\x07",
                &super::nsis::SIGNATURE[..],
            ])
            .ok()
        })
        .as_ref()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut zip_seen = false;
    for m in ac.find_iter(d.get(1..).unwrap_or_default()) {
        if out.len() >= max {
            break;
        }
        let at = m.start() + 1;
        let format = match m.pattern().as_usize() {
            0 => Format::Cab,
            1 => Format::Zip,
            2 => Format::SevenZ,
            3 => Format::Ole2,
            4 => Format::Rar,
            // The signature sits 4 bytes into an NSIS first header.
            _ if at < 4 => continue,
            _ => {
                let start = at - 4;
                if super::nsis::is_nsis(&d[start..]) && out.len() < max {
                    out.push(Found {
                        offset: start,
                        format: Format::Nsis,
                    });
                }
                continue;
            }
        };
        if format == Format::Zip && zip_seen {
            continue;
        }
        if plausible(d, at, format) {
            zip_seen |= format == Format::Zip;
            out.push(Found { offset: at, format });
        }
    }
    let before = out.len();
    arjs(d, max, &mut out);
    if d.starts_with(b"MZ") {
        in_programs(d, max, &mut out);
        programs(d, max, &mut out);
    }
    if out.len() > before {
        out.sort_by_key(|f| f.offset);
    }
    out
}

/// What only Windows programs carry: InstallShield's setup blocks and compiled AutoIt scripts
/// (ClamAV looks for AutoIt in programs only). A search of its own, so other binaries do not
/// pay for it.
fn in_programs(d: &[u8], max: usize, out: &mut Vec<Found>) {
    static PATTERNS: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> =
        std::sync::OnceLock::new();
    let Some(ac) = PATTERNS
        .get_or_init(|| {
            aho_corasick::AhoCorasick::new([super::ishield::MAGIC, &super::autoit::MARKER[..]]).ok()
        })
        .as_ref()
    else {
        return;
    };
    for m in ac.find_iter(d.get(1..).unwrap_or_default()) {
        if out.len() >= max {
            break;
        }
        let at = m.start() + 1;
        let format = match m.pattern().as_usize() {
            0 => Format::IsMsi,
            _ => Format::AutoIt,
        };
        if plausible(d, at, format) {
            out.push(Found { offset: at, format });
        }
    }
}

/// ARJ archives: after a DOS or Windows program (self-extractors, ClamAV's `ARJSFX`) or
/// appended to any other binary (ClamAV finds them after an image too), each one by its main
/// header (file type 2, so a member's header inside it is not taken for another archive). Its
/// magic is two bytes, too short for the shared search, so it has a search of its own, and
/// at most [`MAX_ARJ_CHECKS`] candidates have their type looked at and header CRC taken.
fn arjs(d: &[u8], max: usize, out: &mut Vec<Found>) {
    let candidates = memchr::memmem::find_iter(d, &[0x60, 0xea])
        .filter(|at| *at > 0)
        .take(MAX_ARJ_CHECKS);
    for at in candidates {
        if out.len() >= max {
            break;
        }
        if super::arj::is_arj(&d[at..]) {
            out.push(Found {
                offset: at,
                format: Format::Arj,
            });
        }
    }
}

/// ARJ header candidates checked in one program.
const MAX_ARJ_CHECKS: usize = 4096;

/// Programs inside a program (ClamAV's embedded `PE` type, `MZ`, 60 to 300 bytes, `PE\0\0`,
/// kept when its header parses): droppers, resources, an unpacked image's payload. Each
/// `PE\0\0` has its `MZ` looked for where an `e_lfanew` in that range would put it.
fn programs(d: &[u8], max: usize, out: &mut Vec<Found>) {
    let mut taken = 0;
    for sig in memchr::memmem::find_iter(d, b"PE\0\0") {
        // One more than the walker takes, so it can tell there were more.
        if out.len() >= max || taken > MAX_PROGRAMS {
            break;
        }
        let start = (62..=302usize)
            .filter_map(|back| sig.checked_sub(back))
            .find(|&s| {
                s > 0
                    && d[s..].starts_with(b"MZ")
                    && super::u32_le(d, s + 0x3c) == Some((sig - s) as u32)
                    && super::pe::parse(&d[s..]).is_some()
            });
        if let Some(offset) = start {
            taken += 1;
            out.push(Found {
                offset,
                format: Format::Pe,
            });
        }
    }
}

/// Embedded programs scanned in one file (each to the file's end); more is a limit issue.
pub const MAX_PROGRAMS: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plausible_starts_only() {
        let mut d = b"MZ\x90\0 a program".to_vec();
        d.resize(200, 0);
        let cab_at = d.len();
        d.extend_from_slice(b"MSCF\0\0\0\0");
        d.extend_from_slice(&1000u32.to_le_bytes());
        d.extend_from_slice(&[0; 12]);
        d.extend_from_slice(&[3, 1]);
        d.resize(cab_at + 40, 0);
        let zip_at = d.len();
        d.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0");
        d.resize(zip_at + 40, 0);
        // A second local header of the same zip, and a lookalike cab without a version.
        d.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0");
        d.resize(d.len() + 30, 0);
        d.extend_from_slice(b"MSCF\0\0\0\0 not a cabinet header at all......");
        let found = find(&d, 10);
        assert_eq!(
            found,
            vec![
                Found {
                    offset: cab_at,
                    format: Format::Cab
                },
                Found {
                    offset: zip_at,
                    format: Format::Zip
                },
            ]
        );
        assert_eq!(find(&d, 1).len(), 1);
        // At offset 0 it is the file's own format, not an embedded one.
        assert!(find(&d[cab_at..], 10).iter().all(|f| f.offset > 0));
    }
}
