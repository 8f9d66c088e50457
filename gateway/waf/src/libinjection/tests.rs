//! Hand-picked vectors: the payloads of CRS's 942100 and 941100 regression tests (as the rules'
//! transformations leave them), classic attacks, and the harmless shapes libinjection lets
//! through. Every expected value is what libinjection 3.10.0 (C, as ModSecurity 2.9.7 bundles
//! it) returns for the same bytes.

use super::{sqli, xss};

/// (input, expected fingerprint or "" for not SQLi).
const SQLI: &[(&[u8], &str)] = &[
    // CRS 942100 tests 1-15 (form values after t:urlDecodeUni).
    (b"1234 OR 1=1", "1&1"),
    (b"-1839' or '1'='1", "s&sos"),
    (b"-1839\" or \"1\"=\"2", "s&sos"),
    (b"2010-01-01' sleep(20.to_i) '", "sf(1n"),
    (b"EmptyValue' and 526=527", "s&1"),
    (b"foo') UNION ALL select NULL --", "s)UEv"),
    (b"foo')waitfor delay'5:0:20'--", "s)Esc"),
    (b"JKGHUKGDI8TDHLFJH72FZLFJSKFH' and sleep(12) --", "s&f(1"),
    (
        b"/path/to/file/unitests.txt') UNION ALL select NULL --",
        "s)UEv",
    ),
    (
        b"1'||(select extractvalue(xmltype('<?xml version=\"1.1\" encoding=\"UTF-8\"?>",
        "s&(Ef",
    ),
    (b"sleep(20)", "f(1)"),
    (b"unittests@coreruleset.org\" sleep(10.to_i) \"", "sf(1n"),
    (b"\" | type %SystemDrive%\\\\config.ini | \"", "sos"),
    (
        b"\"unittests@coreruleset.org\"')) and (select*from(select(sleep(5)))x) --",
        "s)&(E",
    ),
    // Classic attacks.
    (b"1 UNION ALL SELECT 1,2,3--", "1UE1c"),
    (b"1' OR '1'='1", "s&sos"),
    (b"admin'--", "sc"),
    (b"' or 1=1 #", "s&1c"),
    (b"1; DROP TABLE users", "1;Tnn"),
    (b"-1 UNION SELECT password FROM users", "1UEnk"),
    (b"1/*comment*/UNION/**/SELECT", "1UE"),
    (b"1' and benchmark(1000000,md5(1))#", "s&f(1"),
    (b"SELECT * FROM x WHERE a=$$b$$ OR 1=1", "Eoknk"),
    (b"\\N union select 1", "1UE1"),
    // Multi-word keywords: INTO OUTFILE / DUMPFILE survive the three-token whitelist.
    (b"1' into outfile '/tmp/x", "sks"),
    (b"1 into dumpfile 'x'", "1ks"),
    // Unparsable: MySQL version comments, nested comments, MySQL's {``.``.id}.
    (b"1 /*! UNION */ SELECT", "X"),
    (b"1' /* /* nested */", "X"),
    (b"{``.``.id}", "X"),
    // Two-token shapes: "1 union" alone is text, a number then "--" is a scan.
    (b"1 union select", "1UE"),
    (b"1 union", ""),
    (b"123--", "1c"),
    (b"1-- foo", "1c"),
    // Three-token shapes: 'sexy and 17' is text unless more follows.
    (b"sexy and 17", ""),
    (b"sexy and 17<18", "n&1"),
    (b"1 < 2 and 3 > 2", "1&1"),
    // Harmless input.
    (b"O'Reilly", ""),
    (b"john@example.com", ""),
    (b"hello world", ""),
    (b"foo -- bar", ""),
    (b"$1,000.00", ""),
    (b"@@version", ""),
    (b"'a' 'b'", ""),
    (b"OWASP CRS test agent", ""),
    (b"", ""),
];

