//! Office containers built at test time: OLE2 streams, VBA module source, `Ole10Native`
//! packages, and RTF `\objdata` objects (packages and OLE2 files), with their provenance.
#![allow(clippy::unwrap_used)]

use std::io::{Cursor, Write};

use bytes::Bytes;
use sekisho_content::{walk, Control, Hints, Issue, Limits};

fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

fn run(data: Vec<u8>) -> (Vec<(String, Vec<u8>)>, Vec<Issue>) {
    let mut pieces = Vec::new();
    let issues = walk(
        &Bytes::from(data),
        "file",
        &Hints::default(),
        &Limits::default(),
        None,
        &mut |p| {
            pieces.push((p.provenance.to_string(), p.data.to_vec()));
            Control::Continue
        },
    );
    (pieces, issues)
}

fn piece<'a>(pieces: &'a [(String, Vec<u8>)], prov: &str) -> &'a [u8] {
    let names: Vec<&str> = pieces.iter().map(|(p, _)| p.as_str()).collect();
    pieces
        .iter()
        .find(|(p, _)| p == prov)
        .map(|(_, d)| d.as_slice())
        .unwrap_or_else(|| panic!("no piece {prov}: {names:?}"))
}

/// An OLE2 file with these streams.
fn ole2(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    for (path, data) in streams {
        if let Some((dir, _)) = path.rsplit_once('/') {
            cf.create_storage_all(dir).unwrap();
        }
        cf.create_stream(path).unwrap().write_all(data).unwrap();
    }
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

/// An MS-OVBA compressed container of literal-only chunks (valid, if not small).
fn ovba(data: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    for chunk in data.chunks(4096) {
        let mut body = Vec::new();
        for group in chunk.chunks(8) {
            body.push(0);
            body.extend_from_slice(group);
        }
        let header = 0xb000u16 | (body.len() as u16 + 2 - 3);
        out.extend_from_slice(&header.to_le_bytes());
        out.extend(body);
    }
    out
}

fn record(d: &mut Vec<u8>, id: u16, data: &[u8]) {
    d.extend_from_slice(&id.to_le_bytes());
    d.extend_from_slice(&(data.len() as u32).to_le_bytes());
    d.extend_from_slice(data);
}

/// An OLE1 Package payload (`with_size`: as in an Ole10Native stream).
fn package(name: &str, data: &[u8], with_size: bool) -> Vec<u8> {
    let mut p = vec![2, 0];
    for s in [name.to_string(), format!("C:\\src\\{name}")] {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    let temp = format!("C:\\tmp\\{name}\0");
    p.extend_from_slice(&0x0003_0000u32.to_le_bytes());
    p.extend_from_slice(&(temp.len() as u32).to_le_bytes());
    p.extend_from_slice(temp.as_bytes());
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(data);
    if with_size {
        let mut s = (p.len() as u32).to_le_bytes().to_vec();
        s.extend(p);
        return s;
    }
    p
}

/// An OLE1 embedded object, hex-encoded in an RTF `\objdata` group.
fn rtf_object(class: &str, native: &[u8]) -> Vec<u8> {
    let mut o = Vec::new();
    o.extend_from_slice(&0x0501u32.to_le_bytes());
    o.extend_from_slice(&2u32.to_le_bytes());
    for s in [class, "", ""] {
        o.extend_from_slice(&(s.len() as u32 + 1).to_le_bytes());
        o.extend_from_slice(s.as_bytes());
        o.push(0);
    }
    o.extend_from_slice(&(native.len() as u32).to_le_bytes());
    o.extend_from_slice(native);
    let hex: String = o.iter().map(|b| format!("{b:02x}")).collect();
    let lines: Vec<&str> = hex
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "{{\\rtf1\\ansi{{\\object\\objemb{{\\*\\objclass {class}}}\\objw100\\objh100{{\\*\\objdata\r\n{}\r\n}}}}}}",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[test]
fn every_ole2_stream_is_a_piece_and_packages_are_unwrapped() {
    let doc = ole2(&[
        ("WordDocument", &eicar()),
        (
            "ObjectPool/_1/\u{1}Ole10Native",
            &package("run.com", &eicar(), true),
        ),
        ("1Table", b"nothing"),
    ]);
    let (pieces, issues) = run(doc);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(piece(&pieces, "file > ole:WordDocument"), eicar());
    assert_eq!(
        piece(
            &pieces,
            "file > ole:ObjectPool/_1/?Ole10Native > package:run.com"
        ),
        eicar()
    );
}

#[test]
fn vba_module_source_is_decompressed() {
    let source = b"Attribute VB_Name = \"Module1\"\r\nSub AutoOpen()\r\n  Shell \"cmd /c calc\"\r\nEnd Sub\r\n";
    let mut dir = Vec::new();
    record(&mut dir, 0x0001, &[1, 0, 0, 0]);
    dir.extend_from_slice(&[0x09, 0x00, 4, 0, 0, 0, 1, 2, 3, 4, 5, 6]);
    record(&mut dir, 0x0019, b"Module1");
    record(&mut dir, 0x001a, b"Module1");
    record(&mut dir, 0x0031, &16u32.to_le_bytes());
    record(&mut dir, 0x002b, &[]);
    let mut module = vec![0xccu8; 16];
    module.extend(ovba(source));
    let doc = ole2(&[
        ("WordDocument", b"text"),
        ("Macros/VBA/dir", &ovba(&dir)),
        ("Macros/VBA/Module1", &module),
        ("Macros/VBA/_VBA_PROJECT", &[0xcc, 0x61, 0xff, 0xff]),
    ]);
    let (pieces, issues) = run(doc);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(piece(&pieces, "file > vba:Module1"), source);
}

#[test]
fn rtf_objects_open_to_packages_and_ole2_files() {
    let rtf = rtf_object("Package", &package("invoice.exe", &eicar(), false));
    let (pieces, _) = run(rtf);
    assert_eq!(
        piece(&pieces, "file > rtf:object1 > package:invoice.exe"),
        eicar()
    );
    let inner = ole2(&[("WordDocument", &eicar())]);
    let rtf = rtf_object("Word.Document.8", &inner);
    let (pieces, _) = run(rtf);
    assert_eq!(
        piece(
            &pieces,
            "file > rtf:object1 > ole1:Word.Document.8 > ole:WordDocument"
        ),
        eicar()
    );
}

#[test]
fn broken_office_files_are_issues_not_passes() {
    let mut doc = ole2(&[("WordDocument", &eicar())]);
    doc.truncate(600);
    let (_, issues) = run(doc);
    assert!(!issues.is_empty());
    let (_, issues) = run(b"{\\rtf1{\\objdata 0105000002000000}}".to_vec());
    assert!(issues.is_empty(), "a short object is only not an object");
}
