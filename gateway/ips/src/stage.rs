//! `[ips]` config and the `ips` stage: builds each transaction's buffers from the phases the proxy
//! drives and evaluates the rules of each phase as soon as its data is complete.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sekisho_core::{
    Cx, Direction, Evidence, Finding, FlowMeta, Inspector, RequestHead, ResponseHead, Severity,
    SignatureInfo, Stage, StagePolicy, TlsHello, TlsMode, Verdict,
};
use serde::Deserialize;

use crate::detect::Scratch;
use crate::matchers::PcreLimits;
use crate::rule::Buf;
use crate::ruleset::{Endpoints, FlowVars, Hit, LoadOptions, Phase, RuleSet, PHASES};
use crate::tx::Tx;
use crate::vars::default_vars;
use crate::IpsError;

/// `[ips]` in `sekisho.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpsConfig {
    /// Rule files: paths or globs (`rules/ips/*.rules`), one or a list.
    #[serde(deserialize_with = "sekisho_core::de::one_or_many")]
    pub rules: Vec<String>,
    /// `classification.config` (classtype → description and priority).
    #[serde(default)]
    pub classification: Option<PathBuf>,
    /// `threshold.config` (suppress, threshold, event_filter).
    #[serde(default)]
    pub threshold: Option<PathBuf>,
    /// Address and port variables (`HOME_NET = "[10.0.0.0/8]"`) over the defaults.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Body bytes inspected per direction (default 1 MiB), like Suricata's body limits.
    #[serde(default = "d_body")]
    pub body_limit: usize,
    /// PCRE2 match limit (default 3,500, Suricata's).
    #[serde(default = "d_match")]
    pub pcre_match_limit: u32,
    /// PCRE2 depth limit (default 1,500).
    #[serde(default = "d_depth")]
    pub pcre_depth_limit: u32,
    /// Time all pcre evaluations of one flow may take (default 100 ms); then the rest are skipped
    /// and counted.
    #[serde(default = "d_budget")]
    pub flow_pcre_budget_ms: u64,
    /// Content-Encoding layers decoded per body at most (default 2, Suricata's
    /// `response-body-decompress-layer-limit`); more raise `too_many_encoding_layers`.
    #[serde(default = "d_layers")]
    pub decompress_layer_limit: usize,
    /// Decode `http.uri`'s path a second time (libhtp's `double-decode-path`; default off):
    /// `/a%252e` reads `/a.`, and what the second pass decodes raises `double_encoded_uri`.
    #[serde(default)]
    pub double_decode_path: bool,
    /// The same for the query (`double-decode-query`; default off).
    #[serde(default)]
    pub double_decode_query: bool,
    /// Where `dataset` rules' `save` and `state` files go (relative paths from the config
    /// file's folder; default: that folder).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Where `filestore` keeps files (default: `filestore` under `data_dir`).
    #[serde(default)]
    pub filestore_dir: Option<PathBuf>,
    /// Bytes the file store may hold (default 1 GiB); files past it are not kept (counted).
    #[serde(default = "d_filestore_max")]
    pub filestore_max_bytes: u64,
    /// `mode`, `on_error`, `on_overflow`.
    #[serde(flatten)]
    pub stage: StagePolicy,
}

fn d_layers() -> usize {
    crate::events::LAYER_LIMIT
}
fn d_filestore_max() -> u64 {
    1 << 30
}
fn d_body() -> usize {
    1 << 20
}
fn d_match() -> u32 {
    3500
}
fn d_depth() -> u32 {
    1500
}
fn d_budget() -> u64 {
    100
}

impl IpsConfig {
    /// The file store's folder: `filestore_dir` (relative to `base`, the config file's
    /// folder), else `filestore` in the data folder.
    pub fn filestore_dir(&self, base: Option<&Path>, data_dir: &Path) -> PathBuf {
        match &self.filestore_dir {
            Some(d) if d.is_relative() => base.map_or_else(|| d.clone(), |b| b.join(d)),
            Some(d) => d.clone(),
            None => data_dir.join("filestore"),
        }
    }

