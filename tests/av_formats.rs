//! `sekisho scan` with a ClamAV `.hdb` (the hash of one test file) through every wrapper the
//! content walker opens: samples built here by the tools users have (bzip2, xz, 7z, gcab, cpio,
//! genisoimage, mscompress, uuencode, arj, zstd, qpdf, Free Pascal's chmcmd, python's email
//! package;
//! PDF, HTML and RTF, and the LHA and ALZip archives no Debian tool writes, by short python
//! writers), detection asserted with its provenance; clean samples of
//! each format pass; encrypted archives are reported, never passed as clean.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Runs `sh -c script` in `dir`; panics with its output when it fails.
fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mail with `file` attached in base64, built by python's email package.
const PY_MAIL: &str = r#"
import sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "lab@clinic.example"
m["To"] = "ward@hospital.example"
m["Subject"] = "results"
m.set_content("see attachment")
data = open(sys.argv[1], "rb").read()
m.add_attachment(data, maintype="application", subtype="octet-stream", filename=sys.argv[1])
sys.stdout.buffer.write(bytes(m))
"#;

/// PDF (an embedded file, FlateDecode), HTML (a base64 `data:` download) and RTF (an OLE1
/// Package in `\objdata`) around a file, written the way those producers lay them out.
const PY_DOCS: &str = r#"
import sys, zlib, base64, struct, subprocess
kind, src, out = sys.argv[1], sys.argv[2], sys.argv[3]

def pdf_of(objs, head):
    """Objects 1..n after `head`, their cross-reference table and the trailer."""
    body, offs = head, []
    for i, o in enumerate(objs):
        offs.append(len(body))
        body += b"%d 0 obj\n" % (i + 1) + o + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    body += b"".join(b"%010d 00000 n \n" % o for o in offs)
    return body + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)

