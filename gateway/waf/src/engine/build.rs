//! Building a [`Waf`] from directives: default actions per phase, rules and chains compiled,
//! markers placed in every phase, and the load-time exceptions (`SecRuleRemove…`,
//! `SecRuleUpdate…`) applied to the rules written before them, as ModSecurity does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::actions::{Ctl, RuleSel};
use super::prefilter::Prefilter;
use super::rule::{CRule, Disruptive, Effect, Source};
use super::settings::Settings;
use super::target::Target;
use super::Waf;
use crate::seclang::{self, Action, Directive, DirectiveKind, Rule};

/// A rule file problem, named by file and line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct LoadError {
    /// `file:line`.
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// What a rule set holds.
#[derive(Debug, Clone, Default)]
pub struct LoadSummary {
    /// Rules (chain starters and `SecAction`s).
    pub rules: usize,
    /// Chained links after their starters.
    pub chained: usize,
    /// `SecMarker`s.
    pub markers: usize,
    /// Rules removed by `SecRuleRemove…`.
    pub removed: usize,
    /// Directives accepted with no effect here (`file:line name`).
    pub ignored: Vec<String>,
    /// Phase-1 rules run once at load, whose `TX` every transaction starts with.
    pub prelude: usize,
    /// Later rules whose outcome is the same in every transaction, decided at load.
    pub folded: usize,
    /// Operator parameters with macros that expand alike in every transaction, expanded at
    /// load.
    pub constant_params: usize,
}

/// A rule's source, kept so `SecRuleUpdateActionById` can recompile it.
struct Kept {
    rule: Rule,
    dir: PathBuf,
    origin: String,
}

#[derive(Default)]
struct Builder {
    settings: Settings,
    /// Transformation chains.
    chains: super::chains::Chains,
    defaults: [Vec<Action>; 5],
    phases: [Vec<CRule>; 5],
    kept: Vec<(u64, Kept)>,
    summary: LoadSummary,
    errors: Vec<LoadError>,
}

impl Waf {
    /// Reads and compiles rule files in order (`Include` inside files is followed); any
    /// problem refuses the whole set.
    pub fn load(files: &[PathBuf]) -> Result<Waf, Vec<LoadError>> {
        let (waf, errors) = Waf::load_lenient(files);
        if errors.is_empty() {
            Ok(waf)
        } else {
            Err(errors)
        }
    }

    /// Reads and compiles rule files, skipping what has errors (a file that does not parse,
    /// a rule that does not compile) and returning those errors beside the rule set.
    pub fn load_lenient(files: &[PathBuf]) -> (Waf, Vec<LoadError>) {
        let mut dirs = Vec::new();
        let mut errors = Vec::new();
        for f in files {
            match seclang::parse_file(f) {
                Ok(d) => dirs.extend(d),
                Err(e) => errors.push(LoadError {
                    origin: format!("{}:{}", e.file.display(), e.line),
                    message: e.message,
                }),
            }
        }
        let (waf, more) = Waf::compile(&dirs);
        errors.extend(more);
        (waf, errors)
    }

    /// Compiles parsed directives; every problem is returned, each with its file and line.
    pub fn from_directives(dirs: &[Directive]) -> Result<Waf, Vec<LoadError>> {
        let (waf, errors) = Waf::compile(dirs);
        if errors.is_empty() {
            Ok(waf)
        } else {
            Err(errors)
        }
    }

