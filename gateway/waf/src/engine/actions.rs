//! `setvar` and `ctl`, parsed when rules load.

use std::sync::Arc;

use super::macros::Macro;
use super::target::{parse_list, Target};

/// What `setvar` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// `col.key=value`.
    Set,
    /// `col.key=+n`.
    Add,
    /// `col.key=-n`.
    Sub,
    /// `!col.key`.
    Delete,
}

/// A parsed `setvar`.
#[derive(Debug)]
pub struct SetVar {
    /// The collection, upper case (`TX`, `IP`).
    pub collection: String,
    /// The key (may hold macros), expanded and lower-cased at run time.
    pub key: Macro,
    /// The key lower-cased, when it has no macros.
    pub key_lower: Option<String>,
    /// The operation.
    pub op: SetOp,
    /// The value (may hold macros).
    pub value: Macro,
}

impl SetVar {
    /// Parses `tx.a=1`, `tx.a=+%{tx.b}`, `!tx.a`, `tx.flag` (set to 1).
    pub fn parse(v: &str) -> Result<SetVar, String> {
        let v = v.trim();
        let (delete, v) = match v.strip_prefix('!') {
            Some(r) => (true, r),
            None => (false, v),
        };
        let (name, value) = match v.split_once('=') {
            Some((n, val)) => (n.trim(), Some(val)),
            None => (v, None),
        };
        let (collection, key) = name
            .split_once('.')
            .ok_or_else(|| format!("setvar:{v}: expected collection.name"))?;
        let (op, value) = match (delete, value) {
            (true, _) => (SetOp::Delete, ""),
            (false, None) => (SetOp::Set, "1"),
            (false, Some(val)) => match (val.strip_prefix('+'), val.strip_prefix('-')) {
                (Some(n), _) => (SetOp::Add, n),
                (_, Some(n)) => (SetOp::Sub, n),
                _ => (SetOp::Set, val),
            },
        };
        let key = Macro::parse(key.trim());
        let key_lower = key
            .is_literal()
            .then(|| String::from_utf8_lossy(&key.literal()).to_ascii_lowercase());
        Ok(SetVar {
            collection: collection.trim().to_ascii_uppercase(),
            key,
            key_lower,
            op,
            value: Macro::parse(value),
        })
    }
}

/// Which rules a runtime exception (`ctl:ruleRemove…`) names.
#[derive(Debug)]
pub enum RuleSel {
    /// Ids and ranges.
    Ids(Vec<(u64, u64)>),
    /// A tag pattern (regex, as ModSecurity matches tags).
    Tag(crate::rx::Rx),
}

impl RuleSel {
    /// Parses `920100 920200-920299` (spaces or commas).
    pub fn ids(v: &str) -> Result<RuleSel, String> {
        let mut out = Vec::new();
        for part in v.split([' ', ',']).filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u64 = a.trim().parse().map_err(|_| format!("rule id {part:?}"))?;
            let b: u64 = b.trim().parse().map_err(|_| format!("rule id {part:?}"))?;
            out.push((a.min(b), a.max(b)));
        }
        Ok(RuleSel::Ids(out))
    }

    /// A tag selector.
    pub fn tag(v: &str) -> Result<RuleSel, String> {
        crate::rx::Rx::compile_with(v.trim(), crate::rx::RxOptions::PLAIN)
            .map(RuleSel::Tag)
            .map_err(|e| format!("tag {v:?}: {e}"))
    }

    /// Whether the rule with `id` and `tags` is selected.
    pub fn selects(&self, id: u64, tags: &[String]) -> bool {
        match self {
            RuleSel::Ids(r) => r.iter().any(|(a, b)| (*a..=*b).contains(&id)),
            RuleSel::Tag(rx) => tags
                .iter()
                .any(|t| rx.is_match(t.as_bytes()).unwrap_or(false)),
        }
    }
}

/// A runtime selector and the rules it selects in the loaded set, worked out once when the
/// set is complete (a tag pattern is not matched against every rule's tags per request).
#[derive(Debug)]
pub struct Selection {
    sel: RuleSel,
    /// A bit per rule index.
    rules: std::sync::OnceLock<Vec<u64>>,
}

impl Selection {
    fn new(sel: RuleSel) -> Arc<Selection> {
        Arc::new(Selection {
            sel,
            rules: std::sync::OnceLock::new(),
        })
    }

    /// Whether the rule with `id` and `tags` is selected.
    #[cfg(test)]
    pub fn selects(&self, id: u64, tags: &[String]) -> bool {
        self.sel.selects(id, tags)
    }

