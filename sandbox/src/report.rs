//! From a run to a report: the events of the sample's processes matched against the behaviour
//! signatures, a score from the weights of those hit (capped at 10; malicious from 7,
//! suspicious from 4, as CAPE scores), and what an analyst reads next: evidence per
//! signature, the process tree, files dropped with their SHA-256, network attempts, resolver
//! queries and syscall counts.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::confine::LandlockLevel;
use crate::detonate::{Dropped, Run};
use crate::netsim::NetRecord;
use crate::rules::{On, Rules, Signature};
use crate::trace::{Call, Event};

/// Score from which a sample is malicious.
pub const MALICIOUS: u8 = 7;
/// Score from which a sample is suspicious.
pub const SUSPICIOUS: u8 = 4;
/// Evidence lines kept per signature.
const EVIDENCE: usize = 5;
/// Longest text kept per evidence line, program run or name (the report stays small whatever
/// arguments a sample passes).
const MAX_TEXT: usize = 512;
/// Most network attempts and names listed.
const MAX_LIST: usize = 1000;
/// Most paths remembered for `after`.
const MAX_EARLIER: usize = 100_000;

/// `s` cut to at most `max` bytes (at a character boundary), marked when cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Score 7 or more.
    Malicious,
    /// Score 4 to 6.
    Suspicious,
    /// Below 4.
    Clean,
    /// Not a type the sandbox runs (the AV engine's static checks apply).
    NotDetonated,
}

/// A signature that was hit.
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    /// Its id.
    pub id: String,
    /// What it means.
    pub description: String,
    /// Its family.
    pub category: String,
    /// Its weight.
    pub weight: u8,
    /// How many events met it.
    pub count: u64,
    /// The first events that met it.
    pub evidence: Vec<String>,
}

/// A process of the sample.
#[derive(Debug, Clone, Serialize)]
pub struct Process {
    /// Its id (in the tracer's view).
    pub pid: u32,
    /// Its parent, when it is one of the sample's.
    pub parent: Option<u32>,
    /// Programs it ran, in order, with their arguments.
    pub exec: Vec<String>,
    /// How it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
}

/// A network attempt.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// `connect`, `bind` or `sendto`.
    pub syscall: String,
    /// The address.
    pub addr: String,
    /// The error, when it failed (a connection reaches the sandbox's sinkhole only on the
    /// ports it serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the sample was confined, as its sandbox reported.
#[derive(Debug, Clone, Serialize)]
pub struct Confinement {
    /// How far Landlock went on this kernel.
    pub landlock: LandlockLevel,
    /// The seccomp filters were installed (a run without them never starts the sample).
    pub seccomp: bool,
    /// Every address led to the sinkhole (else only names the resolver answered).
    pub any_address: bool,
}

/// The report of one sample.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The verdict.
    pub verdict: Verdict,
    /// 0 to 10.
    pub score: u8,
    /// SHA-256 of the sample.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// How it was run (`elf`, `sh`, `bash`, `python`, `perl`) or what it is.
    pub file_type: String,
    /// Why it was not run, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_detonated: Option<String>,
    /// The behaviour rules' version.
    pub rules_version: String,
    /// Signatures hit, heaviest first.
    pub signatures: Vec<Hit>,
    /// The sample's processes, in order of appearance.
    pub processes: Vec<Process>,
    /// Files left in scratch.
    pub files_dropped: Vec<Dropped>,
    /// Files left past the count reported.
    pub files_uncounted: usize,
    /// Connection, bind and send attempts.
    pub network: Vec<Attempt>,
    /// Names asked of the resolver.
    pub dns: Vec<String>,
    /// Connections the sandbox's sinkhole accepted: address, the name it was resolved for,
    /// protocol, the HTTP request, the first bytes sent.
    pub connections: Vec<NetRecord>,
    /// How the sample was confined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confinement: Option<Confinement>,
    /// Traced calls by name.
    pub syscalls: BTreeMap<String, u64>,
    /// Whether the deadline ended the run.
    pub timed_out: bool,
    /// Whether the trace outgrew its bound.
    pub trace_truncated: bool,
    /// Whether the scratch folder outgrew its bound.
    pub scratch_full: bool,
    /// Events past the kept count.
    pub events_dropped: u64,
    /// Wall-clock time of the run.
    pub duration_ms: u64,
    /// The first bytes of the sample's output.
    pub output: String,
}

