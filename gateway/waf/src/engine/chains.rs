//! Transformation chains as a trie, and the transaction's cache of transformed values.
//!
//! CRS chains share prefixes (`urlDecodeUni`, then `urlDecodeUni,htmlEntityDecode`, then
//! `…,lowercase`), so each chain is a node whose value is its parent's value through one
//! more transformation. A value is transformed at most once per node per transaction, and a
//! transformation that leaves a value as it was shares its parent's buffer and byte set (most
//! transformations of benign values change nothing).

use std::collections::HashMap;
use std::sync::Arc;

use super::needs::{self, ByteSet};
use super::tx::Val;
use crate::transform::Transform;

/// The root: the value untransformed.
pub(crate) const ROOT: u32 = 0;

/// Most transformed values a transaction caches (an entry is about 60 bytes; a value that
/// changed also keeps its buffer).
const CACHE_MAX: usize = 8192;

/// Most emptied caches a rule set keeps for later transactions. A kept cache holds room for
/// at most `CACHE_MAX` entries and a node table of at most 256 K slots (1 MiB; a larger one
/// is freed): a few MiB kept together.
const POOL_MAX: usize = 8;

/// A transaction's caches of work per value: transformed values, and its rows of the value
/// memo.
pub(crate) type PerValue = (TransformCache, super::memo::TxMemo);

/// Caches kept between transactions: a cache grown for one form is reused by the next
/// transaction instead of growing (and being freed) again.
#[derive(Debug, Default)]
pub(crate) struct Pool(std::sync::Mutex<Vec<PerValue>>);

impl Pool {
    /// Caches: kept ones, or new ones.
    pub(crate) fn take(&self) -> PerValue {
        self.0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| (TransformCache::with_capacity(128), Default::default()))
    }

    /// Keeps caches, emptied, while there is room.
    pub(crate) fn give(&self, mut c: PerValue) {
        c.0.clear();
        c.1.clear();
        if let Ok(mut v) = self.0.lock() {
            if v.len() < POOL_MAX {
                v.push(c);
            }
        }
    }
}

/// Every transformation chain of a rule set, as a trie.
#[derive(Debug, Default)]
pub(crate) struct Chains {
    /// Nodes after the root: (parent, the transformation it adds).
    nodes: Vec<(u32, Transform)>,
    children: HashMap<(u32, Transform), u32>,
}

impl Chains {
    /// The node of `transforms`, created with its prefixes when new.
    pub(crate) fn intern(&mut self, transforms: &[Transform]) -> u32 {
        let mut node = ROOT;
        for &t in transforms {
            let next = self.nodes.len() as u32 + 1;
            node = *self.children.entry((node, t)).or_insert_with(|| {
                self.nodes.push((node, t));
                next
            });
        }
        node
    }

    /// How many nodes there are, the root included (chain ids are below it).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len() + 1
    }

    fn step(&self, node: u32) -> Option<(u32, Transform)> {
        self.nodes.get((node as usize).checked_sub(1)?).copied()
    }
}

/// A value at a node: where its bytes are, and the chain's literal-prefilter hits once
/// computed.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The value's buffer and byte set in [`TransformCache::bufs`]: the parent's when the
    /// node's transformation left the value as it was (most transformations of benign values
    /// change nothing), so such a step costs no reference count and no copy.
    buf: u32,
    /// Whether the node's transformation reported a change.
    changed: bool,
    /// Whether every transformation up to the node kept the original value as it was, up to
    /// ASCII case (see [`needs::keeps`]): the literals found in the original (the automata
    /// ignore case) are then the literals of this value.
    same: bool,
    /// Which links of the node's chain have a literal in the value (its chain's automaton).
    bits: Option<Vec<u64>>,
    /// At the root: which links' literals occur in the original value (the rule set's
    /// automaton of every link's literals), once computed.
    lits: Option<Vec<u64>>,
}

/// A value at a node, outside the cache (there was no room for it).
pub(crate) struct Step {
    pub(crate) out: Val,
    pub(crate) present: ByteSet,
    /// Whether the node's transformation reported a change.
    pub(crate) changed: bool,
    /// Whether the value is the original up to ASCII case (see [`Entry::same`]).
    pub(crate) same: bool,
}

/// Where an operator's input is: the target's value as it is, a transformation cache entry,
/// or a value transformed for one rule alone (the cache was full). Only a match takes a
/// reference to it.
#[derive(Debug)]
pub(crate) enum Cand {
    /// The target's own value.
    Item,
    /// The cache entry at this place.
    Cached(usize),
    /// A value of its own.
    Owned(Val),
}

/// What [`TransformCache::keep`] caches: a new buffer, or the parent's.
enum Kept {
    New(Step),
    Shared { buf: u32, changed: bool, same: bool },
}

/// Most distinct values a transaction caches transformations of (rows of the node table).
const ROWS_MAX: usize = 2048;

