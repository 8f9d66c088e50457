//! AutoIt v3 compiled scripts (`AU3!EA05`, `AU3!EA06`) inside programs, as ClamAV's
//! `autoit.c` reads them: after a 16-byte marker and the version, a 16-byte header, then entries
//! (the script and every `FileInstall`ed file), each with lengths XORed with fixed keys, names
//! and payloads encrypted by a keystream (MT19937 for EA05, the "LAME" RANROT generator for
//! EA06) and payloads compressed by AutoIt's LZSS. EA06 scripts are kept as their token stream
//! (not turned back into text as ClamAV does).

use super::u32_le;
pub use super::Bounds;
/// The marker ClamAV types `AUTOIT` by, anywhere in a program.
pub const MARKER: [u8; 16] = [
    0xa3, 0x48, 0x4b, 0xbe, 0x98, 0x6c, 0x4a, 0xa9, 0x99, 0x4c, 0x53, 0x0a, 0x86, 0xd6, 0x48, 0x7d,
];
const HEADER_END: usize = 40;
/// Names longer than this are not decrypted (ClamAV's buffers).
const MAX_NAME: usize = 300;
const SCRIPT_TAG: &str = ">>>AUTOIT SCRIPT<<<";

/// Per-version constants.
struct Keys {
    ea06: bool,
    file_tag: u32,
    tag_len: u32,
    name_len: u32,
    sizes: u32,
    crc: u32,
    tag_seed: u32,
    name_seed: u32,
}

const EA05: Keys = Keys {
    ea06: false,
    file_tag: 0xceb0_6dff,
    tag_len: 0x29bc,
    name_len: 0x29ac,
    sizes: 0x45aa,
    crc: 0xc3d2,
    tag_seed: 0xa25e,
    name_seed: 0xf25e,
};

const EA06: Keys = Keys {
    ea06: true,
    file_tag: 0x52ca_436b,
    tag_len: 0xadbc,
    name_len: 0xf820,
    sizes: 0x87bc,
    crc: 0xa685,
    tag_seed: 0xb33f,
    name_seed: 0xf479,
};

/// True when `d` starts with the marker and a version this reader knows.
pub fn is_autoit(d: &[u8]) -> bool {
    d.len() > HEADER_END
        && d.starts_with(&MARKER)
        && &d[16..23] == b"AU3!EA0"
        && matches!(d[23], b'5' | b'6')
}

/// An entry's bytes.
#[derive(Debug)]
pub struct Entry {
    /// Its name (the path it was compiled from), or `entryN`.
    pub name: String,
    /// The script itself (EA06: its token stream).
    pub script: bool,
    /// Its bytes, at most the cap.
    pub data: Vec<u8>,
    /// Cut at the cap, or its stream did not decode to the end.
    pub cut: bool,
}

