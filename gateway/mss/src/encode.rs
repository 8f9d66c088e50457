//! Encoders: ECS/EVE JSON, CEF, and RFC 5424 syslog (JSON message) with RFC 6587 octet-counting
//! framing.

use sekisho_core::ThreatEvent;
use serde::Deserialize;

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

/// The event as one JSON line (no newline).
pub fn json(ev: &ThreatEvent) -> String {
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
/// Severity 0–10 from the EVE priority (1 → 10, 2 → 7, 3 → 4, 4 → 1).
pub fn cef(ev: &ThreatEvent) -> String {
    let sev = match ev.alert.severity {
        1 => 10,
        2 => 7,
        3 => 4,
        _ => 1,
    };
    let mut ext = vec![
        format!("rt={}", cef_ext(&ev.timestamp)),
        format!("externalId={}", ev.event.id),
        format!("act={}", cef_ext(&ev.event.action)),
        format!("cat={}", cef_ext(&ev.rule.category)),
        format!("src={}", cef_ext(&ev.src_ip)),
        format!("spt={}", ev.src_port),
        format!("cs1Label=stage cs1={}", cef_ext(&ev.stage)),
        format!("cs2Label=listener cs2={}", cef_ext(&ev.listener)),
        format!("cn1Label=flow_id cn1={}", ev.flow_id),
    ];
    if let Some(d) = &ev.dest_ip {
        ext.push(format!("dst={}", cef_ext(d)));
    }
    if let Some(p) = ev.dest_port {
        ext.push(format!("dpt={p}"));
    }
    if let Some(h) = &ev.http {
        ext.push(format!("request={}", cef_ext(&h.url)));
        ext.push(format!("requestMethod={}", cef_ext(&h.method)));
    }
    format!(
        "CEF:0|Sekisho|Sekisho|{}|{}|{}|{}|{}",
        cef_header(&ev.observer.version),
        cef_header(&ev.alert.signature_id),
        cef_header(&ev.alert.signature),
        sev,
        ext.join(" ")
    )
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP - MSGID - MSG`. Facility 13 (log audit) …
/// the caller picks; `severity` is the syslog severity (0 emergency … 7 debug).
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

/// Encodes an event for a sink in `format` (RFC 5424 framed by octet counting).
pub fn encode(ev: &ThreatEvent, format: Format) -> Vec<u8> {
    match format {
        Format::Json => json(ev).into_bytes(),
        Format::Cef => cef(ev).into_bytes(),
        Format::Rfc5424Json => octet_counted(&rfc5424(
            13,
            syslog_severity(ev.alert.severity),
            &ev.timestamp,
            &ev.observer.node,
            "sekisho",
            &ev.event_type,
            &json(ev),
        )),
    }
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

    fn event() -> ThreatEvent {
        use sekisho_core::{DestinationInfo, Evidence, Finding, FlowMeta, Observer, Severity};
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
        ThreatEvent::from_finding(&f, &meta, &obs, dest, None)
    }

    #[test]
    fn formats_of_one_event() {
        let ev = event();
        let j: serde_json::Value = serde_json::from_slice(&encode(&ev, Format::Json)).unwrap();
        assert_eq!(j["alert"]["signature_id"], "2049400");
        let c = String::from_utf8(encode(&ev, Format::Cef)).unwrap();
        assert!(
            c.starts_with("CEF:0|Sekisho|Sekisho|0.1.0|2049400|ET EXPLOIT a\\|b=c|10|"),
            "{c}"
        );
        assert!(
            c.contains("src=10.0.0.5 spt=40000") && c.contains("dst=192.0.2.1 dpt=443"),
            "{c}"
        );
        let s = String::from_utf8(encode(&ev, Format::Rfc5424Json)).unwrap();
        let (len, msg) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert!(msg.starts_with("<106>1 "), "{msg}");
        assert!(msg.contains(" gw-1 sekisho - alert - {"), "{msg}");
        let body: serde_json::Value = serde_json::from_str(&msg[msg.find('{').unwrap()..]).unwrap();
        assert_eq!(body["flow_id"], 7);
    }
}
