//! The hand-written format readers of `sekisho-content` (cpio, uuencode, MS-OVBA
//! decompression and `dir` records, OLE1 objects and packages, RTF `\objdata`, ISO 9660, file
//! type labels and executable descriptions, PowerPoint objects, SIS files, NSIS blocks, the mail
//! base64 sweep, embedded container starts, zip implode and shrink, ARJ members and methods, CHM
//! directories and LZX sections, InstallShield MSI setup blocks and overlay cabinets, AutoIt
//! entries, PE headers, NRV2B/D/E and FSG streams, UPX, MEW, Petite, PESpin, WWPack32, yC and
//! ASPack images, ALZip entries, zip local headers, the Zstandard frame reader, the LHA reader,
//! PDF dictionaries and the PDF standard security handler, Upack images, Office standard
//! encryption, Excel RC4 workbooks), each fed directly: the first byte picks the reader. Never panics, and nothing
//! yields more than the cap it was given or bytes outside its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho_content::formats::{
    alz, arj, aspack, autoit, b64parts, chm, cpio, embedded, exe, filetype, iscab, ishield,
    iso9660, lha, nrv, nsis, officecrypt, ole1, ovba, pdfcrypt, pdfdict, pe, pespin, petite, ppt,
    rtf, sis, unfsg, upack, upx, uuencode, wwpack, xlscrypt, yc, ziplocal, zipold, zstd, Bounds,
};
use std::io::Read;

