//! One stage, go-ftw's way: a start marker request, the test request, an end marker request;
//! what the WAF logged between the two markers is the test's log.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::check::{self, Verdict};
use crate::events::EventLog;
use crate::model::{Case, Input, Stage};
use crate::request;
use crate::wire::{self, Exchange};

/// The gateway under test and what the runner follows of it.
pub struct Gw<'a> {
    pub addr: SocketAddr,
    pub log: EventLog,
    pub backend: &'a Backend,
    /// Reading one response.
    pub timeout: Duration,
}

/// What one stage's request did.
#[derive(Debug, Default)]
pub struct Observed {
    pub exchange: Exchange,
    /// Rule ids the WAF logged for the request (marker events left out).
    pub fired: BTreeSet<u64>,
    /// Those matches as ModSecurity log lines.
    pub lines: Vec<String>,
    /// Events of other stages (the proxy's own refusals): their rule ids.
    pub other_events: Vec<String>,
    /// Whether the request reached the backend.
    pub reached_backend: bool,
    /// A marker that never showed in the log.
    pub marker_error: Option<String>,
    /// The request's Content-Type media type, if it has one (for failure descriptions).
    pub content_type: Option<String>,
}

/// One stage's result.
#[derive(Debug, Default)]
pub struct StageResult {
    pub observed: Observed,
    pub verdict: Verdict,
    pub expected_status: Vec<u16>,
}

/// One test's result: every stage must pass.
#[derive(Debug)]
pub struct CaseResult {
    pub id: String,
    pub family: String,
    pub desc: String,
    pub stages: Vec<StageResult>,
}

impl CaseResult {
    pub fn pass(&self) -> bool {
        self.stages.iter().all(|s| s.verdict.pass)
    }

    /// The first failing stage.
    pub fn failing(&self) -> Option<&StageResult> {
        self.stages.iter().find(|s| !s.verdict.pass)
    }
}

/// Runs every stage of `case` in order (a failing stage with `retry_once` runs once more).
pub fn run_case(gw: &mut Gw<'_>, case: &Case) -> CaseResult {
    let stages = case
        .stages
        .iter()
        .map(|stage| {
            let first = run_stage(gw, &case.id, stage);
            if !first.verdict.pass && stage.output.retry_once == Some(true) {
                run_stage(gw, &case.id, stage)
            } else {
                first
            }
        })
        .collect();
    CaseResult {
        id: case.id.clone(),
        family: case.family.clone(),
        desc: case.desc.clone(),
        stages,
    }
}

fn run_stage(gw: &mut Gw<'_>, case_id: &str, stage: &Stage) -> StageResult {
    let expected_status = stage
        .output
        .status
        .as_ref()
        .map(|s| s.list())
        .unwrap_or_default();
    let observed = match request::build(&stage.input) {
        Ok(req) => observe(gw, &stage.input, case_id, &req),
        Err(e) => Observed {
            marker_error: Some(format!("cannot build the request: {e}")),
            ..Observed::default()
        },
    };
    let verdict = check::check(&stage.output, &observed);
    StageResult {
        observed,
        verdict,
        expected_status,
    }
}

/// Sends `req` between two markers and collects what the log shows between them.
fn observe(gw: &mut Gw<'_>, input: &Input, case_id: &str, req: &[u8]) -> Observed {
    let stage_id = format!("{case_id}-{}", uuid::Uuid::new_v4());
    let host = marker_host(input);
    let mut obs = Observed::default();
    let start = match mark(gw, &host, &format!("{stage_id}-s")) {
        Ok(i) => i,
        Err(e) => {
            obs.marker_error = Some(e);
            return obs;
        }
    };
    let seen = gw.backend.seen();
    obs.exchange = wire::exchange(gw.addr, req, gw.timeout);
    obs.reached_backend = gw.backend.seen() > seen;
    let end = match mark(gw, &host, &format!("{stage_id}-e")) {
        Ok(i) => i,
        Err(e) => {
            obs.marker_error = Some(e);
            gw.log.events.len()
        }
    };
    collect(gw, &mut obs, start, end);
    obs.content_type = request::headers(input)
        .into_iter()
        .find(|(n, _)| request::canonical(n) == "Content-Type")
        .map(|(_, v)| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    obs
}

/// The events strictly between the marker events, without the marker requests' own events
/// (any event of a connection that logged the marker rule).
fn collect(gw: &Gw<'_>, obs: &mut Observed, start: usize, end: usize) {
    let window = gw.log.events.get(start + 1..end).unwrap_or_default();
    let marker_flows: BTreeSet<u64> = window
        .iter()
        .filter(|e| e.has_marker_rule())
        .map(|e| e.flow_id)
        .chain(gw.log.events.get(start).map(|e| e.flow_id))
        .collect();
    for e in window.iter().filter(|e| !marker_flows.contains(&e.flow_id)) {
        if e.stage != "waf" {
            obs.other_events.push(format!("{}:{}", e.stage, e.rule_id));
        }
        for r in &e.rules {
            obs.fired.insert(r.id);
            obs.lines.push(r.log_line());
        }
    }
}

/// `localhost`, or with `virtual_host_mode` the test's own single Host header.
fn marker_host(input: &Input) -> String {
    if input.virtual_host_mode == Some(true) {
        let hosts: Vec<_> = request::headers(input)
            .into_iter()
            .filter(|(n, _)| request::canonical(n) == "Host")
            .collect();
        if let [(_, h)] = hosts.as_slice() {
            return h.clone();
        }
    }
    "localhost".into()
}

/// Marker attempts, and how long each waits for its event.
const MARKER_TRIES: u32 = 5;
const MARKER_WAIT: Duration = Duration::from_secs(1);

/// Sends go-ftw's marker request until its event shows (bounded); returns the event's index.
fn mark(gw: &mut Gw<'_>, host: &str, marker: &str) -> Result<usize, String> {
    let req = format!(
        "GET /status/200 HTTP/1.1\r\nAccept: */*\r\nUser-Agent: go-ftw test agent\r\nHost: {host}\r\nX-CRS-Test: {marker}\r\nConnection: close\r\n\r\n"
    );
    let from = gw.log.events.len();
    for _ in 0..MARKER_TRIES {
        let ex = wire::exchange(gw.addr, req.as_bytes(), gw.timeout);
        let deadline = Instant::now() + MARKER_WAIT;
        loop {
            gw.log.poll();
            if let Some(i) = gw.log.find_marker(marker, from) {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(e) = ex.error {
            return Err(format!("marker {marker}: {e}"));
        }
    }
    Err(format!("marker {marker} never logged"))
}
