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
    memo: Option<u32>,
    /// The gate's slots as one of the phase's distinct lists.
    list: u32,
}

/// One phase's steps (one per rule, in order) and gates.
#[derive(Debug, Default)]
pub(crate) struct Steps {
    pub(crate) steps: Vec<Step>,
    gates: Vec<Gate>,
    /// The distinct slot lists of the gates (CRS's rules share a few dozen).
    lists: Vec<Box<[Slot]>>,
}

/// The table of no rules.
pub(crate) static NONE: Steps = Steps {
    steps: Vec::new(),
    gates: Vec::new(),
    lists: Vec::new(),
};

/// Per slot list of the running phase, the pure links the value memo knows match no value
/// of any of the list's sources (a source without values counts as known): a gate whose
/// link is among them is closed by one bit. Worked out when a gate first asks, and again
/// when the phase, the summaries or a scalar changed since.
#[derive(Debug, Default)]
pub(crate) struct ClosedLists {
    /// Phase and scalar writes the words were worked out at.
    key: (u8, u32),
    /// Words per list (as many as the memo's rows have).
    words: usize,
    /// `words` words per list.
    bits: Vec<u64>,
    /// Whether a list's words were worked out.
    done: Vec<bool>,
    /// Room to work a list's words out in.
    scratch: Vec<u64>,
}

impl ClosedLists {
    /// Forgets what was worked out (the summaries changed).
    pub(crate) fn forget(&mut self) {
        self.done.fill(false);
    }
}

impl Steps {
    /// The table of a phase's rules.
    pub(crate) fn of(rules: &[CRule]) -> Steps {
        let mut out = Steps::default();
        let mut lists = std::collections::HashMap::new();
        for r in rules {
            let step = if r.marker.is_some() {
                Step::Marker
            } else if let Some(f) = &r.folded {
                match f {
                    Folded::Never => Step::Never,
                    Folded::Always(..) => Step::Run,
                }
            } else if let Some(mut g) = Gate::of(r) {
                let slots: Box<[Slot]> = g.slots().into();
                g.list = *lists.entry(slots.clone()).or_insert_with(|| {
                    out.lists.push(slots);
                    out.lists.len() as u32 - 1
                });
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
            memo: check.memo,
            list: 0,
        })
    }

    fn slots(&self) -> &[Slot] {
        self.slots.get(..usize::from(self.len)).unwrap_or_default()
    }

    fn check(&self) -> LinkCheck<'_> {
        LinkCheck {
            bytes: &self.bytes,
            lit_slot: self.lit_slot,
            memo: self.memo,
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
                .is_some_and(|g| !self.gate_open(table, g)),
            Some(Step::Run) | None => false,
        }
    }

    /// Whether some target of the gate's link may yield a match. A scalar whose name an
    /// open collection also has is left to the rule itself.
    fn gate_open(&mut self, table: &Steps, g: &Gate) -> bool {
        let check = g.check();
        let slots = g.slots();
        if self.cols.has_others() && slots.iter().any(|s| s.kind == Kind::Other) {
            return true;
        }
        let known = g.memo.is_some_and(|m| self.list_closed(table, g.list, m));
        let open = !known && slots.iter().any(|&s| self.slot_may_match(s, &check));
        if !open {
            // As the rule would have left them, had it run and not matched.
            self.matched_vars.clear();
            self.score_delta = 0;
        }
        open
    }
}

