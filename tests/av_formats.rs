//! `sekisho scan` with a ClamAV `.hdb` (the hash of one test file) through every wrapper the
//! content walker opens: samples built here by the tools users have (bzip2, xz, 7z, gcab, cpio,
//! uuencode, python's email package), detection asserted with its provenance; clean samples of
//! each format pass; encrypted archives are reported, never passed as clean.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

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

/// Writes the payload as `eicar.com` (or a clean file) into `dir/src` and builds every sample.
/// Returns (sample, provenance the detection must carry).
fn build(dir: &Path, payload: &[u8]) -> Vec<(PathBuf, &'static str)> {
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("eicar.com"), payload).unwrap();
    std::fs::write(src.join("readme.txt"), b"nothing to see here\n".repeat(50)).unwrap();
    std::fs::write(src.join("sub/eicar.com"), payload).unwrap();
    std::fs::write(dir.join("mail.py"), PY_MAIL).unwrap();
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
        assert!(
            hits.contains(&provenance),
            "{}: want {provenance}, got {hits:?}",
            file.display()
        );
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
    let v = scan(&cfg, &dir.path().join("locked.7z"));
    assert_eq!(v["verdict"], "unscannable", "{v}");
    assert_eq!(v["issues"][0]["kind"], "encrypted", "{v}");
}
