//! `dataset` and `datarep` (Suricata 8's datasets documentation): set / unset / isset /
//! isnotset, the file formats of each type, state kept across reloads and saved, datarep
//! comparisons, memcaps, and the declarations Suricata refuses.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sekisho_core::{Direction, RequestHead};
use sekisho_ips::datasets::Datasets;
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::vars::default_vars;
use sekisho_ips::{LoadOptions, Phase, RuleSet};

/// A fresh folder with `rules/` (rules and their `load` files) and `data/` (the data dir).
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sekisho-ds-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("rules")).unwrap();
    std::fs::create_dir_all(d.join("data")).unwrap();
    d
}

fn load_in(d: &Path, rules: &str, sets: &Arc<Datasets>) -> RuleSet {
    let f = d.join("rules/t.rules");
    std::fs::write(&f, rules).unwrap();
    RuleSet::load(&LoadOptions {
        rules: vec![f],
        vars: default_vars(),
        data_dir: Some(d.join("data")),
        datasets: Some(Arc::clone(sets)),
        ..LoadOptions::default()
    })
    .unwrap()
}

fn errors(set: &RuleSet) -> Vec<String> {
    set.report().errors.iter().map(|e| e.to_string()).collect()
}

/// SIDs raised by a GET with this URI and User-Agent.
fn fire(set: &RuleSet, uri: &str, ua: &str) -> Vec<u32> {
    let mut h = http::HeaderMap::new();
    h.insert("host", "h.test".parse().unwrap());
    h.insert("user-agent", ua.parse().unwrap());
    let head = RequestHead::new(
        "GET".parse().unwrap(),
        uri.parse().unwrap(),
        http::Version::HTTP_11,
        h,
        80,
    );
    let mut tx = Tx::new();
    tx.request_head(&head);
    tx.finish_body(Direction::Request, 1 << 20);
    let ep = Endpoints {
        client: "10.0.0.1".parse().unwrap(),
        client_port: 40000,
        server: Some("192.0.2.1".parse().unwrap()),
        server_port: Some(80),
    };
    let mut s = Scratch::default();
    let mut vars = FlowVars::default();
    let mut out = Vec::new();
    for p in [Phase::ReqHead, Phase::ReqBody] {
        out.extend(
            set.eval(p, &tx, &ep, None, &mut vars, &mut s)
                .into_iter()
                .map(|h| set.rule(h.rule).rule.sid),
        );
    }
    out.sort_unstable();
    out
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// "Detect unique User-Agents" from the documentation: `set` matches the first time a value
/// is seen; `isset` / `isnotset` read the same set; the set outlives a reload and is written
/// to its `state` file when the last rule set using it goes, then read back.
#[test]
fn set_isset_and_state_across_reloads() {
    let d = dir("state");
    let rules = "alert http any any -> any any (msg:\"new UA\"; http.user_agent; dataset:set,ua-seen, type string, state ua-seen.csv; sid:1;)\n\
                 alert http any any -> any any (msg:\"known UA\"; http.uri; content:\"/again\"; http.user_agent; dataset:isset,UA-Seen; sid:2;)\n\
                 alert http any any -> any any (msg:\"unknown UA\"; http.uri; content:\"/again\"; http.user_agent; dataset:isnotset,ua-seen; sid:3;)\n";
    let sets = Arc::new(Datasets::default());
    let set = load_in(&d, rules, &sets);
    assert!(errors(&set).is_empty(), "{:?}", errors(&set));
    assert_eq!(fire(&set, "/", "curl/8.0"), vec![1], "first sight");
    assert!(fire(&set, "/", "curl/8.0").is_empty(), "seen already");
    assert_eq!(fire(&set, "/again", "curl/8.0"), vec![2]);
    // Rules run in order: the `set` of sid 1 comes before sid 2 looks.
    assert_eq!(fire(&set, "/again", "wget/1.0"), vec![1, 2]);
    assert_eq!(fire(&set, "/again", "x"), vec![1, 2]);
    // A reload keeps the dynamic set (and writes nothing yet).
    let reloaded = load_in(&d, rules, &sets);
    drop(set);
    assert!(!d.join("data/ua-seen.csv").exists());
    assert_eq!(fire(&reloaded, "/again", "wget/1.0"), vec![2]);
    // The last user gone, the set is saved: base64 per line, as Suricata writes it.
    drop(reloaded);
    drop(sets);
    let saved = std::fs::read_to_string(d.join("data/ua-seen.csv")).unwrap();
    let mut want = [b64("curl/8.0"), b64("wget/1.0"), b64("x")];
    want.sort();
    assert_eq!(saved, format!("{}\n", want.join("\n")));
    // A new gateway reads the state back.
    let set = load_in(&d, rules, &Arc::new(Datasets::default()));
    assert_eq!(fire(&set, "/again", "curl/8.0"), vec![2]);
}

/// `unset` matches when it removes the value; `set` after it matches again.
#[test]
fn unset_removes() {
    let d = dir("unset");
    let set = load_in(
        &d,
        "alert http any any -> any any (http.uri; content:\"/toto\"; http.user_agent; dataset:set,ua-seen,type string,save after.csv; sid:1;)\n\
         alert http any any -> any any (http.uri; content:\"/tata\"; http.user_agent; dataset:unset,ua-seen,type string,save after.csv; sid:2;)\n\
         alert http any any -> any any (http.uri; content:\"/check\"; http.user_agent; dataset:isnotset,ua-seen; sid:3;)\n",
        &Arc::new(Datasets::default()),
    );
    assert!(errors(&set).is_empty(), "{:?}", errors(&set));
    assert_eq!(fire(&set, "/toto", "a"), vec![1]);
    assert_eq!(fire(&set, "/tata", "a"), vec![2]);
    assert!(
        fire(&set, "/tata", "a").is_empty(),
        "nothing left to remove"
    );
    assert_eq!(fire(&set, "/toto", "a"), vec![1]);
    assert_eq!(fire(&set, "/toto", "b"), vec![1]);
    assert!(fire(&set, "/check", "b").is_empty());
    assert_eq!(fire(&set, "/tata", "b"), vec![2]);
    drop(set);
    let saved = std::fs::read_to_string(d.join("data/after.csv")).unwrap();
    assert_eq!(saved, format!("{}\n", b64("a")));
}

/// `load` reads beside the rule file: strings in base64, digests in hex (matched after
/// `to_md5` / `to_sha256`, which leave raw digests; a digest line that does not decode is
/// skipped, as Suricata does); a string that is not base64 fails its rule with file:line.
#[test]
fn load_files_by_type() {
    use md5::Digest as _;
    let d = dir("load");
    std::fs::write(
        d.join("rules/ua.lst"),
        format!("{}\n\n{}\n", b64("EvilBot/1.0"), b64("x")),
    )
    .unwrap();
    let md5 = hex::encode(md5::Md5::digest(b"/malware.exe"));
    std::fs::write(
        d.join("rules/uri-md5.lst"),
        format!("zz-not-hex\n{}\n", md5.to_uppercase()),
    )
    .unwrap();
    std::fs::write(
        d.join("rules/bad.lst"),
        format!("{}\nnot base64!\n", b64("a")),
    )
    .unwrap();
    let sha = hex::encode(sha2::Sha256::digest(b"h.test"));
    std::fs::write(d.join("rules/hosts.lst"), format!("{sha}\n")).unwrap();
    std::fs::write(
        d.join("rules/v4.lst"),
        "192.0.2.1\n::ffff:10.0.0.1\n2001:db8::1\n",
    )
    .unwrap();
    let set = load_in(
        &d,
        "alert http any any -> any any (http.user_agent; dataset:isset,bad-ua,type string,load ua.lst; sid:1;)\n\
         alert http any any -> any any (http.uri; to_md5; dataset:isset,bad-uri,type md5,load uri-md5.lst; sid:2;)\n\
         alert http any any -> any any (http.host; to_sha256; dataset:isset,bad-host,type sha256,load hosts.lst; sid:3;)\n\
         alert http any any -> any any (http.uri; dataset:isset,bad-uri-md5-raw,type md5,load uri-md5.lst; sid:4;)\n\
         alert http any any -> any any (http.uri; dataset:isset,addrs,type ip,load v4.lst; sid:5;)\n\
         alert http any any -> any any (http.uri; dataset:isset,broken,type string,load bad.lst; sid:6;)\n",
        &Arc::new(Datasets::default()),
    );
    let errs = errors(&set);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("t.rules:6:") && errs[0].contains("bad.lst:2"),
        "{errs:?}"
    );
    assert_eq!(fire(&set, "/", "EvilBot/1.0"), vec![1, 3]);
    assert_eq!(fire(&set, "/malware.exe", "curl"), vec![2, 3]);
    assert_eq!(
        fire(&set, "/", "EvilBot/1.0x"),
        vec![3],
        "whole buffer only"
    );
}