/// The entries (and a problem that stopped the reading: `(true, why)` for a limit,
/// `(false, why)` for damage). Reading ends quietly where the entry tags stop.
pub fn entries(d: &[u8], b: Bounds) -> (Vec<Entry>, Option<(bool, String)>) {
    let mut out = Vec::new();
    if !is_autoit(d) {
        return (out, Some((false, "no AutoIt marker".into())));
    }
    let k = if d[23] == b'6' { &EA06 } else { &EA05 };
    let seed = if k.ea06 {
        0x2477
    } else {
        0x22af + d[24..HEADER_END].iter().map(|b| u32::from(*b)).sum::<u32>()
    };
    let mut at = HEADER_END;
    let mut used = 0usize;
    let mut seen = 0usize;
    while u32_le(d, at) == Some(k.file_tag) {
        // Every entry counts, empty ones too: each costs its names' keystreams.
        seen += 1;
        if seen > b.max_files {
            return (
                out,
                Some((true, format!("more than {} entries", b.max_files))),
            );
        }
        let Some((tag, after)) = text(d, at + 4, k.tag_len, k.tag_seed, k) else {
            return (out, Some((false, "entry tag cut short".into())));
        };
        let Some((name, after)) = text(d, after, k.name_len, k.name_seed, k) else {
            return (out, Some((false, "entry name cut short".into())));
        };
        let (Some(&comp), Some(csize)) = (d.get(after), u32_le(d, after + 1)) else {
            return (out, Some((false, "entry sizes cut short".into())));
        };
        let csize = csize ^ k.sizes;
        let _crc = u32_le(d, after + 9).map(|c| c ^ k.crc);
        at = after + 13 + 16;
        if (csize as i32) < 0 {
            return (out, Some((false, "entry size out of range".into())));
        }
        let Some(packed) = d.get(at..at + csize as usize) else {
            return (out, Some((false, "entry data cut short".into())));
        };
        at += packed.len();
        if packed.is_empty() {
            continue;
        }
        let mut plain = packed.to_vec();
        keystream(k, seed, &mut plain);
        let cap = b.cap.min(b.total.saturating_sub(used));
        let (data, cut) = if comp == 1 {
            match inflate(&plain, k.ea06, cap) {
                Some(v) => v,
                None => return (out, Some((false, "entry stream not AutoIt's".into()))),
            }
        } else {
            let cut = plain.len() > cap;
            plain.truncate(cap);
            (plain, cut)
        };
        used += data.len();
        if data.len() < 4 {
            continue;
        }
        let name = match name {
            Some(n) if !n.is_empty() => n,
            _ => format!("entry{}", out.len() + 1),
        };
        let script = tag.as_deref() == Some(SCRIPT_TAG);
        out.push(Entry {
            name,
            script,
            data,
            cut,
        });
        if used >= b.total {
            return (
                out,
                Some((true, format!("decoded bytes over the limit of {}", b.total))),
            );
        }
    }
    (out, None)
}

/// A length-prefixed string field: its text (when short enough to decrypt) and where the next
/// field starts. EA06 strings are UTF-16.
fn text(
    d: &[u8],
    at: usize,
    len_key: u32,
    seed_key: u32,
    k: &Keys,
) -> Option<(Option<String>, usize)> {
    let s = u32_le(d, at)? ^ len_key;
    let bytes = if k.ea06 { s.checked_mul(2)? } else { s };
    if (bytes as i32) < 0 {
        return None;
    }
    let start = at + 4;
    let raw = d.get(start..start + bytes as usize)?;
    let next = start + raw.len();
    if s as usize >= MAX_NAME {
        return Some((None, next));
    }
    let mut buf = raw.to_vec();
    let seed = s.wrapping_add(seed_key);
    keystream(k, if k.ea06 { seed & 0xffff } else { seed }, &mut buf);
    let t = if k.ea06 {
        let units: Vec<u16> = buf
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(&buf).into_owned()
    };
    Some((Some(t), next))
}

/// XORs `buf` with the version's keystream from `seed`.
fn keystream(k: &Keys, seed: u32, buf: &mut [u8]) {
    if k.ea06 {
        let mut g = Lame::new(seed);
        for b in buf {
            *b ^= g.byte();
        }
    } else {
        let mut g = Mt::new(seed);
        for b in buf {
            *b ^= (g.next() >> 1) as u8;
        }
    }
}

/// MT19937.
struct Mt {
    s: Box<[u32; 624]>,
    i: usize,
}

impl Mt {
    fn new(seed: u32) -> Mt {
        let mut s = Box::new([0u32; 624]);
        s[0] = seed;
        for i in 1..624 {
            let p = s[i - 1];
            s[i] = 0x6c07_8965u32
                .wrapping_mul(p ^ (p >> 30))
                .wrapping_add(i as u32);
        }
        Mt { s, i: 624 }
    }

