//! A transaction: one request and its response through phases 1 to 5, with the variables
//! the rules read, the collections they write, and what they decided.

use std::sync::Arc;

use super::actions::Selection;
use super::settings::{BodyProcessor, LimitAction, Mode};
use super::target::Target;
use super::Waf;

/// What the gateway knows of a request before its body.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The method.
    pub method: String,
    /// The request target as sent (`/path?query`, or absolute for a proxy request).
    pub uri: Vec<u8>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: String,
    /// Header fields in order, as sent.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client address.
    pub remote_addr: String,
    /// The client port.
    pub remote_port: u16,
    /// The listener's address.
    pub server_addr: String,
    /// The listener's port.
    pub server_port: u16,
    /// The transaction id (`UNIQUE_ID`).
    pub unique_id: String,
}

/// A rule that matched (its whole chain), for the event.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedRule {
    /// The rule id.
    pub id: u64,
    /// Phase 1 to 5.
    pub phase: u8,
    /// `msg`, expanded.
    pub msg: String,
    /// `logdata`, expanded.
    pub data: String,
    /// Severity 0 to 7, if set.
    pub severity: Option<u8>,
    /// The variable that matched (`ARGS:id`).
    pub variable: String,
    /// The transformations applied.
    pub transforms: Vec<&'static str>,
    /// What the rule added to the anomaly scores.
    pub score: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Where the rule is written (`file:line`).
    pub origin: String,
}

/// How a transaction is stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    /// The HTTP status to answer with (403 unless the rule said otherwise).
    pub status: u16,
    /// The rule that decided.
    pub rule_id: u64,
    /// The phase it ran in.
    pub phase: u8,
    /// Close the connection instead of answering.
    pub drop: bool,
    /// Where to redirect to.
    pub redirect: Option<String>,
    /// `msg` of the deciding rule.
    pub msg: String,
    /// Whether it is enforced (`SecRuleEngine On`); in DetectionOnly it is only recorded.
    pub enforced: bool,
}

/// A value shared between the collections, the transformation cache and matches.
pub(crate) type Val = Arc<[u8]>;

/// A member of a collection: its name and value.
pub(crate) type Named = (Val, Val);

/// The request's and response's variables.
#[derive(Debug)]
pub(crate) struct Data {
    /// Every argument with its origin, counted against `SecArgumentsLimit`.
    pub args: crate::body::ArgList,
    pub args_get: Vec<Named>,
    pub args_post: Vec<Named>,
    /// JSON body arguments: in `ARGS`, not in `ARGS_POST` (as ModSecurity 2 keeps them).
    pub args_json: Vec<Named>,
    pub headers: Vec<Named>,
    pub cookies: Vec<Named>,
    pub files: Vec<Named>,
    pub files_sizes: Vec<Named>,
    pub files_content: Vec<Named>,
    pub part_headers: Vec<Named>,
    pub response_headers: Vec<Named>,
    pub xml_text: Vec<Val>,
    pub xml_attrs: Vec<Val>,
    /// Decoded text of values that were base64 (`[waf] decode`), read as `ARGS`.
    pub decoded: Vec<Named>,
    /// Scalar variables (`REQUEST_METHOD`, `REQBODY_ERROR`, …).
    pub scalars: super::store::Scalars,
}

impl Data {
    /// How many values the collections hold (a change means a summary is stale).
    fn len(&self) -> usize {
        [
            &self.args_get,
            &self.args_post,
            &self.args_json,
            &self.headers,
            &self.cookies,
            &self.files,
            &self.files_sizes,
            &self.files_content,
            &self.part_headers,
            &self.response_headers,
            &self.decoded,
        ]
        .iter()
        .map(|l| l.len())
        .sum::<usize>()
            + self.xml_text.len()
            + self.xml_attrs.len()
    }

    fn new(arguments_limit: usize) -> Data {
        Data {
            args: crate::body::ArgList::new(arguments_limit),
            args_get: Vec::new(),
            args_post: Vec::new(),
            args_json: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            files: Vec::new(),
            files_sizes: Vec::new(),
            files_content: Vec::new(),
            part_headers: Vec::new(),
            response_headers: Vec::new(),
            xml_text: Vec::new(),
            xml_attrs: Vec::new(),
            decoded: Vec::new(),
            scalars: super::store::Scalars::new(),
        }
    }
}