/// `datarep`: the value is in the set and its reputation compares.
#[test]
fn datarep_compares_reputation() {
    let d = dir("rep");
    std::fs::write(
        d.join("rules/ua.rep"),
        format!("{},250\n{},100\n", b64("bad"), b64("meh")),
    )
    .unwrap();
    let set = load_in(
        &d,
        "alert http any any -> any any (http.user_agent; datarep:ua-rep, >, 200, load ua.rep, type string; sid:1;)\n\
         alert http any any -> any any (http.user_agent; datarep:ua-rep, <, 200; sid:2;)\n\
         alert http any any -> any any (http.user_agent; datarep:ua-rep, ==, 100; sid:3;)\n",
        &Arc::new(Datasets::default()),
    );
    assert!(errors(&set).is_empty(), "{:?}", errors(&set));
    assert_eq!(fire(&set, "/", "bad"), vec![1]);
    assert_eq!(fire(&set, "/", "meh"), vec![2, 3]);
    assert!(fire(&set, "/", "good").is_empty());
}

/// A set holds at most its memcap; adds past it fail (no match) and are counted.
#[test]
fn memcap_bounds_a_set() {
    let d = dir("memcap");
    let set = load_in(
        &d,
        "alert http any any -> any any (http.user_agent; dataset:set,small,type string,memcap 120; sid:1;)\n",
        &Arc::new(Datasets::default()),
    );
    assert_eq!(fire(&set, "/", "one"), vec![1]);
    assert_eq!(fire(&set, "/", "two"), vec![1]);
    assert!(fire(&set, "/", "three").is_empty(), "past the memcap");
    assert_eq!(set.stats.dataset_full.load(Ordering::Relaxed), 1);
}

