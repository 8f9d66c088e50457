//! Loading rule files into a compiled set: the per-phase, per-buffer prefilter (Aho-Corasick over
//! fast patterns; hash lookups for exact and suffix host/SNI/DNS indicators) and the evaluation
//! of candidates against a transaction's buffers.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use sekisho_core::Direction;

use crate::detect::{inspect, Data, Scratch};
use crate::hosts::HostState;
use crate::matchers::PcreLimits;
use crate::rule::{
    parse_rule, parse_track, sniff_sid, Buf, Flowbit, Item, Proto, Rule, RuleAction, RuleError,
    Threshold, ThresholdKind, Track,
};
use crate::transform::Transform;
use crate::vars::{parse_addr, AddrExpr, Vars};
use crate::IpsError;

/// When a rule is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The client's TLS ClientHello (SNI, JA3).
    TlsHello = 0,
    /// The upstream's certificate chain is known.
    TlsServer = 1,
    /// A host name the proxy resolves.
    Dns = 2,
    /// Request line and headers.
    ReqHead = 3,
    /// The request body (end, or the inspection limit).
    ReqBody = 4,
    /// Response status and headers.
    RespHead = 5,
    /// The response body.
    RespBody = 6,
    /// A WebSocket frame (every frame of an upgraded connection, each direction).
    WsFrame = 7,
}

/// Number of phases.
pub const PHASES: usize = 8;

/// What a WebSocket frame's header says, for `websocket.opcode` / `.mask` / `.flags`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsHead {
    /// The opcode.
    pub opcode: u8,
    /// FIN, RSV1-3 (the first byte's upper four bits).
    pub flags: u8,
    /// The masking key, big-endian.
    pub mask: Option<u32>,
}

/// A buffer of a transaction: which buffer, which side, transformed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufKey {
    /// Buffer.
    pub buf: Buf,
    /// Side.
    pub side: Direction,
    /// The transformation chain (its id in the rule set; 0: none).
    pub xform: u32,
}

/// The buffers a phase evaluates against.
pub trait Buffers {
    /// The buffer's bytes (for `tls.certs`: the first certificate).
    fn get(&self, buf: Buf, side: Direction) -> Option<&[u8]>;
    /// Every instance of a multi-buffer (`tls.certs`).
    fn all(&self, buf: Buf, side: Direction) -> Vec<&[u8]> {
        self.get(buf, side).into_iter().collect()
    }
    /// True when `file.data` of `side` is the tail of `pkt_data` (the body was not decoded):
    /// one prefilter scan of `pkt_data` then serves both.
    fn body_is_raw(&self, _side: Direction) -> bool {
        false
    }
    /// True when the message body of `side` is known to be empty (a bodyless request, a 204):
    /// the body phase then runs only the rules that can match without body bytes.
    fn body_is_empty(&self, _side: Direction) -> bool {
        false
    }
    /// True when the body of `side` was cut at the inspection limit (its file is incomplete).
    fn body_truncated(&self, _side: Direction) -> bool {
        false
    }
    /// The HTTP anomaly events raised on the transaction so far.
    fn events(&self) -> crate::events::Events {
        crate::events::Events::default()
    }
    /// How many certificates the server's chain holds, once known.
    fn cert_chain_len(&self) -> Option<usize> {
        None
    }
    /// The server's leaf certificate's notBefore and notAfter (Unix times), once known.
    fn cert_dates(&self) -> Option<(i64, i64)> {
        None
    }
    /// The WebSocket frame being inspected, when it was sent in `side`.
    fn websocket(&self, _side: Direction) -> Option<WsHead> {
        None
    }
}

/// The addresses of a flow, for rule headers and thresholds.
#[derive(Clone, Copy, Debug)]
pub struct Endpoints {
    /// Client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// Server address, when known.
    pub server: Option<IpAddr>,
    /// Server port.
    pub server_port: Option<u16>,
}

/// Per-flow (per connection) variables.
#[derive(Debug, Default, Clone)]
pub struct FlowVars {
    /// Set flowbits.
    pub bits: HashSet<String>,
    /// `flowint` variables.
    pub ints: HashMap<String, u32>,
    /// A pass rule matched: no more alerts on this flow.
    pub passed: bool,
    /// `filestore` with the flow scope: every later file of these sides (request, response)
    /// is kept.
    pub store_files: [bool; 2],
}

/// The most flowbits one flow keeps.
pub const MAX_FLOWBITS: usize = 256;

/// A rule that matched and alerts.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Index into [`RuleSet::rule`].
    pub rule: usize,
    /// Buffer name.
    pub location: String,
    /// Bounded excerpt around the match.
    pub excerpt: String,
    /// `dotprefix` applied.
    pub transforms: Vec<String>,
}

/// A rule that was not loaded.
#[derive(Debug, Clone)]
pub struct RuleIssue {
    /// File.
    pub file: String,
    /// Line.
    pub line: u32,
    /// SID, when readable.
    pub sid: Option<u32>,
    /// Why.
    pub error: RuleError,
}

impl std::fmt::Display for RuleIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.error, self.sid) {
            (RuleError::Unsupported { keyword, reason }, Some(sid)) => write!(
                f,
                "{}:{}: sid {sid} skipped: unsupported keyword {keyword} ({reason})",
                self.file, self.line
            ),
            (RuleError::Unsupported { keyword, reason }, None) => write!(
                f,
                "{}:{}: rule skipped: unsupported keyword {keyword} ({reason})",
                self.file, self.line
            ),
            (e, Some(sid)) => write!(f, "{}:{}: sid {sid}: {e}", self.file, self.line),
            (e, None) => write!(f, "{}:{}: {e}", self.file, self.line),
        }
    }
}

/// Per-file load counts.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// Path.
    pub path: String,
    /// Rules loaded.
    pub loaded: usize,
    /// Rules skipped (unsupported).
    pub skipped: usize,
    /// Rules with syntax errors.
    pub errors: usize,
    /// Commented-out rules.
    pub disabled: usize,
}

/// What loading found.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Per file.
    pub files: Vec<FileReport>,
    /// Skipped rules (unsupported keyword or protocol).
    pub skipped: Vec<RuleIssue>,
    /// Broken rules.
    pub errors: Vec<RuleIssue>,
    /// Problems in classification.config / threshold.config (file:line: message).
    pub config_errors: Vec<String>,
    /// Rules loaded.
    pub loaded: usize,
    /// Rules whose pcre runs on PCRE2.
    pub backtracking_pcres: usize,
    /// Rules whose pcre runs on the linear engine.
    pub linear_pcres: usize,
    /// Compile time.
    pub compile_ms: u128,
}