    fn next(&mut self) -> u32 {
        if self.i >= 624 {
            for i in 0..624 {
                let y = (self.s[i] & 0x8000_0000) | (self.s[(i + 1) % 624] & 0x7fff_ffff);
                let odd = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.s[i] = self.s[(i + 397) % 624] ^ (y >> 1) ^ odd;
            }
            self.i = 0;
        }
        let mut r = self.s[self.i];
        self.i += 1;
        r ^= r >> 11;
        r ^= (r << 7) & 0x9d2c_5680;
        r ^= (r << 15) & 0xefc6_0000;
        r ^ (r >> 18)
    }
}

/// The RANROT-style generator AutoIt 3.2.6+ uses ("LAME" in ClamAV).
struct Lame {
    grp: [u32; 17],
    c0: usize,
    c1: usize,
}

impl Lame {
    fn new(seed: u32) -> Lame {
        let mut g = Lame {
            grp: [0; 17],
            c0: 0,
            c1: 10,
        };
        let mut s = seed;
        for v in g.grp.iter_mut() {
            s = 1u32.wrapping_sub(s.wrapping_mul(0x53a9_b4fb));
            *v = s;
        }
        for _ in 0..9 {
            g.step();
        }
        g
    }

    fn step(&mut self) -> u32 {
        let r = self.grp[self.c0]
            .rotate_left(9)
            .wrapping_add(self.grp[self.c1].rotate_left(13));
        self.grp[self.c0] = r;
        self.c0 = if self.c0 == 0 { 16 } else { self.c0 - 1 };
        self.c1 = if self.c1 == 0 { 16 } else { self.c1 - 1 };
        r
    }

    fn byte(&mut self) -> u8 {
        self.step();
        (self.step() >> 24) as u8
    }
}