impl Verdict {
    /// Its name in reports and metrics (`malicious`, …, `not_detonated`).
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Malicious => "malicious",
            Verdict::Suspicious => "suspicious",
            Verdict::Clean => "clean",
            Verdict::NotDetonated => "not_detonated",
        }
    }
}

impl Report {
    /// The report of a file the sandbox does not run.
    pub fn not_detonated(sample: &[u8], rules: &Rules, why: String) -> Report {
        Report {
            verdict: Verdict::NotDetonated,
            score: 0,
            sha256: crate::detonate::hex(&Sha256::digest(sample)),
            size: sample.len() as u64,
            file_type: static_type(sample).to_string(),
            not_detonated: Some(why),
            rules_version: rules.version.clone(),
            signatures: Vec::new(),
            processes: Vec::new(),
            files_dropped: Vec::new(),
            files_uncounted: 0,
            network: Vec::new(),
            dns: Vec::new(),
            connections: Vec::new(),
            confinement: None,
            syscalls: BTreeMap::new(),
            timed_out: false,
            trace_truncated: false,
            scratch_full: false,
            events_dropped: 0,
            duration_ms: 0,
            output: String::new(),
        }
    }

    /// The report of a run.
    pub fn of_run(sample: &[u8], file_type: &str, run: &Run, rules: &Rules) -> Report {
        let mut r = Report::not_detonated(sample, rules, String::new());
        r.not_detonated = None;
        r.file_type = file_type.to_string();
        let events = sample_events(run);
        r.signatures = rules
            .signatures
            .iter()
            .filter_map(|s| hit(s, &events, run))
            .collect();
        r.signatures
            .sort_by(|a, b| b.weight.cmp(&a.weight).then(a.id.cmp(&b.id)));
        let total: u32 = r.signatures.iter().map(|h| u32::from(h.weight)).sum();
        r.score = total.min(10) as u8;
        r.verdict = match r.score {
            s if s >= MALICIOUS => Verdict::Malicious,
            s if s >= SUSPICIOUS => Verdict::Suspicious,
            _ => Verdict::Clean,
        };
        r.processes = processes(run, &events);
        r.files_dropped = run.dropped.clone();
        r.files_uncounted = run.dropped_uncounted;
        let mut names = HashSet::new();
        for (_, e) in &events {
            *r.syscalls.entry(e.syscall.clone()).or_insert(0) += 1;
            match &e.call {
                Call::Connect { addr } | Call::Bind { addr } => r.network.push(Attempt {
                    syscall: e.syscall.clone(),
                    addr: addr.to_string(),
                    error: e.error.clone(),
                }),
                Call::Send { addr: Some(addr) } => r.network.push(Attempt {
                    syscall: e.syscall.clone(),
                    addr: addr.to_string(),
                    error: e.error.clone(),
                }),
                Call::Dns { name } if r.dns.len() < MAX_LIST && names.insert(name.as_str()) => {
                    r.dns.push(clip(name.clone(), MAX_TEXT))
                }
                _ => {}
            }
        }
        r.network.truncate(MAX_LIST);
        r.connections = run
            .network
            .iter()
            .filter(|n| matches!(n, NetRecord::Connection { .. }))
            .take(MAX_LIST)
            .cloned()
            .collect();
        r.confinement = confinement(&run.network);
        r.timed_out = run.timed_out;
        r.trace_truncated = run.trace_truncated;
        r.scratch_full = run.scratch_full;
        r.events_dropped = run.trace.dropped;
        r.duration_ms = run.duration.as_millis() as u64;
        r.output = run.output.clone();
        r
    }
}

/// The confinement the sandbox's records tell of.
fn confinement(records: &[NetRecord]) -> Option<Confinement> {
    let landlock = records.iter().find_map(|n| match n {
        NetRecord::Confined { landlock } => Some(*landlock),
        _ => None,
    })?;
    let any_address = records
        .iter()
        .any(|n| matches!(n, NetRecord::Network { any_address: true }));
    Some(Confinement {
        landlock,
        seccomp: true,
        any_address,
    })
}

