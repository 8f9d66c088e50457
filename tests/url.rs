//! The URL filter through the real binary with UT1 data: block (HTTP URL entries, CONNECT before
//! decryption, canonicalization tricks, expressions), warn pages with continue links remembered
//! per client and host, allow-list mode on a second listener, splice by category, live reload,
//! and `sekisho rules test-url`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

/// The UT1 blacklists, under the public corpora.
const UT1: &str = "ut1/blacklists";

/// The UT1 folder: only called by tests that checked `corpus(UT1)` first.
fn ut1() -> std::path::PathBuf {
    corpora().join(UT1)
}

/// The first domain of a UT1 category.
fn first_domain(cat: &str) -> String {
    std::fs::read_to_string(ut1().join(cat).join("domains"))
        .unwrap()
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#') && l.parse::<std::net::IpAddr>().is_err())
        .unwrap()
        .to_string()
}

/// The first URL entry of a UT1 category.
fn first_url(cat: &str) -> String {
    std::fs::read_to_string(ut1().join(cat).join("urls"))
        .unwrap()
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap()
        .to_string()
}

fn url_table(dir: &std::path::Path, block_extra: &str) -> String {
    std::fs::write(dir.join("warn.list"), "# warned\n127.0.0.1\n").unwrap();
    std::fs::write(dir.join("care.list"), "localhost\n10.20.0.0/16\n").unwrap();
    std::fs::write(dir.join("spliced.list"), "::1\n").unwrap();
    format!(
        "[urlfilter]\ncategory_dirs = [{:?}]\n\
         categories = [\"malware\", \"phishing\", \"gambling\", \"bank\", \"shopping\", \"adult\", \"liste_blanche\"]\n\
         splice = [\"spliced\", \"bank\"]\nwarn_ttl_secs = 3600\n\
         [[urlfilter.list]]\nname = \"warned\"\npath = {:?}\n\
         [[urlfilter.list]]\nname = \"care\"\npath = {:?}\n\
         [[urlfilter.list]]\nname = \"spliced\"\npath = {:?}\n\
         [[urlfilter.policy]]\nname = \"hospital\"\nlisteners = [\"hospital\"]\ndefault = \"block\"\nallow = [\"care\", \"liste_blanche\"]\nblock = [\"malware\", \"phishing\"]\n\
         [[urlfilter.policy]]\nname = \"office\"\ndefault = \"allow\"\nwarn = [\"warned\", \"shopping\"]\nalert = [\"bank\"]\nblock = [\"malware\", \"phishing\", \"gambling\"{block_extra}]\n",
        ut1().display().to_string(),
        dir.join("warn.list").display().to_string(),
        dir.join("care.list").display().to_string(),
        dir.join("spliced.list").display().to_string(),
    )
}

fn pages() -> Files {
    let mut f = Files::new();
    for p in ["/", "/page", "/secure"] {
        f.insert(
            p.to_string(),
            (
                vec![("content-type".to_string(), "text/html".to_string())],
                b"<p>ok</p>".to_vec(),
            ),
        );
    }
    f
}

/// `curl -s -o /dev/null -w %{http_code}` plus `args`: the status code in `stdout`.
async fn status(args: &[&str]) -> Curl {
    let mut all = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    curl(&all).await
}

