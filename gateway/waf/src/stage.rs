//! The `waf` stage: each HTTP transaction of a flow runs through the engine's phases (1 at
//! the request head, 2 on the held request body, 3 at the response head, 4 and 5 on the held
//! response body), and what matched becomes one finding carrying every matched rule: reported
//! when the transaction ends (a block, the response judged, or the flow's end when the
//! response never came), so a transaction makes one event, as ModSecurity logs one.

use std::collections::HashMap;
use std::sync::Arc;

use sekisho_core::{
    BoxFuture, Cx, Direction, Evidence, Finding, FlowMeta, HeldBody, Inspector, Respond,
    ResponseHead, Severity, Stage, Verdict, WafInfo, WafRuleMatch,
};

use crate::engine::{self, Intervention, MatchedRule, Transaction, Waf};

/// The stage over a compiled rule set, and the rule sets of routes that ask for their own
/// (`None`: the route has no WAF).
pub struct WafStage {
    waf: Arc<Waf>,
    routes: Arc<HashMap<String, Option<Arc<Waf>>>>,
}

impl WafStage {
    /// A stage running `waf`, and for the routes named in `routes` their own set (or none).
    pub fn new(waf: Arc<Waf>, routes: HashMap<String, Option<Arc<Waf>>>) -> Self {
        WafStage {
            waf,
            routes: Arc::new(routes),
        }
    }
}

impl Stage for WafStage {
    fn name(&self) -> &'static str {
        "waf"
    }

    fn new_flow(&self, _meta: &FlowMeta) -> Box<dyn Inspector> {
        Box::new(WafInspector {
            waf: Arc::clone(&self.waf),
            routes: Arc::clone(&self.routes),
            tx: None,
            reported: 0,
            decision_reported: false,
            logged: false,
        })
    }
}

/// One flow's inspector: the current transaction and how many of its matches were reported.
struct WafInspector {
    waf: Arc<Waf>,
    routes: Arc<HashMap<String, Option<Arc<Waf>>>>,
    tx: Option<Transaction>,
    reported: usize,
    /// Whether the transaction's decision went out in a finding already.
    decision_reported: bool,
    /// Whether phase 5 ran.
    logged: bool,
}

impl Inspector for WafInspector {
    fn on_request_head(&mut self, cx: &mut Cx<'_>, head: &sekisho_core::RequestHead) -> Verdict {
        if head.method == http::Method::CONNECT {
            return Verdict::Allow;
        }
        let waf = match head.route.as_deref().and_then(|r| self.routes.get(r)) {
            Some(None) => {
                self.tx = None;
                return Verdict::Allow;
            }
            Some(Some(w)) => Arc::clone(w),
            None => Arc::clone(&self.waf),
        };
        let mut tx = Transaction::new(waf, &request_head(cx.meta(), head));
        self.reported = 0;
        self.decision_reported = false;
        self.logged = false;
        tx.request_headers();
        if tx.intervention().is_none()
            && content_length(head).is_some_and(|n| tx.refuses_request_length(n))
        {
            // ModSecurity refuses a Content-Length over the limit before reading the body.
            tx.request_body(&[], usize::MAX);
        }
        let blocked = tx.intervention().is_some();
        let bodyless = !blocked && has_no_body(head);
        if bodyless {
            // Nothing to wait for: phase 2 runs now, as it would on the empty held body.
            tx.request_body(&[], 0);
        }
        self.tx = Some(tx);
        if blocked || bodyless {
            return self.conclude(cx, false);
        }
        // Phase 2 runs in `resolve`, once the body is held.
        Verdict::Hold
    }

    fn on_response_head(&mut self, cx: &mut Cx<'_>, head: &ResponseHead) -> Verdict {
        let Some(tx) = self.tx.as_mut() else {
            return Verdict::Allow;
        };
        let headers: Vec<(Vec<u8>, Vec<u8>)> = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        tx.response_headers(head.status.as_u16(), version(head.version), &headers);
        if tx.intervention().is_some() {
            return self.conclude(cx, false);
        }
        if tx.wants_response_body() {
            return Verdict::Hold;
        }
        self.conclude(cx, true)
    }

