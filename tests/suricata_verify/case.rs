//! One suricata-verify case (`tests/<name>/test.yaml`, `test.rules`, the capture): which
//! Suricata versions it is for, and its alert-count checks.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The Suricata version this gateway's IPS follows.
const ENGINE: (u64, u64) = (8, 0);

/// A check this runner can compare: how many alerts (of one SID, or of any) the case expects.
#[derive(Debug, Clone)]
pub struct Check {
    /// `None`: every alert counts.
    pub sid: Option<u64>,
    pub count: u64,
}

/// A case ready to replay.
#[derive(Debug)]
pub struct Case {
    pub name: String,
    pub rules: PathBuf,
    pub pcap: PathBuf,
    pub checks: Vec<Check>,
    /// Checks of other kinds (other event types, other fields), not compared.
    pub other_checks: usize,
    /// Suricata settings the case changes (`--set`, its own suricata.yaml): results may differ.
    pub custom_config: bool,
    /// `[ips]` settings the case's `--set` options map to (Suricata setting → ours).
    pub ips_settings: Vec<String>,
    /// Whether Suricata, as the case configures it, inspects a flow picked up midstream (a
    /// SYN-ACK first): only when its midstream exception policy is `ignore`.
    pub midstream_inspected: bool,
}

/// libhtp settings (under `app-layer.protocols.http.libhtp.default-config`) with an `[ips]`
/// equivalent.
const SETTINGS: &[(&str, &str)] = &[
    (
        "response-body-decompress-layer-limit",
        "decompress_layer_limit",
    ),
    ("double-decode-path", "double_decode_path"),
    ("double-decode-query", "double_decode_query"),
];

/// The `[ips]` lines for the libhtp settings the case changes (`--set`, else its own
/// suricata.yaml) that map to ours: numbers, and yes/no as booleans.
fn ips_settings(args: &str, yaml: Option<&Value>) -> Vec<String> {
    SETTINGS
        .iter()
        .filter_map(|(theirs, ours)| {
            let path = [
                "app-layer",
                "protocols",
                "http",
                "libhtp",
                "default-config",
                theirs,
            ];
            let v = match setting(args, yaml, &path)?.trim() {
                "yes" | "true" | "on" => "true".to_string(),
                "no" | "false" | "off" => "false".to_string(),
                n => n.parse::<u64>().ok()?.to_string(),
            };
            Some(format!("{ours} = {v}"))
        })
        .collect()
}

