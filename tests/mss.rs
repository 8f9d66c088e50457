//! MSS delivery end to end: the real `sekisho` binary sends threat events and communication
//! logs to rsyslog (Debian package; config generated here) over TCP and TLS and to `sekisho
//! collector` over HTTP. The collector is killed mid-stream and restarted, the gateway restarts
//! with a non-empty spool, a small spool fills, TLS verification fails, values are masked, and
//! `sekisho logs verify` catches an edited line.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{bin, free_port, metric, Collector, Gateway, TempDir, TestPki};

fn rsyslogd() -> &'static str {
    for p in ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("rsyslogd not found: install the Debian packages rsyslog and rsyslog-openssl (scripts/test.sh does as root)");
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for c in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(c).unwrap());
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// rsyslog with one imtcp listener (TLS when `tls` names CA, cert and key files), writing each
/// message's MSG to `out.log`.
struct Rsyslog {
    dir: PathBuf,
    port: u16,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
    child: Option<Child>,
}

impl Rsyslog {
    fn new(dir: &Path, port: u16, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Rsyslog {
        let dir = dir.join(format!("rsyslog-{port}"));
        std::fs::create_dir_all(dir.join("work")).unwrap();
        Rsyslog {
            dir,
            port,
            tls,
            child: None,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out.log")
    }

    fn start(&mut self) {
        let d = self.dir.display();
        let (global_tls, module) = match &self.tls {
            None => (String::new(), "module(load=\"imtcp\")".to_string()),
            Some((ca, cert, key)) => (
                format!(
                    " defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                    ca.display(),
                    cert.display(),
                    key.display()
                ),
                "module(load=\"imtcp\" streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\")"
                    .to_string(),
            ),
        };
        let conf = format!(
            "global(workDirectory=\"{d}/work\" maxMessageSize=\"64k\"{global_tls})\n\
             {module}\n\
             template(name=\"m\" type=\"string\" string=\"%msg%\\n\")\n\
             ruleset(name=\"r\") {{ action(type=\"omfile\" file=\"{d}/out.log\" template=\"m\" flushOnTXEnd=\"on\" asyncWriting=\"off\") }}\n\
             input(type=\"imtcp\" port=\"{}\" address=\"127.0.0.1\" ruleset=\"r\")\n",
            self.port
        );
        std::fs::write(self.dir.join("rsyslog.conf"), conf).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("rsyslogd.log"))
            .unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslogd.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Wait (bounded) until it listens.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen: {}",
                std::fs::read_to_string(self.dir.join("rsyslogd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: whatever it has not written is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.out())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.kill();
    }
}

/// JSON objects among rsyslog's lines.
fn json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Counts per `event.id` of objects whose `event_type` is `kind`.
fn ids(values: &[serde_json::Value], kind: &str) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in values.iter().filter(|v| v["event_type"] == kind) {
        if let Some(id) = v["event"]["id"].as_str() {
            *m.entry(id.to_string()).or_insert(0) += 1;
        }
    }
    m
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Threat events the gateway logged locally (the reference for what must arrive).
fn local_ids(gw: &Gateway) -> Vec<String> {
    gw.events()
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_string())
        .collect()
}

const DENY: &str = "[policy]\ndeny_hosts = [\"blocked.test\"]\n";

fn mss_common(spool: &Path) -> String {
    format!(
        "[mss]\nspool_dir = \"{}\"\nack_delay_ms = 200\nbackoff_min_ms = 100\nbackoff_max_ms = 1000\nbatch = 50\n",
        spool.display()
    )
}

/// Sends `n` requests to blocked.test through the proxy, 50 per curl (keep-alive).
fn drive(proxy: &str, tag: &str, n: usize) {
    for chunk in 0..n.div_ceil(50) {
        let hi = (n - chunk * 50).min(50);
        let url = format!("http://blocked.test/{tag}{chunk}/[1-{hi}]?patient=TARO-{chunk}&ward=7");
        let out = Command::new("curl")
            .args([
                "-s",
                "-A",
                "SecretAgent/1.0",
                "--max-time",
                "60",
                "-x",
                proxy,
            ])
            .arg(&url)
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {url}: {:?}", out.status);
    }
}

fn metrics(gw: &Gateway) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://{}/metrics", gw.metrics))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn flow_lines(gw: &Gateway) -> usize {
    std::fs::read_to_string(gw.dir.path().join("flows.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn rsyslog_killed_mid_stream_gets_every_event_masked_and_chained() {
    let tmp = TempDir::new("mss-kill");
    let port = free_port();
    let mut rs = Rsyslog::new(tmp.path(), port, None);
    rs.start();
    let collector = Collector::start(&tmp.path().join("collector"));
    let file = tmp.path().join("mss/events.jsonl");
    let extra = format!(
        "{DENY}\n{}\n[mss.mask]\nquery = true\nheaders = [\"user-agent\"]\n\n\
         [[mss.sink]]\nname = \"soc\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\ntransport = \"tcp\"\nformat = \"rfc5424-json\"\n\n\
         [[mss.sink]]\nname = \"hec\"\nkind = \"http\"\naddr = \"{}\"\nformat = \"json\"\nlogs = [\"threat\"]\n\n\
         [[mss.sink]]\nname = \"archive\"\nkind = \"file\"\npath = \"{}\"\nformat = \"json\"\nrotate_bytes = 200000\n",
        mss_common(&tmp.path().join("spool")),
        collector.http,
        file.display()
    );
    let mut gw = Gateway::start("mss-kill", "", &extra);
    const N: usize = 600;
    let proxy = gw.proxy_url();
    let driver = std::thread::spawn(move || drive(&proxy, "k", N));
    // Kill rsyslog once events flow, keep it down for a while, bring it back.
    wait_until("first events at rsyslog", 30, || {
        ids(&json_lines(&rs.lines()), "alert").len() >= 50
    });
    rs.kill();
    let before = ids(&json_lines(&rs.lines()), "alert").len();
    std::thread::sleep(Duration::from_millis(1500));
    rs.start();
    driver.join().unwrap();
    wait_until("one local threat event per blocked request", 10, || {
        local_ids(&gw).len() == N
    });
    let local = local_ids(&gw);
    wait_until("one local flow line per request", 10, || {
        flow_lines(&gw) == N
    });
    let flows = flow_lines(&gw);
    wait_until("every threat event and flow line at rsyslog", 60, || {
        let got = json_lines(&rs.lines());
        let a = ids(&got, "alert");
        local.iter().all(|id| a.contains_key(id)) && ids(&got, "flow").len() >= flows
    });
    let got = json_lines(&rs.lines());
    let alerts = ids(&got, "alert");
    let dups: usize = alerts.values().map(|c| c - 1).sum();
    assert_eq!(ids(&got, "flow").len(), flows);
    println!(
        "rsyslog: {} threat events ({} had arrived before the kill), {dups} duplicates, {} flow lines",
        alerts.len(),
        before,
        flows
    );
    assert!(
        before < N,
        "the kill happened mid-stream ({before} of {N} had arrived)"
    );
    // Masking: no query value or user agent leaves; the same value masks the same way.
    let text = rs.lines().join("\n");
    assert!(!text.contains("TARO") && !text.contains("SecretAgent"));
    let urls: Vec<&str> = got
        .iter()
        .filter(|v| v["event_type"] == "alert")
        .map(|v| v["http"]["url"].as_str().unwrap())
        .collect();
    assert!(urls
        .iter()
        .all(|u| u.contains("?patient=masked:") && u.contains("&ward=masked:")));
    let token_of = |u: &str| {
        u.split("patient=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .to_string()
    };
    let k0: Vec<String> = urls
        .iter()
        .filter(|u| u.contains("/k0/"))
        .map(|u| token_of(u))
        .collect();
    assert!(
        k0.len() >= 50 && k0.iter().all(|t| *t == k0[0]),
        "one patient, one token"
    );
    let k1 = urls
        .iter()
        .find(|u| u.contains("/k1/"))
        .map(|u| token_of(u))
        .unwrap();
    assert_ne!(k1, k0[0], "another patient, another token");
    assert!(std::fs::read_to_string(gw.dir.path().join("events.jsonl"))
        .unwrap()
        .contains("TARO-0"));
    // The HTTP sink (HEC batches to `sekisho collector`) got every threat event too.
    wait_until("every threat event at the HTTP collector", 30, || {
        let h = ids(&collector.events(), "alert");
        local.iter().all(|id| h.contains_key(id))
    });
    wait_until("every event acknowledged", 10, || {
        metric(
            &metrics(&gw),
            "sekisho_mss_events_acked_total{sink=\"soc\"}",
        ) >= (N + flows) as f64
    });
    let m = metrics(&gw);
    assert_eq!(metric(&m, "sekisho_mss_sink_up{sink=\"soc\"}"), 1.0);
    println!(
        "soc: sent {} acked {} retried {}",
        metric(&m, "sekisho_mss_events_sent_total{sink=\"soc\"}"),
        metric(&m, "sekisho_mss_events_acked_total{sink=\"soc\"}"),
        metric(&m, "sekisho_mss_events_retried_total{sink=\"soc\"}")
    );
    // The file sink: rotated by size, every event there, the chain verifies; an edit is caught.
    gw.stop();
    let mut files = sekisho_files(&file);
    assert!(files.len() >= 2, "rotated: {files:?}");
    let out = Command::new(bin())
        .args(["logs", "verify"])
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches(": ok (").count(), files.len(), "{stdout}");
    let archived: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let a = ids(&archived, "alert");
    assert!(local.iter().all(|id| a.contains_key(id)));
    let victim = files.pop().unwrap();
    let text = std::fs::read_to_string(&victim).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(lines.len() > 5);
    lines[4] = lines[4].replacen("blocked", "Blocked", 1);
    std::fs::write(&victim, lines.join("\n") + "\n").unwrap();
    let out = Command::new(bin())
        .args(["logs", "verify"])
        .arg(&victim)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(":5: chain broken"), "{stdout}");
}

/// The file sink's rotated files, oldest first, then the current one.
fn sekisho_files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p != path
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("events.jsonl.")
        })
        .collect();
    v.sort();
    v.push(path.to_path_buf());
    v
}

