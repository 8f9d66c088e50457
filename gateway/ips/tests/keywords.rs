//! One test per keyword family, on the examples of Suricata's rule documentation.

#![allow(clippy::unwrap_used)]

use sekisho_core::{Direction, RequestHead, ResponseHead};
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::{Phase, RuleSet};

mod common;
use common::load_with;

fn load(rules: &str) -> RuleSet {
    load_with(rules, None)
}

fn rule(opts: &str) -> String {
    format!("alert http any any -> any any ({opts} sid:1; rev:1;)\n")
}

fn ep() -> Endpoints {
    Endpoints {
        client: "10.0.0.1".parse().unwrap(),
        client_port: 40000,
        server: Some("192.0.2.1".parse().unwrap()),
        server_port: Some(80),
    }
}

struct Req<'a> {
    method: &'a str,
    uri: &'a str,
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

fn tx(r: &Req<'_>) -> Tx {
    let mut h = http::HeaderMap::new();
    for (k, v) in r.headers {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let head = RequestHead::new(
        r.method.parse().unwrap(),
        r.uri.parse().unwrap(),
        http::Version::HTTP_11,
        h,
        80,
    );
    let mut tx = Tx::new();
    tx.request_head(&head);
    tx.body_chunk(Direction::Request, r.body, 1 << 20);
    tx.finish_body(Direction::Request, 1 << 20);
    tx
}

/// SIDs raised by the request phases.
fn sids(set: &RuleSet, r: &Req<'_>, vars: &mut FlowVars) -> Vec<u32> {
    eval_phases(set, &tx(r), &[Phase::ReqHead, Phase::ReqBody], vars)
}

/// SIDs raised over `phases` of a transaction, in order of evaluation.
fn eval_phases(set: &RuleSet, t: &Tx, phases: &[Phase], vars: &mut FlowVars) -> Vec<u32> {
    let mut s = Scratch::default();
    let mut out = Vec::new();
    for &p in phases {
        out.extend(
            set.eval(p, t, &ep(), None, vars, &mut s)
                .into_iter()
                .map(|h| set.rule(h.rule).rule.sid),
        );
    }
    out
}

/// SIDs raised over every phase of `t` once a 200 response with `headers` and `body` is in,
/// sorted.
fn with_response(set: &RuleSet, mut t: Tx, headers: http::HeaderMap, body: &[u8]) -> Vec<u32> {
    t.response_head(&ResponseHead {
        status: http::StatusCode::OK,
        version: http::Version::HTTP_11,
        headers,
        reason: None,
        raw: None,
        wire: None,
    });
    t.body_chunk(Direction::Response, body, 1 << 20);
    t.finish_body(Direction::Response, 1 << 20);
    let phases = [
        Phase::ReqHead,
        Phase::ReqBody,
        Phase::RespHead,
        Phase::RespBody,
    ];
    let mut out = eval_phases(set, &t, &phases, &mut FlowVars::default());
    out.sort_unstable();
    out
}

fn uri_fires(opts: &str, uri: &str) -> bool {
    let set = load(&rule(opts));
    let r = Req {
        method: "GET",
        uri,
        headers: &[("host", "h.test")],
        body: b"",
    };
    !sids(&set, &r, &mut FlowVars::default()).is_empty()
}

/// Whether one rule (`opts`) fires on a `method` request for `/a` with `headers` and `body`.
fn fires_on(opts: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> bool {
    let set = load(&rule(opts));
    let r = Req {
        method,
        uri: "/a",
        headers,
        body,
    };
    !sids(&set, &r, &mut FlowVars::default()).is_empty()
}

/// Parses one rule line as if from `t.rules`, with the default variables and limits.
fn parse_line(line: &str) -> Result<sekisho_ips::rule::Rule, sekisho_ips::rule::RuleError> {
    sekisho_ips::rule::parse_rule(
        line,
        &sekisho_ips::vars::default_vars(),
        &sekisho_ips::matchers::PcreLimits::default(),
        "t.rules",
        1,
    )
}

/// Each line is a broken rule (a syntax error, not a skip).
fn assert_broken(lines: &[&str]) {
    for bad in lines {
        let r = parse_line(bad);
        assert!(
            matches!(r, Err(sekisho_ips::rule::RuleError::Syntax(_))),
            "{bad}: {r:?}"
        );
    }
}

#[test]
fn content_modifiers() {
    // depth/offset: `content:"abc"; offset:1; depth:4;` looks in bytes 1..5.
    assert!(uri_fires(
        "http.uri; content:\"abc\"; offset:1; depth:4;",
        "/abcx"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"abc\"; offset:2; depth:4;",
        "/abcx"
    ));
    // distance/within relative to the previous match.
    assert!(uri_fires(
        "http.uri; content:\"one\"; content:\"two\"; distance:1; within:4;",
        "/one-two"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"one\"; content:\"two\"; distance:1; within:3;",
        "/one--two"
    ));
    // The first `one` fails the relative check; the retry from the second one matches.
    assert!(uri_fires(
        "http.uri; content:\"one\"; content:\"two\"; distance:0; within:3;",
        "/one-xxxxx-onetwo"
    ));
    // Negative distance.
    assert!(uri_fires(
        "http.uri; content:\"two\"; content:\"one\"; distance:-7; within:3;",
        "/one-two"
    ));
    // nocase, negation.
    assert!(uri_fires("http.uri; content:\"ADMIN\"; nocase;", "/admin"));
    assert!(!uri_fires("http.uri; content:\"ADMIN\";", "/admin"));
    assert!(uri_fires(
        "http.uri; content:\"/a\"; content:!\"secret\";",
        "/a/public"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"/a\"; content:!\"secret\";",
        "/a/secret"
    ));
    // startswith / endswith / bsize.
    assert!(uri_fires(
        "http.uri; content:\"/index\"; startswith;",
        "/index.php"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"index\"; startswith;",
        "/index.php"
    ));
    assert!(uri_fires(
        "http.uri; content:\".php\"; endswith;",
        "/index.php"
    ));
    assert!(!uri_fires(
        "http.uri; content:\".php\"; endswith;",
        "/index.php?x"
    ));
    assert!(uri_fires("http.uri; content:\"/x\"; bsize:2;", "/x"));
    assert!(!uri_fires("http.uri; content:\"/x\"; bsize:>2;", "/x"));
    // isdataat.
    assert!(uri_fires(
        "http.uri; content:\"/q=\"; isdataat:3,relative;",
        "/q=1234"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"/q=\"; isdataat:!1,relative;",
        "/q=1"
    ));
    // urilen.
    assert!(uri_fires("urilen:5; http.uri; content:\"/\";", "/abcd"));
    assert!(uri_fires("urilen:3<>9; http.uri; content:\"/\";", "/abcd"));
    assert!(!uri_fires("urilen:>10; http.uri; content:\"/\";", "/abcd"));
    // http.uri is normalised (percent-decoded), http.uri.raw is not.
    assert!(uri_fires("http.uri; content:\"/a b\";", "/a%20b"));
    assert!(uri_fires("http.uri.raw; content:\"%20\";", "/a%20b"));
    // Legacy modifiers move the content to their buffer.
    assert!(uri_fires("content:\"/legacy\"; http_uri;", "/legacy"));
    assert!(uri_fires("uricontent:\"/legacy\";", "/legacy"));
    // fast_pattern with a chop still verifies the whole content.
    assert!(!uri_fires(
        "http.uri; content:\"abcdef\"; fast_pattern:1,3;",
        "/bcd"
    ));
    assert!(uri_fires(
        "http.uri; content:\"abcdef\"; fast_pattern:1,3;",
        "/abcdef"
    ));
}

#[test]
fn pcre_and_byte_keywords() {
    assert!(uri_fires(
        "http.uri; content:\"/u\"; pcre:\"/\\/u\\d{3}$/\";",
        "/u123"
    ));
    assert!(uri_fires(
        "http.uri; content:\"id=\"; pcre:\"/^\\d+/R\";",
        "/x?id=42"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"id=\"; pcre:\"/^\\d+/R\";",
        "/x?id=a42"
    ));
    assert!(uri_fires("pcre:\"/^\\/z/U\";", "/zz"));
    assert!(uri_fires(
        "http.uri; content:\"n=\"; byte_test:2,>,50,0,relative,string,dec;",
        "/?n=99"
    ));
    assert!(!uri_fires(
        "http.uri; content:\"n=\"; byte_test:2,>,50,0,relative,string,dec;",
        "/?n=10"
    ));
    assert!(uri_fires(
        "http.uri; content:\"/\"; byte_jump:1,0,relative,string,dec; content:\"X\"; within:1;",
        "/3abcX"
    ));
}

#[test]
fn header_buffers() {
    let set = load(&[
        rule("http.user_agent; content:\"sqlmap\"; startswith;").replace("sid:1", "sid:10"),
        rule("http.header_names; content:\"|0d 0a|Host|0d 0a|User-Agent|0d 0a|\"; content:!\"Accept\";").replace("sid:1", "sid:11"),
        rule("http.host; content:\"evil.test\"; bsize:9;").replace("sid:1", "sid:12"),
        rule("http.method; content:\"POST\"; http.request_body; content:\"cmd=\";").replace("sid:1", "sid:13"),
        rule("http.cookie; content:\"admin=1\";").replace("sid:1", "sid:14"),
        rule("http.header; content:\"X-Forwarded-For|3a 20|127.0.0.1|0d 0a|\";").replace("sid:1", "sid:15"),
        rule("http.request_line; content:\"GET /r HTTP/1.1\"; bsize:15;").replace("sid:1", "sid:16"),
    ]
    .concat());
    let mut v = FlowVars::default();
    let r = Req {
        method: "GET",
        uri: "/r",
        headers: &[("host", "Evil.Test:8080"), ("user-agent", "sqlmap/1.7")],
        body: b"",
    };
    let mut got = sids(&set, &r, &mut v);
    got.sort();
    assert_eq!(got, vec![10, 11, 12, 16]);
    let r = Req {
        method: "POST",
        uri: "/x",
        headers: &[
            ("host", "a.test"),
            ("cookie", "admin=1"),
            ("x-forwarded-for", "127.0.0.1"),
            ("accept", "*/*"),
        ],
        body: b"cmd=id",
    };
    let mut got = sids(&set, &r, &mut v);
    got.sort();
    assert_eq!(got, vec![13, 14, 15]);
}

#[test]
fn flowbits_across_phases_and_noalert() {
    let set = load(&[
        "alert http any any -> any any (msg:\"set\"; flow:to_server; http.uri; content:\"/login\"; flowbits:set,seen_login; flowbits:noalert; sid:20; rev:1;)\n",
        "alert http any any -> any any (msg:\"isset\"; flow:to_client; http.stat_code; content:\"500\"; flowbits:isset,seen_login; sid:21; rev:1;)\n",
        "alert http any any -> any any (msg:\"isnotset\"; flow:to_client; http.stat_code; content:\"500\"; flowbits:isnotset,seen_login; sid:22; rev:1;)\n",
    ]
    .concat());
    let run = |uri: &str| {
        let mut vars = FlowVars::default();
        let mut t = tx(&Req {
            method: "GET",
            uri,
            headers: &[("host", "h")],
            body: b"",
        });
        let mut s = Scratch::default();
        let mut out = Vec::new();
        for p in [Phase::ReqHead, Phase::ReqBody] {
            out.extend(
                set.eval(p, &t, &ep(), None, &mut vars, &mut s)
                    .into_iter()
                    .map(|h| set.rule(h.rule).rule.sid),
            );
        }
        t.response_head(&ResponseHead {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            version: http::Version::HTTP_11,
            headers: http::HeaderMap::new(),
            reason: None,
            raw: None,
            wire: None,
        });
        out.extend(
            set.eval(Phase::RespHead, &t, &ep(), None, &mut vars, &mut s)
                .into_iter()
                .map(|h| set.rule(h.rule).rule.sid),
        );
        out
    };
    assert_eq!(
        run("/login"),
        vec![21],
        "noalert setter is silent, isset fires"
    );
    assert_eq!(run("/other"), vec![22]);
}

#[test]
fn thresholds_detection_filter_and_suppress() {
    let set = load_with(
        &[
            rule("msg:\"limit\"; http.uri; content:\"/t\"; threshold:type limit, track by_src, count 2, seconds 60;").replace("sid:1", "sid:30"),
            rule("msg:\"df\"; http.uri; content:\"/t\"; detection_filter:track by_src, count 2, seconds 60;").replace("sid:1", "sid:31"),
            rule("msg:\"sup\"; http.uri; content:\"/t\";").replace("sid:1", "sid:32"),
            rule("msg:\"both\"; http.uri; content:\"/t\"; threshold:type both, track by_rule, count 3, seconds 60;").replace("sid:1", "sid:33"),
        ]
        .concat(),
        Some("suppress gen_id 1, sig_id 32, track by_src, ip 10.0.0.0/8\n"),
    );
    let r = Req {
        method: "GET",
        uri: "/t",
        headers: &[("host", "h")],
        body: b"",
    };
    let mut counts = std::collections::BTreeMap::<u32, u32>::new();
    for _ in 0..5 {
        for s in sids(&set, &r, &mut FlowVars::default()) {
            *counts.entry(s).or_default() += 1;
        }
    }
    assert_eq!(counts.get(&30), Some(&2), "limit: the first 2");
    assert_eq!(
        counts.get(&31),
        Some(&3),
        "detection_filter: after the first 2"
    );
    assert_eq!(counts.get(&32), None, "suppressed for 10/8");
    assert_eq!(counts.get(&33), Some(&1), "both: once, at the 3rd");
}

#[test]
fn dns_sni_dotprefix_and_tls_certificates() {
    let set = load(&[
        "alert dns any any -> any any (msg:\"dns\"; dns.query; dotprefix; content:\".evil.test\"; endswith; sid:40; rev:1;)\n",
        "alert tls any any -> any any (msg:\"sni\"; flow:to_server; tls.sni; content:\"bad.test\"; bsize:8; sid:41; rev:1;)\n",
        "alert tls any any -> any any (msg:\"subject\"; flow:to_client; tls.cert_subject; content:\"CN=cert.test\"; sid:42; rev:1;)\n",
        "alert tls any any -> any any (msg:\"certs\"; flow:to_client; tls.certs; content:\"cert.test\"; sid:43; rev:1;)\n",
        // Suricata 8's tls.subjectaltname: one instance per name (bsize holds for one of them).
        "alert tls any any -> any any (msg:\"san\"; flow:to_client; tls.subjectaltname; content:\"alt.cert.test\"; bsize:13; sid:44; rev:1;)\n",
        "alert tls any any -> any any (msg:\"san ip\"; tls.subjectaltname; content:\"[192, 0, 2, 7]\"; startswith; endswith; sid:45; rev:1;)\n",
        "alert tls any any -> any any (msg:\"san none\"; tls.subjectaltname; content:\"other.test\"; sid:46; rev:1;)\n",
        "alert tls any any -> any any (msg:\"fingerprint\"; tls.cert_fingerprint; bsize:59; pcre:\"/^([0-9a-f]{2}:){19}[0-9a-f]{2}$/\"; sid:47; rev:1;)\n",
        "alert tls any any -> any any (msg:\"one cert\"; tls.cert_chain_len:1; sid:48; rev:1;)\n",
        "alert tcp any any -> any any (msg:\"more certs\"; tls.cert_chain_len:>1; sid:49; rev:1;)\n",
        "alert tls any any -> any any (msg:\"legacy subject\"; tls.subject:\"CN=cert.test\"; tls.issuerdn:!\"CN=Other CA\"; sid:50; rev:1;)\n",
        "alert tls any any -> any any (msg:\"legacy subject not\"; tls.subject:!\"cert.test\"; sid:51; rev:1;)\n",
    ]
    .concat());
    let mut v = FlowVars::default();
    let mut s = Scratch::default();
    let fire = |tx: &Tx, p, v: &mut FlowVars, s: &mut Scratch| -> Vec<u32> {
        set.eval(p, tx, &ep(), None, v, s)
            .into_iter()
            .map(|h| set.rule(h.rule).rule.sid)
            .collect()
    };
    for (name, want) in [
        ("a.evil.test", vec![40]),
        ("evil.test", vec![40]),
        ("notevil.test", vec![]),
    ] {
        let mut t = Tx::new();
        t.dns_query(name);
        assert_eq!(fire(&t, Phase::Dns, &mut v, &mut s), want, "{name}");
        s = Scratch::default();
    }
    let mut t = Tx::new();
    t.tls_hello(Some("bad.test"), &[]);
    assert_eq!(fire(&t, Phase::TlsHello, &mut v, &mut s), vec![41]);
    let mut t = Tx::new();
    t.tls_hello(Some("x.bad.test"), &[]);
    assert!(fire(&t, Phase::TlsHello, &mut v, &mut Scratch::default()).is_empty());
    let key = rcgen::KeyPair::generate().unwrap();
    let names = vec![
        "cert.test".into(),
        "alt.cert.test".into(),
        "192.0.2.7".into(),
    ];
    let mut p = rcgen::CertificateParams::new(names).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "cert.test");
    let cert = p.self_signed(&key).unwrap();
    let mut t = Tx::new();
    t.certs(&[cert.der().to_vec()]);
    let mut got = fire(&t, Phase::TlsServer, &mut v, &mut Scratch::default());
    got.sort();
    assert_eq!(got, vec![42, 43, 44, 45, 47, 48, 50]);
    assert_broken(&[
        "alert http any any -> any any (tls.cert_chain_len:1; sid:1;)",
        "alert tls any any -> any any (tls.subject:CN=x; sid:1;)",
    ]);
}

/// The sids a transaction fires in one phase, sorted.
fn sorted_sids(set: &RuleSet, phase: Phase, t: &Tx) -> Vec<u32> {
    let mut got: Vec<u32> = set
        .eval(
            phase,
            t,
            &ep(),
            None,
            &mut FlowVars::default(),
            &mut Scratch::default(),
        )
        .into_iter()
        .map(|h| set.rule(h.rule).rule.sid)
        .collect();
    got.sort();
    got
}

/// `tls.random`, `tls.random_time` and `tls.random_bytes` on the ClientHello, with the
/// example rules of Suricata 8's documentation; the ServerHello's random is not exposed, so a
/// `to_client` rule is reported as not run rather than loaded and silent.
#[test]
fn tls_random_of_the_client_hello() {
    let set = load(&[
        "alert tls any any -> any any (msg:\"TLS random test\"; tls.random; content:\"|9b ce 7a 5e 57 5d 77 02 07 c2 9d be 24 01 cc f0 5d cd e1 d2 a5 86 9c 4a 3e ee 38 db 55 1a d9 bc|\"; sid:200074;)\n",
        "alert tls any any -> any any (msg:\"TLS random_time test\"; tls.random_time; content:\"|9b ce 7a 5e|\"; bsize:4; sid:200075;)\n",
        "alert tls any any -> any any (msg:\"TLS random_bytes test\"; tls.random_bytes; content:\"|57 5d 77 02 07 c2 9d be 24 01 cc f0 5d cd e1 d2 a5 86 9c 4a 3e ee 38 db 55 1a d9 bc|\"; bsize:28; sid:200076;)\n",
        "alert tls any any -> any any (msg:\"random_bytes is not the time\"; tls.random_bytes; content:\"|9b ce 7a 5e|\"; sid:200077;)\n",
    ]
    .concat());
    let hello = |random: &[u8; 32]| {
        let mut body = vec![0x03, 0x03];
        body.extend(random);
        body.extend([0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
        let mut hs = vec![0x01, 0x00, 0x00, body.len() as u8];
        hs.extend(body);
        let mut rec = vec![0x16, 0x03, 0x01, 0x00, hs.len() as u8];
        rec.extend(hs);
        rec
    };
    let fire = |raw: &[u8]| -> Vec<u32> {
        let mut t = Tx::new();
        t.tls_hello(Some("random.test"), raw);
        sorted_sids(&set, Phase::TlsHello, &t)
    };
    let doc: [u8; 32] = [
        0x9b, 0xce, 0x7a, 0x5e, 0x57, 0x5d, 0x77, 0x02, 0x07, 0xc2, 0x9d, 0xbe, 0x24, 0x01, 0xcc,
        0xf0, 0x5d, 0xcd, 0xe1, 0xd2, 0xa5, 0x86, 0x9c, 0x4a, 0x3e, 0xee, 0x38, 0xdb, 0x55, 0x1a,
        0xd9, 0xbc,
    ];
    assert_eq!(fire(&hello(&doc)), vec![200074, 200075, 200076]);
    let mut other = doc;
    other[31] ^= 1;
    assert_eq!(fire(&hello(&other)), vec![200075]);
    // A ClientHello cut inside its random has none.
    assert_eq!(fire(&hello(&doc)[..30]), Vec::<u32>::new());
    let r = parse_line(
        "alert tls any any -> any any (flow:to_client; tls.random; content:\"a\"; sid:1;)",
    );
    assert!(
        matches!(r, Err(sekisho_ips::rule::RuleError::Unsupported { .. })),
        "{r:?}"
    );
}

/// The validity keywords on the server's leaf certificate, as Suricata compares its dates
/// (`detect-tls-cert-validity.c`): equal, `<` at or before, `>` at or after, `A<>B` inclusive,
/// a year alone standing for its February 1st; expired and valid read notAfter against now.
#[test]
fn tls_certificate_validity_dates() {
    let set = load(&[
        "alert tls any any -> any any (msg:\"expired\"; tls_cert_expired; sid:60; rev:1;)\n",
        "alert tls any any -> any any (msg:\"valid\"; tls_cert_valid; sid:61; rev:1;)\n",
        "alert tls any any -> any any (msg:\"old\"; tls_cert_notafter:<2011-01-01; sid:62; rev:1;)\n",
        "alert tls any any -> any any (msg:\"exact\"; tls_cert_notbefore:2001-01-01; sid:63; rev:1;)\n",
        "alert tls any any -> any any (msg:\"range\"; tls_cert_notafter:2099-12-01<>2100-01-01T00:00:00; sid:64; rev:1;)\n",
        // A TCP rule with a validity keyword is a TLS rule, as Suricata makes it one.
        "alert tcp any any -> any any (msg:\"year\"; tls_cert_notbefore:>2019; sid:65; rev:1;)\n",
        "alert tls any any -> any any (msg:\"none\"; tls_cert_notbefore:>2020-01-02; sid:66; rev:1;)\n",
        "alert tls any any -> any any (msg:\"epoch\"; tls_cert_notbefore:978307200; tls_cert_expired; sid:67; rev:1;)\n",
    ]
    .concat());
    let cert = |from: (i32, u8, u8), to: (i32, u8, u8)| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["cert.test".into()]).unwrap();
        p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        p.self_signed(&key).unwrap().der().to_vec()
    };
    let fire = |der: Option<Vec<u8>>| -> Vec<u32> {
        let mut t = Tx::new();
        if let Some(der) = der {
            t.certs(&[der]);
        }
        sorted_sids(&set, Phase::TlsServer, &t)
    };
    assert_eq!(
        fire(Some(cert((2001, 1, 1), (2010, 6, 15)))),
        vec![60, 62, 63, 67]
    );
    assert_eq!(
        fire(Some(cert((2020, 1, 1), (2099, 12, 31)))),
        vec![61, 64, 65]
    );
    // No certificate (or one that does not parse): no date, no match.
    assert_eq!(fire(None), Vec::<u32>::new());
    assert_eq!(fire(Some(b"not a certificate".to_vec())), Vec::<u32>::new());
    assert_broken(&[
        "alert http any any -> any any (tls_cert_expired; sid:1;)",
        "alert tls any any -> any any (tls_cert_notafter:soon; sid:1;)",
        "alert tls any any -> any any (tls_cert_notafter; sid:1;)",
        "alert tls any any -> any any (tls_cert_valid:yes; sid:1;)",
        "alert tls any any -> any any (tls_cert_notafter:2020-05-01<>2019-05-01; sid:1;)",
        "alert tls any any -> any any (tls_cert_notbefore:<2019<>2020; sid:1;)",
    ]);
}

#[test]
fn addresses_ports_and_classification() {
    let set = load(&[
        "alert http 10.0.0.0/8 any -> !192.0.2.0/24 any (msg:\"to-ext\"; http.uri; content:\"/\"; sid:50; rev:1;)\n",
        "alert http [10.0.0.0/8] any -> 192.0.2.1 80 (msg:\"to-srv\"; classtype:web-application-attack; http.uri; content:\"/\"; sid:51; rev:1;)\n",
        "alert http any any -> any !80 (msg:\"not-80\"; http.uri; content:\"/\"; sid:52; rev:1;)\n",
    ]
    .concat());
    let r = Req {
        method: "GET",
        uri: "/",
        headers: &[("host", "h")],
        body: b"",
    };
    assert_eq!(sids(&set, &r, &mut FlowVars::default()), vec![51]);
    let i = (0..set.len())
        .find(|i| set.rule(*i).rule.sid == 51)
        .unwrap();
    assert_eq!(set.rule(i).priority, 1);
    assert_eq!(set.rule(i).category, "Web Application Attack");
}

#[test]
fn empty_bodies_run_only_rules_that_can_match_them() {
    // sid 1 needs body bytes; sids 2 and 3 negate a content of the body, which does not
    // match where there is no body at all (Suricata's `absent` documentation); sid 3 also
    // inspects pkt_data in the body phase.
    let set = load(concat!(
        "alert http any any -> any any (flow:to_server; http.method; content:\"POST\"; http.request_body; content:\"user=\"; sid:1; rev:1;)\n",
        "alert http any any -> any any (flow:to_server; http.method; content:\"POST\"; http.request_body; content:!\"token=\"; sid:2; rev:1;)\n",
        "alert http any any -> any any (flow:to_server; http.request_body; content:!\"zz\"; pkt_data; content:\"X-Probe|3a|\"; sid:3; rev:1;)\n",
    ));
    let req = |body: &'static [u8]| Req {
        method: "POST",
        uri: "/login",
        headers: &[("host", "h.test"), ("x-probe", "1")],
        body,
    };
    let mut got = sids(&set, &req(b""), &mut FlowVars::default());
    got.sort_unstable();
    assert!(got.is_empty(), "no body: {got:?}");
    let mut got = sids(&set, &req(b"user=a&token=b"), &mut FlowVars::default());
    got.sort_unstable();
    assert_eq!(got, vec![1, 3], "with a body");
}