/// Transformed values by (the original value's buffer, node): each value met gets a row of
/// the node table (one slot per chain node, the entry's index + 1, or 0), so a lookup is one
/// hash of the buffer's address per value and an index per node. The root entry of each
/// value holds the original, so its buffer cannot be freed and its address reused while
/// cached: a row is made only with its root entry.
#[derive(Debug, Default)]
pub(crate) struct TransformCache {
    rows: HashMap<usize, u32, foldhash::fast::FixedState>,
    /// Row-major: `row * width + node`.
    table: Vec<u32>,
    /// Slots per row: the rule set's chain nodes (set when the first row is made).
    width: usize,
    entries: Vec<Entry>,
    /// The distinct buffers the entries share, with their byte sets.
    bufs: Vec<(Val, ByteSet)>,
    /// Where transformations write (a value is copied out only when it changed).
    scratch: Vec<u8>,
}

impl TransformCache {
    /// An empty cache with room for `n` values.
    pub(crate) fn with_capacity(n: usize) -> TransformCache {
        TransformCache {
            rows: HashMap::with_capacity_and_hasher(n / 8, Default::default()),
            entries: Vec::with_capacity(n),
            bufs: Vec::with_capacity(n / 4),
            ..Default::default()
        }
    }

    /// Empties the cache, keeping its room (for the next transaction) unless a large
    /// request grew it far.
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.table.clear();
        self.entries.clear();
        self.bufs.clear();
        if self.table.capacity() > 256 * 1024 {
            self.table = Vec::new();
        }
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::new();
        }
    }

    /// The place of `value`'s entry at `node`, if cached.
    pub(crate) fn index(&self, value: &Val, node: u32) -> Option<usize> {
        let row = *self.rows.get(&addr(value))? as usize;
        let slot = *self.table.get(row * self.width + node as usize)?;
        (slot as usize).checked_sub(1)
    }

    fn buf(&self, i: usize) -> Option<&(Val, ByteSet)> {
        self.bufs.get(self.entries.get(i)?.buf as usize)
    }

    /// The value of the entry at `i`.
    pub(crate) fn out(&self, i: usize) -> Option<&Val> {
        self.buf(i).map(|b| &b.0)
    }

    /// The bytes the entry at `i` holds.
    pub(crate) fn present(&self, i: usize) -> ByteSet {
        self.buf(i).map_or(ByteSet::ALL, |b| b.1)
    }

    /// Whether the entry at `i` is the original value up to case (see [`Entry::same`]).
    pub(crate) fn same(&self, i: usize) -> bool {
        self.entries.get(i).is_some_and(|e| e.same)
    }

    /// Whether the entry at `i` has its chain's prefilter hits already.
    pub(crate) fn has_bits(&self, i: usize) -> bool {
        self.entries.get(i).is_some_and(|e| e.bits.is_some())
    }

    /// Whether the literals of `slot` in the chain's prefilter `p` occur in the entry at `i`
    /// (searched once per entry for every link of the chain).
    pub(crate) fn chain_has(
        &mut self,
        i: usize,
        p: &super::prefilter::Prefilter,
        slot: u32,
    ) -> bool {
        self.hits(i, p, false)
            .is_none_or(|bits| super::prefilter::has(bits, slot))
    }

    /// The hits of automaton `p` in the entry at `i`, searched once and kept in the entry:
    /// its chain's (`bits`), or at a root the rule set's automaton of every link's literals
    /// (`lits`).
    fn hits(&mut self, i: usize, p: &super::prefilter::Prefilter, root: bool) -> Option<&[u64]> {
        let e = self.entries.get_mut(i)?;
        let (out, _) = self.bufs.get(e.buf as usize)?;
        let kept = if root { &mut e.lits } else { &mut e.bits };
        Some(kept.get_or_insert_with(|| p.hits(out)))
    }

    /// The place of the value at `node` in the cache, computed from the nearest cached
    /// ancestor and cached on the way; the value itself when there is no room for it.
    pub(crate) fn fill_at(
        &mut self,
        chains: &Chains,
        value: &Val,
        node: u32,
    ) -> Result<usize, Step> {
        if let Some(i) = self.index(value, node) {
            return Ok(i);
        }
        let Some((parent, t)) = chains.step(node) else {
            let root = Step {
                out: value.clone(),
                present: ByteSet::of(value),
                changed: false,
                same: true,
            };
            return self.keep(chains, value, node, Kept::New(root));
        };
        let from = self.fill_at(chains, value, parent);
        let (present, same_before) = match &from {
            Ok(i) => (self.present(*i), self.same(*i)),
            Err(s) => (s.present, s.same),
        };
        let same = same_before && needs::keeps(t, present);
        let mut next = std::mem::take(&mut self.scratch);
        let (changed, equal) = if needs::keeps_exactly(t, present) {
            (false, true)
        } else {
            let input: &[u8] = match &from {
                Ok(i) => self.out(*i).map_or(&value[..], |v| &v[..]),
                Err(s) => &s.out,
            };
            let changed = t.apply(input, &mut next);
            (changed, next[..] == input[..])
        };
        let kept = match (equal, from) {
            (true, Ok(i)) => Kept::Shared {
                buf: self.entries[i].buf,
                changed,
                same,
            },
            (true, Err(s)) => Kept::New(Step { changed, same, ..s }),
            // Some report only a change of length: the bytes are read again.
            (false, _) => Kept::New(Step {
                present: ByteSet::of(&next),
                out: Arc::from(&next[..]),
                changed,
                same,
            }),
        };
        self.scratch = next;
        self.keep(chains, value, node, kept)
    }

    /// Caches a value at a node, while there is room (a value's first entry, its root,
    /// makes its row); the value itself when there is none.
    fn keep(&mut self, chains: &Chains, value: &Val, node: u32, k: Kept) -> Result<usize, Step> {
        let Some(at) = self.slot(chains, value, node) else {
            return Err(match k {
                Kept::New(s) => s,
                Kept::Shared { buf, changed, same } => {
                    let (out, present) = self.bufs[buf as usize].clone();
                    Step {
                        out,
                        present,
                        changed,
                        same,
                    }
                }
            });
        };
        let (buf, changed, same) = match k {
            Kept::New(s) => {
                self.bufs.push((s.out, s.present));
                ((self.bufs.len() - 1) as u32, s.changed, s.same)
            }
            Kept::Shared { buf, changed, same } => (buf, changed, same),
        };
        self.entries.push(Entry {
            buf,
            changed,
            same,
            bits: None,
            lits: None,
        });
        self.table[at] = self.entries.len() as u32;
        Ok(self.entries.len() - 1)
    }

    /// The table slot of (value, node) when there is room for an entry there.
    fn slot(&mut self, chains: &Chains, value: &Val, node: u32) -> Option<usize> {
        if self.entries.len() >= CACHE_MAX {
            return None;
        }
        let row = match self.rows.get(&addr(value)) {
            Some(&r) => r as usize,
            None if node == ROOT && self.rows.len() < ROWS_MAX => {
                self.width = chains.len();
                let r = self.rows.len();
                self.rows.insert(addr(value), r as u32);
                self.table.resize(self.table.len() + self.width, 0);
                r
            }
            None => return None,
        };
        let at = row * self.width + node as usize;
        (at < self.table.len()).then_some(at)
    }

    /// Whether the entry at `i`'s transformation reported a change.
    pub(crate) fn changed(&self, i: usize) -> bool {
        self.entries.get(i).is_some_and(|e| e.changed)
    }

    /// Whether the literals of the rule set's `slot` occur in the original `value` (searched
    /// once per value with `all`, the automaton of every link's literals); `None` when the
    /// value is not cached.
    pub(crate) fn original_has(
        &mut self,
        value: &Val,
        all: &super::prefilter::Prefilter,
        slot: u32,
    ) -> Option<bool> {
        let root = self.index(value, ROOT)?;
        let bits = self.hits(root, all, true)?;
        Some(super::prefilter::has(bits, slot))
    }
}