const CAP: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    match first % 28 {
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
        6 => {
            let (objects, _) = ppt::objects(rest, 16, CAP, 4 * CAP);
            assert!(objects.len() <= 16);
            for o in objects {
                assert!(o.data.len() <= CAP);
            }
        }
        7 => {
            let (files, _) = sis::files(rest, 16, CAP, 4 * CAP);
            assert!(files.len() <= 16 && files.iter().all(|f| f.data.len() <= CAP));
        }
        8 => {
            for s in b64parts::sections(rest, 16, CAP, &|_| false) {
                assert!(s.data.len() <= CAP);
            }
        }
        9 => {
            for f in embedded::find(rest, 16) {
                assert!(f.offset < rest.len());
            }
            if nsis::is_nsis(rest) {
                let b = nsis::Bounds {
                    max_blocks: 16,
                    cap: CAP,
                    total: 4 * CAP,
                    dictionary: 1 << 20,
                };
                let (blocks, _) = nsis::blocks(rest, b);
                assert!(blocks.iter().all(|b| b.data.len() <= CAP));
            }
        }
        10 => {
            let flags = u16::from(rest.first().copied().unwrap_or(0));
            if let Ok(out) = zipold::explode(rest, 1 << 20, flags, CAP) {
                assert!(out.len() <= CAP);
            }
            if let Ok(out) = zipold::unshrink(rest, 1 << 20, CAP) {
                assert!(out.len() <= CAP);
            }
        }
        11 => {
            for m in arj::members(rest).take(1_000).flatten() {
                assert!(m.packed.len() <= rest.len());
                assert!(arj::unpack(&m, CAP).data.len() <= CAP);
            }
        }
        12 => {
            let b = chm::Bounds {
                max_files: 64,
                cap: CAP,
                total: 4 * CAP,
            };
            let (files, _) = chm::files(rest, b);
            assert!(files.len() <= 64);
            assert!(files.iter().all(|f| f.data.len() <= CAP));
            assert!(files.iter().map(|f| f.data.len()).sum::<usize>() <= 4 * CAP);
        }
        13 => {
            let mut block = ishield::MAGIC.to_vec();
            block.extend_from_slice(rest);
            let (files, _) = ishield::files(&block, 64);
            assert!(files.len() <= 64);
            for f in files {
                let mut out = Vec::new();
                let z = flate2::read::ZlibDecoder::new(f.reader());
                let _ =
                    std::io::Read::read_to_end(&mut std::io::Read::take(z, CAP as u64), &mut out);
                assert!(out.len() <= CAP);
            }
        }
        14 => {
            let mut script = autoit::MARKER.to_vec();
            script.extend_from_slice(if first & 0x80 == 0 {
                b"AU3!EA05"
            } else {
                b"AU3!EA06"
            });
            script.extend_from_slice(rest);
            let b = autoit::Bounds {
                max_files: 64,
                cap: CAP,
                total: 4 * CAP,
            };
            let (entries, _) = autoit::entries(&script, b);
            assert!(entries.len() <= 64);
            assert!(entries.iter().all(|e| e.data.len() <= CAP));
        }
        15 => {
            let records = iscab::records(rest, 64);
            assert!(records.iter().all(|r| r.data.len() <= rest.len()));
            // The input split in two: a header, then one cabinet.
            let cut = usize::from(rest.first().copied().unwrap_or(0)) * 8;
            let (hdr, cab) = rest.split_at(cut.min(rest.len()));
            let b = iscab::Bounds {
                max_files: 64,
                cap: CAP,
                total: 4 * CAP,
            };
            let (files, _) = iscab::cab_files(hdr, &[(1, cab)], b);
            assert!(files.len() <= 64 && files.iter().all(|f| f.data.len() <= CAP));
        }
        16 => {
            for m in [nrv::Method::B, nrv::Method::D, nrv::Method::E] {
                if let Some(out) = nrv::decompress(m, rest, CAP) {
                    assert!(out.len() <= CAP);
                }
            }
            if let Some(out) = unfsg::unfsg(rest, CAP) {
                assert_eq!(out.len(), CAP);
            }
        }
        17 => {
            if let Some(h) = pe::parse(rest) {
                assert!(h.sections.iter().all(|s| s.rsz as usize <= rest.len()));
            }
            match upx::unpack(rest, CAP) {
                pe::Unpacked::Image(img, _) => assert!(img.len() <= CAP + 8192 + 0x1200),
                pe::Unpacked::OverLimit(n) => assert!(n > CAP as u64),
                _ => {}
            }
            for unpack in [
                wwpack::unpack,
                yc::unpack,
                petite::unpack,
                aspack::unpack,
                pespin::unpack,
            ] {
                match unpack(rest, CAP) {
                    pe::Unpacked::Image(img, _) => assert!(img.len() <= CAP),
                    pe::Unpacked::OverLimit(n) => assert!(n > CAP as u64),
                    _ => {}
                }
            }
        }
        20 => {
            let (entries, _) = alz::entries(rest, 64);
            assert!(entries.len() <= 64);
            assert!(entries.iter().all(|e| e.packed.len() <= rest.len()));
        }
        21 => {
            let half = rest.len() / 2;
            let found = ziplocal::uncovered(rest, &[(half, half + 100)], 64);
            assert!(found.len() <= 64);
            for l in found {
                assert!(l.offset < half || l.offset >= half + 100);
                assert!(l.data_start + l.data.len() <= rest.len());
            }
        }
        22 => {
            let mut out = Vec::new();
            let _ = zstd::Frames::new(rest, CAP as u64)
                .take(CAP as u64)
                .read_to_end(&mut out);
            assert!(out.len() <= CAP);
        }
        23 => {
            let b = Bounds {
                max_files: 64,
                cap: CAP,
                total: 4 * CAP,
            };
            let (files, _) = lha::files(rest, b);
            assert!(files.len() <= 64);
            assert!(files.iter().all(|f| f.data.len() <= CAP));
        }
        24 => {
            let d = pdfdict::Dict::parse(rest);
            let _ = (d.int(b"/V"), d.string(b"/O"), d.name(b"/StmF"));
            let _ = pdfdict::first_string(rest);
            if let pdfcrypt::Security::Open(dec) = pdfcrypt::security(rest, b"id") {
                let _ = dec.stream(1, 0, rest);
            }
        }
        25 => match upack::unpack(rest, CAP) {
            pe::Unpacked::Image(img, _) => assert!(img.len() <= 2 * CAP + 0x1000),
            pe::Unpacked::OverLimit(n) => assert!(n > CAP as u64),
            _ => {}
        },
        26 => {
            let (info, package) = rest.split_at(rest.len() / 2);
            if let Some(p) = officecrypt::velvet_package(info, package, CAP) {
                assert!(p.len() <= CAP.min(package.len()));
            }
        }
        27 => {
            if let Some(open) = xlscrypt::velvet_workbook(rest) {
                assert_eq!(open.len(), rest.len());
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