data = open(src, "rb").read()
if kind == "pdf":
    z = zlib.compress(data)
    objs = [b"<< /Type /Catalog /Names << /EmbeddedFiles << /Names [(a.com) 2 0 R] >> >> >>",
            b"<< /Type /Filespec /F (a.com) /EF << /F 3 0 R >> >>",
            b"<< /Type /EmbeddedFile /Filter /FlateDecode /Length %d >>\nstream\n" % len(z)
            + z + b"\nendstream"]
    body = pdf_of(objs, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
elif kind == "pdfjs":
    esc = data.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    objs = [b"<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /JavaScript /JS (" + esc + b") >> >>",
            b"<< /Type /Pages /Kids [] /Count 0 >>"]
    body = pdf_of(objs, b"%PDF-1.7\n")
elif kind == "html":
    b64 = base64.b64encode(data).decode()
    body = ('<!DOCTYPE html><html><body><a id="d" download="invoice.com" '
            'href="data:application/octet-stream;base64,%s">open</a>'
            '<script>document.getElementById("d").click()</script></body></html>' % b64).encode()
elif kind == "rtf":
    temp = b"C:\\tmp\\invoice.com\x00"
    pkg = b"\x02\x00" + b"invoice.com\x00" + b"C:\\src\\invoice.com\x00"
    pkg += struct.pack("<II", 0x30000, len(temp)) + temp + struct.pack("<I", len(data)) + data
    obj = struct.pack("<II", 0x0501, 2)
    for s in (b"Package", b"", b""):
        obj += struct.pack("<I", len(s) + 1) + s + b"\x00"
    obj += struct.pack("<I", len(pkg)) + pkg
    hexd = obj.hex()
    lines = "\r\n".join(hexd[i:i + 128] for i in range(0, len(hexd), 128))
    body = ("{\\rtf1\\ansi{\\object\\objemb{\\*\\objclass Package}\\objw100\\objh100"
            "{\\*\\objdata\r\n%s\r\n}}}" % lines).encode()
elif kind == "lha":
    # A level-0 header, -lh0- (stored), CRC-16/ARC of the data; then the end byte.
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    name = b"eicar.com"
    h = b"-lh0-" + struct.pack("<II", len(data), len(data)) + b"\0\0\0\0" + b"\x20\x00"
    h += bytes([len(name)]) + name + struct.pack("<H", crc)
    body = bytes([len(h), sum(h) & 0xFF]) + h + data + b"\0"
elif kind == "alz":
    # ALZip: the file header, one stored entry (4-byte sizes), a directory record, the end.
    name = b"eicar.com"
    body = b"ALZ\x01" + struct.pack("<I", 10) + b"BLZ\x01"
    body += struct.pack("<HBIBB", len(name), 0x20, 0, 0x40, 0)
    body += struct.pack("<BBIII", 0, 0, zlib.crc32(data), len(data), len(data))
    body += name + data + b"CLZ\x01" + b"\0" * 8 + b"CLZ\x02"
elif kind == "zstd-frames":
    # A skippable frame, then the stream as two frames (what zstd writes for two inputs).
    half = len(data) // 2
    body = struct.pack("<II", 0x184D2A50, 4) + b"skip"
    for part in (data[:half], data[half:]):
        body += subprocess.run(["zstd", "-q", "-c"], input=part, capture_output=True, check=True).stdout
open(out, "wb").write(body)
"#;

/// Writes the payload as `eicar.com` (or a clean file) into `dir/src` and builds every sample.
/// Returns (sample, provenance the detection must carry; `> kind:name` when the container is
/// found embedded at an offset the tools decide).
fn build(dir: &Path, payload: &[u8]) -> Vec<(PathBuf, &'static str)> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("eicar.com"), payload).unwrap();
    std::fs::write(src.join("readme.txt"), b"nothing to see here\n".repeat(50)).unwrap();
    std::fs::write(src.join("sub/eicar.com"), payload).unwrap();
    std::fs::write(dir.join("mail.py"), PY_MAIL).unwrap();
    std::fs::write(dir.join("docs.py"), PY_DOCS).unwrap();
    let script = r#"
set -e
cd src
bzip2 -c eicar.com > ../e.bz2
xz -c eicar.com > ../e.xz
xz --format=lzma -c eicar.com > ../e.lzma
7z a -bd -y ../e.7z eicar.com >/dev/null
7z a -bd -y -ms=on -mx=9 ../solid.7z readme.txt sub >/dev/null
7z a -bd -y -pSecret -mhe=on ../locked.7z eicar.com >/dev/null
gcab -c -z ../e.cab eicar.com
echo eicar.com | cpio -o -H newc --quiet > ../e.newc.cpio
echo eicar.com | cpio -o -H odc --quiet > ../e.odc.cpio
echo eicar.com | cpio -o -H bin --quiet > ../e.bin.cpio
printf 'readme.txt\nsub/eicar.com\n' | cpio -o -H newc --quiet | gzip -c > ../e.cpio.gz
python3 ../mail.py eicar.com > ../e.eml
( printf 'From: lab@clinic.example\nTo: ward@hospital.example\nSubject: uu\n\nold mailer\n\n'; uuencode eicar.com < eicar.com ) > ../uu.eml
( printf 'From lab@clinic.example Mon Jan  1 00:00:00 2024\n'; printf 'From: a@b\nTo: c@d\nSubject: first\n\nhello\n\n'; printf 'From lab@clinic.example Mon Jan  1 00:01:00 2024\n'; cat ../e.eml; echo ) > ../box.mbox
cp ../e.7z ../renamed.zip
zip -q ../plain.zip eicar.com && printf 'PK\007\010' > ../split.zip && cat ../plain.zip >> ../split.zip
genisoimage -quiet -J -o ../joliet.iso readme.txt sub
genisoimage -quiet -o ../plain.iso eicar.com
cp eicar.com ../setup.com && mscompress ../setup.com
python3 ../docs.py pdf eicar.com ../e.pdf
qpdf --allow-weak-crypto --encrypt "" owner 40 -- ../e.pdf ../rc4-40.pdf
qpdf --allow-weak-crypto --encrypt "" owner 128 --use-aes=n -- ../e.pdf ../rc4-128.pdf
qpdf --encrypt "" owner 128 --use-aes=y -- ../e.pdf ../aes-128.pdf
qpdf --encrypt "" owner 256 -- ../e.pdf ../aes-256.pdf
qpdf --encrypt user owner 256 -- ../e.pdf ../locked.pdf
python3 ../docs.py pdfjs eicar.com ../js.pdf
qpdf --encrypt "" owner 128 --use-aes=y -- ../js.pdf ../js-aes.pdf
python3 ../docs.py html eicar.com ../smuggle.html
python3 ../docs.py rtf eicar.com ../e.rtf
arj a -y ../e.arj eicar.com readme.txt >/dev/null
( printf 'MZ'; head -c 298 /dev/zero; cat ../e.arj ) > ../sfx.exe
arj a -y ../r.arj readme.txt >/dev/null
( printf '\211PNG\r\n\032\n'; head -c 200 /dev/zero; cat ../r.arj ../e.arj ) > ../arjs.png
zip -q ../r.zip readme.txt
( printf '\211PNG\r\n\032\n'; head -c 200 /dev/zero; cat ../r.zip ../plain.zip ) > ../zips.png
head -c 100000 /dev/zero | tr '\0' 'p' > pad.txt && zip -q -0 -s 64k ../multi.zip eicar.com pad.txt && rm pad.txt
zstd -q -c eicar.com > ../e.zst
python3 ../docs.py zstd-frames eicar.com ../frames.zst
python3 ../docs.py lha eicar.com ../e.lzh
python3 ../docs.py alz eicar.com ../e.alz
mkdir ../chm && cp eicar.com ../chm/ && cd ../chm && printf '<p>help</p>' > index.html
seq 1 40000 > big.txt
printf '[OPTIONS]\nCompiled file=../e.chm\nDefault topic=index.html\n\n[FILES]\nindex.html\nbig.txt\neicar.com\n' > p.hhp
chmcmd p.hhp >/dev/null
"#;
    sh(dir, script);
    [
        ("e.bz2", "file > bzip2"),
        ("e.xz", "file > xz"),
        ("e.lzma", "file > lzma"),
        ("e.7z", "file > 7z:eicar.com"),
        ("solid.7z", "file > 7z:sub/eicar.com"),
        ("e.cab", "file > cab:eicar.com"),
        ("e.newc.cpio", "file > cpio:eicar.com"),
        ("e.odc.cpio", "file > cpio:eicar.com"),
        ("e.bin.cpio", "file > cpio:eicar.com"),
        ("e.cpio.gz", "file > gzip > cpio:sub/eicar.com"),
        ("e.eml", "file > mail:part2:eicar.com"),
        ("uu.eml", "file > mail:part0 > uuencode:eicar.com"),
        ("box.mbox", "file > mbox:msg2 > mail:part2:eicar.com"),
        ("renamed.zip", "file > 7z:eicar.com"),
        ("split.zip", "file > zip:eicar.com"),
        ("joliet.iso", "file > iso:eicar.com"),
        ("plain.iso", "file > iso:EICAR.COM"),
        ("setup.com_", "file > szdd"),
        ("e.pdf", "file > pdf:obj3:embedded"),
        ("rc4-40.pdf", "file > pdf:obj*:embedded"),
        ("rc4-128.pdf", "file > pdf:obj*:embedded"),
        ("aes-128.pdf", "file > pdf:obj*:embedded"),
        ("aes-256.pdf", "file > pdf:obj*:embedded"),
        ("js.pdf", "file > pdf:js1"),
        ("js-aes.pdf", "file > pdf:js1"),
        ("smuggle.html", "file > html:data1"),
        ("e.rtf", "file > rtf:object1 > package:invoice.com"),
        ("e.arj", "file > arj:eicar.com"),
        ("sfx.exe", "file > embedded:arj@300 > arj:eicar.com"),
        ("arjs.png", "> arj:eicar.com"),
        ("zips.png", "> zip:eicar.com"),
        ("multi.z01", "file > zip:eicar.com"),
        ("e.zst", "file > zstd"),
        ("frames.zst", "file > zstd"),
        ("e.lzh", "file > lha:eicar.com"),
        ("e.alz", "file > alz:eicar.com"),
        ("e.chm", "file > chm:/eicar.com"),
    ]
    .into_iter()
    .map(|(f, p)| (dir.join(f), p))
    .collect()
}

fn scan(cfg: &Path, file: &Path) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["scan", "--json", "--config"])
        .arg(cfg)
        .arg(file)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn hdb_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("hdb.toml");
    let hdb = repo().join("rules/clamav/eicar.hdb");
    let text = format!("[av]\nclamav = [\"{}\"]\ncache_dir = \"\"\n", hdb.display());
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn the_test_file_is_found_inside_every_wrapper_with_its_provenance() {
    let dir = TempDir::new("formats");
    let cfg = hdb_config(dir.path());
    for (file, provenance) in build(dir.path(), &eicar()) {
        let v = scan(&cfg, &file);
        assert_eq!(v["verdict"], "infected", "{}: {v}", file.display());
        let hits: Vec<&str> = v["detections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["provenance"].as_str().unwrap())
            .collect();
        // "> kind:name": inside a container found somewhere in the file (its offset depends
        // on what the tools wrote before it).
        // "a*b": any provenance from a to b (an object number a tool chose).
        let found = hits.iter().any(|h| {
            *h == provenance
                || provenance.starts_with("> ")
                    && h.starts_with("file > embedded:")
                    && h.ends_with(provenance)
                || provenance
                    .split_once('*')
                    .is_some_and(|(a, b)| h.starts_with(a) && h.ends_with(b))
        });
        assert!(found, "{}: want {provenance}, got {hits:?}", file.display());
    }
}

#[test]
fn clean_samples_pass_and_encrypted_archives_are_reported() {
    let dir = TempDir::new("formats-clean");
    let cfg = hdb_config(dir.path());
    let samples = build(dir.path(), b"a harmless test program\n");
    for (file, _) in &samples {
        let v = scan(&cfg, file);
        assert_eq!(v["verdict"], "clean", "{}: {v}", file.display());
    }
    for locked in ["locked.7z", "locked.pdf"] {
        let v = scan(&cfg, &dir.path().join(locked));
        assert_eq!(v["verdict"], "unscannable", "{locked}: {v}");
        assert_eq!(v["issues"][0]["kind"], "encrypted", "{locked}: {v}");
    }
    for (name, streams) in protected_office_files() {
        let file = dir.path().join(name);
        let mut cf = cfb::create(&file).unwrap();
        for (stream, bytes) in streams {
            cf.create_stream(stream).unwrap().write_all(&bytes).unwrap();
        }
        cf.flush().unwrap();
        drop(cf);
        let v = scan(&cfg, &file);
        assert_eq!(v["verdict"], "unscannable", "{name}: {v}");
        assert_eq!(v["issues"][0]["kind"], "encrypted", "{name}: {v}");
    }
}

/// The streams of a compound file: (path, bytes).
type Streams = Vec<(&'static str, Vec<u8>)>;

/// Compound files as Office writes them with a password: an OOXML package (the
/// `EncryptionInfo` and `EncryptedPackage` streams), a Word 97-2003 document (`fEncrypted` in
/// its File Information Block) and an Excel 97-2003 workbook (`FilePass` after `BOF`).
fn protected_office_files() -> Vec<(&'static str, Streams)> {
    let mut fib = vec![0u8; 512];
    fib[0..2].copy_from_slice(&0xa5ecu16.to_le_bytes());
    fib[0x0a..0x0c].copy_from_slice(&0x0100u16.to_le_bytes());
    let mut book = vec![0x09, 0x08, 16, 0];
    book.extend([0u8; 16]);
    book.extend([0x2f, 0, 4, 0, 1, 0, 1, 0]);
    book.resize(600, 0);
    vec![
        (
            "locked.docx",
            vec![
                ("/EncryptionInfo", vec![4, 0, 4, 0, 0x40, 0, 0, 0]),
                ("/EncryptedPackage", vec![0x5a; 700]),
            ],
        ),
        (
            "locked.doc",
            vec![("/WordDocument", fib), ("/1Table", vec![0; 600])],
        ),
        ("locked.xls", vec![("/Workbook", book)]),
    ]
}

/// Limits small enough that the bombs below reach them.
fn tight_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("tight.toml");
    let hdb = repo().join("rules/clamav/eicar.hdb");
    let text = format!(
        "[av]\nclamav = [\"{}\"]\ncache_dir = \"\"\nmax_member_bytes = 10485760\nmax_files = 1000\n",
        hdb.display()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

#[test]
fn bombs_floods_and_cut_archives_get_a_verdict() {
    let dir = TempDir::new("formats-hostile");
    let samples = build(dir.path(), &eicar());
    let cfg = tight_config(dir.path());
    let script = r#"
set -e
head -c 200000000 /dev/zero > zeros
7z a -bd -y -mx=1 bomb.7z zeros >/dev/null
xz -1 -c zeros > bomb.xz
bzip2 -1 -c zeros > bomb.bz2
rm zeros
mkdir flood && cd flood && seq 1 3000 | xargs touch && ls | cpio -o -H newc --quiet > ../flood.cpio && cd ..
mkdir -p t && cp src/eicar.com t/x && cd t && echo x | cpio -o -H odc --quiet > ../plain.cpio && cd ..
"#;
    sh(dir.path(), script);
    for (name, kind) in [
        ("bomb.7z", "limit"),
        ("bomb.xz", "limit"),
        ("bomb.bz2", "limit"),
        ("flood.cpio", "limit"),
    ] {
        let v = scan(&cfg, &dir.path().join(name));
        assert_eq!(v["verdict"], "unscannable", "{name}: {v}");
        assert_eq!(v["issues"][0]["kind"], kind, "{name}: {v}");
    }
    // A member name that climbs out of the archive is only a name: nothing is written.
    let mut cpio = std::fs::read(dir.path().join("plain.cpio")).unwrap();
    let at = cpio.windows(2).position(|w| w == b"x\0").unwrap();
    cpio.splice(at..at + 1, b"../../etc/x".iter().copied());
    // odc: the name size field (6 octal digits at 59) grows by 10.
    let size = format!("{:06o}", 2 + 10);
    cpio[59..65].copy_from_slice(size.as_bytes());
    std::fs::write(dir.path().join("climb.cpio"), &cpio).unwrap();
    let v = scan(&cfg, &dir.path().join("climb.cpio"));
    assert_eq!(
        v["detections"][0]["provenance"], "file > cpio:../../etc/x",
        "{v}"
    );
    // Every sample cut in half gets a verdict; where the cut falls inside compressed data the
    // decoder's output is incomplete, and that is never clean. (A cut that leaves whole members
    // and drops others is scanned for what it holds: the rest is not in the file either.)
    for (file, _) in samples {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let data = std::fs::read(&file).unwrap();
        let cut = dir.path().join(format!("cut-{name}"));
        std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
        let v = scan(&cfg, &cut);
        let compressed = [
            ".bz2",
            ".xz",
            ".lzma",
            ".7z",
            ".cab",
            ".gz",
            ".com_",
            "renamed.zip",
        ];
        if compressed.iter().any(|s| name.ends_with(s)) {
            assert_eq!(v["verdict"], "unscannable", "{name} cut in half: {v}");
        } else {
            assert!(v["verdict"].is_string(), "{name}: {v}");
        }
    }
}

/// A RAR of `members` in `format`, written by `rars` (Debian has no free RAR writer).
fn rar(
    format: rars::ArchiveVersion,
    members: &[(&str, &[u8])],
    solid: bool,
    password: Option<&str>,
    hide_names: bool,
) -> Vec<u8> {
    let mut b = rars::Builder::new(format)
        .solid(solid)
        .password(password.map(|p| p.as_bytes().to_vec()))
        .header_encryption(hide_names);
    for (name, data) in members {
        b.add_bytes(name.as_bytes().to_vec(), data.to_vec(), None, None)
            .unwrap();
    }
    b.to_bytes().unwrap()
}

#[test]
fn rar_archives_of_every_generation_are_opened() {
    use rars::ArchiveVersion as V;
    let dir = TempDir::new("formats-rar");
    let cfg = tight_config(dir.path());
    let e = eicar();
    let readme = b"nothing to see here\n".repeat(200);
    let members: &[(&str, &[u8])] = &[("docs/readme.txt", &readme), ("docs/eicar.com", &e)];
    let clean: &[(&str, &[u8])] = &[("docs/readme.txt", &readme)];
    for (format, solid) in [
        (V::Rar50, false),
        (V::Rar50, true),
        (V::Rar70, false),
        (V::Rar29, false),
        (V::Rar29, true),
        (V::Rar20, false),
        (V::Rar15, false),
        (V::Rar13, false),
    ] {
        let f = dir.path().join(format!("{}-{solid}.rar", format.as_str()));
        std::fs::write(&f, rar(format, members, solid, None, false)).unwrap();
        let v = scan(&cfg, &f);
        assert_eq!(v["verdict"], "infected", "{}: {v}", f.display());
        assert_eq!(
            v["detections"][0]["provenance"], "file > rar:docs/eicar.com",
            "{v}"
        );
        // An independent reader (libarchive; no solid RAR there) agrees the sample holds the file.
        if matches!(format, V::Rar50 | V::Rar29) && !solid {
            let out = Command::new("bsdtar").arg("-tf").arg(&f).output().unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("docs/eicar.com"),
                "bsdtar: {out:?}"
            );
        }
        std::fs::write(&f, rar(format, clean, solid, None, false)).unwrap();
        assert_eq!(scan(&cfg, &f)["verdict"], "clean", "{}", f.display());
        // Cut in half: never clean.
        let whole = rar(format, members, solid, None, false);
        std::fs::write(&f, &whole[..whole.len() / 2]).unwrap();
        assert_eq!(
            scan(&cfg, &f)["verdict"],
            "unscannable",
            "{} cut",
            f.display()
        );
    }
    // Encrypted members, and encrypted headers (names hidden too): reported, never passed.
    for (hide, what) in [
        (false, "encrypted RAR member"),
        (true, "encrypted RAR archive"),
    ] {
        let f = dir.path().join(format!("locked-{hide}.rar"));
        std::fs::write(&f, rar(V::Rar50, members, false, Some("Secret"), hide)).unwrap();
        let v = scan(&cfg, &f);
        assert_eq!(v["verdict"], "unscannable", "{v}");
        assert_eq!(v["issues"][0]["kind"], "encrypted", "{v}");
        assert_eq!(v["issues"][0]["reason"], what, "{v}");
    }
    // A bomb: 40 MB of zeros against a 10 MiB member limit; what decoded before is scanned.
    let zeros = vec![0u8; 40 << 20];
    let f = dir.path().join("bomb.rar");
    std::fs::write(
        &f,
        rar(
            V::Rar50,
            &[("zeros", &zeros), ("eicar.com", &e)],
            false,
            None,
            false,
        ),
    )
    .unwrap();
    let v = scan(&cfg, &f);
    assert_eq!(v["verdict"], "infected", "{v}");
    assert_eq!(v["issues"][0]["kind"], "limit", "{v}");
    assert_eq!(v["issues"][0]["provenance"], "file > rar:zeros", "{v}");
}

/// Nullsoft installers built by Debian's makensis with each compressor, solid and not.
#[test]
fn nsis_installers_give_up_their_files() {
    let dir = TempDir::new("formats-nsis");
    let cfg = hdb_config(dir.path());
    std::fs::write(dir.path().join("eicar.com"), eicar()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"harmless notes\n").unwrap();
    let build = |compressor: &str, file: &str, out: &str| {
        let script = format!(
            "SetCompressor {compressor}\nOutFile \"{out}\"\nInstallDir \"$TEMP\\x\"\n\
             RequestExecutionLevel user\nSection\nSetOutPath \"$INSTDIR\"\nFile \"{file}\"\nSectionEnd\n"
        );
        std::fs::write(dir.path().join("t.nsi"), script).unwrap();
        sh(dir.path(), "makensis -V1 t.nsi >/dev/null");
        dir.path().join(out)
    };
    for compressor in ["zlib", "lzma", "/SOLID lzma", "/SOLID zlib"] {
        let setup = build(compressor, "eicar.com", "setup.exe");
        let v = scan(&cfg, &setup);
        assert_eq!(v["verdict"], "infected", "{compressor}: {v}");
        let p = v["detections"][0]["provenance"].as_str().unwrap();
        assert!(
            p.starts_with("file > embedded:nsis@") && p.ends_with(" > nsis:file1"),
            "{compressor}: {p}"
        );
        let clean = build(compressor, "notes.txt", "clean.exe");
        assert_eq!(scan(&cfg, &clean)["verdict"], "clean", "{compressor}");
    }
    // NSIS's own bzip2 is not decoded: reported, never passed; blocks NSIS stored as they are
    // (a file too small to compress) are still scanned.
    let setup = build("bzip2", "notes.txt", "bz.exe");
    let v = scan(&cfg, &setup);
    assert_eq!(v["verdict"], "unscannable", "{v}");
    assert_eq!(v["issues"][0]["kind"], "corrupt", "{v}");
    let setup = build("bzip2", "eicar.com", "bz.exe");
    let v = scan(&cfg, &setup);
    assert_eq!(v["verdict"], "infected", "{v}");
    assert_eq!(v["issues"][0]["kind"], "corrupt", "{v}");
}

#[test]
fn executables_are_described_and_yara_sees_their_filetype() {
    let dir = TempDir::new("formats-exe");
    let script = r#"
set -e
mkdir src && cp /usr/bin/true src/tool && echo 'just notes' > src/notes.txt
cd src && zip -q ../tools.zip tool notes.txt
"#;
    sh(dir.path(), script);
    let rules = dir.path().join("rules.yar");
    std::fs::write(
        &rules,
        "rule Sekisho_Test_ELF { condition: filetype == \"ELF\" and filename == \"tool\" }\n\
         rule Sekisho_Test_Text { condition: filetype == \"ELF\" and filename == \"notes.txt\" }\n",
    )
    .unwrap();
    let cfg = dir.path().join("yara.toml");
    let text = format!("[av]\nyara = [\"{}\"]\ncache_dir = \"\"\n", rules.display());
    std::fs::write(&cfg, text).unwrap();
    let v = scan(&cfg, &dir.path().join("tools.zip"));
    let hits: Vec<(&str, &str)> = v["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["rule"].as_str().unwrap(),
                h["provenance"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(hits, vec![("Sekisho_Test_ELF", "file > zip:tool")], "{v}");
    let exes = v["executables"].as_array().unwrap();
    assert_eq!(exes.len(), 1, "{v}");
    assert_eq!(exes[0]["format"], "ELF");
    assert_eq!(exes[0]["provenance"], "file > zip:tool");
    assert_eq!(exes[0]["library"], false);
    assert!(exes[0]["packer"].is_null());
}

/// ClamAV's own `clamscan`, with the same `.hdb`, over the same samples: every file it finds the
/// test file in, `sekisho scan` finds it in too (and names where).
#[test]
fn sekisho_finds_everything_clamscan_finds() {
    let dir = TempDir::new("formats-clamscan");
    let cfg = hdb_config(dir.path());
    let samples = build(dir.path(), &eicar());
    let hdb = repo().join("rules/clamav/eicar.hdb");
    let out = Command::new("clamscan")
        .arg("--no-summary")
        .arg("-d")
        .arg(&hdb)
        .args(samples.iter().map(|(f, _)| f))
        .output()
        .expect("clamscan (Debian package clamav) is installed by scripts/test.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut found = 0;
    for (file, _) in &samples {
        let line = format!("{}: Eicar-Test-Signature", file.display());
        if !text.lines().any(|l| l.starts_with(&line)) {
            continue;
        }
        found += 1;
        let v = scan(&cfg, file);
        assert_eq!(
            v["verdict"],
            "infected",
            "clamscan finds it in {}: {v}",
            file.display()
        );
    }
    // ClamAV 1.4 opens all but LZMA-alone, this RTF package, chmcmd's help file (its CHM
    // reader gives up on that directory; 7-Zip and chmls read it) and Zstandard (ClamAV 1.5
    // reads it) among our samples, and a hash signature does not meet a PDF's script there
    // (ClamAV scans scripts normalised): js.pdf and js-aes.pdf.
    assert!(found >= samples.len() - 7, "clamscan found {found}: {text}");
}

/// ARJ's every method (written by Debian's arj) and compiled help (Free Pascal's chmcmd, the
/// file deep in an LZX section of several frames) around a payload that compresses, named by
/// an `.hdb` of its own; clamscan with the same `.hdb` agrees on the ARJ samples. A garbled
/// ARJ is reported, a cut help file is never clean.
#[test]
fn arj_methods_and_chm_sections_are_unpacked() {
    let dir = TempDir::new("formats-arj");
    let chart: String = (0..3000)
        .map(|i| format!("record {i}: temperature normal\n"))
        .collect();
    std::fs::write(dir.path().join("chart.txt"), chart.as_bytes()).unwrap();
    let script = r#"
set -e
echo "$(md5sum chart.txt | cut -d' ' -f1):$(stat -c %s chart.txt):Sekisho-Test-Chart" > chart.hdb
printf '[av]\nclamav = ["chart.hdb"]\ncache_dir = ""\n' > chart.toml
for m in 1 2 3 4; do arj a -m$m -y m$m.arj chart.txt >/dev/null; done
arj a -gSecret -y locked.arj chart.txt >/dev/null
seq 1 40000 > big.txt && printf '<p>x</p>' > index.html
printf '[OPTIONS]\nCompiled file=chart.chm\nDefault topic=index.html\n\n[FILES]\nindex.html\nbig.txt\nchart.txt\n' > p.hhp
chmcmd p.hhp >/dev/null
"#;
    sh(dir.path(), script);
    let d = dir.path();
    let cfg = d.join("chart.toml");
    for m in 1..=4 {
        let f = d.join(format!("m{m}.arj"));
        // Packed, not stored: the method under test did the work.
        assert!(std::fs::metadata(&f).unwrap().len() < chart.len() as u64 / 2);
        let bytes = std::fs::read(&f).unwrap();
        let local = bytes
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w == &[0x60, 0xea])
            .nth(1)
            .unwrap()
            .0;
        assert_eq!(bytes[local + 9], m, "method byte of m{m}.arj");
        let v = scan(&cfg, &f);
        assert_eq!(v["verdict"], "infected", "m{m}.arj: {v}");
        assert_eq!(v["detections"][0]["provenance"], "file > arj:chart.txt");
        let out = Command::new("clamscan")
            .args(["--no-summary", "-d"])
            .arg(d.join("chart.hdb"))
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Sekisho-Test-Chart"), "clamscan: {text}");
    }
    let v = scan(&cfg, &d.join("locked.arj"));
    assert_eq!(v["verdict"], "unscannable", "{v}");
    assert_eq!(v["issues"][0]["kind"], "encrypted", "{v}");
    let help = d.join("chart.chm");
    let v = scan(&cfg, &help);
    assert_eq!(v["verdict"], "infected", "{v}");
    assert_eq!(v["detections"][0]["provenance"], "file > chm:/chart.txt");
    let whole = std::fs::read(&help).unwrap();
    let cut = d.join("cut.chm");
    std::fs::write(&cut, &whole[..whole.len() * 3 / 4]).unwrap();
    let v = scan(&cfg, &cut);
    assert_ne!(v["verdict"], "clean", "{v}");
}

/// A 0x400-byte PE32 program (one `.text` section) carrying `text`.
fn pe32(text: &[u8]) -> Vec<u8> {
    let mut d = pe32_with(
        &[(*b".text\0\0\0", 0x200, 0x1000, 0x200, 0x200)],
        0x1000,
        0x400,
    );
    d[0x200..0x200 + text.len()].copy_from_slice(text);
    d
}

/// A PE32 program of `len` bytes with `sections` as (name, virtual size, address, raw size,
/// file offset), its entry point at `entry`.
fn pe32_with(sections: &[([u8; 8], u32, u32, u32, u32)], entry: u32, len: usize) -> Vec<u8> {
    let mut d = vec![0u8; len];
    let mut put = |at: usize, v: &[u8]| d[at..at + v.len()].copy_from_slice(v);
    put(0, b"MZ");
    put(0x3c, &0x80u32.to_le_bytes());
    put(0x80, b"PE\0\0");
    put(0x84, &0x14cu16.to_le_bytes()); // i386
    put(0x86, &(sections.len() as u16).to_le_bytes());
    put(0x94, &0xe0u16.to_le_bytes()); // optional header size
    put(0x96, &0x0102u16.to_le_bytes()); // executable, 32-bit
    let opt = 0x98;
    put(opt, &0x10bu16.to_le_bytes());
    put(opt + 16, &entry.to_le_bytes());
    put(opt + 28, &0x40_0000u32.to_le_bytes()); // image base
    put(opt + 32, &0x1000u32.to_le_bytes()); // section alignment
    put(opt + 36, &0x200u32.to_le_bytes()); // file alignment
    put(opt + 48, &4u16.to_le_bytes()); // subsystem version
    let end = sections.iter().map(|s| s.2 + s.1).max().unwrap_or(0x1000);
    put(
        opt + 56,
        &end.div_ceil(0x1000).wrapping_mul(0x1000).to_le_bytes(),
    ); // size of image
    put(opt + 60, &0x200u32.to_le_bytes()); // size of headers
    put(opt + 68, &2u16.to_le_bytes()); // GUI
    put(opt + 92, &16u32.to_le_bytes()); // data directories
    for (i, (name, vsize, va, rsize, ptr)) in sections.iter().enumerate() {
        let sec = opt + 0xe0 + i * 40;
        put(sec, name);
        for (k, v) in [vsize, va, rsize, ptr].iter().enumerate() {
            put(sec + 8 + k * 4, &v.to_le_bytes());
        }
        put(sec + 36, &0xe000_0060u32.to_le_bytes());
    }
    d
}

/// `data` as UPX's NRV2B codes it, literals only: 32-bit little-endian bit words read most
/// significant bit first, a 1 before each literal byte, then the end mark (a 0, an offset of
/// all ones).
fn nrv2b_literals(data: &[u8]) -> Vec<u8> {
    struct W {
        out: Vec<u8>,
        at: usize,
        word: u32,
        used: u32,
    }
    impl W {
        fn bit(&mut self, b: u32) {
            if self.used == 32 {
                self.flush();
                self.at = self.out.len();
                self.out.extend_from_slice(&[0; 4]);
                (self.word, self.used) = (0, 0);
            }
            self.word |= b << (31 - self.used);
            self.used += 1;
        }
        fn flush(&mut self) {
            if self.out.len() >= self.at + 4 {
                let at = self.at;
                self.out[at..at + 4].copy_from_slice(&self.word.to_le_bytes());
            }
        }
    }
    let mut w = W {
        out: Vec::new(),
        at: 0,
        word: 0,
        used: 32,
    };
    for &b in data {
        w.bit(1);
        w.out.push(b);
    }
    w.bit(0);
    // Gamma code of 0xffffff + 3: each bit after the leading 1, each followed by "more".
    let v = 0x00ff_ffffu32 + 3;
    for i in (0..31 - v.leading_zeros()).rev() {
        w.bit((v >> i) & 1);
        w.bit(u32::from(i == 0));
    }
    w.out.push(0xff);
    w.flush();
    w.out
}

/// A UPX-packed program as UPX lays it out: `UPX0` (no data) at 0x1000, `UPX1` at 0x3000 with
/// the NRV2B stream of the original image (a data section ending with `inner`, no imports, the
/// original PE header UPX keeps) and UPX's loader at the entry point.
fn upx_packed(inner: &[u8]) -> Vec<u8> {
    let mut image = vec![0x90u8; 0x1000];
    image[0x1000 - inner.len()..].copy_from_slice(inner);
    image.extend_from_slice(&[0; 4]);
    let original = pe32_with(
        &[(*b".data\0\0\0", 0x1000, 0x1000, 0x1000, 0x400)],
        0x1000,
        0x400,
    );
    image.extend_from_slice(&original[0x80..0x80 + 0xf8 + 0x28]);
    let mut upx1 = nrv2b_literals(&image);
    let loader_at = upx1.len().div_ceil(16) * 16;
    upx1.resize(loader_at, 0);
    let mut loader = vec![0xccu8; 0x200];
    // pusha; mov esi, UPX1 (no skew) ... the NRV2B loop where UPX 3 puts it ... lea edi, [esi+0x1000]
    loader[..2].copy_from_slice(&[0x60, 0xbe]);
    loader[2..6].copy_from_slice(&0x40_3000u32.to_le_bytes());
    loader[0x69..0x76].copy_from_slice(b"\x11\xdb\x11\xc9\x01\xdb\x75\x07\x8b\x1e\x83\xee\xfc");
    loader[0x106..0x108].copy_from_slice(&[0x8d, 0xbe]);
    loader[0x108..0x10c].copy_from_slice(&0x1000u32.to_le_bytes());
    upx1.extend_from_slice(&loader);
    let rsz = upx1.len().div_ceil(0x200) * 0x200;
    let sections = [
        (*b"UPX0\0\0\0\0", 0x2000, 0x1000, 0, 0),
        (
            *b"UPX1\0\0\0\0",
            rsz.div_ceil(0x1000) as u32 * 0x1000,
            0x3000,
            rsz as u32,
            0x400,
        ),
    ];
    let mut d = pe32_with(&sections, 0x3000 + loader_at as u32, 0x400 + rsz);
    d[0x400..0x400 + upx1.len()].copy_from_slice(&upx1);
    d
}

/// An `.hdb` naming `program` as `name`, and a config using it alone.
fn hash_signature(dir: &Path, program: &[u8], name: &str) -> (PathBuf, PathBuf) {
    use sha2::Digest;
    let hdb = dir.join("inner.hdb");
    let sum = hex::encode(sha2::Sha256::digest(program));
    std::fs::write(&hdb, format!("{sum}:{}:{name}\n", program.len())).unwrap();
    let cfg = dir.join("inner.toml");
    let text = format!("[av]\nclamav = [\"{}\"]\ncache_dir = \"\"\n", hdb.display());
    std::fs::write(&cfg, text).unwrap();
    (hdb, cfg)
}

/// What `clamscan` prints for `file` with the `.hdb` alone.
fn clamscan(hdb: &Path, file: &Path) -> String {
    let out = Command::new("clamscan")
        .args(["--no-summary", "-d"])
        .arg(hdb)
        .arg(file)
        .output()
        .expect("clamscan (Debian package clamav) is installed by scripts/test.sh");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A program packed by UPX around the program a signature names: `sekisho scan` unpacks it,
/// rebuilds the image as ClamAV does and finds the program at the end of it, where clamscan
/// (same `.hdb`) finds it too; the same program packed but damaged is scanned as it is.
#[test]
fn upx_packed_programs_are_unpacked_as_clamscan_unpacks_them() {
    let dir = TempDir::new("formats-upx");
    let inner = pe32(b"the program UPX packed inside another");
    let file = dir.path().join("packed.exe");
    let packed = upx_packed(&inner);
    std::fs::write(&file, &packed).unwrap();
    let mut broken = packed.clone();
    broken[0x400..0x800].fill(0);
    let damaged = dir.path().join("damaged.exe");
    std::fs::write(&damaged, &broken).unwrap();
    let (hdb, cfg) = hash_signature(dir.path(), &inner, "Sekisho.Test.Upx");
    let v = scan(&cfg, &file);
    assert_eq!(v["verdict"], "infected", "{v}");
    assert_eq!(
        v["detections"][0]["provenance"], "file > upx > embedded:pe@7168",
        "{v}"
    );
    assert_eq!(v["executables"][0]["packer"], "UPX", "{v}");
    assert_eq!(scan(&cfg, &damaged)["verdict"], "clean");
    let text = clamscan(&hdb, &file);
    assert!(text.contains("Sekisho.Test.Upx"), "clamscan: {text}");
}

/// A program carried inside another (a dropper's payload) is scanned from its `MZ` to the end
/// of the file, as ClamAV scans its embedded `PE` type: an `.hdb` naming the inner program
/// finds it in both engines; the outer program alone is clean.
#[test]
fn programs_inside_programs_are_found_as_clamscan_finds_them() {
    let dir = TempDir::new("formats-pe");
    let inner = pe32(b"the inner program the signature names");
    let outer = pe32(b"a dropper");
    let file = dir.path().join("dropper.exe");
    std::fs::write(&file, [outer.as_slice(), &inner].concat()).unwrap();
    let alone = dir.path().join("alone.exe");
    std::fs::write(&alone, &outer).unwrap();
    let (hdb, cfg) = hash_signature(dir.path(), &inner, "Sekisho.Test.Inner");
    let v = scan(&cfg, &file);
    assert_eq!(v["verdict"], "infected", "{v}");
    assert_eq!(
        v["detections"][0]["provenance"], "file > embedded:pe@1024",
        "{v}"
    );
    assert_eq!(scan(&cfg, &alone)["verdict"], "clean");
    let text = clamscan(&hdb, &file);
    assert!(text.contains("Sekisho.Test.Inner"), "clamscan: {text}");
}