/// (input, is XSS).
const XSS: &[(&[u8], bool)] = &[
    // CRS 941100 tests 1, 2, 4, 6.
    (
        b"<script xmlns=\"http://www.w3.org/1999/xhtml\">setTimeout(\"top.frame2.location=\"javascript:(function () {})\",1000)</script>&//",
        true,
    ),
    (
        b"<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\" src=\"data:,alert(1)\" />",
        true,
    ),
    (b"OWASP CRS test agent", false),
    (b"<xss onbeforehellfreezes=alerw(1)>", true),
    // Tags.
    (b"<script>alert(1)</script>", true),
    (b"<iframe src=//x>", true),
    (b"<SVG>", true),
    (b"<xsl:template>", true),
    (b"<scr\0ipt>", true),
    (b"<b>hello</b>", false),
    (b"<p>", false),
    (b"<br/>", false),
    (b"</a>", false),
    // Attributes: every on* name (3.10.0; libmodsecurity 3.0.13's copy checks a list).
    (b"<img src=x onerror=alert(1)>", true),
    (b"<a onxyz=1>", true),
    (b"<img src=x on=1>", false),
    (b"\" onmouseover=\"alert(1)", true),
    (b"'><svg/onload=alert(1)>", true),
    (b"<div style=\"color:red\">x</div>", true),
    (b"<div filter=\"x\">", true),
    (b"<a xmlns:xlink=\"x\">", true),
    (b"<svg><set attributeName=\"onmouseover\" to=\"alert(1)\">", true),
    // URL values: leading white space and decimal/hex entities are read through.
    (b"<a href=\"&#106;avascript:alert(1)\">", true),
    (b"<a href=\" javascript:alert(1)\">", true),
    (b"<a href=\"jav&#x09;ascript:alert(1)\">x</a>", false),
    (b"<a href=\"data:text/html;base64,PHNjcmlwdD4=\">", true),
    (b"<img src=vbscript:msgbox(1)>", true),
    (b"<a href=http://example.com>ok</a>", false),
    (b"javascript:alert(1)", false),
    // Markup declarations and comments.
    (b"<!DOCTYPE html>", true),
    (b"<!--[if gte IE 4]><script>alert(1)</script><![endif]-->", true),
    (b"<?import namespace=\"t\" implementation=\"#default#time2\">", true),
    (b"<!-- ` -->", true),
    (b"<% alert(1) %>", false),
    (b"<![CDATA[<script>]]>", false),
    (b"hello world", false),
    (b"x > y < z", false),
];

#[test]
fn sqli_vectors_give_libinjection_fingerprints() {
    for (input, want) in SQLI {
        let got = sqli(input).map(|f| f.to_string()).unwrap_or_default();
        assert_eq!(got, *want, "input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn xss_vectors_give_libinjection_verdicts() {
    for (input, want) in XSS {
        assert_eq!(
            xss(input),
            *want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn fingerprint_text_and_display_agree() {
    let fp = sqli(b"1' OR '1'='1").unwrap();
    assert_eq!(fp.as_str(), "s&sos");
    assert_eq!(format!("{fp}"), "s&sos");
    assert_eq!(format!("{fp:?}"), "Fingerprint(\"s&sos\")");
}

#[test]
fn postgres_dollar_tags_close_as_modsecurity_2_9_finds_them() {
    // libinjection 3.10.0 searches for the closing `$tag$` in a window shifted back by the
    // tag's position; a tag at position 0 is unaffected, a later one is not found (the string
    // runs to the end). Both values were checked against the C library.
    assert_eq!(
        sqli(b"$foo$ bar $foo$ union select").map(|f| f.to_string()),
        Some("sUE".into())
    );
    assert_eq!(sqli(b"1 $$ or 1=1 $$"), None);
}

#[test]
fn pathological_inputs_end_with_libinjection_verdicts() {
    let big = |unit: &[u8], n: usize| unit.repeat(n);
    let cases: [(Vec<u8>, &str, bool); 8] = [
        ([b"<a".as_slice(), &big(b"/", 200_000)].concat(), "", false),
        (big(b"'", 200_000), "", false),
        (big(b"$a$", 50_000), "", false),
        (big(b"/*", 100_000), "X", false),
        (big(b"/**/", 100_000), "", false),
        (
            [b"<!--".as_slice(), &big(b"-\0", 100_000)].concat(),
            "",
            false,
        ),
        (big(b"1+", 100_000), "", false),
        (big(b"<", 200_000), "", false),
    ];
    for (input, fp, is_xss) in cases {
        let got = sqli(&input).map(|f| f.to_string()).unwrap_or_default();
        assert_eq!(
            got,
            fp,
            "sqli on {:?}…",
            String::from_utf8_lossy(&input[..8])
        );
        assert_eq!(
            xss(&input),
            is_xss,
            "xss on {:?}…",
            String::from_utf8_lossy(&input[..8])
        );
    }
}

/// Prints µs per call; run with
/// `cargo test --release -p sekisho-waf --lib libinjection::tests::speed -- --ignored --nocapture`.
#[test]
#[ignore]
fn speed() {
    let prose = b"The quick brown fox jumps over the lazy dog, and then it rests for a while. ";
    let benign: Vec<u8> = prose.iter().copied().cycle().take(1024).collect();
    let cases: [(&str, &[u8]); 4] = [
        ("1 KB benign text", &benign),
        ("SQLi 1' OR '1'='1", b"1' OR '1'='1"),
        (
            "SQLi union select",
            b"-1 UNION SELECT password FROM users--",
        ),
        ("XSS img onerror", b"<img src=x onerror=alert(1)>"),
    ];
    for (name, input) in cases {
        for (op, run) in [("sqli", 0), ("xss", 1)] {
            let n = 20_000;
            let t = std::time::Instant::now();
            let mut hits = 0usize;
            for _ in 0..n {
                let hit = if run == 0 {
                    sqli(std::hint::black_box(input)).is_some()
                } else {
                    xss(std::hint::black_box(input))
                };
                hits += usize::from(hit);
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            eprintln!("{op:4} {name:22} {us:8.3} µs/call (detected {})", hits > 0);
        }
    }
}
