//! Encoders: ECS/EVE JSON, CEF, and RFC 5424 syslog (JSON message) with RFC 6587 octet-counting
//! framing. They work on the event as a JSON value, so threat events, communication-log lines
//! and `log_loss` events share them, after masking.

use serde::Deserialize;
use serde_json::Value;

/// A sink's format (`format` in `[[mss.sink]]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// One ECS/EVE JSON object.
    #[default]
    Json,
    /// ArcSight Common Event Format.
    Cef,
    /// RFC 5424 syslog whose MSG is the JSON object.
    Rfc5424Json,
}

impl Format {
    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cef => "cef",
            Format::Rfc5424Json => "rfc5424-json",
        }
    }
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn n(v: &Value, path: &[&str]) -> Option<u64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_u64()
}

/// The event's EVE priority (1 high … 4 info): `alert.severity`, else 4 (flows), 2 for `log_loss`.
pub fn priority(ev: &Value) -> u8 {
    if let Some(p) = n(ev, &["alert", "severity"]) {
        return p.clamp(1, 4) as u8;
    }
    if s(ev, &["event_type"]) == Some("log_loss") {
        return 2;
    }
    4
}

/// The event as one JSON line (no newline).
pub fn json(ev: &Value) -> String {
    serde_json::to_string(ev).unwrap_or_else(|e| format!("{{\"encode_error\":\"{e}\"}}"))
}

fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