/// Suricata's transformations, on examples modelled on its "Transformations" documentation:
/// the chain runs in order on the sticky buffer and the prefilter scans what it leaves.
#[test]
fn transforms_change_the_buffer_content_sees() {
    // to_lowercase: the documentation's case-insensitive URI check without nocase.
    assert!(uri_fires(
        "http.uri; to_lowercase; content:\"/admin/login\";",
        "/ADMIN/Login"
    ));
    assert!(!uri_fires(
        "http.uri; to_lowercase; content:\"/admin/login\";",
        "/admin/logout"
    ));
    // url_decode on the raw target, then a content in the decoded text.
    assert!(uri_fires(
        "http.uri.raw; url_decode; content:\"x=<b>\";",
        "/q?x=%3Cb%3E"
    ));
    assert!(!uri_fires(
        "http.uri.raw; content:\"x=<b>\";",
        "/q?x=%3Cb%3E"
    ));
    // pcrexform picks the argument, from_base64 decodes it ("cmd.exe").
    let b64 = "http.uri.raw; pcrexform:\"d=([^&]+)\"; from_base64; content:\"cmd.exe\";";
    assert!(uri_fires(b64, "/run?d=Y21kLmV4ZQ==&z=1"));
    assert!(!uri_fires(b64, "/run?d=bm90ZXBhZA==&z=1"));
    // Untransformed matches, then a transformed instance of the same buffer (as in ET's
    // `dns.query; content; pcre; dotprefix; content` rules).
    assert!(uri_fires(
        "http.uri.raw; content:\"/run\"; startswith; pcrexform:\"d=([^&]+)\"; from_base64; content:\"cmd\";",
        "/run?d=Y21kLmV4ZQ=="
    ));
    // to_sha256: the raw digest of "/hash-me", as a hex content.
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(b"/hash-me"))
    };
    let sha = format!("http.uri.raw; to_sha256; content:\"|{digest}|\";");
    assert!(uri_fires(&sha, "/hash-me"));
    assert!(!uri_fires(&sha, "/hash-me-not"));
}