/// A setting from `--set name=value` in `args`, else from the case's suricata.yaml.
fn setting(args: &str, yaml: Option<&Value>, path: &[&str]) -> Option<String> {
    let name = path.join(".");
    let from_args = args
        .split_whitespace()
        .filter_map(|a| a.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .next_back();
    from_args.or_else(|| {
        let v = path.iter().try_fold(yaml?, |v, k| v.get(*k))?;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    })
}

/// Suricata's midstream exception policy as the case sets it (`stream.midstream-policy`,
/// else the master switch `exception-policy`; `auto` is `drop-flow` in IPS mode unless
/// midstream pickup is on, else `ignore`), and whether it lets a midstream flow be inspected.
/// The proxy never sees such a flow; the runner replays one only when Suricata would inspect
/// it.
fn midstream_inspected(args: &str, yaml: Option<&Value>) -> bool {
    let policy = setting(args, yaml, &["stream", "midstream-policy"])
        .or_else(|| setting(args, yaml, &["exception-policy"]))
        .unwrap_or_else(|| "ignore".into());
    let ips = args.contains("--simulate-ips");
    let midstream = setting(args, yaml, &["stream", "midstream"])
        .is_some_and(|v| matches!(v.as_str(), "true" | "yes" | "on"));
    match policy.as_str() {
        "auto" => !ips || midstream,
        p => p == "ignore",
    }
}

/// Why a case is not replayed.
#[derive(Debug)]
pub enum Skip {
    /// Written for a Suricata version other than 8.0.
    Version(String),
    /// No rules, no capture, or no alert-count check.
    NotComparable(&'static str),
    /// test.yaml cannot be read.
    Unreadable(String),
}

/// Reads the case in `dir`.
pub fn load(root: &Path, dir: &Path) -> Result<Case, Skip> {
    let name = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
    let text = std::fs::read_to_string(dir.join("test.yaml"))
        .map_err(|e| Skip::Unreadable(e.to_string()))?;
    let y: Value = serde_yaml_ng::from_str(&text).map_err(|e| Skip::Unreadable(e.to_string()))?;
    if let Some(why) = version_mismatch(&y["requires"]) {
        return Err(Skip::Version(why));
    }
    if let Some(why) = unmet(&y["requires"]) {
        return Err(Skip::NotComparable(why));
    }
    let rules = dir.join("test.rules");
    if !rules.is_file() {
        return Err(Skip::NotComparable("no test.rules"));
    }
    let pcap = match y["pcap"].as_str() {
        Some(p) => dir.join(p),
        None if y["pcap"].as_bool() == Some(false) => {
            return Err(Skip::NotComparable("no capture"))
        }
        None => find_capture(dir).ok_or(Skip::NotComparable("no capture"))?,
    };
    if !pcap.is_file() {
        return Err(Skip::NotComparable("no capture"));
    }
    let (checks, other_checks) = checks(&y["checks"]);
    if checks.is_empty() {
        return Err(Skip::NotComparable("no alert-count check"));
    }
    let args = y["args"]
        .as_sequence()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let custom_config = args.contains("--set") || dir.join("suricata.yaml").is_file();
    // The case's suricata.yaml (YAML 1.1 with a `%YAML` line, which the parser skips).
    let own_yaml = std::fs::read_to_string(dir.join("suricata.yaml"))
        .ok()
        .and_then(|t| {
            let body: String = t
                .lines()
                .filter(|l| !l.starts_with('%') && *l != "---")
                .map(|l| format!("{l}\n"))
                .collect();
            serde_yaml_ng::from_str::<Value>(&body).ok()
        });
    Ok(Case {
        name,
        rules,
        pcap,
        checks,
        other_checks,
        custom_config,
        ips_settings: ips_settings(&args, own_yaml.as_ref()),
        midstream_inspected: midstream_inspected(&args, own_yaml.as_ref()),
    })
}

/// The capture in `dir` when test.yaml names none (suricata-verify's run.py takes the
/// directory's one `.pcap` / `.pcapng` file).
fn find_capture(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    found.sort();
    found.into_iter().next()
}

/// Build features the gateway's IPS has, as suricata-verify names them (`requires: features`):
/// JA3, JA4 and libmagic. Lua, GeoIP, sanitizer and simulation builds it does not have.
const FEATURES: [&str; 3] = ["HAVE_JA3", "HAVE_JA4", "MAGIC"];

/// A `requires` entry other than versions this runner cannot meet.
fn unmet(req: &Value) -> Option<&'static str> {
    let missing = req["features"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|f| !FEATURES.contains(&f));
    if missing {
        return Some("a build feature the gateway does not have");
    }
    if ["script", "lambda", "os", "arch"]
        .iter()
        .any(|k| !req[*k].is_null())
    {
        return Some("a requirement checked by a script or on the host");
    }
    if req["gt-version"]
        .as_str()
        .map(String::from)
        .or_else(|| num(&req["gt-version"]))
        .is_some_and(|v| version(&v) >= ENGINE)
    {
        return Some("gt-version");
    }
    None
}

/// Why `requires` rules out Suricata 8.0, if it does.
fn version_mismatch(req: &Value) -> Option<String> {
    if let Some(min) = req["min-version"]
        .as_str()
        .map(String::from)
        .or_else(|| num(&req["min-version"]))
    {
        if version(&min) > ENGINE {
            return Some(format!("min-version {min}"));
        }
    }
    if let Some(lt) = req["lt-version"]
        .as_str()
        .map(String::from)
        .or_else(|| num(&req["lt-version"]))
    {
        if version(&lt) <= ENGINE {
            return Some(format!("lt-version {lt}"));
        }
    }
    if let Some(v) = req["version"]
        .as_str()
        .map(String::from)
        .or_else(|| num(&req["version"]))
    {
        if version(&v).0 != ENGINE.0 {
            return Some(format!("version {v}"));
        }
    }
    None
}

fn num(v: &Value) -> Option<String> {
    v.as_u64()
        .map(|n| n.to_string())
        .or_else(|| v.as_f64().map(|f| f.to_string()))
}

/// `major.minor` of a version string (`"7"`, `"7.0.3"`, `"8.0"`).
fn version(v: &str) -> (u64, u64) {
    let mut parts = v.trim().split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The alert-count checks, and how many checks of other kinds there are.
fn checks(v: &Value) -> (Vec<Check>, usize) {
    let mut out = Vec::new();
    let mut other = 0;
    for c in v.as_sequence().into_iter().flatten() {
        // A check with its own `requires` (suricata-verify reads it per check) counts only
        // for the engine versions it names.
        if version_mismatch(&c["filter"]["requires"]).is_some() {
            continue;
        }
        match alert_count(c) {
            Some(check) => out.push(check),
            None => other += 1,
        }
    }
    (out, other)
}

/// `filter: {count: N, match: {event_type: alert[, alert.signature_id: SID]}}`.
fn alert_count(c: &Value) -> Option<Check> {
    let f = &c["filter"];
    let count = f["count"].as_u64()?;
    let m = f["match"].as_mapping()?;
    if m.get("event_type")?.as_str()? != "alert" {
        return None;
    }
    let mut sid = None;
    for (k, v) in m {
        match k.as_str()? {
            "event_type" => {}
            "alert.signature_id" => sid = Some(v.as_u64()?),
            _ => return None,
        }
    }
    Some(Check { sid, count })
}