/// What a file the sandbox does not run is, by its first bytes.
fn static_type(b: &[u8]) -> &'static str {
    match b {
        [b'M', b'Z', ..] => "pe",
        [b'%', b'P', b'D', b'F', ..] => "pdf",
        [0xd0, 0xcf, 0x11, 0xe0, ..] => "ole",
        [b'P', b'K', 3, 4, ..] => "zip",
        [0xca, 0xfe, 0xba, 0xbe, ..] | [0xcf, 0xfa, 0xed, 0xfe, ..] => "mach-o",
        _ => "data",
    }
}

/// The events of the sample's processes from its start (the sample's own start included),
/// with their places in the trace.
fn sample_events(run: &Run) -> Vec<(usize, &Event)> {
    let Some(root) = run.root else {
        return Vec::new();
    };
    let parents = &run.trace.parents;
    let mut ours: HashSet<u32> = HashSet::from([root]);
    let mine = |pid: u32, ours: &HashSet<u32>| {
        let mut p = pid;
        for _ in 0..64 {
            if ours.contains(&p) {
                return true;
            }
            match parents.get(&p) {
                Some(&q) => p = q,
                None => return false,
            }
        }
        false
    };
    let mut out = Vec::new();
    for (i, e) in run.trace.events.iter().enumerate().skip(run.started_at) {
        if mine(e.pid, &ours) {
            ours.insert(e.pid);
            out.push((i, e));
        }
    }
    out
}

/// The path (or name, address) a signature's pattern reads from an event.
fn subject(e: &Event) -> Option<(On, String)> {
    Some(match &e.call {
        Call::Exec { path, .. } => (On::Exec, path.clone()),
        Call::Open { path, .. } => (On::Open, path.clone()),
        Call::Connect { addr } => (On::Connect, addr.to_string()),
        Call::Bind { addr } => (On::Bind, addr.to_string()),
        Call::Dns { name } => (On::Dns, name.clone()),
        Call::Unlink { path } => (On::Unlink, path.clone()),
        Call::Rename { to, .. } => (On::Rename, to.clone()),
        Call::Link { path, .. } => (On::Link, path.clone()),
        Call::Chmod { path, .. } => (On::Chmod, path.clone()),
        Call::Ptrace { request } => (On::Ptrace, request.clone()),
        Call::Mount { target } => (On::Mount, target.clone()),
        Call::Fork => (On::Fork, String::new()),
        Call::Kill { signal, .. } => (On::Kill, signal.clone()),
        Call::Setuid { name } => (On::Setuid, name.clone()),
        Call::Memfd { name } => (On::Memfd, name.clone()),
        Call::Sleep => (On::Sleep, String::new()),
        Call::IoUring => (On::IoUring, String::new()),
        Call::Refused { name } => (On::Refused, name.clone()),
        Call::Send { .. } | Call::Chdir { .. } => return None,
    })
}

fn describe(e: &Event) -> String {
    let what = match &e.call {
        Call::Exec { path, argv } => format!("{path} {}", argv.get(1..).unwrap_or(&[]).join(" ")),
        Call::Open { path, write } => format!("{path}{}", if *write { " (write)" } else { "" }),
        Call::Rename { from, to } => format!("{from} -> {to}"),
        Call::Link {
            path,
            target,
            symbolic,
        } => format!(
            "{path} -> {target}{}",
            if *symbolic { "" } else { " (hard)" }
        ),
        Call::Chmod { path, mode } => format!("{path} {mode:o}"),
        Call::Kill { target, signal } => format!("{target} {signal}"),
        _ => subject(e).map(|s| s.1).unwrap_or_default(),
    };
    let end = match (&e.error, e.ret) {
        (Some(err), _) => format!(" = {err}"),
        (None, Some(r)) => format!(" = {r}"),
        (None, None) => String::new(),
    };
    format!("pid {} {} {}{end}", e.pid, e.syscall, what.trim_end())
}

