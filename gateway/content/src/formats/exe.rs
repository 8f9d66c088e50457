//! Executables: PE, ELF and Mach-O recognised and described (format, machine, library or
//! program), and packed files named by their packer's marks (PE section names, UPX's stub). Parsing is the
//! `object` crate's; only the packer marks are ours.

use object::{Object, ObjectSection};

/// What an executable is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executable {
    /// `PE`, `ELF` or `MACH-O`.
    pub format: &'static str,
    /// The machine (`x86_64`, `i386`, `aarch64`, …).
    pub arch: String,
    /// A library (DLL, shared object, dylib) rather than a program.
    pub library: bool,
    /// The packer, when its marks are there (`UPX`, `ASPack`, …).
    pub packer: Option<&'static str>,
}

/// Section names packers leave in a PE (the first that matches names the packer).
const PACKER_SECTIONS: &[(&str, &str)] = &[
    ("UPX0", "UPX"),
    ("UPX1", "UPX"),
    (".aspack", "ASPack"),
    (".adata", "ASPack"),
    (".MPRESS1", "MPRESS"),
    (".MPRESS2", "MPRESS"),
    ("PEC2", "PECompact"),
    ("pec1", "PECompact"),
    (".petite", "Petite"),
    ("nsp0", "NsPack"),
    ("nsp1", "NsPack"),
    (".nsp0", "NsPack"),
    (".themida", "Themida"),
    (".winlice", "WinLicense"),
    (".vmp0", "VMProtect"),
    (".vmp1", "VMProtect"),
    ("FSG!", "FSG"),
    (".enigma1", "Enigma"),
    (".enigma2", "Enigma"),
    ("kkrunchy", "kkrunchy"),
    ("MEW", "MEW"),
];

/// Describes `data` if it is a PE, ELF or Mach-O file.
pub fn inspect(data: &[u8]) -> Option<Executable> {
    let quick = data.starts_with(b"MZ")
        || data.starts_with(b"\x7fELF")
        || matches!(
            data.get(..4),
            Some([0xfe, 0xed, 0xfa, 0xce | 0xcf] | [0xce | 0xcf, 0xfa, 0xed, 0xfe])
        );
    if !quick {
        return None;
    }
    let file = object::File::parse(data).ok()?;
    let format = match file.format() {
        object::BinaryFormat::Pe => "PE",
        object::BinaryFormat::Elf => "ELF",
        object::BinaryFormat::MachO => "MACH-O",
        _ => return None,
    };
    let library = matches!(file.kind(), object::ObjectKind::Dynamic)
        && !(format == "ELF" && file.entry() != 0 && has_interp(&file));
    let packer = packer(&file, data);
    Some(Executable {
        format,
        arch: format!("{:?}", file.architecture()).to_ascii_lowercase(),
        library,
        packer,
    })
}

/// A position-independent ELF program has an interpreter; a shared library does not.
fn has_interp(file: &object::File<'_>) -> bool {
    file.section_by_name(".interp").is_some()
}

fn packer(file: &object::File<'_>, data: &[u8]) -> Option<&'static str> {
    for s in file.sections() {
        let name = s.name().unwrap_or_default();
        if let Some((_, p)) = PACKER_SECTIONS.iter().find(|(n, _)| *n == name) {
            return Some(p);
        }
    }
    // UPX's stub keeps "UPX!" before the packed data (PE, ELF and Mach-O alike), even when a
    // PE's sections are renamed.
    let head = &data[..data.len().min(4096)];
    memchr::memmem::find(head, b"UPX!").map(|_| "UPX")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal PE32 with these section names (headers only, no section data).
    fn pe(sections: &[&str], dll: bool) -> Vec<u8> {
        let mut f = vec![0u8; 0x40];
        f[0..2].copy_from_slice(b"MZ");
        f[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        f.extend_from_slice(b"PE\0\0");
        f.extend_from_slice(&0x14cu16.to_le_bytes());
        f.extend_from_slice(&(sections.len() as u16).to_le_bytes());
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&0xe0u16.to_le_bytes());
        let flags: u16 = if dll { 0x2102 } else { 0x0102 };
        f.extend_from_slice(&flags.to_le_bytes());
        let mut opt = vec![0u8; 0xe0];
        opt[0..2].copy_from_slice(&0x10bu16.to_le_bytes());
        opt[32..36].copy_from_slice(&0x1000u32.to_le_bytes());
        opt[36..40].copy_from_slice(&0x200u32.to_le_bytes());
        opt[56..60].copy_from_slice(&0x3000u32.to_le_bytes());
        opt[60..64].copy_from_slice(&0x200u32.to_le_bytes());
        opt[92..96].copy_from_slice(&16u32.to_le_bytes());
        f.extend(opt);
        for (i, name) in sections.iter().enumerate() {
            let mut s = [0u8; 40];
            s[..name.len()].copy_from_slice(name.as_bytes());
            s[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
            s[12..16].copy_from_slice(&(0x1000u32 * (i as u32 + 1)).to_le_bytes());
            f.extend_from_slice(&s);
        }
        f.resize(0x200, 0);
        f
    }

    #[test]
    fn packed_pe_files_are_named_by_their_packer() {
        let e = inspect(&pe(&["UPX0", "UPX1", ".rsrc"], false)).unwrap();
        assert_eq!((e.format, e.packer, e.library), ("PE", Some("UPX"), false));
        assert_eq!(e.arch, "i386");
        let e = inspect(&pe(&[".text", ".aspack"], true)).unwrap();
        assert_eq!((e.packer, e.library), (Some("ASPack"), true));
        assert_eq!(
            inspect(&pe(&[".text", ".data"], false)).unwrap().packer,
            None
        );
    }

    #[test]
    fn the_test_binary_itself_is_an_elf_program() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let e = inspect(&me).unwrap();
        assert_eq!(e.format, "ELF");
        assert!(!e.library);
        assert_eq!(e.packer, None);
        assert!(inspect(b"MZ but nothing else").is_none());
        assert!(inspect(b"plain").is_none());
    }
}
