//! The `waf` stage end to end through the real binary: a plain-HTTP reverse listener with OWASP
//! CRS in blocking mode in front of a loopback origin; attacks get 403 and one event carrying
//! every matched rule, benign requests pass; a route can turn the WAF off or add its own
//! exclusions; `rules check` reports the WAF files; a broken rule file names file and line.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{bin, corpora, corpus, curl, Gateway, Origin, TempDir};

/// The CRS setup and rule files as `[waf] rules` entries: only called by tests that checked
/// `corpus("crs")` first.
fn crs_rules() -> String {
    let crs = corpora().join("crs");
    format!(
        "{:?}, {:?}",
        crs.join("crs-setup.conf.example").display().to_string(),
        crs.join("rules/*.conf").display().to_string()
    )
}

fn start(tag: &str, origin: u16, dir_rules: &str, extra_routes: &str) -> Gateway {
    start_with(tag, origin, dir_rules, extra_routes, "")
}

/// `start` with more `[waf]` keys.
fn start_with(tag: &str, origin: u16, dir_rules: &str, extra_routes: &str, keys: &str) -> Gateway {
    let listener =
        "[[listener]]\nname = \"web\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\nstages = [\"waf\"]\n";
    let extra = format!(
        "{extra_routes}[[route]]\nname = \"all\"\nlistener = \"web\"\nupstreams = [\"http://127.0.0.1:{origin}\"]\n\n\
         [waf]\nrules = [{}{dir_rules}]\n{keys}",
        crs_rules()
    );
    Gateway::start_with_listeners(tag, listener, "", &extra)
}

async fn status(gw: &Gateway, path_and_query: &str, extra: &[&str]) -> String {
    let url = format!("http://{}{path_and_query}", gw.proxy);
    // A host name (an IP address in Host is itself a CRS finding, 920350).
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "User-Agent: Mozilla/5.0 test",
        "-H",
        "Host: portal.example.jp",
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).await.stdout
}

fn waf_events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.events()
        .into_iter()
        .filter(|e| e["stage"] == "waf")
        .collect()
}

