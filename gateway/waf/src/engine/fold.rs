//! Constant folding: what a rule set decides the same way in every transaction, worked out
//! once when the rules load.
//!
//! - **The prelude.** The phase-1 rules at the start of the set that read nothing but `TX`
//!   and write nothing but `TX` (crs-setup's `SecAction`s, CRS's `&TX:x "@eq 0"` defaults)
//!   are run once on an empty transaction. Every transaction starts with the `TX` they leave
//!   and with phase 1 after them. The prelude ends before the first rule that reads anything
//!   else, or that matches and logs, blocks or skips.
//! - **Folded rules.** A later rule without a chain whose targets and operator read only
//!   `TX` variables that no live rule writes after the prelude (the paranoia-level gates
//!   `TX:DETECTION_PARANOIA_LEVEL "@lt 2"`, sampling) has one outcome in every transaction,
//!   so it is evaluated once. One that cannot match is a no-op; one that always matches
//!   and only skips is a jump. A rule proven never to match writes nothing, so its
//!   variables may become constant in turn: folding repeats until nothing changes.
//!
//! Writers are found statically: `setvar` keys (a key with macros writes every key that
//! begins with its literal text) and `capture` (`TX:0`–`TX:9`). A runtime
//! `ctl:ruleRemoveTargetBy…` that selects a folded rule makes it run normally.

use std::sync::Arc;

use super::macros::Macro;
use super::ops::Op;
use super::rule::{CRule, Disruptive, Effect};
use super::store::Col;
use super::target::Select;
use super::tx::{RequestHead, Transaction, Val};
use super::Waf;

/// What every transaction starts with.
#[derive(Debug)]
pub(crate) struct Prelude {
    /// How many phase-1 rules (markers included) the prelude ran.
    pub rules: usize,
    /// `TX` after them.
    pub tx: Col,
    /// `MATCHED_VAR_NAME` and `MATCHED_VAR` after them.
    pub matched_var: (Val, Val),
}

impl Default for Prelude {
    fn default() -> Prelude {
        Prelude {
            rules: 0,
            tx: Col::default(),
            matched_var: (Arc::from(&b""[..]), Arc::from(&b""[..])),
        }
    }
}

/// A rule's outcome in every transaction.
#[derive(Debug, Clone)]
pub(crate) enum Folded {
    /// It never matches.
    Never,
    /// It always matches, leaving these `MATCHED_VAR_NAME` and `MATCHED_VAR`.
    Always(Val, Val),
}

/// What a rule may write to `TX`.
enum Write {
    Key(String),
    Prefix(String),
}

