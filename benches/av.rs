//! AV scanning throughput (MB/s per core) over a mixed corpus — text, PDF, ELF, and the same
//! bytes in every container family the walker opens (zip, bzip2, cpio, mail, OLE2, HTML, and
//! 7z / xz / cab when 7z, xz and gcab are installed) — with signature-base, ReversingLabs and
//! the bundled ClamAV signatures loaded. MB/s counts the container's bytes. The YARA corpora
//! come from ../shared/corpora (or SEKISHO_CORPORA); skipped, saying so, without them.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sekisho_av::{scan_bytes, Engine};
use sekisho_content::{Hints, Limits};

/// Deterministic pseudo-random bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The mixed corpus, shared with benches/av_vs_clamav.sh (which writes the same shapes to disk).
pub fn corpus(each: usize) -> Vec<(&'static str, Vec<u8>)> {
    let words = [
        "patient",
        "record",
        "claim",
        "prescription",
        "hospital",
        "clinic",
        "dose",
        "lab",
        "result",
        "the",
        "and",
        "of",
    ];
    let mut text = String::new();
    let mut i = 0usize;
    while text.len() < each {
        text.push_str(words[i % words.len()]);
        text.push(if i % 13 == 0 { '\n' } else { ' ' });
        i = i.wrapping_mul(31).wrapping_add(7) % 1_000_003;
    }
    let mut pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n".to_vec();
    while pdf.len() < each {
        // Streams as producers write them: Flate-compressed (random content, so incompressible).
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&noise(4096, pdf.len() as u64)).unwrap();
        let stream = z.finish().unwrap();
        pdf.extend_from_slice(
            format!(
                "3 0 obj << /Length {} /Filter /FlateDecode >> stream\n",
                stream.len()
            )
            .as_bytes(),
        );
        pdf.extend_from_slice(&stream);
        pdf.extend_from_slice(b"\nendstream endobj\n");
    }
    pdf.extend_from_slice(b"%%EOF\n");
    let mut elf = Vec::new();
    for dir in ["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if elf.len() >= each {
                break;
            }
            if let Ok(b) = std::fs::read(&p) {
                if b.starts_with(b"\x7fELF") && b.len() < each {
                    elf.extend_from_slice(&b);
                }
            }
        }
    }
    elf.truncate(each);
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("notes.txt", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(&text.as_bytes()[..each / 2]).unwrap();
    z.start_file("tool", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(&elf[..each.min(elf.len()) / 2]).unwrap();
    let zip = z.finish().unwrap().into_inner();
    let half_text = &text.as_bytes()[..each / 2];
    let half_elf = &elf[..each.min(elf.len()) / 2];
    let mut out = vec![("zip", zip)];
    out.extend(containers(half_text, half_elf));
    let mut all = vec![("text", text.into_bytes()), ("pdf", pdf), ("elf", elf)];
    all.extend(out);
    all
}

/// The same two members (a text and an ELF) in each container family.
fn containers(text: &[u8], elf: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    use base64::Engine as _;
    let mut both = text.to_vec();
    both.extend_from_slice(elf);
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&both).unwrap();
    let mut cpio = Vec::new();
    for (name, data) in [("notes.txt", text), ("tool", elf), ("TRAILER!!!", &[][..])] {
        cpio.extend(cpio_newc(name, data));
    }
    let b64 = |d: &[u8]| {
        let s = base64::engine::general_purpose::STANDARD.encode(d);
        s.as_bytes()
            .chunks(76)
            .map(|l| String::from_utf8_lossy(l) + "\r\n")
            .collect::<String>()
    };
    let mail = format!(
        "From: lab@clinic.example\r\nTo: ward@hospital.example\r\nSubject: results\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\
         --b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; \
         filename=\"tool\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--b--\r\n",
        b64(text),
        b64(elf)
    );
    let mut ole = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
    ole.create_stream("WordDocument")
        .unwrap()
        .write_all(text)
        .unwrap();
    ole.create_stream("ObjectPool")
        .unwrap()
        .write_all(elf)
        .unwrap();
    ole.flush().unwrap();
    let html = format!(
        "<!DOCTYPE html><html><body><p>{}</p><a href=\"data:application/octet-stream;base64,{}\">x</a></body></html>",
        String::from_utf8_lossy(text),
        base64::engine::general_purpose::STANDARD.encode(elf)
    );
    let mut rar = rars::Builder::new(rars::ArchiveVersion::Rar50);
    rar.add_bytes(b"notes.txt".to_vec(), text.to_vec(), None, None)
        .unwrap();
    rar.add_bytes(b"tool".to_vec(), elf.to_vec(), None, None)
        .unwrap();
    let mut out = vec![
        ("rar", rar.to_bytes().unwrap()),
        ("bzip2", bz.finish().unwrap()),
        ("cpio", cpio),
        ("mail", mail.into_bytes()),
        ("ole2", ole.into_inner().into_inner()),
        ("html", html.into_bytes()),
    ];
    out.extend(by_tools(text, elf));
    out
}

/// A newc cpio entry.
fn cpio_newc(name: &str, data: &[u8]) -> Vec<u8> {
    let fields = [
        1,
        0o100644,
        0,
        0,
        1,
        0,
        data.len(),
        0,
        0,
        0,
        0,
        name.len() + 1,
        0,
    ];
    let mut h = b"070701".to_vec();
    for f in fields {
        h.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    h.extend_from_slice(name.as_bytes());
    h.push(0);
    h.resize(h.len().div_ceil(4) * 4, 0);
    h.extend_from_slice(data);
    h.resize(h.len().div_ceil(4) * 4, 0);
    h
}

/// 7z, xz and cab written by the tools users have, when they are installed.
fn by_tools(text: &[u8], elf: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("sekisho-bench-av-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("notes.txt"), text).unwrap();
    std::fs::write(dir.join("tool"), elf).unwrap();
    let mut out = Vec::new();
    let script = [
        ("7z", "7z a -bd -y -mx=5 out.7z notes.txt tool >/dev/null"),
        ("xz", "cat notes.txt tool | xz -6 -c > out.xz"),
        ("cab", "gcab -c -z out.cab notes.txt tool"),
    ];
    for (kind, cmd) in script {
        let ok = std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if let (true, Ok(b)) = (ok, std::fs::read(dir.join(format!("out.{kind}")))) {
            out.push((kind, b));
        } else {
            eprintln!("{kind}: tool missing, not benched");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn bench(c: &mut Criterion) {
    let Some(y) = common::corpus("yara") else {
        return;
    };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let cache = std::env::temp_dir().join("sekisho-bench-av-cache");
    let engine = Engine::load(
        &[
            y.join("signature-base"),
            y.join("reversinglabs"),
            repo.join("rules/yara"),
        ],
        &[repo.join("rules/clamav")],
        Some(&cache),
    )
    .unwrap();
    eprintln!(
        "rules: {} YARA, {} hash",
        engine.report().yara_rules,
        engine.report().hash_signatures
    );
    let mut g = c.benchmark_group("av_scan");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    let limits = Limits::default();
    for (kind, data) in corpus(2 << 20) {
        let data = Bytes::from(data);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(kind, |b| {
            b.iter(|| {
                scan_bytes(
                    &engine,
                    &data,
                    "file",
                    &Hints::default(),
                    &limits,
                    Duration::from_secs(120),
                    false,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