    fn resolve<'a>(&'a mut self, cx: &'a mut Cx<'_>, held: &'a HeldBody) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let Some(tx) = self.tx.as_mut() else {
                return Verdict::Allow;
            };
            let body = held.contiguous();
            let last = match (held.direction(), held.is_prefix()) {
                (Some(Direction::Request), false) => {
                    tx.request_body(&body, body.len());
                    false
                }
                (Some(Direction::Request), true) => {
                    tx.request_body_prefix(&body);
                    false
                }
                (_, true) => {
                    tx.response_body_prefix(&body);
                    true
                }
                (_, false) => {
                    tx.response_body(&body);
                    true
                }
            };
            self.conclude(cx, last)
        })
    }

    fn on_flow_end(&mut self, cx: &mut Cx<'_>) {
        // The response never came (upstream failure, client gone): phase 5 runs anyway, as
        // ModSecurity's logging phase does, and what matched is reported.
        self.conclude(cx, true);
    }

    fn hold_limit(&self, dir: Direction) -> Option<usize> {
        let tx = self.tx.as_ref()?;
        Some(match dir {
            Direction::Request => tx.request_hold_limit(),
            Direction::Response => tx.response_hold_limit(),
        })
    }
}

/// Whether an HTTP/1 request carries no body: it announces none, neither Transfer-Encoding
/// nor Content-Length (RFC 9112 §6.3: its body length is zero, and the server reads the next
/// bytes as the next request). Any announced length, `0` included, is held and read, so no
/// spelling of a length the server honours can skip phase 2. An h2 request may send DATA
/// without announcing a length, so it is always held.
fn has_no_body(head: &sekisho_core::RequestHead) -> bool {
    head.version < http::Version::HTTP_2
        && !head.headers.contains_key(http::header::TRANSFER_ENCODING)
        && !head.headers.contains_key(http::header::CONTENT_LENGTH)
}

/// The request's Content-Length, when it has one valid value.
fn content_length(head: &sekisho_core::RequestHead) -> Option<u64> {
    let mut values = head.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let one = values.next()?;
    if values.next().is_some() {
        return None;
    }
    one.to_str().ok()?.trim().parse().ok()
}

impl WafInspector {
    /// The verdict so far. What matched is reported, as one finding, when the transaction
    /// ends: at a block or when `last` (the response judged, or the flow over); phase 5 runs
    /// first. Before that a match only makes the verdict an alert.
    fn conclude(&mut self, cx: &mut Cx<'_>, last: bool) -> Verdict {
        let Some(tx) = self.tx.as_mut() else {
            return Verdict::Allow;
        };
        let blocked = tx.intervention().is_some();
        if (blocked || last) && !self.logged {
            self.logged = true;
            tx.logging();
        }
        let new = &tx.matched_rules()[self.reported.min(tx.matched_rules().len())..];
        let decision = tx.decision().cloned();
        let new_decision = decision.is_some() && !self.decision_reported;
        let verdict = match tx.intervention() {
            Some(_) => Verdict::Block,
            None if tx.matched_rules().is_empty() && decision.is_none() => Verdict::Allow,
            None => Verdict::Alert,
        };
        if (new.is_empty() && !new_decision) || !(blocked || last) {
            // Nothing new, or kept for the transaction's one finding.
            return verdict;
        }
        self.reported = tx.matched_rules().len();
        self.decision_reported |= decision.is_some();
        cx.report(finding(tx, new, decision.as_ref()));
        if let Some(r) = tx.intervention().and_then(respond) {
            cx.respond(r);
        }
        verdict
    }
}

fn respond(i: &Intervention) -> Option<Respond> {
    match &i.redirect {
        Some(location) => Some(Respond::Redirect {
            status: if matches!(i.status, 301 | 302 | 303 | 307 | 308) {
                i.status
            } else {
                302
            },
            location: location.clone(),
        }),
        None if i.status != 403 => Some(Respond::Status(i.status)),
        None => None,
    }
}

/// The finding: the deciding rule (or the most severe match) as its rule, every match in
/// `waf.matched_rules`.
fn finding(tx: &Transaction, new: &[MatchedRule], decision: Option<&Intervention>) -> Finding {
    let top = new
        .iter()
        .min_by_key(|m| m.severity.unwrap_or(8))
        .or_else(|| tx.matched_rules().last());
    let (rule_id, message) = match (decision, top) {
        (Some(d), _) => (d.rule_id.to_string(), d.msg.clone()),
        (None, Some(m)) => (m.id.to_string(), m.msg.clone()),
        (None, None) => ("0".into(), String::new()),
    };
    let sev = top.and_then(|m| m.severity).unwrap_or(5);
    let (location, data) = top.map_or((String::new(), String::new()), |m| {
        (m.variable.clone(), m.data.clone())
    });
    let mut f = Finding::new(
        "waf",
        rule_id,
        message,
        severity(sev),
        "web-attack",
        Evidence::new(location, &data),
    );
    if let Some(m) = top {
        f.matched.transforms = m.transforms.iter().map(|t| t.to_string()).collect();
        if let Some((file, line)) = m.origin.rsplit_once(':') {
            f.source = Some((file.to_string(), line.parse().unwrap_or(0)));
        }
    }
    let (inbound, outbound) = tx.anomaly_scores();
    f.waf = Some(Box::new(WafInfo {
        matched_rules: new.iter().map(rule_match).collect(),
        inbound_score: inbound,
        outbound_score: outbound,
        enforced: decision.is_some_and(|d| d.enforced),
    }));
    f
}

