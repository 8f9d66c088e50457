//! Nullsoft installers (NSIS), as ClamAV unpacks them: after the program comes the first
//! header (flags, `0xDEADBEEF`, `NullsoftInst`, header and archive sizes), then either one
//! compressed stream holding size-prefixed blocks (solid) or a chain of blocks each with its own
//! size word, compressed when the top bit is set. The compressor (LZMA, raw deflate, or NSIS's
//! header-less bzip2) is told by the first bytes, as ClamAV tells it; the bzip2 variant is not
//! decoded (an issue, never a pass). Every block (the install script first, then the files) is
//! a piece; names are in the script, which is not run.

use std::io::Read;

/// `0xDEADBEEF` and `NullsoftInst`, 4 bytes into the first header.
pub const SIGNATURE: &[u8; 16] = b"\xef\xbe\xad\xdeNullsoftInst";
const FIRST_HEADER: usize = 0x1c;

/// True when `d` starts with an NSIS first header.
pub fn is_nsis(d: &[u8]) -> bool {
    d.len() >= FIRST_HEADER && &d[4..20] == SIGNATURE
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Comp {
    Bzip2,
    Lzma,
    Zlib,
}

fn comp_of(b: &[u8]) -> Comp {
    match b {
        [b'1', ..] => Comp::Bzip2,
        [a, b, c, d, ..] if u32::from_le_bytes([*a, *b, *c, *d]) & !0x8000_0000 == 0x5d => {
            Comp::Lzma
        }
        _ => Comp::Zlib,
    }
}

/// A block of the installer.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    /// Its place among the blocks (0: the install script).
    pub index: usize,
    /// Its bytes, at most the cap.
    pub data: Vec<u8>,
    /// Cut at the cap, or its stream ended early.
    pub cut: bool,
}

/// Limits for one installer.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Blocks at most.
    pub max_blocks: usize,
    /// Bytes per block.
    pub cap: usize,
    /// Bytes decoded in all.
    pub total: usize,
    /// Largest LZMA dictionary accepted.
    pub dictionary: u32,
}

/// What could not be read: `(true, why)` for a limit, `(false, why)` for damage.
pub type Problem = (bool, String);

/// The blocks of the installer whose first header starts `d`.
pub fn blocks(d: &[u8], b: Bounds) -> (Vec<Block>, Option<Problem>) {
    let declared = u32::from_le_bytes([d[0x18], d[0x19], d[0x1a], d[0x1b]]) as usize;
    let truncated = declared > d.len();
    let end = declared.clamp(FIRST_HEADER, d.len());
    let body = &d[FIRST_HEADER..end];
    let (solid, comp) = shape(body, truncated);
    let (out, problem) = if solid {
        solid_blocks(body, comp, b)
    } else {
        chained_blocks(body, comp, b)
    };
    let problem = problem.or_else(|| truncated.then(|| (false, "installer cut short".into())));
    (out, problem)
}

/// Solid or not, and the compressor: a chain of block sizes that runs past the data is a
/// solid stream; otherwise the compressor the most compressed blocks show.
fn shape(body: &[u8], truncated: bool) -> (bool, Comp) {
    let mut counts = [0u32; 3];
    let mut pos = 0usize;
    let mut blocks = 0;
    let mut solid = false;
    // The last 4 bytes may be the installer's CRC, not a block.
    while pos + 4 < body.len() {
        let word = u32::from_le_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        let len = (word & 0x7fff_ffff) as usize;
        if word & 0x8000_0000 != 0 {
            let c = comp_of(body.get(pos + 4..).unwrap_or_default());
            counts[c as usize] += 1;
        }
        blocks += 1;
        pos = pos.saturating_add(4).saturating_add(len);
        if pos > body.len() {
            solid = true;
            break;
        }
    }
    if truncated && blocks >= 2 {
        solid = false;
    }
    if solid {
        return (true, comp_of(body));
    }
    let [bz, lz, zl] = counts;
    let comp = if bz < lz {
        if lz < zl {
            Comp::Zlib
        } else {
            Comp::Lzma
        }
    } else if bz < zl {
        Comp::Zlib
    } else {
        Comp::Bzip2
    };
    (false, comp)
}

