//! AV scanning throughput (MB/s per core) over a mixed corpus — text, PDF-like, ELF, zip — with
//! signature-base, ReversingLabs and the bundled ClamAV signatures loaded.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::corpora;

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
        pdf.extend_from_slice(b"3 0 obj << /Length 4096 /Filter /FlateDecode >> stream\n");
        pdf.extend_from_slice(&noise(4096, pdf.len() as u64));
        pdf.extend_from_slice(b"\nendstream endobj\n");
    }
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
    vec![
        ("text", text.into_bytes()),
        ("pdf", pdf),
        ("elf", elf),
        ("zip", zip),
    ]
}

fn bench(c: &mut Criterion) {
    let y = corpora().join("yara");
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
