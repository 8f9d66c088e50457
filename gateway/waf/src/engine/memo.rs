//! What links are known not to match a value, kept across transactions.
//!
//! Most of a link's work (transformations, prefilter automata, the operator) depends on the
//! value's bytes alone when its operator reads nothing but its input (a fixed `@rx`, `@pm`,
//! `@detectSQLi`, `@validateByteRange`, …): such a link is a *pure* link and gets a slot. A
//! value's row holds one bit per slot: set once the link was run on that value and did not
//! match (the operator failed, negation included, or the prefilter ruled it out), or once the
//! rule-level checks of `bound` ruled the link out on a source holding the value. A set bit is
//! a fact about the bytes, never about a transaction, so rows are shared by every transaction
//! and thread, and a later transaction skips the link on that value. A match is never
//! remembered: a matching link always runs, so captures, `MATCHED_VAR` and actions are those of
//! the transaction. A rule whose first link is known to miss every value of every target is
//! passed over by its gate on one bit (see `gate`). Browsers send the same header values,
//! cookie names, paths and arguments again and again; a value not seen before costs one lookup.
//!
//! Bounded: values longer than [`VALUE_MAX`] are not kept, and the rows are a cache of at
//! most the configured bytes (keys and bits counted), the least used evicted first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::prefilter::Prefilter;
use super::tx::Val;

/// The longest value kept (longer ones are rarely sent twice, and cost more to key).
pub(crate) const VALUE_MAX: usize = 4096;

/// Most distinct values one transaction looks up (a form of thousands of fields does not
/// grow the transaction's table past this; later values are run as without the memo).
const TX_VALUES_MAX: usize = 4096;

/// The default budget of the rows: 32 MiB.
pub(crate) const DEFAULT_BYTES: u64 = 32 << 20;

/// Bytes an entry costs beside its key and bits: the row's and key's allocations, the
/// cache's slot and its share of the cache's table of recently evicted keys (an estimate).
const ENTRY_OVERHEAD: u64 = 160;

/// One value's facts: link slot `s` is bit `s % 64` of word `s / 64` of `misses`; `lits`
/// are the hits of the rule set's automaton of every link's literals in the value, once
/// searched (they too depend on the bytes alone).
#[derive(Debug)]
pub(crate) struct Row {
    misses: Box<[AtomicU64]>,
    lits: OnceLock<Box<[u64]>>,
}

impl Row {
    fn new(slots: usize) -> Row {
        Row {
            misses: (0..slots.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            lits: OnceLock::new(),
        }
    }

    /// Whether the link of `slot` is known not to match this value.
    fn known(&self, slot: u32) -> bool {
        self.misses
            .get(slot as usize / 64)
            .is_some_and(|w| w.load(Ordering::Relaxed) & (1 << (slot % 64)) != 0)
    }

    /// Notes that the links of the bits set in `words` (slot `s` is bit `s % 64` of word
    /// `s / 64`) do not match this value; a word already holding them is only read.
    fn note_words(&self, words: &[u64]) {
        for (w, &bits) in self.misses.iter().zip(words) {
            if w.load(Ordering::Relaxed) & bits != bits {
                w.fetch_or(bits, Ordering::Relaxed);
            }
        }
    }

    /// Notes that the link of `slot` did not match this value.
    fn note(&self, slot: u32) {
        if let Some(w) = self.misses.get(slot as usize / 64) {
            w.fetch_or(1 << (slot % 64), Ordering::Relaxed);
        }
    }
}

/// Weighs a row by its key's bytes and the words it holds (or will hold).
#[derive(Clone)]
struct ByBytes {
    /// Words of a row's literal hits once searched.
    lit_words: u64,
}

impl quick_cache::Weighter<Box<[u8]>, Arc<Row>> for ByBytes {
    fn weight(&self, key: &Box<[u8]>, row: &Arc<Row>) -> u64 {
        key.len() as u64 + (row.misses.len() as u64 + self.lit_words) * 8 + ENTRY_OVERHEAD
    }
}

/// The rule set's rows, by value.
pub(crate) struct ValueMemo {
    /// Pure links in the rule set (bits per row).
    slots: usize,
    /// Words of the literal hits.
    lit_words: usize,
    rows: Option<quick_cache::sync::Cache<Box<[u8]>, Arc<Row>, ByBytes>>,
}

impl std::fmt::Debug for ValueMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueMemo")
            .field("slots", &self.slots)
            .field("rows", &self.rows.as_ref().map(|r| r.len()))
            .finish()
    }
}

