//! Extraction over every supported shape, with fixtures built at test time.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use sekisho_content::{walk, Control, Hints, Issue, IssueKind, Limits};

#[path = "../../../tests/common/public_corpora.rs"]
mod public_corpora;
use public_corpora::{corpora, corpus};

/// The EICAR test file, assembled so the repository holds no complete copy.
fn eicar() -> Vec<u8> {
    let parts = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ];
    parts.concat().into_bytes()
}

struct Seen {
    pieces: Vec<(String, Vec<u8>, bool)>,
    issues: Vec<Issue>,
}

impl Seen {
    fn with_eicar(&self) -> Vec<&str> {
        let e = eicar();
        self.pieces
            .iter()
            .filter(|(_, d, _)| d.as_slice() == e.as_slice())
            .map(|(p, _, _)| p.as_str())
            .collect()
    }
    fn has_issue(&self, kind: IssueKind) -> bool {
        self.issues.iter().any(|i| i.kind == kind)
    }
}

fn run(data: Vec<u8>, hints: Hints<'_>, limits: &Limits) -> Seen {
    let mut pieces = Vec::new();
    let issues = walk(
        &Bytes::from(data),
        "response.body",
        &hints,
        limits,
        None,
        &mut |p| {
            pieces.push((p.provenance.to_string(), p.data.to_vec(), p.truncated));
            Control::Continue
        },
    );
    Seen { pieces, issues }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn plain_gzip_encoding_zip_nested_tar_gz() {
    let l = Limits::default();
    assert_eq!(
        run(eicar(), Hints::default(), &l).with_eicar(),
        vec!["response.body"]
    );

    let s = run(
        gzip(&eicar()),
        Hints {
            content_encoding: Some("gzip"),
            ..Hints::default()
        },
        &l,
    );
    assert_eq!(s.with_eicar(), vec!["response.body > gzip"]);
    let br = {
        let mut out = Vec::new();
        brotli::BrotliCompress(&mut &eicar()[..], &mut out, &Default::default()).unwrap();
        out
    };
    let s = run(
        br,
        Hints {
            content_encoding: Some("br"),
            ..Hints::default()
        },
        &l,
    );
    assert_eq!(s.with_eicar(), vec!["response.body > br"]);

    let mut z = zip_of(&[("docs/eicar.com", &eicar())]);
    for level in (1..5).rev() {
        z = zip_of(&[(&format!("level{level}.zip"), &z), ("readme.txt", b"clean")]);
    }
    let s = run(z, Hints::default(), &l);
    assert_eq!(
        s.with_eicar(),
        vec!["response.body > zip:level1.zip > zip:level2.zip > zip:level3.zip > zip:level4.zip > zip:docs/eicar.com"]
    );
    assert!(s.issues.is_empty(), "{:?}", s.issues);

    let tgz = gzip(&tar_of(&[
        ("a/clean.txt", b"hello"),
        ("a/eicar.txt", &eicar()),
    ]));
    let s = run(tgz, Hints::default(), &l);
    assert_eq!(
        s.with_eicar(),
        vec!["response.body > gzip > tar:a/eicar.txt"]
    );
}

#[test]
fn multipart_form_upload() {
    let mut body = Vec::new();
    body.extend_from_slice(
        b"--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\nhello\r\n",
    );
    body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\nContent-Type: application/pdf\r\n\r\n");
    body.extend_from_slice(&eicar());
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    let s = run(
        body,
        Hints {
            content_type: Some("multipart/form-data; boundary=XyZ"),
            ..Hints::default()
        },
        &Limits::default(),
    );
    assert_eq!(s.with_eicar(), vec!["response.body > multipart:report.pdf"]);
}

/// The IHE ITI-43 sample response, under the public corpora.
const ITI43: &str = "ihe/ITI-43_response_raw.xml";

/// The ITI-43 sample: only called by tests that checked `corpus(ITI43)` first.
fn iti43() -> String {
    std::fs::read_to_string(corpora().join(ITI43)).unwrap()
}

#[test]
fn ihe_soap_inline_and_mtom() {
    use base64::Engine as _;
    if corpus(ITI43).is_none() {
        return;
    }
    let Some(iti41) = corpus("ihe/ITI-41_request_raw.xml") else {
        return;
    };
    let l = Limits::default();
    let xml = iti43();
    let include_start = xml.find("<xop:Include").unwrap();
    let include_end = xml[include_start..].find("/>").unwrap() + include_start + 2;
    // Inline: base64 with line breaks, as real servers send it.
    let b64 = base64::engine::general_purpose::STANDARD.encode(eicar());
    let wrapped = format!("{}\n{}", &b64[..40], &b64[40..]);
    let inline = format!(
        "{}{}{}",
        &xml[..include_start],
        wrapped,
        &xml[include_end..]
    );
    let s = run(
        inline.into_bytes(),
        Hints {
            content_type: Some("application/soap+xml"),
            ..Hints::default()
        },
        &l,
    );
    assert_eq!(s.with_eicar(), vec!["response.body > soap:Document[1]"]);

    // MTOM: the sample's own envelope as root part, the document as a cid part.
    let cid = "72f7c587daaacb8b81212de4e80e442e5f43394482e12edd@apache.org";
    let mut mtom = Vec::new();
    mtom.extend_from_slice(b"--MIMEBoundary_1\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\nContent-ID: <root.message@cxf.apache.org>\r\n\r\n");
    mtom.extend_from_slice(xml.as_bytes());
    mtom.extend_from_slice(format!("\r\n--MIMEBoundary_1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n").as_bytes());
    mtom.extend_from_slice(&eicar());
    mtom.extend_from_slice(b"\r\n--MIMEBoundary_1--\r\n");
    let ct = "multipart/related; boundary=\"MIMEBoundary_1\"; type=\"application/xop+xml\"; start=\"<root.message@cxf.apache.org>\"; start-info=\"application/soap+xml\"";
    let s = run(
        mtom,
        Hints {
            content_type: Some(ct),
            ..Hints::default()
        },
        &l,
    );
    assert_eq!(
        s.with_eicar(),
        vec![format!("response.body > mime:root > soap:Document[1] > cid:{cid}").as_str()],
        "{:?} {:?}",
        s.issues,
        s.pieces.iter().map(|p| &p.0).collect::<Vec<_>>()
    );

    // The samples themselves extract without issues (the ITI-41 body is MTOM with a percent-encoded cid).
    let raw41 = std::fs::read(iti41).unwrap();
    let body_start = raw41
        .windows(4)
        .position(|w| w == b"\n\n--")
        .map(|i| i + 2)
        .unwrap_or(0);
    // The capture has bare LF line ends; MIME on the wire uses CRLF.
    let body: Vec<u8> = raw41[body_start..]
        .iter()
        .flat_map(|b| {
            if *b == b'\n' {
                vec![b'\r', b'\n']
            } else {
                vec![*b]
            }
        })
        .collect();
    let boundary =
        String::from_utf8_lossy(&body[2..body.iter().position(|b| *b == b'\n').unwrap()])
            .trim()
            .to_string();
    let ct = format!("multipart/related; boundary=\"{boundary}\"; type=\"application/xop+xml\"");
    let s = run(
        body,
        Hints {
            content_type: Some(&ct),
            ..Hints::default()
        },
        &l,
    );
    assert!(
        s.pieces.iter().any(|(p, d, _)| p
            .contains("soap:Document[urn:uuid:af516d8d-c449-4a8b-bbb4-9e36489d474d] > cid:")
            && d.starts_with(b"{")),
        "{:?}",
        s.pieces.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
}

#[test]
fn bombs_and_limits() {
    // Deep nesting: 20 levels of zip; stops at 16 with a limit issue.
    let mut z = eicar();
    for i in 0..20 {
        z = zip_of(&[(&format!("n{i}"), &z)]);
    }
    let s = run(z, Hints::default(), &Limits::default());
    assert!(s.has_issue(IssueKind::Limit), "{:?}", s.issues);
    assert!(s
        .issues
        .iter()
        .any(|i| i.reason.contains("nesting deeper than 16")));

    // 1 GiB of zeros in a zip member: decoding stops at the member limit, in bounded time.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(
        "zeros.bin",
        zip::write::SimpleFileOptions::default()
            .compression_level(Some(1))
            .large_file(true),
    )
    .unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        w.write_all(&zeros).unwrap();
    }
    let bomb = w.finish().unwrap().into_inner();
    assert!(
        bomb.len() < 32 << 20,
        "the bomb itself is small: {}",
        bomb.len()
    );
    let s = run(bomb, Hints::default(), &Limits::default());
    let member = s
        .pieces
        .iter()
        .find(|p| p.0.ends_with("zip:zeros.bin"))
        .unwrap();
    assert_eq!(member.1.len(), 100 << 20, "cut at max_member_bytes");
    assert!(member.2, "marked truncated");
    assert!(
        s.issues
            .iter()
            .any(|i| i.kind == IssueKind::Limit && i.reason.contains("zip member over the limit")),
        "{:?}",
        s.issues
    );

    // Total limit across members.
    let small = Limits {
        max_member_bytes: 1 << 20,
        max_total_bytes: 3 << 20,
        ..Limits::default()
    };
    let many: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("f{i}"), vec![7u8; 1 << 20]))
        .collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let s = run(zip_of(&refs), Hints::default(), &small);
    assert!(
        s.issues.iter().any(|i| i.reason.contains("total limit")),
        "{:?}",
        s.issues
    );

    // File count limit.
    let few = Limits {
        max_files: 3,
        ..Limits::default()
    };
    let s = run(zip_of(&refs), Hints::default(), &few);
    assert!(
        s.issues
            .iter()
            .any(|i| i.reason.contains("more than 3 members")),
        "{:?}",
        s.issues
    );
}