fn fired(e: &serde_json::Value) -> Vec<u64> {
    e["matched_rules"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m["id"].as_u64()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crs_blocks_attacks_and_passes_benign_requests() {
    if corpus("crs").is_none() {
        return;
    }
    let origin = Origin::start(None).await;
    let mut gw = start("waf-block", origin.port, "", "");
    assert_eq!(status(&gw, "/hello?page=2&sort=name", &[]).await, "200");
    assert_eq!(status(&gw, "/?id=1%27%20or%201=1--", &[]).await, "403");
    assert_eq!(
        status(&gw, "/?file=../../../../etc/passwd", &[]).await,
        "403"
    );
    assert_eq!(
        status(
            &gw,
            "/comment",
            &["--data", "text=<script>alert(document.cookie)</script>"]
        )
        .await,
        "403"
    );
    assert_eq!(
        status(
            &gw,
            "/api",
            &[
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"q":"1 UNION SELECT password FROM users"}"#
            ]
        )
        .await,
        "403"
    );
    gw.stop();
    let events = waf_events(&gw);
    assert_eq!(
        events.len(),
        4,
        "one event per blocked transaction: {events:#?}"
    );
    let sqli = &events[0];
    assert_eq!(sqli["rule"]["id"], "949110");
    assert_eq!(sqli["event"]["action"], "blocked");
    assert!(
        fired(sqli).contains(&942100),
        "libinjection SQLi: {:?}",
        fired(sqli)
    );
    let m = sqli["matched_rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 942100)
        .unwrap();
    assert_eq!(m["variable"], "ARGS:id");
    assert_eq!(m["severity"], "CRITICAL");
    assert_eq!(m["phase"], 2);
    assert!(m["score"].as_i64().unwrap() >= 5, "{m}");
    let data = m["data"].as_str().unwrap();
    assert!(
        data.starts_with("Matched Data: s&1c found within ARGS:id"),
        "{m}"
    );
    assert!(sqli["waf"]["inbound_score"].as_i64().unwrap() >= 5);
    assert!(
        fired(sqli).contains(&980170),
        "phase 5 ran at the block (CRS's correlation rule): {:?}",
        fired(sqli)
    );
    assert!(
        fired(&events[1]).contains(&930120),
        "{:?}",
        fired(&events[1])
    );
    assert!(
        fired(&events[2]).contains(&941100),
        "{:?}",
        fired(&events[2])
    );
    assert!(
        fired(&events[3]).contains(&942100),
        "JSON argument: {:?}",
        fired(&events[3])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_turn_the_waf_off_or_add_exclusions() {
    if corpus("crs").is_none() {
        return;
    }
    let dir = TempDir::new("waf-routes");
    let excl = dir.path().join("claims-exclusions.conf");
    std::fs::write(
        &excl,
        "SecRule REQUEST_FILENAME \"@beginsWith /claims\" \"id:10001,phase:1,pass,nolog,ctl:ruleRemoveTargetById=942100;ARGS:memo\"\n",
    )
    .unwrap();
    let origin = Origin::start(None).await;
    let routes = format!(
        "[[route]]\nname = \"health\"\nlistener = \"web\"\npath_prefix = \"/health\"\nwaf = false\nupstreams = [\"http://127.0.0.1:{0}\"]\n\n\
         [[route]]\nname = \"claims\"\nlistener = \"web\"\npath_prefix = \"/claims\"\nwaf = [{1:?}]\nupstreams = [\"http://127.0.0.1:{0}\"]\n\n",
        origin.port,
        excl.display().to_string()
    );
    let mut gw = start("waf-routes", origin.port, "", &routes);
    let attack = "?memo=1%27%20or%201=1--";
    // The origin answers 404 for /health: the request reached it.
    assert_eq!(
        status(&gw, &format!("/health{attack}"), &[]).await,
        "404",
        "waf = false"
    );
    assert_eq!(
        status(&gw, &format!("/claims{attack}"), &[]).await,
        "404",
        "memo excluded on /claims"
    );
    assert_eq!(
        status(&gw, "/claims?other=1%27%20or%201=1--", &[]).await,
        "403",
        "other arguments still checked"
    );
    assert_eq!(status(&gw, &format!("/other{attack}"), &[]).await, "403");
    gw.stop();
    let events = waf_events(&gw);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(fired(&events[0]).contains(&942100));
    assert!(fired(&events[1]).contains(&942100));
}

/// Attacks sent base64-encoded in a query argument, a form field, a JSON value and a header
/// pass CRS alone, and are blocked with `decode = ["base64"]`; benign base64-looking values
/// (ids, tokens) still pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_payloads_are_caught_when_decoding_is_on() {
    if corpus("crs").is_none() {
        return;
    }
    // "<script>alert(document.cookie)</script>" and "1' UNION SELECT password FROM users--".
    let xss = "PHNjcmlwdD5hbGVydChkb2N1bWVudC5jb29raWUpPC9zY3JpcHQ+";
    let sqli = "MScgVU5JT04gU0VMRUNUIHBhc3N3b3JkIEZST00gdXNlcnMtLQ";
    let origin = Origin::start(None).await;
    let q = format!("/hello?q={}", xss.replace('+', "%2B"));
    let form = format!("text={}", xss.replace('+', "%2B"));
    let json = format!(r#"{{"note":"{sqli}"}}"#);
    let header = format!("X-Data: {sqli}");
    let attacks: [(&str, Vec<&str>); 4] = [
        (&q, vec![]),
        ("/hello", vec!["--data", &form]),
        (
            "/hello",
            vec!["-H", "Content-Type: application/json", "--data", &json],
        ),
        ("/hello", vec!["-H", &header]),
    ];
    let benign = "/hello?session=8f2a9c1d4b7e0a9c&id=QUJDREVGMTIzNDU2&page=2";
    for (decode, want) in [(false, "200"), (true, "403")] {
        let keys = if decode {
            "decode = [\"base64\"]\n"
        } else {
            ""
        };
        let mut gw = start_with("waf-b64", origin.port, "", "", keys);
        for (path, extra) in &attacks {
            assert_eq!(status(&gw, path, extra).await, want, "{path} {extra:?}");
        }
        assert_eq!(status(&gw, benign, &[]).await, "200");
        gw.stop();
        if decode {
            let events = waf_events(&gw);
            assert!(events.iter().any(|e| fired(e).contains(&941100)));
            assert!(events.iter().any(|e| fired(e).contains(&942100)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_only_alerts_without_blocking() {
    if corpus("crs").is_none() {
        return;
    }
    let dir = TempDir::new("waf-detect");
    let conf = dir.path().join("detect.conf");
    std::fs::write(&conf, "SecRuleEngine DetectionOnly\n").unwrap();
    let origin = Origin::start(None).await;
    let mut gw = start(
        "waf-detect",
        origin.port,
        &format!(", {:?}", conf.display().to_string()),
        "",
    );
    assert_eq!(status(&gw, "/hello?id=1%27%20or%201=1--", &[]).await, "200");
    gw.stop();
    // One event for the transaction: the request's matches and, from phase 5, CRS's
    // correlation rule 980170.
    let events = waf_events(&gw);
    assert_eq!(events.len(), 1, "{events:#?}");
    let request = events.first().unwrap();
    assert!(fired(request).contains(&980170), "{:?}", fired(request));
    assert_eq!(
        request["rule"]["id"], "949110",
        "the rule that would have denied"
    );
    assert_eq!(request["waf"]["enforced"], false);
    assert_ne!(request["event"]["action"], "blocked");
    assert!(fired(request).contains(&942100));
}

#[test]
fn rules_check_reports_waf_files_and_broken_rules() {
    if corpus("crs").is_none() {
        return;
    }
    let dir = TempDir::new("waf-check");
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "SecRule ARGS \"@rx a\" \"id:1,phase:2,pass\"\nSecRule ARGS \"@bogus x\" \"id:2,phase:2,pass\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("sekisho.toml");
    std::fs::write(&cfg, format!("[waf]\nrules = [{}]\n", crs_rules())).unwrap();
    let out = Command::new(bin())
        .args(["rules", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("REQUEST-942-APPLICATION-ATTACK-SQLI.conf: "),
        "{text}"
    );
    assert!(
        text.contains("waf total: ") && text.contains(" 0 broken"),
        "{text}"
    );
    // CRS's setup and defaults run at load, and its paranoia gates are decided there.
    let decided: usize = text
        .split(" rules run at load and ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no folding counts in {text}"));
    assert!(decided >= 40, "{text}");
    std::fs::write(
        &cfg,
        format!("[waf]\nrules = [{:?}]\n", bad.display().to_string()),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["rules", "check", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("{}:2: ", bad.display())), "{text}");
    assert!(text.contains("unknown operator @bogus"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_rules_and_a_broken_file_keeps_the_running_set() {
    if corpus("crs").is_none() {
        return;
    }
    let dir = TempDir::new("waf-reload");
    let local = dir.path().join("local.conf");
    std::fs::write(
        &local,
        "SecRule ARGS:x \"@streq one\" \"id:1001,phase:2,deny,status:403,msg:'one'\"\n",
    )
    .unwrap();
    let origin = Origin::start(None).await;
    let mut gw = start(
        "waf-reload",
        origin.port,
        &format!(", {:?}", local.display().to_string()),
        "",
    );
    assert_eq!(status(&gw, "/hello?x=one", &[]).await, "403");
    assert_eq!(status(&gw, "/hello?x=two", &[]).await, "200");
    std::fs::write(
        &local,
        "SecRule ARGS:x \"@streq two\" \"id:1002,phase:2,deny,status:403,msg:'two'\"\n",
    )
    .unwrap();
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while status(&gw, "/hello?x=two", &[]).await != "403" {
        assert!(
            std::time::Instant::now() < deadline,
            "the new rule never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(
        status(&gw, "/hello?x=one", &[]).await,
        "200",
        "the old rule is gone"
    );
    // A broken file: the reload is refused, the log names file and line, the set in force stays.
    std::fs::write(&local, "SecRule ARGS:x \"@streq two\" \"id:1003,phase:2,deny\"\nSecRule ARGS \"@bogus\" \"id:1004\"\n").unwrap();
    gw.reload();
    let log = gw.wait_reload_failure();
    assert!(log.contains(&format!("{}:2", local.display())), "{log}");
    assert_eq!(
        status(&gw, "/hello?x=two", &[]).await,
        "403",
        "the running set stays"
    );
    gw.stop();
}

/// A gateway whose WAF runs only `rules` (no CRS), holding at most 256 KiB per flow.
fn start_small(tag: &str, dir: &TempDir, origin: u16, rules: &str) -> Gateway {
    let conf = dir.path().join("limits.conf");
    std::fs::write(&conf, rules).unwrap();
    let listener =
        "[[listener]]\nname = \"web\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\nstages = [\"waf\"]\n";
    let extra = format!(
        "[[route]]\nlistener = \"web\"\nupstreams = [\"http://127.0.0.1:{origin}\"]\n\n\
         [waf]\nrules = [{:?}]\n\n[limits]\nhold_bytes_per_flow = 262144\n",
        conf.display().to_string()
    );
    Gateway::start_with_listeners(tag, listener, "", &extra)
}

/// `curl` posting `body` (a file) to `path`; returns "status size_of_response_body" and the body.
async fn post_file(gw: &Gateway, path: &str, body: &std::path::Path, extra: &[&str]) -> String {
    let url = format!("http://{}{path}", gw.proxy);
    let data = format!("@{}", body.display());
    let mut args = vec![
        "-s",
        "-w",
        " %{http_code}",
        "-H",
        "Content-Type: application/x-www-form-urlencoded",
        "--data-binary",
        &data,
    ];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args).await.stdout
}

const LIMIT_RULES: &str = "SecRuleEngine On\nSecRequestBodyAccess On\nSecResponseBodyAccess On\n\
SecResponseBodyMimeType text/html\nSecRequestBodyLimit 65536\nSecResponseBodyLimit 65536\n\
SecRule REQUEST_BODY \"@contains EVIL\" \"id:1,phase:2,deny,status:403,log,msg:'evil body'\"\n\
SecRule RESPONSE_BODY \"@contains LEAK\" \"id:2,phase:4,deny,status:403,log,msg:'leak'\"\n\
SecRule INBOUND_DATA_ERROR \"@eq 1\" \"id:3,phase:2,pass,log,msg:'request body over the limit'\"\n\
SecRule OUTBOUND_DATA_ERROR \"@eq 1\" \"id:4,phase:4,pass,log,msg:'response body over the limit'\"\n";

/// `ProcessPartial` (ModSecurity's SecRequestBodyLimitAction / SecResponseBodyLimitAction):
/// the first 64 KiB are inspected and the rest streams through, so 4 MiB bodies pass a gateway
/// that may hold only 256 KiB per flow; an attack inside the limit is still blocked, one past
/// it is not (as in ModSecurity), and INBOUND/OUTBOUND_DATA_ERROR are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_stream_after_the_inspected_prefix() {
    let dir = TempDir::new("waf-partial");
    let big = 4 << 20;
    let mut late = vec![b'a'; big];
    late[big - 4..].copy_from_slice(b"EVIL");
    let mut early = vec![b'a'; big];
    early[100..104].copy_from_slice(b"EVIL");
    let (late_f, early_f) = (dir.path().join("late"), dir.path().join("early"));
    std::fs::write(&late_f, &late).unwrap();
    std::fs::write(&early_f, &early).unwrap();
    let mut page = vec![b'p'; big];
    page[big - 4..].copy_from_slice(b"LEAK");
    let mut leak = vec![b'p'; big];
    leak[10..14].copy_from_slice(b"LEAK");
    let html = vec![("content-type".to_string(), "text/html".to_string())];
    let files = common::Files::from([
        ("/page.html".to_string(), (html.clone(), page)),
        ("/leak.html".to_string(), (html, leak)),
    ]);
    let origin = Origin::start_with_files(None, files).await;
    let rules = format!(
        "{LIMIT_RULES}SecRequestBodyLimitAction ProcessPartial\nSecResponseBodyLimitAction ProcessPartial\n"
    );
    let mut gw = start_small("waf-partial", &dir, origin.port, &rules);
    // The origin's /count answers how many body bytes reached it.
    assert_eq!(
        post_file(&gw, "/count", &late_f, &[]).await,
        format!("{big} 200"),
        "past the limit, streamed whole"
    );
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    assert_eq!(
        post_file(&gw, "/count", &late_f, &chunked).await,
        format!("{big} 200"),
        "chunked too"
    );
    let early_answer = post_file(&gw, "/count", &early_f, &[]).await;
    assert!(early_answer.ends_with(" 403"), "{early_answer}");
    let url = format!("http://{}/page.html", gw.proxy);
    let got = curl(&[
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &url,
    ])
    .await;
    assert_eq!(got.stdout, format!("200 {big}"), "response past the limit");
    let url = format!("http://{}/leak.html", gw.proxy);
    let got = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]).await;
    assert_eq!(got.stdout, "403", "a leak inside the inspected prefix");
    // 100 MiB without `Expect: 100-continue` (the gateway reads a held body before the request
    // goes upstream): its memory does not grow with the body.
    let huge = 100usize << 20;
    let huge_f = dir.path().join("huge");
    std::fs::File::create(&huge_f)
        .unwrap()
        .set_len(huge as u64)
        .unwrap();
    let before = gw.rss_kib();
    assert_eq!(
        post_file(&gw, "/count", &huge_f, &["-H", "Expect:"]).await,
        format!("{huge} 200")
    );
    let peak = gw.peak_rss_kib();
    assert!(
        peak < before + 48 * 1024,
        "gateway memory grew from {before} KiB to a peak of {peak} KiB on a 100 MiB upload"
    );
    gw.stop();
    let ids: Vec<Vec<u64>> = waf_events(&gw).iter().map(fired).collect();
    assert!(ids.iter().any(|f| f.contains(&1)), "{ids:?}");
    assert!(ids.iter().any(|f| f.contains(&2)), "{ids:?}");
    assert!(
        ids.iter().filter(|f| f.contains(&3)).count() >= 2,
        "{ids:?}"
    );
    assert!(ids.iter().any(|f| f.contains(&4)), "{ids:?}");
    assert_eq!(
        gw.events()
            .iter()
            .filter(|e| e["rule"]["id"] == "hold-limit")
            .count(),
        0,
        "nothing overflowed the 256 KiB hold"
    );
}

/// `Reject`: a Content-Length over the limit gets 413 before any byte is read, a chunked body
/// gets 413 once it passes the limit; neither reaches the origin. Responses get 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_limit_are_refused_with_reject() {
    let dir = TempDir::new("waf-reject");
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'a'; 200_000]).unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, vec![b'a'; 60_000]).unwrap();
    let html = vec![("content-type".to_string(), "text/html".to_string())];
    let files = common::Files::from([("/page.html".to_string(), (html, vec![b'p'; 1 << 20]))]);
    let origin = Origin::start_with_files(None, files).await;
    let rules = format!(
        "{LIMIT_RULES}SecRequestBodyLimitAction Reject\nSecResponseBodyLimitAction Reject\n"
    );
    let mut gw = start_small("waf-reject", &dir, origin.port, &rules);
    let answer = post_file(&gw, "/count", &body, &[]).await;
    assert!(answer.ends_with(" 413"), "{answer}");
    let answer = post_file(&gw, "/count", &body, &["-H", "Transfer-Encoding: chunked"]).await;
    assert!(answer.ends_with(" 413"), "{answer}");
    assert_eq!(
        post_file(&gw, "/count", &small, &[]).await,
        "60000 200",
        "within the limit"
    );
    let url = format!("http://{}/page.html", gw.proxy);
    let got = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]).await;
    assert_eq!(got.stdout, "500", "a response over the limit");
    gw.stop();
    let seen = origin.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|s| s.as_str() == "POST /count").count(),
        1,
        "only the body within the limit reached the origin: {seen:?}"
    );
}

/// A transaction whose response never comes (the upstream is down) still gets its one event,
/// at the end of the flow, with what phase 5 adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_are_reported_when_the_upstream_never_answers() {
    let dir = TempDir::new("waf-noupstream");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let rules = "SecRuleEngine On\n\
SecRule ARGS \"@contains probe\" \"id:7,phase:1,pass,log,msg:'probe seen'\"\n\
SecAction \"id:8,phase:5,pass,log,msg:'logging phase'\"\n";
    let mut gw = start_small("waf-noupstream", &dir, port, rules);
    let url = format!("http://{}/x?q=probe", gw.proxy);
    let got = curl(&["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]).await;
    assert_eq!(got.stdout, "502");
    gw.stop();
    let events = waf_events(&gw);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(fired(&events[0]), vec![7, 8]);
}

/// Raw `<`, `>`, `"` and `` ` `` in a request target (curl sends them as typed; Apache and
/// nginx take them) reach the WAF, which judges the target as sent: an XSS is blocked with
/// CRS's own rules rather than refused by the HTTP parser, and benign quotes pass (upstream
/// gets them percent-encoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_characters_in_the_target_reach_the_waf() {
    if corpus("crs").is_none() {
        return;
    }
    let origin = Origin::start(None).await;
    let mut gw = start("waf-raw", origin.port, "", "");
    assert_eq!(
        status(&gw, "/?q=<script>alert(1)</script>", &["-g"]).await,
        "403"
    );
    assert_eq!(
        status(&gw, "/hello?name=\"Sato\"&tag=`a`", &["-g"]).await,
        "200"
    );
    gw.stop();
    let events = waf_events(&gw);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(
        fired(&events[0]).contains(&941100),
        "{:?}",
        fired(&events[0])
    );
    let m = events[0]["matched_rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 941100)
        .unwrap();
    assert_eq!(m["variable"], "ARGS:q", "{m}");
    assert!(
        m["data"].as_str().unwrap().contains("<script>"),
        "judged as sent: {m}"
    );
}

/// Writes `raw` on one connection and reads what comes back until the gateway closes it or
/// `want` status lines arrived (bounded by a 10 s read timeout).
fn exchange(addr: &str, raw: &[u8], want: usize) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(raw).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&got).matches("HTTP/1.1 ").count() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Phase 2 of a request that announces no body runs at its head, without holding anything;
/// any announced length (`0`, chunked) is held and read; a body sent after a bodyless request
/// on the same connection is the next request, and is judged as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodyless_requests_are_judged_at_the_head_and_bodies_never_skip_phase_2() {
    let dir = TempDir::new("waf-bodyless");
    let origin = Origin::start(None).await;
    let rules = format!(
        "{LIMIT_RULES}SecRule ARGS \"@contains EVIL\" \"id:5,phase:2,deny,status:403,log,msg:'evil arg'\"\n"
    );
    let mut gw = start_small("waf-bodyless", &dir, origin.port, &rules);
    let addr = gw.proxy.to_string();
    let get = |q: &str| format!("GET /count?{q} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    let status = |raw: &str| {
        exchange(&addr, raw.as_bytes(), 1)
            .lines()
            .next()
            .map(str::to_string)
    };
    assert_eq!(
        status(&get("a=EVIL")).as_deref(),
        Some("HTTP/1.1 403 Forbidden")
    );
    assert_eq!(status(&get("a=good")).as_deref(), Some("HTTP/1.1 200 OK"));
    let chunked = "POST /count HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
                   Content-Type: application/x-www-form-urlencoded\r\n\
                   Connection: close\r\n\r\n4\r\nEVIL\r\n0\r\n\r\n";
    assert_eq!(status(chunked).as_deref(), Some("HTTP/1.1 403 Forbidden"));
    let pipelined = "GET /count HTTP/1.1\r\nHost: h\r\n\r\n\
                     POST /count HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\r\nEVIL";
    let answers = exchange(&addr, pipelined.as_bytes(), 2);
    // The origin's bodies end without a line break: status lines are found anywhere.
    let statuses: Vec<&str> = answers
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| answers[i..].lines().next())
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 200 OK", "HTTP/1.1 403 Forbidden"],
        "{answers}"
    );
    gw.stop();
    let seen = origin.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|s| s == "GET /count"), "{seen:?}");
    assert!(
        !seen.iter().any(|s| s.starts_with("POST")),
        "no body with EVIL reached the origin: {seen:?}"
    );
    let ids: Vec<u64> = waf_events(&gw).iter().flat_map(fired).collect();
    assert_eq!(ids, [5, 1, 1], "one event per blocked request");
}
