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

/// Most transformed values a transaction caches (about 90 bytes each).
const CACHE_MAX: usize = 8192;

/// Most emptied caches a rule set keeps for later transactions. A cache holds at most
/// `CACHE_MAX` entries, a table of 16,384 buckets of about 100 bytes (1.6 MiB) when full:
/// at most 13 MiB kept together.
const POOL_MAX: usize = 8;

/// Caches kept between transactions: a cache grown for one form is reused by the next
/// transaction instead of growing (and being freed) again.
#[derive(Debug, Default)]
pub(crate) struct Pool(std::sync::Mutex<Vec<TransformCache>>);

impl Pool {
    /// A cache: a kept one, or a new one.
    pub(crate) fn take(&self) -> TransformCache {
        self.0
            .lock()
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| TransformCache::with_capacity(128))
    }

    /// Keeps a cache, emptied, while there is room.
    pub(crate) fn give(&self, mut c: TransformCache) {
        c.clear();
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

/// A value at a node: the bytes, the bytes it holds (for byte needs), and the chain's
/// literal-prefilter hits once computed.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) out: Val,
    pub(crate) present: ByteSet,
    /// Whether the node's transformation reported a change.
    pub(crate) changed: bool,
    /// Whether every transformation up to the node kept the original value as it was, up to
    /// ASCII case (see [`needs::keeps`]): the literals found in the original (the automata
    /// ignore case) are then the literals of this value.
    pub(crate) same: bool,
    pub(crate) bits: Option<Vec<u64>>,
    /// At the root: which links' literals occur in the original value (the rule set's
    /// automaton of every link's literals), once computed.
    pub(crate) lits: Option<Vec<u64>>,
}

/// A value at a node as [`TransformCache::fill_step`] gives it.
pub(crate) struct Step {
    pub(crate) out: Val,
    pub(crate) present: ByteSet,
    /// Whether the node's transformation reported a change.
    pub(crate) changed: bool,
    /// Whether the value is the original up to ASCII case (see [`Entry::same`]).
    pub(crate) same: bool,
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
    /// Where transformations write (a value is copied out only when it changed).
    scratch: Vec<u8>,
}

impl TransformCache {
    /// An empty cache with room for `n` values.
    pub(crate) fn with_capacity(n: usize) -> TransformCache {
        TransformCache {
            rows: HashMap::with_capacity_and_hasher(n / 8, Default::default()),
            entries: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    /// Empties the cache, keeping its room (for the next transaction) unless a large
    /// request grew it far.
    pub(crate) fn clear(&mut self) {
        self.rows.clear();
        self.table.clear();
        self.entries.clear();
        if self.table.capacity() > 256 * 1024 {
            self.table = Vec::new();
        }
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::new();
        }
    }

    /// The entry at `i` (from [`Self::index`]).
    pub(crate) fn entry(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i)
    }

    /// The place of `value`'s entry at `node`, if cached.
    pub(crate) fn index(&self, value: &Val, node: u32) -> Option<usize> {
        let row = *self.rows.get(&addr(value))? as usize;
        let slot = *self.table.get(row * self.width + node as usize)?;
        (slot as usize).checked_sub(1)
    }

    /// The cached entry of `value` at `node`, if any.
    pub(crate) fn get_mut(&mut self, value: &Val, node: u32) -> Option<&mut Entry> {
        let i = self.index(value, node)?;
        self.entries.get_mut(i)
    }

    /// The value at `node` and its bytes, computed from the nearest cached ancestor and
    /// cached on the way (while there is room).
    pub(crate) fn fill(&mut self, chains: &Chains, value: &Val, node: u32) -> (Val, ByteSet) {
        let s = self.fill_step(chains, value, node);
        (s.out, s.present)
    }

    /// [`Self::fill`], whether the node's transformation reported a change (what
    /// `multiMatch` tests a value again for), and whether the value is still the original
    /// up to case.
    pub(crate) fn fill_step(&mut self, chains: &Chains, value: &Val, node: u32) -> Step {
        if let Some(e) = self.index(value, node).and_then(|i| self.entries.get(i)) {
            return Step {
                out: e.out.clone(),
                present: e.present,
                changed: e.changed,
                same: e.same,
            };
        }
        let step = match chains.step(node) {
            None => Step {
                out: value.clone(),
                present: ByteSet::of(value),
                changed: false,
                same: true,
            },
            Some((parent, t)) => {
                let from = self.fill_step(chains, value, parent);
                let same = from.same && needs::keeps(t, from.present);
                if needs::keeps_exactly(t, from.present) {
                    let kept = Step {
                        changed: false,
                        same,
                        ..from
                    };
                    return self.keep(chains, value, node, kept);
                }
                let mut next = std::mem::take(&mut self.scratch);
                let changed = t.apply(&from.out, &mut next);
                let step = if next[..] == from.out[..] {
                    Step {
                        changed,
                        same,
                        ..from
                    }
                } else {
                    // Some report only a change of length: the bytes are read again.
                    Step {
                        present: ByteSet::of(&next),
                        out: Arc::from(&next[..]),
                        changed,
                        same,
                    }
                };
                self.scratch = next;
                step
            }
        };
        self.keep(chains, value, node, step)
    }

    /// Caches a value at a node, while there is room (a value's first entry, its root,
    /// makes its row).
    fn keep(&mut self, chains: &Chains, value: &Val, node: u32, s: Step) -> Step {
        if self.entries.len() >= CACHE_MAX {
            return s;
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
            None => return s,
        };
        let Some(slot) = self.table.get_mut(row * self.width + node as usize) else {
            return s;
        };
        self.entries.push(Entry {
            out: s.out.clone(),
            present: s.present,
            changed: s.changed,
            same: s.same,
            bits: None,
            lits: None,
        });
        *slot = self.entries.len() as u32;
        s
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
        let root = self.get_mut(value, ROOT)?;
        let bits = root.lits.get_or_insert_with(|| all.hits(&root.out));
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

    #[test]
    fn values_go_through_each_step_and_unchanged_ones_share_the_buffer() {
        let mut c = Chains::default();
        let low = c.intern(&[Transform::UrlDecodeUni, Transform::Lowercase]);
        let trim = c.intern(&[Transform::UrlDecodeUni, Transform::Trim]);
        let mut cache = TransformCache::default();
        let v: Val = Arc::from(&b"A%3Cb"[..]);
        let (out, present) = cache.fill(&c, &v, low);
        assert_eq!(&out[..], b"a<b");
        assert_eq!(present, ByteSet::of(b"a<b"));
        let (t, _) = cache.fill(&c, &v, trim);
        assert_eq!(&t[..], b"A<b");
        let decoded = cache.get_mut(&v, c.intern(&[Transform::UrlDecodeUni]));
        assert!(Arc::ptr_eq(&decoded.expect("cached").out, &t));
        let plain: Val = Arc::from(&b"abc"[..]);
        let (same, _) = cache.fill(&c, &plain, low);
        assert!(Arc::ptr_eq(&same, &plain));
    }
}