/// Where the rules come from.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Rule files.
    pub rules: Vec<PathBuf>,
    /// classification.config.
    pub classification: Option<PathBuf>,
    /// threshold.config.
    pub threshold: Option<PathBuf>,
    /// Variables.
    pub vars: Vars,
    /// PCRE2 limits.
    pub pcre: PcreLimits,
    /// Counters to update (a fresh set when `None`).
    pub stats: Option<Arc<Stats>>,
    /// Where `dataset` `save` / `state` files go (the current directory when `None`).
    pub data_dir: Option<PathBuf>,
    /// The datasets of the previous load, kept across reloads (fresh when `None`).
    pub datasets: Option<Arc<crate::datasets::Datasets>>,
    /// The engine's xbits and threshold counters, kept across reloads (fresh when `None`).
    pub hosts: Option<Arc<HostState>>,
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rules evaluated after the prefilter.
    pub candidates: AtomicU64,
    /// Rules that matched.
    pub matches: AtomicU64,
    /// PCRE2 match-limit hits.
    pub pcre_limit_hits: AtomicU64,
    /// Flows whose pcre time budget ran out.
    pub pcre_budget_exhausted: AtomicU64,
    /// Inspections cut by the recursion limit.
    pub step_limit_hits: AtomicU64,
    /// Alerts suppressed by threshold/suppress.
    pub thresholded: AtomicU64,
    /// `xbits` sets refused because the store was full.
    pub xbits_full: AtomicU64,
    /// Files `filestore` could not keep (budget spent or disk error).
    pub filestore_refused: AtomicU64,
    /// Files `filestore` kept.
    pub filestore_stored: AtomicU64,
    /// `dataset` adds refused because the set was at its memcap (shared with the sets).
    pub dataset_full: Arc<AtomicU64>,
}

struct Suppress {
    gid: u32,
    sid: u32,
    track: Option<(Track, AddrExpr)>,
}

/// A loaded rule with what evaluation needs.
pub struct Compiled {
    /// The rule (shared by its two sides when it runs on both).
    pub rule: Arc<Rule>,
    /// When it runs.
    pub phase: Phase,
    /// The direction of the data it inspects.
    pub dir: Direction,
    /// Severity priority (1 highest).
    pub priority: u8,
    /// Classtype description.
    pub category: String,
    threshold: Option<Threshold>,
}

/// An automaton over one buffer and, per pattern, the rules it nominates.
type Scanner = (BufKey, AhoCorasick, Vec<Vec<u32>>);

struct PhaseIndex {
    /// Per buffer: the automaton and, per pattern, the rules.
    ac: Vec<Scanner>,
    /// Per side: `pkt_data` and `file.data` patterns together, scanned over `pkt_data` when the
    /// body is raw.
    merged: Vec<Scanner>,
    /// Exact names (lower-case) per buffer.
    exact: HashMap<BufKey, HashMap<Vec<u8>, Vec<u32>>>,
    /// Suffixes (`.example.com`, lower-case) per buffer.
    suffix: HashMap<BufKey, HashMap<Vec<u8>, Vec<u32>>>,
    /// Rules without a usable fast pattern.
    always: Vec<u32>,
}

/// What threshold.config yields: suppressions and per-(gid, sid) threshold overrides.
type ThresholdConfig = (Vec<Suppress>, HashMap<(u32, u32), Threshold>);
/// Patterns and, per pattern, the rules they nominate.
type Patterns = (Vec<Vec<u8>>, Vec<Vec<u32>>);
/// Per buffer of a phase: pattern ids, patterns, rules per pattern.
type PatternTable = HashMap<BufKey, (HashMap<Vec<u8>, usize>, Vec<Vec<u8>>, Vec<Vec<u32>>)>;

/// A compiled rule set; immutable except for threshold counters and stats.
pub struct RuleSet {
    rules: Vec<Compiled>,
    phases: Vec<PhaseIndex>,
    /// The body phases' rules that can match when that side's body is empty (no positive
    /// content in a body buffer of that side); other phases are empty here.
    empty_body: Vec<PhaseIndex>,
    suppress: Vec<Suppress>,
    /// Transformation chains by id (0: none), as rules' groups and buffer keys name them.
    chains: Vec<Vec<Transform>>,
    /// `xbits` and threshold counters by host and host pair (the engine's, kept across
    /// reloads and shared by the cluster's nodes).
    hosts: Arc<HostState>,
    /// Counters (shared across reloads when the embedder passes them in).
    pub stats: Arc<Stats>,
    report: LoadReport,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuleSet({} rules)", self.rules.len())
    }
}

fn parse_classification(
    path: &Path,
    report: &mut LoadReport,
) -> Result<HashMap<String, (String, u8)>, IpsError> {
    let text = std::fs::read_to_string(path).map_err(|e| IpsError::Io {
        path: path.to_path_buf(),
        cause: e,
    })?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let parsed = l.strip_prefix("config classification:").and_then(|r| {
            let mut p = r.splitn(3, ',').map(str::trim);
            let (a, b, c) = (p.next()?, p.next()?, p.next()?);
            Some((a.to_string(), b.to_string(), c.parse::<u8>().ok()?))
        });
        match parsed {
            Some((short, desc, prio)) => {
                out.insert(short, (desc, prio));
            }
            None => report.config_errors.push(format!(
                "{}:{}: not a 'config classification: name,description,priority' line",
                path.display(),
                n + 1
            )),
        }
    }
    Ok(out)
}

fn parse_threshold_config(
    path: &Path,
    vars: &Vars,
    report: &mut LoadReport,
) -> Result<ThresholdConfig, IpsError> {
    let text = std::fs::read_to_string(path).map_err(|e| IpsError::Io {
        path: path.to_path_buf(),
        cause: e,
    })?;
    let (mut sup, mut thr) = (Vec::new(), HashMap::new());
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |m: String| format!("{}:{}: {m}", path.display(), n + 1);
        let (kind, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let mut kv: HashMap<&str, &str> = HashMap::new();
        for part in rest.split(',') {
            let mut it = part.trim().splitn(2, char::is_whitespace);
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                kv.insert(k, v.trim());
            }
        }
        let (Some(gid), Some(sid)) = (
            kv.get("gen_id").and_then(|v| v.parse::<u32>().ok()),
            kv.get("sig_id").and_then(|v| v.parse::<u32>().ok()),
        ) else {
            report
                .config_errors
                .push(err("needs gen_id and sig_id".into()));
            continue;
        };
        match kind {
            "suppress" => {
                let track = match (kv.get("track"), kv.get("ip")) {
                    (None, None) => None,
                    (Some(t), Some(ip)) => {
                        let t = match *t {
                            "by_either" => Track::ByBoth,
                            t => match parse_track(t) {
                                Some(t) => t,
                                None => {
                                    report
                                        .config_errors
                                        .push(err(format!("unknown track {t:?}")));
                                    continue;
                                }
                            },
                        };
                        match parse_addr(ip, vars) {
                            Ok(a) => Some((t, a)),
                            Err(e) => {
                                report.config_errors.push(err(format!("ip: {e}")));
                                continue;
                            }
                        }
                    }
                    _ => {
                        report
                            .config_errors
                            .push(err("suppress needs both track and ip, or neither".into()));
                        continue;
                    }
                };
                sup.push(Suppress { gid, sid, track });
            }
            "threshold" | "event_filter" => {
                let body = rest
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.starts_with("gen_id") && !p.starts_with("sig_id"))
                    .collect::<Vec<_>>()
                    .join(",");
                match crate::rule::parse_threshold_clause(&body) {
                    Ok(t) => {
                        thr.insert((gid, sid), t);
                    }
                    Err(e) => report.config_errors.push(err(e.to_string())),
                }
            }
            "rate_filter" => report
                .config_errors
                .push(err("rate_filter is not supported (line ignored)".into())),
            other => report
                .config_errors
                .push(err(format!("unknown directive {other:?}"))),
        }
    }
    Ok((sup, thr))
}

