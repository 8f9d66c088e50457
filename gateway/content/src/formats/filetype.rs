//! The file type label YARA rules test in their `filetype` external, with the names THOR and
//! LOKI give (`EXE`, `ELF`, `MACH-O`, `PDF`, `RTF`, `OLE`, `ZIP`, …): the longest matching magic
//! at the start of the data, else the script type the file name's extension says.

/// (magic, label), longest magics first so the most specific wins.
const MAGICS: &[(&[u8], &str)] = &[
    (b"\x50\x4b\x03\x04\x14\x00\x06\x00", "Office"),
    (b"\x50\x4b\x03\x04\x14\x00\x08\x00", "JAR"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "OLE"),
    (b"\x4c\x00\x00\x00\x01\x14\x02\x00", "LNK"),
    (b"\x37\x7a\xbc\xaf\x27\x1c", "7Zip"),
    (b"\x52\x61\x72\x21\x1a\x07", "RAR"),
    (b"{\\rtf1", "RTF"),
    (b"<?php", "PHP"),
    (b"\x50\x4b\x03\x04", "ZIP"),
    (b"\x50\x4b\x05\x06", "PKZIP"),
    (b"\x7fELF", "ELF"),
    (b"\xfe\xed\xfa\xce", "MACH-O"),
    (b"\xfe\xed\xfa\xcf", "MACH-O"),
    (b"\xce\xfa\xed\xfe", "MACH-O"),
    (b"\xcf\xfa\xed\xfe", "MACH-O"),
    (b"%PDF", "PDF"),
    (b"MSCF", "CAB"),
    (b"MDMP", "MDMP"),
    (b"<?xm", "XML"),
    (b"regf", "Registry Hive"),
    (b"\x1f\x8b\x08", "GZIP"),
    (b"BZh", "BZip2"),
    (b"GIF", "GIF"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"CWS", "SWF"),
    (b"FWS", "SWF"),
    (b"ZWS", "SWF"),
    (b"#!/", "UNIX SCRIPT"),
    (b"#!", "Script"),
    (b"MZ", "EXE"),
];

/// Script types by file name extension (lower case).
const EXTENSIONS: &[(&str, &str)] = &[
    ("vbs", "VBS"),
    ("vbe", "VBS"),
    ("bat", "BATCH"),
    ("cmd", "BATCH"),
    ("ps1", "PowerShell"),
    ("psm1", "PowerShell"),
    ("py", "Python"),
    ("php", "PHP"),
    ("jsp", "JSP"),
    ("asp", "ASP"),
    ("aspx", "ASP"),
    ("js", "JS"),
    ("hta", "HTA"),
];

/// The label for `data` named `name` (empty when nothing says).
pub fn label(data: &[u8], name: Option<&str>) -> &'static str {
    if data.starts_with(&[0xca, 0xfe, 0xba, 0xbe]) {
        // A Mach-O universal binary counts its architectures here; a Java class has its
        // version (45 and up).
        let n = data
            .get(4..8)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        return if n < 45 { "MACH-O" } else { "Class" };
    }
    if let Some((_, l)) = MAGICS.iter().find(|(m, _)| data.starts_with(m)) {
        return l;
    }
    let ext = name
        .and_then(|n| n.rsplit('/').next())
        .and_then(|n| n.rsplit_once('.'))
        .map(|(_, e)| e.to_ascii_lowercase());
    ext.and_then(|e| EXTENSIONS.iter().find(|(x, _)| *x == e).map(|(_, l)| *l))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_as_thor_names_them() {
        assert_eq!(label(b"MZ\x90\x00", None), "EXE");
        assert_eq!(label(b"\x7fELF\x02", None), "ELF");
        assert_eq!(label(b"\xcf\xfa\xed\xfe", None), "MACH-O");
        assert_eq!(label(b"\xca\xfe\xba\xbe\x00\x00\x00\x02", None), "MACH-O");
        assert_eq!(label(b"\xca\xfe\xba\xbe\x00\x00\x00\x34", None), "Class");
        assert_eq!(label(b"PK\x03\x04\x14\x00\x06\x00", None), "Office");
        assert_eq!(label(b"PK\x03\x04\x0a\x00", None), "ZIP");
        assert_eq!(label(b"{\\rtf1\\ansi", None), "RTF");
        assert_eq!(label(b"Set x = 1", Some("dir/a.VBS")), "VBS");
        assert_eq!(label(b"hello", Some("a.txt")), "");
    }
}
