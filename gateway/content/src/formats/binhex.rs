//! BinHex 4.0 (`.hqx`, classic Mac mail attachments): six-bit text between colons, then
//! run-length expansion (0x90), then a header (name, type, creator, flags, fork lengths) and
//! the data and resource forks. CRCs are not enforced: a file with a bad CRC is still scanned.

const ALPHABET: &[u8; 64] = b"!\"#$%&'()*+,-012345689@ABCDEFGHIJKLMNPQRSTUVXYZ[`abcdefhijklmpqr";
const BANNER: &[u8] = b"(This file must be converted with BinHex";

/// True when the text carries the BinHex banner near its start.
pub fn is_binhex(data: &[u8]) -> bool {
    memchr::memmem::find(&data[..data.len().min(4096)], BANNER).is_some()
}

/// A decoded BinHex file.
#[derive(Debug, PartialEq, Eq)]
pub struct HqxFile {
    /// The Mac file name.
    pub name: String,
    /// The data fork.
    pub data: Vec<u8>,
    /// The resource fork.
    pub resource: Vec<u8>,
    /// The encoding ended before the forks did, or a fork went over the cap.
    pub cut: bool,
}

/// Decodes the BinHex text in `text`, each fork kept to `cap` bytes.
pub fn decode(text: &[u8], cap: usize) -> Option<HqxFile> {
    let at = memchr::memmem::find(text, BANNER)?;
    let body = &text[at..];
    let start = body.iter().position(|b| *b == b':')? + 1;
    // The expanded stream holds both forks and the header: bound it.
    let limit = cap.saturating_mul(2).saturating_add(1024);
    let bytes = expand(&sextets(&body[start..]), limit);
    let mut c = 0usize;
    let name_len = usize::from(*bytes.first()?);
    c += 1;
    let name = String::from_utf8_lossy(bytes.get(c..c + name_len)?).into_owned();
    c += name_len + 1 + 4 + 4 + 2;
    let be32 = |i: usize| -> Option<usize> {
        let b = bytes.get(i..i + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let data_len = be32(c)?;
    let res_len = be32(c + 4)?;
    c += 8 + 2;
    let fork = |from: usize, len: usize| {
        let from = from.min(bytes.len());
        let to = from.saturating_add(len).min(bytes.len());
        (
            bytes[from..to.min(from + cap)].to_vec(),
            to - from < len || len > cap,
        )
    };
    let (data, cut_data) = fork(c, data_len);
    let (resource, cut_res) = fork(c.saturating_add(data_len).saturating_add(2), res_len);
    Some(HqxFile {
        name,
        data,
        resource,
        cut: cut_data || (res_len > 0 && cut_res),
    })
}

/// The six-bit values up to the closing colon, three bytes per four characters.
fn sextets(s: &[u8]) -> Vec<u8> {
    let mut table = [255u8; 256];
    for (i, c) in ALPHABET.iter().enumerate() {
        table[usize::from(*c)] = i as u8;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in s {
        if c == b':' {
            break;
        }
        let v = table[usize::from(c)];
        if v == 255 {
            continue;
        }
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

/// Run-length expansion: `0x90 n` repeats the previous byte to make `n` in all; `0x90 0` is a
/// literal 0x90. Output bounded by `limit`.
fn expand(s: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len().min(limit));
    let mut i = 0;
    while i < s.len() && out.len() < limit {
        let b = s[i];
        i += 1;
        if b != 0x90 {
            out.push(b);
            continue;
        }
        let Some(&n) = s.get(i) else { break };
        i += 1;
        if n == 0 {
            out.push(0x90);
        } else if let Some(&prev) = out.last() {
            let more = usize::from(n).saturating_sub(1).min(limit - out.len());
            out.extend(std::iter::repeat_n(prev, more));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes like BinHex 4.0 (without run-length compression; CRCs zero).
    fn encode(name: &str, data: &[u8]) -> Vec<u8> {
        let mut raw = vec![name.len() as u8];
        raw.extend_from_slice(name.as_bytes());
        raw.push(0);
        raw.extend_from_slice(b"TEXTttxt\0\0");
        raw.extend_from_slice(&(data.len() as u32).to_be_bytes());
        raw.extend_from_slice(&0u32.to_be_bytes());
        raw.extend_from_slice(&[0, 0]);
        for &b in data {
            raw.push(b);
            if b == 0x90 {
                raw.push(0);
            }
        }
        raw.extend_from_slice(&[0, 0, 0, 0]);
        let mut text = b"(This file must be converted with BinHex 4.0)\r\n:".to_vec();
        for (i, g) in raw.chunks(3).enumerate() {
            let b = [g[0], *g.get(1).unwrap_or(&0), *g.get(2).unwrap_or(&0)];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..=g.len() {
                text.push(ALPHABET[((v >> (18 - 6 * k)) & 63) as usize]);
            }
            if i % 16 == 15 {
                text.extend_from_slice(b"\r\n");
            }
        }
        text.extend_from_slice(b":\r\n");
        text
    }

    #[test]
    fn decodes_data_forks() {
        let data: Vec<u8> = (0..=255u8).chain([0x90, 0x90, 7]).collect();
        let hqx = encode("report.doc", &data);
        assert!(is_binhex(&hqx));
        let f = decode(&hqx, 1 << 20).unwrap();
        assert_eq!(f.name, "report.doc");
        assert_eq!(f.data, data);
        assert!(!f.cut);
        let f = decode(&hqx, 10).unwrap();
        assert_eq!(f.data.len(), 10);
        assert!(f.cut);
    }

    #[test]
    fn run_length_expansion() {
        assert_eq!(expand(&[1, 0x90, 4, 2], 100), vec![1, 1, 1, 1, 2]);
        assert_eq!(expand(&[0x90, 0, 3], 100), vec![0x90, 3]);
        assert_eq!(expand(&[1, 0x90, 255], 10).len(), 10);
        assert!(decode(b"(This file must be converted with BinHex 4.0)\n:!!", 10).is_none());
    }
}
