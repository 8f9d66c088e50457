//! Suricata's own verification cases (OISF/suricata-verify) for HTTP replayed through the real
//! `sekisho` binary, as the "Checked by" does: per case, a forward listener in detect
//! mode with the case's `test.rules` as `[ips] rules`; each recorded HTTP/1 flow of its capture
//! replayed byte for byte inside a CONNECT tunnel to a loopback origin that answers with the
//! recorded responses; then the alerts per SID in the events file compared with the case's
//! alert-count checks (`filter: {count, match: {event_type: alert, alert.signature_id}}`).
//!
//! Environment:
//! - `SURICATA_VERIFY`: a checkout of suricata-verify (skipped when unset: it is not one of
//!   the bundled corpora);
//! - `SV_ONLY`: a regex on case names;
//! - `SV_TIMEOUT_SECS`: the whole run's bound (default 3600);
//! - `SV_REPORT`: a file for the JSON report;
//! - `SV_DUMP`: a folder for each case's events and flows (`<case>.events.jsonl`,
//!   `<case>.flows.jsonl`);
//! - `SV_WRITE_PASSING=1`: rewrite `tests/suricata-verify-passing.txt` from this run.
//!
//! Cases listed in `tests/suricata-verify-passing.txt` must pass: a case that passed and now
//! fails is a regression.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod case;
mod pcap;
mod replay;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Gateway;

/// What one case did.
#[derive(Debug)]
struct Outcome {
    name: String,
    /// (sid or every alert, expected, got) for each check.
    checks: Vec<(Option<u64>, u64, u64)>,
    /// Replay problems (a refused tunnel, an origin that could not listen).
    notes: Vec<String>,
    custom_config: bool,
    /// Checks of other kinds in the case, not compared.
    other_checks: usize,
}

impl Outcome {
    fn pass(&self) -> bool {
        self.checks.iter().all(|(_, want, got)| want == got)
    }
}

#[test]
fn suricata_verify() {
    let Some(root) = std::env::var_os("SURICATA_VERIFY").map(PathBuf::from) else {
        eprintln!("skipped: SURICATA_VERIFY (a suricata-verify checkout) is not set");
        return;
    };
    let only = std::env::var("SV_ONLY")
        .ok()
        .map(|r| regex::Regex::new(&r).expect("SV_ONLY is a regex"));
    let mut dirs = Vec::new();
    case_dirs(&root.join("tests"), &mut dirs);
    dirs.sort();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    let mut cases = Vec::new();
    for d in &dirs {
        match case::load(&root.join("tests"), d) {
            Ok(c) if only.as_ref().is_none_or(|r| r.is_match(&c.name)) => cases.push(c),
            Ok(_) => {}
            Err(e) => *skipped.entry(skip_reason(&e)).or_default() += 1,
        }
    }
    let bound = Duration::from_secs(
        std::env::var("SV_TIMEOUT_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3600),
    );
    let deadline = Instant::now() + bound;
    let mut outcomes = Vec::new();
    for c in &cases {
        if Instant::now() >= deadline {
            *skipped
                .entry("not run: SV_TIMEOUT_SECS reached".into())
                .or_default() += 1;
            continue;
        }
        match run_case(c) {
            Ok(o) => outcomes.push(o),
            Err(why) => *skipped.entry(why).or_default() += 1,
        }
    }
    report(&outcomes, &skipped);
    let passing_path = common::repo().join("tests/suricata-verify-passing.txt");
    let passing: BTreeSet<String> = std::fs::read_to_string(&passing_path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if std::env::var("SV_WRITE_PASSING").as_deref() == Ok("1") {
        let mut text = String::from(
            "# suricata-verify cases that pass through the forward proxy (tests/suricata_verify).\n",
        );
        for o in outcomes.iter().filter(|o| o.pass()) {
            text.push_str(&o.name);
            text.push('\n');
        }
        std::fs::write(&passing_path, text).unwrap();
        return;
    }
    let regressed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.pass() && passing.contains(&o.name))
        .map(|o| o.name.as_str())
        .collect();
    assert!(
        regressed.is_empty(),
        "cases that passed now fail: {regressed:?}"
    );
}

fn skip_reason(e: &case::Skip) -> String {
    match e {
        case::Skip::Version(v) => format!("skipped: {}", v.split(' ').next().unwrap_or("")),
        case::Skip::NotComparable(why) => format!("skipped: {why}"),
        case::Skip::Unreadable(why) => {
            eprintln!("unreadable test.yaml: {why}");
            "skipped: unreadable test.yaml".into()
        }
    }
}

/// Every directory under `dir` holding a test.yaml.
fn case_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.join("test.yaml").is_file() {
                out.push(p.clone());
            }
            case_dirs(&p, out);
        }
    }
}