#[test]
fn bad_input_yields_issues_not_silence() {
    if corpus(ITI43).is_none() {
        return;
    }
    let l = Limits::default();
    // Truncated gzip: partial data is still handed over, and flagged.
    let mut g = gzip(&[eicar(), vec![b'x'; 100_000]].concat());
    g.truncate(g.len() / 2);
    let s = run(g, Hints::default(), &l);
    assert!(s.has_issue(IssueKind::Corrupt), "{:?}", s.issues);
    assert_eq!(s.with_eicar().len(), 0);
    assert!(s
        .pieces
        .iter()
        .any(|p| p.0 == "response.body > gzip" && p.2));

    // Corrupt zip.
    let mut z = zip_of(&[("a.txt", b"hello")]);
    let n = z.len();
    z.truncate(n - 10);
    let s = run(z, Hints::default(), &l);
    assert!(s.has_issue(IssueKind::Corrupt), "{:?}", s.issues);

    // Encrypted zip member.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(
        "secret.txt",
        zip::write::SimpleFileOptions::default().with_aes_encryption(zip::AesMode::Aes256, "pw"),
    )
    .unwrap();
    w.write_all(&eicar()).unwrap();
    let s = run(w.finish().unwrap().into_inner(), Hints::default(), &l);
    assert!(
        s.issues
            .iter()
            .any(|i| i.kind == IssueKind::Encrypted && i.provenance.ends_with("zip:secret.txt")),
        "{:?}",
        s.issues
    );

    // Truncated multipart.
    let body =
        b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\"\r\n\r\npartial"
            .to_vec();
    let s = run(
        body,
        Hints {
            content_type: Some("multipart/form-data; boundary=XyZ"),
            ..Hints::default()
        },
        &l,
    );
    assert!(s.has_issue(IssueKind::Corrupt), "{:?}", s.issues);

    // Path traversal names are only labels: nothing is written anywhere.
    let s = run(
        zip_of(&[("../../etc/passwd", &eicar())]),
        Hints::default(),
        &l,
    );
    assert_eq!(s.with_eicar(), vec!["response.body > zip:../../etc/passwd"]);

    // Invalid base64 in a SOAP document.
    let xml = iti43();
    let a = xml.find("<xop:Include").unwrap();
    let b = xml[a..].find("/>").unwrap() + a + 2;
    let bad = format!("{}!!!not*base64!!!{}", &xml[..a], &xml[b..]);
    let s = run(bad.into_bytes(), Hints::default(), &l);
    assert!(
        s.issues.iter().any(|i| i.reason.contains("invalid base64")),
        "{:?}",
        s.issues
    );

    // A SOAP part alone: its attachment is simply elsewhere, nothing to report.
    let s = run(xml.clone().into_bytes(), Hints::default(), &l);
    assert!(s.issues.is_empty(), "{:?}", s.issues);
    // Inside an MTOM package, a dangling cid is broken.
    let mut mtom =
        b"--B\r\nContent-Type: application/xop+xml\r\nContent-ID: <root>\r\n\r\n".to_vec();
    mtom.extend_from_slice(xml.as_bytes());
    mtom.extend_from_slice(b"\r\n--B\r\nContent-ID: <other@x>\r\n\r\ndata\r\n--B--\r\n");
    let hints = Hints {
        content_type: Some("multipart/related; boundary=B; start=\"<root>\""),
        ..Hints::default()
    };
    let s = run(mtom, hints, &l);
    assert!(
        s.issues
            .iter()
            .any(|i| i.reason.contains("not a part of this message")),
        "{:?}",
        s.issues
    );

    // Billion laughs: entities are never expanded.
    let mut lol = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
    for i in 1..10 {
        lol.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&lol{};", i - 1).repeat(10)
        ));
    }
    lol.push_str("]>\n<x:Document xmlns:x=\"urn:ihe:iti:xds-b:2007\">&lol9;</x:Document>");
    // What comes out stays small: nothing was expanded.
    let s = run(lol.into_bytes(), Hints::default(), &l);
    assert!(s.pieces.iter().map(|p| p.1.len()).sum::<usize>() < 1 << 20);
}