fn cef_ext(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// The event in CEF: `CEF:0|Sekisho|Sekisho|version|signature id|name|severity|extension`.
/// Severity 0–10 from the EVE priority (1 → 10, 2 → 7, 3 → 4, 4 → 1). Communication-log lines
/// get signature id `flow`; `log_loss` events `log_loss`.
pub fn cef(ev: &Value) -> String {
    let sev = match priority(ev) {
        1 => 10,
        2 => 7,
        3 => 4,
        _ => 1,
    };
    let etype = s(ev, &["event_type"]).unwrap_or("alert");
    let (sig_id, sig) = match etype {
        "alert" => (
            // CEF's Signature ID is a string: the rule id as written (a SID, a ClamAV name).
            s(ev, &["rule", "id"]).unwrap_or("-").to_string(),
            s(ev, &["alert", "signature"]).unwrap_or("-").to_string(),
        ),
        "flow" => ("flow".into(), "communication log".into()),
        other => (other.to_string(), other.replace('_', " ")),
    };
    let mut ext = Vec::with_capacity(16);
    let mut kv = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            ext.push(format!("{k}={}", cef_ext(&v)));
        }
    };
    kv("rt", s(ev, &["@timestamp"]).map(str::to_string));
    kv("externalId", s(ev, &["event", "id"]).map(str::to_string));
    kv(
        "act",
        s(ev, &["event", "action"])
            .or(s(ev, &["verdict"]))
            .map(str::to_string),
    );
    kv("cat", s(ev, &["rule", "category"]).map(str::to_string));
    kv("src", s(ev, &["source", "ip"]).map(str::to_string));
    kv("spt", n(ev, &["source", "port"]).map(|p| p.to_string()));
    kv("dst", s(ev, &["destination", "ip"]).map(str::to_string));
    kv(
        "dpt",
        n(ev, &["destination", "port"]).map(|p| p.to_string()),
    );
    kv(
        "dhost",
        s(ev, &["destination", "domain"])
            .or(s(ev, &["host"]))
            .map(str::to_string),
    );
    kv("request", s(ev, &["http", "url"]).map(str::to_string));
    kv(
        "requestMethod",
        s(ev, &["http", "method"])
            .or(s(ev, &["method"]))
            .map(str::to_string),
    );
    if let Some(v) = s(ev, &["stage"]) {
        ext.push(format!("cs1Label=stage cs1={}", cef_ext(v)));
    }
    if let Some(v) = s(ev, &["listener"]) {
        ext.push(format!("cs2Label=listener cs2={}", cef_ext(v)));
    }
    if let Some(v) = s(ev, &["facility", "id"]).or(s(ev, &["facility_id"])) {
        ext.push(format!("cs3Label=facility cs3={}", cef_ext(v)));
    }
    if let Some(v) = n(ev, &["flow_id"]) {
        ext.push(format!("cn1Label=flow_id cn1={v}"));
    }
    if let Some(v) = n(ev, &["log_loss", "dropped"]) {
        ext.push(format!("cn2Label=dropped cn2={v}"));
    }
    format!(
        "CEF:0|Sekisho|Sekisho|{}|{}|{}|{}|{}",
        cef_header(s(ev, &["observer", "version"]).unwrap_or(env!("CARGO_PKG_VERSION"))),
        cef_header(&sig_id),
        cef_header(&sig),
        sev,
        ext.join(" ")
    )
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP - MSGID - MSG`. `facility` 0–23 (13 is log
/// audit), `severity` the syslog severity (0 emergency … 7 debug).
pub fn rfc5424(
    facility: u8,
    severity: u8,
    timestamp: &str,
    host: &str,
    app: &str,
    msgid: &str,
    msg: &str,
) -> String {
    let field = |s: &str| -> String {
        let t: String = s
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(255)
            .collect();
        if t.is_empty() {
            "-".into()
        } else {
            t
        }
    };
    format!(
        "<{}>1 {} {} {} - {} - {}",
        u16::from(facility.min(23)) * 8 + u16::from(severity.min(7)),
        field(timestamp),
        field(host),
        field(app),
        field(msgid),
        msg
    )
}

/// The syslog severity for an EVE priority (1 → 2 critical, 2 → 3 error, 3 → 4 warning, 4 → 6 info).
pub fn syslog_severity(priority: u8) -> u8 {
    match priority {
        1 => 2,
        2 => 3,
        3 => 4,
        _ => 6,
    }
}

/// RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_counted(msg: &str) -> Vec<u8> {
    let mut v = format!("{} ", msg.len()).into_bytes();
    v.extend_from_slice(msg.as_bytes());
    v
}

/// An event ready for the encoders: its JSON text and the few fields the syslog header and the
/// HEC envelope need (so the common formats never parse the JSON again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The event as one JSON object.
    pub json: String,
    /// `@timestamp`.
    pub timestamp: String,
    /// `observer.node` (the syslog HOST).
    pub node: String,
    /// `event_type` (the syslog MSGID).
    pub event_type: String,
    /// EVE priority 1 (high) … 4 (info).
    pub priority: u8,
}

impl Record {
    /// From a JSON value; `node` fills in when the event has no `observer.node` (flow lines).
    pub fn from_value(v: &Value, node: &str) -> Record {
        Record {
            json: json(v),
            timestamp: s(v, &["@timestamp"]).unwrap_or("-").to_string(),
            node: s(v, &["observer", "node"]).unwrap_or(node).to_string(),
            event_type: s(v, &["event_type"]).unwrap_or("-").to_string(),
            priority: priority(v),
        }
    }

    /// From a threat event, serialized once.
    pub fn from_event(ev: &sekisho_core::ThreatEvent) -> Record {
        Record {
            json: serde_json::to_string(ev)
                .unwrap_or_else(|e| format!("{{\"encode_error\":\"{e}\"}}")),
            timestamp: ev.timestamp.clone(),
            node: ev.observer.node.clone(),
            event_type: ev.event_type.clone(),
            priority: ev.alert.severity.clamp(1, 4),
        }
    }

    /// From a communication-log line, serialized once, with an `event` object
    /// (`{"id": UUIDv7, "kind": "event", "category": "flow"}`) put first.
    pub fn from_flow(line: &sekisho_core::CommLog, node: &str) -> Record {
        let body = serde_json::to_string(line).unwrap_or_else(|_| "{}".into());
        let mut json = String::with_capacity(body.len() + 96);
        json.push_str("{\"event\":{\"id\":\"");
        json.push_str(&uuid::Uuid::now_v7().to_string());
        json.push_str("\",\"kind\":\"event\",\"category\":\"flow\"}");
        let rest = body.strip_prefix('{').unwrap_or("}");
        if rest != "}" {
            json.push(',');
        }
        json.push_str(rest);
        Record {
            json,
            timestamp: line.timestamp.clone(),
            node: node.to_string(),
            event_type: line.event_type.clone(),
            priority: 4,
        }
    }

    /// The JSON parsed again (CEF needs most fields).
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or(Value::Null)
    }
}

fn syslog_line(r: &Record, msg: &str, facility: u8) -> String {
    rfc5424(
        facility,
        syslog_severity(r.priority),
        &r.timestamp,
        &r.node,
        "sekisho",
        &r.event_type,
        msg,
    )
}

/// The record as text in `format` (RFC 5424 unframed).
pub fn record_text(r: &Record, format: Format, facility: u8) -> String {
    match format {
        Format::Json => r.json.clone(),
        Format::Cef => cef(&r.value()),
        Format::Rfc5424Json => syslog_line(r, &r.json, facility),
    }
}

/// A syslog record on the wire: RFC 5424 (its MSG the JSON object for `json` and
/// `rfc5424-json`, the CEF line for `cef`), framed by octet counting.
pub fn record_syslog_frame(r: &Record, format: Format, facility: u8) -> Vec<u8> {
    let line = match format {
        Format::Cef => syslog_line(r, &cef(&r.value()), facility),
        Format::Json | Format::Rfc5424Json => syslog_line(r, &r.json, facility),
    };
    let mut v = Vec::with_capacity(line.len() + 8);
    v.extend_from_slice(line.len().to_string().as_bytes());
    v.push(b' ');
    v.extend_from_slice(line.as_bytes());
    v
}

/// An HTTP batch record (Splunk HEC event envelope): `{"time":…,"host":…,"source":"sekisho",
/// "sourcetype":…,"event":…}` — the event object for `json`, the text for `cef`/`rfc5424-json`.
pub fn record_hec(r: &Record, format: Format, facility: u8) -> String {
    let time =
        time::OffsetDateTime::parse(&r.timestamp, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as f64 / 1000.0);
    let mut o = String::with_capacity(r.json.len() + 128);
    o.push('{');
    if let Some(t) = time {
        o.push_str(&format!("\"time\":{t},"));
    }
    o.push_str("\"host\":");
    o.push_str(&json(&Value::from(r.node.as_str())));
    o.push_str(",\"source\":\"sekisho\",\"sourcetype\":");
    o.push_str(&json(&Value::from(format!("sekisho:{}", r.event_type))));
    o.push_str(",\"event\":");
    match format {
        Format::Json => o.push_str(&r.json),
        other => o.push_str(&json(&Value::String(record_text(r, other, facility)))),
    }
    o.push('}');
    o
}

/// The event as text in `format` (RFC 5424 unframed).
pub fn text(ev: &Value, format: Format, facility: u8) -> String {
    record_text(&Record::from_value(ev, "-"), format, facility)
}

/// [`record_syslog_frame`] for a JSON value.
pub fn syslog_frame(ev: &Value, format: Format, facility: u8) -> Vec<u8> {
    record_syslog_frame(&Record::from_value(ev, "-"), format, facility)
}

/// [`record_hec`] for a JSON value.
pub fn hec(ev: &Value, format: Format, facility: u8) -> String {
    record_hec(&Record::from_value(ev, "-"), format, facility)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn syslog_frame_and_escapes() {
        let m = rfc5424(
            13,
            2,
            "2026-11-25T00:00:00.000Z",
            "gw 1",
            "sekisho",
            "alert",
            "{\"a\":1}",
        );
        assert_eq!(
            m,
            "<106>1 2026-11-25T00:00:00.000Z gw1 sekisho - alert - {\"a\":1}"
        );
        let f = octet_counted("héllo");
        assert_eq!(f, b"6 h\xc3\xa9llo");
        assert_eq!(cef_header("a|b\\c"), "a\\|b\\\\c");
        assert_eq!(cef_ext("k=v\nx"), "k\\=v\\nx");
        assert_eq!(syslog_severity(1), 2);
    }

    fn event() -> Value {
        use sekisho_core::{
            DestinationInfo, Evidence, Finding, FlowMeta, Observer, Severity, ThreatEvent,
        };
        let mut f = Finding::new(
            "ips",
            "2049400",
            "ET EXPLOIT a|b=c",
            Severity::High,
            "attempted-admin",
            Evidence::new("http.uri", "/x"),
        );
        f.stage = "ips";
        let meta = FlowMeta::new(
            7,
            "forward",
            "10.0.0.5:40000".parse().unwrap(),
            "10.0.0.1:3128".parse().unwrap(),
        );
        let obs = Observer {
            name: "sekisho".into(),
            version: "0.1.0".into(),
            node: "gw-1".into(),
        };
        let dest = DestinationInfo {
            ip: Some("192.0.2.1".into()),
            port: Some(443),
            domain: None,
        };
        serde_json::to_value(ThreatEvent::from_finding(&f, &meta, &obs, dest, None)).unwrap()
    }

    #[test]
    fn formats_of_one_event() {
        let ev = event();
        let j: Value = serde_json::from_str(&text(&ev, Format::Json, 13)).unwrap();
        assert_eq!(j["alert"]["signature_id"], 2049400);
        let c = text(&ev, Format::Cef, 13);
        assert!(
            c.starts_with("CEF:0|Sekisho|Sekisho|0.1.0|2049400|ET EXPLOIT a\\|b=c|10|"),
            "{c}"
        );
        assert!(
            c.contains("src=10.0.0.5 spt=40000") && c.contains("dst=192.0.2.1 dpt=443"),
            "{c}"
        );
        let s = String::from_utf8(syslog_frame(&ev, Format::Rfc5424Json, 13)).unwrap();
        let (len, msg) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<106>1 "), "{msg}");
        assert!(msg.contains(" gw-1 sekisho - alert - {"), "{msg}");
        let body: Value = serde_json::from_str(&msg[msg.find('{').unwrap()..]).unwrap();
        assert_eq!(body["flow_id"], 7);
        let cef_syslog = String::from_utf8(syslog_frame(&ev, Format::Cef, 13)).unwrap();
        assert!(
            cef_syslog.contains(" gw-1 sekisho - alert - CEF:0|"),
            "{cef_syslog}"
        );
        let h: Value = serde_json::from_str(&hec(&ev, Format::Json, 13)).unwrap();
        assert_eq!(h["event"]["flow_id"], 7);
        assert_eq!(h["sourcetype"], "sekisho:alert");
        assert!(h["time"].as_f64().unwrap() > 1.7e9);
    }

    #[test]
    fn flow_records_carry_an_event_id() {
        let line = sekisho_core::CommLog {
            timestamp: "2026-11-25T00:00:00.000Z".into(),
            event_type: "flow".into(),
            flow_id: 9,
            path: Some("/a?b=c".into()),
            ..Default::default()
        };
        let r = Record::from_flow(&line, "gw");
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["event"]["category"], "flow");
        assert_eq!(v["event"]["id"].as_str().unwrap().len(), 36);
        assert_eq!(v["flow_id"], 9);
        assert_eq!(v["path"], "/a?b=c");
        assert_eq!(r.node, "gw");
        assert_eq!(r.priority, 4);
    }

    #[test]
    fn flow_lines_and_loss_events_encode() {
        let flow = serde_json::json!({"@timestamp":"2026-11-25T00:00:00.000Z","event_type":"flow",
            "flow_id":3,"source":{"ip":"10.0.0.1","port":5},"verdict":"allowed"});
        let c = cef(&flow);
        assert!(c.contains("|flow|communication log|1|"), "{c}");
        assert!(c.contains("act=allowed"), "{c}");
        let loss = serde_json::json!({"event_type":"log_loss","log_loss":{"dropped":12}});
        assert_eq!(priority(&loss), 2);
        assert!(cef(&loss).contains("cn2=12"));
    }
}
