//! Property tests standing in for fuzzing on stable Rust: the walker never panics and stays within
//! its limits on arbitrary and mutated containers.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use bytes::Bytes;
use proptest::prelude::*;
use sekisho_content::{walk, Control, Hints, Limits};

fn seeds() -> Vec<(Vec<u8>, Option<&'static str>)> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("a/b.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(b"hello hello hello hello").unwrap();
    let zip = z.finish().unwrap().into_inner();
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(&zip).unwrap();
    let gz = g.finish().unwrap();
    let soap = b"<?xml version='1.0'?><e xmlns:x=\"urn:ihe:iti:xds-b:2007\"><x:Document id=\"d\">aGVsbG8=</x:Document></e>".to_vec();
    let mtom = b"--B\r\nContent-ID: <r>\r\nContent-Type: application/xop+xml\r\n\r\n<e xmlns:x=\"urn:ihe:iti:xds-b:2007\"><x:Document><i:Include xmlns:i=\"http://www.w3.org/2004/08/xop/include\" href=\"cid:p\"/></x:Document></e>\r\n--B\r\nContent-ID: <p>\r\n\r\nPAYLOAD\r\n--B--\r\n".to_vec();
    let rar = |format| {
        let mut b = rars::Builder::new(format);
        b.add_bytes(
            b"a/b.txt".to_vec(),
            b"hello hello hello hello".to_vec(),
            None,
            None,
        )
        .unwrap();
        b.add_bytes(b"c.zip".to_vec(), zip.clone(), None, None)
            .unwrap();
        b.to_bytes().unwrap()
    };
    vec![
        (rar(rars::ArchiveVersion::Rar50), None),
        (rar(rars::ArchiveVersion::Rar29), None),
        (zip, None),
        (gz, None),
        (soap, Some("application/soap+xml")),
        (mtom, Some("multipart/related; boundary=B; start=\"<r>\"")),
    ]
}

fn check(data: Vec<u8>, ctype: Option<&str>, enc: Option<&str>) {
    let limits = Limits {
        max_member_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        ..Limits::default()
    };
    let mut total = 0usize;
    let mut count = 0usize;
    let _ = walk(
        &Bytes::from(data),
        "body",
        &Hints {
            content_type: ctype,
            content_encoding: enc,
            name: None,
        },
        &limits,
        None,
        &mut |p| {
            count += 1;
            total += p.data.len();
            assert!(p.depth <= limits.max_depth);
            Control::Continue
        },
    );
    assert!(count < 100_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048),
                    ctype in proptest::option::of(prop_oneof![Just("multipart/form-data; boundary=B"), Just("multipart/related; boundary=B"), Just("application/soap+xml")]),
                    enc in proptest::option::of(prop_oneof![Just("gzip"), Just("deflate"), Just("br"), Just("gzip, br"), Just("bogus")])) {
        check(data, ctype, enc);
    }

    #[test]
    fn mutated_containers(which in 0usize..4, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>()) {
        let (mut data, ctype) = seeds().swap_remove(which);
        for (i, v) in flips {
            let at = i.index(data.len());
            data[at] = v;
        }
        let keep = cut.index(data.len()) + 1;
        data.truncate(keep);
        check(data, ctype, None);
    }
}