#[test]
fn sink_can_stop_and_deadline_applies() {
    let z = zip_of(&[("a", b"1"), ("b", b"2"), ("c", b"3")]);
    let mut seen = 0;
    walk(
        &Bytes::from(z.clone()),
        "b",
        &Hints::default(),
        &Limits::default(),
        None,
        &mut |_| {
            seen += 1;
            if seen == 2 {
                Control::Stop
            } else {
                Control::Continue
            }
        },
    );
    assert_eq!(seen, 2);
    let issues = walk(
        &Bytes::from(z),
        "b",
        &Hints::default(),
        &Limits::default(),
        Some(Instant::now()),
        &mut |_| Control::Continue,
    );
    assert!(
        issues.iter().any(|i| i.reason.contains("time limit")),
        "{issues:?}"
    );
}

/// Mail that bends MIME, as the evasion samples of ClamAV's test suite do: whatever the
/// structure says, every base64 body and every uuencoded file is reached.
#[test]
fn mail_that_bends_mime_still_gives_up_its_files() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(eicar());
    let limits = Limits::default();
    let attachment = format!(
        "--Y\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"e.com\"\r\n\r\n{b64}\r\n--Y--\r\n"
    );
    let shapes = [
        // A comment in the header name: the parser sees no multipart at all.
        format!("From: a@b\r\nMIME-Version: 1.0\r\nContent-Type(meow): multipart/mixed; boundary=\"Y\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nhi\r\n--X--\r\n{attachment}"),
        // Two boundary parameters; the attachment uses the second.
        format!("From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=X; boundary=Y\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nhi\r\n--X--\r\n{attachment}"),
        // The same, one level down.
        format!("From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"OUT\"\r\n\r\n--OUT\r\nContent-Type(x): multipart/mixed; boundary=\"Y\"\r\n\r\n{attachment}--OUT--\r\n"),
    ];
    for mail in shapes {
        let seen = run(mail.clone().into_bytes(), Hints::default(), &limits);
        assert!(
            !seen.with_eicar().is_empty(),
            "{mail}\n{:?}",
            seen.pieces.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
    }
    // A well-formed message: the attachment is scanned once, not again by the sweep.
    let plain = format!("From: a@b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"Y\"\r\n\r\n{attachment}");
    let seen = run(plain.into_bytes(), Hints::default(), &limits);
    assert_eq!(seen.with_eicar(), vec!["response.body > mail:part1:e.com"]);
    // Content-Transfer-Encoding: x-uuencode, which the MIME parser leaves encoded.
    let mut uu = b"From: a@b\nMIME-Version: 1.0\nContent-Type: application/octet-stream; name=\"e.com\"\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 e.com\n".to_vec();
    for chunk in eicar().chunks(45) {
        uu.push(32 + chunk.len() as u8);
        for tri in chunk.chunks(3) {
            let t = [tri[0], *tri.get(1).unwrap_or(&0), *tri.get(2).unwrap_or(&0)];
            for c in [
                t[0] >> 2,
                (t[0] & 3) << 4 | t[1] >> 4,
                (t[1] & 15) << 2 | t[2] >> 6,
                t[2] & 63,
            ] {
                uu.push(if c == 0 { b'`' } else { 32 + c });
            }
        }
        uu.push(b'\n');
    }
    uu.extend_from_slice(b"`\nend\n");
    let seen = run(uu, Hints::default(), &limits);
    assert_eq!(
        seen.with_eicar(),
        vec!["response.body > mail:part0:e.com > uuencode:e.com"]
    );
}