    /// Compiles what compiles; the directives with errors are skipped and returned. What
    /// every transaction would decide alike is worked out here (`fold`).
    pub fn compile(dirs: &[Directive]) -> (Waf, Vec<LoadError>) {
        let (waf, errors) = Waf::compile_unfolded(dirs);
        let waf = Arc::new(waf);
        let prelude = super::fold::prelude(&waf);
        let found = super::fold::fold(&waf, &prelude);
        // The transactions that ran the rules are gone: the set has one owner again.
        let Some(mut waf) = Arc::into_inner(waf) else {
            return Waf::compile_unfolded(dirs);
        };
        waf.summary.folded = found.folded.len();
        for ((p, i), f) in found.folded {
            waf.phases[p][i].folded = Some(f);
        }
        waf.fix_params(found.constant_params);
        resolve_selections(&waf.phases);
        waf.steps = waf.phases.each_ref().map(|p| super::gate::Steps::of(p));
        waf.summary.prelude = prelude.rules;
        waf.prelude = prelude;
        (waf, errors)
    }

    /// Gives the links whose operator parameter is constant that parameter: their operator
    /// then reads nothing but its input and gets a slot in the value memo.
    fn fix_params(&mut self, params: Vec<((usize, usize, usize), Vec<u8>)>) {
        for ((p, i, depth), value) in params {
            let mut link = Some(&mut self.phases[p][i]);
            for _ in 0..depth {
                link = link.and_then(|l| l.chained.as_deref_mut());
            }
            let Some(l) = link else { continue };
            if let Some(op) = l.op.as_ref().and_then(|op| op.with_param(&value)) {
                l.op = Some(op);
                self.summary.constant_params += 1;
            }
        }
        let slots = assign_memo_slots(&mut self.phases);
        let words = self.literals.as_ref().map_or(0, Prefilter::words);
        self.memo = super::memo::ValueMemo::new(slots, words, super::memo::DEFAULT_BYTES);
    }

    fn compile_unfolded(dirs: &[Directive]) -> (Waf, Vec<LoadError>) {
        let mut b = Builder::default();
        for d in dirs {
            b.directive(d);
        }
        let (prefilters, literals) = assign_prefilters(&mut b.phases);
        let slots = assign_memo_slots(&mut b.phases);
        for (i, r) in b.phases.iter_mut().flatten().enumerate() {
            r.index = i as u32;
        }
        b.phases.iter_mut().for_each(|p| resolve_skips(p));
        let steps = b.phases.each_ref().map(|p| super::gate::Steps::of(p));
        let waf = Waf {
            settings: b.settings,
            phases: b.phases,
            summary: b.summary,
            prefilters,
            chains: b.chains,
            prelude: Default::default(),
            caches: Default::default(),
            memo: super::memo::ValueMemo::new(
                slots,
                literals.as_ref().map_or(0, Prefilter::words),
                super::memo::DEFAULT_BYTES,
            ),
            literals,
            steps,
        };
        (waf, b.errors)
    }
}

/// Each `skipAfter`'s landing place: the first marker of that name after the rule in its
/// phase, or the first rule whose id the name is (ModSecurity accepts either).
fn resolve_skips(rules: &mut [CRule]) {
    for i in 0..rules.len() {
        let Some(m) = rules[i].skip_after.as_deref() else {
            continue;
        };
        let id: Option<u64> = m.parse().ok();
        let lands = |r: &CRule| match &r.marker {
            Some(name) => name == m,
            None => Some(r.id) == id,
        };
        let to = rules[i + 1..].iter().position(lands);
        rules[i].skip_to = to.map_or(u32::MAX, |j| (i + 1 + j) as u32);
    }
}

fn origin(d: &Directive) -> String {
    format!("{}:{}", d.file.display(), d.line)
}

impl Builder {
    fn fail(&mut self, d: &Directive, message: String) {
        self.errors.push(LoadError {
            origin: origin(d),
            message,
        });
    }

