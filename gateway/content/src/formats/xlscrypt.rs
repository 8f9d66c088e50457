//! Excel 97-2003 workbooks encrypted with Office's default password `VelvetSweatshop` (what
//! Excel writes for a protected workbook that opens without asking, and what XLM-macro
//! droppers use to hide their sheets from scanners): the `Workbook` stream decrypted as
//! MS-XLS 2.2.10 and MS-OFFCRYPTO 2.3.5 / 2.3.6 say, RC4 with a key per 1,024 bytes of the
//! stream, record headers and the records that stay in the clear left as they are. A workbook
//! under any other password stays reported as encrypted.

use md5::Md5;
use rc4::{KeyInit, Rc4, StreamCipher};
use sha1::{Digest, Sha1};

use super::{u16_le, u32_le};

const VELVET: &str = "VelvetSweatshop";
/// Bytes of the stream each RC4 key covers.
const BLOCK: usize = 1024;
/// Records the stream leaves in the clear: BOF, FilePass, UsrExcl, FileLock, InterfaceHdr,
/// RRDInfo, RRDHead.
const CLEAR: [u16; 7] = [0x0809, 0x002f, 0x0194, 0x0195, 0x00e1, 0x0196, 0x0138];
/// BoundSheet8, whose first four bytes (`lbPlyPos`) stay in the clear.
const BOUND_SHEET: u16 = 0x0085;
/// Records read before `FilePass` must have come.
const MAX_HEAD_RECORDS: usize = 64;

/// How the workbook's keys are made.
enum Scheme {
    /// RC4 with MD5 keys (`FilePass` version 1.1).
    Binary { intermediate: [u8; 5] },
    /// RC4 CryptoAPI with SHA-1 keys (versions 2-4 .2) of `len` bytes: the first hash of the
    /// salt and password.
    CryptoApi { h0: Vec<u8>, len: usize },
}

impl Scheme {
    fn key(&self, block: u32) -> Vec<u8> {
        match self {
            Scheme::Binary { intermediate } => {
                let mut h = Md5::new();
                h.update(intermediate);
                h.update(block.to_le_bytes());
                h.finalize().to_vec()
            }
            Scheme::CryptoApi { h0, len } => {
                let mut h = Sha1::new();
                h.update(h0);
                h.update(block.to_le_bytes());
                let mut key = h.finalize()[..*len].to_vec();
                // A 40-bit key is used as 128 bits, zero-filled.
                if *len == 5 {
                    key.resize(16, 0);
                }
                key
            }
        }
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The `Workbook` stream decrypted, when it is RC4-encrypted under `VelvetSweatshop`.
pub fn velvet_workbook(stream: &[u8]) -> Option<Vec<u8>> {
    open_workbook(stream, VELVET)
}

/// The `Workbook` stream decrypted with `password`, when it opens it.
fn open_workbook(stream: &[u8], password: &str) -> Option<Vec<u8>> {
    let (pass_end, filepass) = find_filepass(stream)?;
    let scheme = scheme(filepass, password)?;
    let mut out = stream.to_vec();
    let mut keys = Keystream::new(&scheme);
    let mut at = pass_end;
    while let (Some(kind), Some(len)) = (u16_le(stream, at), u16_le(stream, at + 2)) {
        let data = at + 4;
        let end = (data + usize::from(len)).min(stream.len());
        let from = match kind {
            k if CLEAR.contains(&k) => end,
            BOUND_SHEET => (data + 4).min(end),
            _ => data,
        };
        keys.apply(from, &mut out[from..end]);
        at = end;
        if end == stream.len() {
            break;
        }
    }
    Some(out)
}

/// The first records: a `BOF`, then `FilePass` among the next ones; (where the records after
/// it start, its data).
fn find_filepass(stream: &[u8]) -> Option<(usize, &[u8])> {
    if u16_le(stream, 0)? != 0x0809 {
        return None;
    }
    let mut at = 0usize;
    for _ in 0..MAX_HEAD_RECORDS {
        let (kind, len) = (u16_le(stream, at)?, usize::from(u16_le(stream, at + 2)?));
        let data = stream.get(at + 4..at + 4 + len)?;
        if kind == 0x002f {
            return Some((at + 4 + len, data));
        }
        at += 4 + len;
    }
    None
}

/// The key scheme `FilePass` describes, when `password` passes its verifier.
fn scheme(fp: &[u8], password: &str) -> Option<Scheme> {
    if u16_le(fp, 0)? != 1 {
        return None; // XOR obfuscation
    }
    let (major, minor) = (u16_le(fp, 2)?, u16_le(fp, 4)?);
    let (scheme, verifier, hash_len) = match (major, minor) {
        (1, 1) => {
            let salt = fp.get(6..22)?;
            let h0 = Md5::digest(utf16(password));
            let mut unit = h0[..5].to_vec();
            unit.extend_from_slice(salt);
            let intermediate: [u8; 5] = Md5::digest(unit.repeat(16))[..5].try_into().ok()?;
            (
                Scheme::Binary { intermediate },
                fp.get(22..54)?.to_vec(),
                16,
            )
        }
        (2..=4, 2) => {
            let header_len = u32_le(fp, 10)? as usize;
            let header = fp.get(14..14usize.checked_add(header_len)?)?;
            let bits = u32_le(header, 16)?;
            let len = if bits == 0 { 5 } else { (bits / 8) as usize };
            if u32_le(header, 8)? != 0x6801 || !(5..=16).contains(&len) {
                return None;
            }
            let v = fp.get(14 + header_len..)?;
            if u32_le(v, 0)? != 16 {
                return None;
            }
            let mut h = Sha1::new();
            h.update(v.get(4..20)?);
            h.update(utf16(password));
            let h0 = h.finalize().to_vec();
            let mut verifier = v.get(20..36)?.to_vec();
            verifier.extend_from_slice(v.get(40..60)?);
            (Scheme::CryptoApi { h0, len }, verifier, 20)
        }
        _ => return None,
    };
    let mut plain = verifier;
    Rc4::new_from_slice(&scheme.key(0))
        .ok()?
        .apply_keystream(&mut plain);
    let (v, h) = plain.split_at(16);
    let want = match scheme {
        Scheme::Binary { .. } => Md5::digest(v).to_vec(),
        Scheme::CryptoApi { .. } => Sha1::digest(v).to_vec(),
    };
    (h.get(..hash_len)? == want.get(..hash_len)?).then_some(scheme)
}

/// The RC4 keystream of the whole stream, rekeyed every [`BLOCK`] bytes: applied at stream
/// offsets, moving only forward.
struct Keystream<'a> {
    scheme: &'a Scheme,
    block: Option<(usize, Rc4, usize)>,
}

impl<'a> Keystream<'a> {
    fn new(scheme: &'a Scheme) -> Self {
        Keystream {
            scheme,
            block: None,
        }
    }

