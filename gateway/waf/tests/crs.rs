//! OWASP CRS v4, unmodified (../shared/corpora/crs, or `SEKISHO_CORPORA`): every rule file
//! and the setup example parse with no error.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sekisho_waf::operators::Simple;
use sekisho_waf::{parse_file, DirectiveKind};

fn crs() -> PathBuf {
    std::env::var_os("SEKISHO_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora")
        })
        .join("crs")
}

#[test]
fn every_crs_file_parses_unmodified() {
    let dir = crs();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("rules"))
        .unwrap_or_else(|e| panic!("{}: {e} (set SEKISHO_CORPORA)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".conf") || n.ends_with(".conf.example")
        })
        .collect();
    files.push(dir.join("crs-setup.conf.example"));
    files.sort();
    let (mut rules, mut chained, mut markers) = (0, 0, 0);
    let mut ids = std::collections::HashSet::new();
    for f in &files {
        let d = parse_file(f).unwrap_or_else(|e| panic!("{e}"));
        for x in d {
            match x.kind {
                DirectiveKind::Rule(r) => {
                    rules += 1;
                    let mut c = Some(&r);
                    while let Some(n) = c {
                        // Operators with parameters compiled at load (byte ranges, IP lists).
                        Simple::compile(&n.operator)
                            .unwrap_or_else(|e| panic!("{}:{}: {e}", f.display(), n.line));
                        chained += usize::from(!std::ptr::eq(n, &r));
                        c = n.chained.as_deref();
                    }
                    assert!(
                        ids.insert(r.id().unwrap()),
                        "duplicate id in {}",
                        f.display()
                    );
                }
                DirectiveKind::Action(a) => {
                    let id = a
                        .iter()
                        .find(|a| a.name == "id")
                        .and_then(|a| a.value.clone());
                    assert!(id.is_some(), "SecAction without id in {}", f.display());
                }
                DirectiveKind::Marker(_) => markers += 1,
                _ => {}
            }
        }
    }
    println!(
        "CRS: {} files, {rules} rules (+{chained} chained), {markers} markers, 0 errors",
        files.len()
    );
    assert!(rules > 600, "{rules}");
    assert!(markers >= 30, "{markers}");
}