#[test]
fn transforms_on_bodies_and_headers() {
    let fires =
        |opts: &str, headers: &[(&str, &str)], body: &[u8]| fires_on(opts, "POST", headers, body);
    let h = [
        ("host", "h.test"),
        ("content-type", "application/octet-stream"),
    ];
    // xor with the documentation's key.
    let key = [0x0d, 0x0a, 0xc8, 0xff];
    let hidden: Vec<u8> = b"password=hunter2"
        .iter()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    let xor = "http.request_body; xor:\"0d0ac8ff\"; content:\"password=\";";
    assert!(fires(xor, &h, &hidden));
    assert!(!fires(xor, &h, b"password=hunter2"));
    // strip_whitespace: the documentation's obfuscated JavaScript call.
    let strip = "http.request_body; strip_whitespace; content:\"window.navigate(\";";
    assert!(fires(strip, &h, b"window . navigate ( 'x' )"));
    assert!(!fires(strip, &h, b"window.open('x')"));
    // gunzip: a body sent gzip-compressed without Content-Encoding.
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"the secret-plan is here").unwrap();
        e.finish().unwrap()
    };
    let gunzip = "http.request_body; gunzip; content:\"secret-plan\";";
    assert!(fires(gunzip, &h, &gz));
    assert!(
        !fires(gunzip, &h, b"the secret-plan is here"),
        "not gzip: empty"
    );
    // compress_whitespace and header_lowercase on header buffers.
    let ua = [("host", "h.test"), ("user-agent", "Foo \t  Bar/1.0")];
    assert!(fires(
        "http.user_agent; compress_whitespace; content:\"Foo Bar\";",
        &ua,
        b""
    ));
    assert!(!fires("http.user_agent; content:\"Foo Bar\";", &ua, b""));
    let custom = [("host", "h.test"), ("X-Custom-Thing", "Yes")];
    assert!(fires(
        "http.header.raw; header_lowercase; content:\"x-custom-thing: Yes\";",
        &custom,
        b""
    ));
}