/// The nodes from the root's child to `node`, in order (the chain's transformations).
pub(crate) fn path(chains: &Chains, node: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut n = node;
    while let Some((parent, _)) = chains.step(n) {
        out.push(n);
        n = parent;
    }
    out.reverse();
    out
}

fn addr(value: &Val) -> usize {
    Arc::as_ptr(value) as *const u8 as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_share_prefixes() {
        let mut c = Chains::default();
        let a = c.intern(&[Transform::UrlDecodeUni]);
        let b = c.intern(&[Transform::UrlDecodeUni, Transform::Lowercase]);
        assert_eq!(c.intern(&[]), ROOT);
        assert_eq!(c.step(b), Some((a, Transform::Lowercase)));
        assert_eq!(c.intern(&[Transform::UrlDecodeUni]), a);
        assert_eq!(c.nodes.len(), 2);
    }

    /// The value at `node` and its bytes, through the cache.
    fn fill(cache: &mut TransformCache, c: &Chains, v: &Val, node: u32) -> (Val, ByteSet) {
        match cache.fill_at(c, v, node) {
            Ok(i) => (cache.out(i).expect("kept").clone(), cache.present(i)),
            Err(s) => (s.out, s.present),
        }
    }

    #[test]
    fn values_go_through_each_step_and_unchanged_ones_share_the_buffer() {
        let mut c = Chains::default();
        let low = c.intern(&[Transform::UrlDecodeUni, Transform::Lowercase]);
        let trim = c.intern(&[Transform::UrlDecodeUni, Transform::Trim]);
        let mut cache = TransformCache::default();
        let v: Val = Arc::from(&b"A%3Cb"[..]);
        let (out, present) = fill(&mut cache, &c, &v, low);
        assert_eq!(&out[..], b"a<b");
        assert_eq!(present, ByteSet::of(b"a<b"));
        let (t, _) = fill(&mut cache, &c, &v, trim);
        assert_eq!(&t[..], b"A<b");
        let decoded = cache.index(&v, c.intern(&[Transform::UrlDecodeUni]));
        assert!(Arc::ptr_eq(
            cache.out(decoded.expect("cached")).expect("kept"),
            &t
        ));
        let plain: Val = Arc::from(&b"abc"[..]);
        let (same, _) = fill(&mut cache, &c, &plain, low);
        assert!(Arc::ptr_eq(&same, &plain));
    }
}