fn hit(s: &Signature, events: &[(usize, &Event)], run: &Run) -> Option<Hit> {
    let mut count = 0u64;
    let mut evidence = Vec::new();
    match s.event {
        On::Timeout => {
            if run.timed_out {
                count = 1;
                evidence.push(format!(
                    "the run reached its deadline ({} ms)",
                    run.duration.as_millis()
                ));
            }
        }
        On::Http => {
            for n in &run.network {
                let NetRecord::Connection {
                    request: Some(req),
                    dst,
                    ..
                } = n
                else {
                    continue;
                };
                if matches_path(s, req) && (s.port.is_empty() || s.port.contains(&dst.port())) {
                    count += 1;
                    if evidence.len() < EVIDENCE {
                        evidence.push(clip(format!("{req} (to {dst})"), MAX_TEXT));
                    }
                }
            }
        }
        On::Dropped => {
            for d in &run.dropped {
                if matches_path(s, &d.path) && s.min_entropy.is_none_or(|m| d.entropy >= m) {
                    count += 1;
                    if evidence.len() < EVIDENCE {
                        evidence.push(format!(
                            "{} ({} bytes, entropy {:.2})",
                            d.path, d.size, d.entropy
                        ));
                    }
                }
            }
        }
        _ => {
            // Paths an event of the `after` kind named so far (one pass: a set, not a rescan).
            let mut earlier: HashSet<String> = HashSet::new();
            for &(i, e) in events {
                let matched = !(i <= run.started_at && matches!(e.call, Call::Exec { .. }))
                    && event_matches(s, e, &earlier);
                if let (Some(after), Some((k, p))) = (s.after, subject(e)) {
                    if k == after && earlier.len() < MAX_EARLIER {
                        earlier.insert(p);
                    }
                }
                if !matched {
                    continue;
                }
                count += 1;
                if evidence.len() < EVIDENCE {
                    evidence.push(clip(describe(e), MAX_TEXT));
                }
            }
        }
    }
    (count >= u64::from(s.min_count)).then(|| Hit {
        id: s.id.clone(),
        description: s.description.clone(),
        category: s.category.clone(),
        weight: s.weight,
        count,
        evidence,
    })
}

fn matches_path(s: &Signature, p: &str) -> bool {
    s.path.as_ref().is_none_or(|r| r.is_match(p))
        && !s.not_path.as_ref().is_some_and(|r| r.is_match(p))
}

fn event_matches(s: &Signature, e: &Event, earlier: &HashSet<String>) -> bool {
    let Some((on, p)) = subject(e) else {
        return false;
    };
    if on != s.event || !matches_path(s, &p) {
        return false;
    }
    if let Some(rx) = &s.argv {
        let Call::Exec { argv, .. } = &e.call else {
            return false;
        };
        if !rx.is_match(&argv.join(" ")) {
            return false;
        }
    }
    if let Some(rx) = &s.target {
        let Call::Link { target, .. } = &e.call else {
            return false;
        };
        if !rx.is_match(target) {
            return false;
        }
    }
    if let Some(w) = s.write {
        if !matches!(e.call, Call::Open { write, .. } if write == w) {
            return false;
        }
    }
    let addr = match &e.call {
        Call::Connect { addr } | Call::Bind { addr } => Some(addr),
        _ => None,
    };
    if let Some(remote) = s.remote {
        if addr.is_none_or(|a| a.is_remote() != remote) {
            return false;
        }
    }
    if !s.port.is_empty() && !addr.is_some_and(|a| s.port.contains(&a.port)) {
        return false;
    }
    match s.error.as_deref() {
        Some("none") if e.error.is_some() => return false,
        Some(err) if err != "none" && e.error.as_deref() != Some(err) => return false,
        _ => {}
    }
    if s.after.is_some() && !earlier.contains(&p) {
        return false;
    }
    true
}

/// The sample's processes: what each ran, its parent, how it ended.
fn processes(run: &Run, events: &[(usize, &Event)]) -> Vec<Process> {
    let mut out: Vec<Process> = Vec::new();
    let mut at: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (_, e) in events {
        let i = match at.get(&e.pid) {
            Some(&i) => i,
            None => {
                at.insert(e.pid, out.len());
                out.push(Process {
                    pid: e.pid,
                    parent: run.trace.parents.get(&e.pid).copied(),
                    exec: Vec::new(),
                    exit: None,
                });
                out.len() - 1
            }
        };
        if let Call::Exec { path, argv } = &e.call {
            if e.error.is_none() && out[i].exec.len() < 16 {
                let args = argv.get(1..).unwrap_or(&[]).join(" ");
                out[i].exec.push(clip(
                    format!("{path} {args}").trim_end().to_string(),
                    MAX_TEXT,
                ));
            }
        }
        if out.len() >= 1000 {
            break;
        }
    }
    for x in &run.trace.exits {
        if let Some(&i) = at.get(&x.pid) {
            out[i].exit.get_or_insert_with(|| x.how.clone());
        }
    }
    out
}
