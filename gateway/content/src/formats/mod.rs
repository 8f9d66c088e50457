//! Container and encoding formats, recognised by content (magic bytes, never the name).

pub mod alz;
pub mod arj;
pub mod aspack;
pub mod autoit;
pub mod b64parts;
pub mod binhex;
pub mod chm;
pub mod cpio;
pub mod embedded;
pub mod exe;
pub mod filetype;
pub mod html;
pub mod iscab;
pub mod ishield;
pub mod iso9660;
pub mod lha;
pub mod mew;
pub mod nrv;
pub mod nsis;
pub mod officecrypt;
pub mod ole1;
pub mod onenote;
pub mod ovba;
pub mod pdf;
pub mod pdfcrypt;
pub mod pdfdict;
pub mod pe;
pub mod pespin;
pub mod petite;
pub mod ppt;
pub mod rebuild;
pub mod rtf;
pub mod sis;
pub mod szdd;
pub mod tnef;
pub mod unfsg;
pub mod upack;
pub mod upx;
pub mod uuencode;
pub mod wwpack;
pub mod xlscrypt;
pub mod yc;
pub mod ziplocal;
pub mod zipold;
pub mod zstd;

/// A little-endian u16 at `at`, if the bytes are there.
pub(crate) fn u16_le(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// A little-endian u32 at `at`, if the bytes are there.
pub(crate) fn u32_le(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// A little-endian u64 at `at`, if the bytes are there.
pub(crate) fn u64_le(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The limits a reader that hands back whole files keeps to.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Files returned.
    pub max_files: usize,
    /// Bytes of one file.
    pub cap: usize,
    /// Bytes decoded in all.
    pub total: usize,
}

/// Decodes `<marker>xx` hex escapes (`%41` in URLs and cid references, `#41` in PDF names);
/// anything else is kept as it is.
pub fn unescape_hex(b: &[u8], marker: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == marker && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A format the walker opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// gzip stream (RFC 1952).
    Gzip,
    /// bzip2 stream.
    Bzip2,
    /// xz container.
    Xz,
    /// LZMA "alone" stream (`.lzma`).
    Lzma,
    /// zip archive (also a split archive's single segment).
    Zip,
    /// POSIX / GNU tar.
    Tar,
    /// 7-Zip archive.
    SevenZ,
    /// Microsoft Cabinet.
    Cab,
    /// cpio in any layout.
    Cpio,
    /// An RFC 5322 message or a Unix mbox.
    Mail,
    /// An OLE2 compound file (doc, xls, ppt, msi, msg).
    Ole2,
    /// An RTF document.
    Rtf,
    /// An ISO 9660 image.
    Iso,
    /// BinHex 4.0 text.
    BinHex,
    /// TNEF (`winmail.dat`).
    Tnef,
    /// SZDD (`COMPRESS.EXE`).
    Szdd,
    /// A OneNote section.
    OneNote,
    /// An HTML document.
    Html,
    /// A PDF document.
    Pdf,
    /// A Symbian installation file.
    Sis,
    /// A RAR archive (1.3 to 7).
    Rar,
    /// A Nullsoft installer's data (from its first header).
    Nsis,
    /// An ARJ archive.
    Arj,
    /// Compiled HTML help (ITSF).
    Chm,
    /// An InstallShield MSI-based setup's file blocks (from `InstallShield\0`).
    IsMsi,
    /// A compiled AutoIt v3 script's entries (`AU3!EA05`, `AU3!EA06`).
    AutoIt,
    /// An LHA / LZH archive (`-lh5-` and the other methods).
    Lha,
    /// An ALZip archive.
    Alz,
    /// A Zstandard stream.
    Zstd,
    /// A Windows program (PE) inside another file, from its `MZ` to the end of that file (as
    /// ClamAV takes it: a PE header does not give the file's length). Never a whole file's
    /// format: only the embedded search names it.
    Pe,
}

impl Format {
    /// The label used in provenance strings (`file > 7z:a.exe`).
    pub fn label(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Bzip2 => "bzip2",
            Format::Xz => "xz",
            Format::Lzma => "lzma",
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::SevenZ => "7z",
            Format::Cab => "cab",
            Format::Cpio => "cpio",
            Format::Mail => "mail",
            Format::Ole2 => "ole",
            Format::Rtf => "rtf",
            Format::Iso => "iso",
            Format::BinHex => "binhex",
            Format::Tnef => "tnef",
            Format::Szdd => "szdd",
            Format::OneNote => "onenote",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Sis => "sis",
            Format::Rar => "rar",
            Format::Nsis => "nsis",
            Format::Arj => "arj",
            Format::Chm => "chm",
            Format::IsMsi => "ishield",
            Format::AutoIt => "autoit",
            Format::Lha => "lha",
            Format::Alz => "alz",
            Format::Zstd => "zstd",
            Format::Pe => "pe",
        }
    }
}

/// The format `data` starts with, if the walker opens it.
pub fn detect(data: &[u8]) -> Option<Format> {
    let f = if data.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if is_bzip2(data) {
        Format::Bzip2
    } else if zstd::is_zstd(data) {
        Format::Zstd
    } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::Xz
    } else if data.starts_with(&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c]) {
        Format::SevenZ
    } else if is_rar(data) {
        Format::Rar
    } else if data.starts_with(b"PK\x03\x04")
        || data.starts_with(b"PK\x05\x06")
        || data.starts_with(b"PK\x07\x08")
        || data.starts_with(b"PK00PK\x03\x04")
    {
        Format::Zip
    } else if data.starts_with(&[0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]) {
        Format::Ole2
    } else if onenote::is_onenote(data) {
        Format::OneNote
    } else if tnef::is_tnef(data) {
        Format::Tnef
    } else if szdd::is_szdd(data) {
        Format::Szdd
    } else if rtf::is_rtf(data) {
        Format::Rtf
    } else if nsis::is_nsis(data) {
        Format::Nsis
    } else if sis::is_sis(data) {
        Format::Sis
    } else if arj::is_arj(data) {
        Format::Arj
    } else if chm::is_chm(data) {
        Format::Chm
    } else if ishield::is_msi(data) {
        Format::IsMsi
    } else if autoit::is_autoit(data) {
        Format::AutoIt
    } else if alz::is_alz(data) {
        Format::Alz
    } else if lha::is_lha(data) {
        Format::Lha
    } else if data.starts_with(b"MSCF\0\0\0\0") {
        Format::Cab
    } else if is_tar(data) {
        Format::Tar
    } else if cpio::layout(data).is_some() {
        Format::Cpio
    } else if iso9660::is_iso(data) {
        Format::Iso
    } else if is_lzma_alone(data) {
        Format::Lzma
    } else if pdf::is_pdf(data) {
        Format::Pdf
    } else if binhex::is_binhex(data) {
        Format::BinHex
    } else if is_mail(data) {
        Format::Mail
    } else if html::is_html(data) {
        Format::Html
    } else {
        return None;
    };
    Some(f)
}

