use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How serious a finding is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: no threat by itself (e.g. a flow passed uninspected by policy).
    Info,
    /// Low.
    Low,
    /// Medium.
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Suricata-style priority (1 = most severe … 4 = informational), as EVE's `alert.severity`.
    pub fn priority(self) -> u8 {
        match self {
            Severity::Critical | Severity::High => 1,
            Severity::Medium => 2,
            Severity::Low => 3,
            Severity::Info => 4,
        }
    }
}

/// What the gateway did about a finding (ECS `event.action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The flow was refused.
    Blocked,
    /// The flow passed (an alert, or a fail-open).
    #[default]
    Allowed,
    /// The stage runs in detect mode: the flow would have been blocked.
    Detected,
}

impl Action {
    /// Lower-case name, as used in metrics labels and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Blocked => "blocked",
            Action::Allowed => "allowed",
            Action::Detected => "detected",
        }
    }
}

/// Where in the flow a finding matched and what it matched (bounded; masked by policy downstream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Which buffer: `request.host`, `tls.sni`, `connect.host`, `response.body > gzip`, …
    pub location: String,
    /// A bounded excerpt of the matched data.
    pub data_excerpt: String,
    /// Transformations applied before the match (decoding, normalisation).
    pub transforms: Vec<String>,
}

/// The most bytes of matched data an evidence excerpt keeps.
pub const MAX_EXCERPT: usize = 256;

impl Evidence {
    /// Evidence with an excerpt cut to [`MAX_EXCERPT`] bytes at a character boundary.
    pub fn new(location: impl Into<String>, data: &str) -> Self {
        let mut end = data.len().min(MAX_EXCERPT);
        while !data.is_char_boundary(end) {
            end -= 1;
        }
        Evidence {
            location: location.into(),
            data_excerpt: data[..end].to_string(),
            transforms: Vec::new(),
        }
    }
}

/// One thing a stage found. The pipeline sets `stage`, `action` and `event_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The event id this finding becomes (UUIDv7), shown on block pages.
    pub event_id: Uuid,
    /// The stage that reported it.
    pub stage: &'static str,
    /// The engine inside the stage (`policy`, `ips`, `yara`, `tls`, …).
    pub engine: String,
    /// Rule identifier (a SID, a rule name, a list entry).
    pub rule_id: String,
    /// Rule revision.
    pub rev: u32,
    /// Human-readable message (the signature text).
    pub message: String,
    /// Severity.
    pub severity: Severity,
    /// Category (classtype, URL category, malware family …).
    pub category: String,
    /// What the gateway did.
    pub action: Action,
    /// The file and line of the rule, when it came from a rule file.
    pub source: Option<(String, u32)>,
    /// What matched, where.
    pub matched: Evidence,
    /// The file the finding is about (AV, sandbox), when there is one.
    pub file: Option<crate::FileInfo>,
    /// Signature facts of IPS rules (EVE `alert.gid`, `rev`, `metadata`, rule action).
    pub signature: Option<SignatureInfo>,
    /// URL filter facts: category, list, entry, policy.
    pub url: Option<UrlCategoryInfo>,
    /// WAF facts: every matched rule and the anomaly scores.
    pub waf: Option<Box<WafInfo>>,
    /// Sandbox facts: verdict, score, behaviour signatures hit.
    pub sandbox: Option<Box<SandboxInfo>>,
}

/// What the sandbox adds to a finding (event key `sandbox`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxInfo {
    /// `malicious`, `suspicious`, or `none` (no verdict in time, or none to be had).
    pub verdict: String,
    /// 0 to 10 (0 without a verdict).
    pub score: u8,
    /// The behaviour signatures hit, heaviest first.
    pub signatures: Vec<String>,
    /// The verdict came after the flow was decided.
    pub late: bool,
}

/// What the WAF adds to a finding (event keys `matched_rules` and `waf`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WafInfo {
    /// Every rule that matched and logs, in the order they ran.
    pub matched_rules: Vec<WafRuleMatch>,
    /// The inbound anomaly score.
    pub inbound_score: i64,
    /// The outbound anomaly score.
    pub outbound_score: i64,
    /// Whether the deciding rule's action was enforced (false in DetectionOnly).
    pub enforced: bool,
}

/// One matched WAF rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WafRuleMatch {
    /// Rule id.
    pub id: u64,
    /// `msg`, expanded.
    pub msg: String,
    /// `logdata`, expanded.
    pub data: String,
    /// Severity name (`CRITICAL`), empty when the rule sets none.
    pub severity: String,
    /// Phase 1 to 5.
    pub phase: u8,
    /// The variable that matched (`ARGS:id`).
    pub variable: String,
    /// The transformations applied.
    pub transforms: Vec<String>,
    /// What the rule added to the anomaly score.
    pub score: i64,
}

/// What the URL filter adds to a finding (event key `url_filter`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlCategoryInfo {
    /// The category or list that decided (`default` when the policy default did).
    pub category: String,
    /// `category` (downloaded lists) or `list` (the operator's own), or `default`.
    pub source: String,
    /// The list file the entry is in.
    pub list: String,
    /// The matched entry (domain, IP, URL prefix or expression).
    pub entry: String,
    /// `domain`, `ip`, `url`, `expression` or `none`.
    pub match_type: String,
    /// The policy that decided.
    pub policy: String,
    /// The policy's action: `allow`, `alert`, `warn` or `block`.
    pub policy_action: String,
    /// The canonical URL (or host) judged.
    pub canonical: String,
}

/// What an IPS signature adds to a finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// Generator id.
    pub gid: u32,
    /// The rule's action as written (`alert`, `drop`, `reject` …).
    pub rule_action: String,
    /// `metadata` entries.
    pub metadata: Vec<String>,
    /// `reference` entries.
    pub references: Vec<String>,
}

impl Finding {
    /// A finding with a fresh event id; the pipeline fills in `stage` and `action`.
    pub fn new(
        engine: impl Into<String>,
        rule_id: impl Into<String>,
        message: impl Into<String>,
        severity: Severity,
        category: impl Into<String>,
        matched: Evidence,
    ) -> Self {
        Finding {
            event_id: Uuid::now_v7(),
            stage: "",
            engine: engine.into(),
            rule_id: rule_id.into(),
            rev: 1,
            message: message.into(),
            severity,
            category: category.into(),
            action: Action::Allowed,
            source: None,
            matched,
            file: None,
            signature: None,
            url: None,
            waf: None,
            sandbox: None,
        }
    }
}