    fn directive(&mut self, d: &Directive) {
        let dir = d.file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let result = match &d.kind {
            DirectiveKind::Rule(r) => self.rule(r, &dir, origin(d)),
            DirectiveKind::Action(actions) => self.action(actions, &dir, origin(d)),
            DirectiveKind::Marker(name) => {
                self.marker(name, origin(d));
                Ok(())
            }
            DirectiveKind::DefaultAction(actions) => self.default_action(actions),
            DirectiveKind::RemoveById(ids) => RuleSel::ids(&ids.join(" ")).map(|s| self.remove(&s)),
            DirectiveKind::RemoveByTag(tag) => RuleSel::tag(tag).map(|s| self.remove(&s)),
            DirectiveKind::RemoveByMsg(msg) => self.remove_by_msg(msg),
            DirectiveKind::UpdateTargetById { ids, targets, .. } => {
                RuleSel::ids(ids).and_then(|s| self.update_targets(&s, targets))
            }
            DirectiveKind::UpdateTargetByTag {
                pattern,
                by_msg: false,
                targets,
            } => RuleSel::tag(pattern).and_then(|s| self.update_targets(&s, targets)),
            DirectiveKind::UpdateTargetByTag { by_msg: true, .. } => {
                Err("SecRuleUpdateTargetByMsg is not supported; use …ById or …ByTag".into())
            }
            DirectiveKind::UpdateActionById { id, actions } => self.update_actions(id, actions),
            DirectiveKind::Setting { name, args } => match self.settings.apply(name, args) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.summary.ignored.push(format!("{} {name}", origin(d)));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            self.fail(d, e);
        }
    }