/// One request and response through the rules.
#[derive(Debug)]
pub struct Transaction {
    pub(crate) waf: Arc<Waf>,
    pub(crate) data: Data,
    /// Collections rules write: `TX`, and those `initcol` opens (`IP`, `GLOBAL`).
    pub(crate) cols: super::store::Cols,
    /// `MATCHED_VAR_NAME` and `MATCHED_VAR`.
    pub(crate) matched_var: (Val, Val),
    /// What `setvar`s added to the anomaly scores since the current rule began.
    pub(crate) score_delta: i64,
    /// Transformed values by (original value, transformation chain).
    pub(crate) tcache: super::chains::TransformCache,
    pub(crate) matched_vars: Vec<Named>,
    pub(crate) mode: Mode,
    pub(crate) removed: Vec<Arc<Selection>>,
    pub(crate) removed_targets: Vec<(Arc<Selection>, Arc<Target>)>,
    pub(crate) processor: Option<BodyProcessor>,
    pub(crate) body_access: bool,
    pub(crate) force_body_variable: bool,
    pub(crate) intervention: Option<Intervention>,
    pub(crate) would_block: Option<Intervention>,
    pub(crate) allow_request: bool,
    pub(crate) allow_all: bool,
    pub(crate) matched: Vec<MatchedRule>,
    pub(crate) phase: u8,
    /// Operator runs so far (for cost accounting).
    pub(crate) evaluations: u64,
    /// Whether an operator of the value being tested could not answer (see `OpError`).
    pub(crate) op_failed: bool,
    /// What each collection and scalar holds, for rule-level checks (cleared when the body
    /// or the response adds values: collections change only between phases).
    pub(crate) summaries: Vec<super::bound::Summary>,
    /// Where each source's summary is in `summaries`, by kind, then by scalar variable
    /// (`u32::MAX`: none yet).
    pub(crate) summary_at: Vec<u32>,
    /// A reused buffer for a rule's target values.
    pub(crate) item_buf: Vec<super::vars::Item>,
    /// A reused buffer for `multiMatch` candidates.
    pub(crate) candidate_buf: Vec<(super::chains::Cand, super::needs::ByteSet)>,
    /// The value memo's rows of this transaction's values (looked up while a rule's values
    /// are collected, through a shared borrow).
    pub(crate) memo: std::cell::RefCell<super::memo::TxMemo>,
    /// What the memo rules out per slot list of the running phase (see `gate`).
    pub(crate) closed: super::gate::ClosedLists,
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.note_found_misses();
        let memo = std::mem::take(&mut self.memo).into_inner();
        let caches = (std::mem::take(&mut self.tcache), memo);
        self.waf.caches.give(caches);
    }
}

impl Transaction {
    /// Starts a transaction for a request head.
    pub fn new(waf: Arc<Waf>, head: &RequestHead) -> Transaction {
        let (tcache, memo) = waf.caches.take();
        let mut tx = Transaction {
            data: Data::new(waf.settings.arguments_limit),
            mode: waf.settings.mode,
            body_access: waf.settings.request_body_access,
            waf,
            cols: Default::default(),
            matched_var: (Arc::from(&b""[..]), Arc::from(&b""[..])),
            score_delta: 0,
            tcache,
            matched_vars: Vec::new(),
            removed: Vec::new(),
            removed_targets: Vec::new(),
            processor: None,
            force_body_variable: false,
            intervention: None,
            would_block: None,
            allow_request: false,
            allow_all: false,
            matched: Vec::new(),
            phase: 0,
            evaluations: 0,
            op_failed: false,
            summaries: Vec::new(),
            summary_at: Vec::new(),
            item_buf: Vec::with_capacity(64),
            candidate_buf: Vec::new(),
            memo: memo.into(),
            closed: Default::default(),
        };
        let settings = Arc::clone(&tx.waf);
        tx.cols.tx_mut().clone_from(&settings.prelude.tx);
        tx.matched_var = settings.prelude.matched_var.clone();
        tx.data.set_request(head, &settings.settings);
        tx.initial_processor();
        tx
    }

    /// Phase 1: the request head.
    pub fn request_headers(&mut self) {
        self.run_phase(1);
    }

    /// Whether the rules want the request body (body access on, nothing decided yet).
    pub fn wants_request_body(&self) -> bool {
        self.body_access && self.mode != Mode::Off && self.intervention.is_none()
    }