fn rule_dir_phase(r: &Rule) -> Phase {
    if r.proto == Proto::WebSocket {
        return Phase::WsFrame;
    }
    let bufs: Vec<Buf> = r.groups.iter().map(|g| g.buf).collect();
    if bufs.contains(&Buf::DnsQuery) || r.proto == Proto::Dns {
        return Phase::Dns;
    }
    if bufs.iter().any(|b| b.is_cert()) || r.cert_chain_len.is_some() || !r.cert_validity.is_empty()
    {
        return Phase::TlsServer;
    }
    if r.proto == Proto::Tls {
        if bufs
            .iter()
            .any(|b| b.is_client_hello() || *b == Buf::Stream)
        {
            return Phase::TlsHello;
        }
        return if r.tls_version.is_some() || r.flow_dir == Some(Direction::Response) {
            Phase::TlsServer
        } else {
            Phase::TlsHello
        };
    }
    let dir = rule_dir(r);
    let body = bufs
        .iter()
        .any(|b| b.needs_body() || matches!(b, Buf::FileName | Buf::FileMagic))
        || r.filesize.is_some()
        || !r.file_hashes.is_empty()
        || r.app_events
            .iter()
            .any(|&id| crate::events::on_body_end(id));
    // An anomaly the parser raises on the response is known once the response head is in
    // (the rule still reads its buffers on its own side).
    let late = r
        .app_events
        .iter()
        .any(|&id| crate::events::on_response(id));
    match (dir, body) {
        (Direction::Request, false) if late => Phase::RespHead,
        (Direction::Request, true) if late => Phase::RespBody,
        (Direction::Request, false) => Phase::ReqHead,
        (Direction::Request, true) => Phase::ReqBody,
        (Direction::Response, false) => Phase::RespHead,
        (Direction::Response, true) => Phase::RespBody,
    }
}

/// `filesize` and the hash keywords on the file of the rule's side (a body that is a file:
/// it has a `file.name`); a cut body answers only `filesize:>`/`>=` and no hash.
fn file_conditions(c: &Compiled, bufs: &dyn Buffers) -> bool {
    let side = c.rule.filesize_side.unwrap_or(c.dir);
    if bufs.get(Buf::FileName, side).is_none() {
        return false;
    }
    let data = bufs.get(Buf::FileData, side).unwrap_or_default();
    let cut = bufs.body_truncated(side);
    if let Some(cmp) = c.rule.filesize {
        if !crate::files::filesize_holds(cmp, data.len() as u64, cut) {
            return false;
        }
    }
    c.rule.file_hashes.iter().all(|h| !cut && h.holds(data))
}

/// The direction a rule's header reads in: its side, or client → server for a `=>` rule.
fn header_dir(c: &Compiled) -> Direction {
    if c.rule.txboth {
        Direction::Request
    } else {
        c.dir
    }
}

fn rule_dir(r: &Rule) -> Direction {
    if let Some(d) = r.flow_dir {
        if d == Direction::Response
            || !r
                .groups
                .iter()
                .any(|g| g.side() == Some(Direction::Response))
        {
            return d;
        }
    }
    if r.cert_chain_len.is_some()
        || !r.cert_validity.is_empty()
        || r.groups
            .iter()
            .any(|g| g.side() == Some(Direction::Response) || g.buf.is_cert())
    {
        Direction::Response
    } else {
        Direction::Request
    }
}

fn key_of(r: &Rule, dir: Direction, g: &crate::rule::Group) -> BufKey {
    let _ = r;
    BufKey {
        buf: g.buf,
        side: g.side().unwrap_or(dir),
        xform: g.xform,
    }
}

/// Indicator forms: an exact name (`content; bsize:len` or `startswith; endswith`), or a
/// suffix (`dotprefix; content:".x"; endswith`).
fn indicator(g: &crate::rule::Group) -> Option<(bool, Vec<u8>)> {
    if !matches!(g.buf, Buf::Host | Buf::TlsSni | Buf::DnsQuery) {
        return None;
    }
    let mut content = None;
    let mut bsize = None;
    for it in &g.items {
        match it {
            Item::Content(c)
                if content.is_none()
                    && !c.negated
                    && c.distance.is_none()
                    && c.within.is_none()
                    && c.offset.is_none()
                    && c.depth.is_none() =>
            {
                content = Some(c)
            }
            Item::Bsize(b) => bsize = Some(*b),
            _ => return None,
        }
    }
    let c = content?;
    let pat = c.pattern.to_ascii_lowercase();
    if (c.startswith && c.endswith) || bsize == Some(crate::matchers::NumCmp::Eq(pat.len() as u64))
    {
        return Some((true, pat));
    }
    if g.dotprefix_only() && c.endswith && pat.first() == Some(&b'.') {
        return Some((false, pat));
    }
    None
}

/// Binds the rule's `dataset` / `datarep` keywords to their sets.
fn bind_datasets(
    rule: &Rule,
    sets: &mut crate::datasets::Resolver<'_>,
    file: &Path,
) -> Result<(), RuleError> {
    for g in &rule.groups {
        for it in &g.items {
            if let Item::Dataset(u) = it {
                sets.bind(u, file).map_err(RuleError::Syntax)?;
            }
        }
    }
    Ok(())
}

