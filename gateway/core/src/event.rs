//! Threat events, the communication log and their JSON schema.
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Finding, FlowMeta, TlsMode, Verdict};

/// Who observed the event (ECS `observer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observer {
    /// Product name, `sekisho`.
    pub name: String,
    /// Product version.
    pub version: String,
    /// The gateway node's name (config `node_name`, default the host name).
    pub node: String,
}

/// ECS `event`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInfo {
    /// UUIDv7: unique and time-ordered, the key for deduplication.
    pub id: Uuid,
    /// `alert` for threat events.
    pub kind: String,
    /// Category (classtype, URL category, …).
    pub category: String,
    /// `blocked`, `allowed` or `detected`.
    pub action: String,
    /// Numeric severity, 1 (high) … 4 (info).
    pub severity: u8,
}

/// ECS `source`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Client IP.
    pub ip: String,
    /// Client port.
    pub port: u16,
}

/// ECS `destination`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationInfo {
    /// Upstream IP, when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Upstream port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Upstream host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// `tls`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// SNI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// True when the gateway decrypted the flow.
    pub decrypted: bool,
    /// The client certificate (reverse proxy with client authentication).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client: Option<TlsClientInfo>,
    /// What went wrong with TLS on this flow, if anything.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<crate::TlsError>,
    /// The gateway's TLS session with the upstream.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream: Option<crate::UpstreamTls>,
}

/// `tls.client`: the client certificate's subject, issuer and serial (ECS names).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsClientInfo {
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// `x509.serial_number`.
    pub x509: TlsClientX509,
}

/// `tls.client.x509`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsClientX509 {
    /// Serial number, hex.
    pub serial_number: String,
}

/// `http`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpInfo {
    /// Method.
    pub method: String,
    /// Full URL (scheme, host, path and query).
    pub url: String,
    /// Host name (EVE `http.hostname`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Response status, when there was a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// User agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The request id the gateway sent upstream (`X-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// `facility`: the healthcare facility and the roles identified by its client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityInfo {
    /// Facility ID.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    /// The roles the certificate carries (`role_id`), e.g. HPKI's "Medical Doctor".
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub roles: Vec<String>,
}

impl FacilityInfo {
    /// The facility facts of a flow, if it has any.
    pub fn of(meta: &FlowMeta) -> Option<FacilityInfo> {
        (meta.facility_id.is_some() || !meta.facility_roles.is_empty()).then(|| FacilityInfo {
            id: meta.facility_id.clone(),
            roles: meta.facility_roles.clone(),
        })
    }
}

/// `rule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// Rule id (SID, rule name, list entry).
    pub id: String,
    /// Revision.
    pub rev: u32,
    /// Rule name / message.
    pub name: String,
    /// Category.
    pub category: String,
    /// Engine that matched.
    pub engine: String,
    /// Rule file, when the rule came from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_file: Option<String>,
    /// Line in the rule file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// EVE `alert`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertInfo {
    /// Signature id, a number for every engine (EVE's type, so one index takes every event):
    /// a numeric rule id (Suricata SID, WAF rule id) as it is, any other id (a ClamAV or YARA
    /// name, a URL list entry, a fault) as [`signature_number`] of engine and id, from 2^32 up,
    /// outside Suricata's SID space. `rule.id` keeps the id as written.
    pub signature_id: u64,
    /// Signature text.
    pub signature: String,
    /// 1 (high) … 4 (info).
    pub severity: u8,
    /// `blocked`, `allowed` or `detected`.
    pub action: String,
    /// Category.
    pub category: String,
    /// Generator id (IPS signatures).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<u32>,
    /// Revision (IPS signatures).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rev: Option<u32>,
    /// The rule's own action (`alert`, `drop`, `reject` …), for IPS signatures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rule_action: Option<String>,
    /// Signature metadata (`key value` entries), for IPS signatures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<Vec<String>>,
}

/// `file`: set by engines that inspect files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// MIME type.
    pub mime: String,
    /// Where the gateway kept a copy (IPS `filestore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
}

