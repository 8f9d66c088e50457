//! `[[av.icap]]` against Debian's c-icap with its virus_scan module and clamav-daemon, started
//! by the test with a signature database it writes: the gateway blocks what they find in
//! downloads (RESPMOD) and uploads (REQMOD), passes clean bodies whole, and a server that is
//! down or never answers blocks (fail-closed) or alerts (fail-open). `sekisho scan` asks them too.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// clamd and c-icap on loopback, stopped on drop.
struct IcapStack {
    dir: TempDir,
    port: u16,
    children: Vec<Child>,
}

impl Drop for IcapStack {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for(what: &str, log: &Path, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl IcapStack {
    /// clamd with one `.hdb` signature (EICAR's MD5, named `Sekisho.ICAP.Test`), and c-icap
    /// serving `avscan` (REQMOD and RESPMOD, 204 allowed) through clamd.
    fn start() -> IcapStack {
        let dir = TempDir::new("icap");
        let d = dir.path().to_path_buf();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(eicar()));
        std::fs::write(
            d.join("db/sekisho.hdb"),
            format!("{md5}:{}:Sekisho.ICAP.Test\n", eicar().len()),
        )
        .unwrap();
        let sock = d.join("clamd.sock");
        std::fs::write(
            d.join("clamd.conf"),
            format!(
                "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\nUser {}\n",
                sock.display(),
                d.join("db").display(),
                d.join("clamd.log").display(),
                whoami(),
            ),
        )
        .unwrap();
        let clamd = Command::new(which("clamd"))
            .arg("-c")
            .arg(d.join("clamd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clamd (clamav-daemon) is installed");
        let mut stack = IcapStack {
            dir,
            port: free_port(),
            children: vec![clamd],
        };
        wait_for("clamd", &d.join("clamd.log"), || sock.exists());
        std::fs::write(d.join("c-icap.conf"), cicap_conf(&d, stack.port, &sock)).unwrap();
        let cicap = Command::new("c-icap")
            .args(["-N", "-D", "-f"])
            .arg(d.join("c-icap.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("c-icap.out")).unwrap())
            .spawn()
            .expect("c-icap is installed");
        stack.children.push(cicap);
        let port = stack.port;
        wait_for("c-icap", &d.join("c-icap.out"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        stack
    }

    fn url(&self) -> String {
        format!("icap://127.0.0.1:{}/avscan", self.port)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

fn which(tool: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(d).join(tool);
        if p.exists() {
            return p;
        }
    }
    PathBuf::from(tool)
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn cicap_conf(d: &Path, port: u16, sock: &Path) -> String {
    let lib = "/usr/lib/x86_64-linux-gnu/c_icap";
    let lib = if Path::new(lib).exists() {
        lib.to_string()
    } else {
        glob_dir("/usr/lib", "c_icap").unwrap_or_else(|| lib.to_string())
    };
    format!(
        "PidFile {d}/c-icap.pid\nCommandsSocket {d}/c-icap.ctl\nTimeout 60\n\
         Port 127.0.0.1:{port}\nStartServers 1\nMaxServers 2\nMinSpareThreads 4\n\
         MaxSpareThreads 16\nThreadsPerChild 16\nTmpDir {d}\nMaxMemObject 131072\nDebugLevel 1\n\
         ModulesDir {lib}\nServicesDir {lib}\nTemplateDir /usr/share/c_icap/templates/\n\
         TemplateDefaultLanguage en\nLoadMagicFile /etc/c-icap/c-icap.magic\n\
         ServerLog {d}/server.log\nAccessLog {d}/access.log\n\
         Module common clamd_mod.so\nclamd_mod.ClamdSocket {sock}\n\
         Service antivirus_module virus_scan.so\n\
         ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple\n\
         virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n\
         virus_scan.MaxObjectSize 5M\nvirus_scan.DefaultEngine clamd\n",
        d = d.display(),
        sock = sock.display(),
    )
}

fn glob_dir(root: &str, name: &str) -> Option<String> {
    std::fs::read_dir(root).ok()?.flatten().find_map(|e| {
        let p = e.path().join(name);
        p.is_dir().then(|| p.display().to_string())
    })
}

/// 300 KB no signature matches: more than the preview, so it goes through `100 Continue`.
fn clean_bytes() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

fn files() -> Files {
    let h = |ct: &str| vec![("content-type".to_string(), ct.to_string())];
    let mut f = Files::new();
    f.insert(
        "/eicar.com".into(),
        (h("application/octet-stream"), eicar()),
    );
    f.insert(
        "/eicar.zip".into(),
        (h("application/zip"), zip_of("docs/eicar.com", &eicar())),
    );
    let mut gz = h("text/plain");
    gz.push(("content-encoding".into(), "gzip".into()));
    f.insert("/eicar.txt".into(), (gz, gzip(&eicar())));
    f.insert(
        "/clean.bin".into(),
        (h("application/octet-stream"), clean_bytes()),
    );
    f
}

async fn get(gw: &Gateway, url: &str) -> Curl {
    curl(&["-x", &gw.proxy_url(), "-w", "\n%{http_code}", url]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_icap_with_clamd_judges_downloads_and_uploads() {
    let icap = IcapStack::start();
    let origin = Origin::start_with_files(None, files()).await;
    let av = format!(
        "[av]\ncache_dir = \"\"\n\
         [[av.icap]]\nurl = \"{u}\"\nname = \"c-icap\"\npreview = 1024\n\
         [[av.icap]]\nurl = \"{u}\"\nname = \"c-icap-up\"\nmethod = \"reqmod\"\nallow_204 = false\n",
        u = icap.url()
    );
    let gw = Gateway::start("av-icap", "", &av);
    let base = format!("http://127.0.0.1:{}", origin.port);
    for (path, wrapped) in [
        ("/eicar.com", false),
        ("/eicar.zip", true),
        ("/eicar.txt", true),
    ] {
        let url = format!("{base}{path}");
        let r = get(&gw, &url).await;
        assert!(
            r.stdout.ends_with("\n403"),
            "{path} must be blocked: {}",
            r.stdout
        );
        let ev = gw.wait_line("events.jsonl", |v| v["http"]["url"] == url.as_str());
        assert_eq!(ev["rule"]["engine"], "icap", "{ev}");
        assert_eq!(ev["rule"]["id"], "Sekisho.ICAP.Test.UNOFFICIAL", "{ev}");
        assert_eq!(ev["rule"]["source_file"], icap.url().as_str());
        assert_eq!(ev["stage"], "av");
        assert_eq!(ev["evidence"]["location"], "response.body");
        if !wrapped {
            assert_eq!(ev["file"]["size"], 68);
        }
    }
    // A clean body larger than the preview passes whole.
    let url = format!("{base}/clean.bin");
    let proxy = gw.proxy_url();
    let w = "%{size_download} %{http_code}";
    let r = curl(&["-x", &proxy, "-o", "/dev/null", "-w", w, &url]).await;
    assert_eq!(r.stdout, "300000 200", "{}", r.stderr);
    // Uploads go through REQMOD: EICAR never reaches the origin, a clean one does (the server
    // echoes it back unchanged: allow_204 = false).
    let up = TempDir::new("icap-up");
    std::fs::write(up.path().join("eicar"), eicar()).unwrap();
    std::fs::write(up.path().join("clean"), clean_bytes()).unwrap();
    let url = format!("{base}/count");
    let r = upload(&gw, &url, &up.path().join("eicar")).await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |v| {
        v["http"]["url"] == url.as_str() && v["rule"]["engine"] == "icap"
    });
    assert_eq!(ev["evidence"]["location"], "request.body");
    let r = upload(&gw, &url, &up.path().join("clean")).await;
    assert_eq!(r.stdout, "300000\n200", "{}", r.stderr);
    let log = icap.access_log();
    assert!(
        log.contains("REQMOD") && log.contains("RESPMOD") && log.contains("OPTIONS"),
        "{log}"
    );
    let m = gw.metrics_text().await;
    for (series, at_least) in [
        (
            "sekisho_av_icap_requests_total{outcome=\"threat\",server=\"c-icap\"}",
            3.0,
        ),
        (
            "sekisho_av_icap_requests_total{outcome=\"clean\",server=\"c-icap\"}",
            1.0,
        ),
        (
            "sekisho_av_icap_requests_total{outcome=\"threat\",server=\"c-icap-up\"}",
            1.0,
        ),
        (
            "sekisho_av_icap_requests_total{outcome=\"clean\",server=\"c-icap-up\"}",
            1.0,
        ),
        ("sekisho_av_findings_total{engine=\"icap\"}", 4.0),
        ("sekisho_av_icap_seconds_count{server=\"c-icap\"}", 4.0),
    ] {
        assert!(metric(&m, series) >= at_least, "{series}: {m}");
    }

    // `sekisho scan` shows each file to the same servers.
    let dir = TempDir::new("icap-scan");
    std::fs::write(dir.path().join("a.zip"), zip_of("x/eicar.com", &eicar())).unwrap();
    std::fs::write(dir.path().join("clean.bin"), clean_bytes()).unwrap();
    let cfg = dir.path().join("scan.toml");
    std::fs::write(&cfg, &av).unwrap();
    let out = Command::new(bin())
        .args(["scan", "--config"])
        .arg(&cfg)
        .arg(dir.path().join("a.zip"))
        .arg(dir.path().join("clean.bin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("a.zip: Sekisho.ICAP.Test.UNOFFICIAL FOUND (file)"),
        "{text}"
    );
    assert!(text.contains("clean.bin: OK"), "{text}");
}

/// A listener that accepts and never answers.
async fn silent_server() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_cannot_answer_fails_closed_unless_told_otherwise() {
    let origin = Origin::start_with_files(None, files()).await;
    let dead = free_port();
    let (silent, _task) = silent_server().await;
    let av = format!(
        "[av]\ncache_dir = \"\"\n\
         [[av.icap]]\nurl = \"icap://127.0.0.1:{dead}/avscan\"\nname = \"down\"\non_error = \"fail-open\"\n\
         [[av.icap]]\nurl = \"icap://127.0.0.1:{silent}/avscan\"\nname = \"mute\"\nmethod = \"reqmod\"\ntimeout_secs = 1\n"
    );
    let gw = Gateway::start("av-icap-down", "", &av);
    let base = format!("http://127.0.0.1:{}", origin.port);
    // Download: the only RESPMOD server is down and fails open: passed, with an event.
    let url = format!("{base}/eicar.com");
    let r = get(&gw, &url).await;
    assert!(r.stdout.ends_with("\n200"), "{}", r.stdout);
    let ev = gw.wait_line("events.jsonl", |v| v["http"]["url"] == url.as_str());
    assert_eq!(ev["rule"]["id"], "Sekisho.ICAP.Error");
    assert_eq!(ev["event"]["category"], "uninspected");
    assert!(
        ev["rule"]["name"].as_str().unwrap_or("").contains("down"),
        "{ev}"
    );
    // Upload: the REQMOD server never answers; after its 1 s it fails closed.
    let up = TempDir::new("icap-mute");
    std::fs::write(up.path().join("clean"), b"just words").unwrap();
    let url = format!("{base}/count");
    let started = Instant::now();
    let r = upload(&gw, &url, &up.path().join("clean")).await;
    assert!(r.stdout.ends_with("\n403"), "{}", r.stdout);
    assert!(started.elapsed() < Duration::from_secs(20));
    let ev = gw.wait_line("events.jsonl", |v| {
        v["http"]["url"] == url.as_str() && v["rule"]["id"] == "Sekisho.ICAP.Error"
    });
    assert!(
        ev["rule"]["name"]
            .as_str()
            .unwrap_or("")
            .contains("no answer within"),
        "{ev}"
    );
    let m = gw.metrics_text().await;
    assert!(
        metric(
            &m,
            "sekisho_av_icap_requests_total{outcome=\"error\",server=\"mute\"}"
        ) >= 1.0,
        "{m}"
    );
    // `sekisho scan` with a server down that fails closed: an error, exit status 2.
    let dir = TempDir::new("icap-scan-down");
    std::fs::write(dir.path().join("f.txt"), b"words").unwrap();
    let cfg = dir.path().join("scan.toml");
    std::fs::write(
        &cfg,
        format!("[av]\ncache_dir = \"\"\n[[av.icap]]\nurl = \"icap://127.0.0.1:{dead}/avscan\"\n"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["scan", "--config"])
        .arg(&cfg)
        .arg(dir.path().join("f.txt"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("f.txt: ERROR ICAP server"), "{text}");
}