impl Default for ValueMemo {
    fn default() -> Self {
        ValueMemo::new(0, 0, 0)
    }
}

impl ValueMemo {
    /// Rows for `slots` pure links and `lit_words` words of literal hits within `bytes` (0:
    /// no memo).
    pub(crate) fn new(slots: usize, lit_words: usize, bytes: u64) -> ValueMemo {
        let row = (slots.div_ceil(64) + lit_words) as u64 * 8 + ENTRY_OVERHEAD;
        let rows = (slots > 0 && bytes > 0).then(|| {
            // quick_cache sizes its table by the entry estimate: values average a few dozen
            // bytes.
            let estimate = (bytes / (row + 48)).max(16) as usize;
            let weigh = ByBytes {
                lit_words: lit_words as u64,
            };
            quick_cache::sync::Cache::with_weighter(estimate, bytes, weigh)
        });
        ValueMemo {
            slots,
            lit_words,
            rows,
        }
    }

    /// The row of `value` (made when new); `None` when the memo is off or the value too long.
    fn row(&self, value: &[u8]) -> Option<Arc<Row>> {
        let rows = self.rows.as_ref()?;
        if value.len() > VALUE_MAX {
            return None;
        }
        if let Some(r) = rows.get(value) {
            return Some(r);
        }
        let r = Arc::new(Row::new(self.slots));
        rows.insert(value.into(), Arc::clone(&r));
        Some(r)
    }

    /// The same memo's shape within another budget, empty.
    pub(crate) fn resized(&self, bytes: u64) -> ValueMemo {
        ValueMemo::new(self.slots, self.lit_words, bytes)
    }

    /// How many values have rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.as_ref().map_or(0, |r| r.len())
    }
}

/// A transaction's rows, by the value's buffer: each value is looked up in the rule set's
/// memo once per transaction. The value is kept with its row so its buffer (and address)
/// cannot be reused by another value while the transaction runs.
#[derive(Debug, Default)]
pub(crate) struct TxMemo {
    at: HashMap<usize, u32, foldhash::fast::FixedState>,
    rows: Vec<(Val, Option<Arc<Row>>)>,
}

impl TxMemo {
    /// Empties the table for the next transaction (keeping its room unless a large request
    /// grew it far).
    pub(crate) fn clear(&mut self) {
        self.at.clear();
        self.rows.clear();
        if self.rows.capacity() > 1024 {
            *self = TxMemo::default();
        }
    }

    /// The place of `value`'s row in this transaction, looked up in `memo` on first sight.
    pub(crate) fn place(&mut self, memo: &ValueMemo, value: &Val) -> Option<u32> {
        memo.rows.as_ref()?;
        let addr = Arc::as_ptr(value) as *const u8 as usize;
        if let Some(&i) = self.at.get(&addr) {
            return Some(i);
        }
        if self.rows.len() >= TX_VALUES_MAX {
            return None;
        }
        let i = self.rows.len() as u32;
        self.rows.push((Arc::clone(value), memo.row(value)));
        self.at.insert(addr, i);
        Some(i)
    }

    /// `Err` when the link of `slot` is known not to match `value`; otherwise the value's
    /// place (looked up in `memo` on first sight), if it has one.
    pub(crate) fn known_at(
        &mut self,
        memo: &ValueMemo,
        value: &Val,
        slot: u32,
    ) -> Result<Option<u32>, ()> {
        let place = self.place(memo, value);
        match place {
            Some(p) if self.known(p, slot) => Err(()),
            p => Ok(p),
        }
    }