    /// Parses the request body (its first bytes up to `SecRequestBodyLimit`; `total` is its
    /// whole length) and runs phase 2. Over the limit, `Reject` decides 413.
    pub fn request_body(&mut self, body: &[u8], total: usize) {
        let over = total > self.waf.settings.request_body_limit;
        self.body_phase(body, total, over);
    }

    /// Phase 2 on the first bytes of a request body that goes on past them: the proxy held
    /// [`Transaction::request_hold_limit`] bytes and streams the rest uninspected, as
    /// ModSecurity does past the limit (`ProcessPartial`), or `Reject` decides 413.
    pub fn request_body_prefix(&mut self, body: &[u8]) {
        let over = self.body_access && body.len() >= self.waf.settings.request_body_limit;
        self.body_phase(body, body.len(), over);
    }

    /// How many request body bytes to hold before phase 2 can run: the limit (`ProcessPartial`
    /// inspects that much), one more byte (`Reject` refuses a body past it), or none when the
    /// rules do not read the body.
    pub fn request_hold_limit(&self) -> usize {
        let s = &self.waf.settings;
        if !self.wants_request_body() {
            0
        } else if s.request_body_limit_action == LimitAction::Reject {
            s.request_body_limit.saturating_add(1)
        } else {
            s.request_body_limit
        }
    }

    /// Whether a request announcing `length` bytes is refused before any is read (`Reject`,
    /// as ModSecurity refuses a Content-Length over the limit).
    pub fn refuses_request_length(&self, length: u64) -> bool {
        let s = &self.waf.settings;
        self.body_access
            && self.mode != Mode::Off
            && s.request_body_limit_action == LimitAction::Reject
            && length > s.request_body_limit as u64
    }

    fn body_phase(&mut self, body: &[u8], total: usize, over: bool) {
        let s = &self.waf.settings;
        if over && s.request_body_limit_action == LimitAction::Reject {
            self.limit_exceeded(
                413,
                "INBOUND_DATA_ERROR",
                "request body over SecRequestBodyLimit",
            );
        } else if self.body_access && self.intervention.is_none() && self.mode != Mode::Off {
            if over {
                self.data
                    .scalars
                    .insert("INBOUND_DATA_ERROR", Arc::from(&b"1"[..]));
            }
            let n = body.len().min(s.request_body_limit);
            let before = self.data.len();
            self.parse_body(&body[..n], total);
            if self.data.len() != before {
                self.clear_summaries();
            }
            self.body_errors();
        }
        self.run_phase(2);
    }

    /// Phase 3 with the response status and headers, phase 4 with the body (when the rules
    /// want it: [`Transaction::wants_response_body`]).
    pub fn response_headers(
        &mut self,
        status: u16,
        protocol: &str,
        headers: &[(Vec<u8>, Vec<u8>)],
    ) {
        self.data.set_response(status, protocol, headers);
        self.clear_response_summaries();
        self.run_phase(3);
    }

    /// Whether the response body should be given (access on, an inspected MIME type).
    pub fn wants_response_body(&self) -> bool {
        let s = &self.waf.settings;
        if !s.response_body_access || self.mode == Mode::Off || self.intervention.is_some() {
            return false;
        }
        let ct = self
            .data
            .scalars
            .get("RESPONSE_CONTENT_TYPE")
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        let mime = ct.split(';').next().unwrap_or("").trim().to_string();
        s.response_mime_types.contains(&mime)
    }

    /// Phase 4 with the whole response body (its first bytes up to `SecResponseBodyLimit`;
    /// over it, `Reject` decides 500 as ModSecurity does).
    pub fn response_body(&mut self, body: &[u8]) {
        let over = body.len() > self.waf.settings.response_body_limit;
        self.response_phase(body, over);
    }

    /// Phase 4 on the first bytes of a response body that goes on past them (the proxy held
    /// [`Transaction::response_hold_limit`] bytes and streams the rest).
    pub fn response_body_prefix(&mut self, body: &[u8]) {
        let over = body.len() >= self.waf.settings.response_body_limit;
        self.response_phase(body, over);
    }

    /// How many response body bytes to hold before phase 4 can run (see
    /// [`Transaction::request_hold_limit`]).
    pub fn response_hold_limit(&self) -> usize {
        let s = &self.waf.settings;
        if s.response_body_limit_action == LimitAction::Reject {
            s.response_body_limit.saturating_add(1)
        } else {
            s.response_body_limit
        }
    }

