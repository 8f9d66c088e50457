//! Each phase's step table: what a rule is, read without reading the rule. A phase walks
//! hundreds of rules of which most do nothing for a given request (markers, rules folded to
//! "never", rules whose targets cannot hold a match); the table lets it pass those over
//! from a few bytes each, laid out one after another, instead of from each rule's own
//! structures spread over the heap.
//!
//! A gate holds what the rule-level check of `bound` needs of a chain's first link (its
//! targets' summary slots, transformation chain, byte needs and literal slot). A closed
//! gate is exactly `may_match_targets` finding no target, so the rule is passed over with
//! the same outcome as running it: its first link matches nothing, and nothing else runs.

use super::bound::LinkCheck;
use super::carry::ByteCheck;
use super::fold::Folded;
use super::rule::CRule;
use super::target::{Kind, Slot};
use super::tx::Transaction;

/// Most targets a gate holds (a rule with more is always run).
const MAX_SLOTS: usize = 8;

/// What the phase does at one rule, before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Read the rule and run it as written.
    Run,
    /// A `SecMarker`: nothing to do.
    Marker,
    /// Folded to "never matches": nothing to do (a runtime exclusion of its targets leaves
    /// it matching nothing).
    Never,
    /// Run unless the gate (an index into the phase's gates) is closed.
    Gate(u32),
}

/// A chain's first link, as its rule-level check reads it.
#[derive(Debug)]
pub(crate) struct Gate {
    slots: [Slot; MAX_SLOTS],
    len: u8,
    bytes: ByteCheck,
    lit_slot: Option<u32>,
}

/// One phase's steps (one per rule, in order) and gates.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    pub(crate) steps: Vec<Step>,
    gates: Vec<Gate>,
}

/// The table of no rules.
pub(crate) static NONE: Steps = Steps {
    steps: Vec::new(),
    gates: Vec::new(),
};

impl Steps {
    /// The table of a phase's rules.
    pub(crate) fn of(rules: &[CRule]) -> Steps {
        let mut out = Steps::default();
        for r in rules {
            let step = if r.marker.is_some() {
                Step::Marker
            } else if let Some(f) = &r.folded {
                match f {
                    Folded::Never => Step::Never,
                    Folded::Always(..) => Step::Run,
                }
            } else if let Some(g) = Gate::of(r) {
                out.gates.push(g);
                Step::Gate(out.gates.len() as u32 - 1)
            } else {
                Step::Run
            };
            out.steps.push(step);
        }
        out
    }
}

impl Gate {
    /// The gate of a rule whose first link has a rule-level check and at most
    /// [`MAX_SLOTS`] targets, each with a summary slot (a target without one can never be
    /// ruled out, so neither can the rule).
    fn of(r: &CRule) -> Option<Gate> {
        r.op.as_ref()?;
        let check = LinkCheck::of(r)?;
        if r.targets.len() > MAX_SLOTS {
            return None;
        }
        let mut slots = [Slot {
            kind: Kind::Other,
            index: 0,
        }; MAX_SLOTS];
        for (s, t) in slots.iter_mut().zip(&r.targets) {
            *s = t.slot?;
        }
        Some(Gate {
            slots,
            len: r.targets.len() as u8,
            bytes: check.bytes.clone(),
            lit_slot: check.lit_slot,
        })
    }

    fn check(&self) -> LinkCheck<'_> {
        LinkCheck {
            bytes: &self.bytes,
            lit_slot: self.lit_slot,
        }
    }
}

impl Transaction {
    /// Whether the phase passes over the rule at `step` without reading it: a marker, or,
    /// unless a `skip` is counting rules, a rule folded to "never" or a closed gate.
    pub(crate) fn passes_over(
        &mut self,
        table: &Steps,
        step: Option<&Step>,
        counting: bool,
    ) -> bool {
        match step {
            Some(Step::Marker) => true,
            _ if counting => false,
            // A runtime exclusion only takes targets away: a rule none of whose targets can
            // match still matches nothing.
            Some(Step::Never) => true,
            Some(Step::Gate(g)) => table
                .gates
                .get(*g as usize)
                .is_some_and(|g| !self.gate_open(g)),
            Some(Step::Run) | None => false,
        }
    }

