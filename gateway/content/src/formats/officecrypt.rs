//! Password-protected Office documents, told by the streams of their compound file as ClamAV's
//! `ole2_extract.c` tells them (`Heuristics.Encrypted.OLE2`): an OOXML document saved with a
//! password is an OLE2 file with `EncryptionInfo` and `EncryptedPackage` streams; a Word
//! 97-2003 document sets `fEncrypted` in its File Information Block; an Excel 97-2003 workbook
//! has a `FilePass` record after its first `BOF`; a PowerPoint 97-2003 presentation keeps an
//! `EncryptedSummary` stream. What such a document holds cannot be read without the password,
//! so it is reported, never passed as clean.
//!
//! One password is known: Office encrypts a package whose workbook is protected but that opens
//! without asking with `VelvetSweatshop`. A package in ECMA-376 standard encryption (AES) with
//! that password is decrypted ([`velvet_package`]) and scanned, as ClamAV 1.5 does.

use aes::cipher::{BlockCipherDecrypt, KeyInit};
use sha1::{Digest, Sha1};

use super::{u16_le, u32_le};

/// The password Office uses when none is asked for to open a document.
const VELVET: &str = "VelvetSweatshop";
/// SHA-1 rounds of the standard encryption key derivation (MS-OFFCRYPTO 2.3.4.7).
const SPIN: u32 = 50_000;

/// The package of an OOXML document in ECMA-376 standard encryption (AES-128/192/256, its
/// `EncryptionInfo` and `EncryptedPackage` streams) when `VelvetSweatshop` opens it; at most
/// `cap` bytes. `None`: another encryption, or another password.
pub fn velvet_package(info: &[u8], package: &[u8], cap: usize) -> Option<Vec<u8>> {
    let (major, minor, flags) = (u16_le(info, 0)?, u16_le(info, 2)?, u32_le(info, 4)?);
    // Standard encryption: version 2, 3 or 4 .2, fCryptoAPI and fAES.
    if !matches!(major, 2..=4) || minor != 2 || flags & 0x24 != 0x24 {
        return None;
    }
    let header_len = u32_le(info, 8)? as usize;
    let header = info.get(12..12usize.checked_add(header_len)?)?;
    if !matches!(u32_le(header, 8)?, 0x660e..=0x6610) {
        return None;
    }
    let key_len = u32_le(header, 16)? as usize / 8;
    let verifier = info.get(12 + header_len..)?;
    if u32_le(verifier, 0)? != 16 {
        return None;
    }
    let (salt, enc_verifier, enc_hash) = (
        verifier.get(4..20)?,
        verifier.get(20..36)?,
        verifier.get(40..72)?,
    );
    let key = standard_key(VELVET, salt, key_len)?;
    let plain = ecb(&key, enc_verifier)?;
    if ecb(&key, enc_hash)?.get(..20)? != Sha1::digest(&plain).as_slice() {
        return None;
    }
    let size = usize::try_from(u64::from_le_bytes(package.get(..8)?.try_into().ok()?)).ok()?;
    let body = package.get(8..)?;
    let want = size.min(cap).div_ceil(16) * 16;
    let mut out = ecb(&key, &body[..want.min(body.len() - body.len() % 16)])?;
    out.truncate(size.min(cap));
    Some(out)
}

/// MS-OFFCRYPTO 2.3.4.7: the key of a password and salt, `len` bytes.
fn standard_key(password: &str, salt: &[u8], len: usize) -> Option<Vec<u8>> {
    let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut h = Sha1::new();
    h.update(salt);
    h.update(&utf16);
    let mut hash = h.finalize();
    for i in 0..SPIN {
        let mut h = Sha1::new();
        h.update(i.to_le_bytes());
        h.update(hash);
        hash = h.finalize();
    }
    let mut h = Sha1::new();
    h.update(hash);
    h.update(0u32.to_le_bytes());
    let last = h.finalize();
    let derive = |pad: u8| {
        let mut buf = [pad; 64];
        buf.iter_mut().zip(last.iter()).for_each(|(b, x)| *b ^= x);
        Sha1::digest(buf)
    };
    let mut x = derive(0x36).to_vec();
    x.extend_from_slice(&derive(0x5c));
    x.truncate(len);
    (len >= 16).then_some(x)
}

