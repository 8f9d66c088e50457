//! `requires` (Suricata 7.0.3+): a rule states the engine version, features and keywords it
//! needs, and an engine that lacks one skips the rule quietly instead of failing on it. It is
//! read before every other option, so a rule written for a newer engine (with keywords this one
//! does not know) is skipped for its requirement, not reported as broken.
//!
//! As Suricata reads it (`rust/src/detect/requires.rs`): comma-separated `feature X`,
//! `keyword X` and `version EXPR` items; in an expression, space-separated comparisons
//! (`>= > <= <`, versions `M[.m[.p]]`, each part 0-255) hold together and `|` separates
//! alternatives; an unknown item skips the rule; a malformed expression or a second `version`
//! is an error.

/// The Suricata version whose rule language the gateway speaks, for `requires: version`.
pub const VERSION: (u8, u8, u8) = (8, 0, 6);

/// Features the gateway provides (Suricata's names).
const FEATURES: &[&str] = &["ja3", "ja4"];

/// Why a rule's requirements stop it.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmet {
    /// Skip the rule (a version, feature or keyword the gateway lacks; an unknown item).
    Skip(String),
    /// The requirement itself is malformed.
    Error(String),
}

/// Checks one `requires` value; `known` says whether a rule keyword is supported.
pub fn check(value: &str, known: impl Fn(&str) -> bool) -> Result<(), Unmet> {
    let mut version_seen = false;
    for item in value.split(',').map(str::trim) {
        let (key, arg) = item.split_once(char::is_whitespace).unwrap_or((item, ""));
        let arg = arg.trim();
        match key {
            "version" => {
                if std::mem::replace(&mut version_seen, true) {
                    return Err(Unmet::Error("version may only be specified once".into()));
                }
                let alternatives = parse_expr(arg).map_err(Unmet::Error)?;
                if !alternatives
                    .iter()
                    .any(|all| all.iter().all(|c| c.holds(VERSION)))
                {
                    return Err(Unmet::Skip(format!(
                        "requires version {arg}; the gateway speaks Suricata {}.{}.{}",
                        VERSION.0, VERSION.1, VERSION.2
                    )));
                }
            }
            "feature" if FEATURES.contains(&arg) => {}
            "feature" => return Err(Unmet::Skip(format!("requires feature {arg:?}"))),
            "keyword" if !arg.is_empty() && known(arg) => {}
            "keyword" => return Err(Unmet::Skip(format!("requires keyword {arg:?}"))),
            other => return Err(Unmet::Skip(format!("unknown requirement {other:?}"))),
        }
    }
    Ok(())
}

/// One comparison of a version expression.
#[derive(Debug, Clone, Copy)]
struct Cmp {
    op: Op,
    v: (u8, u8, u8),
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
}

impl Cmp {
    fn holds(&self, have: (u8, u8, u8)) -> bool {
        match self.op {
            Op::Ge => have >= self.v,
            Op::Gt => have > self.v,
            Op::Le => have <= self.v,
            Op::Lt => have < self.v,
        }
    }
}

/// `>= 7.0.3 < 8 | >= 8.0.3` → alternatives of comparisons that must all hold.
fn parse_expr(expr: &str) -> Result<Vec<Vec<Cmp>>, String> {
    let bad = || format!("failed to parse requires expression {expr:?}");
    let mut out = Vec::new();
    for alt in expr.split('|') {
        let words: Vec<&str> = alt.split_whitespace().collect();
        if words.is_empty() || words.len() % 2 != 0 {
            return Err(bad());
        }
        let mut all = Vec::new();
        for pair in words.chunks(2) {
            let op = match pair[0] {
                ">=" => Op::Ge,
                ">" => Op::Gt,
                "<=" => Op::Le,
                "<" => Op::Lt,
                _ => return Err(bad()),
            };
            all.push(Cmp {
                op,
                v: parse_version(pair[1]).ok_or_else(bad)?,
            });
        }
        out.push(all);
    }
    Ok(out)
}

/// `M[.m[.p]]`, missing parts 0, each 0-255; what follows a third part (`7.0.3.1`) is ignored.
fn parse_version(v: &str) -> Option<(u8, u8, u8)> {
    let mut parts = v.split('.');
    let mut next = |required: bool| -> Option<u8> {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok(),
            Some(_) => None,
            None if required => None,
            None => Some(0),
        }
    };
    Some((next(true)?, next(false)?, next(false)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &str) -> Result<(), Unmet> {
        check(v, |k| k == "http.uri")
    }

    #[test]
    fn versions_features_and_keywords() {
        assert_eq!(run("version >= 7.0.3"), Ok(()));
        assert_eq!(run("version >= 7 < 9"), Ok(()));
        assert_eq!(run("version >= 7.0.3 < 8 | >= 8.0.3"), Ok(()));
        assert!(matches!(run("version >= 9"), Err(Unmet::Skip(_))));
        assert!(matches!(run("version < 8"), Err(Unmet::Skip(_))));
        assert_eq!(run("feature ja3, keyword http.uri"), Ok(()));
        assert!(matches!(run("feature geoip"), Err(Unmet::Skip(_))));
        assert!(matches!(run("keyword http.future"), Err(Unmet::Skip(_))));
        assert!(matches!(run("color blue"), Err(Unmet::Skip(_))));
        assert!(
            matches!(run(">= 7"), Err(Unmet::Skip(_))),
            "no key: unknown"
        );
        for bad in [
            "version = 8",
            "version 8",
            "version >= 777",
            "version >= 7.1.2a",
            "version >=7",
            "version >= 7, version >= 8",
        ] {
            assert!(matches!(run(bad), Err(Unmet::Error(_))), "{bad}");
        }
        assert_eq!(
            run("version >= 8.0.6.1"),
            Ok(()),
            "a fourth part is ignored"
        );
    }
}