impl Write {
    fn covers(&self, key: &str) -> bool {
        match self {
            Write::Key(k) => k == key,
            Write::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

/// The `TX` keys a macro string reads; `None` when it reads anything else (`MATCHED_VAR`
/// too, unless `matched` allows it: within the prelude it is itself constant).
fn macro_reads(m: &Macro, matched: bool, out: &mut Vec<String>) -> Option<()> {
    for (name, key) in m.vars() {
        match (name, key) {
            ("TX", Some(k)) => out.push(k.to_string()),
            ("MATCHED_VAR" | "MATCHED_VAR_NAME", None) if matched => {}
            _ => return None,
        }
    }
    Some(())
}

/// The `TX` keys a link's targets and operator read; `None` when they read anything else.
fn link_reads(l: &CRule, matched: bool) -> Option<Vec<String>> {
    let mut keys = Vec::new();
    for t in &l.targets {
        match &t.select {
            Select::Name(n) if t.var == "TX" => keys.push(n.clone()),
            _ => return None,
        }
    }
    if let Some(Op::SimpleMacro(_, m) | Op::RxMacro(m, _)) = &l.op {
        macro_reads(m, matched, &mut keys)?;
    }
    Some(keys)
}

/// Whether a link's actions touch nothing but `TX`, reading only `TX` and the match.
fn effects_pure(l: &CRule) -> bool {
    l.effects.iter().all(|e| match e {
        Effect::SetVar(s) => {
            let mut keys = Vec::new();
            s.collection == "TX"
                && macro_reads(&s.key, true, &mut keys).is_some()
                && macro_reads(&s.value, true, &mut keys).is_some()
        }
        Effect::Ctl(_) | Effect::InitCol(_) => false,
    })
}

/// Every link of a rule.
fn links(r: &CRule) -> impl Iterator<Item = &CRule> {
    std::iter::successors(Some(r), |l| l.chained.as_deref())
}

/// What a rule may write to `TX`.
fn writes(r: &CRule, out: &mut Vec<Write>) {
    for l in links(r) {
        if l.capture {
            out.extend((0..10).map(|i| Write::Key(i.to_string())));
        }
        // A regex that gives up at PCRE's limits sets the flag (see `OpError::Limits`).
        if matches!(l.op, Some(Op::Rx(_) | Op::RxMacro(..))) {
            out.push(Write::Key("msc_pcre_limits_exceeded".into()));
        }
        for e in &l.effects {
            let Effect::SetVar(s) = e else { continue };
            if s.collection != "TX" {
                continue;
            }
            out.push(match &s.key_lower {
                Some(k) => Write::Key(k.clone()),
                None => Write::Prefix(
                    String::from_utf8_lossy(s.key.literal_prefix()).to_ascii_lowercase(),
                ),
            });
        }
    }
}

/// Whether a rule that matched neither logs nor decides.
fn quiet(r: &CRule) -> bool {
    !r.log && r.disruptive == Disruptive::Pass
}

/// A transaction on an empty request, starting from `prelude`.
fn blank(waf: &Arc<Waf>, prelude: &Prelude) -> Transaction {
    let mut tx = Transaction::new(Arc::clone(waf), &RequestHead::default());
    tx.cols.tx_mut().clone_from(&prelude.tx);
    tx.matched_var = prelude.matched_var.clone();
    tx
}

/// Runs the prelude of a rule set (whose own prelude is empty).
pub(crate) fn prelude(waf: &Arc<Waf>) -> Prelude {
    let mut tx = blank(waf, &Prelude::default());
    let mut rules = 0;
    for r in waf.phase(1) {
        if r.marker.is_none() {
            let pure = links(r).all(|l| link_reads(l, true).is_some() && effects_pure(l));
            if !pure {
                break;
            }
            let before = (tx.cols.tx().clone(), tx.matched_var.clone());
            // A match that logs, decides or skips ends the prelude before the rule.
            if tx.run_rule(r) && !(quiet(r) && r.skip == 0 && r.skip_after.is_none()) {
                tx.cols.tx_mut().clone_from(&before.0);
                tx.matched_var = before.1;
                break;
            }
        }
        rules += 1;
    }
    Prelude {
        rules,
        tx: tx.cols.tx().clone(),
        matched_var: tx.matched_var.clone(),
    }
}

/// A rule after the prelude, as folding sees it.
struct Later {
    /// (phase index, rule index).
    at: (usize, usize),
    /// The `TX` keys it reads, when it is a candidate (no chain, reads only `TX`).
    reads: Option<Vec<String>>,
    writes: Vec<Write>,
    /// Whether it was evaluated already.
    tried: bool,
    folded: Option<Folded>,
}

impl Later {
    /// Whether it may write (it is not proven never to match).
    fn live(&self) -> bool {
        !matches!(self.folded, Some(Folded::Never))
    }
}

/// What folding found: the outcomes of the rules after the prelude that every transaction
/// shares, by (phase index, rule index), and the operator parameters that are constant.
pub(crate) struct Found {
    /// Rules decided at load.
    pub folded: Vec<((usize, usize), Folded)>,
    /// Links whose operator parameter reads only constant `TX` variables, by (phase index,
    /// rule index, link depth), with the parameter every transaction expands it to.
    pub constant_params: Vec<((usize, usize, usize), Vec<u8>)>,
}

/// Folds the rules after the prelude (see the module's documentation).
pub(crate) fn fold(waf: &Arc<Waf>, prelude: &Prelude) -> Found {
    let mut later = Vec::new();
    for (p, list) in waf.phases.iter().enumerate() {
        let skip = if p == 0 { prelude.rules } else { 0 };
        for (i, r) in list.iter().enumerate().skip(skip) {
            let candidate = r.chained.is_none() && r.marker.is_none() && r.op.is_some();
            let mut w = Vec::new();
            writes(r, &mut w);
            later.push(Later {
                at: (p, i),
                reads: candidate.then(|| link_reads(r, false)).flatten(),
                writes: w,
                tried: false,
                folded: None,
            });
        }
    }
    // Each round evaluates the candidates whose reads no live rule writes; a rule proven
    // never to match stops being a writer, which may make more candidates ready.
    loop {
        let live = live_writes(&later);
        let constant = |k: &String| !live.iter().any(|w| w.covers(k));
        let ready: Vec<usize> = (0..later.len())
            .filter(|&n| {
                let l = &later[n];
                !l.tried && l.reads.as_ref().is_some_and(|r| r.iter().all(constant))
            })
            .collect();
        if ready.is_empty() {
            break;
        }
        for n in ready {
            let (p, i) = later[n].at;
            later[n].folded = evaluate(waf, prelude, &waf.phases[p][i]);
            later[n].tried = true;
        }
    }
    let live = live_writes(&later);
    let constant = |k: &String| !live.iter().any(|w| w.covers(k));
    let constant_params = constant_params(waf, prelude, &constant);
    Found {
        folded: later
            .into_iter()
            .filter_map(|l| Some((l.at, l.folded?)))
            .collect(),
        constant_params,
    }
}

/// What the rules not proven never to match may write.
fn live_writes(later: &[Later]) -> Vec<&Write> {
    later
        .iter()
        .filter(|l| l.live())
        .flat_map(|l| &l.writes)
        .collect()
}

/// The links after the prelude whose operator parameter (`@within %{tx.allowed_methods}`)
/// reads only `TX` keys no live rule writes: it expands alike in every transaction, to what
/// it expands to after the prelude.
fn constant_params(
    waf: &Arc<Waf>,
    prelude: &Prelude,
    constant: &dyn Fn(&String) -> bool,
) -> Vec<((usize, usize, usize), Vec<u8>)> {
    let tx = blank(waf, prelude);
    let mut out = Vec::new();
    for (p, list) in waf.phases.iter().enumerate() {
        let skip = if p == 0 { prelude.rules } else { 0 };
        for (i, r) in list.iter().enumerate().skip(skip) {
            for (depth, l) in links(r).enumerate() {
                let Some(Op::SimpleMacro(_, m) | Op::RxMacro(m, _)) = &l.op else {
                    continue;
                };
                let mut keys = Vec::new();
                if macro_reads(m, false, &mut keys).is_some() && keys.iter().all(constant) {
                    out.push(((p, i, depth), tx.expand(m)));
                }
            }
        }
    }
    out
}

/// A candidate's outcome: `None` when it matches and does more than skip.
fn evaluate(waf: &Arc<Waf>, prelude: &Prelude, r: &CRule) -> Option<Folded> {
    let mut tx = blank(waf, prelude);
    if !tx.run_link(r, r) {
        return Some(Folded::Never);
    }
    // Only a match that does nothing but skip is the same in every transaction.
    (quiet(r) && r.effects.is_empty() && !r.capture)
        .then(|| Folded::Always(tx.matched_var.0.clone(), tx.matched_var.1.clone()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::{RequestHead, Transaction, Waf};
    use super::Folded;

    fn waf(rules: &str) -> Arc<Waf> {
        let dirs = crate::seclang::parse_str(rules, Path::new("t.conf")).expect("parses");
        Arc::new(Waf::from_directives(&dirs).unwrap_or_else(|e| panic!("{e:?}")))
    }

    fn ids(w: &Arc<Waf>, uri: &str) -> Vec<u64> {
        let head = RequestHead {
            method: "GET".into(),
            uri: uri.as_bytes().to_vec(),
            protocol: "HTTP/1.1".into(),
            ..Default::default()
        };
        let mut tx = Transaction::new(Arc::clone(w), &head);
        tx.request_headers();
        tx.request_body(b"", 0);
        tx.matched_rules().iter().map(|m| m.id).collect()
    }

    fn folded(w: &Waf) -> Vec<(u64, bool)> {
        w.phases
            .iter()
            .flatten()
            .filter_map(|r| Some((r.id, matches!(r.folded.as_ref()?, Folded::Always(..)))))
            .collect()
    }

    /// crs-setup and CRS 901 in small: settings, defaults, then a paranoia gate.
    const SETUP: &str = r#"
SecAction "id:900000,phase:1,pass,nolog,setvar:tx.pl=1"
SecRule &TX:pl "@eq 0" "id:901001,phase:1,pass,nolog,setvar:tx.pl=4"
SecRule &TX:threshold "@eq 0" "id:901002,phase:1,pass,nolog,setvar:tx.threshold=5"
SecRule ARGS:probe "@streq yes" "id:901003,phase:1,pass,log,msg:'probe'"
"#;

    const GATED: &str = r#"
SecRule TX:PL "@lt 2" "id:100,phase:2,pass,nolog,skipAfter:END-PL2"
SecRule ARGS "@contains evil" "id:101,phase:2,pass,log,msg:'pl2 rule'"
SecMarker "END-PL2"
SecRule ARGS "@contains evil" "id:102,phase:2,pass,log,msg:'pl1 rule'"
"#;

    /// A parameter reading only what no live rule writes is expanded once; one reading a
    /// variable a request can change (through a later `setvar`) stays a macro.
    #[test]
    fn constant_operator_parameters_are_fixed_at_load() {
        let w = waf(r#"
SecAction "id:1,phase:1,pass,nolog,setvar:tx.allowed=GET HEAD,setvar:tx.word=^(?:a|b)$"
SecRule REQUEST_METHOD "!@within %{tx.allowed}" "id:2,phase:1,pass,log,msg:'method'"
SecRule ARGS:w "@rx %{tx.word}" "id:3,phase:1,pass,log,msg:'word'"
SecRule ARGS:v "@streq %{tx.mutable}" "id:4,phase:1,pass,log,msg:'same'"
SecRule ARGS:m "@rx ." "id:5,phase:1,pass,nolog,setvar:tx.mutable=%{MATCHED_VAR}"
"#);
        assert_eq!(w.summary().constant_params, 2);
        let fixed = |id: u64| {
            let r = w.phases[0].iter().find(|r| r.id == id).expect("rule");
            r.op.as_ref().is_some_and(super::Op::is_pure)
        };
        assert!(fixed(2) && fixed(3) && !fixed(4));
        assert_eq!(ids(&w, "/?w=a"), vec![3]);
        assert_eq!(ids(&w, "/?w=ab"), Vec::<u64>::new());
        let head = |method: &str| RequestHead {
            method: method.into(),
            uri: b"/?v=&m=x".to_vec(),
            protocol: "HTTP/1.1".into(),
            ..Default::default()
        };
        for (method, want) in [("GET", vec![4]), ("DELETE", vec![2, 4])] {
            let mut tx = Transaction::new(Arc::clone(&w), &head(method));
            tx.request_headers();
            let got: Vec<u64> = tx.matched_rules().iter().map(|m| m.id).collect();
            assert_eq!(got, want, "{method}");
        }
    }

    #[test]
    fn the_prelude_runs_once_and_every_transaction_starts_after_it() {
        let w = waf(SETUP);
        assert_eq!(
            w.prelude.rules, 3,
            "settings and defaults, not the ARGS rule"
        );
        let head = RequestHead::default();
        let tx = Transaction::new(Arc::clone(&w), &head);
        assert_eq!(tx.tx_var("pl"), Some(&b"1"[..]));
        assert_eq!(tx.tx_var("threshold"), Some(&b"5"[..]));
        assert_eq!(ids(&w, "/?probe=yes"), vec![901003]);
    }

    #[test]
    fn a_rule_that_logs_or_reads_the_request_ends_the_prelude() {
        let w = waf(r#"SecAction "id:1,phase:1,pass,log,setvar:tx.a=1"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.b=1""#);
        assert_eq!(w.prelude.rules, 0);
        assert_eq!(ids(&w, "/"), vec![1]);
    }

    #[test]
    fn a_gate_on_a_constant_is_folded_into_a_jump() {
        let w = waf(&(SETUP.to_string() + GATED));
        assert_eq!(folded(&w), vec![(100, true)]);
        assert_eq!(ids(&w, "/?q=evil"), vec![102]);
    }

    #[test]
    fn a_variable_a_request_can_change_is_not_folded() {
        let writer = r#"SecRule ARGS:level "@streq 2" "id:50,phase:1,pass,nolog,setvar:tx.pl=2""#;
        let w = waf(&format!("{SETUP}{writer}\n{GATED}"));
        assert!(folded(&w).is_empty());
        assert_eq!(ids(&w, "/?q=evil"), vec![102]);
        assert_eq!(ids(&w, "/?q=evil&level=2"), vec![101, 102]);
        // A key written with a macro covers every key it can spell.
        let dynamic = r#"SecRule ARGS:k "@unconditionalMatch" "id:51,phase:1,pass,nolog,setvar:'tx.p%{MATCHED_VAR}=2'""#;
        let w = waf(&format!("{SETUP}{dynamic}\n{GATED}"));
        assert!(folded(&w).is_empty());
        assert_eq!(ids(&w, "/?q=evil&k=l"), vec![101, 102]);
    }

    #[test]
    fn writers_that_never_match_do_not_count() {
        // 60 can never match (its variable is constant and below 5), so `tx.pl` stays
        // constant and the gate is folded too.
        let never = r#"SecRule TX:threshold "@gt 9" "id:60,phase:1,pass,nolog,setvar:tx.pl=3""#;
        let w = waf(&format!("{SETUP}{never}\n{GATED}"));
        assert_eq!(folded(&w), vec![(60, false), (100, true)]);
        assert_eq!(ids(&w, "/?q=evil"), vec![102]);
    }

    #[test]
    fn a_runtime_target_exclusion_makes_a_folded_rule_run() {
        let excl = r#"SecRule ARGS:off "@streq 1" "id:70,phase:1,pass,nolog,ctl:ruleRemoveTargetById=100;TX:pl""#;
        let w = waf(&format!("{SETUP}{excl}\n{GATED}"));
        assert_eq!(folded(&w), vec![(100, true)]);
        assert_eq!(ids(&w, "/?q=evil"), vec![102]);
        // Without its target the gate has nothing to match: the PL2 rule runs.
        assert_eq!(ids(&w, "/?q=evil&off=1"), vec![101, 102]);
    }
}