/// The continue link of a warning page.
fn warn_link(page: &str) -> String {
    page.split("href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .replace("&amp;", "&")
}

fn url_events(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.events()
        .into_iter()
        .filter(|e| e["stage"] == "url")
        .collect()
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_warn_allow_list_and_splice_through_the_proxy() {
    if corpus(UT1).is_none() {
        return;
    }
    let pki = TestPki::new("Origin Test CA", &["localhost", "127.0.0.1", "::1"]);
    let tls_origin = Origin::start_with_files(Some(pki.server_config()), pages()).await;
    let origin = Origin::start_with_files(None, pages()).await;
    let lists = TempDir::new("url-lists");
    let ca = lists.path().join("origin-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let listeners = "[[listener]]\nname = \"office\"\nkind = \"forward\"\naddr = [\"127.0.0.1:0\"]\n\
                     [[listener]]\nname = \"hospital\"\nkind = \"forward\"\naddr = [\"127.0.0.1:0\"]\n";
    let gw = Gateway::start_with_listeners(
        "url",
        listeners,
        &format!("upstream_roots = [{:?}]", ca.display().to_string()),
        &url_table(lists.path(), ""),
    );
    let office = format!("http://{}", gw.all[0]);
    let hospital = format!("http://{}", gw.all[1]);
    let gwca = gw.ca_path().display().to_string();

    // 1. A UT1 malware URL entry over plain HTTP: block page naming the category and event id.
    let mal = first_url("malware");
    let r = curl(&["-i", "-x", &office, &format!("http://{mal}")]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    assert!(
        r.stdout.contains("malware") || r.stdout.contains("phishing"),
        "{}",
        r.stdout
    );
    let id = header(&r.stdout, "x-sekisho-event-id").unwrap().to_string();
    assert!(r.stdout.contains(&id));
    let ev = gw.wait_line("events.jsonl", |e| e["event"]["id"] == id.as_str());
    assert_eq!(ev["stage"], "url");
    assert_eq!(ev["event"]["action"], "blocked");
    let uf = &ev["url_filter"];
    assert!(
        uf["category"] == "malware" || uf["category"] == "phishing",
        "{ev:#}"
    );
    assert_eq!(uf["match_type"], "url");
    assert_eq!(uf["policy"], "office");
    assert_eq!(uf["policy_action"], "block");
    assert!(uf["list"].as_str().unwrap().ends_with("/urls"), "{ev:#}");
    assert!(
        mal.starts_with(uf["entry"].as_str().unwrap().trim_end_matches('/')),
        "{ev:#}"
    );
    assert_eq!(ev["rule"]["engine"], "urlfilter");

    // 2. CONNECT to a UT1 gambling domain: judged at CONNECT before anything is dialled; the
    // block page is shown inside the TLS session, naming the category.
    let gamble = first_domain("gambling");
    let r = curl(&[
        "-x",
        &office,
        "--cacert",
        &gwca,
        "-w",
        "\n%{http_code}",
        &format!("https://www.{gamble}/"),
    ])
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(r.stdout.contains("category “gambling”"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |e| {
        e["stage"] == "url" && e["evidence"]["location"] == "connect.host"
    });
    assert_eq!(ev["url_filter"]["category"], "gambling");
    assert_eq!(ev["url_filter"]["entry"], gamble.as_str());
    assert_eq!(ev["url_filter"]["match_type"], "domain");
    let flow = gw.wait_line("flows.jsonl", |f| {
        f["method"] == "CONNECT" && f["host"] == format!("www.{gamble}").as_str()
    });
    assert_eq!(
        flow["tls"]["mode"], "decrypted",
        "decrypted only to show the page: {flow:#}"
    );
    assert_eq!(flow["bytes_to_server"], 0, "{flow:#}");
    assert_eq!(flow["status"], 403);

    // 3. Canonicalization: case, trailing dots, escapes and a userinfo trick all land on the entry.
    let upper = gamble.to_uppercase();
    let escaped: String = gamble.bytes().map(|b| format!("%{b:02X}")).collect();
    for u in [
        format!("http://WWW.{upper}./"),
        format!("http://{escaped}/x"),
        format!("http://..{gamble}../a/./b/../"),
        format!("http://user@{gamble}:80/"),
    ] {
        let r = status(&["-x", &office, &u]).await;
        assert_eq!(r.stdout, "403", "{u} was not blocked: {}", r.stderr);
    }

    // 4. An expression (UT1 malware) on an IP host in decimal form: 2130706435 = 127.0.0.3.
    let r = curl(&["-i", "-x", &office, "http://2130706435/search?q=123"]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |e| {
        e["stage"] == "url" && e["url_filter"]["match_type"] == "expression"
    });
    assert_eq!(ev["url_filter"]["category"], "malware");
    assert_eq!(ev["evidence"]["excerpt"], "http://127.0.0.3/search?q=123");

    // 5. Allowed: no URL event, the origin answers.
    let before = url_events(&gw).len();
    let r = status(&["-x", &office, &format!("http://localhost:{}/", origin.port)]).await;
    assert_eq!(r.stdout, "200", "{}", r.stderr);

    // 6. Warn over plain HTTP: a page with a continue link; following it remembers this client
    //    and host; another client (127.0.0.2) still sees the page.
    let target = format!("http://127.0.0.1:{}/page?x=1", origin.port);
    let r = curl(&["-i", "-x", &office, &target]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    assert_eq!(header(&r.stdout, "x-sekisho-action"), Some("warn"));
    assert!(r.stdout.contains("warned"), "{}", r.stdout);
    let link = warn_link(&r.stdout);
    assert!(
        link.starts_with(&format!(
            "http://127.0.0.1:{}/.sekisho/continue?token=",
            origin.port
        )),
        "{link}"
    );
    // Another client cannot use the link.
    let r = status(&["--interface", "127.0.0.2", "-x", &office, &link]).await;
    assert_eq!(r.stdout, "403");
    // The link was spent by the wrong client: ask again, then continue as the right one.
    let r = curl(&["-i", "-x", &office, &target]).await;
    let link = warn_link(&r.stdout);
    let r = curl(&["-i", "-x", &office, &link]).await;
    assert!(r.stdout.starts_with("HTTP/1.1 303"), "{}", r.stdout);
    assert_eq!(header(&r.stdout, "location"), Some(target.as_str()));
    let r = status(&["-x", &office, &target]).await;
    assert_eq!(r.stdout, "200", "acknowledged host must pass");
    let r = status(&["--interface", "127.0.0.2", "-x", &office, &target]).await;
    assert_eq!(r.stdout, "403", "another client still gets the warning");
    gw.wait_line("events.jsonl", |e| {
        e["stage"] == "url" && e["rule"]["id"] == "warned:continue"
    });

    // 7. Warn over decrypted HTTPS (the CONNECT passes; the page comes inside the tunnel).
    let target = format!("https://127.0.0.1:{}/secure", tls_origin.port);
    let r = curl(&[
        "-i",
        "-x",
        &office,
        "--cacert",
        &gwca,
        "--interface",
        "127.0.0.4",
        &target,
    ])
    .await;
    assert!(r.stdout.contains("HTTP/2 403"), "{} {}", r.stdout, r.stderr);
    assert_eq!(header(&r.stdout, "x-sekisho-action"), Some("warn"));
    let link = warn_link(&r.stdout);
    assert!(
        link.starts_with(&format!(
            "https://127.0.0.1:{}/.sekisho/continue?token=",
            tls_origin.port
        )),
        "{link}"
    );
    let r = curl(&[
        "-i",
        "-x",
        &office,
        "--cacert",
        &gwca,
        "--interface",
        "127.0.0.4",
        &link,
    ])
    .await;
    assert!(r.stdout.contains(" 303"), "{}", r.stdout);
    let r = status(&[
        "-x",
        &office,
        "--cacert",
        &gwca,
        "--interface",
        "127.0.0.4",
        &target,
    ])
    .await;
    assert_eq!(r.stdout, "200", "{}", r.stderr);

    // 8. Splice by category: [::1] is in the "spliced" list, so the client sees the origin's own
    //    certificate (verifies against the origin CA, not the gateway's).
    let r = status(&[
        "-x",
        &office,
        "--cacert",
        &ca.display().to_string(),
        &format!("https://[::1]:{}/", tls_origin.port),
    ])
    .await;
    assert_eq!(r.stdout, "200", "spliced tunnel: {}", r.stderr);

    // 9. Allow-list mode on the hospital listener: the care list passes (HTTP and decrypted
    //    HTTPS), everything else is blocked by default, UT1 malware stays blocked.
    let r = status(&[
        "-x",
        &hospital,
        &format!("http://localhost:{}/", origin.port),
    ])
    .await;
    assert_eq!(r.stdout, "200", "{}", r.stderr);
    let r = status(&[
        "-x",
        &hospital,
        "--cacert",
        &gwca,
        &format!("https://localhost:{}/", tls_origin.port),
    ])
    .await;
    assert_eq!(r.stdout, "200", "{}", r.stderr);
    let r = curl(&[
        "-i",
        "-x",
        &hospital,
        &format!("http://127.0.0.1:{}/", origin.port),
    ])
    .await;
    assert!(r.stdout.starts_with("HTTP/1.1 403"), "{}", r.stdout);
    let id = header(&r.stdout, "x-sekisho-event-id").unwrap().to_string();
    let ev = gw.wait_line("events.jsonl", |e| e["event"]["id"] == id.as_str());
    assert_eq!(ev["url_filter"]["category"], "default");
    assert_eq!(ev["url_filter"]["policy"], "hospital");
    assert_eq!(ev["listener"], "hospital");
    let r = curl(&[
        "-x",
        &hospital,
        "--cacert",
        &gwca,
        "-w",
        "\n%{http_code}",
        "https://unlisted.example.invalid/",
    ])
    .await;
    assert!(
        r.stdout.ends_with("\n403"),
        "unlisted host refused at CONNECT, its page shown in the session: {} {}",
        r.stdout,
        r.stderr
    );
    let r = status(&["-x", &hospital, &format!("http://{mal}")]).await;
    assert_eq!(r.stdout, "403");
    // The office listener's allowed host is not on the hospital's list either way.
    assert!(url_events(&gw).len() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_lists_and_bad_lines_are_reported() {
    let origin = Origin::start_with_files(None, pages()).await;
    let lists = TempDir::new("url-reload");
    let dir = lists.path();
    std::fs::write(dir.join("deny.list"), "# ours\n127.0.0.1\nbad line here\n").unwrap();
    let table = |deny: &str| {
        format!(
            "[urlfilter]\ncategory_dirs = []\n[[urlfilter.list]]\nname = \"deny\"\npath = {:?}\n\
             [[urlfilter.policy]]\nname = \"p\"\nblock = [\"deny\"{deny}]\n",
            dir.join("deny.list").display().to_string()
        )
    };
    let gw = Gateway::start("url-reload", "", &table(""));
    let px = gw.proxy_url();
    let log = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(
        log.contains("deny.list:3"),
        "malformed line not reported with file:line: {log}"
    );
    let code = |u: String| {
        let px = px.clone();
        async move { status(&["-x", &px, &u]).await.stdout }
    };
    assert_eq!(
        code(format!("http://127.0.0.1:{}/", origin.port)).await,
        "403"
    );
    assert_eq!(
        code(format!("http://localhost:{}/", origin.port)).await,
        "200"
    );
    // New list content: localhost denied, 127.0.0.1 no longer.
    std::fs::write(dir.join("deny.list"), "localhost\n").unwrap();
    let cfg = gw.dir.path().join("sekisho.toml");
    gw.reload();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if code(format!("http://localhost:{}/", origin.port)).await == "403" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "reload did not apply");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        code(format!("http://127.0.0.1:{}/", origin.port)).await,
        "200"
    );
    // A policy naming a list that does not exist: the reload fails, the running lists stay.
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("block = [\"deny\"]", "block = [\"deny\", \"nope\"]"),
    )
    .unwrap();
    gw.reload();
    let log = gw.wait_reload_failure();
    assert!(log.contains("\"nope\""), "{log}");
    assert_eq!(
        code(format!("http://localhost:{}/", origin.port)).await,
        "403"
    );
}

#[test]
fn rules_test_url_prints_canonical_matches_and_action() {
    if corpus(UT1).is_none() {
        return;
    }
    let lists = TempDir::new("url-cli");
    let cfg = lists.path().join("sekisho.toml");
    std::fs::write(&cfg, url_table(lists.path(), "")).unwrap();
    let gamble = first_domain("gambling");
    let out = Command::new(bin())
        .args(["rules", "test-url", "--config"])
        .arg(&cfg)
        .args(["--policy", "office"])
        .arg(format!(
            "HTTP://WWW.{}.:80/a/./b/../%63?q#frag",
            gamble.to_uppercase()
        ))
        .arg("http://3279880203/blah")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{text}");
    assert!(
        blocks[0].contains(&format!("canonical: http://www.{gamble}/a/c?q\n")),
        "{text}"
    );
    assert!(
        blocks[0].contains(&format!("match: category gambling domain {gamble} (")),
        "{text}"
    );
    assert!(
        blocks[0].contains("before decryption (CONNECT host / SNI"),
        "{text}"
    );
    assert!(
        blocks[0].trim_end().ends_with(&format!(
            "action: block (category gambling, domain entry {gamble})"
        )),
        "{text}"
    );
    assert!(
        blocks[1].contains("canonical: http://195.127.0.11/blah"),
        "{text}"
    );
    assert!(blocks[1].contains("match: none"), "{text}");
    assert!(
        blocks[1]
            .trim_end()
            .ends_with("action: allow (policy office default)"),
        "{text}"
    );
    // The hospital policy by listener: the same URL is blocked by default.
    let out = Command::new(bin())
        .args(["rules", "test-url", "--config"])
        .arg(&cfg)
        .args([
            "--listener",
            "hospital",
            "localhost/x",
            "bank-unknown.invalid",
            "http://169083649/",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("match: list care domain localhost"), "{text}");
    assert!(
        text.contains("action: allow (list care, domain entry localhost)"),
        "{text}"
    );
    assert!(
        text.contains("action: block (policy hospital default)"),
        "{text}"
    );
    // A network entry (10.20.0.0/16) matches the decimal form of 10.20.3.1.
    assert!(
        text.contains("canonical: http://10.20.3.1/")
            && text.contains("match: list care ip 10.20.0.0/16")
            && text.contains("action: allow (list care, ip entry 10.20.0.0/16)"),
        "{text}"
    );
    // A config without [urlfilter] is a clear error.
    std::fs::write(&cfg, "").unwrap();
    let out = Command::new(bin())
        .args(["rules", "test-url", "--config"])
        .arg(&cfg)
        .arg("x.test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [urlfilter] table"));
}