#[test]
fn malformed_transforms_are_errors_that_name_the_keyword() {
    for (opts, needle) in [
        (
            "http.uri; to_lowercase; content:\"/Admin\";",
            "incompatible with the to_lowercase transform",
        ),
        (
            "to_lowercase; http.uri; content:\"/a\";",
            "must directly follow a sticky buffer",
        ),
        (
            "http.uri; to_lowercase; content:\"/a\"; to_uppercase; content:\"/A\";",
            "must directly follow",
        ),
        ("http.uri; xor:\"0d0\"; content:\"a\";", "even number"),
        (
            "http.uri; pcrexform:\"(a)(b)\"; content:\"a\";",
            "exactly one substring capture",
        ),
        (
            "http.uri; from_base64:mode: strict; content:\"a\";",
            "unknown base64 keyword",
        ),
        ("http.uri; gunzip:max-size 0; content:\"a\";", "max-size 0"),
        (
            "http.uri; to_md5; http.host; content:\"a\";",
            "no match follows",
        ),
        (
            "http.uri; to_lowercase:x; content:\"a\";",
            "takes no option",
        ),
    ] {
        let line = rule(opts);
        let err = parse_line(&line).expect_err(opts);
        assert!(err.to_string().contains(needle), "{opts}: {err}");
    }
}

/// `absent` and `absent: or_else` (Suricata 8): a missing buffer matches; a present one fails
/// plain `absent` and goes on to the next keywords with `or_else`.
#[test]
fn absent_buffers() {
    let fires = |opts: &str, headers: &[(&str, &str)]| fires_on(opts, "GET", headers, b"");
    let no_ua = [("host", "h.test")];
    let curl_ua = [("host", "h.test"), ("user-agent", "curl/8")];
    let browser = [("host", "h.test"), ("user-agent", "Mozilla/5.0")];
    let absent = "http.uri; content:\"/a\"; http.user_agent; absent;";
    assert!(fires(absent, &no_ua));
    assert!(!fires(absent, &curl_ua));
    let or_else =
        "http.uri; content:\"/a\"; http.user_agent; absent: or_else; content:!\"Mozilla\";";
    assert!(fires(or_else, &no_ua), "missing");
    assert!(fires(or_else, &curl_ua), "present without Mozilla");
    assert!(!fires(or_else, &browser));
    // A rule whose only content follows `or_else` still runs (no fast pattern there).
    let alone = "http.user_agent; absent: or_else; content:\"curl\";";
    assert!(fires(alone, &no_ua));
    assert!(fires(alone, &curl_ua));
    assert!(!fires(alone, &browser));
}

/// `http.request_header`: one `Name: value` instance per header, each matched on its own.
#[test]
fn request_header_instances() {
    let fires = |opts: &str, headers: &[(&str, &str)]| fires_on(opts, "GET", headers, b"");
    let h = [("host", "h.test"), ("x-token", "abc"), ("accept", "*/*")];
    assert!(fires(
        "http.request_header; content:\"X-Token: abc\"; bsize:12;",
        &h
    ));
    // Within one instance only: the name of one header and the value of the next never pair.
    assert!(!fires(
        "http.request_header; content:\"X-Token:\"; content:\"*/*\"; distance:0;",
        &h
    ));
    assert!(fires(
        "http.request_header; content:\"Accept:\"; startswith; content:\"*/*\"; endswith;",
        &h
    ));
}

/// `requires`: read before the rest of the rule; an unmet requirement skips the rule (with
/// the reason), a malformed one is an error.
#[test]
fn requires_skips_rules_for_other_engines() {
    use sekisho_ips::rule::RuleError;
    let parse = |opts: &str| parse_line(&rule(opts));
    assert!(
        parse("requires: version >= 7.0.3, keyword http.uri; http.uri; content:\"/a\";").is_ok()
    );
    assert!(parse(
        "requires: keyword websocket.opcode, keyword ja4.hash; http.uri; content:\"/a\";"
    )
    .is_ok());
    let skipped = |r: Result<_, RuleError>| matches!(r, Err(RuleError::Unsupported { .. }));
    assert!(skipped(parse(
        "requires: version >= 9; http.uri; content:\"/a\";"
    )));
    assert!(skipped(parse(
        "requires: feature geoip; http.uri; content:\"/a\";"
    )));
    // A rule for a newer engine: skipped for its requirement, not broken by its keywords.
    let newer = parse("requires: keyword http.future_buffer; http.future_buffer; content:\"x\";");
    assert!(skipped(newer), "skipped");
    let e = parse("requires: version 9; http.uri; content:\"/a\";").unwrap_err();
    assert!(matches!(e, RuleError::Syntax(_)), "{e}");
}

