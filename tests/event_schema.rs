//! Event fields keep one JSON type each (issue 25): the index mapping in
//! `deploy/opensearch/sekisho-template.json` takes a sample of every kind of event one gateway
//! makes with every stage on (host policy, URL filter, IPS, WAF, AV, a refused request head, a
//! failed reload) and its flow lines; `alert.signature_id` is a number for every engine. (Every
//! other end-to-end test's events are checked too, when its gateway is dropped.) The checker
//! itself refuses what an index would.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn the_checker_refuses_what_an_index_would() {
    let m = schema::mapping();
    let good = json!({
        "@timestamp": "2026-12-06T01:02:03.456Z",
        "event": {"id": "x", "severity": 1},
        "source": {"ip": "::1", "port": 1},
        "alert": {"signature_id": 4294967297u64, "metadata": ["a b", "c d"]},
        "tls": {"sni": "a", "decrypted": true, "mode": "decrypted"}
    });
    assert!(
        schema::refusals(&m, &good).is_empty(),
        "{:?}",
        schema::refusals(&m, &good)
    );
    for (bad, why) in [
        (
            json!({"alert": {"signature_id": "2049400"}}),
            "long is mapped",
        ),
        (json!({"tls": "decrypted"}), "an object is mapped"),
        (json!({"source": {"ip": "masked:00ff"}}), "ip is mapped"),
        (json!({"rule": {"id": 7}}), "keyword is mapped"),
        (json!({"@timestamp": ""}), "date is mapped"),
        (json!({"extra": 1}), "not in the mapping"),
        (json!({"waf": {"enforced": "yes"}}), "boolean is mapped"),
    ] {
        let r = schema::refusals(&m, &bad);
        assert!(r.iter().any(|l| l.contains(why)), "{bad}: {r:?}");
    }
}

/// Configuration with every stage on, rules in `dir`.
fn all_stages(dir: &std::path::Path) -> String {
    let rules = dir.join("local.rules");
    std::fs::write(
        &rules,
        "alert http any any -> any any (msg:\"schema probe\"; http.uri; content:\"/ips-probe\"; sid:9900001; rev:2;)\n",
    )
    .unwrap();
    let waf = dir.join("waf.conf");
    std::fs::write(
        &waf,
        "SecRuleEngine On\nSecRule ARGS:probe \"@streq attack\" \"id:990001,phase:2,deny,status:403,msg:'schema probe'\"\n",
    )
    .unwrap();
    let repo = repo();
    format!(
        "[policy]\ndeny_hosts = [\"denied.test\"]\n\n\
         [urlfilter]\ncategory_dirs = [\"{cats}\"]\n[[urlfilter.policy]]\nname = \"default\"\ndefault = \"allow\"\nblock = [\"malware\"]\n\n\
         [ips]\nrules = [\"{rules}\"]\n\n\
         [waf]\nrules = [\"{waf}\"]\n\n\
         [av]\nclamav = [\"{clamav}\"]\ncache_dir = \"\"\n",
        cats = repo.join("rules/url/categories").display(),
        rules = rules.display(),
        waf = waf.display(),
        clamav = repo.join("rules/clamav").display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_of_every_event_kind_fits_the_mapping() {
    let origin = Origin::start(None).await;
    let dir = TempDir::new("schema-rules");
    let gw = Gateway::start("schema", "", &all_stages(dir.path()));
    let px = gw.proxy_url();
    let o = format!("http://127.0.0.1:{}", origin.port);
    let get = |url: String| {
        let px = px.clone();
        async move {
            curl(&[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-x",
                &px,
                &url,
            ])
            .await
        }
    };
    assert_eq!(get("http://denied.test/".into()).await.stdout, "403");
    assert_eq!(
        get("http://malware.sekisho.test/".into()).await.stdout,
        "403"
    );
    get(format!("{o}/ips-probe")).await;
    assert_eq!(get(format!("{o}/hello?probe=attack")).await.stdout, "403");
    let sample = dir.path().join("eicar.txt");
    std::fs::write(&sample, eicar()).unwrap();
    let up = upload(&gw, &format!("{o}/count"), &sample).await;
    assert!(up.stdout.ends_with("\n403"), "{}", up.stdout);
    // A request head hyper refuses (a proxy-level finding), then a reload that fails (a fault).
    let mut s = tokio::net::TcpStream::connect(gw.proxy).await.unwrap();
    s.write_all(b"GET http://a/ HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
    let cfg = gw.dir.path().join("sekisho.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\nnot_a_key = 1\n")).unwrap();
    gw.reload();
    gw.wait_reload_failure();
    std::fs::write(&cfg, good).unwrap();
    let want: BTreeSet<&str> = [
        "policy",
        "urlfilter",
        "suricata",
        "waf",
        "clamav",
        "proxy",
        "gateway",
    ]
    .into_iter()
    .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events = gw.events();
        let engines: BTreeSet<String> = events
            .iter()
            .filter_map(|e| e["rule"]["engine"].as_str().map(String::from))
            .collect();
        if want.iter().all(|w| engines.contains(*w)) {
            break events;
        }
        assert!(Instant::now() < deadline, "engines seen: {engines:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let m = schema::mapping();
    for e in &events {
        let bad = schema::refusals(&m, e);
        assert!(bad.is_empty(), "{bad:?}\n{e}");
        let sid = e["alert"]["signature_id"].as_u64();
        assert!(sid.is_some(), "signature_id not a number: {e}");
        // Numeric rule ids are the SID; names are derived from 2^32 up, rule.id keeps them.
        let id = e["rule"]["id"].as_str().unwrap();
        match id.parse::<u32>() {
            Ok(n) => assert_eq!(sid, Some(u64::from(n)), "{e}"),
            Err(_) => assert!(sid >= Some(1 << 32), "{e}"),
        }
    }
    eprintln!(
        "{} events from {} engines fit the mapping",
        events.len(),
        want.len()
    );
    let ips = events
        .iter()
        .find(|e| e["rule"]["engine"] == "suricata")
        .unwrap();
    assert_eq!(ips["alert"]["signature_id"], 9900001);
    let flows = gw.read_lines("flows.jsonl");
    assert!(
        flows.iter().any(|f| f["tls"]["mode"] == "none"),
        "{flows:#?}"
    );
    for f in &flows {
        let bad = schema::refusals(&m, f);
        assert!(bad.is_empty(), "{bad:?}\n{f}");
    }
}
