//! Reading SecLang files: logical lines (a trailing `\` continues a line), arguments (bare
//! words and double-quoted strings with `\"` escapes), directives, `Include` (globs, relative to
//! the including file, bounded depth), and rule chains. Every problem is a [`ParseError`]
//! naming the file and the line the directive starts on.

pub(crate) mod names;
mod rule;

use std::path::{Path, PathBuf};

pub use rule::{parse_actions, parse_operator, parse_variables, Action, Key, Operator, Variable};

/// A problem in a rule file, at a line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// The line the directive starts on (1-based).
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// One directive, where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    /// What it says.
    pub kind: DirectiveKind,
    /// The file it came from.
    pub file: PathBuf,
    /// The line it starts on.
    pub line: u32,
}

/// A rule: variables, operator, actions, and the rule chained to it (`chain`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// What it inspects.
    pub variables: Vec<Variable>,
    /// How.
    pub operator: Operator,
    /// What it does (and its metadata).
    pub actions: Vec<Action>,
    /// The next rule of its chain, which must also match.
    pub chained: Option<Box<Rule>>,
    /// The line it starts on.
    pub line: u32,
}

impl Rule {
    /// The value of the first action named `name` (`id`, `phase`, `msg` …).
    pub fn action(&self, name: &str) -> Option<&str> {
        self.actions
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
            .and_then(|a| a.value.as_deref())
    }