/// RAR 1.5-4 (`Rar!\x1a\x07\x00`), RAR 5-7 (`Rar!\x1a\x07\x01\x00`), RAR 1.3 (`RE~^`).
pub fn is_rar(d: &[u8]) -> bool {
    d.starts_with(b"Rar!\x1a\x07\x00")
        || d.starts_with(b"Rar!\x1a\x07\x01\x00")
        || d.starts_with(b"RE~^")
}

fn is_bzip2(d: &[u8]) -> bool {
    d.len() >= 10
        && d.starts_with(b"BZh")
        && (b'1'..=b'9').contains(&d[3])
        && (d[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || d[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
}

/// `ustar` at offset 257 (POSIX and GNU tar).
pub fn is_tar(d: &[u8]) -> bool {
    d.len() >= 512 && &d[257..262] == b"ustar"
}

/// An LZMA-alone header: properties byte lc/lp/pb in range, a power-of-two-ish dictionary, and
/// an unpacked size that is either unknown (all ones) or plausible. Like ClamAV, only the
/// common properties byte 0x5D is taken, so random data rarely qualifies.
fn is_lzma_alone(d: &[u8]) -> bool {
    if d.len() < 13 || d[0] != 0x5d {
        return false;
    }
    let dict = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
    let size = u64::from_le_bytes(d[5..13].try_into().unwrap_or([0; 8]));
    dict.count_ones() <= 2 && dict >= 1 << 12 && (size == u64::MAX || size < 1 << 40)
}

/// Header fields a message or an mbox starts with (ClamAV's mail detection looks at the same).
const MAIL_STARTS: &[&[u8]] = &[
    b"from ",
    b"received:",
    b"return-path:",
    b"delivered-to:",
    b"x-",
    b"from:",
    b"to:",
    b"subject:",
    b"date:",
    b"message-id:",
    b"mime-version:",
    b"content-type:",
    b"reply-to:",
    b"sender:",
    b"cc:",
    b"dkim-signature:",
    b"authentication-results:",
    b"arc-",
];

/// A message: its first line is one of the usual header fields (or an mbox `From ` line) and
/// the first lines look like header fields up to a blank line.
fn is_mail(d: &[u8]) -> bool {
    let head = &d[..d.len().min(4096)];
    let lower: Vec<u8> = head
        .iter()
        .take(32)
        .map(|b| b.to_ascii_lowercase())
        .collect();
    if !MAIL_STARTS.iter().any(|s| lower.starts_with(s)) {
        return false;
    }
    let mut fields = 0;
    for (i, line) in head.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return fields >= 2;
        }
        if i == 0 && lower.starts_with(b"from ") {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return false;
        };
        if colon == 0 || !line[..colon].iter().all(|b| b.is_ascii_graphic()) {
            return false;
        }
        fields += 1;
    }
    fields >= 2 && head.len() < d.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_picks_the_format() {
        assert_eq!(detect(b"BZh91AY&SYxxxx"), Some(Format::Bzip2));
        assert_eq!(detect(b"\xfd7zXZ\x00\x00\x04"), Some(Format::Xz));
        assert_eq!(
            detect(b"7z\xbc\xaf\x27\x1c\x00\x04rest"),
            Some(Format::SevenZ)
        );
        assert_eq!(detect(b"MSCF\0\0\0\0rest"), Some(Format::Cab));
        assert_eq!(detect(b"070701000000"), Some(Format::Cpio));
        assert_eq!(
            detect(b"\x5d\x00\x00\x80\x00\xff\xff\xff\xff\xff\xff\xff\xff\x00"),
            Some(Format::Lzma)
        );
        assert_eq!(detect(b"BZh9 not bzip2"), None);
        assert_eq!(detect(b"plain text"), None);
    }

    #[test]
    fn mail_needs_header_fields_up_to_a_blank_line() {
        let m = b"Received: from x\r\n\tby y\r\nFrom: a@b\r\nSubject: hi\r\n\r\nbody";
        assert_eq!(detect(m), Some(Format::Mail));
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nTo: c@d\n\nbody\n";
        assert_eq!(detect(mbox), Some(Format::Mail));
        assert_eq!(detect(b"From: a@b\nthis is prose, not a header\n\nx"), None);
        assert_eq!(detect(b"Subject: only one\n\nbody"), None);
    }
}