/// Replays a case's HTTP/1 flows through a gateway loaded with its rules.
fn run_case(c: &case::Case) -> Result<Outcome, String> {
    let flows = pcap::flows(&c.pcap).map_err(|_| "skipped: unreadable capture".to_string())?;
    let all: Vec<&pcap::Flow> = flows
        .iter()
        .filter(|f| {
            f.handshake
                && f.turns
                    .first()
                    .is_some_and(|(s, b)| *s == pcap::Side::Client && pcap::looks_like_request(b))
                && !f.turns[0].1.starts_with(b"PRI * HTTP/2.0")
        })
        .collect();
    if all.is_empty() {
        return Err("skipped: no HTTP/1 flow in the capture".into());
    }
    // Flows picked up midstream that the case's exception policy keeps from inspection are
    // not replayed (the case is still compared: on no flow at all, if none is left).
    let http: Vec<&pcap::Flow> = all
        .into_iter()
        .filter(|f| f.client_syn || c.midstream_inspected)
        .collect();
    let rules = toml::Value::String(c.rules.display().to_string());
    let settings: String = c.ips_settings.iter().map(|l| format!("{l}\n")).collect();
    let extra = format!("[ips]\nrules = [{rules}]\n{settings}\n[policy]\nmode = \"detect\"\n");
    let gw = std::panic::catch_unwind(|| Gateway::start("sv", "", &extra))
        .map_err(|_| "not run: the gateway did not start".to_string())?;
    let mut notes = Vec::new();
    let mut tunnels = BTreeSet::new();
    for f in http {
        let server: Vec<u8> = f
            .turns
            .iter()
            .filter(|(s, _)| *s == pcap::Side::Server)
            .flat_map(|(_, b)| b.iter().copied())
            .collect();
        let origin = match replay::Origin::start(f.server_port, replay::split_responses(&server)) {
            Ok(o) => o,
            Err(e) => {
                notes.push(format!("origin: {e}"));
                continue;
            }
        };
        tunnels.insert(format!("127.0.0.1:{}", origin.port));
        if let Err(e) = replay::client(gw.proxy, origin.port, f) {
            notes.push(e);
        }
        drop(origin);
    }
    let mut gw = gw;
    gw.stop();
    let events = gw.events();
    if let Some(dir) = std::env::var_os("SV_DUMP") {
        let path = Path::new(&dir).join(format!("{}.events.jsonl", c.name.replace('/', "__")));
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(path, text);
        let flows: String = gw
            .read_lines("flows.jsonl")
            .iter()
            .map(|e| format!("{e}\n"))
            .collect();
        let path = Path::new(&dir).join(format!("{}.flows.jsonl", c.name.replace('/', "__")));
        let _ = std::fs::write(path, flows);
    }
    // The runner's own CONNECT is an HTTP transaction too (the IPS inspects it as Suricata
    // inspects a CONNECT): it is not the case's traffic, so its alerts do not count.
    let own_connect = |e: &serde_json::Value| {
        e["http"]["method"] == "CONNECT"
            && e["http"]["url"]
                .as_str()
                .is_some_and(|u| tunnels.contains(u))
    };
    // Only the IPS's alerts are Suricata's: the gateway's own events (a refused request, a
    // shed connection) carry a hashed `alert.signature_id` too since every event has one.
    let alerts: Vec<u64> = events
        .iter()
        .filter(|e| !own_connect(e))
        .filter(|e| e["rule"]["engine"] == "suricata")
        .filter_map(|v| v["alert"]["signature_id"].as_u64())
        .collect();
    let checks = c
        .checks
        .iter()
        .map(|k| {
            let got = alerts
                .iter()
                .filter(|&&s| k.sid.is_none_or(|w| w == s))
                .count();
            (k.sid, k.count, got as u64)
        })
        .collect();
    Ok(Outcome {
        name: c.name.clone(),
        checks,
        notes,
        custom_config: c.custom_config,
        other_checks: c.other_checks,
    })
}

fn report(outcomes: &[Outcome], skipped: &BTreeMap<String, usize>) {
    for o in outcomes.iter().filter(|o| !o.pass()) {
        let diffs: Vec<String> = o
            .checks
            .iter()
            .filter(|(_, w, g)| w != g)
            .map(|(s, w, g)| match s {
                Some(s) => format!("sid {s}: want {w} got {g}"),
                None => format!("alerts: want {w} got {g}"),
            })
            .collect();
        let cfg = if o.custom_config {
            " [custom config]"
        } else {
            ""
        };
        let other = match o.other_checks {
            0 => String::new(),
            n => format!(" (+{n} checks of other kinds not compared)"),
        };
        println!(
            "FAIL {}{cfg}{other}: {} {}",
            o.name,
            diffs.join(", "),
            o.notes.join("; ")
        );
    }
    let passed = outcomes.iter().filter(|o| o.pass()).count();
    let checks: usize = outcomes.iter().map(|o| o.checks.len()).sum();
    let checks_ok: usize = outcomes
        .iter()
        .flat_map(|o| &o.checks)
        .filter(|(_, w, g)| w == g)
        .count();
    println!(
        "suricata-verify: {passed}/{} cases pass, {checks_ok}/{checks} alert checks",
        outcomes.len()
    );
    for (why, n) in skipped {
        println!("  {why}: {n}");
    }
    if let Some(path) = std::env::var_os("SV_REPORT") {
        let json: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "case": o.name, "pass": o.pass(), "custom_config": o.custom_config,
                    "checks": o.checks.iter().map(|(s, w, g)| serde_json::json!({"sid": s, "want": w, "got": g})).collect::<Vec<_>>(),
                    "notes": o.notes,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
}
