//! Compiled operators: the simple ones (`operators.rs`), `@rx` (fixed or with macros),
//! `@pm` / `@pmFromFile` on Aho-Corasick, `@ipMatchFromFile`, and libinjection's
//! `@detectSQLi` / `@detectXSS`.

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use super::macros::Macro;
use crate::operators::Simple;
use crate::rx::Rx;
use crate::seclang::Operator;

/// A compiled operator.
#[derive(Debug)]
pub enum Op {
    /// A simple operator with its fixed parameter.
    Simple(Simple, Vec<u8>),
    /// A simple operator whose parameter has macros.
    SimpleMacro(Simple, Macro),
    /// `@rx` with a fixed pattern.
    Rx(Rx),
    /// `@rx` whose pattern has macros: compiled when an expansion is first seen.
    RxMacro(Macro, RxCache),
    /// `@pm` and `@pmFromFile`: ASCII case-insensitive phrases (kept for the prefilter).
    Pm(AhoCorasick, Vec<Vec<u8>>),
    /// `@detectSQLi`.
    Sqli,
    /// `@detectXSS`.
    Xss,
}

/// What an operator found: whether it matched, and the captures (`TX.0`… for `capture`).
pub struct Found {
    /// Whether the operator matched (before negation).
    pub matched: bool,
    /// Groups 0..9 for `capture` (empty when the operator gives none).
    pub captures: Vec<Option<Vec<u8>>>,
    /// Why the operator could not answer, when it could not (it then counts as not matching,
    /// as in ModSecurity v2).
    pub error: Option<OpError>,
}

/// An operator that could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpError {
    /// PCRE2's match or depth limit (ModSecurity v2 sets `TX:MSC_PCRE_LIMITS_EXCEEDED`).
    Limits,
    /// Another matching failure (resources).
    Failed,
}

impl Found {
    pub(crate) fn plain(matched: bool) -> Found {
        Found {
            matched,
            captures: Vec::new(),
            error: None,
        }
    }

    fn failed(e: &crate::rx::RxError) -> Found {
        let error = match e {
            crate::rx::RxError::MatchLimit => OpError::Limits,
            _ => OpError::Failed,
        };
        Found {
            error: Some(error),
            ..Found::plain(false)
        }
    }
}

impl Op {
    /// Compiles `op`; files (`@pmFromFile`, `@ipMatchFromFile`) are read relative to `dir`.
    pub fn compile(op: &Operator, dir: &Path) -> Result<Op, String> {
        match op.name {
            "rx" => {
                let m = Macro::parse(&op.param);
                if m.is_literal() {
                    Ok(Op::Rx(Rx::compile(&op.param).map_err(|e| e.to_string())?))
                } else {
                    Ok(Op::RxMacro(m, RxCache::default()))
                }
            }
            "pm" => pm(op.param.split_ascii_whitespace().map(str::to_string)),
            "pmFromFile" | "pmf" => pm(phrases_from_files(&op.param, dir)?.into_iter()),
            "ipMatchFromFile" | "ipMatchF" => {
                let list = phrases_from_files(&op.param, dir)?.join(",");
                let nets = Operator {
                    name: "ipMatch",
                    negated: false,
                    param: list,
                };
                match Simple::compile(&nets)? {
                    Some(s) => Ok(Op::Simple(s, Vec::new())),
                    None => Err("ipMatch is not compiled".into()),
                }
            }
            "detectSQLi" => Ok(Op::Sqli),
            "detectXSS" => Ok(Op::Xss),
            _ => match Simple::compile(op)? {
                Some(s) => {
                    let m = Macro::parse(&op.param);
                    Ok(if m.is_literal() {
                        Op::Simple(s, m.literal())
                    } else {
                        Op::SimpleMacro(s, m)
                    })
                }
                None => Err(format!("operator @{} is not supported", op.name)),
            },
        }
    }

    /// Literals one of which every value this operator matches contains (lower-cased), for
    /// the prefilter; `None` when there is no such set.
    pub fn literals(&self) -> Option<Vec<Vec<u8>>> {
        match self {
            Op::Rx(rx) if rx.engine() == "regex" => {
                super::prefilter::required_literals(rx.as_str())
            }
            Op::Pm(_, phrases) if phrases.iter().all(|p| !p.is_empty()) => Some(phrases.clone()),
            _ => None,
        }
    }

    /// The operator with its macro parameter replaced by `param` (what it expands to in
    /// every transaction); `None` when it has no macro, or the expansion is not a regex
    /// (left to run as before: it never matches).
    pub(crate) fn with_param(&self, param: &[u8]) -> Option<Op> {
        match self {
            Op::SimpleMacro(s, _) => Some(Op::Simple(s.clone(), param.to_vec())),
            Op::RxMacro(..) => Rx::compile(&String::from_utf8_lossy(param))
                .ok()
                .map(Op::Rx),
            _ => None,
        }
    }

