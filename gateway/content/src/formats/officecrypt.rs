//! Password-protected Office documents, told by the streams of their compound file as ClamAV's
//! `ole2_extract.c` tells them (`Heuristics.Encrypted.OLE2`): an OOXML document saved with a
//! password is an OLE2 file with `EncryptionInfo` and `EncryptedPackage` streams; a Word
//! 97-2003 document sets `fEncrypted` in its File Information Block; an Excel 97-2003 workbook
//! has a `FilePass` record after its first `BOF`; a PowerPoint 97-2003 presentation keeps an
//! `EncryptedSummary` stream. What such a document holds cannot be read without the password,
//! so it is reported, never passed as clean.

use super::u16_le;

/// Why the stream `name` (its last path component) with these leading `bytes` shows an
/// encrypted document, if it does.
pub fn encryption(name: &str, bytes: &[u8]) -> Option<&'static str> {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    if is("EncryptionInfo") || is("EncryptedPackage") {
        Some("password-protected Office document (EncryptedPackage)")
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
mod tests {
    use super::*;

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend((body.len() as u16).to_le_bytes());
        r.extend(body);
        r
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