    /// The phase a rule names (2 when it names none).
    fn phase_of(actions: &[Action]) -> u8 {
        actions
            .iter()
            .rev()
            .find(|a| a.name == "phase")
            .and_then(|a| a.value.as_deref())
            .map_or(2, |v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "request" => 1,
                "3" => 3,
                "4" | "response" => 4,
                "5" | "logging" => 5,
                _ => 2,
            })
    }

    fn compile_chain(&self, r: &Rule, dir: &Path, origin: &str) -> Result<CRule, String> {
        let phase = Builder::phase_of(&r.actions);
        let defaults = &self.defaults[usize::from(phase - 1)];
        let mut actions = defaults.clone();
        actions.extend(r.actions.iter().cloned());
        let mut head = CRule::compile(Source {
            variables: &r.variables,
            operator: Some(&r.operator),
            actions,
            dir,
            origin: origin.to_string(),
        })?;
        head.phase = phase;
        if head.disruptive == Disruptive::Block {
            head.disruptive = default_disruptive(defaults);
        }
        let mut links = Vec::new();
        let mut link = &r.chained;
        while let Some(next) = link {
            let file = origin.rsplit_once(':').map_or(origin, |o| o.0);
            let mut c = CRule::compile(Source {
                variables: &next.variables,
                operator: Some(&next.operator),
                actions: next.actions.clone(),
                dir,
                origin: format!("{file}:{}", next.line),
            })?;
            c.phase = phase;
            links.push(c);
            link = &next.chained;
        }
        head.chained = links.into_iter().rev().fold(None, |tail, mut c| {
            c.chained = tail;
            Some(Box::new(c))
        });
        Ok(head)
    }

    /// Gives every link of a chain the id of its transformation chain.
    fn intern(&mut self, r: &mut CRule) {
        r.chain_id = self.chains.intern(&r.transforms);
        if r.multi_match {
            r.chain_path = super::chains::path(&self.chains, r.chain_id).into();
        }
        if let Some(c) = r.chained.as_mut() {
            self.intern(c);
        }
    }

    fn rule(&mut self, r: &Rule, dir: &Path, origin: String) -> Result<(), String> {
        let mut c = self.compile_chain(r, dir, &origin)?;
        self.intern(&mut c);
        if c.id == 0 {
            return Err("rule has no id".into());
        }
        self.summary.rules += 1;
        let mut n = &c.chained;
        while let Some(next) = n {
            self.summary.chained += 1;
            n = &next.chained;
        }
        self.kept.push((
            c.id,
            Kept {
                rule: r.clone(),
                dir: dir.to_path_buf(),
                origin,
            },
        ));
        self.phases[usize::from(c.phase - 1)].push(c);
        Ok(())
    }

    fn action(&mut self, actions: &[Action], dir: &Path, origin: String) -> Result<(), String> {
        let phase = Builder::phase_of(actions);
        let defaults = &self.defaults[usize::from(phase - 1)];
        let mut all = defaults.clone();
        all.extend(actions.iter().cloned());
        let mut c = CRule::compile(Source {
            variables: &[],
            operator: None,
            actions: all,
            dir,
            origin,
        })?;
        c.phase = phase;
        if c.disruptive == Disruptive::Block {
            c.disruptive = default_disruptive(defaults);
        }
        if c.id == 0 {
            return Err("SecAction has no id".into());
        }
        self.summary.rules += 1;
        self.phases[usize::from(phase - 1)].push(c);
        Ok(())
    }

    fn marker(&mut self, name: &str, origin: String) {
        self.summary.markers += 1;
        for p in 0..5 {
            let mut m = CRule::empty(origin.clone());
            m.marker = Some(name.trim().to_string());
            m.phase = p as u8 + 1;
            self.phases[p].push(m);
        }
    }

    fn default_action(&mut self, actions: &[Action]) -> Result<(), String> {
        let phase = Builder::phase_of(actions);
        if !actions.iter().any(|a| a.name == "phase") {
            return Err("SecDefaultAction must name a phase".into());
        }
        let kept: Vec<Action> = actions
            .iter()
            .filter(|a| a.name != "phase")
            .cloned()
            .collect();
        self.defaults[usize::from(phase - 1)] = kept;
        Ok(())
    }

    fn remove(&mut self, sel: &RuleSel) {
        for p in &mut self.phases {
            let before = p.len();
            p.retain(|r| r.marker.is_some() || !sel.selects(r.id, &r.tags));
            self.summary.removed += before - p.len();
        }
    }

    fn remove_by_msg(&mut self, pattern: &str) -> Result<(), String> {
        let rx = crate::rx::Rx::compile_with(pattern, crate::rx::RxOptions::PLAIN)
            .map_err(|e| format!("{pattern:?}: {e}"))?;
        for p in &mut self.phases {
            let before = p.len();
            p.retain(|r| {
                let msg = r.msg.as_ref().map(|m| m.literal()).unwrap_or_default();
                r.marker.is_some() || r.msg.is_none() || !rx.is_match(&msg).unwrap_or(false)
            });
            self.summary.removed += before - p.len();
        }
        Ok(())
    }

    fn update_targets(
        &mut self,
        sel: &RuleSel,
        targets: &[seclang::Variable],
    ) -> Result<(), String> {
        for p in &mut self.phases {
            for r in p.iter_mut().filter(|r| r.marker.is_none()) {
                if !sel.selects(r.id, &r.tags) {
                    continue;
                }
                for v in targets {
                    let t = Target::compile(v)?;
                    if v.exclude {
                        r.exclusions.push(t);
                    } else {
                        r.targets.push(t);
                    }
                }
            }
        }
        Ok(())
    }

    fn update_actions(&mut self, id: &str, actions: &[Action]) -> Result<(), String> {
        let id: u64 = id
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .map_err(|_| format!("rule id {id:?}"))?;
        let Some((_, kept)) = self.kept.iter().rev().find(|(k, _)| *k == id) else {
            return Err(format!(
                "no rule with id {id} is defined before this update"
            ));
        };
        let mut rule = kept.rule.clone();
        for a in actions {
            if a.name != "t" {
                rule.actions.retain(|x| x.name != a.name);
            }
            rule.actions.push(a.clone());
        }
        let (dir, origin) = (kept.dir.clone(), kept.origin.clone());
        let mut c = self.compile_chain(&rule, &dir, &origin)?;
        self.intern(&mut c);
        let mut compiled = Some(c);
        for p in &mut self.phases {
            if let Some(i) = p.iter().position(|r| r.marker.is_none() && r.id == id) {
                match compiled.take() {
                    Some(c) if c.phase == p[i].phase => p[i] = c,
                    other => {
                        p.remove(i);
                        compiled = other;
                    }
                }
            }
        }
        if let Some(c) = compiled {
            self.phases[usize::from(c.phase - 1)].push(c);
        }
        Ok(())
    }
}

