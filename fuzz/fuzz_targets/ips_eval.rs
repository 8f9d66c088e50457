//! IPS detection over hostile HTTP: ET Open (from the corpora) and the bundled rules evaluated
//! on a fuzzed request and response (head, raw head, bodies with any encoding). Never panics.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sekisho_core::{Direction, RequestHead, ResponseHead};
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::{IpsConfig, Phase, RuleSet};

fn set() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let et = sekisho_fuzz::corpora().join("et-open");
        let bundled = sekisho_fuzz::repo().join("rules/ips");
        let mut rules = vec![bundled.join("*.rules").display().to_string()];
        if et.is_dir() {
            rules.push(et.join("*.rules").display().to_string());
        }
        let cfg: IpsConfig = toml::from_str(&format!(
            "rules = {rules:?}\nclassification = {:?}\n",
            bundled.join("classification.config").display().to_string()
        ))
        .expect("ips config");
        RuleSet::load(&cfg.load_options(None).expect("options")).expect("rules load")
    })
}

fn headers(block: &[u8]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for line in block.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        h.append(name, value);
    }
    h
}

fuzz_target!(|data: &[u8]| {
    let p = sekisho_fuzz::split_n(data, 0, 6);
    let line = String::from_utf8_lossy(p[0]);
    let (method, uri) = line.split_once(' ').unwrap_or(("GET", &line));
    let (Ok(method), Ok(uri)) = (method.parse::<http::Method>(), uri.parse::<http::Uri>()) else {
        return;
    };
    let set = set();
    let ep = Endpoints {
        client: "10.1.2.3".parse().expect("ip"),
        client_port: 40000,
        server: Some("203.0.113.10".parse().expect("ip")),
        server_port: Some(80),
    };
    let (mut vars, mut scratch, mut tx) = (FlowVars::default(), Scratch::default(), Tx::new());
    let run = |tx: &Tx, phase, vars: &mut FlowVars, scratch: &mut Scratch| {
        for h in set.eval(phase, tx, &ep, None, vars, scratch) {
            assert!(h.rule < set.len());
        }
    };
    tx.tls_hello(Some(&String::from_utf8_lossy(p[5])), &[]);
    run(&tx, Phase::TlsHello, &mut vars, &mut scratch);
    let mut head = RequestHead::new(method, uri, http::Version::HTTP_11, headers(p[1]), 80);
    head.raw = Some(Bytes::copy_from_slice(p[1]));
    tx.dns_query(&head.host);
    run(&tx, Phase::Dns, &mut vars, &mut scratch);
    tx.request_head(&head);
    run(&tx, Phase::ReqHead, &mut vars, &mut scratch);
    for chunk in p[2].chunks(97) {
        tx.body_chunk(Direction::Request, chunk, 1 << 16);
    }
    tx.finish_body(Direction::Request, 1 << 16);
    run(&tx, Phase::ReqBody, &mut vars, &mut scratch);
    let status = p[3].first().map_or(200, |b| 100 + u16::from(*b) * 2);
    tx.response_head(&ResponseHead {
        status: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK),
        version: http::Version::HTTP_11,
        headers: headers(p[3]),
        reason: None,
        raw: None,
        wire: None,
    });
    run(&tx, Phase::RespHead, &mut vars, &mut scratch);
    for chunk in p[4].chunks(251) {
        tx.body_chunk(Direction::Response, chunk, 1 << 16);
    }
    tx.finish_body(Direction::Response, 1 << 16);
    run(&tx, Phase::RespBody, &mut vars, &mut scratch);
});
