//! The events' index mapping (`deploy/opensearch/sekisho-template.json`) applied as OpenSearch
//! would apply it, but stricter: a document is refused when a field is not mapped (`dynamic:
//! strict`), when a value does not have the mapped field's one JSON type (a keyword takes only
//! strings, a long only integers in range, an ip only addresses, a date only RFC 3339 times),
//! when an object is met where a value is mapped or the reverse, or when a keyword without
//! `ignore_above` is longer than Lucene's 32,766-byte term. Every gateway a test starts has its
//! event files checked against it when dropped.

use std::path::Path;

use serde_json::Value;

/// The template's `mappings` object.
pub fn mapping() -> Value {
    let path = super::repo().join("deploy/opensearch/sekisho-template.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    t["template"]["mappings"].clone()
}

/// Why `doc` would not be indexed under `mappings`, one line per field; empty when it would.
pub fn refusals(mappings: &Value, doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    object(&mappings["properties"], doc, "", &mut out);
    out
}

fn object(props: &Value, doc: &Value, at: &str, out: &mut Vec<String>) {
    let Some(fields) = doc.as_object() else {
        out.push(format!("{at}: an object is mapped, got {doc}"));
        return;
    };
    for (k, v) in fields {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match props.get(k) {
            Some(m) => field(m, v, &path, out),
            None => out.push(format!("{path}: not in the mapping (dynamic: strict)")),
        }
    }
}

fn field(m: &Value, v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Null => {}
        Value::Array(items) => items.iter().for_each(|i| field(m, i, path, out)),
        _ if m.get("properties").is_some() => object(&m["properties"], v, path, out),
        _ => {
            if let Err(why) = scalar(m, v) {
                out.push(format!("{path}: {why}"));
            }
        }
    }
}

fn scalar(m: &Value, v: &Value) -> Result<(), String> {
    let ty = m["type"].as_str().unwrap_or("object");
    let ok = match ty {
        "keyword" => match v.as_str() {
            Some(s) if s.len() > 32_766 && m.get("ignore_above").is_none() => {
                return Err(format!(
                    "a keyword of {} bytes (over Lucene's term limit)",
                    s.len()
                ))
            }
            Some(_) => true,
            None => false,
        },
        "long" => v.as_i64().is_some(),
        "boolean" => v.is_boolean(),
        "ip" => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        "date" => v.as_str().is_some_and(rfc3339),
        "object" => false,
        other => return Err(format!("the checker does not know mapping type {other}")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{ty} is mapped, got {v}"))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`.
fn rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let zone = s.ends_with('Z') || s.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-');
    shape && zone
}

/// Checks every JSON line of `file` (missing files and partial last lines are skipped);
/// panics naming the line and field that an index would refuse.
pub fn check_file(file: &Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let m = mapping();
    for (i, line) in text.lines().enumerate() {
        // Only JSON objects are documents (a collector's file may hold CEF text lines).
        let Ok(doc @ Value::Object(_)) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let bad = refusals(&m, &doc);
        assert!(
            bad.is_empty(),
            "{}:{}: the index mapping refuses this event:\n  {}\n{line}",
            file.display(),
            i + 1,
            bad.join("\n  ")
        );
    }
}