    fn response_phase(&mut self, body: &[u8], over: bool) {
        let s = &self.waf.settings;
        let (limit, action) = (s.response_body_limit, s.response_body_limit_action);
        if over && action == LimitAction::Reject {
            self.limit_exceeded(
                500,
                "OUTBOUND_DATA_ERROR",
                "response body over SecResponseBodyLimit",
            );
        } else if over {
            self.data
                .scalars
                .insert("OUTBOUND_DATA_ERROR", Arc::from(&b"1"[..]));
        }
        let n = body.len().min(limit);
        self.data
            .scalars
            .insert("RESPONSE_BODY", Arc::from(&body[..n]));
        self.run_phase(4);
    }

    /// Phase 5.
    pub fn logging(&mut self) {
        self.run_phase(5);
    }

    /// The decision that stops the transaction (only when enforced).
    pub fn intervention(&self) -> Option<&Intervention> {
        self.intervention.as_ref()
    }

    /// The first decision to block, enforced or not (DetectionOnly records it here).
    pub fn decision(&self) -> Option<&Intervention> {
        self.intervention.as_ref().or(self.would_block.as_ref())
    }

    /// How many times an operator ran on a value in this transaction.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Every rule whose chain matched and that logs, in order.
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.matched
    }

    /// A `TX` variable (lower-case name), for scores and tests.
    pub fn tx_var(&self, name: &str) -> Option<&[u8]> {
        self.cols
            .tx()
            .get(name.to_ascii_lowercase().as_str())
            .map(|v| &v[..])
    }

    /// The inbound and outbound anomaly scores CRS computed.
    pub fn anomaly_scores(&self) -> (i64, i64) {
        let n = |k: &str| {
            self.tx_var(k)
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                .unwrap_or(0)
        };
        (
            n("blocking_inbound_anomaly_score").max(n("inbound_anomaly_score")),
            n("blocking_outbound_anomaly_score").max(n("outbound_anomaly_score")),
        )
    }

    /// A body the processors could not parse is refused (400) before the phase-2 rules, as
    /// modsecurity.conf-recommended's rules 200002 (`REQBODY_ERROR`) and 200003
    /// (`MULTIPART_STRICT_ERROR`) do, built in: rules never judge what they could not read.
    fn body_errors(&mut self) {
        let on = |t: &Transaction, v: &str| t.data.scalars.get(v).is_some_and(|x| &x[..] != b"0");
        let (id, variable, msg) = if on(self, "REQBODY_ERROR") {
            let why = self
                .data
                .scalars
                .get("REQBODY_ERROR_MSG")
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .unwrap_or_default();
            (
                200002,
                "REQBODY_ERROR",
                format!("Failed to parse request body: {why}"),
            )
        } else if on(self, "MULTIPART_STRICT_ERROR") {
            (
                200003,
                "MULTIPART_STRICT_ERROR",
                "Multipart request body failed strict validation".to_string(),
            )
        } else {
            return;
        };
        self.matched.push(MatchedRule {
            id,
            phase: 2,
            msg: msg.clone(),
            data: String::new(),
            severity: Some(2),
            variable: variable.into(),
            transforms: Vec::new(),
            score: 0,
            tags: vec!["sekisho/body-error".into()],
            origin: "built-in (modsecurity.conf-recommended)".into(),
        });
        let i = Intervention {
            status: 400,
            rule_id: id,
            phase: 2,
            drop: false,
            redirect: None,
            msg,
            enforced: self.mode == Mode::On,
        };
        if i.enforced {
            self.intervention = Some(i);
        } else if self.would_block.is_none() {
            self.would_block = Some(i);
        }
    }

    fn limit_exceeded(&mut self, status: u16, flag: &'static str, msg: &str) {
        let i = Intervention {
            status,
            rule_id: 0,
            phase: if status == 413 { 2 } else { 4 },
            drop: false,
            redirect: None,
            msg: msg.into(),
            enforced: self.mode == Mode::On,
        };
        self.data.scalars.insert(flag, Arc::from(&b"1"[..]));
        if i.enforced {
            self.intervention = Some(i);
        } else if self.would_block.is_none() {
            self.would_block = Some(i);
        }
    }
}
