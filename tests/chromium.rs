//! Headless Chromium (Debian `chromium`) through the forward proxy, with the gateway CA in an NSS
//! database the test creates: an HTTPS page renders, a blocked HTTPS site shows the block page
//! with the event id in the DOM, a warning page's continue link leads to the site, and a
//! server-sent-events page receives its first event within two seconds with the AV stage on.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// A browser profile whose NSS database trusts the gateway CA.
struct Browser {
    home: TempDir,
}

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = Path::new(dir).join(c);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("this test needs headless Chromium (Debian: apt-get install chromium libnss3-tools)");
}

impl Browser {
    fn new(ca: &Path) -> Browser {
        let home = TempDir::new("chromium-home");
        let db = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&db).unwrap();
        let sql = format!("sql:{}", db.display());
        let run = |args: &[&str]| {
            let out = std::process::Command::new("certutil")
                .args(args)
                .output()
                .expect("certutil (Debian: libnss3-tools)");
            assert!(
                out.status.success(),
                "certutil {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["-d", &sql, "-N", "--empty-password"]);
        run(&[
            "-d",
            &sql,
            "-A",
            "-t",
            "C,,",
            "-n",
            "Sekisho test CA",
            "-i",
            ca.to_str().unwrap(),
        ]);
        Browser { home }
    }

    /// The DOM of `url` once the page has loaded, fetched through `proxy`.
    async fn dom(&self, proxy: std::net::SocketAddr, url: &str) -> String {
        let profile = self.home.path().join("profile");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(chromium())
                .env("HOME", self.home.path())
                .args([
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-dev-shm-usage",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("--proxy-server=http://{proxy}"))
                // Chromium sends loopback hosts direct unless told otherwise.
                .arg("--proxy-bypass-list=<-loopback>")
                .arg("--dump-dom")
                .arg(url)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("chromium finished within a minute")
        .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A page that opens an event stream and holds its `load` event for three seconds (an image
/// that answers late), so the DOM dumped at `load` shows when the first event came.
const SSE_PAGE: &str = r#"<!DOCTYPE html><html><body>
<div id="first">none</div><div id="log"></div>
<script>
const t0 = performance.now();
const es = new EventSource('/sse/5');
es.onmessage = (e) => {
  const f = document.getElementById('first');
  if (f.textContent === 'none') f.textContent = String(Math.round(performance.now() - t0));
  document.getElementById('log').textContent += e.data + ';';
};
</script>
<img src="/sleep/3" alt="">
</body></html>"#;

fn html(body: &str) -> (Vec<(String, String)>, Vec<u8>) {
    (
        vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body.as_bytes().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_pages_blocks_warnings_and_event_streams() {
    let pki = TestPki::new("Origin Test CA", &["localhost", "127.0.0.1"]);
    let mut files = Files::new();
    files.insert(
        "/plain".into(),
        html("<h1 id=\"ok\">rendered through sekisho</h1>"),
    );
    files.insert("/events".into(), html(SSE_PAGE));
    let origin = Origin::start_with_files(Some(pki.server_config()), files).await;
    let dir = TempDir::new("chromium-cfg");
    let roots = dir.path().join("origin-ca.pem");
    std::fs::write(&roots, &pki.ca_pem).unwrap();
    let warned = dir.path().join("warn.list");
    std::fs::write(&warned, "127.0.0.1\n").unwrap();
    let extra = format!(
        "[policy]\ndeny_hosts = [\"blocked.test\"]\n\n\
         [urlfilter]\nwarn_ttl_secs = 3600\n\
         [[urlfilter.list]]\nname = \"warned\"\npath = {:?}\n\
         [[urlfilter.policy]]\nname = \"office\"\ndefault = \"allow\"\nwarn = [\"warned\"]\n\n\
         [av]\nyara = [\"{}\"]\nclamav = [\"{}\"]\ncache_dir = \"\"\n",
        warned.display().to_string(),
        repo().join("rules/yara").display(),
        repo().join("rules/clamav").display(),
    );
    let gw = Gateway::start(
        "chromium",
        &format!("upstream_roots = [\"{}\"]", roots.display()),
        &extra,
    );
    let browser = Browser::new(&gw.ca_path());
    let port = origin.port;

    // A normal HTTPS page renders (the minted certificate is trusted through the NSS db).
    let dom = browser
        .dom(gw.proxy, &format!("https://localhost:{port}/plain"))
        .await;
    assert!(dom.contains("rendered through sekisho"), "{dom}");

    // A blocked HTTPS site: the block page, rendered, with the event id in the DOM.
    let dom = browser.dom(gw.proxy, "https://blocked.test/").await;
    let id = dom
        .split("id=\"event-id\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| panic!("no event id in the DOM: {dom}"))
        .to_string();
    assert!(dom.contains("list of blocked sites"), "{dom}");
    let ev = gw.wait_line("events.jsonl", |v| v["event"]["id"] == id.as_str());
    assert_eq!(ev["destination"]["domain"], "blocked.test");

    // A warning page: its continue link leads to the site.
    let dom = browser
        .dom(gw.proxy, &format!("https://127.0.0.1:{port}/plain"))
        .await;
    let link = dom
        .split("id=\"continue\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no continue link in the DOM: {dom}"))
        .replace("&amp;", "&");
    let dom = browser.dom(gw.proxy, &link).await;
    assert!(
        dom.contains("rendered through sekisho"),
        "after continuing: {dom}"
    );

    // Server-sent events through the AV stage: the first event within two seconds.
    let dom = browser
        .dom(gw.proxy, &format!("https://localhost:{port}/events"))
        .await;
    let first: u64 = dom
        .split("id=\"first\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no event arrived before the page loaded: {dom}"));
    println!("chromium: SSE through the AV stage, first event after {first} ms");
    assert!(first < 2000, "first event after {first} ms");
    assert!(dom.contains("event 0;event 1;"), "{dom}");
}