fn rule_match(m: &MatchedRule) -> WafRuleMatch {
    WafRuleMatch {
        id: m.id,
        msg: m.msg.clone(),
        data: m.data.clone(),
        severity: m
            .severity
            .map(engine::severity_name)
            .unwrap_or("")
            .to_string(),
        phase: m.phase,
        variable: m.variable.clone(),
        transforms: m.transforms.iter().map(|t| t.to_string()).collect(),
        score: m.score,
    }
}

/// ModSecurity's severities (0 emergency … 7 debug) as the gateway's.
fn severity(s: u8) -> Severity {
    match s {
        0..=2 => Severity::Critical,
        3 => Severity::High,
        4 => Severity::Medium,
        _ => Severity::Low,
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The engine's view of a request: the request line and headers exactly as the client sent
/// them when the listener kept the raw head (HTTP/1), else rebuilt from the parsed head.
fn request_head(meta: &FlowMeta, head: &sekisho_core::RequestHead) -> engine::RequestHead {
    let mut out = engine::RequestHead {
        method: head.method.as_str().to_string(),
        uri: head.path_and_query().as_bytes().to_vec(),
        protocol: version(head.version).to_string(),
        headers: Vec::new(),
        remote_addr: meta.client.ip().to_string(),
        remote_port: meta.client.port(),
        server_addr: meta.local.ip().to_string(),
        server_port: meta.local.port(),
        unique_id: meta
            .request_id
            .clone()
            .unwrap_or_else(|| meta.flow_id.to_string()),
    };
    if let Some(raw) = head.raw.as_deref() {
        raw_head(raw, &mut out);
    }
    // Without a raw head (h2), or one whose header lines could not be read, the parsed ones.
    if out.headers.is_empty() {
        out.headers = head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
    }
    out
}

/// Replaces the target and protocol with those of the raw HTTP/1 head, and adds its headers.
fn raw_head(raw: &[u8], out: &mut engine::RequestHead) {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(first) = lines.next() else { return };
    let parts: Vec<&[u8]> = first
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    if let [_, target, proto] = parts.as_slice() {
        out.uri = target.to_vec();
        out.protocol = String::from_utf8_lossy(proto).into_owned();
    }
    for line in lines.take_while(|l| !l.is_empty()) {
        if let Some(c) = line.iter().position(|&b| b == b':') {
            out.headers
                .push((line[..c].to_vec(), line[c + 1..].trim_ascii().to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: Option<&str>) -> sekisho_core::RequestHead {
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", http::HeaderValue::from_static("parsed"));
        let mut h = sekisho_core::RequestHead::new(
            http::Method::GET,
            "/a?b=c".parse().unwrap(),
            http::Version::HTTP_11,
            headers,
            80,
        );
        h.raw = raw.map(|r| r.as_bytes().to_vec().into());
        h
    }

    /// The engine reads the header lines as sent when the listener kept them (HTTP/1), the
    /// parsed ones otherwise (h2) or when the raw head holds no header line.
    #[test]
    fn the_request_head_is_the_raw_one_when_there_is_one() {
        let meta = FlowMeta::new(
            1,
            "web",
            "127.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap(),
        );
        let sent = "GET /a?b=%63 HTTP/1.1\r\nUser-Agent:  As Sent \r\nX-Two: 2\r\n\r\n";
        let got = request_head(&meta, &head(Some(sent)));
        assert_eq!(got.uri, b"/a?b=%63");
        assert_eq!(
            got.headers,
            vec![
                (b"User-Agent".to_vec(), b"As Sent".to_vec()),
                (b"X-Two".to_vec(), b"2".to_vec())
            ]
        );
        for raw in [None, Some("GET /a?b=c HTTP/1.1\r\n\r\n")] {
            let got = request_head(&meta, &head(raw));
            assert_eq!(
                got.headers,
                vec![(b"user-agent".to_vec(), b"parsed".to_vec())],
                "{raw:?}"
            );
        }
    }
}