/// `base64_decode` / `base64_data`, on the documentation's example: decode 8 bytes one byte
/// after the URI's "somestring", then match in the decoded text.
#[test]
fn base64_decode_and_base64_data() {
    let doc = "http.uri; content:\"somestring\"; base64_decode:bytes 8,offset 1,relative; base64_data; content:\"test\";";
    assert!(uri_fires(doc, "/somestringXdGVzdGluZw=="));
    assert!(!uri_fires(doc, "/somestringXbm9wZXRoZXJl"));
    assert!(!uri_fires(doc, "/somestringX"), "nothing to decode");
    // Not relative: from the buffer's start.
    assert!(uri_fires(
        "http.uri; content:\"/\"; base64_decode:offset 1; base64_data; content:\"cmd\"; startswith;",
        "/Y21kLmV4ZQ=="
    ));
    use sekisho_ips::rule::RuleError;
    let parse = |opts: &str| parse_line(&rule(opts));
    for (opts, needle) in [
        (
            "http.uri; base64_data; content:\"a\";",
            "without a preceding base64_decode",
        ),
        (
            "http.uri; content:\"a\"; base64_decode; base64_data; content:\"b\"; fast_pattern;",
            "fast_pattern cannot be used",
        ),
        (
            "http.uri; content:\"a\"; base64_decode:bytes 70000; base64_data; content:\"b\";",
            "bad value for bytes",
        ),
        (
            "http.uri; content:\"a\"; base64_decode:offset 1, bytes 2; base64_data; content:\"b\";",
            "invalid argument",
        ),
    ] {
        let e = parse(opts).expect_err(opts);
        assert!(e.to_string().contains(needle), "{opts}: {e}");
    }
    assert!(matches!(
        parse("http.uri; content:\"a\"; base64_decode;"),
        Err(RuleError::Unsupported { .. })
    ));
}

/// `flowint`: a counter kept per flow, changed only when its rule matched; a later rule on the
/// same flow compares it.
#[test]
fn flowint_counts_per_flow() {
    let set = load(
        "alert http any any -> any any (msg:\"count\"; http.uri; content:\"/login\"; flowint:logins,+,1; noalert; sid:1; rev:1;)\n\
         alert http any any -> any any (msg:\"too many\"; http.uri; content:\"/login\"; flowint:logins,isset; flowint:logins,>,2; sid:2; rev:1;)\n",
    );
    let login = Req {
        method: "POST",
        uri: "/login",
        headers: &[("host", "h.test")],
        body: b"",
    };
    let mut vars = FlowVars::default();
    assert!(sids(&set, &login, &mut vars).is_empty());
    assert!(sids(&set, &login, &mut vars).is_empty());
    assert_eq!(sids(&set, &login, &mut vars), vec![2], "third login");
    assert_eq!(vars.ints["logins"], 3);
    assert!(
        sids(&set, &login, &mut FlowVars::default()).is_empty(),
        "another flow"
    );
}

/// `xbits`: a bit set for the client host on one flow is seen on another flow of that host,
/// not of another host.
#[test]
fn xbits_cross_flows_by_host() {
    let set = load(
        "alert http any any -> any any (msg:\"mark\"; http.uri; content:\"/mark\"; xbits:set,marked,track ip_src,expire 60; noalert; sid:1; rev:1;)\n\
         alert http any any -> any any (msg:\"marked host\"; http.uri; content:\"/check\"; xbits:isset,marked,track ip_src; sid:2; rev:1;)\n",
    );
    let req = |uri: &'static str| Req {
        method: "GET",
        uri,
        headers: &[("host", "h.test")],
        body: b"",
    };
    let run = |r: &Req<'_>, client: &str| {
        let t = tx(r);
        let mut s = Scratch::default();
        let ep = Endpoints {
            client: client.parse().unwrap(),
            ..ep()
        };
        let mut out = Vec::new();
        for p in [Phase::ReqHead, Phase::ReqBody] {
            out.extend(
                set.eval(p, &t, &ep, None, &mut FlowVars::default(), &mut s)
                    .into_iter()
                    .map(|h| set.rule(h.rule).rule.sid),
            );
        }
        out
    };
    assert!(run(&req("/check"), "10.0.0.1").is_empty(), "not marked yet");
    assert!(run(&req("/mark"), "10.0.0.1").is_empty(), "noalert");
    assert_eq!(run(&req("/check"), "10.0.0.1"), vec![2]);
    assert!(run(&req("/check"), "10.0.0.2").is_empty(), "another host");
}

/// `=>` rules (Suricata 8 transactional bidirectional rules): refused as Suricata refuses
/// them when they are not about both directions.
#[test]
fn transactional_rules_need_both_directions() {
    let parse = |opts: &str| {
        parse_line(&format!(
            "alert http any any => any any ({opts} sid:1; rev:1;)"
        ))
    };
    let ok = parse("http.uri; content:\"/a\"; http.stat_code; content:\"404\";").unwrap();
    assert!(ok.txboth);
    for (opts, needle) in [
        ("http.uri; content:\"/a\"; http.method; content:\"GET\";", "should use both directions"),
        ("flow:to_server; http.uri; content:\"/a\"; http.stat_code; content:\"404\";", "cannot specify a flow direction"),
        ("http.uri; content:\"/a\"; http.header; content:\"x\"; http.stat_code; content:\"404\";", "http.header is ambiguous"),
    ] {
        let e = parse(opts).expect_err(opts);
        assert!(e.to_string().contains(needle), "{opts}: {e}");
    }
}

/// Suricata 8's direction argument: a `=>` rule names the side of a buffer that exists on
/// both (`http.content_type: to_server`, as the documentation's example), `filesize:
/// to_client, …` names the file's side; in a `->` rule the argument is the rule's direction.
/// Buffers that take no argument, or a word other than a direction, are errors.
#[test]
fn direction_arguments_pick_a_buffers_side() {
    let set = load(
        "alert http any any => any any (msg:\"json up, xml down\"; http.content_type: to_server; content:\"json\"; http.content_type: to_client; content:\"xml\"; sid:1; rev:1;)\n\
         alert http any any => any any (msg:\"both sides keep-alive\"; http.connection: to_client; content:\"eep\"; http.connection: to_server; content:\"eep\"; sid:2; rev:1;)\n\
         alert http any any => any any (msg:\"uri and response size\"; http.uri; content:\"/download\"; filesize: to_client, >10; sid:3; rev:1;)\n\
         alert http any any -> any any (msg:\"response type\"; http.content_type: to_client; content:\"xml\"; sid:4; rev:1;)\n",
    );
    assert_eq!(set.report().loaded, 4, "{:?}", set.report());
    let run = |req_type: &str, req_conn: &str, resp_type: &str, resp_conn: &str, body: &[u8]| {
        let headers = [("content-type", req_type), ("connection", req_conn)];
        let t = tx(&Req {
            method: "POST",
            uri: "/download",
            headers: &headers,
            body: b"{}",
        });
        let mut h = http::HeaderMap::new();
        h.insert("content-type", resp_type.parse().unwrap());
        h.insert("connection", resp_conn.parse().unwrap());
        with_response(&set, t, h, body)
    };
    let long = b"0123456789abcdef";
    assert_eq!(
        run("application/json", "close", "text/xml", "close", b""),
        vec![1, 4]
    );
    assert!(
        run("text/xml", "close", "application/json", "close", b"").is_empty(),
        "sides swapped"
    );
    assert_eq!(
        run("a/b", "keep-alive", "c/d", "close", b""),
        Vec::<u32>::new(),
        "one side only"
    );
    assert_eq!(run("a/b", "keep-alive", "c/d", "keep-alive", b""), vec![2]);
    // A download (a response file) of 16 bytes: over 10 on the client's side.
    let h = [("content-type", "a/b")];
    let t = tx(&Req {
        method: "GET",
        uri: "/download/f.bin",
        headers: &h,
        body: b"",
    });
    let mut rh = http::HeaderMap::new();
    rh.insert("content-type", "application/octet-stream".parse().unwrap());
    assert_eq!(with_response(&set, t, rh, long), vec![3]);

    let parse = |line: &str| parse_line(line);
    for (line, needle) in [
        ("alert http any any -> any any (http.uri: to_server; content:\"/a\"; sid:9;)", "unexpected option to http.uri"),
        ("alert http any any -> any any (http.content_type: sideways; content:\"a\"; sid:9;)", "only to_server or to_client"),
        ("alert http any any -> any any (flow:to_server; http.content_type: to_client; content:\"a\"; sid:9;)", "contradictory directions"),
        ("alert http any any => any any (http.connection; content:\"a\"; http.stat_code; content:\"200\"; sid:9;)", "http.connection is ambiguous"),
        ("alert http any any -> any any (http.accept: to_client; content:\"a\"; sid:9;)", "http.accept has no to_client side"),
    ] {
        let e = parse(line).expect_err(line);
        assert!(e.to_string().contains(needle), "{line}: {e}");
    }
}

/// `http.uri` is the target as libhtp normalises it (dot segments, `\`, `//`, `%2f`, `%u`);
/// `http.uri.raw` keeps it as sent.
#[test]
fn uri_normalisation_follows_libhtp() {
    let norm = "http.uri; content:\"/etc/passwd\"; startswith;";
    assert!(uri_fires(norm, "/a/..%2f..%2fetc%2fpasswd"));
    assert!(uri_fires(norm, "/static//..//..//etc/passwd"));
    assert!(uri_fires(norm, "/%u002e%u002e/etc/passwd"));
    assert!(
        uri_fires(norm, "/x/%uff0e%uff0e/etc/passwd"),
        "full-width dots"
    );
    assert!(!uri_fires(
        "http.uri.raw; content:\"/etc/passwd\"; startswith;",
        "/a/..%2f..%2fetc%2fpasswd"
    ));
    // The query is decoded once and not normalised.
    assert!(uri_fires("http.uri; content:\"?f=../x\";", "/p?f=..%2fx"));
}