/// What Suricata refuses is a rule error naming the file and line; the other rules load.
#[test]
fn malformed_declarations_are_errors() {
    let d = dir("bad");
    std::fs::write(d.join("rules/a.lst"), format!("{}\n", b64("a"))).unwrap();
    let bad = [
        ("dataset:isset,undefined-set", "not defined"),
        (
            "dataset:isset,s1,type string,load missing.lst",
            "missing.lst",
        ),
        (
            "dataset:set,s2,type string,state s.csv,load a.lst",
            "can not be mixed",
        ),
        ("dataset:set,s3,type string,save /tmp/x.csv", "absolute"),
        ("dataset:set,s4,type string,save ../x.csv", "traversal"),
        ("dataset:set,s5,type text", "bad type"),
        ("dataset:add,s6,type string", "not supported"),
        ("dataset:isset,s7 x,type string", "set name"),
        (
            "dataset:isset,s8,type string,load a.lst,format json,context_key k,value_key v",
            "JSON",
        ),
        ("datarep:r1, >=, 5, type string", "operator"),
        ("datarep:r2, >, 70000, type string", "65535"),
        ("datarep:r3, >, 5, load a.lst", "type must be set"),
    ];
    let mut rules = String::new();
    for (i, (opts, _)) in bad.iter().enumerate() {
        rules += &format!(
            "alert http any any -> any any (http.uri; {opts}; sid:{};)\n",
            i + 1
        );
    }
    rules += "alert http any any -> any any (dataset:isset,s9,type string; sid:100;)\n";
    rules += "alert http any any -> any any (http.uri; dataset:isset,typed,type md5; sid:101;)\n";
    rules +=
        "alert http any any -> any any (http.uri; dataset:isset,Typed,type string; sid:102;)\n";
    rules += "alert http any any -> any any (http.uri; dataset:isset,fine,type string,load a.lst; sid:200;)\n";
    let set = load_in(&d, &rules, &Arc::new(Datasets::default()));
    let errs = errors(&set);
    for (i, (opts, want)) in bad.iter().enumerate() {
        let line = format!("t.rules:{}:", i + 1);
        let e = errs.iter().find(|e| e.contains(&line));
        assert!(
            e.is_some_and(|e| e.contains(want)),
            "{opts}: want {want:?} at {line}, got {e:?}"
        );
    }
    assert!(
        errs.iter()
            .any(|e| e.contains(":13:") && e.contains("sticky")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains(":15:") && e.contains("already exists")),
        "{errs:?}"
    );
    assert_eq!(set.report().loaded, 2, "{errs:?}");
    assert_eq!(fire(&set, "/", "x").len(), 0);
}