    /// The stage policy.
    pub fn policy(&self) -> StagePolicy {
        self.stage
    }

    /// Expands the globs (relative paths from the current directory, else from `base`, the
    /// config file's folder) and merges the variables.
    pub fn load_options(&self, base: Option<&Path>) -> Result<LoadOptions, IpsError> {
        let mut rules = Vec::new();
        // Relative paths are relative to the config file's folder.
        let at_base = |p: &Path| match base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        };
        for pat in &self.rules {
            let found = expand(&at_base(Path::new(pat)).to_string_lossy())?;
            if found.is_empty() {
                return Err(IpsError::Glob(format!("{pat:?} matches no file")));
            }
            rules.extend(found);
        }
        let resolve = |p: &Option<PathBuf>| p.as_deref().map(at_base);
        let mut vars = default_vars();
        for (k, v) in &self.vars {
            vars.insert(k.trim_start_matches('$').to_string(), v.clone());
        }
        Ok(LoadOptions {
            rules,
            classification: resolve(&self.classification),
            threshold: resolve(&self.threshold),
            vars,
            pcre: PcreLimits {
                match_limit: self.pcre_match_limit,
                depth_limit: self.pcre_depth_limit,
            },
            stats: None,
            data_dir: Some(match &self.data_dir {
                Some(d) => at_base(d),
                None => base.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            }),
            datasets: None,
            hosts: None,
        })
    }
}

fn expand(pat: &str) -> Result<Vec<PathBuf>, IpsError> {
    let mut out: Vec<PathBuf> = glob::glob(pat)
        .map_err(|e| IpsError::Glob(format!("{pat:?}: {e}")))?
        .filter_map(Result::ok)
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Per-connection state shared by the transactions of one client connection (flowbits, "TLS
/// certificate rules already ran"), bounded and aged out.
/// A client connection: listener name and client address.
type ConnKey = (String, SocketAddr);

#[derive(Default)]
struct Conns {
    map: Mutex<HashMap<ConnKey, (FlowVars, bool, Instant)>>,
}

const MAX_CONNS: usize = 65_536;
const CONN_IDLE: Duration = Duration::from_secs(600);

impl Conns {
    fn load(&self, key: &(String, SocketAddr)) -> (FlowVars, bool) {
        let Ok(map) = self.map.lock() else {
            return Default::default();
        };
        map.get(key)
            .map(|(v, c, _)| (v.clone(), *c))
            .unwrap_or_default()
    }
    fn store(&self, key: (String, SocketAddr), vars: &FlowVars, certs_done: bool) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        let now = Instant::now();
        if map.len() >= MAX_CONNS && !map.contains_key(&key) {
            map.retain(|_, (_, _, t)| now.duration_since(*t) < CONN_IDLE);
            if map.len() >= MAX_CONNS {
                map.clear();
            }
        }
        map.insert(key, (vars.clone(), certs_done, now));
    }
}

/// The `ips` stage.
pub struct IpsStage {
    set: Arc<RuleSet>,
    store: Option<Arc<crate::filestore::FileStore>>,
    body_limit: usize,
    layer_limit: usize,
    uri_decoding: crate::uri::Decoding,
    budget: Duration,
    conns: Arc<Conns>,
}

impl IpsStage {
    /// A stage over a loaded rule set.
    pub fn new(set: Arc<RuleSet>, cfg: &IpsConfig) -> Self {
        IpsStage {
            set,
            store: None,
            body_limit: cfg.body_limit.max(1),
            layer_limit: cfg.decompress_layer_limit,
            uri_decoding: crate::uri::Decoding {
                double_path: cfg.double_decode_path,
                double_query: cfg.double_decode_query,
            },
            budget: Duration::from_millis(cfg.flow_pcre_budget_ms),
            conns: Arc::new(Conns::default()),
        }
    }

    /// Where `filestore` keeps files (without one, `filestore` rules still match and alert,
    /// and keep nothing).
    pub fn with_store(mut self, store: Arc<crate::filestore::FileStore>) -> Self {
        self.store = Some(store);
        self
    }
}

struct IpsInspector {
    set: Arc<RuleSet>,
    store: Option<Arc<crate::filestore::FileStore>>,
    /// Sides whose file a matched `filestore` asked for, and what was kept of each.
    want_store: [bool; 2],
    stored: [Option<sekisho_core::FileInfo>; 2],
    conns: Arc<Conns>,
    key: (String, SocketAddr),
    vars: FlowVars,
    certs_done: bool,
    tx: Tx,
    done: [bool; PHASES],
    scratch: Scratch,
    /// WebSocket frames' scratch: each frame is a transaction of its own, whose rules may
    /// fire again.
    ws_scratch: Option<Box<Scratch>>,
    budget: Duration,
    body_limit: usize,
    dirty: bool,
}

impl Stage for IpsStage {
    fn name(&self) -> &'static str {
        "ips"
    }
    fn new_flow(&self, meta: &FlowMeta) -> Box<dyn Inspector> {
        let key = (meta.listener.clone(), meta.client);
        let (vars, certs_done) = self.conns.load(&key);
        Box::new(IpsInspector {
            set: Arc::clone(&self.set),
            store: self.store.clone(),
            want_store: [false; 2],
            stored: [None, None],
            conns: Arc::clone(&self.conns),
            key,
            vars,
            certs_done,
            tx: {
                let mut tx = Tx::new();
                tx.set_layer_limit(self.layer_limit);
                tx.set_uri_decoding(self.uri_decoding);
                tx
            },
            done: [false; PHASES],
            scratch: Scratch::with_budget(self.budget),
            ws_scratch: None,
            budget: self.budget,
            body_limit: self.body_limit,
            dirty: false,
        })
    }
}

