//! VBA projects in Office files ([MS-OVBA]): the RLE/LZ77 "compressed container" every VBA
//! stream uses (2.4.1), and the `dir` stream's module records (2.3.4.2) that say which stream
//! holds each module and where its compressed source starts.

/// Decompresses a compressed container (`data` starts at its signature byte 0x01), keeping at
/// most `cap` bytes. `None` when the signature is wrong; a damaged chunk ends the output there
/// (what was decoded so far is kept, as Office's own reader and ClamAV do).
pub fn decompress(data: &[u8], cap: usize) -> Option<Vec<u8>> {
    let (&sig, mut rest) = data.split_first()?;
    if sig != 1 {
        return None;
    }
    let mut out = Vec::new();
    while rest.len() >= 2 && out.len() < cap {
        let header = u16::from_le_bytes([rest[0], rest[1]]);
        let size = usize::from(header & 0x0fff) + 3;
        let compressed = header & 0x8000 != 0;
        let chunk = &rest[2..size.min(rest.len())];
        rest = &rest[size.min(rest.len())..];
        if !compressed {
            // A raw chunk is always 4096 bytes (size field 0x0FFF).
            out.extend_from_slice(&chunk[..chunk.len().min(cap - out.len())]);
            continue;
        }
        if !chunk_into(chunk, &mut out, cap) {
            break;
        }
    }
    out.truncate(cap);
    Some(out)
}

/// Decodes one compressed chunk (flag bytes, then literals and copy tokens) onto `out`.
fn chunk_into(chunk: &[u8], out: &mut Vec<u8>, cap: usize) -> bool {
    let start = out.len();
    let mut i = 0;
    while i < chunk.len() {
        let flags = chunk[i];
        i += 1;
        for bit in 0..8 {
            if i >= chunk.len() || out.len() >= cap {
                return true;
            }
            if flags & (1 << bit) == 0 {
                out.push(chunk[i]);
                i += 1;
                continue;
            }
            let Some(tok) = chunk.get(i..i + 2) else {
                return false;
            };
            i += 2;
            let token = u16::from_le_bytes([tok[0], tok[1]]);
            let pos = out.len() - start;
            // Bits of the offset grow with the position in the 4096-byte decompressed chunk.
            let bits = (usize::BITS - pos.saturating_sub(1).leading_zeros()).max(4);
            let len_mask = 0xffffu16 >> bits;
            let len = usize::from(token & len_mask) + 3;
            let offset = usize::from(token >> (16 - bits)) + 1;
            if offset > pos {
                return false;
            }
            for _ in 0..len {
                if out.len() >= cap {
                    return true;
                }
                out.push(out[out.len() - offset]);
            }
        }
    }
    true
}

/// A module of a VBA project, from the `dir` stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Module {
    /// The module's name (MODULENAME).
    pub name: String,
    /// The stream (under the project's `VBA` storage) that holds it (MODULESTREAMNAME).
    pub stream: String,
    /// Where the compressed source starts in that stream (MODULEOFFSET).
    pub offset: usize,
}

/// The modules listed in a decompressed `dir` stream. Records are (id u16, size u32, data); the
/// one exception, PROJECTVERSION (0x0009), carries 6 bytes after a size field of 4.
pub fn modules(dir: &[u8]) -> Vec<Module> {
    let mut out = Vec::new();
    let mut cur: Option<Module> = None;
    let mut i = 0;
    while let Some(h) = dir.get(i..i + 6) {
        let id = u16::from_le_bytes([h[0], h[1]]);
        let mut size = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
        if id == 0x0009 {
            size = 6;
        }
        let Some(data) = dir.get(i + 6..(i + 6).saturating_add(size)) else {
            break;
        };
        i += 6 + size;
        let text = || String::from_utf8_lossy(data).into_owned();
        match id {
            0x0019 => {
                out.extend(cur.take());
                cur = Some(Module {
                    name: text(),
                    stream: text(),
                    offset: 0,
                });
            }
            0x001a => {
                if let Some(m) = cur.as_mut() {
                    m.stream = text();
                }
            }
            0x0031 if data.len() == 4 => {
                if let Some(m) = cur.as_mut() {
                    m.offset = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
                }
            }
            0x002b => out.extend(cur.take()),
            _ => {}
        }
        if out.len() >= 10_000 {
            break;
        }
    }
    out.extend(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decompresses_the_specification_examples() {
        // MS-OVBA 3.2.1: nothing to compress, literals in a compressed chunk.
        let raw = [
            0x01, 0x19, 0xb0, 0x00, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x00, 0x69,
            0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x00, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76,
            0x2e,
        ];
        let got = decompress(&raw, 1000).unwrap();
        assert_eq!(got, b"abcdefghijklmnopqrstuv.");
        // 3.2.2: normal compression.
        let normal = [
            0x01, 0x2f, 0xb0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6a, 0x01, 0x38, 0x08, 0x61, 0x6b, 0x6c, 0x00,
            0x30, 0x6d, 0x6e, 0x6f, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7a, 0x00, 0x3c,
        ];
        let got = decompress(&normal, 1000).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            "#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
        assert_eq!(decompress(&normal, 10).unwrap().len(), 10);
        assert!(decompress(b"\x02abc", 10).is_none());
    }

    #[test]
    fn reads_module_records() {
        let mut dir = Vec::new();
        let rec = |d: &mut Vec<u8>, id: u16, data: &[u8]| {
            d.extend_from_slice(&id.to_le_bytes());
            d.extend_from_slice(&(data.len() as u32).to_le_bytes());
            d.extend_from_slice(data);
        };
        rec(&mut dir, 0x0001, &[1, 0, 0, 0]);
        // PROJECTVERSION: size 4, 6 bytes of data.
        dir.extend_from_slice(&[0x09, 0x00, 4, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
        rec(&mut dir, 0x0019, b"Module1");
        rec(&mut dir, 0x001a, b"Module1Stream");
        rec(&mut dir, 0x0031, &1234u32.to_le_bytes());
        rec(&mut dir, 0x002b, &[]);
        rec(&mut dir, 0x0019, b"ThisDocument");
        rec(&mut dir, 0x0031, &7u32.to_le_bytes());
        let m = modules(&dir);
        assert_eq!(
            m,
            vec![
                Module {
                    name: "Module1".into(),
                    stream: "Module1Stream".into(),
                    offset: 1234
                },
                Module {
                    name: "ThisDocument".into(),
                    stream: "ThisDocument".into(),
                    offset: 7
                },
            ]
        );
    }
}
