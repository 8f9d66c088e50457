//! The CRS test files (ftw-tests-schema v2, as go-ftw reads them): a file holds one rule's
//! tests, a test holds stages, a stage an input (the request) and an output (what to expect).
//! Unknown keys are ignored, as go-yaml does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One test file.
#[derive(Debug, Default, Deserialize)]
pub struct TestFile {
    /// The rule the file tests; absent: the first number of the file name.
    #[serde(default)]
    pub rule_id: Option<u64>,
    #[serde(default)]
    pub tests: Vec<Test>,
}

/// One test: its stages run in order on fresh connections.
#[derive(Debug, Default, Deserialize)]
pub struct Test {
    /// `test_id` (v2) or `id` (v3); absent: the position in the file, from 1.
    #[serde(default)]
    pub test_id: Option<u64>,
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub desc: Option<String>,
    #[serde(default)]
    pub stages: Vec<Stage>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Stage {
    #[serde(default)]
    pub input: Input,
    #[serde(default)]
    pub output: Output,
}

/// The request. `dest_addr` and `port` are ignored: the runner always sends to its own
/// listener. `save_cookie` is ignored too (go-ftw parses it but does not act on it).
#[derive(Debug, Default, Deserialize)]
pub struct Input {
    /// `http` (default); `https` is refused (the listener is plain HTTP).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    /// A map: sent sorted by name, as go-ftw does.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Option<String>>>,
    /// Headers in the order given (wins over `headers`).
    #[serde(default)]
    pub ordered_headers: Option<Vec<HeaderTuple>>,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub encoded_data: Option<String>,
    /// The whole request, base64, sent as it is.
    #[serde(default)]
    pub encoded_request: Option<String>,
    #[serde(default)]
    pub autocomplete_headers: Option<bool>,
    /// The old, inverted spelling of `autocomplete_headers`.
    #[serde(default)]
    pub stop_magic: Option<bool>,
    #[serde(default)]
    pub virtual_host_mode: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct HeaderTuple {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// What the stage expects.
#[derive(Debug, Default, Deserialize)]
pub struct Output {
    #[serde(default)]
    pub status: Option<Statuses>,
    #[serde(default)]
    pub response_contains: Option<String>,
    /// Old form of `log.match_regex`.
    #[serde(default)]
    pub log_contains: Option<String>,
    /// Old form of `log.no_match_regex`.
    #[serde(default)]
    pub no_log_contains: Option<String>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub expect_error: Option<bool>,
    #[serde(default)]
    pub retry_once: Option<bool>,
    #[serde(default)]
    pub isolated: Option<bool>,
}

/// `status: 403` or the old `status: [200, 403]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Statuses {
    One(u16),
    Any(Vec<u16>),
}

impl Statuses {
    pub fn list(&self) -> Vec<u16> {
        match self {
            Statuses::One(s) => vec![*s],
            Statuses::Any(v) => v.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct Log {
    #[serde(default)]
    pub expect_ids: Vec<u64>,
    /// Old singular form.
    #[serde(default)]
    pub expect_id: Option<u64>,
    #[serde(default)]
    pub no_expect_ids: Vec<u64>,
    #[serde(default)]
    pub match_regex: Option<String>,
    #[serde(default)]
    pub no_match_regex: Option<String>,
}

impl Output {
    /// Every id the log must show (`expect_ids` and the old `expect_id`).
    pub fn expect_ids(&self) -> Vec<u64> {
        let mut v = self.log.expect_ids.clone();
        v.extend(self.log.expect_id);
        v
    }

    /// `log.match_regex`, or the old `log_contains` when neither it nor `expect_ids` is set.
    pub fn match_regex(&self) -> Option<&str> {
        non_empty(&self.log.match_regex).or_else(|| {
            if self.expect_ids().is_empty() {
                non_empty(&self.log_contains)
            } else {
                None
            }
        })
    }

    /// `log.no_match_regex`, or the old `no_log_contains` when neither it nor
    /// `no_expect_ids` is set.
    pub fn no_match_regex(&self) -> Option<&str> {
        non_empty(&self.log.no_match_regex).or_else(|| {
            if self.log.no_expect_ids.is_empty() {
                non_empty(&self.no_log_contains)
            } else {
                None
            }
        })
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A test ready to run: `942100-3`, its family (the folder) and its stages.
pub struct Case {
    pub id: String,
    pub family: String,
    pub desc: String,
    pub stages: Vec<Stage>,
}

/// Every `*.y*ml` file below `root` (two levels: family folders), sorted; files at the top
/// (platform override files) are not tests.
pub fn test_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    for dir in dirs.filter_map(Result::ok).map(|d| d.path()) {
        if !dir.is_dir() {
            continue;
        }
        let family = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Ok(files) = std::fs::read_dir(&dir) else {
            continue;
        };
        for f in files.filter_map(Result::ok).map(|f| f.path()) {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            if f.is_file() && (ext == "yaml" || ext == "yml") {
                out.push((family.clone(), f));
            }
        }
    }
    out.sort();
    out
}

/// The cases of one file, or why it cannot be read.
pub fn load(family: &str, path: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let rule_id = match file.rule_id.filter(|&r| r > 0) {
        Some(r) => r,
        None => rule_from_name(path).ok_or_else(|| format!("{}: no rule_id", path.display()))?,
    };
    Ok(file
        .tests
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let n = t
                .test_id
                .or(t.id)
                .filter(|&n| n > 0)
                .unwrap_or(i as u64 + 1);
            Case {
                id: format!("{rule_id}-{n}"),
                family: family.to_string(),
                desc: t.desc.unwrap_or_default(),
                stages: t.stages,
            }
        })
        .collect())
}

/// The first run of digits in the file name (go-ftw's fallback).
fn rule_from_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_string_lossy();
    let digits: String = name
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_test_file_like_go_ftw() {
        let yaml = r#"
rule_id: 920100
tests:
  - test_id: 4
    stages:
      - input:
          headers:
            Host: localhost
            Content-Length: 0
            X-Empty:
          data: |-
            a=1
        output:
          status: [200, 403]
          log:
            expect_ids: [920100]
          no_log_contains: id "1"
  - stages:
      - output:
          log_contains: id "920100"
"#;
        let f: TestFile = serde_yaml_ng::from_str(yaml).unwrap();
        let input = &f.tests[0].stages[0].input;
        let h = input.headers.as_ref().unwrap();
        // A plain scalar that looks like a number stays the text written.
        assert_eq!(h["Content-Length"].as_deref(), Some("0"));
        assert_eq!(h["X-Empty"], None);
        assert_eq!(input.data.as_deref(), Some("a=1"));
        let out = &f.tests[0].stages[0].output;
        assert_eq!(out.status.as_ref().unwrap().list(), vec![200, 403]);
        assert_eq!(out.no_match_regex(), Some("id \"1\""));
        assert_eq!(out.match_regex(), None);
        assert_eq!(
            f.tests[1].stages[0].output.match_regex(),
            Some("id \"920100\"")
        );
    }

    #[test]
    fn rule_id_falls_back_on_the_file_name() {
        assert_eq!(rule_from_name(Path::new("x/REQ-942100.yaml")), Some(942100));
        assert_eq!(rule_from_name(Path::new("httpd-overrides.yaml")), None);
    }
}
