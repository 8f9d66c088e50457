//! Running a phase: rules in order with `skip`/`skipAfter`, chains, transformations
//! (`multiMatch` included), operators, the actions of each match, and the decision.

use std::sync::Arc;

use super::actions::{Ctl, SetOp, SetVar};
use super::macros::Macro;
use super::rule::{AllowScope, CRule, Disruptive, Effect};
use super::settings::Mode;
use super::tx::{Intervention, MatchedRule, Named, Transaction};
use crate::transform::Transform;

/// Where to stop skipping.
enum Skipping {
    None,
    Count(u32),
    After(String),
}

impl Transaction {
    /// Runs the rules of phase `p` (phase 5 runs even after an intervention).
    pub(crate) fn run_phase(&mut self, p: u8) {
        self.phase = p;
        if self.mode == Mode::Off || (p < 5 && self.intervention.is_some()) {
            return;
        }
        if self.allow_all && p < 5 || self.allow_request && p <= 2 {
            return;
        }
        let waf = Arc::clone(&self.waf);
        let mut skipping = Skipping::None;
        for rule in waf.phase(p) {
            match &mut skipping {
                Skipping::After(m) => {
                    if rule.marker.as_deref() == Some(m.as_str()) || rule.id.to_string() == *m {
                        skipping = Skipping::None;
                    }
                    continue;
                }
                Skipping::Count(n) if *n > 0 && rule.marker.is_none() => {
                    *n -= 1;
                    continue;
                }
                _ => {}
            }
            if rule.marker.is_some() || self.is_removed(rule) {
                continue;
            }
            if !self.run_rule(rule) {
                continue;
            }
            if let Some(m) = &rule.skip_after {
                skipping = Skipping::After(m.clone());
            } else if rule.skip > 0 {
                skipping = Skipping::Count(rule.skip);
            }
            if self.intervention.is_some() && p < 5 {
                return;
            }
            if let Disruptive::Allow(scope) = rule.disruptive {
                if self.mode == Mode::On {
                    match scope {
                        AllowScope::All => self.allow_all = true,
                        AllowScope::Request => self.allow_request = true,
                        AllowScope::Phase => {}
                    }
                    return;
                }
            }
        }
    }

    fn is_removed(&self, rule: &CRule) -> bool {
        self.removed.iter().any(|s| s.selects(rule.id, &rule.tags))
    }

    /// Runs a rule and its chain; true when every link matched.
    fn run_rule(&mut self, head: &CRule) -> bool {
        self.matched_vars.clear();
        let before = self.score_total();
        let mut first_var = None;
        let mut link = Some(head);
        while let Some(r) = link {
            if !self.run_link(r, head) {
                return false;
            }
            if first_var.is_none() {
                first_var = Some(self.matched_var.0.clone());
            }
            link = r.chained.as_deref();
        }
        let score = self.score_total() - before;
        if head.log {
            self.record(head, first_var.unwrap_or_default(), score);
        }
        self.decide(head);
        true
    }

    /// One link: every target value, transformed, through the operator; the link's actions
    /// run for each match.
    fn run_link(&mut self, r: &CRule, head: &CRule) -> bool {
        let Some(op) = &r.op else {
            self.effects(r);
            return true;
        };
        let values = self.targets_of(r, head);
        let mut matched = false;
        let mut scratch = Vec::new();
        for (name, value) in values {
            for candidate in candidates(&r.transforms, r.multi_match, value, &mut scratch) {
                let found = {
                    let mut expand = |m: &Macro| self.expand(m);
                    op.run(&candidate, &mut expand)
                };
                if found.matched == r.negated {
                    continue;
                }
                matched = true;
                if r.capture && found.matched {
                    self.capture(&found.captures);
                }
                self.matched_var = (name.clone(), candidate.clone());
                self.matched_vars.push((name.clone(), candidate));
                self.effects(r);
            }
        }
        matched
    }

    /// A link's target values, exclusions (the rule's, and runtime `ctl` ones for its chain
    /// starter) removed.
    fn targets_of(&self, r: &CRule, head: &CRule) -> Vec<Named> {
        let mut values = Vec::new();
        for t in &r.targets {
            self.values(t, &mut values);
        }
        let runtime: Vec<_> = self
            .removed_targets
            .iter()
            .filter(|(sel, _)| sel.selects(head.id, &head.tags))
            .map(|(_, t)| t.as_ref())
            .collect();
        if r.exclusions.is_empty() && runtime.is_empty() {
            return values;
        }
        values.retain(|(label, _)| {
            let (var, name) = split_label(label);
            !r.exclusions
                .iter()
                .chain(runtime.iter().copied())
                .any(|x| x.excludes(var, name))
        });
        values
    }

    fn capture(&mut self, groups: &[Option<Vec<u8>>]) {
        let tx = self.cols.entry("TX".into()).or_default();
        for i in 0..10 {
            match groups.get(i) {
                Some(Some(g)) => {
                    tx.insert(i.to_string(), g.clone());
                }
                _ => {
                    tx.remove(&i.to_string());
                }
            }
        }
    }

    fn effects(&mut self, r: &CRule) {
        for e in &r.effects {
            match e {
                Effect::SetVar(s) => self.setvar(s),
                Effect::Ctl(c) => self.ctl(c),
                Effect::InitCol(c) => {
                    self.cols.entry(c.clone()).or_default();
                }
            }
        }
    }