/// An imploded member (PKZIP 1.x method 6) as a hand-written zip: trees of 64 six-bit codes for
/// lengths and distances, no literal tree, the bytes as literals and the tail as one match.
fn imploded_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let (mut out, mut acc, mut n) = (Vec::new(), 0u64, 0u32);
    let mut put = |v: u32, bits: u32, out: &mut Vec<u8>| {
        acc |= u64::from(v) << n;
        n += bits;
        while n >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    };
    let mut packed = Vec::new();
    for _ in 0..2 {
        // 64 codes of 6 bits: four runs of 16.
        packed.extend_from_slice(&[3, 0xf5, 0xf5, 0xf5, 0xf5]);
    }
    // With equal lengths, symbol s has the 6-bit code 63 - s, read from its low bit.
    let code = |s: u32| (((63 - s) as u8).reverse_bits() >> 2) as u32;
    let (head, tail) = data.split_at(data.len() - 8);
    for &b in head {
        put(1, 1, &mut out);
        put(u32::from(b), 8, &mut out);
    }
    // The last 8 bytes as a copy of the 8 bytes 16 back, when they repeat; literals otherwise.
    if data.len() >= 24 && tail == &data[data.len() - 24..data.len() - 16] {
        put(0, 1, &mut out);
        put(15, 6, &mut out); // low 6 bits of distance - 1 (= 15)
        put(code(0), 6, &mut out); // distance tree: high bits 0
        put(code(6), 6, &mut out); // length tree: 8 - 2
    } else {
        for &b in tail {
            put(1, 1, &mut out);
            put(u32::from(b), 8, &mut out);
        }
    }
    if n > 0 {
        out.push(acc as u8);
    }
    packed.extend(out);
    let mut z = Vec::new();
    let local = |z: &mut Vec<u8>| {
        z.extend_from_slice(b"PK\x03\x04\x0a\0\0\0\x06\0\0\0\0\0\0\0\0\0");
        z.extend_from_slice(&(packed.len() as u32).to_le_bytes());
        z.extend_from_slice(&(data.len() as u32).to_le_bytes());
        z.extend_from_slice(&(name.len() as u16).to_le_bytes());
        z.extend_from_slice(&[0, 0]);
        z.extend_from_slice(name.as_bytes());
    };
    local(&mut z);
    z.extend_from_slice(&packed);
    let cd = z.len();
    z.extend_from_slice(b"PK\x01\x02\x0a\0\x0a\0\0\0\x06\0\0\0\0\0\0\0\0\0");
    z.extend_from_slice(&(packed.len() as u32).to_le_bytes());
    z.extend_from_slice(&(data.len() as u32).to_le_bytes());
    z.extend_from_slice(&(name.len() as u16).to_le_bytes());
    z.extend_from_slice(&[0; 12]);
    z.extend_from_slice(&0u32.to_le_bytes());
    z.extend_from_slice(name.as_bytes());
    let cd_len = z.len() - cd;
    z.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    z.extend_from_slice(&(cd_len as u32).to_le_bytes());
    z.extend_from_slice(&(cd as u32).to_le_bytes());
    z.extend_from_slice(&[0, 0]);
    z
}

#[test]
fn imploded_zip_members_are_decoded() {
    let mut payload = eicar();
    payload.extend_from_slice(b"0123456789abcdef01234567");
    let zip = imploded_zip("old/e.com", &payload);
    let seen = run(zip.clone(), Hints::default(), &Limits::default());
    let member = seen
        .pieces
        .iter()
        .find(|p| p.0 == "response.body > zip:old/e.com")
        .unwrap();
    assert_eq!(member.1, payload);
    assert!(seen.issues.is_empty(), "{:?}", seen.issues);
    // Cut inside the compressed data: an issue, never a clean pass.
    let mut cut = zip.clone();
    cut.truncate(60);
    assert!(!run(cut, Hints::default(), &Limits::default())
        .issues
        .is_empty());
}