/// `evidence`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEvidence {
    /// Where it matched.
    pub location: String,
    /// Bounded excerpt.
    pub excerpt: String,
    /// Transformations applied.
    pub transforms: Vec<String>,
}

/// A threat event: ECS-shaped JSON that also carries Suricata EVE fields
/// (`event_type`, `src_ip`, `dest_ip`, `alert.*`, `flow_id`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreatEvent {
    /// RFC 3339 UTC time.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// EVE `event_type`: `alert`.
    pub event_type: String,
    /// ECS `event`.
    pub event: EventInfo,
    /// ECS `observer`.
    pub observer: Observer,
    /// ECS `source`.
    pub source: SourceInfo,
    /// ECS `destination`.
    pub destination: DestinationInfo,
    /// EVE `src_ip`.
    pub src_ip: String,
    /// EVE `src_port`.
    pub src_port: u16,
    /// EVE `dest_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_ip: Option<String>,
    /// EVE `dest_port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// EVE `proto`.
    pub proto: String,
    /// TLS facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// HTTP facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpInfo>,
    /// Facility identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<FacilityInfo>,
    /// The rule that matched.
    pub rule: RuleInfo,
    /// EVE alert block.
    pub alert: AlertInfo,
    /// File facts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    /// Flow id (ties to the communication log).
    pub flow_id: u64,
    /// Listener name.
    pub listener: String,
    /// Stage name.
    pub stage: String,
    /// What matched.
    pub evidence: EventEvidence,
    /// URL filter facts (category, list, entry, policy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url_filter: Option<crate::UrlCategoryInfo>,
    /// Every WAF rule that matched in the transaction (`rule` is the one that decided).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub matched_rules: Option<Vec<crate::WafRuleMatch>>,
    /// WAF anomaly scores.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub waf: Option<WafScores>,
    /// The sandbox's verdict, score and behaviour signatures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sandbox: Option<crate::SandboxInfo>,
}

/// The anomaly scores of a WAF event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WafScores {
    /// Inbound anomaly score.
    pub inbound_score: i64,
    /// Outbound anomaly score.
    pub outbound_score: i64,
    /// Whether the decision was enforced (false in DetectionOnly).
    pub enforced: bool,
}

/// First number of the range [`AlertInfo::signature_id`] gives ids that are not numbers.
pub const DERIVED_SIGNATURE_BASE: u64 = 1 << 32;

