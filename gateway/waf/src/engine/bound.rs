//! Rule-level checks: before reading a link's values one by one, what its targets hold as a
//! whole. Each collection (and scalar) is summarised when first asked, and again only after
//! the request body or the response added values: the union of its values' bytes, and which
//! links' literals occur in its untransformed values.
//!
//! For each target of a link:
//! - Bytes: the union, carried through the link's transformation chain with
//!   [`needs::bound`], must meet the link's byte needs.
//! - Literals: when every transformation of the chain [`needs::keeps`] values made of those
//!   bytes, the transformed values are the untransformed ones (up to case), so one of the
//!   link's literals must occur in some untransformed value.
//!
//! - Memo: when the link is pure and not negated, the value memo may know that it matches
//!   none of the source's values (each value's row, ANDed once per summary). When the bytes
//!   or literals rule a source out, that too is a fact about each of its values' bytes: it
//!   is noted in their rows when the summaries go (once per row, not per check), so a later
//!   transaction with the same values needs only the memo's bit.
//!
//! When any of these fails, none of the target's values can match, and they are not read (a
//! form's 72 fields are not transformed because the `User-Agent`, another target of the
//! same rule, holds a `/`). When no target is left, the link does not match. A
//! benign form of 72 fields meets few of CRS's byte needs (`<`, `;`, a quote) and holds few of
//! its keywords, so most rules end here.

use std::sync::Arc;

use super::carry::ByteCheck;
use super::needs::ByteSet;
use super::rule::CRule;
use super::target::{Kind, Slot, Target};
use super::tx::{Transaction, Val};

/// How many kinds of variable there are (slots of summaries by kind come first).
const KINDS: usize = Kind::Other as usize + 1;

/// What one source of values holds.
#[derive(Debug)]
pub(crate) struct Summary {
    source: Source,
    /// A scalar's value, held so that its buffer's address is not reused while summarised.
    pin: Option<Val>,
    bytes: ByteSet,
    /// Whether the source holds any value.
    any: bool,
    /// Links whose literals occur in some value (computed when first asked).
    literals: Option<Vec<u64>>,
    /// Pure links known not to match any of the values (see `memo`): the values' memo rows
    /// ANDed when first asked, and the misses this transaction's checks found since; empty
    /// when some value has no row.
    misses: Option<Box<[u64]>>,
    /// Where the values' rows are in the transaction's memo table.
    places: Vec<u32>,
    /// Whether checks found misses the rows do not hold yet.
    found: bool,
}

impl Summary {
    /// Notes that the link of memo slot `m` matches none of the values (when they all have
    /// rows).
    fn note(&mut self, m: u32) {
        if let Some(w) = self
            .misses
            .as_deref_mut()
            .and_then(|w| w.get_mut(m as usize / 64))
        {
            *w |= 1 << (m % 64);
            self.found = true;
        }
    }
}

/// A collection, or a scalar by its value's buffer (a scalar a rule replaces is another;
/// absent scalars share 0, the empty summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Kind(Kind),
    Scalar(usize),
}

/// What a rule-level check needs of a link: its byte check (needs through the chain),
/// literal slot and memo slot (from the link itself, or from its phase's gate table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkCheck<'a> {
    pub(crate) bytes: &'a ByteCheck,
    pub(crate) lit_slot: Option<u32>,
    /// The link's slot in the value memo when a miss known on every value of a target
    /// rules the target out (a pure link, not negated: a negated one matches what its
    /// operator misses).
    pub(crate) memo: Option<u32>,
}