/// MSB-first bits over the stream's bytes.
struct Bits<'a> {
    d: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn get(&mut self, n: u32) -> Option<usize> {
        let mut v = 0usize;
        for _ in 0..n {
            let byte = *self.d.get(self.pos / 8)?;
            v = (v << 1) | usize::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// Decompresses an `EA05`/`EA06` stream, at most `cap` bytes: (bytes, cut short). `None` when
/// the stream does not start with the version's magic.
fn inflate(p: &[u8], ea06: bool, cap: usize) -> Option<(Vec<u8>, bool)> {
    let magic: &[u8] = if ea06 { b"EA06" } else { b"EA05" };
    if p.len() < 8 || &p[..4] != magic {
        return None;
    }
    let declared = u32::from_be_bytes([p[4], p[5], p[6], p[7]]) as usize;
    let size = if declared == 0 { p.len() } else { declared };
    let want = size.min(cap);
    let mut out = Vec::with_capacity(want.min(p.len().saturating_mul(64)));
    let mut bits = Bits { d: &p[8..], pos: 0 };
    let match_flag = usize::from(!ea06);
    while out.len() < want {
        let Some(flag) = bits.get(1) else { break };
        if flag != match_flag {
            let Some(b) = bits.get(8) else { break };
            out.push(b as u8);
            continue;
        }
        let (Some(dist), Some(len)) = (bits.get(15), length(&mut bits)) else {
            break;
        };
        if dist == 0 || dist > out.len() {
            break;
        }
        let from = out.len() - dist;
        for i in 0..len.min(want - out.len()) {
            out.push(out[from + i]);
        }
    }
    let cut = out.len() < size;
    Some((out, cut))
}

/// A match length: 3-5, 6-12, 13-43, 44-298, then runs of 255.
fn length(bits: &mut Bits<'_>) -> Option<usize> {
    for (width, base) in [(2, 3), (3, 6), (5, 13), (8, 44)] {
        let v = bits.get(width)?;
        if v < (1 << width) - 1 {
            return Some(base + v);
        }
    }
    let mut extra = 296;
    loop {
        let v = bits.get(8)?;
        if v != 255 {
            return Some(3 + extra + v);
        }
        extra += 255;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "FILE" tags ClamAV compares against are "FILE" under each keystream.
    #[test]
    fn keystreams_give_the_file_tags() {
        let mut tag = *b"FILE";
        keystream(&EA05, 0x16fa, &mut tag);
        assert_eq!(u32::from_le_bytes(tag), EA05.file_tag);
        let mut tag = *b"FILE";
        keystream(&EA06, 0x18ee, &mut tag);
        assert_eq!(u32::from_le_bytes(tag), EA06.file_tag);
    }

    /// MT19937's published first output for seed 5489.
    #[test]
    fn mersenne_twister_matches_the_reference() {
        assert_eq!(Mt::new(5489).next(), 3_499_211_612);
    }

    fn bits_to_bytes(bits: &str) -> Vec<u8> {
        let mut b = bits.to_string();
        while b.len() % 8 != 0 {
            b.push('0');
        }
        b.as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect()
    }

    #[test]
    fn lzss_literals_and_matches() {
        // EA06: flag 1 = literal. "ab", then a match (flag 0) of distance 2, length code "00" (3).
        let mut bits = String::new();
        for c in b"ab" {
            bits.push('1');
            bits.push_str(&format!("{c:08b}"));
        }
        bits.push('0');
        bits.push_str(&format!("{:015b}", 2));
        bits.push_str("00");
        let mut s = b"EA06\0\0\0\x05".to_vec();
        s.extend(bits_to_bytes(&bits));
        assert_eq!(inflate(&s, true, 100), Some((b"ababa".to_vec(), false)));
        assert_eq!(inflate(&s, true, 3), Some((b"aba".to_vec(), true)));
        assert_eq!(inflate(&s, false, 100).map(|v| v.0), None);
        // A distance past the start stops the stream.
        let mut bad = b"EA06\0\0\0\x05".to_vec();
        bad.extend(bits_to_bytes(&format!("0{:015b}00", 9)));
        assert_eq!(inflate(&bad, true, 100), Some((Vec::new(), true)));
    }

    /// A container written the way AutoIt writes one (EA06), holding one stored file.
    #[test]
    fn an_ea06_container_gives_up_its_files() {
        let k = &EA06;
        let mut d = MARKER.to_vec();
        d.extend_from_slice(b"AU3!EA06");
        d.extend_from_slice(&[7; 16]);
        let field = |d: &mut Vec<u8>, s: &str, len_key: u32, seed_key: u32| {
            let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
            d.extend_from_slice(&((s.len() as u32) ^ len_key).to_le_bytes());
            let mut enc = units;
            keystream(
                k,
                (s.len() as u32).wrapping_add(seed_key) & 0xffff,
                &mut enc,
            );
            d.extend(enc);
        };
        d.extend_from_slice(&k.file_tag.to_le_bytes());
        field(&mut d, ">>>AUTOIT NO CMDEXECUTE<<<", k.tag_len, k.tag_seed);
        field(&mut d, "C:\\lab\\tool.exe", k.name_len, k.name_seed);
        let mut payload = b"MZ the installed program".to_vec();
        d.push(0);
        d.extend_from_slice(&((payload.len() as u32) ^ k.sizes).to_le_bytes());
        d.extend_from_slice(&((payload.len() as u32) ^ k.sizes).to_le_bytes());
        d.extend_from_slice(&k.crc.to_le_bytes());
        d.extend_from_slice(&[0; 16]);
        keystream(k, 0x2477, &mut payload);
        d.extend(payload);
        let b = Bounds {
            max_files: 10,
            cap: 1000,
            total: 10_000,
        };
        let (got, problem) = entries(&d, b);
        assert!(problem.is_none(), "{problem:?}");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "C:\\lab\\tool.exe");
        assert_eq!(got[0].data, b"MZ the installed program");
        assert!(!got[0].script);
        for len in 0..d.len() {
            let _ = entries(&d[..len], b);
        }
    }
}