    /// Whether the outcome depends on the input alone (no macro in the parameter): the same
    /// bytes give the same answer in every transaction.
    pub fn is_pure(&self) -> bool {
        !matches!(self, Op::SimpleMacro(..) | Op::RxMacro(..))
    }

    /// Byte sets every value this operator matches draws from, for the byte prefilter.
    pub fn needs(&self) -> Option<super::needs::Needs> {
        match self {
            Op::Rx(rx) if rx.engine() == "regex" => super::needs::regex_needs(rx.as_str()),
            Op::Pm(_, phrases) if phrases.iter().all(|p| !p.is_empty()) => {
                super::needs::phrase_needs(phrases)
            }
            _ => None,
        }
    }

    /// Runs the operator on `input`; `expand` expands macro parameters; captures are
    /// collected only when `capture` asks for them.
    pub fn run(
        &self,
        input: &[u8],
        capture: bool,
        expand: &mut dyn FnMut(&Macro) -> Vec<u8>,
    ) -> Found {
        match self {
            Op::Simple(s, param) => Found::plain(s.matches(param, input)),
            Op::SimpleMacro(s, param) => Found::plain(s.matches(&expand(param), input)),
            Op::Rx(rx) => rx_found(rx, input, capture),
            Op::RxMacro(m, cache) => match cache.get(&expand(m)) {
                Some(rx) => rx_found(&rx, input, capture),
                None => Found::plain(false),
            },
            Op::Pm(ac, _) => match ac.find(input) {
                Some(m) => Found {
                    captures: vec![Some(input[m.range()].to_vec())],
                    ..Found::plain(true)
                },
                None => Found::plain(false),
            },
            Op::Sqli => match crate::libinjection::sqli(input) {
                Some(fp) => Found {
                    captures: vec![Some(fp.as_str().as_bytes().to_vec())],
                    ..Found::plain(true)
                },
                None => Found::plain(false),
            },
            Op::Xss => Found::plain(crate::libinjection::xss(input)),
        }
    }
}

/// Most expansions an `@rx` with macros keeps compiled (they come from settings such as
/// `tx.allowed_request_content_type`, which rarely vary).
const RX_CACHE_MAX: usize = 16;

/// Patterns of an `@rx` with macros, compiled (`None`: the expansion does not compile).
#[derive(Debug, Default)]
pub struct RxCache(std::sync::RwLock<Vec<Compiled>>);

/// An expansion and its regex (`None`: it does not compile).
type Compiled = (Vec<u8>, Option<std::sync::Arc<Rx>>);

impl RxCache {
    /// The compiled regex of an expansion, compiled now when not cached.
    fn get(&self, pattern: &[u8]) -> Option<std::sync::Arc<Rx>> {
        if let Ok(cached) = self.0.read() {
            if let Some((_, rx)) = cached.iter().find(|(p, _)| p == pattern) {
                return rx.clone();
            }
        }
        let rx = Rx::compile(&String::from_utf8_lossy(pattern))
            .ok()
            .map(std::sync::Arc::new);
        if let Ok(mut cached) = self.0.write() {
            if cached.len() < RX_CACHE_MAX {
                cached.push((pattern.to_vec(), rx.clone()));
            }
        }
        rx
    }
}

fn rx_found(rx: &Rx, input: &[u8], capture: bool) -> Found {
    // The fast yes/no first: most values do not match, and captures cost more.
    let hit = match rx.is_match(input) {
        Ok(hit) => hit,
        Err(e) => return Found::failed(&e),
    };
    if !hit || !capture {
        return Found::plain(hit);
    }
    match rx.captures(input) {
        Ok(Some(groups)) => Found {
            captures: groups,
            ..Found::plain(true)
        },
        Ok(None) => Found::plain(false),
        Err(e) => Found::failed(&e),
    }
}

fn pm(phrases: impl Iterator<Item = String>) -> Result<Op, String> {
    let list: Vec<String> = phrases.filter(|p| !p.is_empty()).collect();
    if list.is_empty() {
        return Err("@pm needs at least one phrase".into());
    }
    let ac = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(&list)
        .map_err(|e| format!("@pm: {e}"))?;
    let phrases = list
        .iter()
        .map(|p| p.as_bytes().to_ascii_lowercase())
        .collect();
    Ok(Op::Pm(ac, phrases))
}

/// The phrases of `@pmFromFile` files (several, space-separated): one per line, trimmed,
/// `#` comments and blank lines skipped.
fn phrases_from_files(param: &str, dir: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in param.split_ascii_whitespace() {
        if name.starts_with("http://") || name.starts_with("https://") {
            return Err(format!(
                "{name}: rule files are never fetched from the network"
            ));
        }
        let path = dir.join(name);
        let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                out.push(line.to_string());
            }
        }
    }
    Ok(out)
}