/// `app-layer-event`: HTTP anomaly events as Suricata names them, from the head as sent;
/// response-side events are judged once the response head is in (a `to_server` rule too, as
/// Suricata's own test of `too_many_encoding_layers` expects); an unknown event name skips
/// the rule, as Suricata does.
#[test]
fn app_layer_events() {
    let set = load(
        "alert http any any -> any any (msg:\"auth\"; flow:to_server; app-layer-event:http.request_auth_unrecognized; sid:1; rev:1;)\n\
         alert http any any -> any any (msg:\"rep\"; app-layer-event:http1.request_header_repetition; sid:2; rev:1;)\n\
         alert http any any -> any any (msg:\"host\"; app-layer-event:http.missing_host_header; sid:3; rev:1;)\n\
         alert http any any -> any any (msg:\"layers\"; flow:to_server; app-layer-event:http.too_many_encoding_layers; sid:4; rev:1;)\n\
         alert http any any -> any any (msg:\"lws\"; app-layer-event:http.request_invalid_lws_after_name; http.uri; content:\"/x\"; sid:5; rev:1;)\n",
    );
    let run = |raw: &str, resp: Option<(&str, &str)>| {
        let req = httparse_head(raw);
        let mut t = Tx::new();
        t.request_head(&req);
        t.finish_body(Direction::Request, 1 << 20);
        let mut phases = vec![Phase::ReqHead, Phase::ReqBody];
        if let Some((name, value)) = resp {
            let mut h = http::HeaderMap::new();
            h.insert(
                http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
            t.response_head(&ResponseHead {
                status: http::StatusCode::OK,
                version: http::Version::HTTP_11,
                headers: h,
                reason: None,
                raw: None,
                wire: None,
            });
            phases.push(Phase::RespHead);
        }
        let mut out = eval_phases(&set, &t, &phases, &mut FlowVars::default());
        out.sort_unstable();
        out
    };
    let ok = "GET /a HTTP/1.1\r\nHost: h.test\r\n";
    assert!(run(&format!("{ok}\r\n"), None).is_empty());
    assert_eq!(
        run(&format!("{ok}Authorization: Turbo x\r\n\r\n"), None),
        vec![1]
    );
    assert!(run(&format!("{ok}Authorization: Bearer x\r\n\r\n"), None).is_empty());
    assert_eq!(run(&format!("{ok}X-A: 1\r\nx-a: 2\r\n\r\n"), None), vec![2]);
    assert_eq!(run("GET /a HTTP/1.1\r\n\r\n", None), vec![3]);
    assert!(
        run("GET /a HTTP/1.0\r\n\r\n", None).is_empty(),
        "1.0 needs no Host"
    );
    assert_eq!(
        run(
            &format!("{ok}\r\n"),
            Some((
                "content-encoding",
                "identity, identity, gzip, identity, gzip, gzip"
            ))
        ),
        vec![4]
    );
    assert!(run(&format!("{ok}\r\n"), Some(("content-encoding", "gzip"))).is_empty());
    assert_eq!(
        run("GET /x HTTP/1.1\r\nHost: h.test\r\nName : v\r\n\r\n", None),
        vec![5]
    );
    assert!(run("GET /y HTTP/1.1\r\nHost: h.test\r\nName : v\r\n\r\n", None).is_empty());
    // An unknown event: the rule is skipped, the file loads.
    let r =
        parse_line("alert http any any -> any any (app-layer-event:http.no_such_thing; sid:9;)");
    assert!(
        matches!(r, Err(sekisho_ips::rule::RuleError::Unsupported { .. })),
        "{r:?}"
    );
    assert!(matches!(
        parse_line("alert http any any -> any any (app-layer-event:nohttp; sid:9;)"),
        Err(sekisho_ips::rule::RuleError::Syntax(_))
    ));
}

/// A request head as the listener keeps it: parsed fields plus the raw bytes (headers the
/// parser refuses, such as `Name :`, are left out of the parsed map).
fn httparse_head(raw: &str) -> RequestHead {
    let mut lines = raw.split("\r\n");
    let mut first = lines.next().unwrap().split(' ');
    let (method, target, version) = (
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
    );
    let mut h = http::HeaderMap::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        if let Some((n, v)) = l.split_once(':') {
            if let Ok(n) = http::header::HeaderName::from_bytes(n.as_bytes()) {
                h.append(n, v.trim().parse().unwrap());
            }
        }
    }
    let v = if version == "HTTP/1.0" {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    };
    let mut head = RequestHead::new(method.parse().unwrap(), target.parse().unwrap(), v, h, 80);
    head.raw = Some(bytes::Bytes::copy_from_slice(raw.as_bytes()));
    head
}

/// `file.magic` / `filemagic` (the documentation's forms): libmagic's description of an
/// uploaded file; `filemagic` matches without case.
#[test]
fn file_magic_describes_files() {
    let pdf: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    let post = |opts: &str, body: &[u8]| {
        fires_on(
            &format!("flow:to_server; {opts}"),
            "POST",
            &[("content-type", "application/octet-stream")],
            body,
        )
    };
    assert!(post("file.magic; content:\"PDF document\";", pdf));
    assert!(!post(
        "file.magic; content:\"PDF document\";",
        b"just some text\n"
    ));
    assert!(post(
        "file.magic; content:\"ASCII text\"; startswith;",
        b"just some text\n"
    ));
    assert!(post("filemagic:\"pdf DOCUMENT\";", pdf));
    assert!(
        !post("file.magic; content:\"pdf document\";", pdf),
        "case matters"
    );
    // A GET has no upload: no file, no magic.
    assert!(!fires_on("file.magic; content:\"text\";", "GET", &[], b""));
}

/// A rule without a `flow` direction inspects every direction its buffers exist in, as
/// Suricata does: `file.data` and `http.header` of requests and of responses (and alerts once
/// per side); a rule with a direction, or with a buffer of one side, keeps to that side.
#[test]
fn directionless_rules_inspect_both_sides() {
    let set = load(
        "alert http any any -> any any (msg:\"body\"; file.data; content:\"secret\"; sid:1; rev:1;)\n\
         alert http any any -> any any (msg:\"hdr\"; http.header; content:\"X-Mark|3a| 1\"; sid:2; rev:1;)\n\
         alert http any any -> any any (msg:\"req only\"; flow:to_server; file.data; content:\"secret\"; sid:3; rev:1;)\n\
         alert http any any -> any any (msg:\"uri\"; http.uri; content:\"/a\"; http.header; content:\"X-Mark|3a| 1\"; sid:4; rev:1;)\n\
         alert http any any -> any any (msg:\"raw\"; content:\"uid=0\"; sid:5; rev:1;)\n",
    );
    let run = |req_body: &[u8], req_hdr: bool, resp_body: &[u8], resp_hdr: bool| {
        let headers: &[(&str, &str)] = if req_hdr { &[("x-mark", "1")] } else { &[] };
        let mut t = tx(&Req {
            method: "POST",
            uri: "/a",
            headers,
            body: req_body,
        });
        let mut h = http::HeaderMap::new();
        if resp_hdr {
            h.insert("x-mark", "1".parse().unwrap());
        }
        t.response_head(&ResponseHead {
            status: http::StatusCode::OK,
            version: http::Version::HTTP_11,
            headers: h,
            reason: None,
            raw: None,
            wire: None,
        });
        t.body_chunk(Direction::Response, resp_body, 1 << 20);
        t.finish_body(Direction::Response, 1 << 20);
        let mut s = Scratch::default();
        let mut vars = FlowVars::default();
        let mut out = Vec::new();
        for p in [
            Phase::ReqHead,
            Phase::ReqBody,
            Phase::RespHead,
            Phase::RespBody,
        ] {
            out.extend(
                set.eval(p, &t, &ep(), None, &mut vars, &mut s)
                    .into_iter()
                    .map(|h| set.rule(h.rule).rule.sid),
            );
        }
        out.sort_unstable();
        out
    };
    assert_eq!(run(b"a secret", false, b"", false), vec![1, 3]);
    assert_eq!(
        run(b"", false, b"the secret", false),
        vec![1],
        "the response side too"
    );
    assert_eq!(
        run(b"secret", false, b"secret", false),
        vec![1, 1, 3],
        "once per side"
    );
    assert_eq!(run(b"", false, b"", true), vec![2], "response header");
    assert_eq!(run(b"", true, b"", false), vec![2, 4]);
    assert_eq!(
        run(b"", false, b"uid=0(root) gid=0(root)", false),
        vec![5],
        "pkt_data of the response (testmyids)"
    );
    assert_eq!(
        run(b"id=uid=0", false, b"", false),
        vec![5],
        "and of the request"
    );
    assert_eq!(set.report().loaded, 5, "a rule on both sides counts once");
}