fn severity(priority: u8) -> Severity {
    match priority {
        0 | 1 => Severity::High,
        2 => Severity::Medium,
        3 => Severity::Low,
        _ => Severity::Info,
    }
}

impl IpsInspector {
    fn endpoints(meta: &FlowMeta) -> Endpoints {
        let server = meta
            .upstream
            .map(|a| a.ip())
            .or_else(|| meta.target_host.as_deref().and_then(|h| h.parse().ok()));
        Endpoints {
            client: meta.client.ip(),
            client_port: meta.client.port(),
            server,
            server_port: meta.upstream.map(|a| a.port()).or(meta.target_port),
        }
    }

    fn run(&mut self, cx: &mut Cx<'_>, phase: Phase) -> Verdict {
        if self.done[phase as usize] {
            return Verdict::Allow;
        }
        self.done[phase as usize] = true;
        if !self.set.has_phase(phase) {
            return Verdict::Allow;
        }
        let ep = Self::endpoints(cx.meta());
        let before = self.vars.bits.len();
        let hits = self.set.eval(
            phase,
            &self.tx,
            &ep,
            cx.meta().tls_version,
            &mut self.vars,
            &mut self.scratch,
        );
        if self.vars.bits.len() != before || self.vars.passed {
            self.dirty = true;
        }
        self.keep_files();
        self.report(cx, &hits)
    }

    /// Takes the `filestore` requests of the rules that just matched and keeps every file
    /// asked for that is complete (a side's file is complete once its body was inspected).
    fn keep_files(&mut self) {
        use crate::filestore::{Scope, StoreDir};
        for (dir, scope) in std::mem::take(&mut self.scratch.store) {
            let sides: &[usize] = match dir {
                StoreDir::Request => &[0],
                StoreDir::Response => &[1],
                StoreDir::Both => &[0, 1],
            };
            for &i in sides {
                self.want_store[i] = true;
                if scope == Scope::Flow && !self.vars.store_files[i] {
                    self.vars.store_files[i] = true;
                    self.dirty = true;
                }
            }
        }
        for (i, side) in [Direction::Request, Direction::Response]
            .into_iter()
            .enumerate()
        {
            if (self.want_store[i] || self.vars.store_files[i]) && self.stored[i].is_none() {
                self.keep_file(i, side);
            }
        }
    }