    /// Whether some target of the gate's link may yield a match. A scalar whose name an
    /// open collection also has is left to the rule itself.
    fn gate_open(&mut self, g: &Gate) -> bool {
        let check = g.check();
        let slots = g.slots.get(..usize::from(g.len)).unwrap_or_default();
        if self.cols.has_others() && slots.iter().any(|s| s.kind == Kind::Other) {
            return true;
        }
        let open = slots.iter().any(|&s| self.slot_may_match(s, &check));
        if !open {
            // As the rule would have left them, had it run and not matched.
            self.matched_vars.clear();
            self.score_delta = 0;
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::super::{RequestHead, Transaction, Waf};
    use super::Step;

    fn waf(rules: &str) -> Arc<Waf> {
        let dirs = crate::seclang::parse_str(rules, Path::new("t.conf")).expect("parses");
        Arc::new(Waf::from_directives(&dirs).unwrap_or_else(|e| panic!("{e:?}")))
    }

    fn ids(w: &Arc<Waf>, uri: &str, agent: &str) -> Vec<u64> {
        let head = RequestHead {
            method: "GET".into(),
            uri: uri.as_bytes().to_vec(),
            protocol: "HTTP/1.1".into(),
            headers: vec![(b"User-Agent".to_vec(), agent.as_bytes().to_vec())],
            ..Default::default()
        };
        let mut tx = Transaction::new(Arc::clone(w), &head);
        tx.request_headers();
        tx.matched_rules().iter().map(|m| m.id).collect()
    }

    /// Which rules get a gate, and that a closed gate decides as the rule would: a rule
    /// whose targets lack what its operator needs is passed over; one whose targets hold it
    /// runs (on any of its targets, the scalar and the collection alike).
    #[test]
    fn a_closed_gate_passes_over_what_the_rule_would_not_match() {
        let w = waf(r#"
SecMarker "START"
SecRule ARGS|REQUEST_URI|REQUEST_HEADERS:User-Agent "@rx <script" "id:1,phase:1,pass,t:none,t:urlDecodeUni,msg:'tag'"
SecRule &ARGS "@gt 5" "id:2,phase:1,pass,msg:'count'"
SecRule ARGS "@streq x" "id:3,phase:1,pass,msg:'no needs'"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES|REQUEST_COOKIES_NAMES|REQUEST_HEADERS|REQUEST_URI|REQUEST_LINE|REQUEST_BODY|XML:/* "@rx (?i)union\s+select" "id:4,phase:1,pass,msg:'many targets'"
"#);
        let steps = &w.steps(1).steps;
        assert_eq!(steps[0], Step::Marker);
        assert!(matches!(steps[1], Step::Gate(_)), "{steps:?}");
        assert_eq!(&steps[2..], &[Step::Run, Step::Run, Step::Run]);
        assert_eq!(ids(&w, "/?a=b", "Mozilla"), Vec::<u64>::new());
        assert_eq!(ids(&w, "/?a=%3Cscript", "Mozilla"), vec![1]);
        assert_eq!(ids(&w, "/p%3Cscript", "Mozilla"), vec![1]);
        assert_eq!(ids(&w, "/p%253Cscript", "Mozilla"), Vec::<u64>::new());
        assert_eq!(ids(&w, "/?a=b", "x<script"), vec![1]);
        assert_eq!(ids(&w, "/?a=x", "Mozilla"), vec![3]);
    }

    /// A scalar whose name a collection opened by `initcol` also has is read as that
    /// collection: the gate leaves such a rule to run.
    #[test]
    fn a_collection_named_like_a_scalar_opens_the_gate() {
        let w = waf(r#"
SecAction "id:1,phase:1,pass,nolog,initcol:request_uri=x,setvar:request_uri.k=<script"
SecRule REQUEST_URI "@rx <script" "id:2,phase:1,pass,msg:'read the collection'"
"#);
        assert!(matches!(w.steps(1).steps[1], Step::Gate(_)));
        assert_eq!(ids(&w, "/plain", "Mozilla"), vec![2]);
    }

    /// `Kind::is_list` (which kinds get a collection slot) agrees with the lists a
    /// transaction gives, for the kind of every variable name.
    #[test]
    fn list_kinds_are_the_kinds_with_lists() {
        let w = waf("SecAction \"id:1,phase:1,pass,nolog\"");
        let tx = Transaction::new(Arc::clone(&w), &RequestHead::default());
        for name in crate::seclang::names::VARIABLES {
            let k = super::Kind::of(name);
            assert_eq!(tx.lists(k, false).is_some(), k.is_list(), "{name}: {k:?}");
        }
    }
}
