//! The OWASP CRS regression tests (`<corpora>/crs/tests/**/*.y*ml`) replayed with go-ftw's
//! semantics through the real `sekisho` binary: a plain-HTTP reverse listener with only the
//! `waf` stage, CRS loaded unmodified, in front of an albedo-compatible backend. Each stage's
//! request is sent as raw bytes; what the WAF logged between go-ftw's start and end marker
//! requests is compared with the test's expectations.
//!
//! Environment:
//! - `SEKISHO_CORPORA`: where `crs/` is (skipped when absent);
//! - `CRS_ONLY`: a regex on `"<family> <rule>-<test>"` choosing the tests to run;
//! - `CRS_TIMEOUT_SECS`: the whole run's bound (default 3600);
//! - `CRS_REPORT`: a file for the JSON report;
//! - `CRS_WRITE_OVERRIDES=1`: rewrite `tests/crs-overrides.yaml` from this run.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod check;
mod events;
mod model;
mod overrides;
mod report;
mod request;
mod run;
mod sniff;
mod template;
mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Gateway, TempDir};

/// The rule logging `X-CRS-Test` (go-ftw's marker header), as in CRS's own test setup.
pub const MARKER_RULE: u64 = 999_999;

/// Rule 900005 as tests/REGRESSION-README.md gives it, and the marker rule.
const CRS_TEST_CONF: &str = r#"SecAction "id:900005,\
  phase:1,\
  nolog,\
  pass,\
  ctl:ruleEngine=DetectionOnly,\
  ctl:ruleRemoveById=910000,\
  setvar:tx.blocking_paranoia_level=4,\
  setvar:tx.crs_validate_utf8_encoding=1,\
  setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,\
  setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,\
  setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"

SecRule REQUEST_HEADERS:X-CRS-Test "@rx ^.*$" \
  "id:999999,\
  phase:1,\
  pass,\
  t:none,\
  log,\
  msg:'X-CRS-Test %{MATCHED_VAR}'"
"#;

/// Reading one response (go-ftw's per-request read timeout, raised).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn crs_regression() {
    if common::corpus("crs/tests").is_none() || common::corpus("crs/rules").is_none() {
        return;
    }
    let crs = common::corpora().join("crs");
    let (cases, unreadable) = load_cases(&crs.join("tests"));
    let overrides_path = common::repo().join("tests/crs-overrides.yaml");
    let overrides = overrides::load(&overrides_path).unwrap();
    let started = Instant::now();
    let (results, not_run) = run_all(&crs, &cases);
    let elapsed = started.elapsed();

    report::print_tally(&results, elapsed);
    let new: Vec<_> = results
        .iter()
        .filter(|r| !r.pass() && !overrides.contains_key(&r.id))
        .collect();
    let stale: Vec<_> = results
        .iter()
        .filter(|r| r.pass() && overrides.contains_key(&r.id))
        .collect();
    report::print_failures(&new, &stale);
    if let Some(path) = std::env::var_os("CRS_REPORT") {
        let json = report::json(&results, &overrides, elapsed);
        std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    }
    if std::env::var("CRS_WRITE_OVERRIDES").as_deref() == Ok("1") {
        let merged = overrides::merge(&overrides, &results);
        overrides::write(&overrides_path, &merged).unwrap();
        println!(
            "rewrote {} ({} entries)",
            overrides_path.display(),
            merged.len()
        );
        return;
    }
    assert!(
        unreadable.is_empty(),
        "unreadable test files: {unreadable:#?}"
    );
    assert_eq!(
        not_run, 0,
        "{not_run} tests not run: CRS_TIMEOUT_SECS reached"
    );
    assert!(
        new.is_empty(),
        "{} CRS tests fail outside the overrides",
        new.len()
    );
}

/// The selected cases of every test file, and the files that could not be read.
fn load_cases(tests: &Path) -> (Vec<model::Case>, Vec<String>) {
    let only = std::env::var("CRS_ONLY")
        .ok()
        .map(|r| regex::Regex::new(&r).expect("CRS_ONLY is a regex"));
    let mut cases = Vec::new();
    let mut unreadable = Vec::new();
    for (family, file) in model::test_files(tests) {
        match model::load(&family, &file) {
            Ok(c) => cases.extend(c),
            Err(e) => unreadable.push(e),
        }
    }
    cases.retain(|c| {
        only.as_ref()
            .is_none_or(|r| r.is_match(&format!("{} {}", c.family, c.id)))
    });
    (cases, unreadable)
}

/// Starts the backend and the gateway, runs `cases` in order within the run's bound; returns
/// the results and how many cases the bound left unrun.
fn run_all(crs: &Path, cases: &[model::Case]) -> (Vec<run::CaseResult>, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let backend = backend::Backend::start(&rt);
    let dir = TempDir::new("crs");
    let gw = start_gateway(crs, dir.path(), backend.port);
    let bound = Duration::from_secs(env_u64("CRS_TIMEOUT_SECS", 3600));
    let deadline = Instant::now() + bound;
    let mut ctx = run::Gw {
        addr: gw.proxy,
        log: events::EventLog::new(gw.dir.path().join("events.jsonl")),
        backend: &backend,
        timeout: READ_TIMEOUT,
    };
    let mut results = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        if Instant::now() >= deadline {
            return (results, cases.len() - i);
        }
        results.push(run::run_case(&mut ctx, case));
        if (i + 1) % 250 == 0 {
            let passed = results.iter().filter(|r| r.pass()).count();
            eprintln!("  … {}/{} run, {passed} passed", i + 1, cases.len());
        }
    }
    (results, 0)
}

/// The gateway of the issue's "Checked by": a plain-HTTP reverse listener `crs` with only
/// the `waf` stage, one route to the backend, CRS setup + `crs-test.conf` + CRS rules.
fn start_gateway(crs: &Path, dir: &Path, backend: u16) -> Gateway {
    let test_conf = dir.join("crs-test.conf");
    std::fs::write(&test_conf, CRS_TEST_CONF).unwrap();
    let listener = "[[listener]]\nname = \"crs\"\nkind = \"reverse\"\naddr = \"127.0.0.1:0\"\nstages = [\"waf\"]\n";
    let rules = [
        crs.join("crs-setup.conf.example"),
        test_conf,
        crs.join("rules/*.conf"),
    ];
    let rules: Vec<String> = rules.iter().map(|p| toml_str(p)).collect();
    let extra = format!(
        "[[route]]\nlistener = \"crs\"\nupstreams = [\"http://127.0.0.1:{backend}\"]\n\n\
         [waf]\nrules = [{}]\n",
        rules.join(", ")
    );
    Gateway::start_with_listeners("crs", listener, "", &extra)
}

fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