/// `tcp` and `ip` rules' payload keywords read each side's reassembled stream of the HTTP
/// the gateway carries (`alert ip … (content:"uid=0|28|root|29|";)`, the classic testmyids
/// rule, alerts on the response), with their ports and `flow` direction; a packet rule with no
/// payload keyword is not run.
#[test]
fn tcp_and_ip_rules_read_the_stream() {
    let set = load(
        "alert ip any any -> any any (msg:\"id check returned root\"; content:\"uid=0|28|root|29|\"; sid:1; rev:1;)\n\
         alert tcp any any -> any 80 (msg:\"to port 80\"; flow:to_server; content:\"AllWorkAndNoPlay\"; content:\"DullBoy\"; distance:1; within:7; sid:2; rev:1;)\n\
         alert tcp any any -> any 8080 (msg:\"to port 8080\"; flow:to_server; content:\"AllWork\"; sid:3; rev:1;)\n",
    );
    assert_eq!(set.report().loaded, 3, "{:?}", set.report());
    let run = |req_body: &[u8], resp_body: &[u8]| {
        let t = tx(&Req {
            method: "POST",
            uri: "/cgi-bin/id",
            headers: &[("host", "h.test")],
            body: req_body,
        });
        with_response(&set, t, http::HeaderMap::new(), resp_body)
    };
    assert_eq!(run(b"", b"uid=0(root) gid=0(root)\n"), vec![1]);
    assert_eq!(
        run(b"AllWorkAndNoPlay DullBoy", b"ok"),
        vec![2],
        "port 80 only"
    );
    assert!(
        run(b"AllWorkAndNoPlay  DullBoy", b"AllWork DullBoy").is_empty(),
        "within; to_server"
    );
    let e =
        parse_line("alert tcp any any -> any 22 (msg:\"syn\"; sid:9;)").expect_err("packet rule");
    assert!(e.to_string().contains("packet rule"), "{e}");
}

/// A `tcp` rule on the client's stream also reads a TLS connection's ClientHello records (the
/// first bytes Suricata's raw stream inspection sees), decrypted or spliced; a rule on the
/// server's stream, or an `http` rule, does not.
#[test]
fn tcp_rules_read_tls_client_hellos() {
    let set = load(
        "alert tcp any any -> any any (msg:\"hello\"; flow:to_server; content:\"|16 03|\"; depth:2; content:\"bad.test\"; sid:1; rev:1;)\n\
         alert tcp any any -> any any (msg:\"any side\"; content:\"bad.test\"; sid:2; rev:1;)\n\
         alert tcp any any -> any any (msg:\"server\"; flow:to_client; content:\"bad.test\"; sid:3; rev:1;)\n\
         alert http any any -> any any (msg:\"http\"; content:\"bad.test\"; sid:4; rev:1;)\n",
    );
    let fire = |raw: &[u8]| -> Vec<u32> {
        let mut t = Tx::new();
        t.tls_hello(Some("bad.test"), raw);
        let mut v = FlowVars::default();
        let mut s = Scratch::default();
        let mut sids: Vec<u32> = set
            .eval(Phase::TlsHello, &t, &ep(), None, &mut v, &mut s)
            .into_iter()
            .map(|h| set.rule(h.rule).rule.sid)
            .collect();
        sids.sort_unstable();
        sids
    };
    let hello = b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03server_name:bad.test";
    assert_eq!(fire(hello), vec![1, 2]);
    assert_eq!(
        fire(&hello[1..]),
        vec![2],
        "depth:2 wants the record header"
    );
    assert!(fire(b"").is_empty());
}

/// `byte_extract` and `byte_math` (the documentation's forms) and the keywords that take their
/// variables: `content` `distance` / `within`, `byte_test` value, `isdataat`, `byte_jump`.
#[test]
fn byte_extract_and_byte_math_variables() {
    let body = |opts: &str, b: &[u8]| {
        fires_on(
            &format!("http.request_body; {opts}"),
            "POST",
            &[("content-type", "application/octet-stream")],
            b,
        )
    };
    let len = "content:\"LEN\"; byte_extract:2,0,len,relative,string,dec; content:\"END\"; distance:len; within:3;";
    assert!(body(len, b"LEN05abcdeEND"));
    assert!(!body(len, b"LEN04abcdeEND"), "the length says where END is");
    let same = "byte_extract:1,0,v; byte_test:1,=,v,1;";
    assert!(body(same, b"\x07\x07"));
    assert!(!body(same, b"\x07\x08"));
    let plus = "byte_math:bytes 1, offset 0, oper +, rvalue 1, result r; byte_test:1,=,r,1;";
    assert!(body(plus, b"\x04\x05"));
    assert!(!body(plus, b"\x04\x04"));
    let shifted = "byte_extract:1,0,n; byte_math:bytes 1, offset 1, oper <<, rvalue n, result big; byte_test:2,=,big,2;";
    assert!(body(shifted, b"\x02\x03\x00\x0c"));
    let room = "content:\"A\"; byte_extract:1,0,n,relative; isdataat:n,relative;";
    assert!(body(room, b"A\x03xyz"));
    assert!(!body(room, b"A\x05xyz"));
    let jump = "byte_extract:1,0,skip; byte_jump:1,skip; content:\"Z\"; within:1;";
    assert!(body(jump, b"\x02a\x01.Z"));
    assert!(!body(jump, b"\x01\x01Z.Z."));
    // Malformed: errors that name the keyword; an unknown variable is not a number.
    for bad in [
        "byte_extract:2,0;",
        "byte_extract:9,0,x;",
        "byte_math:bytes 1, offset 0, oper %, rvalue 1, result x;",
        "byte_math:bytes 1, offset 0, oper +, rvalue nosuch, result x;",
        "content:\"a\"; distance:nosuch;",
    ] {
        let line = format!("alert http any any -> any any (http.request_body; {bad} sid:5;)");
        assert!(parse_line(&line).is_err(), "{bad}");
    }
}

/// Request bodies sent with `Content-Encoding: gzip` or `deflate` are inspected decoded, as
/// Suricata (request decompression on) inspects them.
#[test]
fn encoded_request_bodies_are_decoded() {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"the secret plan").unwrap();
    let gz = gz.finish().unwrap();
    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zl.write_all(b"the secret plan").unwrap();
    let zl = zl.finish().unwrap();
    let rule = "http.request_body; content:\"secret plan\";";
    let post = |ce: &str, body: &[u8]| {
        fires_on(
            rule,
            "POST",
            &[
                ("content-type", "application/octet-stream"),
                ("content-encoding", ce),
            ],
            body,
        )
    };
    assert!(post("gzip", &gz));
    assert!(post("deflate", &zl));
    assert!(!post("identity", &gz), "not decoded without a coding");
    assert!(fires_on(
        "file.data; content:\"secret plan\";",
        "POST",
        &[("content-encoding", "gzip")],
        &gz
    ));
}

/// A multipart upload: each part with a filename is a file, one `file.data` / `file.name`
/// instance each (the part's content, not the raw body, which `http.request_body` keeps).
#[test]
fn multipart_parts_are_files() {
    let body: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nfield\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"one.txt\"\r\n\r\nfirst file\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"g\"; filename=\"two.exe\"\r\n\r\nMZsecond\r\n--XyZ--\r\n";
    let post = |opts: &str| {
        fires_on(
            &format!("flow:to_server; {opts}"),
            "POST",
            &[("content-type", "multipart/form-data; boundary=XyZ")],
            body,
        )
    };
    assert!(post(
        "file.data; content:\"MZsecond\"; startswith; endswith;"
    ));
    assert!(post("file.data; content:\"first file\"; bsize:10;"));
    assert!(
        !post("file.data; content:\"name=\";"),
        "part headers are not file data"
    );
    assert!(
        !post("file.data; content:\"field\";"),
        "a part without filename is no file"
    );
    assert!(post("http.request_body; content:\"field\";"));
    assert!(post("http.request_body; content:\"name=|22|a|22|\";"));
    assert!(post("filename:\"two.exe\";"));
    assert!(post("fileext:\"txt\";"));
    assert!(!post("fileext:\"pdf\";"));
}