/// The disruptive action `block` stands for: the phase default's (pass when it has none).
fn default_disruptive(defaults: &[Action]) -> Disruptive {
    defaults
        .iter()
        .rev()
        .find_map(|a| match a.name {
            "deny" => Some(Disruptive::Deny),
            "drop" => Some(Disruptive::Drop),
            "pass" => Some(Disruptive::Pass),
            "redirect" => Some(Disruptive::Redirect),
            _ => None,
        })
        .unwrap_or(Disruptive::Pass)
}

/// Works out which rules each runtime selection (`ctl:ruleRemove…`) selects.
fn resolve_selections(phases: &[Vec<CRule>; 5]) {
    let rules: Vec<&CRule> = phases.iter().flatten().collect();
    let links = rules
        .iter()
        .flat_map(|r| std::iter::successors(Some(*r), |l| l.chained.as_deref()));
    for l in links {
        for e in &l.effects {
            if let Effect::Ctl(Ctl::RemoveRules(s) | Ctl::RemoveTargets(s, _)) = e {
                s.resolve(&rules);
            }
        }
    }
}

/// Literals per transformation chain, and of every link.
#[derive(Default)]
struct Groups {
    by_chain: std::collections::HashMap<u32, Vec<Vec<Vec<u8>>>>,
    all: Vec<Vec<Vec<u8>>>,
}

/// Literal prefilters by transformation chain id.
type Prefilters = std::collections::HashMap<u32, Prefilter>;

/// Gives each link whose operator has required literals a slot in its transformation
/// chain's prefilter and in the automaton of every link's literals, and its byte needs; builds
/// the automata. Negated links are left out (they match on absence); a `multiMatch` link gets
/// a prefilter of its own (it tests values the chain's final value does not stand for).
fn assign_prefilters(phases: &mut [Vec<CRule>; 5]) -> (Prefilters, Option<Prefilter>) {
    let mut groups = Groups::default();
    for p in phases.iter_mut() {
        for r in p.iter_mut() {
            let mut link = Some(r);
            while let Some(l) = link {
                if !l.negated {
                    filter_link(l, &mut groups);
                }
                link = l.chained.as_deref_mut();
            }
        }
    }
    let by_chain = groups
        .by_chain
        .into_iter()
        .filter_map(|(chain, rules)| Some((chain, Prefilter::build(&rules)?)))
        .collect();
    (by_chain, Prefilter::build_compact(&groups.all))
}

/// Gives each link whose operator reads nothing but its input a slot in the value memo;
/// how many there are.
fn assign_memo_slots(phases: &mut [Vec<CRule>; 5]) -> usize {
    let mut n = 0u32;
    for r in phases.iter_mut().flatten() {
        let mut link = Some(r);
        while let Some(l) = link {
            if l.op.as_ref().is_some_and(super::ops::Op::is_pure) {
                l.memo = Some(n);
                n += 1;
            }
            link = l.chained.as_deref_mut();
        }
    }
    n as usize
}

/// A link's byte needs, and its literals: in the automaton of all, and in its chain's group
/// or, for `multiMatch`, in an automaton of its own.
fn filter_link(l: &mut CRule, groups: &mut Groups) {
    let Some(op) = &l.op else { return };
    l.bytes = super::carry::ByteCheck::of(&l.transforms, op.needs());
    let Some(lits) = op.literals() else { return };
    l.lit_slot = Some(groups.all.len() as u32);
    groups.all.push(lits.clone());
    if l.multi_match {
        l.own_pf = Prefilter::build(&[lits]);
    } else {
        let g = groups.by_chain.entry(l.chain_id).or_default();
        l.pf_slot = Some(g.len() as u32);
        g.push(lits);
    }
}