impl<'a> LinkCheck<'a> {
    /// The check of a link; `None` when the link has no needs, literals or memo slot
    /// (nothing rules a target out).
    pub(crate) fn of(r: &'a CRule) -> Option<LinkCheck<'a>> {
        let memo = r.memo.filter(|_| !r.negated);
        (r.bytes.needs().is_some() || r.lit_slot.is_some() || memo.is_some()).then_some(LinkCheck {
            bytes: &r.bytes,
            lit_slot: r.lit_slot,
            memo,
        })
    }
}

impl Transaction {
    /// Which of the link's targets may yield a matching value, as a bit per target (all of
    /// them for a link of more than 64 targets): a target is ruled out when its summary rules every one
    /// of its values out (see the module's documentation). No bit set: the link cannot
    /// match.
    pub(crate) fn may_match_targets(&mut self, r: &CRule) -> u64 {
        let Some(check) = LinkCheck::of(r).filter(|_| r.targets.len() <= 64) else {
            return u64::MAX;
        };
        let mut mask = 0u64;
        for (i, t) in r.targets.iter().enumerate() {
            if self.target_may_match(t, &check) {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn target_may_match(&mut self, t: &Target, check: &LinkCheck<'_>) -> bool {
        // A scalar's name that an open collection also has reads the collection.
        if t.kind == Kind::Other && self.cols.has_others() && self.cols.contains(t.var) {
            return true;
        }
        t.slot.is_none_or(|slot| self.slot_may_match(slot, check))
    }

    /// Whether some value of the source in `slot` may match the link (see the module's
    /// documentation). A scalar's slot is read as the scalar even when an open collection
    /// has its name: callers check that first.
    pub(crate) fn slot_may_match(&mut self, slot: Slot, check: &LinkCheck<'_>) -> bool {
        let i = self.summary(slot);
        // A source with no values yields no match, whatever the link.
        let Some(bytes) = self.summaries.get(i).filter(|s| s.any).map(|s| s.bytes) else {
            return false;
        };
        if let Some(m) = check.memo {
            if self.memo_knows(i, m) {
                return false;
            }
        }
        let (met, keeps) = check.bytes.judge(bytes);
        let open = met
            && match check.lit_slot {
                Some(lit) if keeps => self.has_literal(i, lit),
                _ => true,
            };
        if let (false, Some(m)) = (open, check.memo) {
            // A fact about each value's bytes, as a miss of the operator is: kept for later
            // transactions, which then need only the memo's bit.
            self.summaries[i].note(m);
        }
        open
    }

    /// Whether the memo knows that the pure link of memo slot `m` matches none of the
    /// values of summary `i`.
    #[inline]
    fn memo_knows(&mut self, i: usize, m: u32) -> bool {
        let words = match self.summaries.get(i).and_then(|s| s.misses.as_deref()) {
            Some(words) => words,
            None => self.known_misses(i),
        };
        words
            .get(m as usize / 64)
            .is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    /// The pure links known to match none of the values of summary `i` (worked out when
    /// first asked).
    #[cold]
    #[inline(never)]
    fn known_misses(&mut self, i: usize) -> &[u64] {
        if self.summaries[i].misses.is_none() {
            let (misses, places) = self.misses_of(i);
            let s = &mut self.summaries[i];
            s.misses = Some(misses);
            s.places = places;
        }
        self.summaries[i].misses.as_deref().unwrap_or_default()
    }

    /// Keeps in `acc` only the pure links known to match no value of the source in `slot`
    /// (a source without values keeps them all: it yields no match).
    pub(crate) fn and_known_misses(&mut self, slot: Slot, acc: &mut [u64]) {
        let i = self.summary(slot);
        if !self.summaries[i].any {
            return;
        }
        let known = match self.summaries[i].misses.as_deref() {
            Some(words) => words,
            None => self.known_misses(i),
        };
        for (w, a) in acc.iter_mut().enumerate() {
            *a &= known.get(w).copied().unwrap_or(0);
        }
    }

    /// The pure links every value of summary `i` is known not to match (empty when a
    /// value has no row), and where the values' rows are.
    fn misses_of(&self, i: usize) -> (Box<[u64]>, Vec<u32>) {
        let s = &self.summaries[i];
        let mut and = vec![u64::MAX; super::memo::TxMemo::words(&self.waf.memo)];
        let mut places = Vec::new();
        let mut memo = self.memo.borrow_mut();
        for v in self.values_of(s.source, s.pin.as_ref()) {
            match memo.place(&self.waf.memo, v) {
                Some(p) if memo.and_into(p, &mut and) => places.push(p),
                _ => return (Box::default(), Vec::new()),
            }
        }
        (and.into(), places)
    }

    /// Notes in the memo's rows the misses the checks found on summaries' values (a row is
    /// written once per transaction, not once per check).
    pub(crate) fn note_found_misses(&mut self) {
        let memo = self.memo.get_mut();
        for s in self.summaries.iter_mut().filter(|s| s.found) {
            s.found = false;
            if let Some(words) = &s.misses {
                for &p in &s.places {
                    memo.note_words(p, words);
                }
            }
        }
    }

    /// The index of the summary of a slot's source (made when first asked).
    fn summary(&mut self, slot: Slot) -> usize {
        let (source, at_slot) = match slot.kind {
            Kind::Other => {
                let v = self.data.scalars.at(usize::from(slot.index));
                let source = Source::Scalar(v.map_or(0, |v| v.as_ptr() as usize));
                (source, KINDS + usize::from(slot.index))
            }
            k => (Source::Kind(k), k as usize),
        };
        let at = self.summary_at.get(at_slot).copied().unwrap_or(u32::MAX) as usize;
        // A scalar a rule replaced since is another source.
        if self.summaries.get(at).is_some_and(|s| s.source == source) {
            return at;
        }
        self.summarise(slot, source, at_slot)
    }

    /// Makes the summary of a slot's source.
    #[cold]
    #[inline(never)]
    fn summarise(&mut self, slot: Slot, source: Source, at_slot: usize) -> usize {
        if self.summary_at.is_empty() {
            self.summary_at = vec![u32::MAX; KINDS + crate::seclang::names::VARIABLES.len()];
        }
        let pin = match source {
            Source::Scalar(_) => self.data.scalars.at(usize::from(slot.index)).cloned(),
            Source::Kind(_) => None,
        };
        let (bytes, any) = self
            .values_of(source, pin.as_ref())
            .fold((ByteSet::default(), false), |(s, _), v| {
                (s.union(ByteSet::of(&v[..])), true)
            });
        self.summaries.push(Summary {
            source,
            pin,
            bytes,
            any,
            literals: None,
            misses: None,
            places: Vec::new(),
            found: false,
        });
        let i = self.summaries.len() - 1;
        if let Some(s) = self.summary_at.get_mut(at_slot) {
            *s = i as u32;
        }
        i
    }

    /// Forgets every summary (the request body or the response added values).
    /// Forgets the summaries of the response's headers (the request's stay as they were:
    /// the response adds nothing to them; scalars are checked by their buffer).
    pub(crate) fn clear_response_summaries(&mut self) {
        self.closed.forget();
        for k in [Kind::ResponseHeaders, Kind::ResponseHeaderNames] {
            if let Some(s) = self.summary_at.get_mut(k as usize) {
                *s = u32::MAX;
            }
        }
    }

    pub(crate) fn clear_summaries(&mut self) {
        self.note_found_misses();
        self.closed.forget();
        self.summaries.clear();
        self.summary_at.fill(u32::MAX);
    }

    /// Every value of a source (whatever member a target selects).
    fn values_of<'a>(
        &'a self,
        source: Source,
        pin: Option<&'a Val>,
    ) -> Box<dyn Iterator<Item = &'a Val> + 'a> {
        let d = &self.data;
        match source {
            Source::Scalar(_) => Box::new(pin.into_iter()),
            Source::Kind(Kind::Xml) => Box::new(d.xml_text.iter().chain(&d.xml_attrs)),
            Source::Kind(k) => {
                match self.lists(k, false) {
                    Some((lists, names)) => Box::new(
                        lists
                            .into_iter()
                            .flatten()
                            .map(move |(n, v)| if names { n } else { v }),
                    ),
                    None => Box::new(std::iter::empty()),
                }
            }
        }
    }

    fn has_literal(&mut self, i: usize, slot: u32) -> bool {
        if self.summaries[i].literals.is_none() {
            self.summaries[i].literals = self.literals_of(i);
        }
        self.summaries[i]
            .literals
            .as_ref()
            .is_none_or(|bits| super::prefilter::has(bits, slot))
    }

    /// Which links' literals occur in some value of summary `i`'s source (`None`: the rule
    /// set has no literals).
    fn literals_of(&mut self, i: usize) -> Option<Vec<u64>> {
        let waf = Arc::clone(&self.waf);
        let ac = waf.literals.as_ref()?;
        let mut bits = vec![0u64; ac.words()];
        let s = &self.summaries[i];
        let values: Vec<Val> = self.values_of(s.source, s.pin.as_ref()).cloned().collect();
        let memo = self.memo.get_mut();
        for v in &values {
            // A value met before has its hits in the value memo.
            let place = memo.place(&waf.memo, v);
            match place.and_then(|p| memo.lits(p, ac)) {
                Some(hits) => bits.iter_mut().zip(hits).for_each(|(b, h)| *b |= h),
                None => ac.add_hits(v, &mut bits),
            }
        }
        Some(bits)
    }
}
