//! The hand-written format readers of `sekisho-content` (cpio, uuencode, MS-OVBA
//! decompression and `dir` records, OLE1 objects and packages, RTF `\objdata`, ISO 9660, file
//! type labels and executable descriptions), each fed directly: the first byte picks the
//! reader. Never panics, and nothing yields more than the cap it was given or bytes outside
//! its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_content::formats::{cpio, exe, filetype, iso9660, ole1, ovba, rtf, uuencode};

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    match first % 8 {
        0 => {
            for e in cpio::Reader::new(rest).take(10_000) {
                if let Ok(e) = e {
                    assert!(e.data.len() <= rest.len());
                }
            }
        }
        1 => {
            for f in uuencode::find(rest, 16, CAP) {
                assert!(f.data.len() <= CAP);
            }
        }
        2 => {
            if let Some(out) = ovba::decompress(rest, CAP) {
                assert!(out.len() <= CAP);
                let _ = ovba::modules(&out);
            }
        }
        3 => {
            if let Some(o) = ole1::object(rest) {
                assert!(o.native.len() <= rest.len());
                let _ = ole1::package(o.native, false);
            }
            let _ = ole1::package(rest, true);
        }
        4 => {
            for o in rtf::objdata(rest, 16, CAP) {
                assert!(o.data.len() <= CAP);
            }
        }
        5 => {
            let _ = filetype::label(rest, Some("a.vbs"));
            if let Some(e) = exe::inspect(rest) {
                assert!(matches!(e.format, "PE" | "ELF" | "MACH-O"));
            }
        }
        _ => {
            // The fuzzer writes from the first volume descriptor on.
            let mut image = vec![0u8; 16 * 2048];
            image.extend_from_slice(rest);
            let l = iso9660::files(&image, 64);
            assert!(l.files.len() <= 64);
        }
    }
});