/// AES-ECB decryption of whole blocks (the key's length picks AES-128, -192 or -256).
fn ecb(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    match key.len() {
        16 => ecb_with::<aes::Aes128>(key, data),
        24 => ecb_with::<aes::Aes192>(key, data),
        32 => ecb_with::<aes::Aes256>(key, data),
        _ => None,
    }
}

fn ecb_with<C: BlockCipherDecrypt + KeyInit>(key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let cipher = C::new_from_slice(key).ok()?;
    let mut out = data[..data.len() - data.len() % 16].to_vec();
    for chunk in out.chunks_exact_mut(16) {
        let block: &mut aes::cipher::Block<C> = chunk.try_into().ok()?;
        cipher.decrypt_block(block);
    }
    Some(out)
}

/// The reason given for an OOXML package under a password.
pub const PACKAGE: &str = "password-protected Office document (EncryptedPackage)";

/// Why the stream `name` (its last path component) with these leading `bytes` shows an
/// encrypted document, if it does.
pub fn encryption(name: &str, bytes: &[u8]) -> Option<&'static str> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("EncryptionInfo") || is("EncryptedPackage") {
        Some(PACKAGE)
    } else if is("EncryptedSummary") {
        Some("password-protected PowerPoint presentation")
    } else if is("WordDocument") && word_encrypted(bytes) {
        Some("password-protected Word document (fEncrypted)")
    } else if (is("Workbook") || is("Book")) && workbook_encrypted(bytes) {
        Some("password-protected Excel workbook (FilePass)")
    } else {
        None
    }
}

/// The FIB's identifier (0xA5EC) and its `fEncrypted` flag (bit 8 of the flags at 0x0A).
fn word_encrypted(fib: &[u8]) -> bool {
    u16_le(fib, 0) == Some(0xa5ec) && u16_le(fib, 0x0a).is_some_and(|f| f & 0x0100 != 0)
}

/// Records of the globals substream read looking for `FilePass` (it follows the first `BOF`
/// closely: MS-XLS puts it before any record that holds data).
const MAX_RECORDS: usize = 64;

