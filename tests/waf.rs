//! The `waf` stage end to end through the real binary: a plain-HTTP reverse listener with OWASP
//! CRS in blocking mode in front of a loopback origin; attacks get 403 and one event carrying
//! every matched rule, benign requests pass; a route can turn the WAF off or add its own
//! exclusions; `rules check` reports the WAF files; a broken rule file names file and line.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{bin, corpora, curl, Gateway, Origin, TempDir};

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
    // The request side's event (the response side adds one for CRS's correlation rule 980170).
    let events = waf_events(&gw);
    let request = events.first().unwrap();
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
