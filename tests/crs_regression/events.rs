//! The gateway's threat events (`[events] file`, JSON lines), read as they are appended. A WAF
//! event carries `matched_rules`; the runner turns each matched rule into a ModSecurity-style
//! log line (`[id "942100"] [msg "…"] [data "…"]`) for the tests' log regexes.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The largest number of bytes read from the file in one poll.
const MAX_READ: u64 = 64 << 20;

/// One matched rule of an event.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: u64,
    pub msg: String,
    pub data: String,
    pub severity: String,
    pub phase: u64,
    pub variable: String,
}

impl Rule {
    /// The rule as ModSecurity 2 would log it (the parts the tests look at), `msg` and `data`
    /// escaped as its `log_escape` does.
    pub fn log_line(&self) -> String {
        format!(
            "ModSecurity: Warning. [id \"{}\"] [msg \"{}\"] [data \"{}\"] [severity \"{}\"] [phase \"{}\"] [variable \"{}\"]",
            self.id,
            log_escape(&self.msg),
            log_escape(&self.data),
            self.severity,
            self.phase,
            log_escape(&self.variable)
        )
    }
}

/// ModSecurity 2's `log_escape` (apache2/msc_util.c `_log_escape` with quotes escaped): C
/// escapes for `\b \n \r \t \v`, `\"` and `\\`, `\xhh` for any other byte below 0x20 or
/// from 0x7f; so one log line holds the value, and `.` in a test's regex spans a CR LF.
fn log_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x0b => out.push_str("\\v"),
            0..=0x1f | 0x7f..=0xff => out.push_str(&format!("\\x{b:02x}")),
            _ => out.push(b as char),
        }
    }
    out
}

/// One event line.
#[derive(Clone, Debug)]
pub struct Event {
    pub flow_id: u64,
    /// The stage that raised it (`waf`, or the proxy's own).
    pub stage: String,
    /// `rule.id`.
    pub rule_id: String,
    pub rules: Vec<Rule>,
}

impl Event {
    fn parse(line: &str) -> Option<Event> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let rules = v["matched_rules"]
            .as_array()
            .map(|a| a.iter().map(rule).collect())
            .unwrap_or_default();
        Some(Event {
            flow_id: v["flow_id"].as_u64().unwrap_or(0),
            stage: v["stage"].as_str().unwrap_or("").to_string(),
            rule_id: v["rule"]["id"].as_str().unwrap_or("").to_string(),
            rules,
        })
    }

    /// Whether this is the marker event for `marker`.
    pub fn is_marker(&self, marker: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.id == crate::MARKER_RULE && r.msg == format!("X-CRS-Test {marker}"))
    }

    /// Whether any marker rule matched in it.
    pub fn has_marker_rule(&self) -> bool {
        self.rules.iter().any(|r| r.id == crate::MARKER_RULE)
    }
}

fn rule(r: &serde_json::Value) -> Rule {
    let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
    Rule {
        id: r["id"].as_u64().unwrap_or(0),
        msg: s("msg"),
        data: s("data"),
        severity: s("severity"),
        phase: r["phase"].as_u64().unwrap_or(0),
        variable: s("variable"),
    }
}

/// The events file, followed.
pub struct EventLog {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Every event read so far, in file order.
    pub events: Vec<Event>,
}

impl EventLog {
    pub fn new(path: PathBuf) -> EventLog {
        EventLog {
            path,
            offset: 0,
            partial: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Reads what was appended since the last poll (a line without its newline waits).
    pub fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        let Ok(n) = f.take(MAX_READ).read_to_end(&mut buf) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=last).collect();
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(e) = Event::parse(&String::from_utf8_lossy(line)) {
                self.events.push(e);
            }
        }
    }

    /// The index of the marker event for `marker` at or after `from`.
    pub fn find_marker(&self, marker: &str, from: usize) -> Option<usize> {
        self.events
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, e)| e.is_marker(marker))
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_file_and_waits_for_whole_lines() {
        let dir = crate::common::TempDir::new("crs-events");
        let p = dir.path().join("e.jsonl");
        let mut log = EventLog::new(p.clone());
        log.poll();
        assert!(log.events.is_empty());
        let line = r#"{"flow_id":7,"src_port":5,"stage":"waf","rule":{"id":"999999"},"matched_rules":[{"id":999999,"msg":"X-CRS-Test a-s","data":"","severity":"","phase":1,"variable":"REQUEST_HEADERS:X-CRS-Test"}]}"#;
        std::fs::write(&p, format!("{line}\n{}", &line[..10])).unwrap();
        log.poll();
        assert_eq!(log.events.len(), 1);
        assert_eq!(log.find_marker("a-s", 0), Some(0));
        assert_eq!(log.find_marker("a-e", 0), None);
        assert!(log.events[0].rules[0]
            .log_line()
            .contains("[id \"999999\"]"));
    }

    #[test]
    fn log_lines_escape_like_modsecurity() {
        assert_eq!(
            log_escape("a\r\nb \"q\" \\ \u{7f}é\x01"),
            "a\\r\\nb \\\"q\\\" \\\\ \\x7f\\xc3\\xa9\\x01"
        );
    }
}
