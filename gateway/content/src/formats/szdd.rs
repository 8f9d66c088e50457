//! SZDD (`COMPRESS.EXE` / `expand`, files named `SETUP.EX_`): an LZSS stream with a 4096-byte
//! window that starts filled with spaces, after a 14-byte header giving the expanded size.

const MAGIC: &[u8] = b"SZDD\x88\xf0\x27\x33";

/// True when `data` starts with the SZDD magic.
pub fn is_szdd(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Expands an SZDD file, at most `cap` bytes (and at most the size its header declares).
/// Returns the bytes and whether they stop short of the declared size.
pub fn expand(data: &[u8], cap: usize) -> Option<(Vec<u8>, bool)> {
    let h = data
        .get(..14)
        .filter(|h| h.starts_with(MAGIC) && h[8] == b'A')?;
    let declared = u32::from_le_bytes([h[10], h[11], h[12], h[13]]) as usize;
    let want = declared.min(cap);
    let mut window = [b' '; 4096];
    let mut pos = 4096 - 16;
    let mut out = Vec::with_capacity(want.min(data.len().saturating_mul(8)));
    let mut input = data[14..].iter().copied();
    'outer: while out.len() < want {
        let Some(flags) = input.next() else { break };
        for bit in 0..8 {
            if out.len() >= want {
                break 'outer;
            }
            if flags & (1 << bit) != 0 {
                let Some(b) = input.next() else {
                    break 'outer;
                };
                out.push(b);
                window[pos] = b;
                pos = (pos + 1) & 4095;
                continue;
            }
            let (Some(lo), Some(hi)) = (input.next(), input.next()) else {
                break 'outer;
            };
            let mut from = usize::from(lo) | (usize::from(hi & 0xf0) << 4);
            for _ in 0..usize::from(hi & 0x0f) + 3 {
                if out.len() >= want {
                    break 'outer;
                }
                let b = window[from];
                out.push(b);
                window[pos] = b;
                pos = (pos + 1) & 4095;
                from = (from + 1) & 4095;
            }
        }
    }
    let short = out.len() < declared;
    Some((out, short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_window_copies() {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&[b'A', b'_', 10, 0, 0, 0]);
        // Four literals "abcd", then a copy of 3 from window position 4080 ("abc"), then
        // three spaces from the initial window, then nothing.
        f.push(0b0000_1111);
        f.extend_from_slice(b"abcd");
        f.extend_from_slice(&[0xf0, 0xf0]);
        f.extend_from_slice(&[0x00, 0x00]);
        let (out, short) = expand(&f, 100).unwrap();
        assert_eq!(out, b"abcdabc   ");
        assert!(!short);
        let (out, short) = expand(&f, 5).unwrap();
        assert_eq!(out, b"abcda");
        assert!(short);
        assert!(expand(&f[..10], 5).is_none());
    }
}
