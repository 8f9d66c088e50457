//! Engine behaviour on small rule sets written for each feature.

use std::path::Path;
use std::sync::Arc;

use super::{Mode, RequestHead, Transaction, Waf};

fn waf(rules: &str) -> Arc<Waf> {
    let dirs = crate::seclang::parse_str(rules, Path::new("test.conf")).expect("parses");
    Arc::new(Waf::from_directives(&dirs).unwrap_or_else(|e| panic!("{e:?}")))
}

fn get(uri: &str, headers: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        uri: uri.as_bytes().to_vec(),
        protocol: "HTTP/1.1".into(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        remote_addr: "192.0.2.1".into(),
        ..Default::default()
    }
}

fn run(w: &Arc<Waf>, head: &RequestHead, body: &[u8]) -> Transaction {
    let mut tx = Transaction::new(Arc::clone(w), head);
    tx.request_headers();
    tx.request_body(body, body.len());
    tx.logging();
    tx
}

fn ids(tx: &Transaction) -> Vec<u64> {
    tx.matched_rules().iter().map(|m| m.id).collect()
}

const SETUP: &str = r#"
SecDefaultAction "phase:1,log,auditlog,pass"
SecDefaultAction "phase:2,log,auditlog,pass"
"#;

#[test]
fn anomaly_scoring_blocks_at_threshold() {
    let w = waf(&(SETUP.to_string()
        + r#"
SecAction "id:1,phase:1,nolog,pass,setvar:tx.threshold=5,setvar:tx.inbound_anomaly_score_pl1=0"
SecRule ARGS "@rx (?i)union\s+select" "id:10,phase:2,block,t:none,t:urlDecodeUni,msg:'SQLi',logdata:'Matched %{MATCHED_VAR} in %{MATCHED_VAR_NAME}',severity:'CRITICAL',setvar:'tx.inbound_anomaly_score_pl1=+5'"
SecRule TX:INBOUND_ANOMALY_SCORE_PL1 "@ge %{tx.threshold}" "id:949,phase:2,deny,status:403,msg:'Score %{tx.inbound_anomaly_score_pl1}'"
"#));
    let tx = run(&w, &get("/?q=1%20UNION%20select%201", &[]), b"");
    assert_eq!(ids(&tx), vec![10, 949]);
    let m = &tx.matched_rules()[0];
    assert_eq!(m.data, "Matched 1 UNION select 1 in ARGS:q");
    assert_eq!(
        (m.score, m.severity, m.variable.as_str()),
        (5, Some(2), "ARGS:q")
    );
    let i = tx.intervention().expect("blocked");
    assert_eq!((i.status, i.rule_id, i.msg.as_str()), (403, 949, "Score 5"));
    let clean = run(&w, &get("/?q=hello", &[]), b"");
    assert!(clean.matched_rules().is_empty() && clean.intervention().is_none());
}

#[test]
fn detection_only_records_without_blocking() {
    let w = waf(r#"SecRuleEngine DetectionOnly
SecRule REQUEST_URI "@contains /admin" "id:5,phase:1,deny,msg:'admin'"
SecRule REQUEST_URI "@contains /admin" "id:6,phase:1,pass,msg:'still runs'""#);
    let tx = run(&w, &get("/admin", &[]), b"");
    assert!(tx.intervention().is_none());
    assert_eq!(tx.decision().map(|d| d.rule_id), Some(5));
    assert_eq!(ids(&tx), vec![5, 6]);
}

#[test]
fn chains_need_every_link_and_matched_vars_flow() {
    let w = waf(
        r#"SecRule ARGS_NAMES "@streq a" "id:1,phase:1,pass,chain,msg:'chain'"
SecRule MATCHED_VARS "@streq a" "setvar:tx.hit=1"
SecRule ARGS:b "@streq x" "id:2,phase:1,pass,chain"
SecRule ARGS:c "@streq y" "t:none""#,
    );
    let tx = run(&w, &get("/?a=1&b=x", &[]), b"");
    assert_eq!(ids(&tx), vec![1]);
    assert_eq!(tx.tx_var("hit"), Some(&b"1"[..]));
}

#[test]
fn skip_after_and_skip_count() {
    let w = waf(
        r#"SecRule REQUEST_METHOD "@streq GET" "id:1,phase:1,pass,nolog,skipAfter:END"
SecRule REQUEST_METHOD "@streq GET" "id:2,phase:1,pass"
SecMarker END
SecRule REQUEST_METHOD "@streq GET" "id:3,phase:1,pass,skip:1"
SecRule REQUEST_METHOD "@streq GET" "id:4,phase:1,pass"
SecRule REQUEST_METHOD "@streq GET" "id:5,phase:1,pass""#,
    );
    assert_eq!(ids(&run(&w, &get("/", &[]), b"")), vec![3, 5]);
}

#[test]
fn exclusions_static_and_runtime() {
    let w = waf(
        r#"SecRule REQUEST_URI "@beginsWith /login" "id:1,phase:1,pass,nolog,ctl:ruleRemoveTargetById=20;ARGS:password"
SecRule ARGS|!ARGS:safe "@contains '" "id:20,phase:2,pass"
SecRule REQUEST_HEADERS:/^x-/ "@streq bad" "id:21,phase:1,pass""#,
    );
    let tx = run(&w, &get("/login?password=a'b&safe=x'y", &[]), b"");
    assert!(ids(&tx).is_empty());
    let tx = run(&w, &get("/other?password=a'b", &[("X-Foo", "bad")]), b"");
    assert_eq!(ids(&tx), vec![21, 20]);
    assert_eq!(tx.matched_rules()[1].variable, "ARGS:password");
}

#[test]
fn ctl_rule_removal_and_engine_off() {
    let w = waf(
        r#"SecRule REQUEST_URI "@streq /health" "id:1,phase:1,pass,nolog,ctl:ruleRemoveById=10-19"
SecRule REQUEST_URI "@streq /quiet" "id:2,phase:1,pass,nolog,ctl:ruleEngine=Off"
SecRule REQUEST_URI "@rx ." "id:15,phase:2,deny""#,
    );
    assert!(run(&w, &get("/health", &[]), b"").intervention().is_none());
    assert!(run(&w, &get("/quiet", &[]), b"").intervention().is_none());
    assert_eq!(
        run(&w, &get("/x", &[]), b"")
            .intervention()
            .map(|i| i.rule_id),
        Some(15)
    );
}

#[test]
fn counts_captures_and_macros() {
    let w = waf(r#"SecRule &ARGS "@eq 2" "id:1,phase:1,pass,msg:'two args'"
SecRule ARGS:v "@rx ^(\d+)-(\d+)$" "id:2,phase:1,pass,capture,setvar:'tx.sum=%{tx.1}',setvar:'tx.sum=+%{tx.2}'"
SecRule &TX:missing "@eq 0" "id:3,phase:1,pass""#);
    let tx = run(&w, &get("/?v=3-4&w=1", &[]), b"");
    assert_eq!(ids(&tx), vec![1, 2, 3]);
    assert_eq!(tx.tx_var("sum"), Some(&b"7"[..]));
}

#[test]
fn multi_match_tests_every_changed_value() {
    let w = waf(
        r#"SecRule ARGS "@streq %41" "id:1,phase:1,pass,t:none,t:urlDecode,multiMatch"
SecRule ARGS "@streq %41" "id:2,phase:1,pass,t:none,t:urlDecode""#,
    );
    assert_eq!(ids(&run(&w, &get("/?a=%2541", &[]), b"")), vec![1]);
}

#[test]
fn allow_stops_the_request_phases() {
    let w = waf(
        r#"SecRule REMOTE_ADDR "@ipMatch 192.0.2.0/24" "id:1,phase:1,allow,nolog"
SecRule REQUEST_URI "@rx ." "id:2,phase:2,deny""#,
    );
    assert!(run(&w, &get("/", &[]), b"").intervention().is_none());
}

#[test]
fn urlencoded_body_and_request_body() {
    let w = waf(r#"SecRule ARGS_POST:x "@streq a b" "id:1,phase:2,pass"
SecRule REQUEST_BODY "@contains x=a+b" "id:2,phase:2,pass""#);
    let mut head = get(
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    head.method = "POST".into();
    assert_eq!(ids(&run(&w, &head, b"x=a+b")), vec![1, 2]);
}

#[test]
fn settings_and_load_errors() {
    let w = waf("SecRuleEngine DetectionOnly\nSecRequestBodyLimit 100\nSecAuditLog /x\n");
    assert_eq!(w.settings().mode, Mode::DetectionOnly);
    assert_eq!(w.settings().request_body_limit, 100);
    assert_eq!(w.summary().ignored.len(), 1);
    let dirs = crate::seclang::parse_str(
        "SecRule ARGS \"@rx a\" \"phase:1,pass\"\nSecRule ARGS \"@rx (\" \"id:2\"",
        Path::new("bad.conf"),
    )
    .expect("parses");
    let errs = Waf::from_directives(&dirs).expect_err("refused");
    assert_eq!(errs.len(), 2);
    assert!(
        errs[0].to_string().starts_with("bad.conf:1: "),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].to_string().starts_with("bad.conf:2: "),
        "{}",
        errs[1]
    );
}

#[test]
fn body_over_limit_is_rejected_or_partial() {
    let w = waf("SecRequestBodyLimit 4\nSecRule ARGS \"@rx .\" \"id:1,phase:2,pass\"");
    let mut head = get(
        "/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    head.method = "POST".into();
    let tx = run(&w, &head, b"a=123456");
    assert_eq!(tx.intervention().map(|i| i.status), Some(413));
    let w = waf("SecRequestBodyLimit 4\nSecRequestBodyLimitAction ProcessPartial\nSecRule ARGS_POST:a \"@streq 12\" \"id:1,phase:2,pass\"");
    assert_eq!(ids(&run(&w, &head, b"a=123456")), vec![1]);
}

fn post(ct: &str) -> RequestHead {
    let mut h = get("/submit", &[("Content-Type", ct)]);
    h.method = "POST".into();
    h
}

#[test]
fn json_arguments_are_in_args_not_args_post() {
    let w = waf(r#"SecRuleEngine DetectionOnly
SecRule ARGS:user.name "@streq bob" "id:1,phase:2,pass"
SecRule ARGS_POST "@rx ." "id:2,phase:2,pass"
SecRule ARGS:json.tags "@rx ." "id:3,phase:2,pass"
SecRule REQBODY_ERROR "!@eq 0" "id:4,phase:2,pass,msg:'%{REQBODY_ERROR_MSG}'"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:5,phase:2,pass""#);
    let tx = run(&w, &post("application/json"), br#"{"user":{"name":"bob"}}"#);
    assert_eq!(ids(&tx), vec![1, 5]);
    let tx = run(&w, &post("application/json"), br#"{"user":"#);
    assert_eq!(
        ids(&tx),
        vec![200002, 4, 5],
        "the body error first, as rule 200002"
    );
    assert_eq!(
        tx.decision().map(|d| (d.rule_id, d.status)),
        Some((200002, 400))
    );
    assert!(!tx.matched_rules()[1].msg.is_empty());
}

#[test]
fn multipart_files_flags_and_fields() {
    let w = waf(r#"SecRuleEngine DetectionOnly
SecRule FILES "@endsWith .php" "id:1,phase:2,pass"
SecRule FILES_NAMES "@streq upload" "id:2,phase:2,pass"
SecRule ARGS_POST:note "@streq hi" "id:3,phase:2,pass"
SecRule MULTIPART_STRICT_ERROR "!@eq 0" "id:4,phase:2,pass"
SecRule &FILES_SIZES "@eq 1" "id:5,phase:2,pass""#);
    let body = b"--xyz\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n--xyz\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"shell.php\"\r\nContent-Type: text/plain\r\n\r\n<?php system($_GET[1]); ?>\r\n--xyz--\r\n";
    let tx = run(&w, &post("multipart/form-data; boundary=xyz"), body);
    assert_eq!(ids(&tx), vec![1, 2, 3, 5]);
    let broken = b"--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--xyzz--\r\n";
    let tx = run(&w, &post("multipart/form-data; boundary=xyz"), broken);
    assert!(ids(&tx).contains(&4), "{:?}", ids(&tx));
}

#[test]
fn xml_text_and_attributes() {
    let w = waf(r#"SecRule XML:/* "@contains secret" "id:1,phase:2,pass"
SecRule XML://@* "@streq evil" "id:2,phase:2,pass""#);
    let tx = run(
        &w,
        &post("text/xml"),
        b"<a x=\"evil\"><b>top secret</b></a>",
    );
    assert_eq!(ids(&tx), vec![1, 2]);
}

#[test]
fn arguments_limit_sets_reqbody_error() {
    let rules = "SecArgumentsLimit 3\nSecRule REQBODY_ERROR \"@eq 1\" \"id:1,phase:2,pass\"\nSecRule &ARGS \"@eq 3\" \"id:2,phase:2,pass\"";
    let body = b"a=1&b=2&c=3&d=4";
    let tx = run(
        &waf(rules),
        &post("application/x-www-form-urlencoded"),
        body,
    );
    assert_eq!(
        ids(&tx),
        vec![200002],
        "refused before phase 2 (SecRuleEngine On)"
    );
    assert_eq!(tx.intervention().map(|i| i.status), Some(400));
    let detect = format!("SecRuleEngine DetectionOnly\n{rules}");
    let tx = run(
        &waf(&detect),
        &post("application/x-www-form-urlencoded"),
        body,
    );
    assert_eq!(ids(&tx), vec![200002, 1, 2]);
}

/// Rules whose needs (a byte, a literal) no value can meet are not run value by value, and
/// the same rules still match what they should through every encoding their chain decodes.
#[test]
fn rule_level_checks_skip_only_what_cannot_match() {
    let w = waf(
        r#"SecRule ARGS "@rx <[^a-z]*script" "id:1,phase:1,pass,t:none,t:urlDecodeUni,t:htmlEntityDecode,msg:'tag'"
SecRule ARGS "@rx (?i)union\s+select" "id:2,phase:1,pass,t:none,t:urlDecodeUni,msg:'sqli'"
SecRule ARGS "@rx (?i)unionselect" "id:3,phase:1,pass,t:none,t:removeWhitespace,msg:'joined'"
SecRule ARGS "@rx (?i)union\s+select" "id:4,phase:1,pass,t:none,t:cmdLine,multiMatch,msg:'cmd'""#,
    );
    let benign = run(&w, &get("/?a=patient&b=record+12&c=claim", &[]), b"");
    assert!(benign.matched_rules().is_empty());
    assert_eq!(
        benign.evaluations(),
        0,
        "every rule was ruled out as a whole"
    );
    let cases: [(&str, &[u64]); 6] = [
        ("/?q=%253Cscript%253E", &[1]),
        ("/?q=%26lt;script", &[1]),
        ("/?q=x%3C%20script", &[1]),
        ("/?q=1%2520UNION%2520SELECT", &[2]),
        ("/?q=1+union+select+2", &[2, 3, 4]),
        ("/?q=un%27ion+select", &[4]),
    ];
    for (uri, want) in cases {
        let tx = run(&w, &get(uri, &[]), b"");
        assert_eq!(ids(&tx), want.to_vec(), "{uri}");
    }
}

/// A value its chain keeps as it was (up to case) is judged on the literals found in the
/// original; one the chain changes (decoded, joined) is searched again after the change, so a
/// literal that only the transformation makes still reaches the operator.
#[test]
fn literals_are_judged_on_the_value_the_operator_sees() {
    let w = waf(
        r#"SecRule ARGS "@rx (?i)union\s+select" "id:10,phase:1,pass,t:none,t:lowercase"
SecRule ARGS "@rx select" "id:11,phase:1,pass,t:none,t:urlDecodeUni"
SecRule ARGS "@rx union" "id:12,phase:1,pass,t:none,t:removeWhitespace"
SecRule ARGS "@rx select" "id:13,phase:1,pass,t:none,t:lowercase""#,
    );
    let tx = run(&w, &get("/?a=UNION+SELECT&b=%2573elect&c=un+ion", &[]), b"");
    assert_eq!(ids(&tx), vec![10, 11, 12, 13]);
    let vars: Vec<&str> = tx
        .matched_rules()
        .iter()
        .map(|m| m.variable.as_str())
        .collect();
    assert_eq!(vars, ["ARGS:a", "ARGS:b", "ARGS:c", "ARGS:a"]);
    assert!(ids(&run(&w, &get("/?d=sel+ect&e=%2575nion", &[]), b"")).is_empty());
}

/// With `[waf] decode = ["base64"]`, a base64 argument's text is read as `ARGS` under its name
/// (an exclusion of that name covers it), and `&ARGS` still counts what the client sent.
#[test]
fn decoded_base64_joins_args_but_not_their_count() {
    let rules = r#"SecRule ARGS "@contains <script>" "id:1,phase:2,pass,msg:'xss'"
SecRule &ARGS "@eq 2" "id:2,phase:2,pass,msg:'two args'""#;
    let mut w = Arc::try_unwrap(waf(rules)).expect("one owner");
    let plain = Arc::new(
        Waf::from_directives(
            &crate::seclang::parse_str(rules, Path::new("t.conf")).expect("parses"),
        )
        .expect("compiles"),
    );
    w.set_decoding(super::Decoding { base64: true });
    let w = Arc::new(w);
    let uri = "/?q=PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg%3D%3D&page=2";
    let tx = run(&w, &get(uri, &[]), b"");
    assert_eq!(ids(&tx), vec![1, 2]);
    assert_eq!(tx.matched_rules()[0].variable, "ARGS:q");
    assert_eq!(ids(&run(&plain, &get(uri, &[]), b"")), vec![2]);
    let excluded = rules.replace("SecRule ARGS ", "SecRule ARGS|!ARGS:q ");
    let mut x = Arc::try_unwrap(waf(&excluded)).expect("one owner");
    x.set_decoding(super::Decoding { base64: true });
    assert_eq!(ids(&run(&Arc::new(x), &get(uri, &[]), b"")), vec![2]);
}

/// The rule-level checks rule out targets one by one: a target whose values lack the bytes
/// the operator needs is not read, and the others still match, whichever target holds the
/// attack.
#[test]
fn targets_ruled_out_alone_leave_the_others_matching() {
    let w = waf(
        r#"SecRule REQUEST_HEADERS:User-Agent|ARGS|REQUEST_COOKIES "@rx <script" "id:7,phase:1,pass,t:none,t:lowercase,msg:'xss'"
SecRule ARGS_NAMES|ARGS "@rx (?i)union\s+select" "id:8,phase:1,pass,t:none,t:urlDecodeUni,msg:'sqli'""#,
    );
    let variables = |tx: &Transaction| -> Vec<(u64, String)> {
        tx.matched_rules()
            .iter()
            .map(|m| (m.id, m.variable.clone()))
            .collect()
    };
    let ua = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)");
    let tx = run(&w, &get("/?a=1&q=%3Cscript%3E", &[ua]), b"");
    assert_eq!(variables(&tx), [(7, "ARGS:q".to_string())]);
    let tx = run(&w, &get("/?q=1", &[("User-Agent", "<SCRIPT>x")]), b"");
    assert_eq!(
        variables(&tx),
        [(7, "REQUEST_HEADERS:User-Agent".to_string())]
    );
    let tx = run(&w, &get("/?q=1", &[ua, ("Cookie", "c=<script")]), b"");
    assert_eq!(variables(&tx), [(7, "REQUEST_COOKIES:c".to_string())]);
    // A literal in one target's name, none in the values (and the reverse).
    let tx = run(&w, &get("/?union%20select=1", &[ua]), b"");
    assert_eq!(variables(&tx), [(8, "ARGS_NAMES:union select".to_string())]);
    let tx = run(&w, &get("/?x=union%2Bselect", &[ua]), b"");
    assert_eq!(variables(&tx), [(8, "ARGS:x".to_string())]);
    let tx = run(&w, &get("/?q=hello", &[ua, ("Cookie", "c=1")]), b"");
    assert!(tx.matched_rules().is_empty());
}

/// A member's name is found where it is (which list of the collection, which place in it), for
/// exclusions and for naming a match, in a collection drawn from the query and the body.
#[test]
fn member_names_name_matches_and_exclusions_across_lists() {
    let w = waf(r#"SecRequestBodyAccess On
SecRule ARGS|!ARGS:skip "@contains '" "id:30,phase:2,pass,log"
SecRule ARGS_NAMES "@streq odd'name" "id:31,phase:2,pass,log"
SecRule REQUEST_HEADERS|!REQUEST_HEADERS:X-Skip "@contains '" "id:32,phase:1,pass,log""#);
    let mut body: Vec<String> = (0..900).map(|i| format!("f{i}=v{i}")).collect();
    body.extend(["skip=a'b".into(), "late=x'y".into(), "odd'name=1".into()]);
    let mut head = post("application/x-www-form-urlencoded");
    head.uri = b"/submit?q=1&skip=c'd".to_vec();
    head.headers.push((b"X-Skip".to_vec(), b"it's".to_vec()));
    head.headers.push((b"X-Other".to_vec(), b"o'k".to_vec()));
    let tx = run(&w, &head, body.join("&").as_bytes());
    assert_eq!(ids(&tx), vec![32, 30, 31]);
    let vars: Vec<&str> = tx
        .matched_rules()
        .iter()
        .map(|m| m.variable.as_str())
        .collect();
    assert_eq!(
        vars,
        [
            "REQUEST_HEADERS:X-Other",
            "ARGS:late",
            "ARGS_NAMES:odd'name"
        ]
    );
}

/// A regex that gives up at PCRE's limits does not match, and flags it as ModSecurity v2 does
/// (`TX:MSC_PCRE_LIMITS_EXCEEDED`, the variable of the same name) in every transaction that
/// meets the value: the value memo keeps only real misses.
#[test]
fn pcre_limits_set_the_flag_every_time() {
    let w = waf(
        r#"SecRule ARGS "@rx ^(?=x?)(a+)+$" "id:1,phase:1,pass,msg:'nested'"
SecRule TX:MSC_PCRE_LIMITS_EXCEEDED "@eq 1" "id:2,phase:1,pass,msg:'tx flag'"
SecRule MSC_PCRE_LIMITS_EXCEEDED "@eq 1" "id:3,phase:1,pass,msg:'variable'""#,
    );
    let hostile = format!("/?q={}b", "a".repeat(30));
    for round in 0..2 {
        let tx = run(&w, &get(&hostile, &[]), b"");
        assert_eq!(ids(&tx), vec![2, 3], "round {round}");
    }
    assert_eq!(ids(&run(&w, &get("/?q=aaaa", &[]), b"")), vec![1]);
    assert!(ids(&run(&w, &get("/?q=abc", &[]), b"")).is_empty());
}

/// The value memo keeps that an operator does not match a value: a negated link matches that
/// value again in later transactions without running its operator, with the value its
/// transformations give; a value the operator matches is tested every time.
#[test]
fn a_negated_link_matches_again_on_a_value_the_memo_knows() {
    let w = waf(
        r#"SecRule ARGS:q "!@rx ^[0-9]+$" "id:1,phase:1,pass,t:none,msg:'not a number'"
SecRule REQUEST_HEADERS:User-Agent "!@pm curl wget" "id:2,phase:1,pass,t:lowercase,msg:'not a tool',logdata:'%{MATCHED_VAR}'""#,
    );
    for round in 0..3 {
        let tx = run(&w, &get("/?q=abc", &[("User-Agent", "Mozilla/5.0")]), b"");
        assert_eq!(ids(&tx), vec![1, 2], "round {round}");
        assert_eq!(tx.matched_rules()[1].data, "mozilla/5.0");
        if round > 0 {
            assert_eq!(tx.evaluations(), 0, "round {round}: known to the memo");
        }
        let tx = run(&w, &get("/?q=123", &[("User-Agent", "curl/8.5")]), b"");
        assert!(ids(&tx).is_empty(), "round {round}");
        assert_eq!(tx.evaluations(), 2, "round {round}: a match is never kept");
    }
}