/// `alert.signature_id` for `engine`'s rule `id`: the id itself when it is a number Suricata
/// could use as a SID (0 to 2^32 - 1), else 2^32 plus the FNV-1a (32 bit) hash of
/// `engine:id` — the same on every node and version, so a dashboard can count by it.
pub fn signature_number(engine: &str, id: &str) -> u64 {
    let numeric = !id.is_empty() && id.len() <= 10 && id.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = numeric.then(|| id.parse::<u32>().ok()).flatten() {
        return u64::from(n);
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in engine
        .bytes()
        .chain(std::iter::once(b':'))
        .chain(id.bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    DERIVED_SIGNATURE_BASE + u64::from(h)
}

/// RFC 3339 UTC timestamp with milliseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&fmt).unwrap_or_default()
}

impl ThreatEvent {
    /// Builds the event for one finding of a flow.
    pub fn from_finding(
        finding: &Finding,
        meta: &FlowMeta,
        observer: &Observer,
        destination: DestinationInfo,
        http: Option<HttpInfo>,
    ) -> Self {
        let action = finding.action.as_str().to_string();
        let severity = finding.severity.priority();
        let tls = match meta.tls {
            TlsMode::None if meta.sni.is_none() => None,
            mode => Some(TlsInfo {
                sni: meta.sni.clone(),
                decrypted: mode == TlsMode::Decrypted,
                client: meta.client_cert.as_ref().map(|c| TlsClientInfo {
                    subject: c.subject.clone(),
                    issuer: c.issuer.clone(),
                    x509: TlsClientX509 {
                        serial_number: c.serial.clone(),
                    },
                }),
                error: meta.tls_error.clone(),
                upstream: meta.upstream_tls.clone(),
            }),
        };
        ThreatEvent {
            timestamp: now_rfc3339(),
            event_type: "alert".into(),
            event: EventInfo {
                id: finding.event_id,
                kind: "alert".into(),
                category: finding.category.clone(),
                action: action.clone(),
                severity,
            },
            observer: observer.clone(),
            source: SourceInfo {
                ip: meta.client.ip().to_string(),
                port: meta.client.port(),
            },
            src_ip: meta.client.ip().to_string(),
            src_port: meta.client.port(),
            dest_ip: destination.ip.clone(),
            dest_port: destination.port,
            destination,
            proto: "TCP".into(),
            tls,
            http,
            facility: FacilityInfo::of(meta),
            rule: RuleInfo {
                id: finding.rule_id.clone(),
                rev: finding.rev,
                name: finding.message.clone(),
                category: finding.category.clone(),
                engine: finding.engine.clone(),
                source_file: finding.source.as_ref().map(|s| s.0.clone()),
                line: finding.source.as_ref().map(|s| s.1).filter(|l| *l > 0),
            },
            alert: AlertInfo {
                signature_id: signature_number(&finding.engine, &finding.rule_id),
                signature: finding.message.clone(),
                severity,
                action,
                category: finding.category.clone(),
                gid: finding.signature.as_ref().map(|s| s.gid),
                rev: finding.signature.as_ref().map(|_| finding.rev),
                rule_action: finding.signature.as_ref().map(|s| s.rule_action.clone()),
                metadata: finding.signature.as_ref().map(|s| s.metadata.clone()),
            },
            file: finding.file.clone(),
            flow_id: meta.flow_id,
            listener: meta.listener.clone(),
            stage: finding.stage.to_string(),
            evidence: EventEvidence {
                location: finding.matched.location.clone(),
                excerpt: finding.matched.data_excerpt.clone(),
                transforms: finding.matched.transforms.clone(),
            },
            url_filter: finding.url.clone(),
            matched_rules: finding.waf.as_ref().map(|w| w.matched_rules.clone()),
            waf: finding.waf.as_ref().map(|w| WafScores {
                inbound_score: w.inbound_score,
                outbound_score: w.outbound_score,
                enforced: w.enforced,
            }),
            sandbox: finding.sandbox.as_deref().cloned(),
        }
    }
}

/// A flow line's `tls`: the threat events' `tls` fields that apply, so both kinds of line
/// share one index mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowTls {
    /// `none`, `decrypted` or `spliced`.
    pub mode: TlsMode,
    /// Decrypted and inspected.
    pub decrypted: bool,
    /// What went wrong with TLS on this flow, if anything.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<crate::TlsError>,
    /// The gateway's TLS session with the upstream.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream: Option<crate::UpstreamTls>,
}

impl From<TlsMode> for FlowTls {
    fn from(mode: TlsMode) -> Self {
        FlowTls {
            mode,
            decrypted: mode == TlsMode::Decrypted,
            error: None,
            upstream: None,
        }
    }
}