impl RuleSet {
    /// Loads and compiles the rule files.
    pub fn load(opts: &LoadOptions) -> Result<RuleSet, IpsError> {
        let t0 = Instant::now();
        let mut report = LoadReport::default();
        let classes = match &opts.classification {
            Some(p) => parse_classification(p, &mut report)?,
            None => HashMap::new(),
        };
        let (suppress, overrides) = match &opts.threshold {
            Some(p) => parse_threshold_config(p, &opts.vars, &mut report)?,
            None => (Vec::new(), HashMap::new()),
        };
        let mut rules = Vec::new();
        let mut seen: HashMap<(u32, u32), (String, u32)> = HashMap::new();
        let datasets = opts.datasets.clone().unwrap_or_default();
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let stats: Arc<Stats> = opts.stats.clone().unwrap_or_default();
        let mut sets = datasets.resolver(&data_dir, Arc::clone(&stats.dataset_full));
        for path in &opts.rules {
            let text = std::fs::read(path).map_err(|e| IpsError::Io {
                path: path.clone(),
                cause: e,
            })?;
            let text = String::from_utf8_lossy(&text);
            let fname = path.display().to_string();
            let mut fr = FileReport {
                path: fname.clone(),
                ..FileReport::default()
            };
            let mut pending = String::new();
            let mut start_line = 0u32;
            for (n, raw) in text.lines().enumerate() {
                let lineno = n as u32 + 1;
                let l = raw.trim();
                if pending.is_empty() {
                    if l.is_empty() {
                        continue;
                    }
                    if l.starts_with('#') {
                        let body = l.trim_start_matches('#').trim_start();
                        if body.split_whitespace().next().is_some_and(|a| {
                            matches!(
                                a,
                                "alert"
                                    | "drop"
                                    | "reject"
                                    | "pass"
                                    | "rejectsrc"
                                    | "rejectdst"
                                    | "rejectboth"
                            )
                        }) && body.contains("sid:")
                        {
                            fr.disabled += 1;
                        }
                        continue;
                    }
                    start_line = lineno;
                }
                if let Some(cont) = l.strip_suffix('\\') {
                    pending.push_str(cont);
                    continue;
                }
                pending.push_str(l);
                let line = std::mem::take(&mut pending);
                let parsed = parse_rule(&line, &opts.vars, &opts.pcre, &fname, start_line)
                    .and_then(|rule| bind_datasets(&rule, &mut sets, path).map(|()| rule));
                match parsed {
                    Ok(rule) => {
                        if let Some((f, ln)) = seen.get(&(rule.gid, rule.sid)) {
                            fr.errors += 1;
                            report.errors.push(RuleIssue {
                                file: fname.clone(),
                                line: start_line,
                                sid: Some(rule.sid),
                                error: RuleError::Syntax(format!(
                                    "duplicate sid (first at {f}:{ln}); this one ignored"
                                )),
                            });
                            continue;
                        }
                        seen.insert((rule.gid, rule.sid), (fname.clone(), start_line));
                        fr.loaded += 1;
                        rules.push(rule);
                    }
                    Err(e) => {
                        let issue = RuleIssue {
                            file: fname.clone(),
                            line: start_line,
                            sid: sniff_sid(&line),
                            error: e,
                        };
                        if matches!(issue.error, RuleError::Syntax(_)) {
                            fr.errors += 1;
                            report.errors.push(issue);
                        } else {
                            fr.skipped += 1;
                            report.skipped.push(issue);
                        }
                    }
                }
            }
            if !pending.is_empty() {
                fr.errors += 1;
                report.errors.push(RuleIssue {
                    file: fname.clone(),
                    line: start_line,
                    sid: sniff_sid(&pending),
                    error: RuleError::Syntax("file ends inside a continued line".into()),
                });
            }
            report.files.push(fr);
        }
        // Rules that only set flowbits run before rules that test them (Suricata orders them the
        // same way), then by priority.
        let mut compiled: Vec<Compiled> = rules
            .into_iter()
            .map(|rule| {
                let class = rule.classtype.as_ref().and_then(|c| classes.get(c));
                let priority = rule.priority.or(class.map(|c| c.1)).unwrap_or(3);
                let category = class
                    .map(|c| c.0.clone())
                    .or_else(|| rule.classtype.clone())
                    .unwrap_or_default();
                let threshold = overrides
                    .get(&(rule.gid, rule.sid))
                    .or_else(|| overrides.get(&(rule.gid, 0)))
                    .or_else(|| overrides.get(&(0, 0)))
                    .copied()
                    .or(rule.threshold);
                Compiled {
                    phase: rule_dir_phase(&rule),
                    dir: rule_dir(&rule),
                    priority,
                    category,
                    threshold,
                    rule: Arc::new(rule),
                }
            })
            .collect();
        let order = |c: &Compiled| {
            let r = &c.rule;
            let sets = r
                .flowbits
                .iter()
                .any(|f| matches!(f, Flowbit::Set(_) | Flowbit::Unset(_) | Flowbit::Toggle(_)))
                || r.flowints.iter().any(|f| f.is_change())
                || r.xbits.iter().any(|x| x.is_change());
            let tests = r
                .flowbits
                .iter()
                .any(|f| matches!(f, Flowbit::IsSet(_) | Flowbit::IsNotSet(_)))
                || r.flowints.iter().any(|f| !f.is_change())
                || r.xbits.iter().any(|x| !x.is_change());
            let fb = match (sets, tests) {
                (true, false) => 0,
                (true, true) => 1,
                _ => 2,
            };
            let act = match c.rule.action {
                RuleAction::Pass => 0,
                RuleAction::Drop | RuleAction::Reject => 1,
                RuleAction::Alert => 2,
            };
            (fb, act, c.priority)
        };
        compiled.sort_by_key(order);
        let chains = intern_chains(&mut compiled);
        let unique = compiled.len();
        let compiled = with_twins(with_twins(compiled, response_twin), tls_hello_twin);
        let compiled = with_twins(compiled, ws_twin);
        for c in &compiled {
            for g in &c.rule.groups {
                for it in &g.items {
                    if let Item::Pcre(p) = it {
                        if p.is_backtracking() {
                            report.backtracking_pcres += 1;
                        } else {
                            report.linear_pcres += 1;
                        }
                    }
                }
            }
        }
        let phases = build_index(&compiled, |_, _| true)?;
        let empty_body = build_index(&compiled, |c, p| {
            let side = match p {
                p if p == Phase::ReqBody as usize => Direction::Request,
                p if p == Phase::RespBody as usize => Direction::Response,
                _ => return false,
            };
            may_match_empty_body(c, side)
        })?;
        sets.commit();
        report.loaded = unique;
        report.compile_ms = t0.elapsed().as_millis();
        Ok(RuleSet {
            rules: compiled,
            phases,
            empty_body,
            suppress,
            chains,
            hosts: opts.hosts.clone().unwrap_or_default(),
            stats,
            report,
        })
    }