fn decoder<'a>(comp: Comp, data: &'a [u8], b: Bounds) -> Result<Box<dyn Read + 'a>, Problem> {
    Ok(match comp {
        Comp::Zlib => Box::new(flate2::read::DeflateDecoder::new(data)),
        // NSIS's bzip2 drops the stream and block headers and the CRCs: no decoder here reads it.
        Comp::Bzip2 => return Err((false, "NSIS's bzip2 variant is not decoded".into())),
        Comp::Lzma => {
            let (Some(&props), Some(dict)) = (data.first(), data.get(1..5)) else {
                return Err((false, "LZMA header cut short".into()));
            };
            let dict = u32::from_le_bytes([dict[0], dict[1], dict[2], dict[3]]);
            if dict > b.dictionary {
                return Err((
                    true,
                    format!("LZMA dictionary of {dict} bytes over the limit"),
                ));
            }
            let mut r =
                lzma_rust2::LzmaReader::new_with_props(&data[5..], u64::MAX, props, dict, None)
                    .map_err(|e| (false, format!("LZMA: {e}")))?;
            r.set_defer_errors(true);
            Box::new(r)
        }
    })
}

/// Reads up to `cap` bytes; a stream that breaks after giving something is taken as ended
/// (NSIS streams carry no end mark), one that gives nothing is damage.
fn read_block(r: &mut dyn Read, want: usize, cap: usize) -> (Vec<u8>, bool, bool) {
    let mut data = Vec::new();
    let take = want.min(cap);
    let failed = r.take(take as u64).read_to_end(&mut data).is_err();
    (data, failed, want > cap)
}

fn chained_blocks(body: &[u8], comp: Comp, b: Bounds) -> (Vec<Block>, Option<Problem>) {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut total = 0usize;
    let mut problem = None;
    let mut index = 0usize;
    while pos + 4 < body.len() {
        if out.len() >= b.max_blocks {
            return (
                out,
                Some((true, format!("more than {} blocks", b.max_blocks))),
            );
        }
        let word = u32::from_le_bytes([body[pos], body[pos + 1], body[pos + 2], body[pos + 3]]);
        pos += 4;
        let len = (word & 0x7fff_ffff) as usize;
        if len == 0 {
            continue;
        }
        let Some(raw) = body.get(pos..pos.saturating_add(len)) else {
            return (out, Some((false, "a block runs past the installer".into())));
        };
        pos += len;
        index += 1;
        let room = b.cap.min(b.total.saturating_sub(total));
        let block = if word & 0x8000_0000 == 0 {
            Block {
                index: index - 1,
                data: raw[..raw.len().min(room)].to_vec(),
                cut: raw.len() > room,
            }
        } else {
            match decoder(comp, raw, b) {
                Ok(mut r) => {
                    // A stream that breaks after giving something is taken as ended (NSIS
                    // streams carry no end mark); one that gives nothing is damage.
                    let (data, _, _) = read_block(&mut r, room, room);
                    let over = data.len() >= room && r.read(&mut [0u8; 1]).is_ok_and(|n| n > 0);
                    if data.is_empty() {
                        // As ClamAV does, the chain goes on: later blocks stand alone.
                        problem.get_or_insert((false, "a compressed block does not decode".into()));
                        continue;
                    }
                    Block {
                        index: index - 1,
                        data,
                        cut: over,
                    }
                }
                Err(p) => {
                    problem.get_or_insert(p);
                    continue;
                }
            }
        };
        total += block.data.len();
        let over = block.cut;
        out.push(block);
        if over {
            return (out, Some((true, "a block over the limits".into())));
        }
    }
    (out, problem)
}