/// Suricata 7's multiple buffer matching (suricata-verify file-match-crossed): a multi-buffer
/// keyword named again starts another instance, matched on any file of its own; matches after
/// one naming stay on one file; another buffer named again adds to its first group.
#[test]
fn multi_buffers_named_again_match_any_instance() {
    let body: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"titi.txt\"\r\n\r\nTiti a vu un gros minet.\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"g\"; filename=\"toto.txt\"\r\n\r\ntoto est dans un bateau\r\n--XyZ--\r\n";
    let post = |opts: &str| {
        fires_on(
            opts,
            "POST",
            &[("content-type", "multipart/form-data; boundary=XyZ")],
            body,
        )
    };
    assert!(post(
        "file.data; content:\"bateau\"; file.data; content:\"minet\";"
    ));
    assert!(!post("file.data; content:\"bateau\"; content:\"minet\";"));
    assert!(post(
        "file.data; content:\"Titi\"; file.data; content:\"minet\";"
    ));
    assert!(post(
        "file.data; content:\"bateau\"; file.name; content:\"titi.txt\";"
    ));
    // Relative keywords stay within their own instance.
    assert!(!post(
        "file.data; content:\"bateau\"; file.data; content:\"Titi\"; content:\"gros\"; distance:0; content:\"dans\"; distance:0;"
    ));
    assert!(post(
        "file.data; content:\"bateau\"; file.data; content:\"Titi\"; content:\"gros\"; distance:0;"
    ));
    // http.uri is one buffer: named again, its matches join the first group.
    let get = |opts: &str| fires_on(opts, "GET", &[], b"");
    assert!(get("http.uri; content:\"/\"; http.method; content:\"GET\"; http.uri; content:\"a\"; distance:0;"));
    assert!(!get("http.uri; content:\"a\"; http.method; content:\"GET\"; http.uri; content:\"/\"; distance:0;"));
}

/// A negated content on a buffer that is not there (a request without a body) does not match,
/// as Suricata's `absent` documentation says; on a body without the bytes it does.
#[test]
fn negated_content_needs_the_buffer() {
    let rule = "http.request_body; content:!\"secret\";";
    assert!(!fires_on(rule, "GET", &[], b""), "no body, no buffer");
    assert!(fires_on(rule, "POST", &[], b"public"));
    assert!(!fires_on(rule, "POST", &[], b"a secret"));
    assert!(!fires_on("file.data; content:!\"x\";", "GET", &[], b""));
}

/// Keywords relative to a `uricontent` (or an `http_uri`-style modifier) go to the URI, as
/// Suricata places them in the list of the previous match; a bare `pcre:/…/U` value is read;
/// `urilen` alone makes a `tcp` rule an HTTP one (suricata-verify's detect-http-uri cases).
#[test]
fn relative_keywords_follow_the_previous_matchs_buffer() {
    let fires = |opts: &str, uri: &str| {
        let set = load(&format!("alert tcp any any -> any any ({opts} sid:1;)\n"));
        assert_eq!(set.len(), 1, "{opts}: loaded");
        let mut vars = FlowVars::default();
        let r = Req {
            method: "POST",
            uri,
            headers: &[("Host", "a.test")],
            body: b"",
        };
        sids(&set, &r, &mut vars) == [1]
    };
    let u = "/we_need_to_fix_this_and_yes_fix_this_now";
    assert!(fires(r#"uricontent:"fix_this"; isdataat:4,relative;"#, u));
    // The first "fix_this" leaves 21 bytes; the second, 4: the retry finds it.
    assert!(fires(r#"uricontent:"fix_this"; isdataat:!10,relative;"#, u));
    assert!(!fires(r#"uricontent:"fix_this"; isdataat:!3,relative;"#, u));
    let b = "/this_b5ig_string_now_in_http";
    // "this" then one digit read after it ("_b" → the '5' two bytes on): distance 5.
    assert!(fires(
        r#"uricontent:"this"; byte_extract:1,2,one,string,dec,relative; uricontent:"ring"; distance:one;"#,
        b
    ));
    assert!(!fires(
        r#"uricontent:"this"; byte_extract:1,2,one,string,dec,relative; uricontent:"his"; depth:one;"#,
        "/xthis_b1ig"
    ));
    assert!(fires(
        r#"pcre:/normalized/U; uricontent:"normalized uri";"#,
        "/normalized%20uri"
    ));
    assert!(fires("urilen:15;", "/normalized%20uri"));
    assert!(fires("urilen:17, raw;", "/normalized%20uri"));
    assert!(!fires("urilen:16;", "/normalized%20uri"));
    assert!(fires(
        r#"content:"/c/"; http_raw_uri; isdataat:4,relative;"#,
        "/../a/b/../c/./d.html"
    ));
}

/// WebSocket rules (Suricata 8's websocket keywords, the suricata-verify `websocket` case's
/// rules): each frame is a transaction of its own; a rule without a direction reads both.
#[test]
fn websocket_frames_and_their_keywords() {
    use sekisho_core::WsFrame;
    let set = load(
        "alert websocket any any -> any any (msg:\"ws opcode\"; flow:established,to_client; websocket.opcode:text; sid:3;)\n\
         alert websocket any any -> any any (msg:\"ws mask\"; flow:established,to_server; websocket.mask:>0; sid:4;)\n\
         alert websocket any any -> any any (msg:\"ws fin\"; flow:established,to_server; websocket.flags:fin; sid:5;)\n\
         alert websocket any any -> any any (msg:\"ws pl\"; flow:established,to_server; websocket.payload; content:\"version,\"; sid:6;)\n\
         alert websocket any any -> any any (msg:\"not ping\"; websocket.opcode:!ping; websocket.flags:fin,!comp; sid:7;)\n\
         alert tcp any any -> any any (msg:\"tcp becomes websocket\"; websocket.payload; content:\"cmd.exe\"; nocase; sid:8;)\n\
         alert websocket any any -> any any (msg:\"skipped\"; app-layer-event:websocket.skip_end_of_payload; sid:9;)\n",
    );
    assert!(set.report().errors.is_empty(), "{:?}", set.report().errors);
    let run = |f: WsFrame| {
        let mut tx = Tx::new();
        tx.ws_frame(&f);
        let mut v = FlowVars::default();
        let mut out = eval_phases(&set, &tx, &[Phase::WsFrame], &mut v);
        out.sort_unstable();
        out
    };
    let frame = |direction, flags, opcode, mask, payload: &[u8], notes| WsFrame {
        direction,
        flags,
        opcode,
        mask,
        payload: bytes::Bytes::copy_from_slice(payload),
        notes,
        raw: bytes::Bytes::new(),
        header_len: 0,
    };
    let client = frame(
        Direction::Request,
        0x80,
        1,
        Some(0xe2b6_2ded),
        b"version,hybi-draft-13",
        0,
    );
    assert_eq!(run(client), [4, 5, 6, 7]);
    let server = frame(
        Direction::Response,
        0x80,
        1,
        None,
        b"version,hybi-draft-13",
        0,
    );
    assert_eq!(run(server), [3, 7]);
    let ping = frame(Direction::Request, 0x80, 9, None, b"p", 0);
    assert_eq!(run(ping), [5]);
    let compressed = frame(Direction::Response, 0xc0, 2, None, b"CMD.EXE /c", 0);
    assert_eq!(run(compressed), [8]);
    let cut = frame(
        Direction::Response,
        0x00,
        2,
        None,
        b"x",
        WsFrame::PAYLOAD_SKIPPED,
    );
    assert_eq!(run(cut), [9]);
    // An HTTP transaction is no frame: websocket rules stay silent on it.
    let http = sids(
        &set,
        &Req {
            method: "GET",
            uri: "/version,",
            headers: &[],
            body: b"",
        },
        &mut FlowVars::default(),
    );
    assert!(http.is_empty());
    // Frames as sent: `frame:websocket.header` / `.pdu` / `.data`.
    let set = load(
        "alert websocket any any -> any any (flow:to_server; frame:websocket.header; content:\"|81 88|\"; sid:1;)\n\
         alert websocket any any -> any any (frame:websocket.pdu; content:\"|81 03|abc\"; startswith; endswith; sid:2;)\n\
         alert websocket any any -> any any (frame:websocket.data; content:\"abc\"; sid:21;)\n",
    );
    assert!(set.report().errors.is_empty(), "{:?}", set.report().errors);
    let on = |f: WsFrame| {
        let mut tx = Tx::new();
        tx.ws_frame(&f);
        let mut out = eval_phases(&set, &tx, &[Phase::WsFrame], &mut FlowVars::default());
        out.sort_unstable();
        out
    };
    let mut f = frame(Direction::Response, 0x80, 1, None, b"abc", 0);
    (f.raw, f.header_len) = (bytes::Bytes::from_static(b"\x81\x03abc"), 2);
    assert_eq!(on(f), [2, 21]);
    let mut f = frame(Direction::Request, 0x80, 1, Some(1), b"12345678", 0);
    (f.raw, f.header_len) = (bytes::Bytes::from_static(b"\x81\x88\0\0\0\x01123456799"), 6);
    assert_eq!(on(f), [1]);
    assert!(matches!(
        parse_line("alert http any any -> any any (frame:http1.request; content:\"a\"; sid:1;)"),
        Err(sekisho_ips::rule::RuleError::Unsupported { .. })
    ));
    assert_broken(&[
        "alert http any any -> any any (websocket.opcode:text; sid:1;)",
        "alert websocket any any -> any any (websocket.opcode:pang; sid:1;)",
        "alert websocket any any -> any any (websocket.flags:fin,fin; sid:1;)",
        "alert websocket any any -> any any (websocket.mask; sid:1;)",
        "alert websocket any any -> any any (http.uri; content:\"a\"; sid:1;)",
        "alert websocket any any -> any any (app-layer-event:http.request_chunk_extension; sid:1;)",
    ]);
}