/// A set loaded with `load` only is read again on reload.
#[test]
fn static_sets_are_read_again_on_reload() {
    let d = dir("static");
    std::fs::write(d.join("rules/p.lst"), format!("{}\n", b64("/a"))).unwrap();
    let rules = "alert http any any -> any any (http.uri; dataset:isset,paths,type string,load p.lst; sid:1;)\n";
    let sets = Arc::new(Datasets::default());
    let set = load_in(&d, rules, &sets);
    assert_eq!(fire(&set, "/a", "x"), vec![1]);
    assert!(fire(&set, "/b", "x").is_empty());
    std::fs::write(
        d.join("rules/p.lst"),
        format!("{}\n{}\n", b64("/a"), b64("/b")),
    )
    .unwrap();
    let set = load_in(&d, rules, &sets);
    assert_eq!(fire(&set, "/b", "x"), vec![1]);
}

/// `ip.src` / `ip.dst` (raw addresses of the inspected direction) looked up in address sets,
/// as Suricata's datasets-09 test does: an `ip` set holds IPv4 addresses too.
#[test]
fn address_sets_on_ip_buffers() {
    let d = dir("addr");
    std::fs::write(d.join("rules/clients.lst"), "10.0.0.1\n").unwrap();
    std::fs::write(
        d.join("rules/servers.lst"),
        "::ffff:192.0.2.1\n2001:db8::1\n",
    )
    .unwrap();
    let set = load_in(
        &d,
        "alert http any any -> any any (flow:to_server; ip.src; dataset:isset,clients,type ipv4,load clients.lst; sid:1;)\n\
         alert http any any -> any any (flow:to_server; ip.dst; dataset:isset,servers,type ip,load servers.lst; sid:2;)\n\
         alert http any any -> any any (flow:to_server; ip.dst; dataset:isset,clients; sid:3;)\n\
         alert http any any -> any any (flow:to_server; ip.src; content:\"|0a 00 00 01|\"; bsize:4; sid:4;)\n",
        &Arc::new(Datasets::default()),
    );
    assert!(errors(&set).is_empty(), "{:?}", errors(&set));
    assert_eq!(fire(&set, "/", "x"), vec![1, 2, 4]);
}
