//! Running a phase: rules in order with `skip`/`skipAfter`, chains, transformations
//! (`multiMatch` included), operators, the actions of each match, and the decision.

use std::sync::Arc;

use super::actions::{Ctl, SetOp, SetVar};
use super::chains::{Cand, ROOT};
use super::macros::Macro;
use super::needs::ByteSet;
use super::rule::{AllowScope, CRule, Disruptive, Effect};
use super::settings::Mode;
use super::target::{Select, Target};
use super::tx::{Intervention, MatchedRule, Transaction, Val};
use super::vars::{val, Item, Place};

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
        let rules = waf.phase(p);
        // `skip:N`: how many rules (markers not counted) are still to be passed over.
        let mut count = 0u32;
        let mut next = if p == 1 { waf.prelude.rules } else { 0 };
        let table = waf.steps(p);
        while let Some(rule) = rules.get(next) {
            let step = table.steps.get(next);
            next += 1;
            if self.passes_over(table, step, count > 0) {
                continue;
            }
            if count > 0 && rule.marker.is_none() {
                count -= 1;
                continue;
            }
            if rule.marker.is_some() || self.is_removed(rule) {
                continue;
            }
            if !self.run_or_fold(rule) {
                continue;
            }
            if rule.skip_after.is_some() {
                // The rules skipped are not read at all: evaluation goes on past the landing.
                next = (rule.skip_to as usize).saturating_add(1);
            } else if rule.skip > 0 {
                count = rule.skip;
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
        !self.removed.is_empty() && self.removed.iter().any(|s| s.selects_rule(rule))
    }

    /// A folded rule's outcome (unless a runtime exclusion changes its targets), or the
    /// rule run.
    fn run_or_fold(&mut self, rule: &CRule) -> bool {
        let Some(f) = &rule.folded else {
            return self.run_rule(rule);
        };
        if self.excluded_at_runtime(rule) {
            return self.run_rule(rule);
        }
        let super::fold::Folded::Always(name, value) = f else {
            return false;
        };
        self.matched_vars.clear();
        self.matched_vars.push((name.clone(), value.clone()));
        self.matched_var = (name.clone(), value.clone());
        true
    }

    /// Runs a rule and its chain; true when every link matched.
    pub(super) fn run_rule(&mut self, head: &CRule) -> bool {
        self.matched_vars.clear();
        self.score_delta = 0;
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
        if head.log {
            let score = self.score_delta;
            self.record(head, first_var.unwrap_or_else(|| val(b"")), score);
        }
        self.decide(head);
        true
    }

    /// One link: every target value, transformed, through the operator; the link's actions
    /// run for each match.
    pub(super) fn run_link(&mut self, r: &CRule, head: &CRule) -> bool {
        let Some(op) = &r.op else {
            self.effects(r);
            return true;
        };
        let mask = self.may_match_targets(r);
        if mask == 0 {
            return false;
        }
        let mut items = std::mem::take(&mut self.item_buf);
        items.clear();
        self.targets_of(r, head, mask, &mut items);
        let mut matched = false;
        for item in &items {
            // A pure link known not to match these bytes is not run again (see `memo`; most
            // such values were left out when collected).
            let place = r.memo.and_then(|slot| {
                let p = match item.place {
                    Place::At(p) => p,
                    Place::Unknown => self.memo.get_mut().place(&self.waf.memo, &item.value)?,
                    Place::None => return None,
                };
                Some((p, slot))
            });
            // What the memo keeps is that the operator does not match: a negated link (of
            // one candidate per value) then matches without running it.
            let negated = r.negated && !r.multi_match;
            let known = place.is_some_and(|(p, slot)| self.memo.get_mut().known(p, slot));
            if known && !negated {
                continue;
            }
            self.op_failed = false;
            let hit = self.test_item(r, op, item, known);
            // A failure (PCRE limits) is not a fact about the bytes alone: not kept.
            let op_missed = if r.negated { negated && hit } else { !hit };
            if let (true, false, Some((p, slot))) = (op_missed, self.op_failed, place) {
                self.memo.get_mut().note(p, slot);
            }
            matched |= hit;
        }
        items.clear();
        self.item_buf = items;
        matched
    }

    /// One target value through the link: transformed, prefiltered, the operator run (on
    /// each candidate for `multiMatch`); true when it matched.
    /// `known_miss`: the memo knows the operator does not match the value (of a negated
    /// link with one candidate), so it is not run.
    fn test_item(&mut self, r: &CRule, op: &super::ops::Op, item: &Item, known_miss: bool) -> bool {
        let mut matched = false;
        if known_miss {
            let (candidate, _) = self.prepared(&item.value, r);
            matched = self.test_at(r, op, item, candidate, true);
        } else if r.multi_match {
            let mut candidates = std::mem::take(&mut self.candidate_buf);
            self.multi_candidates(&item.value, r, &mut candidates);
            for (candidate, present) in candidates.drain(..) {
                if may_match(r, self.input_val(&candidate, item), &present) {
                    matched |= self.test_at(r, op, item, candidate, false);
                }
            }
            self.candidate_buf = candidates;
        } else {
            let (candidate, may) = self.prepared(&item.value, r);
            if may {
                matched = self.test_at(r, op, item, candidate, false);
            }
        }
        matched
    }

    /// Runs the operator on one (transformed) value, where [`Self::prepared`] or
    /// [`Self::multi_candidates`] found it; on a match, records it and runs the link's actions.
    fn test_at(
        &mut self,
        r: &CRule,
        op: &super::ops::Op,
        item: &Item,
        at: Cand,
        known_miss: bool,
    ) -> bool {
        let found = if known_miss {
            super::ops::Found::plain(false)
        } else {
            self.evaluations += 1;
            let mut expand = |m: &Macro| self.expand(m);
            op.run(self.input_val(&at, item), r.capture, &mut expand)
        };
        if let Some(e) = found.error {
            self.op_failed = true;
            if e == super::ops::OpError::Limits {
                // As ModSecurity v2: the flag its recommended rule 200005 denies on.
                let tx = self.cols.tx_mut();
                tx.insert("msc_pcre_limits_exceeded".into(), val(b"1"));
                let flag = "MSC_PCRE_LIMITS_EXCEEDED";
                self.data.scalars.insert(flag, val(b"1"));
            }
        }
        if found.matched == r.negated {
            return false;
        }
        let candidate = match at {
            Cand::Owned(v) => v,
            at => Val::clone(self.input_val(&at, item)),
        };
        self.matched(r, item, found, candidate)
    }

    /// The value an operator reads for `item`, where `at` says it is.
    fn input_val<'a>(&'a self, at: &'a Cand, item: &'a Item) -> &'a Val {
        match at {
            Cand::Item => &item.value,
            Cand::Owned(v) => v,
            Cand::Cached(i) => self.tcache.out(*i).unwrap_or(&item.value),
        }
    }

    /// A link's operator matched `candidate` (or, negated, did not): captures, the matched
    /// variables and the link's actions.
    fn matched(
        &mut self,
        r: &CRule,
        item: &Item,
        found: super::ops::Found,
        candidate: Val,
    ) -> bool {
        if r.capture && found.matched {
            self.capture(&found.captures);
        }
        let label = self.label(item);
        self.matched_vars.push((label.clone(), candidate.clone()));
        self.matched_var = (label, candidate);
        self.effects(r);
        true
    }

    /// The value after the rule's transformations (from the cache when another rule with the
    /// same chain, or a chain it begins, already transformed it), and whether the operator can
    /// match it (false when the value lacks the bytes the operator needs, or the prefilter
    /// found none of the rule's required literals).
    fn prepared(&mut self, value: &Val, r: &CRule) -> (Cand, bool) {
        let pf = r
            .pf_slot
            .and_then(|slot| Some((slot, self.waf.prefilters.get(&r.chain_id)?)));
        if r.chain_id == ROOT && pf.is_none() && r.bytes.needs().is_none() {
            return (Cand::Item, true);
        }
        // A value already at the rule's chain (the common case: rules share chains) is found
        // there; otherwise transformed from its nearest cached ancestor and kept.
        match self.tcache.fill_at(&self.waf.chains, value, r.chain_id) {
            Ok(at) => {
                let all = self.waf.literals.as_ref();
                let memo = (self.memo.get_mut(), &self.waf.memo);
                (
                    Cand::Cached(at),
                    judged(&mut self.tcache, memo, at, value, r, pf, all),
                )
            }
            // The cache is full: the value was transformed for this rule alone.
            Err(s) => {
                let may = r.bytes.needs().is_none_or(|n| n.met(&s.present))
                    && pf.is_none_or(|(slot, p)| super::prefilter::has(&p.hits(&s.out), slot));
                (Cand::Owned(s.out), may)
            }
        }
    }

    /// The values an operator sees with `multiMatch`: the original, and the value after each
    /// transformation that reported a change (one that cannot change the value's bytes is
    /// not run). They come from the transformation cache: the chain's nodes are the
    /// candidates' transformations.
    fn multi_candidates(&mut self, value: &Val, r: &CRule, out: &mut Vec<(Cand, ByteSet)>) {
        out.clear();
        let chains = &self.waf.chains;
        let present = match self.tcache.fill_at(chains, value, ROOT) {
            Ok(root) => self.tcache.present(root),
            Err(s) => s.present,
        };
        out.push((Cand::Item, present));
        for &node in r.chain_path.iter() {
            match self.tcache.fill_at(chains, value, node) {
                Ok(i) if self.tcache.changed(i) => {
                    out.push((Cand::Cached(i), self.tcache.present(i)));
                }
                Err(s) if s.changed => out.push((Cand::Owned(s.out), s.present)),
                _ => {}
            }
        }
    }

    /// A link's target values (of the targets in `mask` that may match), exclusions (the
    /// rule's, and runtime `ctl` ones for its chain starter) removed; values the link is known
    /// not to match (the value memo) are left out.
    fn targets_of(&self, r: &CRule, head: &CRule, mask: u64, out: &mut Vec<Item>) {
        for (i, t) in r.targets.iter().enumerate() {
            // A link of more than 64 targets has every bit set (see `may_match_targets`).
            if i >= 64 || mask & (1 << i) != 0 {
                // A count is of every value: none is left out of it. A negated link matches
                // the values its operator is known not to: none is left out either.
                let skip = if t.count || r.negated { None } else { r.memo };
                self.values_skipping(t, out, skip);
            }
        }
        if r.exclusions.is_empty() && !self.excluded_at_runtime(head) {
            return;
        }
        let runtime = self
            .removed_targets
            .iter()
            .filter(|(sel, _)| sel.selects_rule(head))
            .map(|(_, t)| t.as_ref());
        out.retain(|item| {
            let name = self.key_of(item).unwrap_or(b"");
            !r.exclusions
                .iter()
                .chain(runtime.clone())
                .any(|x| x.excludes(item.var, name))
        });
    }

    /// Whether a runtime target exclusion (`ctl:ruleRemoveTargetBy…`) selects the rule.
    fn excluded_at_runtime(&self, head: &CRule) -> bool {
        self.removed_targets
            .iter()
            .any(|(sel, _)| sel.selects_rule(head))
    }

    fn capture(&mut self, groups: &[Option<Vec<u8>>]) {
        const NAMES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
        let tx = self.cols.tx_mut();
        for (i, name) in NAMES.into_iter().enumerate() {
            match groups.get(i) {
                Some(Some(g)) => match tx.get_mut(name) {
                    Some(v) => *v = val(g),
                    None => {
                        tx.insert(name.into(), val(g));
                    }
                },
                _ => {
                    tx.remove(name);
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
                    self.cols.open(c);
                }
            }
        }
    }

    fn setvar(&mut self, s: &SetVar) {
        let key = match &s.key_lower {
            Some(k) => std::borrow::Cow::Borrowed(k.as_str()),
            None => String::from_utf8_lossy(&self.expand(&s.key))
                .to_ascii_lowercase()
                .into(),
        };
        let value = self.expand(&s.value);
        let scored = s.collection == "TX"
            && (key.starts_with("inbound_anomaly_score_pl")
                || key.starts_with("outbound_anomaly_score_pl"));
        let col = self.cols.open(&s.collection);
        let new = match s.op {
            SetOp::Delete => {
                col.remove(key.as_ref());
                return;
            }
            SetOp::Set => val(&value),
            SetOp::Add | SetOp::Sub => {
                let cur = col.get(key.as_ref()).map_or(0, |v| number(v));
                let n = number(&value);
                let v = if s.op == SetOp::Add {
                    cur.saturating_add(n)
                } else {
                    cur.saturating_sub(n)
                };
                if scored {
                    self.score_delta = self.score_delta.saturating_add(v - cur);
                }
                val(v.to_string().as_bytes())
            }
        };
        match col.get_mut(key.as_ref()) {
            Some(slot) => *slot = new,
            None => {
                col.insert(key.into(), new);
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
            Ctl::BodyProcessor(p) => {
                self.processor = Some(*p);
                self.data
                    .scalars
                    .insert("REQBODY_PROCESSOR", val(p.name().as_bytes()));
            }
            Ctl::RequestBodyAccess(on) => self.body_access = *on,
            Ctl::ForceRequestBodyVariable(on) => self.force_body_variable = *on,
            Ctl::Ignored => {}
        }
    }

    /// Expands a macro against this transaction.
    pub(crate) fn expand(&self, m: &Macro) -> Vec<u8> {
        m.expand_into(|name, key, out| self.macro_value(name, key, out))
    }

    /// Appends the value a macro variable names (nothing when it has none).
    fn macro_value(&self, name: &str, key: Option<&str>, out: &mut Vec<u8>) {
        if let (Some(k), Some(col)) = (key, self.cols.get(name)) {
            if let Some(v) = col.get(k) {
                out.extend_from_slice(v);
            }
            return;
        }
        match (name, key) {
            ("MATCHED_VAR", None) => out.extend_from_slice(&self.matched_var.1),
            ("MATCHED_VAR_NAME", None) => out.extend_from_slice(&self.matched_var.0),
            _ => {
                let Some(var) = super::target::static_name(name) else {
                    return;
                };
                let select = match key {
                    Some(k) => Select::Name(k.to_string()),
                    None => Select::All,
                };
                let t = Target::new(var, select, false);
                let mut items = Vec::new();
                self.values(&t, &mut items);
                if let Some(i) = items.first() {
                    out.extend_from_slice(&i.value);
                }
            }
        }
    }

    fn record(&mut self, head: &CRule, variable: Val, score: i64) {
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

/// A number as ModSecurity reads one (`atoi`: leading digits, 0 otherwise).
fn number(v: &[u8]) -> i64 {
    let s = v.trim_ascii();
    let (neg, digits) = match s.split_first() {
        Some((b'-', d)) => (true, d),
        Some((b'+', d)) => (false, d),
        _ => (false, s),
    };
    let n = digits
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if neg {
        -n
    } else {
        n
    }
}

/// A cached transformed value and whether the rule's operator can match it (its byte needs
/// met, one of its literals found by the chain's prefilter, whose hits the entry keeps for the
/// other rules of the chain); `None` when the value is not cached at the rule's chain. A
/// value the chain kept as it was (up to case) is judged on the literals found in the
/// original, searched once per value for every chain (once per distinct value across
/// transactions when the value memo holds it), instead of by each chain's automaton.
fn judged(
    cache: &mut super::chains::TransformCache,
    memo: (&mut super::memo::TxMemo, &super::memo::ValueMemo),
    at: usize,
    value: &Val,
    r: &CRule,
    pf: Option<(u32, &super::prefilter::Prefilter)>,
    all: Option<&super::prefilter::Prefilter>,
) -> bool {
    if !r.bytes.needs().is_none_or(|n| n.met(&cache.present(at))) {
        return false;
    }
    let Some((slot, p)) = pf else {
        return true;
    };
    if !cache.has_bits(at) && cache.same(at) {
        if let (Some(lit), Some(all)) = (r.lit_slot, all) {
            // The original's hits: in the value memo when the value has a row there.
            let (tx_memo, set_memo) = memo;
            let remembered = tx_memo
                .place(set_memo, value)
                .and_then(|p| tx_memo.lits(p, all))
                .map(|bits| super::prefilter::has(bits, lit));
            if let Some(found) = remembered.or_else(|| cache.original_has(value, all, lit)) {
                return found;
            }
        }
    }
    cache.chain_has(at, p, slot)
}

/// Whether a `multiMatch` candidate (with its bytes) holds what the link's operator needs.
fn may_match(r: &CRule, candidate: &[u8], present: &ByteSet) -> bool {
    r.bytes.needs().is_none_or(|n| n.met(present))
        && r.own_pf.as_ref().is_none_or(|p| p.any(candidate))
}