    fn setvar(&mut self, s: &SetVar) {
        let key = String::from_utf8_lossy(&self.expand(&s.key)).to_ascii_lowercase();
        let value = self.expand(&s.value);
        let col = self.cols.entry(s.collection.clone()).or_default();
        match s.op {
            SetOp::Delete => {
                col.remove(&key);
            }
            SetOp::Set => {
                col.insert(key, value);
            }
            SetOp::Add | SetOp::Sub => {
                let cur = number(col.get(&key).map(Vec::as_slice).unwrap_or(b"0"));
                let n = number(&value);
                let v = if s.op == SetOp::Add {
                    cur.saturating_add(n)
                } else {
                    cur.saturating_sub(n)
                };
                col.insert(key, v.to_string().into_bytes());
            }
        }
    }

    fn ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleEngine(m) => self.mode = *m,
            Ctl::RemoveRules(sel) => self.removed.push(Arc::clone(sel)),
            Ctl::RemoveTargets(sel, targets) => {
                for t in targets {
                    self.removed_targets.push((Arc::clone(sel), Arc::clone(t)));
                }
            }
            Ctl::BodyProcessor(p) => self.processor = Some(*p),
            Ctl::RequestBodyAccess(on) => self.body_access = *on,
            Ctl::ForceRequestBodyVariable(on) => self.force_body_variable = *on,
            Ctl::Ignored => {}
        }
    }

    /// Expands a macro against this transaction.
    pub(crate) fn expand(&self, m: &Macro) -> Vec<u8> {
        m.expand(|name, key| self.macro_value(name, key))
    }

    fn macro_value(&self, name: &str, key: Option<&str>) -> Option<Vec<u8>> {
        match (name, key) {
            ("MATCHED_VAR", None) => Some(self.matched_var.1.clone()),
            ("MATCHED_VAR_NAME", None) => Some(self.matched_var.0.clone()),
            (col, Some(k)) if self.cols.contains_key(col) => self.cols[col].get(k).cloned(),
            _ => {
                let t = super::target::Target {
                    var: name.to_string(),
                    select: match key {
                        Some(k) => super::target::Select::Name(k.to_string()),
                        None => super::target::Select::All,
                    },
                    count: false,
                };
                let mut out = Vec::new();
                self.values(&t, &mut out);
                out.into_iter().next().map(|(_, v)| v)
            }
        }
    }

    /// The sum of CRS's per-level anomaly scores (what a rule's `setvar`s added).
    fn score_total(&self) -> i64 {
        self.cols.get("TX").map_or(0, |tx| {
            tx.iter()
                .filter(|(k, _)| {
                    k.starts_with("inbound_anomaly_score_pl")
                        || k.starts_with("outbound_anomaly_score_pl")
                })
                .map(|(_, v)| number(v))
                .sum()
        })
    }

    fn record(&mut self, head: &CRule, variable: Vec<u8>, score: i64) {
        let text = |m: &Option<Macro>| {
            m.as_ref()
                .map(|m| String::from_utf8_lossy(&self.expand(m)).into_owned())
                .unwrap_or_default()
        };
        let matched = MatchedRule {
            id: head.id,
            phase: head.phase,
            msg: text(&head.msg),
            data: text(&head.logdata),
            severity: head.severity,
            variable: String::from_utf8_lossy(&variable).into_owned(),
            transforms: head.transforms.iter().map(|t| t.name()).collect(),
            score,
            tags: head.tags.clone(),
            origin: head.origin.clone(),
        };
        if self.matched.len() < 1000 {
            self.matched.push(matched);
        }
    }

    fn decide(&mut self, head: &CRule) {
        let (drop, redirect) = match head.disruptive {
            Disruptive::Deny | Disruptive::Block => (false, None),
            Disruptive::Drop => (true, None),
            Disruptive::Redirect => (false, head.redirect.as_ref().map(|m| self.expand(m))),
            Disruptive::Pass | Disruptive::Allow(_) => return,
        };
        let status = match (&redirect, head.status) {
            (_, Some(s)) => s,
            (Some(_), None) => 302,
            (None, None) => 403,
        };
        let i = Intervention {
            status,
            rule_id: head.id,
            phase: head.phase,
            drop,
            redirect: redirect.map(|r| String::from_utf8_lossy(&r).into_owned()),
            msg: head
                .msg
                .as_ref()
                .map(|m| String::from_utf8_lossy(&self.expand(m)).into_owned())
                .unwrap_or_default(),
            enforced: self.mode == Mode::On,
        };
        if i.enforced {
            self.intervention = Some(i);
        } else if self.would_block.is_none() {
            self.would_block = Some(i);
        }
    }
}

/// `VAR:name` split at the first `:`.
fn split_label(label: &[u8]) -> (&str, &[u8]) {
    match label.iter().position(|&b| b == b':') {
        Some(i) => (
            std::str::from_utf8(&label[..i]).unwrap_or(""),
            &label[i + 1..],
        ),
        None => (std::str::from_utf8(label).unwrap_or(""), &[]),
    }
}

/// A number as ModSecurity reads one (`atoi`: leading digits, 0 otherwise).
fn number(v: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(v);
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let n = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// The values an operator sees: the final transformed value, or with `multiMatch` the
/// original and each value a transformation changed.
fn candidates(
    transforms: &[Transform],
    multi: bool,
    value: Vec<u8>,
    scratch: &mut Vec<u8>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = value;
    if multi {
        out.push(cur.clone());
    }
    for t in transforms {
        let changed = t.apply(&cur, scratch);
        std::mem::swap(&mut cur, scratch);
        if multi && changed {
            out.push(cur.clone());
        }
    }
    if !multi {
        out.push(cur);
    }
    out
}