/// One line per flow of the communication log, for incident tracing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommLog {
    /// RFC 3339 UTC time at the end of the flow.
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// `flow`.
    pub event_type: String,
    /// Flow id.
    pub flow_id: u64,
    /// Listener name.
    pub listener: String,
    /// Client.
    pub source: SourceInfo,
    /// Upstream.
    pub destination: DestinationInfo,
    /// SNI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// How TLS was handled (an object, like the threat events' `tls`).
    pub tls: FlowTls,
    /// HTTP method (`CONNECT` for tunnels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Host asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Path and query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response status sent to the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Bytes delivered to the server (body bytes for HTTP, all bytes for spliced tunnels): a
    /// blocked upload delivers nothing.
    pub bytes_to_server: u64,
    /// Bytes delivered to the client (a block page's body included).
    pub bytes_to_client: u64,
    /// Bytes received from the client (body bytes for HTTP, decrypted bytes for a decrypted
    /// tunnel, all bytes for spliced tunnels), delivered or not.
    #[serde(default)]
    pub bytes_from_client: u64,
    /// Bytes received from the server, delivered or not.
    #[serde(default)]
    pub bytes_from_server: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// The flow's final verdict.
    pub verdict: Verdict,
    /// Threat events raised by the flow.
    pub event_ids: Vec<Uuid>,
    /// Facility identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility_id: Option<String>,
    /// The roles of the client certificate.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub facility_roles: Vec<String>,
    /// Request id sent upstream (reverse proxy).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// What went wrong, if anything (upstream unreachable, client reset …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Evidence, Severity};

    #[test]
    fn signature_ids_are_numbers_for_every_engine() {
        assert_eq!(signature_number("suricata", "2049400"), 2_049_400);
        assert_eq!(signature_number("waf", "942100"), 942_100);
        assert_eq!(
            signature_number("suricata", "4294967295"),
            u64::from(u32::MAX)
        );
        // Not a SID: a name, too large, signs, empty: derived, from 2^32 up.
        for (engine, id) in [
            ("clamav", "Eicar-Test-Signature"),
            ("suricata", "4294967296"),
            ("waf", "+12"),
            ("gateway", ""),
        ] {
            let n = signature_number(engine, id);
            assert!(
                (DERIVED_SIGNATURE_BASE..DERIVED_SIGNATURE_BASE << 1).contains(&n),
                "{id}"
            );
        }
        // Stable, and the engine is part of it.
        let a = signature_number("yara", "Sample");
        assert_eq!(a, signature_number("yara", "Sample"));
        assert_ne!(a, signature_number("clamav", "Sample"));
        // FNV-1a of "yara:Sample", checked independently.
        let mut h: u64 = 0x811c_9dc5;
        for b in b"yara:Sample" {
            h = ((h ^ u64::from(*b)) * 0x0100_0193) % (1 << 32);
        }
        assert_eq!(a, (1 << 32) + h);
    }

    #[test]
    fn event_has_schema_fields() {
        let meta = FlowMeta {
            sni: Some("a.test".into()),
            tls: TlsMode::Decrypted,
            facility_id: Some("F-1".into()),
            facility_roles: vec!["Medical Doctor".into()],
            ..FlowMeta::new(
                7,
                "fwd",
                "[::1]:5000".parse().unwrap(),
                "[::1]:3128".parse().unwrap(),
            )
        };
        let mut f = Finding::new(
            "policy",
            "deny_hosts:*.bad.test",
            "host denied",
            Severity::High,
            "policy",
            Evidence::new("request.host", "x.bad.test"),
        );
        f.action = Action::Blocked;
        f.stage = "host_policy";
        let obs = Observer {
            name: "sekisho".into(),
            version: "0".into(),
            node: "n".into(),
        };
        let e = ThreatEvent::from_finding(
            &f,
            &meta,
            &obs,
            DestinationInfo {
                domain: Some("x.bad.test".into()),
                port: Some(443),
                ip: None,
            },
            None,
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"]["id"], f.event_id.to_string());
        assert_eq!(v["event"]["action"], "blocked");
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["event_type"], "alert");
        assert_eq!(v["source"]["ip"], "::1");
        assert_eq!(v["src_port"], 5000);
        assert_eq!(v["tls"]["sni"], "a.test");
        assert_eq!(v["tls"]["decrypted"], true);
        assert_eq!(v["facility"]["id"], "F-1");
        assert_eq!(
            v["facility"]["roles"],
            serde_json::json!(["Medical Doctor"])
        );
        assert_eq!(v["rule"]["id"], "deny_hosts:*.bad.test");
        assert_eq!(v["alert"]["severity"], 1);
        assert_eq!(v["flow_id"], 7);
        assert_eq!(v["evidence"]["excerpt"], "x.bad.test");
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(v.get("http").is_none());
    }
}