    /// Whether the rule has the action `name` (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.actions
            .iter()
            .any(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// The rule's id (`id:N`), if it has one.
    pub fn id(&self) -> Option<u64> {
        self.action("id").and_then(|v| v.trim().parse().ok())
    }
}

/// What a directive says.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectiveKind {
    /// `SecRule VARIABLES "OPERATOR" "ACTIONS"` with its chain.
    Rule(Rule),
    /// `SecAction "ACTIONS"`: a rule that always matches.
    Action(Vec<Action>),
    /// `SecMarker NAME`: a target of `skipAfter`.
    Marker(String),
    /// `SecDefaultAction "ACTIONS"` (for the phase it names).
    DefaultAction(Vec<Action>),
    /// `SecRuleRemoveById 1 2 100-200`.
    RemoveById(Vec<String>),
    /// `SecRuleRemoveByTag REGEX`.
    RemoveByTag(String),
    /// `SecRuleRemoveByMsg REGEX`.
    RemoveByMsg(String),
    /// `SecRuleUpdateTargetById ID "TARGETS" ["REPLACED"]`.
    UpdateTargetById {
        /// Ids and ranges.
        ids: String,
        /// Variables added (or `!` exclusions).
        targets: Vec<Variable>,
        /// The variable they replace, when given.
        replaced: Option<String>,
    },
    /// `SecRuleUpdateTargetByTag TAG "TARGETS"` (and `…ByMsg`).
    UpdateTargetByTag {
        /// The tag (or message) regex.
        pattern: String,
        /// Whether it matches messages instead of tags.
        by_msg: bool,
        /// Variables added or excluded.
        targets: Vec<Variable>,
    },
    /// `SecRuleUpdateActionById ID "ACTIONS"`.
    UpdateActionById {
        /// The rule id (a chain position `ID:N` is kept as written).
        id: String,
        /// Actions replacing those of the same name.
        actions: Vec<Action>,
    },
    /// An engine setting (`SecRuleEngine On`, `SecRequestBodyLimit 13107200`, …): the
    /// directive's canonical name and its arguments.
    Setting {
        /// The directive, as spelled in [`names::DIRECTIVES`].
        name: &'static str,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// How deep `Include` may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Reads a rule file and every file it includes.
pub fn parse_file(path: &Path) -> Result<Vec<Directive>, ParseError> {
    let mut out = Vec::new();
    read_into(path, 0, &mut out)?;
    Ok(out)
}

fn read_into(path: &Path, depth: usize, out: &mut Vec<Directive>) -> Result<(), ParseError> {
    let text = std::fs::read_to_string(path).map_err(|e| ParseError {
        file: path.to_path_buf(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut include = |pattern: &str, line: u32| -> Result<(), ParseError> {
        let err = |message: String| ParseError {
            file: path.to_path_buf(),
            line,
            message,
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(err(format!(
                "Include nested more than {MAX_INCLUDE_DEPTH} deep"
            )));
        }
        let files = expand(&dir, pattern).map_err(err)?;
        for f in files {
            read_into(&f, depth + 1, out)?;
        }
        Ok(())
    };
    let parsed = parse_with(&text, path, &mut include)?;
    out.extend(parsed);
    Ok(())
}

/// Parses rule text (`Include` is refused: there is no file to resolve it from). `file` names
/// the source in errors.
pub fn parse_str(text: &str, file: &Path) -> Result<Vec<Directive>, ParseError> {
    let mut no_include = |_: &str, line: u32| {
        Err(ParseError {
            file: file.to_path_buf(),
            line,
            message: "Include is only allowed in rule files".into(),
        })
    };
    parse_with(text, file, &mut no_include)
}

/// The files an `Include` names: a path or a glob (`*` and `?` in the file name), relative to
/// the including file's folder, in name order.
fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let p = Path::new(pattern);
    let p = if p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    };
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("Include {pattern:?}: not a file name"))?;
    if !name.contains(['*', '?']) {
        return Ok(vec![p]);
    }
    let parent = p.parent().unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(parent)
        .map_err(|e| format!("Include {pattern:?}: {}: {e}", parent.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|f| f.is_file())
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| glob_match(name.as_bytes(), n.as_bytes()))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// `*` and `?` over bytes (no character classes: CRS's includes do not use them).
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == b'*')
}

fn parse_with(
    text: &str,
    file: &Path,
    include: &mut dyn FnMut(&str, u32) -> Result<(), ParseError>,
) -> Result<Vec<Directive>, ParseError> {
    let mut out: Vec<Directive> = Vec::new();
    // The directive whose chain waits for its next rule.
    let mut open_chain: Option<usize> = None;
    for (line, logical) in logical_lines(text) {
        let err = |message: String| ParseError {
            file: file.to_path_buf(),
            line,
            message,
        };
        let args = split_args(&logical).map_err(err)?;
        let Some((word, rest)) = args.split_first() else {
            continue;
        };
        if word.eq_ignore_ascii_case("Include") {
            let [pattern] = rest else {
                return Err(err("Include takes one path".into()));
            };
            include(pattern, line)?;
            continue;
        }
        let mut kind = directive(word, rest).map_err(err)?;
        if let DirectiveKind::Rule(r) = &mut kind {
            r.line = line;
        }
        if let Some(head) = open_chain {
            let DirectiveKind::Rule(next) = kind else {
                return Err(err(format!(
                    "{word} after a rule with `chain`: the chain needs a SecRule"
                )));
            };
            let chains_on = next.has("chain");
            if let DirectiveKind::Rule(r) = &mut out[head].kind {
                append_chain(r, next);
            }
            if !chains_on {
                open_chain = None;
            }
            continue;
        }
        if let DirectiveKind::Rule(r) = &kind {
            if r.has("chain") {
                open_chain = Some(out.len());
            }
        }
        out.push(Directive {
            kind,
            file: file.to_path_buf(),
            line,
        });
    }
    if let Some(head) = open_chain {
        return Err(ParseError {
            file: file.to_path_buf(),
            line: out[head].line,
            message: "rule has `chain` but no rule follows it".into(),
        });
    }
    Ok(out)
}

fn append_chain(head: &mut Rule, next: Rule) {
    let mut at = head;
    while at.chained.is_some() {
        at = at
            .chained
            .as_mut()
            .map(|b| b.as_mut())
            .unwrap_or_else(|| unreachable!());
    }
    at.chained = Some(Box::new(next));
}

/// One directive from its words.
fn directive(word: &str, rest: &[String]) -> Result<DirectiveKind, String> {
    let name = names::DIRECTIVES
        .iter()
        .find(|d| d.eq_ignore_ascii_case(word))
        .ok_or_else(|| format!("unknown directive {word:?}"))?;
    let arity = |n: std::ops::RangeInclusive<usize>| {
        if n.contains(&rest.len()) {
            Ok(())
        } else {
            Err(format!(
                "{name} takes {} argument(s), got {}",
                if n.start() == n.end() {
                    n.start().to_string()
                } else {
                    format!("{} to {}", n.start(), n.end())
                },
                rest.len()
            ))
        }
    };
    let at = |what: &str, e: String| format!("{name}: {what}: {e}");
    Ok(match *name {
        "SecRule" => {
            arity(2..=3)?;
            let variables = parse_variables(&rest[0]).map_err(|e| at("variables", e))?;
            let operator = parse_operator(&rest[1]).map_err(|e| at("operator", e))?;
            let actions = match rest.get(2) {
                Some(a) => parse_actions(a).map_err(|e| at("actions", e))?,
                None => Vec::new(),
            };
            DirectiveKind::Rule(Rule {
                variables,
                operator,
                actions,
                chained: None,
                line: 0,
            })
        }
        "SecAction" => {
            arity(1..=1)?;
            DirectiveKind::Action(parse_actions(&rest[0]).map_err(|e| at("actions", e))?)
        }
        "SecDefaultAction" => {
            arity(1..=1)?;
            DirectiveKind::DefaultAction(parse_actions(&rest[0]).map_err(|e| at("actions", e))?)
        }
        "SecMarker" => {
            arity(1..=1)?;
            DirectiveKind::Marker(rest[0].clone())
        }
        "SecRuleRemoveById" => {
            if rest.is_empty() {
                return Err(format!("{name} needs ids or ranges"));
            }
            DirectiveKind::RemoveById(rest.to_vec())
        }
        "SecRuleRemoveByTag" => {
            arity(1..=1)?;
            DirectiveKind::RemoveByTag(rest[0].clone())
        }
        "SecRuleRemoveByMsg" => {
            arity(1..=1)?;
            DirectiveKind::RemoveByMsg(rest[0].clone())
        }
        "SecRuleUpdateTargetById" => {
            arity(2..=3)?;
            DirectiveKind::UpdateTargetById {
                ids: rest[0].clone(),
                targets: parse_variables(&rest[1]).map_err(|e| at("targets", e))?,
                replaced: rest.get(2).cloned(),
            }
        }
        "SecRuleUpdateTargetByTag" | "SecRuleUpdateTargetByMsg" => {
            arity(2..=2)?;
            DirectiveKind::UpdateTargetByTag {
                pattern: rest[0].clone(),
                by_msg: *name == "SecRuleUpdateTargetByMsg",
                targets: parse_variables(&rest[1]).map_err(|e| at("targets", e))?,
            }
        }
        "SecRuleUpdateActionById" => {
            arity(2..=2)?;
            DirectiveKind::UpdateActionById {
                id: rest[0].clone(),
                actions: parse_actions(&rest[1]).map_err(|e| at("actions", e))?,
            }
        }
        setting => {
            if rest.is_empty() {
                return Err(format!("{setting} needs a value"));
            }
            DirectiveKind::Setting {
                name: setting,
                args: rest.to_vec(),
            }
        }
    })
}

/// Logical lines with the number of the line each starts on: comments and blank lines skipped,
/// lines ending in `\` joined with the next.
fn logical_lines(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(u32, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        let (body, more) = match line.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        match cur.as_mut() {
            Some((_, acc)) => acc.push_str(body.trim_start()),
            None => {
                let t = body.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                cur = Some((n, t.to_string()));
            }
        }
        if !more {
            if let Some(done) = cur.take() {
                out.push(done);
            }
        }
    }
    out.extend(cur);
    out
}

/// A directive's words: bare words, or double-quoted strings in which `\"` is a quote and
/// every other backslash is kept (regexes keep their escapes).
fn split_args(line: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&c) = chars.peek() else { break };
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.peek() == Some(&'"') => {
                        chars.next();
                        arg.push('"');
                    }
                    '\\' => {
                        arg.push('\\');
                        if let Some(n) = chars.next() {
                            arg.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => arg.push(c),
                }
            }
            if !closed {
                return Err("a quoted argument is not closed".into());
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                arg.push(c);
            }
        }
        args.push(arg);
    }
    Ok(args)
}

#[cfg(test)]
mod tests;