    fn keep_file(&mut self, i: usize, side: Direction) {
        use crate::ruleset::Buffers as _;
        use std::sync::atomic::Ordering;
        let Some(store) = &self.store else { return };
        let Some(name) = self.tx.get(Buf::FileName, side) else {
            return;
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let data = self.tx.get(Buf::FileData, side).unwrap_or_default();
        let stats = &self.set.stats;
        match store.store(data) {
            Some(s) => {
                stats.filestore_stored.fetch_add(1, Ordering::Relaxed);
                self.stored[i] = Some(sekisho_core::FileInfo {
                    name,
                    size: s.size,
                    sha256: s.sha256,
                    stored: Some(s.path.display().to_string()),
                    ..Default::default()
                });
            }
            None => {
                stats.filestore_refused.fetch_add(1, Ordering::Relaxed);
                // Asked once per transaction side: a refusal is not retried.
                self.want_store[i] = false;
                self.vars.store_files[i] = false;
            }
        }
    }

    fn report(&self, cx: &mut Cx<'_>, hits: &[Hit]) -> Verdict {
        let mut v = Verdict::Allow;
        for h in hits {
            let c = self.set.rule(h.rule);
            let r = &c.rule;
            let mut f = Finding::new(
                "suricata",
                r.sid.to_string(),
                r.msg.clone(),
                severity(c.priority),
                if c.category.is_empty() {
                    "ips".to_string()
                } else {
                    c.category.clone()
                },
                Evidence {
                    location: h.location.clone(),
                    data_excerpt: h.excerpt.clone(),
                    transforms: h.transforms.clone(),
                },
            );
            f.rev = r.rev;
            f.source = Some((r.file.clone(), r.line));
            if r.filestore.is_some() {
                f.file = self.stored[c.dir.index()]
                    .clone()
                    .or_else(|| self.stored.iter().flatten().next().cloned());
            }
            f.signature = Some(SignatureInfo {
                gid: r.gid,
                rule_action: r.action_name.to_string(),
                metadata: r.metadata.clone(),
                references: r.references.clone(),
            });
            cx.report(f);
            v = v.max(if r.action.blocks() {
                Verdict::Block
            } else {
                Verdict::Alert
            });
        }
        v
    }

    fn flush(&mut self) {
        if self.dirty {
            self.conns
                .store(self.key.clone(), &self.vars, self.certs_done);
            self.dirty = false;
        }
    }

    fn body(&mut self, cx: &mut Cx<'_>, side: Direction, chunk: &Bytes, end: bool) -> Verdict {
        let phase = match side {
            Direction::Request => Phase::ReqBody,
            Direction::Response => Phase::RespBody,
        };
        if self.done[phase as usize] {
            return Verdict::Allow;
        }
        let full = self.tx.body_chunk(side, chunk, self.body_limit);
        if !(end || full) {
            return Verdict::Allow;
        }
        self.tx.finish_body(side, self.body_limit);
        let v = self.run(cx, phase);
        self.flush();
        v
    }
}

impl Inspector for IpsInspector {
    fn on_tls_hello(&mut self, cx: &mut Cx<'_>, hello: &TlsHello) -> Verdict {
        self.tx.tls_hello(hello.sni.as_deref(), &hello.raw);
        let v = self.run(cx, Phase::TlsHello);
        self.flush();
        v
    }

    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &RequestHead) -> Verdict {
        let mut v = Verdict::Allow;
        // The proxy resolves the CONNECT target, or the host of a plain request; inside a
        // decrypted tunnel the CONNECT already counted.
        let resolves = head.method == http::Method::CONNECT || cx.meta().tls == TlsMode::None;
        if resolves && !head.host.is_empty() && head.host.parse::<std::net::IpAddr>().is_err() {
            self.tx.dns_query(&head.host);
            v = v.max(self.run(cx, Phase::Dns));
        }
        self.tx.request_head(head);
        v = v.max(self.run(cx, Phase::ReqHead));
        self.flush();
        // A request body that fits the inspection limit is held: the proxy reads and judges it
        // before anything goes upstream. Larger or unsized bodies are inspected as they stream.
        let len = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.trim().parse::<usize>().ok());
        if v < Verdict::Hold
            && self.set.has_phase(Phase::ReqBody)
            && len.is_some_and(|n| n > 0 && n <= self.body_limit)
        {
            v = Verdict::Hold;
        }
        v
    }

    fn on_request_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, end: bool) -> Verdict {
        self.body(cx, Direction::Request, chunk, end)
    }

    fn on_flow_end(&mut self, cx: &mut Cx<'_>) {
        // A body cut short (the peer's EOF or reset before its end, or a framing hyper
        // refused) is inspected up to where it stopped, as Suricata inspects what it has.
        use crate::ruleset::Buffers as _;
        for (side, head, body) in [
            (Direction::Request, Phase::ReqHead, Phase::ReqBody),
            (Direction::Response, Phase::RespHead, Phase::RespBody),
        ] {
            let something = !self.tx.body_is_empty(side) || self.tx.body_noted(side);
            if self.done[head as usize] && !self.done[body as usize] && something {
                self.tx.finish_body(side, self.body_limit);
                self.run(cx, body);
            }
        }
        self.flush();
    }

    fn on_response_head(&mut self, cx: &mut Cx<'_>, head: &ResponseHead) -> Verdict {
        let mut v = Verdict::Allow;
        if !self.done[Phase::ReqBody as usize] {
            // The proxy saw no request body end (a bodyless request): judge what there is.
            self.tx.finish_body(Direction::Request, self.body_limit);
            v = v.max(self.run(cx, Phase::ReqBody));
        }
        let certs = Arc::clone(&cx.meta().upstream_certs);
        if !certs.is_empty() && !self.certs_done {
            self.tx.certs(&certs);
            self.certs_done = true;
            self.dirty = true;
            v = v.max(self.run(cx, Phase::TlsServer));
        }
        self.tx.response_head(head);
        v = v.max(self.run(cx, Phase::RespHead));
        self.flush();
        v
    }

    fn on_response_body(&mut self, cx: &mut Cx<'_>, chunk: &Bytes, end: bool) -> Verdict {
        self.body(cx, Direction::Response, chunk, end)
    }

    fn on_ws_frame(&mut self, cx: &mut Cx<'_>, frame: &sekisho_core::WsFrame) -> Verdict {
        if !self.set.has_phase(Phase::WsFrame) {
            return Verdict::Allow;
        }
        let mut tx = Tx::new();
        tx.ws_frame(frame);
        let budget = self.budget;
        let scratch = self
            .ws_scratch
            .get_or_insert_with(|| Box::new(Scratch::with_budget(budget)));
        scratch.fired.clear();
        // The pcre budget is per transaction, as for each request.
        scratch.pcre_time = Duration::ZERO;
        scratch.budget_exhausted = false;
        let ep = Self::endpoints(cx.meta());
        let before = self.vars.bits.len();
        let hits = self.set.eval(
            Phase::WsFrame,
            &tx,
            &ep,
            cx.meta().tls_version,
            &mut self.vars,
            scratch,
        );
        if self.vars.bits.len() != before || self.vars.passed {
            self.dirty = true;
        }
        let v = self.report(cx, &hits);
        self.flush();
        v
    }
}