/// A `BOF` (0x0809) first, then a `FilePass` (0x002F) among the next records, with an
/// encryption type of 0 (XOR obfuscation) or 1 (RC4).
fn workbook_encrypted(stream: &[u8]) -> bool {
    if u16_le(stream, 0) != Some(0x0809) {
        return false;
    }
    let mut at = 0usize;
    for _ in 0..MAX_RECORDS {
        let (Some(kind), Some(len)) = (u16_le(stream, at), u16_le(stream, at + 2)) else {
            return false;
        };
        if kind == 0x002f {
            return matches!(u16_le(stream, at + 4), Some(0 | 1));
        }
        at += 4 + usize::from(len);
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aes::cipher::BlockCipherEncrypt;

    /// `EncryptionInfo` and `EncryptedPackage` of `package` in ECMA-376 standard encryption
    /// (AES-128) under `password`, laid out as Office writes them (files written this way
    /// open in msoffcrypto-tool 6.1, an independent reader, with the same password).
    pub(crate) fn encrypt_standard(password: &str, package: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let salt = [0x5au8; 16];
        let key = standard_key(password, &salt, 16).unwrap();
        let aes = aes::Aes128::new_from_slice(&key).unwrap();
        let enc = |data: &[u8]| {
            let mut out = data.to_vec();
            out.resize(data.len().div_ceil(16) * 16, 0);
            for chunk in out.chunks_exact_mut(16) {
                let block: &mut aes::cipher::Block<aes::Aes128> = chunk.try_into().unwrap();
                aes.encrypt_block(block);
            }
            out
        };
        let verifier = [0x42u8; 16];
        let mut hash = Sha1::digest(verifier).to_vec();
        hash.resize(32, 0);
        let csp: Vec<u8> = "Microsoft Enhanced RSA and AES Cryptographic Provider\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut header = Vec::new();
        for v in [0x24u32, 0, 0x660e, 0x8004, 128, 0x18, 0, 0] {
            header.extend(v.to_le_bytes());
        }
        header.extend(csp);
        let mut info = vec![3, 0, 2, 0, 0x24, 0, 0, 0];
        info.extend((header.len() as u32).to_le_bytes());
        info.extend(header);
        info.extend(16u32.to_le_bytes());
        info.extend(salt);
        info.extend(enc(&verifier));
        info.extend(20u32.to_le_bytes());
        info.extend(enc(&hash));
        let mut sealed = (package.len() as u64).to_le_bytes().to_vec();
        sealed.extend(enc(package));
        (info, sealed)
    }

    #[test]
    fn the_default_password_opens_a_standard_package() {
        let package = b"PK\x03\x04 a package of some length, more than one block".to_vec();
        let (info, sealed) = encrypt_standard(VELVET, &package);
        assert_eq!(velvet_package(&info, &sealed, 1 << 20).unwrap(), package);
        assert_eq!(velvet_package(&info, &sealed, 10).unwrap(), &package[..10]);
        let (info, sealed) = encrypt_standard("password", &package);
        assert_eq!(
            velvet_package(&info, &sealed, 1 << 20),
            None,
            "another password"
        );
        assert_eq!(velvet_package(&info[..40], &sealed, 1 << 20), None);
        let mut agile = info.clone();
        agile[0..4].copy_from_slice(&[4, 0, 4, 0]);
        assert_eq!(
            velvet_package(&agile, &sealed, 1 << 20),
            None,
            "agile encryption"
        );
    }

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend((body.len() as u16).to_le_bytes());
        r.extend(body);
        r
    }

    /// A compound file of these streams, walked: every piece (provenance, bytes) and the
    /// issues.
    pub(crate) fn walk_compound(
        streams: &[(&str, &[u8])],
    ) -> (Vec<(String, Vec<u8>)>, Vec<crate::Issue>) {
        let mut cf = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        for (name, bytes) in streams {
            std::io::Write::write_all(&mut cf.create_stream(name).unwrap(), bytes).unwrap();
        }
        cf.flush().unwrap();
        crate::walk::pieces(cf.into_inner().into_inner(), &crate::Limits::default())
    }

    /// A compound file holding `package` under the default password, walked: the package's
    /// members are found and no issue says encrypted; under another password it is one.
    #[test]
    fn the_walker_opens_what_the_default_password_opens() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file(
            "word/document.xml",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        std::io::Write::write_all(&mut zip, b"<w:document>hidden payload</w:document>").unwrap();
        let package = zip.finish().unwrap().into_inner();
        for (password, opens) in [(VELVET, true), ("secret", false)] {
            let (info, sealed) = encrypt_standard(password, &package);
            let streams = [
                ("/EncryptionInfo", &info[..]),
                ("/EncryptedPackage", &sealed[..]),
            ];
            let (seen, issues) = walk_compound(&streams);
            let found = seen.iter().any(|(prov, data)| {
                prov == "f > ole:EncryptedPackage > decrypted > zip:word/document.xml"
                    && data.as_slice() == b"<w:document>hidden payload</w:document>"
            });
            assert_eq!(found, opens, "{seen:?}");
            let encrypted = issues.iter().any(|i| i.kind == crate::IssueKind::Encrypted);
            assert_eq!(encrypted, !opens, "{issues:?}");
        }
    }

    #[test]
    fn each_kind_of_protection_is_told() {
        assert!(encryption("EncryptedPackage", b"").is_some());
        assert!(encryption("encryptioninfo", b"").is_some());
        assert!(encryption("EncryptedSummary", b"").is_some());
        let mut fib = vec![0u8; 32];
        fib[0..2].copy_from_slice(&0xa5ecu16.to_le_bytes());
        assert!(encryption("WordDocument", &fib).is_none());
        fib[0x0b] = 0x01;
        assert!(encryption("WordDocument", &fib).is_some());
        assert!(encryption("1Table", &fib).is_none());
        let mut book = record(0x0809, &[0u8; 16]);
        book.extend(record(0x00e1, &[0u8; 2]));
        assert!(encryption("Workbook", &book).is_none());
        book.extend(record(0x002f, &[1, 0, 1, 0]));
        assert!(encryption("Workbook", &book).is_some());
        assert!(encryption("Workbook", &book[..book.len() - 4]).is_none());
        assert!(
            encryption("Workbook", &record(0x002f, &[1, 0])).is_none(),
            "no BOF"
        );
    }
}
