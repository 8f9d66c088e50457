//! OWASP CRS v4, unmodified (../shared/corpora/crs, or `SEKISHO_CORPORA`; skipped, saying so,
//! when absent): every rule file and the setup example parse with no error.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use sekisho_waf::operators::Simple;
use sekisho_waf::{parse_file, DirectiveKind};

#[path = "../../../tests/common/public_corpora.rs"]
mod public_corpora;
use public_corpora::corpus;

#[path = "../../../benches/common/waf_crs.rs"]
mod waf_crs;

#[test]
fn every_crs_file_parses_unmodified() {
    let Some(dir) = corpus("crs") else {
        return;
    };
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

#[test]
fn crs_compiles_into_an_engine_and_scores_an_attack() {
    use sekisho_waf::engine::{RequestHead, Transaction, Waf};
    let Some(crs) = corpus("crs") else {
        return;
    };
    let t = std::time::Instant::now();
    let waf = Waf::load(&waf_crs::crs_files(&crs)).unwrap_or_else(|errs| {
        let list: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        panic!("{} errors:\n{}", list.len(), list.join("\n"))
    });
    let s = waf.summary();
    println!(
        "CRS engine: {} rules (+{} chained), {} markers, compiled in {:?}",
        s.rules,
        s.chained,
        s.markers,
        t.elapsed()
    );
    assert!(s.rules > 600, "{s:?}");
    // crs-setup's settings and 901's defaults run once at load; at paranoia level 1 the
    // gates of levels 2 to 4 in each rule file are decided there too.
    println!("prelude {} rules, {} folded", s.prelude, s.folded);
    assert!(s.prelude >= 20, "{s:?}");
    assert!(s.folded >= 40, "{s:?}");
    let waf = std::sync::Arc::new(waf);
    let head = |uri: &str| RequestHead {
        method: "GET".into(),
        uri: uri.as_bytes().to_vec(),
        protocol: "HTTP/1.1".into(),
        headers: vec![
            (b"Host".to_vec(), b"localhost".to_vec()),
            (
                b"User-Agent".to_vec(),
                b"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".to_vec(),
            ),
            (b"Accept".to_vec(), b"text/html".to_vec()),
        ],
        remote_addr: "127.0.0.1".into(),
        ..Default::default()
    };
    let run = |uri: &str| {
        let mut tx = Transaction::new(std::sync::Arc::clone(&waf), &head(uri));
        tx.request_headers();
        tx.request_body(b"", 0);
        tx.logging();
        tx
    };
    let benign = run("/index.html?page=2&sort=name");
    let fired: Vec<u64> = benign.matched_rules().iter().map(|m| m.id).collect();
    assert!(benign.intervention().is_none(), "benign blocked: {fired:?}");
    let attack = run("/?file=../../../../etc/passwd");
    let fired: Vec<u64> = attack.matched_rules().iter().map(|m| m.id).collect();
    println!("path traversal fired {fired:?}");
    assert!(
        fired.contains(&930100) || fired.contains(&930110),
        "{fired:?}"
    );
    assert_eq!(attack.intervention().map(|i| i.rule_id), Some(949110));
}

#[test]
fn hostile_bodies_get_bounded_work_and_a_verdict() {
    use sekisho_waf::engine::{RequestHead, Transaction, Waf};
    let Some(crs) = corpus("crs") else {
        return;
    };
    let waf = std::sync::Arc::new(Waf::load(&waf_crs::crs_files(&crs)).unwrap());
    let post = |ct: &str| RequestHead {
        method: "POST".into(),
        uri: b"/submit".to_vec(),
        protocol: "HTTP/1.1".into(),
        headers: vec![
            (b"Host".to_vec(), b"portal.example.jp".to_vec()),
            (b"User-Agent".to_vec(), b"Mozilla/5.0".to_vec()),
            (b"Accept".to_vec(), b"*/*".to_vec()),
            (b"Content-Type".to_vec(), ct.as_bytes().to_vec()),
        ],
        remote_addr: "10.0.0.1".into(),
        ..Default::default()
    };
    let run = |ct: &str, body: &[u8]| {
        let mut tx = Transaction::new(std::sync::Arc::clone(&waf), &post(ct));
        tx.request_headers();
        tx.request_body(body, body.len());
        tx
    };
    // 10,000 arguments: SecArgumentsLimit (1000) keeps the work bounded; CRS's argument count
    // rule (920380, max_num_args) is not enabled by default, the body error flag is set.
    let many: Vec<String> = (0..10_000).map(|i| format!("a{i}=x")).collect();
    let tx = run(
        "application/x-www-form-urlencoded",
        many.join("&").as_bytes(),
    );
    assert!(tx.evaluations() < 200_000, "{}", tx.evaluations());
    // A 1 MiB value and JSON nested 10,000 deep: a verdict, work linear in the input.
    let big = format!("q={}", "A".repeat(1 << 20));
    let tx = run("application/x-www-form-urlencoded", big.as_bytes());
    assert!(tx.evaluations() < 10_000, "{}", tx.evaluations());
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let tx = run("application/json", deep.as_bytes());
    let d = tx
        .decision()
        .expect("a body the processor cannot read is refused");
    assert_eq!((d.rule_id, d.status), (200002, 400), "{}", d.msg);
    // An XML entity bomb: refused by the parser with bounded expansion.
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\">]><l>&g;</l>";
    let tx = run("text/xml", bomb.as_bytes());
    assert_eq!(
        tx.decision().map(|d| d.rule_id),
        Some(200002),
        "entity expansion over budget"
    );
    // Broken multipart boundaries: the strict error CRS blocks on (920120/922 family).
    let tx = run(
        "multipart/form-data; boundary=xyz",
        b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyzzy\r\n",
    );
    let fired: Vec<u64> = tx.matched_rules().iter().map(|m| m.id).collect();
    let d = tx.decision().expect("broken multipart is refused");
    assert!(matches!(d.rule_id, 200002 | 200003), "{fired:?}");
}