    /// XORs the keystream at stream offsets `at..` into `buf`.
    fn apply(&mut self, mut at: usize, buf: &mut [u8]) {
        let mut done = 0;
        while done < buf.len() {
            let (block, offset) = (at / BLOCK, at % BLOCK);
            let fresh = !matches!(&self.block, Some((b, _, o)) if *b == block && *o <= offset);
            if fresh {
                let key = self.scheme.key(block as u32);
                let Ok(rc4) = Rc4::new_from_slice(&key) else {
                    return;
                };
                self.block = Some((block, rc4, 0));
            }
            let Some((_, rc4, pos)) = self.block.as_mut() else {
                return;
            };
            let mut skip = [0u8; BLOCK];
            rc4.apply_keystream(&mut skip[..offset - *pos]);
            let n = (BLOCK - offset).min(buf.len() - done);
            rc4.apply_keystream(&mut buf[done..done + n]);
            *pos = offset + n;
            done += n;
            at += n;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn record(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend((data.len() as u16).to_le_bytes());
        r.extend(data);
        r
    }

    /// A CryptoAPI `FilePass` for `password` (the verifier encrypted as Excel writes it).
    fn filepass(password: &str) -> Vec<u8> {
        let salt = [7u8; 16];
        let key = {
            let mut h = Sha1::new();
            h.update(salt);
            h.update(utf16(password));
            let h0 = h.finalize();
            let mut h = Sha1::new();
            h.update(h0);
            h.update(0u32.to_le_bytes());
            h.finalize()[..16].to_vec()
        };
        let verifier = [0x33u8; 16];
        let mut sealed = verifier.to_vec();
        sealed.extend(Sha1::digest(verifier));
        Rc4::new_from_slice(&key)
            .unwrap()
            .apply_keystream(&mut sealed);
        let mut header = Vec::new();
        for v in [0x04u32, 0, 0x6801, 0x8004, 128, 1, 0, 0] {
            header.extend(v.to_le_bytes());
        }
        header.extend(utf16("Microsoft Enhanced Cryptographic Provider v1.0\0"));
        let mut fp = vec![1, 0, 4, 0, 2, 0];
        fp.extend(4u32.to_le_bytes());
        fp.extend((header.len() as u32).to_le_bytes());
        fp.extend(header);
        fp.extend(16u32.to_le_bytes());
        fp.extend(salt);
        fp.extend(&sealed[..16]);
        fp.extend(20u32.to_le_bytes());
        fp.extend(&sealed[16..]);
        fp
    }

    /// A workbook stream of `records` after BOF and a FilePass for `password`, encrypted
    /// (keystream by stream offset, clear parts kept).
    pub(crate) fn encrypted_workbook(password: &str, records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut plain = record(0x0809, &[0u8; 16]);
        plain.extend(record(0x002f, &filepass(password)));
        let start = plain.len();
        for (k, d) in records {
            plain.extend(record(*k, d));
        }
        // Encrypting is the same XOR; a correct password gives the writer's stream.
        let Some(scheme) = scheme(&filepass(password), password) else {
            return plain;
        };
        if password != VELVET {
            return plain;
        }
        let mut out = plain.clone();
        let mut keys = Keystream::new(&scheme);
        let mut at = start;
        for (k, d) in records {
            let data = at + 4;
            let from = match *k {
                k if CLEAR.contains(&k) => data + d.len(),
                BOUND_SHEET => data + 4,
                _ => data,
            };
            keys.apply(from, &mut out[from..data + d.len()]);
            at = data + d.len();
        }
        out
    }

    /// ClamAV's `password.*.xls` samples (RC4 CryptoAPI under the password "password"), when
    /// a ClamAV checkout is beside the repository: they open with it, and their sheet names
    /// read; `VelvetSweatshop` does not open them.
    #[test]
    fn clamavs_password_workbooks_open_with_their_password() {
        for name in ["password.fat.xls", "password.ministream.xls"] {
            let Some(file) = clamav_file(name) else {
                eprintln!("no ClamAV checkout beside the repository: skipped");
                return;
            };
            let mut cf = cfb::CompoundFile::open(std::io::Cursor::new(file)).unwrap();
            let mut stream = Vec::new();
            std::io::Read::read_to_end(&mut cf.open_stream("/Workbook").unwrap(), &mut stream)
                .unwrap();
            assert!(velvet_workbook(&stream).is_none(), "{name}");
            let open = open_workbook(&stream, "password").expect("its password opens it");
            let sheet = utf16("Sheet1");
            let found = memchr::memmem::find(&open, b"Sheet1").is_some()
                || memchr::memmem::find(&open, &sheet).is_some();
            assert!(found, "{name}: no sheet name after decryption");
            assert!(
                memchr::memmem::find(&stream, b"Sheet1").is_none(),
                "encrypted before"
            );
        }
    }

    fn clamav_file(name: &str) -> Option<Vec<u8>> {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../.mirror/Cisco-Talos+clamav/repo");
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(repo)
            .arg("show")
            .arg(format!(
                "HEAD:unit_tests/input/other_scanfiles/ole2_encryption/{name}"
            ))
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// Through the walker: the decrypted stream is a piece, and no issue says encrypted.
    #[test]
    fn the_walker_reads_a_velvet_workbook() {
        let formula = b"=EXEC(\"cmd /c payload\")".repeat(20);
        let sealed = encrypted_workbook(VELVET, &[(0x0006, formula.clone())]);
        let (pieces, issues) =
            crate::formats::officecrypt::tests::walk_compound(&[("/Workbook", &sealed[..])]);
        let seen = pieces.iter().any(|(prov, data)| {
            prov == "f > ole:Workbook > decrypted" && memchr::memmem::find(data, &formula).is_some()
        });
        assert!(seen);
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn the_default_password_opens_the_workbook() {
        let formula = b"=EXEC(\"calc.exe\") hidden in an XLM macro sheet".repeat(40);
        let records = vec![
            (BOUND_SHEET, b"\x10\x00\x00\x00\x01\x01macro1".to_vec()),
            (0x0006, formula.clone()),
            (0x00e1, vec![0xb0, 0x04]),
            (0x000a, Vec::new()),
        ];
        let sealed = encrypted_workbook(VELVET, &records);
        assert!(memchr::memmem::find(&sealed, b"EXEC").is_none());
        let open = velvet_workbook(&sealed).expect("VelvetSweatshop opens it");
        assert!(memchr::memmem::find(&open, &formula).is_some());
        assert!(memchr::memmem::find(&open, b"macro1").is_some());
        // Another password: the verifier does not pass.
        let other = encrypted_workbook("secret", &records);
        assert!(velvet_workbook(&other).is_none());
        assert!(velvet_workbook(&sealed[..30]).is_none());
        for n in 0..sealed.len().min(400) {
            let _ = velvet_workbook(&sealed[..n]);
        }
    }
}