#[test]
fn gateway_restart_resumes_from_the_spool() {
    let tmp = TempDir::new("mss-restart");
    let port = free_port();
    let mut rs = Rsyslog::new(tmp.path(), port, None);
    let spool = tmp.path().join("spool");
    let extra = format!(
        "{DENY}\n{}\n[[mss.sink]]\nname = \"soc\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\nformat = \"rfc5424-json\"\n",
        mss_common(&spool)
    );
    // The collector is down: events stay in the spool.
    let mut gw = Gateway::start("mss-restart", "", &extra);
    drive(&gw.proxy_url(), "r", 120);
    wait_until("120 local threat events", 10, || {
        local_ids(&gw).len() == 120
    });
    let local = local_ids(&gw);
    wait_until("events spooled", 10, || {
        metric(
            &metrics(&gw),
            "sekisho_mss_events_queued_total{sink=\"soc\"}",
        ) >= 120.0
    });
    let m = metrics(&gw);
    assert_eq!(metric(&m, "sekisho_mss_sink_up{sink=\"soc\"}"), 0.0);
    assert!(metric(&m, "sekisho_mss_spool_bytes{sink=\"soc\"}") > 0.0);
    gw.stop();
    let segs: u64 = std::fs::read_dir(spool.join("soc/threat"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(segs > 0, "the spool holds the events after the stop");
    // Collector up, gateway back: everything arrives.
    rs.start();
    gw.restart();
    wait_until("spooled events at rsyslog after the restart", 30, || {
        let a = ids(&json_lines(&rs.lines()), "alert");
        local.iter().all(|id| a.contains_key(id))
    });
    let stderr = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(stderr.contains("resuming from the spool"), "{stderr}");
    // A clean stop is not reported as an unclean one.
    assert!(!gw
        .events()
        .iter()
        .any(|e| e["rule"]["id"] == "unclean-stop"));
}

#[test]
fn full_flow_spool_drops_oldest_with_a_log_loss_event() {
    let tmp = TempDir::new("mss-full");
    let port = free_port();
    let mut rs = Rsyslog::new(tmp.path(), port, None);
    let extra = format!(
        "{DENY}\n{}segment_bytes = 4096\nspool_max_bytes = 8192\n\n[[mss.sink]]\nname = \"flows\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\nlogs = [\"flow\"]\n",
        mss_common(&tmp.path().join("spool"))
    );
    let gw = Gateway::start("mss-full", "", &extra);
    drive(&gw.proxy_url(), "f", 100);
    wait_until("100 local flow lines", 10, || flow_lines(&gw) == 100);
    let flows = flow_lines(&gw);
    // Every flow line was taken in (queued counts the log_loss events too).
    wait_until("flows spooled or dropped", 10, || {
        let m = metrics(&gw);
        metric(&m, "sekisho_mss_events_queued_total{sink=\"flows\"}") >= 100.0
    });
    let m = metrics(&gw);
    let dropped = metric(
        &m,
        "sekisho_mss_events_dropped_total{reason=\"spool_full\",sink=\"flows\"}",
    );
    assert!(dropped > 0.0, "{m}");
    assert!(metric(&m, "sekisho_mss_spool_bytes{sink=\"flows\"}") <= 8192.0 * 2.0);
    rs.start();
    // What arrives: the newest flow lines, and log_loss events accounting for every other one.
    wait_until("flows and log_loss at rsyslog", 30, || {
        let got = json_lines(&rs.lines());
        let lost: u64 = got
            .iter()
            .filter(|v| v["event_type"] == "log_loss")
            .map(|v| v["log_loss"]["dropped"].as_u64().unwrap())
            .sum();
        ids(&got, "flow").len() as u64 + lost == flows as u64
    });
    let got = json_lines(&rs.lines());
    let loss = got.iter().find(|v| v["event_type"] == "log_loss").unwrap();
    assert_eq!(loss["log_loss"]["sink"], "flows");
    assert!(loss["event"]["id"].as_str().is_some());
    // Oldest first: the last request's flow line arrived, the first one's did not.
    let paths: Vec<&str> = got.iter().filter_map(|v| v["path"].as_str()).collect();
    assert!(paths.iter().any(|p| p.starts_with("/f1/50")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/f0/1?")), "{paths:?}");
}

#[test]
fn syslog_over_tls_verifies_the_collector() {
    let tmp = TempDir::new("mss-tls");
    let pki = TestPki::new("MSS Test CA", &["localhost", "127.0.0.1"]);
    let other = TestPki::new("Another CA", &["localhost"]);
    let d = tmp.path();
    std::fs::write(d.join("ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(d.join("other-ca.pem"), &other.ca_pem).unwrap();
    std::fs::write(d.join("server.pem"), pem("CERTIFICATE", &pki.cert_der)).unwrap();
    std::fs::write(d.join("server.key"), pem("PRIVATE KEY", &pki.key_der)).unwrap();
    let port = free_port();
    let mut rs = Rsyslog::new(
        d,
        port,
        Some((d.join("ca.pem"), d.join("server.pem"), d.join("server.key"))),
    );
    rs.start();
    let extra = format!(
        "{DENY}\n{}\n\
         [[mss.sink]]\nname = \"good\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\ntransport = \"tls\"\nca = \"{}\"\nformat = \"rfc5424-json\"\nlogs = [\"threat\"]\n\n\
         [[mss.sink]]\nname = \"wrong-ca\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\ntransport = \"tls\"\nca = \"{}\"\nformat = \"cef\"\nlogs = [\"threat\"]\n",
        mss_common(&d.join("spool")),
        d.join("ca.pem").display(),
        d.join("other-ca.pem").display()
    );
    let gw = Gateway::start("mss-tls", "", &extra);
    drive(&gw.proxy_url(), "t", 30);
    wait_until("30 local threat events", 10, || local_ids(&gw).len() == 30);
    let local = local_ids(&gw);
    wait_until("events over TLS", 30, || {
        let a = ids(&json_lines(&rs.lines()), "alert");
        local.iter().all(|id| a.contains_key(id))
    });
    // The sink whose CA does not match never delivers; it says why and keeps the events.
    wait_until("the wrong-CA sink to report", 10, || {
        std::fs::read_to_string(&gw.stderr)
            .unwrap()
            .contains("wrong-ca")
    });
    let stderr = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(
        stderr.contains("cannot reach the collector") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    assert!(!rs.lines().iter().any(|l| l.contains("CEF:0")));
    wait_until("the good sink's acknowledgements", 10, || {
        metric(
            &metrics(&gw),
            "sekisho_mss_events_acked_total{sink=\"good\"}",
        ) >= 30.0
    });
    let m = metrics(&gw);
    assert_eq!(metric(&m, "sekisho_mss_sink_up{sink=\"wrong-ca\"}"), 0.0);
    assert_eq!(
        metric(&m, "sekisho_mss_events_acked_total{sink=\"wrong-ca\"}"),
        0.0
    );
    assert_eq!(
        metric(&m, "sekisho_mss_events_acked_total{sink=\"good\"}"),
        30.0
    );
}

/// Like [`drive`], but carries on when a request fails (the gateway may be gone).
fn drive_through_faults(proxy: &str, tag: &str, n: usize) -> usize {
    let mut ok = 0;
    for chunk in 0..n.div_ceil(50) {
        let hi = (n - chunk * 50).min(50);
        let url = format!("http://blocked.test/{tag}{chunk}/[1-{hi}]?patient=TARO-{chunk}");
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "20",
                "-w",
                "%{http_code}\n",
                "-o",
                "/dev/null",
                "-x",
                proxy,
            ])
            .arg(&url)
            .output()
            .unwrap();
        ok += String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| *l == "403")
            .count();
    }
    ok
}

#[test]
fn kill_9_mid_traffic_with_the_collector_down_loses_no_event() {
    let tmp = TempDir::new("mss-kill9");
    let port = free_port();
    let mut rs = Rsyslog::new(tmp.path(), port, None);
    let spool = tmp.path().join("spool");
    let extra = format!(
        "{DENY}\n{}\n[[mss.sink]]\nname = \"soc\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\nformat = \"rfc5424-json\"\n",
        mss_common(&spool)
    );
    // The collector is down for the whole run (an hour of a busy site's alerts, compressed).
    let mut gw = Gateway::start("mss-kill9", "", &extra);
    let proxy = gw.proxy_url();
    let traffic = std::thread::spawn(move || drive_through_faults(&proxy, "k", 3000));
    wait_until("1,000 events before the kill", 60, || {
        local_ids(&gw).len() >= 1000
    });
    gw.child.kill().unwrap(); // SIGKILL: no flush, no goodbye
    gw.child.wait().unwrap();
    let before_kill = traffic.join().unwrap();
    let logged_before = local_ids(&gw).len();
    gw.restart();
    let e = gw.wait_line("events.jsonl", |e| e["rule"]["id"] == "unclean-stop");
    assert_eq!(e["event"]["kind"], "event");
    let after = drive_through_faults(&gw.proxy_url(), "a", 1000);
    assert_eq!(after, 1000, "requests after the restart");
    wait_until("1,000 more local events", 30, || {
        local_ids(&gw).len() >= logged_before + 1000
    });
    // The collector comes back: every event the gateway logged arrives, at least once.
    let local = local_ids(&gw);
    let started = Instant::now();
    rs.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = ids(&json_lines(&rs.lines()), "alert");
        let missing: Vec<&String> = local.iter().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let pos: Vec<usize> = missing
                .iter()
                .filter_map(|m| local.iter().position(|l| l == *m))
                .take(20)
                .collect();
            panic!(
                "{} of {} logged events never arrived ({} delivered, {logged_before} logged before the kill); positions {pos:?}",
                missing.len(),
                local.len(),
                got.len()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained = started.elapsed();
    let got = ids(&json_lines(&rs.lines()), "alert");
    let duplicates: usize = got.values().map(|n| n - 1).sum();
    println!(
        "kill -9 with the collector down: {before_kill} blocked before the kill, {} events logged; \
         all delivered {drained:?} after the collector returned; {duplicates} duplicates \
         (at-least-once), {} events delivered that the local log lost to the kill",
        local.len(),
        got.len().saturating_sub(local.len())
    );
    assert!(
        duplicates <= 200,
        "{duplicates} duplicates: more than the unacknowledged window"
    );
}

/// A small tmpfs mounted for one test (the spool's disk), unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs as the spool's disk (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_spool_disk_keeps_traffic_flowing_and_loses_no_event() {
    let tmp = TempDir::new("mss-diskfull");
    let port = free_port();
    let mut rs = Rsyslog::new(tmp.path(), port, None);
    let disk = SmallDisk::mount(&tmp.path().join("spool"), "96k");
    let extra = format!(
        "{DENY}\n{}segment_bytes = 16384\nspool_max_bytes = 100000000\n\n[[mss.sink]]\nname = \"soc\"\nkind = \"syslog\"\naddr = \"127.0.0.1:{port}\"\nformat = \"rfc5424-json\"\n",
        mss_common(&disk.0)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let origin = rt.block_on(common::Origin::start(None));
    let gw = Gateway::start("mss-diskfull", "", &extra);
    // Blocked requests (one threat event each, about 1 KB) until the disk is long full.
    let proxy = gw.proxy_url();
    let attack = std::thread::spawn(move || drive_through_faults(&proxy, "d", 400));
    // Clean requests meanwhile: no event, never held up by the full disk.
    let hello = format!("http://127.0.0.1:{}/hello", origin.port);
    let (mut ok, mut total) = (0, 0);
    while !attack.is_finished() && total < 2000 {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", "-x", &gw.proxy_url(), &hello])
            .output()
            .unwrap();
        total += 1;
        ok += usize::from(out.stdout == b"hello");
    }
    let blocked = attack.join().unwrap();
    let m = metrics(&gw);
    println!(
        "spool disk full: {blocked}/400 blocked requests answered 403, clean {ok}/{total}; handoff timeouts {}",
        metric(&m, "sekisho_mss_handoff_timeouts_total")
    );
    assert_eq!(ok, total, "clean traffic held up by the full disk");
    assert_eq!(blocked, 400, "blocked requests must still be refused");
    assert!(
        metric(&m, "sekisho_mss_write_errors_total{sink=\"soc\"}") > 0.0,
        "{m}"
    );
    let stderr = std::fs::read_to_string(&gw.stderr).unwrap();
    assert_eq!(
        stderr.matches("cannot write the spool").count(),
        1,
        "logged once per outage: {stderr}"
    );
    // Room again and the collector back: every event the gateway logged arrives.
    disk.resize("64m");
    rs.start();
    let local = local_ids(&gw);
    wait_until("every logged event at the collector", 60, || {
        let got = ids(&json_lines(&rs.lines()), "alert");
        local.iter().all(|id| got.contains_key(id))
    });
    let stderr = std::fs::read_to_string(&gw.stderr).unwrap();
    assert!(stderr.contains("the spool is writable again"), "{stderr}");
}