impl Transaction {
    /// Whether the memo knows that the pure link of memo slot `m` matches no value of the
    /// sources of `table`'s slot list `list` (see [`ClosedLists`]).
    fn list_closed(&mut self, table: &Steps, list: u32, m: u32) -> bool {
        let key = (self.phase, self.data.scalars.writes());
        let c = &mut self.closed;
        if c.key != key || c.done.len() != table.lists.len() {
            c.key = key;
            c.words = super::memo::TxMemo::words(&self.waf.memo);
            c.done.clear();
            c.done.resize(table.lists.len(), false);
            c.bits.resize(table.lists.len() * c.words, 0);
        }
        let (l, words) = (list as usize, self.closed.words);
        if !self.closed.done.get(l).copied().unwrap_or(true) {
            let slots = table.lists.get(l).map_or(&[][..], |s| &s[..]);
            let mut acc = std::mem::take(&mut self.closed.scratch);
            acc.clear();
            acc.resize(words, u64::MAX);
            for &slot in slots {
                self.and_known_misses(slot, &mut acc);
            }
            if let Some(out) = self.closed.bits.get_mut(l * words..(l + 1) * words) {
                out.copy_from_slice(&acc);
            }
            self.closed.scratch = acc;
            self.closed.done[l] = true;
        }
        let word = l * words + m as usize / 64;
        self.closed
            .bits
            .get(word)
            .is_some_and(|w| w & (1 << (m % 64)) != 0)
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

    /// A GET of `uri` from `agent`, through phase 1.
    fn get(w: &Arc<Waf>, uri: &str, agent: &str) -> Transaction {
        let head = RequestHead {
            method: "GET".into(),
            uri: uri.as_bytes().to_vec(),
            protocol: "HTTP/1.1".into(),
            headers: vec![(b"User-Agent".to_vec(), agent.as_bytes().to_vec())],
            ..Default::default()
        };
        let mut tx = Transaction::new(Arc::clone(w), &head);
        tx.request_headers();
        tx
    }

    fn ids(w: &Arc<Waf>, uri: &str, agent: &str) -> Vec<u64> {
        let tx = get(w, uri, agent);
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
        // A count has no slot; a pure link without needs is gated by the value memo; a link
        // of more than eight targets is always run.
        assert_eq!(&steps[2..3], &[Step::Run]);
        assert!(matches!(steps[3], Step::Gate(_)), "{steps:?}");
        assert_eq!(&steps[4..], &[Step::Run]);
        assert_eq!(ids(&w, "/?a=b", "Mozilla"), Vec::<u64>::new());
        assert_eq!(ids(&w, "/?a=%3Cscript", "Mozilla"), vec![1]);
        assert_eq!(ids(&w, "/p%3Cscript", "Mozilla"), vec![1]);
        assert_eq!(ids(&w, "/p%253Cscript", "Mozilla"), Vec::<u64>::new());
        assert_eq!(ids(&w, "/?a=b", "x<script"), vec![1]);
        assert_eq!(ids(&w, "/?a=x", "Mozilla"), vec![3]);
    }

    /// What the value memo knows closes a gate in later transactions, and only on the
    /// values it knows: a link that ran and missed on every value of its targets (or that
    /// the byte checks ruled out on them) is not run again on the same values; a new value
    /// in the same collection, or a changed header, opens the gate again.
    #[test]
    fn the_memo_closes_gates_only_on_values_it_knows() {
        let w = waf(r#"
SecRule ARGS|REQUEST_HEADERS:User-Agent "@rx <script" "id:1,phase:1,pass,t:none,t:urlDecodeUni,msg:'tag'"
SecRule ARGS "@streq x" "id:3,phase:1,pass,msg:'no needs'"
"#);
        let evaluations = |uri: &str, agent: &str| get(&w, uri, agent).evaluations();
        // Rule 3 runs on both arguments once; rule 1 is ruled out by its byte needs.
        assert_eq!(evaluations("/?a=b&c=d", "Mozilla"), 2);
        assert_eq!(evaluations("/?a=b&c=d", "Mozilla"), 0);
        assert_eq!(evaluations("/?c=d&a=b", "Mozilla"), 0);
        // Both gates are closed by the memo alone: rule 3's from its runs, rule 1's from
        // what its byte checks found in the first transaction.
        let closed = |uri: &str, step: usize| {
            let table = w.steps(1);
            let Step::Gate(g) = table.steps[step] else {
                panic!("{:?}", table.steps)
            };
            let gate = &table.gates[g as usize];
            let head = RequestHead {
                uri: uri.as_bytes().to_vec(),
                headers: vec![(b"User-Agent".to_vec(), b"Mozilla".to_vec())],
                ..Default::default()
            };
            let mut tx = Transaction::new(Arc::clone(&w), &head);
            tx.phase = 1;
            tx.list_closed(table, gate.list, gate.memo.expect("a memo slot"))
        };
        assert!(closed("/?a=b&c=d", 0));
        assert!(closed("/?a=b&c=d", 1));
        assert!(!closed("/?a=b&c=e", 0));
        assert!(!closed("/?a=b&c=e", 1));
        // One value the memo has not seen: the gate opens, the known value is left out.
        assert_eq!(evaluations("/?a=b&c=e", "Mozilla"), 1);
        assert_eq!(ids(&w, "/?a=b&c=d&e=%3Cscript", "Mozilla"), vec![1]);
        assert_eq!(ids(&w, "/?a=b&c=x", "Mozilla"), vec![3]);
        assert_eq!(ids(&w, "/?a=b&c=d", "x<script"), vec![1]);
        assert_eq!(ids(&w, "/?a=b&c=d", "Mozilla"), Vec::<u64>::new());
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