    /// Whether the rule `r` is selected.
    pub(crate) fn selects_rule(&self, r: &super::rule::CRule) -> bool {
        let i = r.index as usize;
        match self.rules.get().and_then(|bits| bits.get(i / 64)) {
            Some(w) => w >> (i % 64) & 1 == 1,
            None => self.sel.selects(r.id, &r.tags),
        }
    }

    /// Works out which of `rules` (each at its index) are selected.
    pub(crate) fn resolve(&self, rules: &[&super::rule::CRule]) {
        self.rules.get_or_init(|| {
            let mut bits = vec![0u64; rules.len().div_ceil(64)];
            for r in rules {
                let i = r.index as usize;
                if i < rules.len() && self.sel.selects(r.id, &r.tags) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            bits
        });
    }
}

/// A parsed `ctl`.
#[derive(Debug)]
pub enum Ctl {
    /// `ruleEngine=On|Off|DetectionOnly`.
    RuleEngine(super::Mode),
    /// `ruleRemoveById` / `ruleRemoveByTag`.
    RemoveRules(Arc<Selection>),
    /// `ruleRemoveTargetById=ID;TARGETS` / `ruleRemoveTargetByTag=TAG;TARGETS`.
    RemoveTargets(Arc<Selection>, Vec<Arc<Target>>),
    /// `requestBodyProcessor=URLENCODED|MULTIPART|JSON|XML`.
    BodyProcessor(super::BodyProcessor),
    /// `requestBodyAccess=On|Off`.
    RequestBodyAccess(bool),
    /// `forceRequestBodyVariable=On|Off`.
    ForceRequestBodyVariable(bool),
    /// Audit-log controls and others with no effect here (`auditEngine`, `auditLogParts`).
    Ignored,
}

impl Ctl {
    /// Parses `name=value`.
    pub fn parse(v: &str) -> Result<Ctl, String> {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| format!("ctl:{v}: expected name=value"))?;
        let value = value.trim();
        let on = || value.eq_ignore_ascii_case("on");
        Ok(match name.trim().to_ascii_lowercase().as_str() {
            "ruleengine" => Ctl::RuleEngine(super::Mode::parse(value)?),
            "ruleremovebyid" => Ctl::RemoveRules(Selection::new(RuleSel::ids(value)?)),
            "ruleremovebytag" => Ctl::RemoveRules(Selection::new(RuleSel::tag(value)?)),
            "ruleremovetargetbyid" | "ruleremovetargetbytag" => {
                let (sel, targets) = value
                    .split_once(';')
                    .ok_or_else(|| format!("ctl:{v}: expected RULE;TARGETS"))?;
                let sel = if name.trim().eq_ignore_ascii_case("ruleRemoveTargetById") {
                    RuleSel::ids(sel)?
                } else {
                    RuleSel::tag(sel)?
                };
                let targets = parse_list(targets)?
                    .into_iter()
                    .map(|(t, _)| Arc::new(t))
                    .collect();
                Ctl::RemoveTargets(Selection::new(sel), targets)
            }
            "requestbodyprocessor" => Ctl::BodyProcessor(super::BodyProcessor::parse(value)?),
            "requestbodyaccess" => Ctl::RequestBodyAccess(on()),
            "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on()),
            "auditengine" | "auditlogparts" | "responsebodyaccess" | "debugloglevel" => {
                Ctl::Ignored
            }
            other => return Err(format!("ctl:{other} is not supported")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setvar_forms() {
        let s = SetVar::parse("tx.inbound_anomaly_score_pl1=+%{tx.critical_anomaly_score}")
            .expect("parses");
        assert_eq!((s.collection.as_str(), s.op), ("TX", SetOp::Add));
        assert_eq!(SetVar::parse("!tx.x").expect("parses").op, SetOp::Delete);
        assert_eq!(
            SetVar::parse("tx.flag").expect("parses").value.literal(),
            b"1"
        );
        assert_eq!(SetVar::parse("tx.a=-5").expect("parses").op, SetOp::Sub);
        assert!(SetVar::parse("novar").is_err());
    }

    #[test]
    fn ctl_forms() {
        let c = Ctl::parse("ruleRemoveTargetById=942100;ARGS:password").expect("parses");
        let Ctl::RemoveTargets(sel, t) = c else {
            panic!("not a target removal")
        };
        assert!(sel.selects(942100, &[]));
        assert!(t[0].excludes("ARGS", b"Password"));
        assert!(matches!(
            Ctl::parse("ruleRemoveById=920100-920200").expect("parses"),
            Ctl::RemoveRules(_)
        ));
        assert!(Ctl::parse("bogus=1").is_err());
    }
}