fn solid_blocks(body: &[u8], comp: Comp, b: Bounds) -> (Vec<Block>, Option<Problem>) {
    let mut r = match decoder(comp, body, b) {
        Ok(r) => r,
        Err(p) => return (Vec::new(), Some(p)),
    };
    let mut out = Vec::new();
    let mut total = 0usize;
    // Every record counts, empty ones too: a stream of empty records ends at the same bound.
    for index in 0..b.max_blocks {
        let mut size = [0u8; 4];
        if r.read_exact(&mut size).is_err() {
            return (out, None);
        }
        let size = u32::from_le_bytes(size) as usize;
        if size == 0 {
            continue;
        }
        let room = b.cap.min(b.total.saturating_sub(total));
        let (data, failed, over) = read_block(&mut r, size, room);
        total += data.len();
        let short = data.len() < size.min(room);
        let empty = data.is_empty();
        out.push(Block {
            index,
            data,
            cut: over || short,
        });
        if over {
            return (out, Some((true, "a block over the limits".into())));
        }
        if failed || short {
            // The stream ended inside a block: what came out is scanned.
            if empty && out.len() == 1 {
                return (
                    out,
                    Some((false, "the solid stream does not decode".into())),
                );
            }
            return (out, None);
        }
    }
    (
        out,
        Some((true, format!("more than {} records", b.max_blocks))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const B: Bounds = Bounds {
        max_blocks: 100,
        cap: 1 << 20,
        total: 4 << 20,
        dictionary: 64 << 20,
    };

    fn first_header(body: &[u8]) -> Vec<u8> {
        let mut d = 0u32.to_le_bytes().to_vec();
        d.extend_from_slice(SIGNATURE);
        d.extend_from_slice(&100u32.to_le_bytes());
        d.extend_from_slice(&((FIRST_HEADER + body.len()) as u32).to_le_bytes());
        d.extend_from_slice(body);
        d
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(data).unwrap();
        z.finish().unwrap()
    }

    #[test]
    fn chained_blocks_compressed_and_stored() {
        let mut body = Vec::new();
        for (data, compress) in [
            (&b"the install script"[..], true),
            (b"MZ a stored program", false),
            (b"MZ a packed program", true),
        ] {
            let raw = if compress {
                deflate(data)
            } else {
                data.to_vec()
            };
            let word = raw.len() as u32 | if compress { 0x8000_0000 } else { 0 };
            body.extend_from_slice(&word.to_le_bytes());
            body.extend_from_slice(&raw);
        }
        let d = first_header(&body);
        assert!(is_nsis(&d));
        let (blocks, problem) = blocks(&d, B);
        assert_eq!(problem, None);
        let data: Vec<&[u8]> = blocks.iter().map(|b| b.data.as_slice()).collect();
        assert_eq!(
            data,
            vec![
                &b"the install script"[..],
                b"MZ a stored program",
                b"MZ a packed program"
            ]
        );
        let (_, problem) = super::blocks(&d[..d.len() - 5], B);
        assert!(problem.is_some());
        let small = Bounds { cap: 5, ..B };
        let (blocks, problem) = super::blocks(&d, small);
        assert_eq!(blocks[0].data, b"the i");
        assert!(matches!(problem, Some((true, _))));
    }

    #[test]
    fn a_solid_stream_of_sized_blocks() {
        let mut plain = Vec::new();
        for data in [&b"script"[..], b"MZ program one", b"MZ program two"] {
            plain.extend_from_slice(&(data.len() as u32).to_le_bytes());
            plain.extend_from_slice(data);
        }
        let d = first_header(&deflate(&plain));
        let (blocks, problem) = blocks(&d, B);
        assert_eq!(problem, None);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[2].data, b"MZ program two");
    }

    #[test]
    fn a_huge_dictionary_is_a_limit() {
        let mut lz = vec![0x5d];
        lz.extend_from_slice(&(1u32 << 31).to_le_bytes());
        lz.extend_from_slice(&[0; 16]);
        let mut body = ((lz.len() as u32) | 0x8000_0000).to_le_bytes().to_vec();
        body.extend_from_slice(&lz);
        let (_, problem) = blocks(&first_header(&body), B);
        assert!(matches!(problem, Some((true, _))), "{problem:?}");
    }
}
