//! The AV engine over the bundled pack and the third-party corpora.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use sekisho_av::{scan_bytes, Engine, FileVerdict};
use sekisho_content::{Hints, Limits};

#[path = "../../../tests/common/public_corpora.rs"]
mod public_corpora;
use public_corpora::corpus;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn eicar() -> Vec<u8> {
    [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ]
    .concat()
    .into_bytes()
}

fn bundled() -> Engine {
    Engine::load(
        &[repo().join("rules/yara")],
        &[repo().join("rules/clamav")],
        None,
    )
    .unwrap()
}

#[test]
fn bundled_pack_detects_eicar_with_every_engine() {
    let e = bundled();
    let r = e.report();
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
    assert_eq!(r.hash_signatures, 2);
    assert_eq!(r.yara_rules, 2, "EICAR rule + translated body signature");
    let report = scan_bytes(
        &e,
        &Bytes::from(eicar()),
        "file",
        &Hints::default(),
        &Limits::default(),
        Duration::from_secs(30),
        false,
    );
    let mut rules: Vec<&str> = report
        .hits
        .iter()
        .map(|h| h.detection.rule.as_str())
        .collect();
    rules.sort_unstable();
    assert_eq!(
        rules,
        vec![
            "EICAR_Test_File",
            "Eicar-Test-Signature",
            "Eicar-Test-Signature.Body",
            "Eicar-Test-Signature.SHA256"
        ]
    );
    let h = &report.hits[0];
    assert_eq!(
        h.sha256,
        "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
    );
    assert_eq!(h.size, 68);
    assert_eq!(report.verdict(), FileVerdict::Infected);
    let clean = scan_bytes(
        &e,
        &Bytes::from_static(b"just a clean text file\n"),
        "file",
        &Hints::default(),
        &Limits::default(),
        Duration::from_secs(30),
        false,
    );
    assert_eq!(clean.verdict(), FileVerdict::Clean);
    assert!(clean.hits.is_empty());
}

#[test]
fn externals_are_defined_and_bad_rules_are_reported() {
    let dir = std::env::temp_dir().join(format!("sekisho-av-ext-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ext.yar"),
        "rule by_ext { condition: extension == \"exe\" and filename == \"a.exe\" and filetype != \"\" and owner == \"\" and filepath contains \"zip:\" }\n\
         rule broken { strings: $a = \"x\" condition: $b }\n\
         rule fine { strings: $a = \"needle\" condition: $a }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sigs.ldb"),
        "Test.Ldb;Target:0;0&1;6e6565;646c65\nTest.Bad;Target:0;0&5;41\n",
    )
    .unwrap();
    let e = Engine::load(&[dir.join("ext.yar")], &[dir.join("sigs.ldb")], None).unwrap();
    let rej = &e.report().rejected;
    assert!(
        rej.iter().any(|r| r.name == "broken" && r.line == 2),
        "{rej:?}"
    );
    assert!(
        rej.iter()
            .any(|r| r.name == "Test.Bad" && r.reason.contains("subsignature 5")),
        "{rej:?}"
    );
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    z.start_file("a.exe", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut z, b"MZ a needle").unwrap();
    let data = Bytes::from(z.finish().unwrap().into_inner());
    let report = scan_bytes(
        &e,
        &data,
        "file",
        &Hints::default(),
        &Limits::default(),
        Duration::from_secs(30),
        false,
    );
    let rules: Vec<&str> = report
        .hits
        .iter()
        .map(|h| h.detection.rule.as_str())
        .collect();
    assert!(rules.contains(&"by_ext"), "{rules:?}");
    assert!(rules.contains(&"fine"));
    assert!(rules.contains(&"Test.Ldb"));
    // The compiled-rules cache is used on the second load and gives the same report.
    let cache = dir.join("cache");
    let first = Engine::load(
        &[dir.join("ext.yar")],
        &[dir.join("sigs.ldb")],
        Some(&cache),
    )
    .unwrap();
    let second = Engine::load(
        &[dir.join("ext.yar")],
        &[dir.join("sigs.ldb")],
        Some(&cache),
    )
    .unwrap();
    assert!(!first.report().from_cache);
    assert!(second.report().from_cache);
    assert_eq!(first.report().yara_rules, second.report().yara_rules);
    assert_eq!(
        first.report().rejected.len(),
        second.report().rejected.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// All third-party YARA rule files compile; the loaded count is pinned so a regression shows.
#[test]
fn corpora_yara_rules_compile() {
    let Some(yara) = corpus("yara") else {
        return;
    };
    let e = Engine::load(
        &[yara.join("signature-base"), yara.join("reversinglabs")],
        &[],
        None,
    )
    .unwrap();
    let r = e.report();
    let files = r.loaded.len();
    eprintln!(
        "yara corpora: {files} files, {} rules loaded, {} rejected",
        r.yara_rules,
        r.rejected.len()
    );
    for rej in &r.rejected {
        eprintln!(
            "  rejected {}:{} {}: {}",
            rej.file, rej.line, rej.name, rej.reason
        );
    }
    // signature-base 8a89b3b + reversinglabs d5a78f3 (see corpora/README.md).
    assert_eq!(files, 1015);
    assert_eq!(r.yara_rules, 7087);
    assert!(r.rejected.is_empty(), "{:?}", r.rejected);
}

/// Scanners are cached per thread and rule set: two rule sets used in turn on one thread (a
/// reload while flows of the old set still scan) each find their own rule and not the other's.
#[test]
fn cached_scanners_follow_their_rule_set() {
    let dir = std::env::temp_dir().join(format!("sekisho-av-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.yar"),
        "rule only_a { strings: $a = \"alpha-needle\" condition: $a }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.yar"),
        "rule only_b { strings: $b = \"bravo-needle\" condition: $b }\n",
    )
    .unwrap();
    let a = Engine::load(&[dir.join("a.yar")], &[], None).unwrap();
    let b = Engine::load(&[dir.join("b.yar")], &[], None).unwrap();
    let data = Bytes::from_static(b"xx alpha-needle yy bravo-needle zz");
    let rules = |e: &Engine| -> Vec<String> {
        scan_bytes(
            e,
            &data,
            "file",
            &Hints::default(),
            &Limits::default(),
            Duration::from_secs(30),
            false,
        )
        .hits
        .into_iter()
        .map(|h| h.detection.rule)
        .collect()
    };
    for _ in 0..3 {
        assert_eq!(rules(&a), ["only_a"]);
        assert_eq!(rules(&b), ["only_b"]);
    }
    drop(a);
    assert_eq!(
        rules(&b),
        ["only_b"],
        "the other set's scanner outlives its engine"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