    /// The load report.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// Number of loaded rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when no rule loaded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// A loaded rule.
    pub fn rule(&self, i: usize) -> &Compiled {
        &self.rules[i]
    }

    /// True when some rule runs in `phase`.
    pub fn has_phase(&self, phase: Phase) -> bool {
        let p = &self.phases[phase as usize];
        !(p.ac.is_empty() && p.exact.is_empty() && p.suffix.is_empty() && p.always.is_empty())
    }

    /// Evaluates the rules of `phase`; returns the alerting hits and whether a pass rule matched.
    pub fn eval(
        &self,
        phase: Phase,
        bufs: &dyn Buffers,
        ep: &Endpoints,
        tls_version: Option<u16>,
        vars: &mut FlowVars,
        scratch: &mut Scratch,
    ) -> Vec<Hit> {
        if vars.passed {
            return Vec::new();
        }
        let empty = match phase {
            Phase::ReqBody => bufs.body_is_empty(Direction::Request),
            Phase::RespBody => bufs.body_is_empty(Direction::Response),
            _ => false,
        };
        let idx = if empty {
            &self.empty_body[phase as usize]
        } else {
            &self.phases[phase as usize]
        };
        let mut seen = vec![0u64; self.rules.len() / 64 + 1];
        let mut cands: Vec<u32> = Vec::new();
        let mut mark = |r: u32, cands: &mut Vec<u32>| {
            let (w, b) = (r as usize / 64, r % 64);
            if seen[w] & (1 << b) == 0 {
                seen[w] |= 1 << b;
                cands.push(r);
            }
        };
        for r in &idx.always {
            mark(*r, &mut cands);
        }
        let mut tmp = Vec::new();
        let mut merged_sides = [false; 2];
        for (key, ac, pats) in &idx.merged {
            if !bufs.body_is_raw(key.side) {
                continue;
            }
            merged_sides[key.side.index()] = true;
            if let Some(data) = bufs.get(Buf::Stream, key.side) {
                for m in ac.find_overlapping_iter(data) {
                    for r in &pats[m.pattern().as_usize()] {
                        mark(*r, &mut cands);
                    }
                }
            }
        }
        for (key, ac, pats) in &idx.ac {
            if merged_sides[key.side.index()]
                && key.xform == 0
                && matches!(key.buf, Buf::Stream | Buf::FileData)
            {
                continue;
            }
            let mut scan = |data: &[u8]| {
                let data = with_transform(&self.chains, key, data, &mut tmp);
                for m in ac.find_overlapping_iter(data) {
                    for r in &pats[m.pattern().as_usize()] {
                        mark(*r, &mut cands);
                    }
                }
            };
            if key.buf == Buf::FileData {
                // This key also holds the body buffers' patterns (see `build_index`): when the
                // files are not the body itself (multipart parts), the body is scanned too.
                let body = match key.side {
                    Direction::Request => Buf::RequestBody,
                    Direction::Response => Buf::ResponseBody,
                };
                let files = bufs.all(Buf::FileData, key.side);
                if let Some(b) = bufs.get(body, key.side) {
                    if !files.iter().any(|f| std::ptr::eq(*f, b)) {
                        scan(b);
                    }
                }
                files.into_iter().for_each(scan);
            } else if key.buf.is_multi() || key.buf == Buf::FileName {
                bufs.all(key.buf, key.side).into_iter().for_each(scan);
            } else if let Some(data) = bufs.get(key.buf, key.side) {
                scan(data);
            }
        }
        for (map, exact) in [(&idx.exact, true), (&idx.suffix, false)] {
            for (key, names) in map {
                let Some(data) = bufs.get(key.buf, key.side) else {
                    continue;
                };
                let data = with_transform(&self.chains, key, data, &mut tmp).to_ascii_lowercase();
                if exact {
                    if let Some(rs) = names.get(&data) {
                        rs.iter().for_each(|r| mark(*r, &mut cands));
                    }
                } else {
                    for (i, &c) in data.iter().enumerate() {
                        if c == b'.' {
                            if let Some(rs) = names.get(&data[i..]) {
                                rs.iter().for_each(|r| mark(*r, &mut cands));
                            }
                        }
                    }
                }
            }
        }
        cands.sort_unstable();
        self.stats
            .candidates
            .fetch_add(cands.len() as u64, Ordering::Relaxed);
        let (limit0, steps0, exhausted0) = (
            scratch.limit_hits,
            scratch.step_limit_hits,
            scratch.budget_exhausted,
        );
        let mut hits = Vec::new();
        let mut passed = false;
        for r in cands {
            if scratch.fired.contains(&r) {
                continue;
            }
            let c = &self.rules[r as usize];
            let Some((location, excerpt, transforms)) =
                self.matches(c, bufs, ep, tls_version, vars, scratch)
            else {
                continue;
            };
            self.stats.matches.fetch_add(1, Ordering::Relaxed);
            scratch.fired.insert(r);
            for fb in &c.rule.flowbits {
                match fb {
                    Flowbit::Set(n) => {
                        for n in n {
                            if vars.bits.len() < MAX_FLOWBITS {
                                vars.bits.insert(n.clone());
                            }
                        }
                    }
                    Flowbit::Unset(n) => n.iter().for_each(|n| {
                        vars.bits.remove(n);
                    }),
                    Flowbit::Toggle(n) => {
                        for n in n {
                            if !vars.bits.remove(n) && vars.bits.len() < MAX_FLOWBITS {
                                vars.bits.insert(n.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
            self.state_changes(c, ep, vars);
            if let Some(spec) = c.rule.filestore {
                use crate::filestore::StoreDir;
                let dir = spec.dir.unwrap_or(match c.dir {
                    Direction::Request => StoreDir::Request,
                    Direction::Response => StoreDir::Response,
                });
                scratch.store.push((dir, spec.scope));
            }
            if c.rule.action == RuleAction::Pass {
                passed = true;
                continue;
            }
            if c.rule.noalert || !self.alert_allowed(c, ep) {
                continue;
            }
            hits.push(Hit {
                rule: r as usize,
                location,
                excerpt,
                transforms,
            });
        }
        self.stats
            .pcre_limit_hits
            .fetch_add(scratch.limit_hits - limit0, Ordering::Relaxed);
        self.stats
            .step_limit_hits
            .fetch_add(scratch.step_limit_hits - steps0, Ordering::Relaxed);
        if scratch.budget_exhausted && !exhausted0 {
            self.stats
                .pcre_budget_exhausted
                .fetch_add(1, Ordering::Relaxed);
        }
        if passed {
            vars.passed = true;
            hits.clear();
        }
        hits
    }

    fn matches(
        &self,
        c: &Compiled,
        bufs: &dyn Buffers,
        ep: &Endpoints,
        tls_version: Option<u16>,
        vars: &FlowVars,
        scratch: &mut Scratch,
    ) -> Option<(String, String, Vec<String>)> {
        let r = &c.rule;
        // Header: the packet's source is the client for requests, the server for responses
        // (a `=>` rule reads its header client → server).
        let (src, sport, dst, dport) = match header_dir(c) {
            Direction::Request => (
                Some(ep.client),
                Some(ep.client_port),
                ep.server,
                ep.server_port,
            ),
            Direction::Response => (
                ep.server,
                ep.server_port,
                Some(ep.client),
                Some(ep.client_port),
            ),
        };
        let fwd = r.src.matches(src)
            && r.sport.matches(sport)
            && r.dst.matches(dst)
            && r.dport.matches(dport);
        let ok = fwd
            || (r.bidirectional
                && r.src.matches(dst)
                && r.sport.matches(dport)
                && r.dst.matches(src)
                && r.dport.matches(sport));
        if !ok {
            return None;
        }
        if let Some(v) = r.tls_version {
            if tls_version != Some(v) {
                return None;
            }
        }
        if let Some(u) = r.cert_chain_len {
            if !u.test(bufs.cert_chain_len()? as u64) {
                return None;
            }
        }
        if !r.cert_validity.is_empty() {
            let dates = bufs.cert_dates()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            if !r.cert_validity.iter().all(|v| v.holds(dates, now)) {
                return None;
            }
        }
        if c.phase == Phase::WsFrame {
            // A frame of the rule's side, meeting its header conditions.
            let head = bufs.websocket(c.dir)?;
            if !r.ws.iter().all(|w| w.holds(&head)) {
                return None;
            }
        }
        for fb in &r.flowbits {
            match fb {
                Flowbit::IsSet(n) if !n.iter().any(|n| vars.bits.contains(n)) => return None,
                Flowbit::IsNotSet(n) if n.iter().any(|n| vars.bits.contains(n)) => return None,
                _ => {}
            }
        }
        if !r.flowints.iter().all(|f| f.holds(&vars.ints)) {
            return None;
        }
        if r.xbits.iter().any(|x| !x.is_change()) && !self.hosts.xbits_hold(&r.xbits, src?, dst) {
            return None;
        }
        if let Some((cmp, raw)) = r.urilen {
            let b = if raw { Buf::UriRaw } else { Buf::Uri };
            let len = bufs.get(b, Direction::Request)?.len();
            if !cmp.test(len as u64) {
                return None;
            }
        }
        if (r.filesize.is_some() || !r.file_hashes.is_empty()) && !file_conditions(c, bufs) {
            return None;
        }
        if !r.app_events.is_empty() {
            let raised = bufs.events();
            if !r.app_events.iter().all(|&id| raised.has(id)) {
                return None;
            }
        }
        let mut evidence = None;
        let mut tmp = Vec::new();
        scratch.base64 = None;
        scratch.vars = [0; crate::bytevars::MAX_VARS];
        for g in &r.groups {
            let key = key_of(r, c.dir, g);
            if g.buf == Buf::Base64Data {
                // What this rule's base64_decode produced (it ran in an earlier group).
                let decoded = scratch.base64.clone()?;
                let at = inspect(&g.items, &Data::new(&decoded), scratch)?;
                evidence.get_or_insert_with(|| {
                    (g.buf.name().to_string(), excerpt(&decoded, at), Vec::new())
                });
                continue;
            }
            let addr;
            let instances = match key.buf {
                Buf::IpSrc | Buf::IpDst => {
                    addr = address(key.buf, key.side, ep);
                    addr.as_deref().into_iter().collect()
                }
                _ => bufs.all(key.buf, key.side),
            };
            if g.items.first().is_some_and(Item::is_absent) && is_absent(key.buf, &instances) {
                evidence
                    .get_or_insert_with(|| (g.buf.name().to_string(), "absent".into(), Vec::new()));
                continue;
            }
            let mut found = None;
            for data in instances {
                let data = with_transform(&self.chains, &key, data, &mut tmp);
                let d = Data::new(data);
                if let Some(at) = inspect(&g.items, &d, scratch) {
                    found = Some(excerpt(data, at));
                    break;
                }
            }
            let ex = found?;
            if evidence.is_none() || g.buf != Buf::Stream {
                evidence = Some((
                    g.buf.name().to_string(),
                    ex,
                    g.transforms.iter().map(|t| t.name().to_string()).collect(),
                ));
            }
        }
        Some(evidence.unwrap_or_else(|| match r.app_events.is_empty() {
            true => ("flow".into(), String::new(), Vec::new()),
            false => (
                "app-layer-event".into(),
                bufs.events().names().join(" "),
                Vec::new(),
            ),
        }))
    }

    /// A matched rule's `flowint` and `xbits` changes, in rule order (alerting or not).
    fn state_changes(&self, c: &Compiled, ep: &Endpoints, vars: &mut FlowVars) {
        for f in c.rule.flowints.iter().filter(|f| f.is_change()) {
            f.apply(&mut vars.ints);
        }
        let changes: Vec<_> = c.rule.xbits.iter().filter(|x| x.is_change()).collect();
        if changes.is_empty() {
            return;
        }
        let (src, dst) = match header_dir(c) {
            Direction::Request => (Some(ep.client), ep.server),
            Direction::Response => (ep.server, Some(ep.client)),
        };
        let Some(src) = src else { return };
        let refused = self.hosts.xbits_apply(changes.into_iter(), src, dst);
        self.stats.xbits_full.fetch_add(refused, Ordering::Relaxed);
    }

    fn alert_allowed(&self, c: &Compiled, ep: &Endpoints) -> bool {
        let r = &c.rule;
        let (src, dst) = match c.dir {
            Direction::Request => (Some(ep.client), ep.server),
            Direction::Response => (ep.server, Some(ep.client)),
        };
        for s in &self.suppress {
            if (s.gid == r.gid || s.gid == 0) && (s.sid == r.sid || s.sid == 0) {
                let hit = match &s.track {
                    None => true,
                    Some((Track::BySrc, a)) => src.is_some() && a.matches(src),
                    Some((Track::ByDst, a)) => dst.is_some() && a.matches(dst),
                    Some((_, a)) => {
                        (src.is_some() && a.matches(src)) || (dst.is_some() && a.matches(dst))
                    }
                };
                if hit {
                    self.stats.thresholded.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
        let filters = [c.threshold, r.detection_filter];
        for t in filters.into_iter().flatten() {
            let key = match t.track {
                Track::BySrc => (r.gid, r.sid, src, None),
                Track::ByDst => (r.gid, r.sid, None, dst),
                Track::ByRule => (r.gid, r.sid, None, None),
                Track::ByBoth => (r.gid, r.sid, src, dst),
            };
            let key = if t.kind == ThresholdKind::DetectionFilter {
                (key.0 | 0x8000_0000, key.1, key.2, key.3)
            } else {
                key
            };
            let window = std::time::Duration::from_secs(u64::from(t.seconds));
            let every = t.kind == ThresholdKind::Threshold;
            let n = self.hosts.hit(key, window, t.count, every);
            let allow = match t.kind {
                ThresholdKind::Limit => n <= t.count,
                ThresholdKind::Threshold => n >= t.count,
                ThresholdKind::Both => n == t.count,
                ThresholdKind::DetectionFilter => n > t.count,
            };
            if !allow {
                self.stats.thresholded.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        true
    }
}

/// Gives each distinct transformation chain of the rules' groups an id (0: none), so buffer
/// keys can name it; returns the chains by id.
/// `ip.src` / `ip.dst` of the inspected direction as raw bytes (4 for IPv4, 16 for IPv6):
/// the client is the source of requests, the server of responses.
fn address(buf: Buf, side: Direction, ep: &Endpoints) -> Option<Vec<u8>> {
    let (src, dst) = match side {
        Direction::Request => (Some(ep.client), ep.server),
        Direction::Response => (ep.server, Some(ep.client)),
    };
    let ip = if buf == Buf::IpSrc { src } else { dst }?;
    Some(match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    })
}

/// Each rule followed by its twin where `twin_of` names one: the same rule compiled again for
/// another phase and side.
fn with_twins(
    compiled: Vec<Compiled>,
    twin_of: impl Fn(&Compiled) -> Option<(Phase, Direction)>,
) -> Vec<Compiled> {
    let mut out = Vec::with_capacity(compiled.len());
    for c in compiled {
        let twin = twin_of(&c).map(|(phase, dir)| Compiled {
            rule: Arc::clone(&c.rule),
            phase,
            dir,
            priority: c.priority,
            category: c.category.clone(),
            threshold: c.threshold,
        });
        out.push(c);
        out.extend(twin);
    }
    out
}

/// Suricata inspects a rule without a `flow` direction in every direction its buffers exist
/// in: an HTTP rule whose buffers all exist on both sides (`file.data`, `http.header`,
/// `http.content_type` …) runs on the request and again on the response (and may alert once
/// for each, as Suricata's does).
fn response_twin(c: &Compiled) -> Option<(Phase, Direction)> {
    let phase = match c.phase {
        Phase::ReqHead => Phase::RespHead,
        Phase::ReqBody => Phase::RespBody,
        _ => return None,
    };
    (c.dir == Direction::Request && either_side(&c.rule)).then_some((phase, Direction::Response))
}

/// A WebSocket rule without a `flow` direction inspects the frames of both sides.
fn ws_twin(c: &Compiled) -> Option<(Phase, Direction)> {
    (c.phase == Phase::WsFrame && c.dir == Direction::Request && c.rule.flow_dir.is_none())
        .then_some((Phase::WsFrame, Direction::Response))
}

/// Suricata's raw stream inspection reads a TLS connection's first client bytes, its
/// ClientHello records: a `tcp` or `ip` rule that reads only the client's stream also runs on
/// them (the TLS hello phase, whose stream buffer they are), whether the gateway then decrypts
/// the connection or splices it.
fn tls_hello_twin(c: &Compiled) -> Option<(Phase, Direction)> {
    (c.dir == Direction::Request
        && matches!(c.phase, Phase::ReqHead | Phase::ReqBody)
        && client_stream_only(&c.rule))
    .then_some((Phase::TlsHello, Direction::Request))
}

/// A `tcp` / `ip` rule whose every buffer is the client's raw stream.
fn client_stream_only(r: &Rule) -> bool {
    matches!(r.proto, Proto::Tcp | Proto::Ip)
        && !r.txboth
        && r.app_events.is_empty()
        && r.filesize.is_none()
        && r.file_hashes.is_empty()
        && !r.groups.is_empty()
        && r.groups
            .iter()
            .all(|g| g.buf == Buf::Stream && g.side() != Some(Direction::Response))
}

/// A directionless HTTP rule whose every buffer exists on both sides (`pkt_data` included:
/// `alert http any any -> any any (content:"uid=0";)` alerts on the response that carries it,
/// as Suricata's raw stream inspection does in both directions).
fn either_side(r: &Rule) -> bool {
    r.flow_dir.is_none()
        && !r.txboth
        && matches!(r.proto, Proto::Http | Proto::Tcp | Proto::Ip)
        && r.app_events.is_empty()
        && !r.groups.is_empty()
        && r.groups
            .iter()
            .all(|g| (g.buf.is_http() || g.buf == Buf::Stream) && g.side().is_none())
}

fn intern_chains(compiled: &mut [Compiled]) -> Vec<Vec<Transform>> {
    let mut chains: Vec<Vec<Transform>> = vec![Vec::new()];
    let mut ids: HashMap<Vec<(&'static str, String)>, u32> = HashMap::new();
    ids.insert(Vec::new(), 0);
    for c in compiled.iter_mut() {
        // Not shared yet: each rule is its own until `with_twins`.
        let Some(rule) = Arc::get_mut(&mut c.rule) else {
            continue;
        };
        for g in &mut rule.groups {
            let next = chains.len() as u32;
            let key = g.transforms.iter().map(Transform::key).collect();
            let id = *ids.entry(key).or_insert_with(|| {
                chains.push(g.transforms.clone());
                next
            });
            g.xform = id;
        }
    }
    chains
}

/// `data` as the key's transformation chain leaves it (in `tmp` when there is one).
fn with_transform<'a>(
    chains: &[Vec<Transform>],
    key: &BufKey,
    data: &'a [u8],
    tmp: &'a mut Vec<u8>,
) -> &'a [u8] {
    match chains.get(key.xform as usize).filter(|c| !c.is_empty()) {
        Some(chain) => {
            crate::transform::run_chain(chain, data, tmp);
            tmp
        }
        None => data,
    }
}

/// A printable excerpt: up to 64 bytes of context each side of the match, 256 at most.
fn excerpt(data: &[u8], (s, e): (usize, usize)) -> String {
    let start = s.saturating_sub(64);
    let end = (e + 64).min(data.len()).min(start + crate::MAX_EXCERPT);
    let mut out = String::new();
    for &b in &data[start.min(end)..end] {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("|{b:02x}|"));
        }
    }
    out
}

fn automaton(list: &[Vec<u8>], dfa: bool, key: BufKey) -> Result<AhoCorasick, IpsError> {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .kind(dfa.then_some(AhoCorasickKind::DFA))
        .build(list)
        .map_err(|e| IpsError::Compile(format!("prefilter for {}: {e}", key.buf.name())))
}

/// False when `c` has a positive `content` in a body buffer of `side`: it cannot match while
/// that body is empty.
fn may_match_empty_body(c: &Compiled, side: Direction) -> bool {
    !c.rule.groups.iter().any(|g| {
        let body_side = match g.buf {
            Buf::RequestBody => Direction::Request,
            Buf::ResponseBody => Direction::Response,
            Buf::FileData => c.dir,
            _ => return false,
        };
        body_side == side
            && !g.items.first().is_some_and(Item::is_absent)
            && g.items
                .iter()
                .any(|it| matches!(it, Item::Content(ct) if !ct.negated))
    })
}

/// Whether a buffer counts as absent for `absent`: no instance, or (a body) no bytes.
fn is_absent(buf: Buf, instances: &[&[u8]]) -> bool {
    instances.is_empty() || (buf.needs_body() && instances.iter().all(|d| d.is_empty()))
}

/// The prefilter index of the rules `keep(rule, phase)` selects.
fn build_index(
    rules: &[Compiled],
    keep: impl Fn(&Compiled, usize) -> bool,
) -> Result<Vec<PhaseIndex>, IpsError> {
    let mut phases: Vec<PhaseIndex> = (0..PHASES)
        .map(|_| PhaseIndex {
            ac: Vec::new(),
            merged: Vec::new(),
            exact: HashMap::new(),
            suffix: HashMap::new(),
            always: Vec::new(),
        })
        .collect();
    // Per phase and buffer: pattern → rules.
    let mut pats: Vec<PatternTable> = (0..PHASES).map(|_| HashMap::new()).collect();
    // Rules on the raw stream (`pkt_data`) and head buffers also run when the head arrives (the
    // stream is the head so far), as Suricata inspects the packet that carries the headers.
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for (i, c) in rules.iter().enumerate() {
        slots.push((i, c.phase as usize));
        let stream_only = c.rule.groups.iter().any(|g| g.buf == Buf::Stream)
            && c.rule
                .groups
                .iter()
                .all(|g| g.buf == Buf::Stream || !g.buf.needs_body());
        match c.phase {
            Phase::ReqBody if stream_only => slots.push((i, Phase::ReqHead as usize)),
            Phase::RespBody if stream_only => slots.push((i, Phase::RespHead as usize)),
            _ => {}
        }
    }
    slots.retain(|&(i, p)| keep(&rules[i], p));
    for (i, p) in slots {
        let c = &rules[i];
        let i = i as u32;
        // Indicator rules: a single host-like group.
        if c.rule.groups.len() == 1 {
            if let Some((exact, name)) = indicator(&c.rule.groups[0]) {
                let key = key_of(&c.rule, c.dir, &c.rule.groups[0]);
                let map = if exact {
                    &mut phases[p].exact
                } else {
                    &mut phases[p].suffix
                };
                map.entry(key).or_default().entry(name).or_default().push(i);
                continue;
            }
        }
        // The fast pattern: the one marked, else the longest positive content (never in a
        // buffer tested `absent`: the rule may match without it).
        let mut best: Option<(BufKey, &[u8], bool)> = None;
        for g in c.rule.groups.iter().filter(|g| {
            !matches!(g.buf, Buf::Base64Data | Buf::IpSrc | Buf::IpDst)
                && !g.items.first().is_some_and(Item::is_absent)
        }) {
            let key = key_of(&c.rule, c.dir, g);
            for it in &g.items {
                if let Item::Content(ct) = it {
                    if ct.negated {
                        continue;
                    }
                    let fb = ct.fast_bytes();
                    let better = match best {
                        None => true,
                        Some((_, b, marked)) => {
                            (ct.fast_pattern && !marked)
                                || (ct.fast_pattern == marked && fb.len() > b.len())
                        }
                    };
                    if better {
                        best = Some((key, fb, ct.fast_pattern));
                    }
                }
            }
        }
        match best {
            Some((key, fb, _)) => {
                // http.request_body / http.response_body hold the same bytes as file.data of
                // their side: one scan serves all three.
                let key = match key.buf {
                    Buf::RequestBody | Buf::ResponseBody => BufKey {
                        buf: Buf::FileData,
                        ..key
                    },
                    _ => key,
                };
                let (ids, list, owners) = pats[p].entry(key).or_default();
                let lower = fb.to_ascii_lowercase();
                let id = *ids.entry(lower.clone()).or_insert_with(|| {
                    list.push(lower);
                    owners.push(Vec::new());
                    list.len() - 1
                });
                owners[id].push(i);
            }
            None => phases[p].always.push(i),
        }
    }
    for (p, per_buf) in pats.into_iter().enumerate() {
        let mut keys: Vec<_> = per_buf.into_iter().collect();
        keys.sort_by_key(|(k, _)| (k.buf, k.side.index(), k.xform));
        let mut union: [Patterns; 2] = Default::default();
        for (key, (_, list, owners)) in keys {
            // Raw bodies (the common case) are scanned once by the merged DFA below; the
            // per-buffer automata (decoded bodies, head buffers) are the smaller NFAs.
            let body = matches!(key.buf, Buf::Stream | Buf::FileData);
            if body && key.xform == 0 {
                let u = &mut union[key.side.index()];
                u.0.extend(list.iter().cloned());
                u.1.extend(owners.iter().cloned());
            }
            let ac = automaton(&list, false, key)?;
            phases[p].ac.push((key, ac, owners));
        }
        for (side, (list, owners)) in [Direction::Request, Direction::Response]
            .into_iter()
            .zip(union)
        {
            if list.is_empty() {
                continue;
            }
            let key = BufKey {
                buf: Buf::Stream,
                side,
                xform: 0,
            };
            let ac = automaton(&list, true, key)?;
            phases[p].merged.push((key, ac, owners));
        }
    }
    Ok(phases)
}

impl RuleSet {
    /// Index sizes per phase: (phase, automata, patterns, exact+suffix indicators, always-run rules).
    pub fn index_stats(&self) -> Vec<(usize, usize, usize, usize, usize)> {
        self.phases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    i,
                    p.ac.len(),
                    p.ac.iter().map(|(_, a, _)| a.patterns_len()).sum(),
                    p.exact.values().map(HashMap::len).sum::<usize>()
                        + p.suffix.values().map(HashMap::len).sum::<usize>(),
                    p.always.len(),
                )
            })
            .collect()
    }
}