    /// Whether the link of `slot` is known not to match the value at `place`.
    pub(crate) fn known(&self, place: u32, slot: u32) -> bool {
        self.rows
            .get(place as usize)
            .and_then(|(_, r)| r.as_ref())
            .is_some_and(|r| r.known(slot))
    }

    /// Notes that the link of `slot` did not match the value at `place`.
    pub(crate) fn note(&self, place: u32, slot: u32) {
        if let Some((_, Some(r))) = self.rows.get(place as usize) {
            r.note(slot);
        }
    }

    /// Keeps in `words` only the links known not to match the value at `place` (as
    /// [`Self::known`] reads them, a word per 64 slots); false when the value has no row.
    pub(crate) fn and_into(&self, place: u32, words: &mut [u64]) -> bool {
        let Some((_, Some(r))) = self.rows.get(place as usize) else {
            return false;
        };
        for (out, w) in words.iter_mut().zip(r.misses.iter()) {
            *out &= w.load(Ordering::Relaxed);
        }
        true
    }

    /// Notes that the links of the bits set in `words` do not match the value at `place`.
    pub(crate) fn note_words(&self, place: u32, words: &[u64]) {
        if let Some((_, Some(r))) = self.rows.get(place as usize) {
            r.note_words(words);
        }
    }

    /// Words of a row (one per 64 pure links of `memo`).
    pub(crate) fn words(memo: &ValueMemo) -> usize {
        memo.slots.div_ceil(64)
    }

    /// The hits of `all` (the rule set's automaton of every link's literals) in the value at
    /// `place`, searched once per distinct value; `None` when the value has no row.
    pub(crate) fn lits(&self, place: u32, all: &Prefilter) -> Option<&[u64]> {
        let (value, row) = self.rows.get(place as usize)?;
        let row = row.as_ref()?;
        Some(row.lits.get_or_init(|| all.hits(value).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_is_shared_by_later_transactions_and_values_are_told_apart() {
        let memo = ValueMemo::new(130, 2, 1 << 20);
        let a: Val = Arc::from(&b"Mozilla/5.0"[..]);
        let mut t1 = TxMemo::default();
        let p = t1.place(&memo, &a).expect("placed");
        assert_eq!(t1.place(&memo, &a), Some(p));
        assert!(!t1.known(p, 129));
        t1.note(p, 129);
        assert!(t1.known(p, 129));
        assert!(!t1.known(p, 128));
        // Another transaction, another buffer with the same bytes.
        let again: Val = Arc::from(&b"Mozilla/5.0"[..]);
        let mut t2 = TxMemo::default();
        let q = t2.place(&memo, &again).expect("placed");
        assert!(t2.known(q, 129));
        let other: Val = Arc::from(&b"Mozilla/5.1"[..]);
        let o = t2.place(&memo, &other).expect("placed");
        assert!(!t2.known(o, 129));
    }

    #[test]
    fn long_values_and_an_empty_budget_are_not_kept() {
        let memo = ValueMemo::new(10, 2, 1 << 20);
        let long: Val = vec![b'a'; VALUE_MAX + 1].into();
        let mut t = TxMemo::default();
        let p = t.place(&memo, &long).expect("placed");
        t.note(p, 3);
        assert!(!t.known(p, 3));
        let off = ValueMemo::new(10, 2, 0);
        assert_eq!(TxMemo::default().place(&off, &long), None);
    }

    #[test]
    fn rows_stay_within_the_budget() {
        let memo = ValueMemo::new(64, 0, 64 * 1024);
        let mut t = TxMemo::default();
        for i in 0..5000u32 {
            let v: Val = Arc::from(format!("value-{i}").as_bytes());
            t.place(&memo, &v);
            t.clear();
        }
        // quick_cache splits the budget between its shards, rounding: within a few percent.
        let per = (8 + ENTRY_OVERHEAD + 10) as usize;
        assert!(
            memo.len() * per <= 64 * 1024 * 105 / 100,
            "{} rows",
            memo.len()
        );
        assert!(memo.len() > 100, "{} rows", memo.len());
    }
}
